//! Restricted Boltzmann machine with binary units.

use crate::error::{Error, Result};
use crate::logspace::{sigmoid, softplus};

/// The largest sum of the absolute values of all parameters, sum |W_ij| + sum |b_i| + sum |c_j|,
/// that an [`Rbm`] may have.
///
/// That sum bounds |E(v, h)| for every state and every pre-activation c_j + (v^T W)_j and
/// b_i + (W h)_i, so below it no energy, free energy or activation overflows: not in f64 (max
/// 1.8e308), and not in the f32 kernels of sampling, training and AIS (max 3.4e38), where the
/// margin of 8 orders of magnitude covers rounding in sums. Finite weights such as 1e308 used to
/// give inf - inf = NaN in ln Z and the likelihoods.
pub const MAX_PARAMETER_SUM: f64 = 1e30;

/// The parameter of largest magnitude when sum |W| + sum |b| + sum |c| exceeds
/// [`MAX_PARAMETER_SUM`] (or overflows): (tensor name, index, value, sum as f64).
pub fn parameter_bound_violation<T: Copy + Into<f64>>(
    weights: &[T],
    visible_bias: &[T],
    hidden_bias: &[T],
) -> Option<(&'static str, usize, f64, f64)> {
    let tensors = [
        ("weights", weights),
        ("visible_bias", visible_bias),
        ("hidden_bias", hidden_bias),
    ];
    let sum: f64 = tensors
        .iter()
        .flat_map(|(_, x)| x.iter())
        .map(|&v| v.into().abs())
        .sum();
    if sum <= MAX_PARAMETER_SUM {
        return None;
    }
    let mut largest = ("weights", 0, 0.0f64);
    for (name, x) in tensors {
        for (k, &v) in x.iter().enumerate() {
            let v: f64 = v.into();
            if v.abs() > largest.2.abs() {
                largest = (name, k, v);
            }
        }
    }
    Some((largest.0, largest.1, largest.2, sum))
}

/// A binary-binary RBM over visible v in {0,1}^n_v and hidden h in {0,1}^n_h:
///
/// E(v, h) = - v^T W h - b^T v - c^T h,
///
/// with `weights` W stored row-major as `n_visible x n_hidden` (entry (i, j) at `i * n_hidden + j`),
/// visible bias b and hidden bias c. Summing out h gives the free energy
/// F(v) = - b^T v - sum_j softplus(c_j + (v^T W)_j), and ln p(v) = -F(v) - ln Z.
#[derive(Debug, Clone, PartialEq)]
pub struct Rbm {
    n_visible: usize,
    n_hidden: usize,
    weights: Vec<f64>,
    visible_bias: Vec<f64>,
    hidden_bias: Vec<f64>,
}

impl Rbm {
    /// Builds an RBM, checking sizes and that every parameter is finite.
    pub fn new(
        n_visible: usize,
        n_hidden: usize,
        weights: Vec<f64>,
        visible_bias: Vec<f64>,
        hidden_bias: Vec<f64>,
    ) -> Result<Self> {
        if n_visible == 0 || n_hidden == 0 {
            return Err(Error::InvalidModel(format!(
                "an RBM needs at least one visible and one hidden unit, got {n_visible} x {n_hidden}"
            )));
        }
        if weights.len() != n_visible * n_hidden {
            return Err(Error::SizeMismatch(format!(
                "weights have {} entries, expected {n_visible} x {n_hidden} = {}",
                weights.len(),
                n_visible * n_hidden
            )));
        }
        if visible_bias.len() != n_visible {
            return Err(Error::SizeMismatch(format!(
                "visible bias has {} entries, expected {n_visible}",
                visible_bias.len()
            )));
        }
        if hidden_bias.len() != n_hidden {
            return Err(Error::SizeMismatch(format!(
                "hidden bias has {} entries, expected {n_hidden}",
                hidden_bias.len()
            )));
        }
        for (name, values) in [
            ("weights", &weights),
            ("visible_bias", &visible_bias),
            ("hidden_bias", &hidden_bias),
        ] {
            if let Some(k) = values.iter().position(|x| !x.is_finite()) {
                return Err(Error::InvalidModel(format!(
                    "{name}[{k}] = {} is not finite",
                    values[k]
                )));
            }
        }
        if let Some((name, k, value, sum)) =
            parameter_bound_violation(&weights, &visible_bias, &hidden_bias)
        {
            return Err(Error::InvalidModel(format!(
                "{name}[{k}] = {value:e} is too large: the parameters' absolute values sum to \
                 {sum:e}, at most {MAX_PARAMETER_SUM:e} is allowed (so that every energy, free \
                 energy and single-precision activation stays finite)"
            )));
        }
        Ok(Rbm {
            n_visible,
            n_hidden,
            weights,
            visible_bias,
            hidden_bias,
        })
    }

