//! Gaussian-Bernoulli RBM: real visible units v in R^n_v, binary hidden units h in {0,1}^n_h.
//!
//! # Convention
//! E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_j c_j h_j - sum_ij (v_i / sigma_i^2) W_ij h_j,
//!
//! so that
//! * p(v | h) = N(b + W h, diag sigma^2),
//! * p(h_j = 1 | v) = sigmoid(a_j(v)) with the hidden pre-activation
//!   a_j(v) = c_j + sum_i v_i W_ij / sigma_i^2,
//! * the free energy (h summed out) is
//!   F(v) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_j softplus(a_j(v)),
//!   with ln p(v) = -F(v) - ln Z,
//! * integrating v out of exp(-E(v, h)) (a Gaussian integral per hidden state) gives
//!   ln Z = logsumexp_h [ c.h + sum_i ((b_i + (W h)_i)^2 - b_i^2) / (2 sigma_i^2) ] +
//!   sum_i ln sqrt(2 pi sigma_i^2),
//!   and p(v) is the mixture over h of N(b + W h, diag sigma^2) with weights proportional to
//!   the bracket's exponential.
//! * The score is grad_v ln p(v) = -grad_v F(v), with
//!   dF/dv_i = (v_i - b_i) / sigma_i^2 - sum_j W_ij sigmoid(a_j(v)) / sigma_i^2.
//!
//! W is stored row-major `n_visible x n_hidden` (entry (i, j) at `i * n_hidden + j`) as in
//! [`crate::model::Rbm`].

// Loops over i (visible) and j (hidden) index several arrays at once, as the formulas do.
#![allow(clippy::needless_range_loop)]

use crate::error::{Error, Result};
use crate::logspace::{LogSumExp, sigmoid, softplus};
use crate::model::rbm::{MAX_PARAMETER_SUM, parameter_bound_violation};

/// ln sqrt(2 pi).
pub const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// The most hidden units whose 2^n_h states [`GaussianRbm::log_partition`] enumerates (2^24
/// states of O(n_v) work each: seconds for the 64 pixels of the digits).
pub const MAX_EXACT_HIDDEN: usize = 24;

/// A Gaussian-Bernoulli RBM (see the module docs for the energy).
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianRbm {
    n_visible: usize,
    n_hidden: usize,
    weights: Vec<f64>,
    visible_bias: Vec<f64>,
    hidden_bias: Vec<f64>,
    visible_sigma: Vec<f64>,
}

