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
//! * [`GaussianRbm`] has real visible units and binary hidden units:
//!   E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - c^T h - sum_ij (v_i / sigma_i^2) W_ij h_j
//!   (see [`gaussian_rbm`]).
//! * Lattices store their sites row-major: site (row, col) is `row * width + col`.

pub mod composite;
pub mod factor;
pub mod gaussian_rbm;
pub mod lattice;
pub mod pairwise;
pub mod rbm;
pub mod rbm_f32;

pub use composite::Composite;
pub use factor::{Factor, FactorGraph};
pub use gaussian_rbm::GaussianRbm;
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

/// A model over `num_visible` binary units v in {0, 1}^n with a free energy F(v), so that
/// p(v) = exp(-F(v)) / Z with Z = sum_v exp(-F(v)).
///
/// For an [`Rbm`] F is the free energy with the hidden layer summed out; for a [`FactorGraph`]
/// it is the energy of the bits, F(x) = -sum_f ln phi_f(x_f). Comparisons between examples need
/// no Z: p(v) / p(v') = exp(F(v') - F(v)). This is the seam that scoring, composition and the
/// samplers over visible units share.
pub trait FreeEnergyModel: Sync {
    /// Number of visible units.
    fn num_visible(&self) -> usize;
    /// F(v) for bits `v` (`v.len() == num_visible()`, entries 0 or 1); `+inf` where p(v) = 0.
    fn free_energy(&self, v: &[u8]) -> f64;

    /// F of each row of `rows` (row-major, `num_visible()` bits per row) written to `out` (one
    /// entry per row). The default calls [`FreeEnergyModel::free_energy`] per row; a model may
    /// override it to reuse working memory across the rows.
    fn free_energies_into(&self, rows: &[u8], out: &mut [f64]) {
        let n = self.num_visible().max(1);
        for (v, f) in rows.chunks_exact(n).zip(out) {
            *f = self.free_energy(v);
        }
    }
}

impl FreeEnergyModel for Rbm {
    fn num_visible(&self) -> usize {
        self.n_visible()
    }

    fn free_energy(&self, v: &[u8]) -> f64 {
        Rbm::free_energy(self, v)
    }

    fn free_energies_into(&self, rows: &[u8], out: &mut [f64]) {
        // One buffer for the hidden activations for all the rows.
        let mut scratch = vec![0.0; self.n_hidden()];
        for (v, f) in rows.chunks_exact(self.n_visible().max(1)).zip(out) {
            *f = self.free_energy_with(v, &mut scratch);
        }
    }
}

impl FreeEnergyModel for FactorGraph {
    fn num_visible(&self) -> usize {
        self.num_vars()
    }

    fn free_energy(&self, v: &[u8]) -> f64 {
        -self.log_weight_bits(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// F is the negative log of the unnormalised probability: for an RBM, exp(-F(v)) equals the
    /// sum of exp(-E(v, h)) over every hidden state; for a factor graph, the product of tables.
    #[test]
    fn free_energy_is_minus_the_log_of_the_unnormalised_probability() {
        let rbm = Rbm::new(
            2,
            2,
            vec![0.5, -1.0, 0.25, 2.0],
            vec![0.1, -0.3],
            vec![0.7, -0.2],
        )
        .unwrap();
        for state in 0..4u8 {
            let v = [state & 1, state >> 1 & 1];
            let sum: f64 = (0..4u8)
                .map(|hs| (-rbm.energy(&v, &[hs & 1, hs >> 1 & 1])).exp())
                .sum();
            let f = FreeEnergyModel::free_energy(&rbm, &v);
            assert!(
                (f + sum.ln()).abs() < 1e-12,
                "{state}: {f} vs {}",
                -sum.ln()
            );
        }
        let graph = FactorGraph::new(
            2,
            vec![
                Factor::new(vec![0], vec![1.0, 3.0]).unwrap(),
                Factor::new(vec![0, 1], vec![2.0, 0.5, 1.5, 4.0]).unwrap(),
            ],
        )
        .unwrap();
        // x = (1, 1): phi0(1) * phi1(1, 1) = 3 * 4.
        assert!((graph.free_energy(&[1, 1]) + 12f64.ln()).abs() < 1e-12);
        assert_eq!(graph.num_visible(), 2);
    }
}