    /// An RBM with all parameters zero (the uniform distribution).
    pub fn zeros(n_visible: usize, n_hidden: usize) -> Result<Self> {
        Self::new(
            n_visible,
            n_hidden,
            vec![0.0; n_visible * n_hidden],
            vec![0.0; n_visible],
            vec![0.0; n_hidden],
        )
    }

    /// Number of visible units.
    pub fn n_visible(&self) -> usize {
        self.n_visible
    }
    /// Number of hidden units.
    pub fn n_hidden(&self) -> usize {
        self.n_hidden
    }
    /// W, row-major `n_visible x n_hidden`.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
    /// Visible bias b.
    pub fn visible_bias(&self) -> &[f64] {
        &self.visible_bias
    }
    /// Hidden bias c.
    pub fn hidden_bias(&self) -> &[f64] {
        &self.hidden_bias
    }
    /// W_ij.
    #[inline]
    pub fn weight(&self, i: usize, j: usize) -> f64 {
        self.weights[i * self.n_hidden + j]
    }

    /// E(v, h) = - v^T W h - b^T v - c^T h.
    pub fn energy(&self, v: &[u8], h: &[u8]) -> f64 {
        let mut e = 0.0;
        for (i, &vi) in v.iter().enumerate() {
            if vi != 0 {
                e -= self.visible_bias[i];
                let row = &self.weights[i * self.n_hidden..(i + 1) * self.n_hidden];
                for (w, &hj) in row.iter().zip(h) {
                    if hj != 0 {
                        e -= w;
                    }
                }
            }
        }
        for (c, &hj) in self.hidden_bias.iter().zip(h) {
            if hj != 0 {
                e -= c;
            }
        }
        e
    }

    /// Hidden pre-activations c_j + (v^T W)_j into `out` (length n_hidden).
    pub fn hidden_activations(&self, v: &[u8], out: &mut [f64]) {
        out.copy_from_slice(&self.hidden_bias);
        for (i, &vi) in v.iter().enumerate() {
            if vi != 0 {
                let row = &self.weights[i * self.n_hidden..(i + 1) * self.n_hidden];
                for (o, w) in out.iter_mut().zip(row) {
                    *o += w;
                }
            }
        }
    }

