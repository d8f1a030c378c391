//! Exact and approximate inference: partition functions, marginals, MAP.

pub mod ais;
pub mod composite;
pub mod eliminate;
pub mod evidence;
pub mod exact;
pub mod gaussian_ais;
pub mod kaufman;
mod kernel;
pub mod map;
pub mod partition;
pub mod rbm;
pub mod score;
pub mod shards;
pub mod transfer;
