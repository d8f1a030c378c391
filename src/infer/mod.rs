//! Exact and approximate inference: partition functions, marginals, MAP.

pub mod rbm;
pub mod map;