impl GaussianRbm {
    /// Builds the model, checking sizes, that every parameter is finite, that the parameters'
    /// absolute values sum to at most [`MAX_PARAMETER_SUM`] and that every sigma_i is a finite
    /// number > 0.
    pub fn new(
        n_visible: usize,
        n_hidden: usize,
        weights: Vec<f64>,
        visible_bias: Vec<f64>,
        hidden_bias: Vec<f64>,
        visible_sigma: Vec<f64>,
    ) -> Result<Self> {
        if n_visible == 0 || n_hidden == 0 {
            return Err(Error::InvalidModel(format!(
                "a Gaussian RBM needs at least one visible and one hidden unit, got \
                 {n_visible} x {n_hidden}"
            )));
        }
        for (name, len, want) in [
            ("weights", weights.len(), n_visible * n_hidden),
            ("visible_bias", visible_bias.len(), n_visible),
            ("hidden_bias", hidden_bias.len(), n_hidden),
            ("visible_sigma", visible_sigma.len(), n_visible),
        ] {
            if len != want {
                return Err(Error::SizeMismatch(format!(
                    "{name} has {len} entries, expected {want} for a {n_visible} x {n_hidden} \
                     Gaussian RBM"
                )));
            }
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
        if let Some(k) = visible_sigma
            .iter()
            .position(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(Error::InvalidModel(format!(
                "visible_sigma[{k}] = {} must be a finite number > 0 (the standard deviation of \
                 visible unit {k} given h)",
                visible_sigma[k]
            )));
        }
        if let Some((name, k, value, sum)) =
            parameter_bound_violation(&weights, &visible_bias, &hidden_bias)
        {
            return Err(Error::InvalidModel(format!(
                "{name}[{k}] = {value:e} is too large: the parameters' absolute values sum to \
                 {sum:e}, at most {MAX_PARAMETER_SUM:e} is allowed"
            )));
        }
        Ok(GaussianRbm {
            n_visible,
            n_hidden,
            weights,
            visible_bias,
            hidden_bias,
            visible_sigma,
        })
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
    /// Visible bias b (the mean of v when h = 0).
    pub fn visible_bias(&self) -> &[f64] {
        &self.visible_bias
    }
    /// Hidden bias c.
    pub fn hidden_bias(&self) -> &[f64] {
        &self.hidden_bias
    }
    /// sigma, the standard deviation of each visible unit given h.
    pub fn visible_sigma(&self) -> &[f64] {
        &self.visible_sigma
    }

    /// E(v, h) (see the module docs).
    pub fn energy(&self, v: &[f64], h: &[u8]) -> f64 {
        let nh = self.n_hidden;
        let mut e = 0.0;
        for i in 0..self.n_visible {
            let lambda = 1.0 / (self.visible_sigma[i] * self.visible_sigma[i]);
            let d = v[i] - self.visible_bias[i];
            e += 0.5 * d * d * lambda;
            let row = &self.weights[i * nh..(i + 1) * nh];
            let wh: f64 = row
                .iter()
                .zip(h)
                .filter(|(_, hj)| **hj != 0)
                .map(|(w, _)| w)
                .sum();
            e -= v[i] * lambda * wh;
        }
        e - self
            .hidden_bias
            .iter()
            .zip(h)
            .filter(|(_, hj)| **hj != 0)
            .map(|(c, _)| c)
            .sum::<f64>()
    }

    /// Hidden pre-activations a_j(v) = c_j + sum_i v_i W_ij / sigma_i^2 into `out` (n_hidden).
    pub fn hidden_activations(&self, v: &[f64], out: &mut [f64]) {
        let nh = self.n_hidden;
        out.copy_from_slice(&self.hidden_bias);
        for (i, &vi) in v.iter().enumerate() {
            let x = vi / (self.visible_sigma[i] * self.visible_sigma[i]);
            let row = &self.weights[i * nh..(i + 1) * nh];
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * w;
            }
        }
    }

    /// The means of p(v | h), b + W h, into `out` (n_visible).
    pub fn visible_means(&self, h: &[u8], out: &mut [f64]) {
        let nh = self.n_hidden;
        for (i, o) in out.iter_mut().enumerate() {
            let row = &self.weights[i * nh..(i + 1) * nh];
            *o = self.visible_bias[i]
                + row
                    .iter()
                    .zip(h)
                    .filter(|(_, hj)| **hj != 0)
                    .map(|(w, _)| w)
                    .sum::<f64>();
        }
    }

    /// F(v) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_j softplus(a_j(v)); `hidden` is scratch
    /// of length n_hidden.
    pub fn free_energy_with(&self, v: &[f64], hidden: &mut [f64]) -> f64 {
        self.hidden_activations(v, hidden);
        let quad: f64 = (0..self.n_visible)
            .map(|i| {
                let d = (v[i] - self.visible_bias[i]) / self.visible_sigma[i];
                0.5 * d * d
            })
            .sum();
        quad - hidden.iter().map(|&a| softplus(a)).sum::<f64>()
    }

    /// F(v) (allocates its scratch; see [`GaussianRbm::free_energy_with`] for loops).
    pub fn free_energy(&self, v: &[f64]) -> f64 {
        self.free_energy_with(v, &mut vec![0.0; self.n_hidden])
    }

    /// grad_v F(v) into `grad` (n_visible), returning F(v):
    /// dF/dv_i = ((v_i - b_i) - sum_j W_ij sigmoid(a_j(v))) / sigma_i^2. `hidden` is scratch
    /// of length n_hidden. The score grad_v ln p(v) is `-grad`.
    pub fn free_energy_grad(&self, v: &[f64], hidden: &mut [f64], grad: &mut [f64]) -> f64 {
        let nh = self.n_hidden;
        self.hidden_activations(v, hidden);
        let mut f = 0.0;
        for a in hidden.iter_mut() {
            f -= softplus(*a);
            *a = sigmoid(*a);
        }
        for i in 0..self.n_visible {
            let lambda = 1.0 / (self.visible_sigma[i] * self.visible_sigma[i]);
            let d = v[i] - self.visible_bias[i];
            f += 0.5 * d * d * lambda;
            let row = &self.weights[i * nh..(i + 1) * nh];
            let ws: f64 = row.iter().zip(hidden.iter()).map(|(w, s)| w * s).sum();
            grad[i] = (d - ws) * lambda;
        }
        f
    }

    /// The log-weight of hidden state h in the mixture p(v) = sum_h pi_h N(b + W h, diag sigma^2):
    /// c.h + sum_i ((b_i + (W h)_i)^2 - b_i^2) / (2 sigma_i^2) (pi_h is its exp over Z, times
    /// prod_i sqrt(2 pi sigma_i^2)). `means` receives b + W h.
    pub fn hidden_log_weight(&self, h: &[u8], means: &mut [f64]) -> f64 {
        self.visible_means(h, means);
        self.log_weight_of_means(h, means)
    }

    fn log_weight_of_means(&self, h: &[u8], means: &[f64]) -> f64 {
        let mut x: f64 = self
            .hidden_bias
            .iter()
            .zip(h)
            .filter(|(_, hj)| **hj != 0)
            .map(|(c, _)| c)
            .sum();
        for i in 0..self.n_visible {
            let b = self.visible_bias[i];
            let s2 = self.visible_sigma[i] * self.visible_sigma[i];
            x += (means[i] * means[i] - b * b) / (2.0 * s2);
        }
        x
    }

    /// sum_i ln sqrt(2 pi sigma_i^2), the Gaussian normaliser of each mixture component.
    pub fn gaussian_log_normaliser(&self) -> f64 {
        self.visible_sigma
            .iter()
            .map(|s| LN_SQRT_2PI + s.ln())
            .sum()
    }

    /// Exact ln Z by enumerating the 2^n_h hidden states (module docs), in Gray-code order with
    /// b + W h updated by one column per step; [`Error::TooLarge`] above [`MAX_EXACT_HIDDEN`].
    pub fn log_partition(&self) -> Result<f64> {
        let mut acc = LogSumExp::new();
        self.for_each_hidden_state(|_, _, lw| acc.add(lw))?;
        Ok(acc.value() + self.gaussian_log_normaliser())
    }

    /// Calls `f(h, b + W h, log-weight of h)` for every hidden state (Gray-code order).
    pub fn for_each_hidden_state(&self, mut f: impl FnMut(&[u8], &[f64], f64)) -> Result<()> {
        let nh = self.n_hidden;
        if nh > MAX_EXACT_HIDDEN {
            return Err(Error::TooLarge {
                method: "exact enumeration of the hidden units of a Gaussian RBM".into(),
                detail: format!(
                    "2^{nh} hidden states; at most {MAX_EXACT_HIDDEN} hidden units are enumerated"
                ),
            });
        }
        let mut h = vec![0u8; nh];
        let mut means = self.visible_bias.clone();
        f(&h, &means, self.log_weight_of_means(&h, &means));
        for step in 1u64..(1u64 << nh) {
            let j = step.trailing_zeros() as usize;
            h[j] ^= 1;
            let sign = if h[j] == 1 { 1.0 } else { -1.0 };
            for (i, m) in means.iter_mut().enumerate() {
                *m += sign * self.weights[i * nh + j];
            }
            // Recompute from scratch now and then, so rounding never accumulates.
            if step % 4096 == 0 {
                self.visible_means(&h, &mut means);
            }
            f(&h, &means, self.log_weight_of_means(&h, &means));
        }
        Ok(())
    }

    /// The exact mean (n_v) and covariance (n_v x n_v, row-major) of v under the model: for the
    /// mixture with weights pi_h and means m_h, mean = sum_h pi_h m_h and
    /// cov = diag(sigma^2) + sum_h pi_h m_h m_h^T - mean mean^T.
    pub fn exact_moments(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let nv = self.n_visible;
        let ln_z_h = {
            let mut acc = LogSumExp::new();
            self.for_each_hidden_state(|_, _, lw| acc.add(lw))?;
            acc.value()
        };
        let mut mean = vec![0.0; nv];
        let mut second = vec![0.0; nv * nv];
        self.for_each_hidden_state(|_, m, lw| {
            let p = (lw - ln_z_h).exp();
            for a in 0..nv {
                mean[a] += p * m[a];
                for b in 0..nv {
                    second[a * nv + b] += p * m[a] * m[b];
                }
            }
        })?;
        for a in 0..nv {
            for b in 0..nv {
                second[a * nv + b] -= mean[a] * mean[b];
            }
            second[a * nv + a] += self.visible_sigma[a] * self.visible_sigma[a];
        }
        Ok((mean, second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> GaussianRbm {
        GaussianRbm::new(
            3,
            2,
            vec![0.5, -1.0, 0.25, 0.8, -0.6, 0.3],
            vec![0.1, -0.3, 0.4],
            vec![0.7, -0.2],
            vec![0.8, 1.3, 0.5],
        )
        .unwrap()
    }

    /// exp(-F(v)) is the sum over h of exp(-E(v, h)); p(h_j | v) is the ratio of those sums.
    #[test]
    fn free_energy_and_hidden_conditional_match_the_energy() {
        let m = model();
        let v = [0.3, -1.2, 2.0];
        let mut sum = 0.0;
        let mut sum_h0 = 0.0;
        for s in 0..4u8 {
            let h = [s & 1, s >> 1 & 1];
            let w = (-m.energy(&v, &h)).exp();
            sum += w;
            if h[0] == 1 {
                sum_h0 += w;
            }
        }
        assert!((m.free_energy(&v) + sum.ln()).abs() < 1e-12);
        let mut a = [0.0; 2];
        m.hidden_activations(&v, &mut a);
        assert!((sigmoid(a[0]) - sum_h0 / sum).abs() < 1e-12);
    }

    /// p(v | h) = N(b + W h, sigma^2): -E(v, h) as a function of v_i is a parabola with that
    /// vertex and curvature -1/sigma_i^2 (checked by three-point differences, exact for a
    /// quadratic up to rounding).
    #[test]
    fn visible_conditional_is_the_stated_gaussian() {
        let m = model();
        let h = [1u8, 0];
        let mut means = [0.0; 3];
        m.visible_means(&h, &mut means);
        for i in 0..3 {
            let e = |x: f64| {
                let mut v = means;
                v[i] = x;
                m.energy(&v, &h)
            };
            let d = 0.1;
            let slope = (e(means[i] + d) - e(means[i] - d)) / (2.0 * d);
            let curv = (e(means[i] + d) - 2.0 * e(means[i]) + e(means[i] - d)) / (d * d);
            assert!(slope.abs() < 1e-10, "{i}: slope {slope}");
            let want = 1.0 / (m.visible_sigma()[i] * m.visible_sigma()[i]);
            assert!((curv - want).abs() < 1e-8, "{i}: {curv} vs {want}");
        }
    }

    /// grad F against central differences (step 1e-5: truncation O(h^2 F''') ~ 1e-10,
    /// rounding ~ 1e-16 / 1e-5 ~ 1e-11; tolerance 1e-7).
    #[test]
    fn free_energy_gradient_matches_finite_differences() {
        let m = model();
        let v = [0.3, -1.2, 2.0];
        let mut hidden = [0.0; 2];
        let mut grad = [0.0; 3];
        let f = m.free_energy_grad(&v, &mut hidden, &mut grad);
        assert!((f - m.free_energy(&v)).abs() < 1e-12);
        let step = 1e-5;
        for i in 0..3 {
            let (mut up, mut down) = (v, v);
            up[i] += step;
            down[i] -= step;
            let fd = (m.free_energy(&up) - m.free_energy(&down)) / (2.0 * step);
            assert!((fd - grad[i]).abs() < 1e-7, "{i}: {fd} vs {}", grad[i]);
        }
    }

    #[test]
    fn bad_sigma_and_sizes_are_refused() {
        let make = |sigma: f64| {
            GaussianRbm::new(1, 1, vec![0.0], vec![0.0], vec![0.0], vec![sigma]).map(|_| ())
        };
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let msg = make(bad).unwrap_err().to_string();
            assert!(msg.contains("visible_sigma[0]"), "{msg}");
        }
        assert!(make(1e-3).is_ok());
        let msg = GaussianRbm::new(2, 1, vec![0.0; 2], vec![0.0; 2], vec![0.0], vec![1.0])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("visible_sigma has 1 entries, expected 2"),
            "{msg}"
        );
    }

    /// The Gray-code enumeration agrees with a direct sum over hidden states, and the exact
    /// moments' covariance is symmetric with the sigma^2 floor on its diagonal.
    #[test]
    fn enumeration_matches_a_direct_sum() {
        let m = model();
        let mut terms = Vec::new();
        let mut means = [0.0; 3];
        for s in 0..4u8 {
            terms.push(m.hidden_log_weight(&[s & 1, s >> 1 & 1], &mut means));
        }
        let direct = crate::logspace::log_sum_exp(&terms) + m.gaussian_log_normaliser();
        assert!((m.log_partition().unwrap() - direct).abs() < 1e-12);
        let (_, cov) = m.exact_moments().unwrap();
        for a in 0..3 {
            assert!(cov[a * 3 + a] >= m.visible_sigma()[a].powi(2) - 1e-12);
            for b in 0..3 {
                assert!((cov[a * 3 + b] - cov[b * 3 + a]).abs() < 1e-12);
            }
        }
    }
}