    /// Visible pre-activations b_i + (W h)_i into `out` (length n_visible).
    pub fn visible_activations(&self, h: &[u8], out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            let row = &self.weights[i * self.n_hidden..(i + 1) * self.n_hidden];
            let mut a = self.visible_bias[i];
            for (w, &hj) in row.iter().zip(h) {
                if hj != 0 {
                    a += w;
                }
            }
            *o = a;
        }
    }

    /// P(h_j = 1 | v) = sigmoid(c_j + (v^T W)_j) into `out`.
    pub fn hidden_probs(&self, v: &[u8], out: &mut [f64]) {
        self.hidden_activations(v, out);
        out.iter_mut().for_each(|a| *a = sigmoid(*a));
    }

    /// P(v_i = 1 | h) = sigmoid(b_i + (W h)_i) into `out`.
    pub fn visible_probs(&self, h: &[u8], out: &mut [f64]) {
        self.visible_activations(h, out);
        out.iter_mut().for_each(|a| *a = sigmoid(*a));
    }

    /// Free energy of a visible vector: F(v) = - b^T v - sum_j softplus(c_j + (v^T W)_j),
    /// so that sum_h exp(-E(v, h)) = exp(-F(v)).
    ///
    /// Allocates a buffer of `n_hidden` values per call; loops should use
    /// [`Rbm::free_energy_with`].
    pub fn free_energy(&self, v: &[u8]) -> f64 {
        self.free_energy_with(v, &mut vec![0.0; self.n_hidden])
    }

    /// [`Rbm::free_energy`] with the hidden activations written to `scratch` (its first
    /// `n_hidden` entries; panics when it is shorter), so that a loop allocates nothing.
    pub fn free_energy_with(&self, v: &[u8], scratch: &mut [f64]) -> f64 {
        let act = &mut scratch[..self.n_hidden];
        self.hidden_activations(v, act);
        let bias: f64 = v
            .iter()
            .zip(&self.visible_bias)
            .filter(|(x, _)| **x != 0)
            .map(|(_, b)| b)
            .sum();
        -bias - act.iter().map(|&a| softplus(a)).sum::<f64>()
    }

    /// Free energy of a hidden vector, summing out the visible layer:
    /// F(h) = - c^T h - sum_i softplus(b_i + (W h)_i).
    pub fn hidden_free_energy(&self, h: &[u8]) -> f64 {
        let mut act = vec![0.0; self.n_visible];
        self.visible_activations(h, &mut act);
        let bias: f64 = h
            .iter()
            .zip(&self.hidden_bias)
            .filter(|(x, _)| **x != 0)
            .map(|(_, c)| c)
            .sum();
        -bias - act.iter().map(|&a| softplus(a)).sum::<f64>()
    }

    /// The same RBM with the layers swapped (W transposed, biases exchanged).
    pub fn transposed(&self) -> Rbm {
        let mut w = vec![0.0; self.weights.len()];
        for i in 0..self.n_visible {
            for j in 0..self.n_hidden {
                w[j * self.n_visible + i] = self.weights[i * self.n_hidden + j];
            }
        }
        Rbm {
            n_visible: self.n_hidden,
            n_hidden: self.n_visible,
            weights: w,
            visible_bias: self.hidden_bias.clone(),
            hidden_bias: self.visible_bias.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logspace::log_sum_exp;

    fn small_rbm() -> Rbm {
        let (nv, nh) = (5, 4);
        let w = (0..nv * nh)
            .map(|k| ((k * 7 % 11) as f64 - 5.0) * 0.3)
            .collect();
        let b = (0..nv).map(|i| i as f64 * 0.2 - 0.4).collect();
        let c = (0..nh).map(|j| 0.5 - j as f64 * 0.3).collect();
        Rbm::new(nv, nh, w, b, c).unwrap()
    }

    fn bits(state: usize, n: usize) -> Vec<u8> {
        (0..n).map(|k| (state >> k & 1) as u8).collect()
    }

    #[test]
    fn finite_parameters_whose_sums_overflow_are_refused_with_the_largest_named() {
        // Each value is finite; their sum overflows f64 (and any f32 activation).
        let err = Rbm::new(2, 1, vec![1e308, 1e308], vec![0.0, -1e308], vec![0.5])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("weights[0] = 1e308") && err.contains("1e30"),
            "{err}"
        );
        // The bound itself is allowed; the largest entry is named whatever its tensor.
        assert!(Rbm::new(1, 1, vec![0.5e30], vec![0.25e30], vec![0.25e30]).is_ok());
        let err = Rbm::new(1, 2, vec![1.0, -2.0], vec![0.0], vec![3.0, -4e30])
            .unwrap_err()
            .to_string();
        assert!(err.contains("hidden_bias[1] = -4e30"), "{err}");
    }

    #[test]
    fn free_energy_equals_brute_force_sum_over_hidden() {
        let rbm = small_rbm();
        for vs in 0..32 {
            let v = bits(vs, 5);
            let terms: Vec<f64> = (0..16).map(|hs| -rbm.energy(&v, &bits(hs, 4))).collect();
            assert!((rbm.free_energy(&v) + log_sum_exp(&terms)).abs() < 1e-12);
            // The scratch version computes the same numbers in the same order, from any
            // previous scratch contents (here: the last state's activations, or garbage).
            let mut scratch = vec![f64::NAN; 6];
            let f = rbm.free_energy(&v);
            assert_eq!(
                rbm.free_energy_with(&v, &mut scratch).to_bits(),
                f.to_bits()
            );
            assert_eq!(
                rbm.free_energy_with(&v, &mut scratch).to_bits(),
                f.to_bits()
            );
        }
        for hs in 0..16 {
            let h = bits(hs, 4);
            let terms: Vec<f64> = (0..32).map(|vs| -rbm.energy(&bits(vs, 5), &h)).collect();
            assert!((rbm.hidden_free_energy(&h) + log_sum_exp(&terms)).abs() < 1e-12);
        }
    }

    #[test]
    fn energy_by_hand_and_transpose() {
        let rbm = Rbm::new(2, 1, vec![1.5, -2.0], vec![0.25, 0.5], vec![-1.0]).unwrap();
        // v = (1, 1), h = (1): -(1.5 - 2.0) - (0.75) - (-1.0) = 0.5 - 0.75 + 1.0 = 0.75
        assert!((rbm.energy(&[1, 1], &[1]) - 0.75).abs() < 1e-15);
        let t = rbm.transposed();
        assert!((t.energy(&[1], &[1, 1]) - 0.75).abs() < 1e-15);
        let mut p = [0.0];
        rbm.hidden_probs(&[1, 0], &mut p);
        assert!((p[0] - crate::logspace::sigmoid(0.5)).abs() < 1e-15);
    }

    #[test]
    fn bad_shapes_and_values_are_refused() {
        assert!(Rbm::new(2, 2, vec![0.0; 3], vec![0.0; 2], vec![0.0; 2]).is_err());
        assert!(Rbm::new(2, 2, vec![0.0; 4], vec![0.0; 1], vec![0.0; 2]).is_err());
        assert!(Rbm::new(2, 2, vec![f64::NAN; 4], vec![0.0; 2], vec![0.0; 2]).is_err());
        assert!(Rbm::zeros(0, 2).is_err());
    }
}
