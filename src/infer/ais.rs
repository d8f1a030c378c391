//! Annealed importance sampling (AIS) of an RBM's ln Z, after Salakhutdinov & Murray, "On the
//! quantitative analysis of deep belief networks", ICML 2008 (following Neal, "Annealed
//! importance sampling", Statistics and Computing 2001).
//!
//! Units are in {0, 1}. The base model A has no weights and visible biases
//! b_A,i = ln(p_i / (1 - p_i)) of the data's visible marginals p_i (clipped to
//! [`BASE_RATE_CLIP`, 1 - `BASE_RATE_CLIP`]); over (v, h) with the target's hidden layer its
//! partition function is Z_A = 2^n_h prod_i (1 + e^{b_A,i}). The intermediate distributions
//! p_k(v, h) ∝ exp(-(1 - beta_k) E_A(v) - beta_k E_B(v, h)) have the unnormalised marginal
//!
//! ln p*_k(v) = ((1 - beta_k) b_A + beta_k b)^T v + sum_j softplus(beta_k (c_j + (v^T W)_j)),
//!
//! and are visited by one block Gibbs sweep each (h ~ sigmoid(beta_k (c + v^T W)), then
//! v ~ sigmoid((1 - beta_k) b_A + beta_k (b + W h))). A run starting from v_1 ~ p_0 has log
//! weight ln w = sum_{k=1..K} [ln p*_k(v_k) - ln p*_{k-1}(v_k)], and
//! Z_B / Z_A is estimated by the mean of the weights over independent runs.
//!
//! The spread reported is ln(mean ± 3 standard errors) of the weights, as in the paper; the log of
//! the mean is biased low (Jensen), so AIS tends to underestimate ln Z when the runs are too few.
//! Runs are parallel over chains, each chain with its own RNG stream (seed, chain index), so the
//! estimate does not depend on the number of threads.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::linalg::{View, matmul};
use crate::logspace::softplus;
use crate::model::Rbm;
use crate::model::rbm_f32::{RbmF32, bernoulli_rows, sigmoid_rows, visible_probs};
use crate::progress::{Observer, report_or_interrupt};
use crate::rng::{EbmRng, Purpose, stream_for};

/// Number of intermediate distributions in Salakhutdinov & Murray's schedule.
pub const DEFAULT_AIS_BETAS: usize = 14_500;
/// Number of independent AIS runs in Salakhutdinov & Murray's experiments.
pub const DEFAULT_AIS_RUNS: usize = 100;
/// Base-rate marginals are clipped to [clip, 1 - clip] so that every bias is finite.
pub const BASE_RATE_CLIP: f64 = 1e-3;
/// The spread is ln(mean ± this many standard errors of the importance weights).
pub const SPREAD_STANDARD_ERRORS: f64 = 3.0;

/// Settings of an AIS estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AisParams {
    /// Number K of annealing steps (inverse temperatures beta_1..beta_K = 1).
    pub betas: usize,
    /// Number of independent runs (chains).
    pub runs: usize,
    /// Seed of the runs' generators.
    pub seed: u64,
}

impl AisParams {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.betas < 1 {
            return Err(Error::param("ais-betas", "must be at least 1"));
        }
        if self.runs < 2 {
            return Err(Error::param(
                "ais-runs",
                format!("needs at least 2 runs for a spread, got {}", self.runs),
            ));
        }
        Ok(())
    }
}

/// An AIS estimate of ln Z with its spread.
#[derive(Debug, Clone, PartialEq)]
pub struct AisEstimate {
    /// ln Z_B = ln Z_A + ln(mean of the weights).
    pub log_z: f64,
    /// ln Z_A + ln(mean - 3 standard errors): -inf when the interval reaches zero.
    pub log_z_low: f64,
    /// ln Z_A + ln(mean + 3 standard errors).
    pub log_z_high: f64,
    /// ln Z of the base-rate model.
    pub log_z_base: f64,
    /// Number of annealing steps.
    pub betas: usize,
    /// Number of runs.
    pub runs: usize,
}

