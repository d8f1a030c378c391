//! # ebm: binary energy-based models
//!
//! Ising models, general pairwise binary Markov random fields and restricted Boltzmann machines:
//! their energies, exact partition functions where they exist, samplers, training and MAP
//! denoising. The `ebm` binary is a thin command line over this library.
//!
//! ## Map of the rooms
//! | module | what it holds |
//! |---|---|
//! | [`error`] | [`Error`] and [`Result`]: the library's one error vocabulary |
//! | [`rng`] | the named generator (Xoshiro256++), seeding, per-chunk streams |
//! | [`logspace`] | log-sum-exp, softplus, sigmoid, a streaming log-sum accumulator |
//! | [`model`] | [`model::PairwiseMrf`], [`model::IsingLattice`], [`model::FactorGraph`], [`model::Rbm`] and the conventions |
//! | [`infer`] | partition functions (enumeration, transfer matrix, Kaufman's torus, variable elimination, AIS), marginals, MAP ([`infer::map`]: graph cut, ICM, annealing, Gibbs) |
//! | [`sample`] | MCMC samplers (single-site, checkerboard, cluster, RBM block Gibbs) and the statistics of their output |
//! | [`learn`] | RBM training (CD-k, persistent CD) and the figures of a trained model |
//! | [`denoise`] | MAP restoration of binary images (PRML 8.3.3) over [`infer::map`] |
//! | [`dataset`] | [`dataset::Dataset`]: binary examples |
//! | [`image`] | [`image::BinaryImage`]: +-1 pixels, flip noise |
//! | [`io`] | every file format; [`io::open_model`] opens a model file by content; atomic writes |
//! | [`linalg`] | the one dense matrix product (f32, over `gemm`) |
//! | [`progress`] | the [`progress::Observer`] through which long algorithms report |
//!
//! Conventions (the sign of the energy, beta, +-1 spins versus 0/1 units, row-major sites) are
//! stated once in [`model`].
//!
//! ## Example
//! ```
//! use ebm::model::{Boundary, EnergyModel, IsingLattice};
//!
//! // A 3x3 torus with J = 1: the all-up state has 18 satisfied bonds.
//! let lattice = IsingLattice::new(3, 3, Boundary::Periodic, 1.0, 0.0)?;
//! assert_eq!(lattice.energy(&[1; 9]), -18.0);
//! // Flipping one spin breaks its four bonds: Delta E = 2 * 4 * J.
//! assert_eq!(lattice.flip_delta(&[1; 9], 4), 8.0);
//! # Ok::<(), ebm::Error>(())
//! ```

#![warn(missing_docs)]

pub mod dataset;
pub mod denoise;
pub mod error;
pub mod image;
pub mod infer;
pub mod io;
pub mod learn;
pub mod linalg;
pub mod logspace;
pub mod model;
pub mod progress;
pub mod rng;
pub mod sample;

pub use error::{Error, Result};
