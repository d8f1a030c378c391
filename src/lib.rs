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
//! | [`rng`] | the named generator (Xoshiro256++), seeding, streams keyed by (seed, purpose, index) |
//! | [`logspace`] | log-sum-exp, softplus, sigmoid, a streaming log-sum accumulator |
//! | [`model`] | the conventions and the `EnergyModel` trait; [`model::pairwise`] ([`model::PairwiseMrf`]), [`model::lattice`] ([`model::IsingLattice`]), [`model::factor`] ([`model::FactorGraph`]), [`model::rbm`] ([`model::Rbm`]), [`model::rbm_f32`] (the f32 RBM and its kernels, used by sampling, training and AIS), [`model::composite`] (products, mixtures, negations, tempering: free energies over visible bits), [`model::gaussian_rbm`] ([`model::GaussianRbm`]: real visible units, exact ln Z over the hidden units) |
//! | [`infer`] | exact partition functions and marginals: [`infer::partition`] (method choice and cost estimates), [`infer::exact`] (Gray-code enumeration), [`infer::eliminate`] (variable elimination), [`infer::transfer`] (transfer matrices), [`infer::kaufman`] (Kaufman's torus), [`infer::rbm`] (RBM layer sums), [`infer::ais`] (annealed importance sampling), [`infer::evidence`] (conditioning on observed variables), [`infer::shards`] (split enumerations and their merge), [`infer::score`] (per-example free energies and ln p of any `FreeEnergyModel`), [`infer::composite`] (ln Z of composites with its provenance), [`infer::gaussian_ais`] (AIS of a Gaussian RBM) |
//! | [`infer::map`] | MAP labellings: [`infer::map::mincut`] (graph cut), [`infer::map::icm`], [`infer::map::anneal`] (both for any `EnergyModel`, with a grid fast path), [`infer::map::gibbs`] (posterior marginals) |
//! | [`sample`] | MCMC: [`sample::lattice`] (one `LatticeUpdate` per lattice sampler, one recording loop), [`sample::multispin`] (the checkerboard multi-spin coded, 64 spins per word), [`sample::general`] (single-site and tied-block updates of any model), [`sample::cluster`] (Wolff, Swendsen-Wang), [`sample::rbm`] (block Gibbs), [`sample::composite`] (visible-unit chains of composites), [`sample::gradient`] (Gibbs-with-Gradients, DULA, DMALA: lattices, pairwise and UAI models, RBM visible units), [`sample::stats`] (means, tau_int, error bars), [`sample::gaussian`] (Langevin, MALA, block Gibbs of a Gaussian RBM) |
//! | [`learn`] | RBM training: [`learn::estimator`] (the gradient-estimator seam: CD-k, PCD), [`learn::objectives`] (pseudo-likelihood, ratio matching), [`learn::nce`] (noise-contrastive estimation), [`learn::optimizer`] (momentum, weight decay, learning-rate schedule), [`learn::cd`] (the epoch loop and its settings), [`learn::checkpoint`] (what a checkpoint holds, resume rules), [`learn::eval`] (likelihoods of a trained model), [`learn::classifier`] (one model per class: seeds, the Bayes decision), [`learn::fit`] (pairwise MRFs fitted to data: pseudo-likelihood by L-BFGS or OWL-QN (l1), asymmetric pseudo-likelihood, mean-field inversion), [`learn::gaussian`] (Gaussian RBMs: CD, PCD, score matching, denoising score matching) |
//! | [`denoise`] | MAP restoration of binary images (PRML 8.3.3) over [`infer::map`] |
//! | [`dataset`] | [`dataset::Dataset`]: binary examples; [`dataset::RealDataset`]: real-valued ones |
//! | [`image`] | [`image::BinaryImage`]: +-1 pixels, flip noise |
//! | [`io`] | every file format: [`io::model`] ([`io::open_model`]: any model file by content), [`io::uai`] (`.uai`, `.evid`, `.PR`, `.MAR`), [`io::safetensors`] (RBM files), [`io::datasets`], [`io::images`], [`io::atomic`] (temporary-then-rename writes, staged outputs), [`io::labels`] (label files), [`io::classifier`] (classifier manifests), [`io::sha256`] (checksums of the files manifests name), [`io::composite`] (composite manifests) |
//! | [`metrics`] | AUROC, average precision, top-K, confusion matrix and accuracy |
//! | [`linalg`] | the matrix products (f32): dense over `gemm`, and binary-aware (sums of selected rows) for sparse 0/1 operands |
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
pub mod metrics;
pub mod model;
pub mod progress;
pub mod rng;
pub mod sample;

pub use error::{Error, Result};
