//! Exact and approximate inference: partition functions, marginals, MAP.

pub mod map;
pub mod rbm;
