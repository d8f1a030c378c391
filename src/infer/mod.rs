//! Exact and approximate inference: partition functions, marginals, MAP.

pub mod eliminate;
pub mod exact;
mod kernel;
pub mod kaufman;
pub mod partition;
pub mod rbm;
pub mod transfer;
