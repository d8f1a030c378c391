//! Binary energy-based models and their conventions.
//!
//! # Conventions
//! Every model defines an energy E(x) and the Boltzmann distribution
//! p(x) = exp(-beta E(x)) / Z(beta), Z(beta) = sum_x exp(-beta E(x)); `ln` is the natural log.
//!
//! * Ising and pairwise models use spins s_i in {-1, +1} ([`Spin`] = `i8`):
//!   E(s) = c - sum_{(i,j)} J_ij s_i s_j - sum_i h_i s_i, with a constant c (0 unless the model
//!   came from a file whose tables carry one). The inverse temperature beta is *not* part of the
//!   model: algorithms that need it take it as a parameter.
//! * [`FactorGraph`] holds tables phi_f(x_f) over bits x in {0, 1}; its energy is
//!   E(x) = -sum_f ln phi_f(x_f) (so beta = 1 reproduces the file). Bit 1 corresponds to spin +1.
//! * [`Rbm`] uses units in {0, 1}: E(v, h) = -v^T W h - b^T v - c^T h. [`RbmF32`] is the same
//!   model in single precision, the form the sampling, training and AIS kernels run on.
//! * Lattices store their sites row-major: site (row, col) is `row * width + col`.

pub mod factor;
pub mod lattice;
pub mod pairwise;
pub mod rbm;
pub mod rbm_f32;

pub use factor::{Factor, FactorGraph};
pub use lattice::{Boundary, IsingLattice};
pub use pairwise::PairwiseMrf;
pub use rbm::Rbm;
pub use rbm_f32::RbmF32;

/// An Ising spin, -1 or +1.
pub type Spin = i8;

/// The index of the first value that is not a spin (-1 or +1), if any. Checked in blocks without
/// early exit, so that the common all-valid case vectorises: `v + 1` is 0 or 2 exactly when `v`
/// is -1 or +1.
pub fn first_non_spin(values: &[Spin]) -> Option<usize> {
    let is_spin = |v: &Spin| (v.wrapping_add(1) as u8) & !2 == 0;
    let valid = values
        .chunks(4096)
        .all(|block| block.iter().fold(true, |ok, v| ok & is_spin(v)));
    if valid {
        None
    } else {
        values.iter().position(|v| !is_spin(v))
    }
}

/// Converts a bit (0/1) to a spin (-1/+1).
#[inline]
pub fn spin_of_bit(bit: u8) -> Spin {
    2 * bit as i8 - 1
}

/// Converts a spin (-1/+1) to a bit (0/1).
#[inline]
pub fn bit_of_spin(spin: Spin) -> u8 {
    (spin > 0) as u8
}

/// A model over `num_vars` spins with an energy and single-flip energy differences.
///
/// This is all that the generic samplers, ICM and enumeration need; specialised hot paths
/// (lattice checkerboards, RBM block Gibbs) use the concrete types.
pub trait EnergyModel: Sync {
    /// Number of variables.
    fn num_vars(&self) -> usize;
    /// The energy E(s) of a full configuration (`s.len() == num_vars()`).
    fn energy(&self, s: &[Spin]) -> f64;
    /// E(s with spin i flipped) - E(s), in O(degree of i).
    fn flip_delta(&self, s: &[Spin], i: usize) -> f64;
}