/// The inverse temperatures beta_0 = 0 < ... < beta_K = 1 of Salakhutdinov & Murray's schedule
/// scaled to `k` steps: uniformly spaced steps over [0, 0.5], [0.5, 0.9] and [0.9, 1] in the
/// proportions 500 : 4,000 : 10,000 of their 14,500 steps (step sizes 1e-3, 1e-4, 1e-5).
pub fn schedule(k: usize) -> Vec<f64> {
    let k = k.max(1);
    let n1 = ((k as f64 * 500.0 / 14_500.0).round() as usize)
        .max(1)
        .min(k);
    let n2 = ((k as f64 * 4_000.0 / 14_500.0).round() as usize).min(k - n1);
    let n3 = k - n1 - n2;
    let mut betas = Vec::with_capacity(k + 1);
    betas.push(0.0);
    let mut segment = |from: f64, to: f64, n: usize| {
        for s in 1..=n {
            betas.push(from + (to - from) * s as f64 / n as f64);
        }
    };
    if n3 == 0 && n2 == 0 {
        segment(0.0, 1.0, n1);
    } else if n3 == 0 {
        segment(0.0, 0.5, n1);
        segment(0.5, 1.0, n2);
    } else {
        segment(0.0, 0.5, n1);
        segment(0.5, 0.9, n2);
        segment(0.9, 1.0, n3);
    }
    *betas.last_mut().expect("non-empty") = 1.0;
    betas
}

/// The base-rate visible biases ln(p / (1 - p)) of the marginals `p`, clipped.
pub fn base_rate_biases(marginals: &[f64]) -> Vec<f64> {
    marginals
        .iter()
        .map(|&p| {
            let p = p.clamp(BASE_RATE_CLIP, 1.0 - BASE_RATE_CLIP);
            (p / (1.0 - p)).ln()
        })
        .collect()
}

/// AIS estimate of ln Z of `rbm` from the base-rate model of `base_marginals` (the data's
/// P(v_i = 1)). The observer sees each annealing step and may stop the run
/// (`Error::Interrupted`).
pub fn ais_log_partition(
    rbm: &Rbm,
    base_marginals: &[f64],
    params: &AisParams,
    observer: &mut dyn Observer,
) -> Result<AisEstimate> {
    params.validate()?;
    let (nv, nh) = (rbm.n_visible(), rbm.n_hidden());
    if base_marginals.len() != nv {
        return Err(Error::SizeMismatch(format!(
            "AIS base rates have {} entries, the model has {nv} visible units",
            base_marginals.len()
        )));
    }
    if let Some(i) = base_marginals.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::param(
            "base marginals",
            format!("entry {i} = {} is not a probability", base_marginals[i]),
        ));
    }
    let runs = params.runs;
    let base_bias = base_rate_biases(base_marginals);
    let log_z_base =
        nh as f64 * std::f64::consts::LN_2 + base_bias.iter().map(|&b| softplus(b)).sum::<f64>();
    let model = RbmF32::from_rbm(rbm);
    let b64 = rbm.visible_bias();
    let c64 = rbm.hidden_bias();
    let betas = schedule(params.betas);

    let mut rngs: Vec<EbmRng> = (0..runs as u64)
        .map(|r| stream_for(params.seed, Purpose::Ais, r))
        .collect();
    // v_1 ~ p_0: independent units with P(v_i = 1) = sigmoid(b_A,i).
    let base32: Vec<f32> = base_bias.iter().map(|&b| b as f32).collect();
    let mut pv = vec![0.0f32; runs * nv];
    sigmoid_rows(&mut pv, 0.0, &base32);
    let mut v = vec![0.0f32; runs * nv];
    bernoulli_rows(&pv, &mut v, nv, &mut rngs);

    let mut act = vec![0.0f32; runs * nh];
    let mut h = vec![0.0f32; runs * nh];
    let mut log_w = vec![0.0f64; runs];
    let mut hidden_offset = vec![0.0f32; nh];
    let mut visible_offset = vec![0.0f32; nv];
    for k in 1..betas.len() {
        let (b_prev, b_k) = (betas[k - 1], betas[k]);
        // Pre-activations a = v W (the hidden bias is added in f64 below).
        matmul(&mut act, View::row_major(&v, runs, nv), model.w(), 0.0, 1.0);
        // ln p*_k(v) - ln p*_{k-1}(v) for every run, in f64.
        let dbeta = b_k - b_prev;
        log_w
            .par_iter_mut()
            .zip(act.par_chunks_exact(nh))
            .zip(v.par_chunks_exact(nv))
            .with_min_len(8)
            .for_each(|((w, a_row), v_row)| {
                let mut delta = 0.0;
                for ((&vi, &b), &ba) in v_row.iter().zip(b64).zip(&base_bias) {
                    if vi != 0.0 {
                        delta += dbeta * (b - ba);
                    }
                }
                for (&a, &c) in a_row.iter().zip(c64) {
                    let x = a as f64 + c;
                    delta += softplus(b_k * x) - softplus(b_prev * x);
                }
                *w += delta;
            });
        if k + 1 == betas.len() {
            break;
        }
        // Transition T_k: h ~ sigmoid(beta_k (v W + c)), v ~ sigmoid(beta_k W h + (1-beta_k) b_A + beta_k b).
        let bk = b_k as f32;
        for (o, &c) in hidden_offset.iter_mut().zip(c64) {
            *o = (b_k * c) as f32;
        }
        sigmoid_rows(&mut act, bk, &hidden_offset);
        bernoulli_rows(&act, &mut h, nh, &mut rngs);
        for ((o, &b), &ba) in visible_offset.iter_mut().zip(b64).zip(&base_bias) {
            *o = ((1.0 - b_k) * ba + b_k * b) as f32;
        }
        visible_probs(&model, &h, &mut pv, bk, &visible_offset);
        bernoulli_rows(&pv, &mut v, nv, &mut rngs);
        if k % 64 == 0 {
            report_or_interrupt(observer, k as u64, (betas.len() - 1) as u64)?;
        }
    }
    Ok(summarise(&log_w, log_z_base, params))
}

