//! Integration tests, one binary (see Cargo.toml `[[test]]`): modules by scope.

mod cli;
mod common;
mod compose;
mod contract;
mod exact;
mod fit;
mod gaussian;
mod gradient_samplers;
mod io;
mod learn;
mod learn_consistency;
mod map;
mod models;
mod samplers;
mod score;
