//! Exact and approximate inference: partition functions, marginals, MAP.

pub mod ais;
pub mod rbm;