pub(crate) fn summarise(log_w: &[f64], log_z_base: f64, params: &AisParams) -> AisEstimate {
    let shift = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let n = log_w.len() as f64;
    let scaled: Vec<f64> = log_w.iter().map(|&w| (w - shift).exp()).collect();
    let mean = scaled.iter().sum::<f64>() / n;
    let var = scaled.iter().map(|&x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let se = (var / n).sqrt();
    let spread = SPREAD_STANDARD_ERRORS * se;
    let low = mean - spread;
    AisEstimate {
        log_z: log_z_base + shift + mean.ln(),
        log_z_low: if low > 0.0 {
            log_z_base + shift + low.ln()
        } else {
            f64::NEG_INFINITY
        },
        log_z_high: log_z_base + shift + (mean + spread).ln(),
        log_z_base,
        betas: params.betas,
        runs: params.runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_increasing_from_zero_to_one() {
        for k in [1, 2, 3, 10, 100, 14_500] {
            let b = schedule(k);
            assert_eq!(b.len(), k + 1);
            assert_eq!(b[0], 0.0);
            assert_eq!(b[k], 1.0);
            assert!(b.windows(2).all(|w| w[1] > w[0]), "k = {k}");
        }
        let full = schedule(14_500);
        assert!((full[500] - 0.5).abs() < 1e-12 && (full[4500] - 0.9).abs() < 1e-12);
    }

    #[test]
    fn zero_weight_model_equal_to_base_is_exact() {
        // With W = 0, c = 0 and b = b_A every weight is exactly 1: ln Z is exact, spread zero.
        let p = [0.2, 0.7, 0.5];
        let b = base_rate_biases(&p);
        let rbm = Rbm::new(3, 2, vec![0.0; 6], b.clone(), vec![0.0; 2]).unwrap();
        let params = AisParams {
            betas: 50,
            runs: 8,
            seed: 1,
        };
        let est = ais_log_partition(&rbm, &p, &params, &mut crate::progress::Silent).unwrap();
        let exact = 2.0 * std::f64::consts::LN_2 + b.iter().map(|&x| softplus(x)).sum::<f64>();
        assert!((est.log_z - exact).abs() < 1e-12);
        assert!((est.log_z_high - est.log_z_low).abs() < 1e-12);
    }
}
