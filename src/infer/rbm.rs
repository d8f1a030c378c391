//! Exact ln Z of an RBM: sum out the larger layer analytically, enumerate the smaller one in
//! Gray-code order.
//!
//! With units in {0, 1} and E(v, h) = -v^T W h - b^T v - c^T h, summing out the visible layer gives
//! Z = sum_h exp(c^T h + sum_i softplus(b_i + (W h)_i)) (and symmetrically when the visible layer
//! is the smaller one, which is enumerated after transposing). The smaller layer (k units) is
//! walked in Gray-code order: one unit j changes per state, so the m activations of the larger
//! layer change by +-column j of W, one vectorised pass of m additions and m softplus terms per
//! state (see `kernel::update_softplus_sum`). Activations are recomputed from scratch at the start
//! of every chunk of 2^11 states, so round-off cannot accumulate. Units of 2^16 states are summed
//! in parallel and merged in a fixed order: the result is bit-identical for any thread count.
//! This is how exact likelihoods of small-hidden-layer MNIST RBMs are computed (e.g. Salakhutdinov
//! and Murray, "On the quantitative analysis of deep belief networks", ICML 2008, with 20 and 25
//! hidden units).

use rayon::prelude::*;

use super::exact::{Enumeration, Shard, gray};
use super::kernel::{block_log_sum, update_log1p_product, update_softplus_sum};
use crate::error::{Error, Result};
use crate::logspace::LogSumExp;
use crate::model::Rbm;
use crate::progress::{Observer, Silent, report_or_interrupt};

/// The largest smaller-layer size that exact RBM enumeration accepts (2^36 states).
pub const MAX_ENUMERATED_UNITS: usize = 36;
const UNIT_BITS: u32 = 16;
const CHUNK_BITS: u32 = 11;

/// The RBM laid out for the walk: k enumerated units, m summed-out units.
struct Layout {
    k: usize,
    m: usize,
    /// Column j of W (the m weights from enumerated unit j), contiguous: `cols[j * m + i]`.
    cols: Vec<f64>,
    /// Bias of the summed-out layer (the starting activations).
    base: Vec<f64>,
    /// Bias of the enumerated layer.
    bias: Vec<f64>,
    /// exp(+-column j), for the multiplicative walk (empty when activations may leave
    /// [-ACT_BOUND, ACT_BOUND]).
    exp_plus: Vec<f64>,
    exp_minus: Vec<f64>,
    /// Factors per lane between renormalisations of the products.
    renorm: usize,
}

/// The multiplicative walk keeps e_i = exp(a_i) directly; it is used when every activation that
/// can occur lies in [-ACT_BOUND, ACT_BOUND] (bounded by b_i + sum_j min/max(W_ij, 0)).
const ACT_BOUND: f64 = 600.0;

impl Layout {
    fn new(rbm: &Rbm) -> Layout {
        let model = if rbm.n_hidden() <= rbm.n_visible() {
            rbm.clone()
        } else {
            rbm.transposed()
        };
        let (m, k) = (model.n_visible(), model.n_hidden());
        let w = model.weights();
        let mut cols = vec![0.0; k * m];
        for i in 0..m {
            for j in 0..k {
                cols[j * m + i] = w[i * k + j];
            }
        }
        let base = model.visible_bias().to_vec();
        // Range of each activation over all states of the enumerated layer.
        let mut widest: f64 = 0.0;
        for i in 0..m {
            let (mut lo, mut hi) = (base[i], base[i]);
            for j in 0..k {
                let w = cols[j * m + i];
                if w < 0.0 {
                    lo += w;
                } else {
                    hi += w;
                }
            }
            widest = widest.max(lo.abs()).max(hi.abs());
        }
        let (exp_plus, exp_minus, renorm) = if widest <= ACT_BOUND {
            // Each factor 1 + e^a < 2^(widest / ln 2 + 1); keep renorm of them below 2^1000.
            let bits = widest / std::f64::consts::LN_2 + 1.0;
            let renorm = ((1000.0 / bits).floor() as usize).clamp(1, 64);
            (
                cols.iter().map(|w| w.exp()).collect(),
                cols.iter().map(|w| (-w).exp()).collect(),
                renorm,
            )
        } else {
            (Vec::new(), Vec::new(), 0)
        };
        Layout {
            k,
            m,
            cols,
            base,
            bias: model.hidden_bias().to_vec(),
            exp_plus,
            exp_minus,
            renorm,
        }
    }

    /// Sums the states [start, end) with e_i = exp(a_i) updated by multiplication.
    #[inline(always)]
    fn walk_multiplicative(
        &self,
        start: u64,
        end: u64,
        act: &mut [f64],
        buf: &mut [f64],
    ) -> LogSumExp {
        let chunk = 1u64 << CHUNK_BITS.min(self.k as u32);
        let ones = vec![1.0; self.m];
        let mut total = LogSumExp::new();
        let mut k = start;
        while k < end {
            let chunk_end = ((k / chunk + 1) * chunk).min(end);
            let len = (chunk_end - k) as usize;
            let x = gray(k);
            let mut linear = self.activations_at(x, act);
            for a in act.iter_mut() {
                *a = a.exp();
            }
            buf[0] = linear + update_log1p_product(act, &ones, self.renorm);
            for (t, slot) in buf[1..len].iter_mut().enumerate() {
                let kk = k + 1 + t as u64;
                let j = kk.trailing_zeros() as usize;
                let on = gray(kk) >> j & 1 == 1;
                let (sign, factors) = if on {
                    (1.0, &self.exp_plus[j * self.m..(j + 1) * self.m])
                } else {
                    (-1.0, &self.exp_minus[j * self.m..(j + 1) * self.m])
                };
                linear += sign * self.bias[j];
                *slot = linear + update_log1p_product(act, factors, self.renorm);
            }
            total.add(block_log_sum(&buf[..len]));
            k = chunk_end;
        }
        total
    }

    /// Sets `act` to the larger layer's activations for the smaller layer's state `x`, from
    /// scratch (so rounding does not drift over a chunk), and returns the linear term b^T x.
    fn activations_at(&self, x: u64, act: &mut [f64]) -> f64 {
        act.copy_from_slice(&self.base);
        let mut linear = 0.0;
        for j in 0..self.k {
            if x >> j & 1 == 1 {
                linear += self.bias[j];
                for (a, &w) in act.iter_mut().zip(self.col(j)) {
                    *a += w;
                }
            }
        }
        linear
    }

    fn col(&self, j: usize) -> &[f64] {
        &self.cols[j * self.m..(j + 1) * self.m]
    }

    /// Sums the states [start, end) (within one unit).
    #[inline(always)]
    fn walk_inner(&self, start: u64, end: u64, act: &mut [f64], buf: &mut [f64]) -> LogSumExp {
        if self.renorm > 0 {
            return self.walk_multiplicative(start, end, act, buf);
        }
        let chunk = 1u64 << CHUNK_BITS.min(self.k as u32);
        let mut total = LogSumExp::new();
        let mut k = start;
        while k < end {
            let chunk_end = ((k / chunk + 1) * chunk).min(end);
            let len = (chunk_end - k) as usize;
            let x = gray(k);
            let mut linear = self.activations_at(x, act);
            buf[0] = linear + update_softplus_sum(act, self.col(0), 0.0);
            for (t, slot) in buf[1..len].iter_mut().enumerate() {
                let kk = k + 1 + t as u64;
                let j = kk.trailing_zeros() as usize;
                let sign = if gray(kk) >> j & 1 == 1 { 1.0 } else { -1.0 };
                linear += sign * self.bias[j];
                *slot = linear + update_softplus_sum(act, self.col(j), sign);
            }
            total.add(block_log_sum(&buf[..len]));
            k = chunk_end;
        }
        total
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA (checked by the caller).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn walk_avx2(
        &self,
        start: u64,
        end: u64,
        act: &mut [f64],
        buf: &mut [f64],
    ) -> LogSumExp {
        self.walk_inner(start, end, act, buf)
    }

    fn walk(&self, start: u64, end: u64) -> LogSumExp {
        let mut act = vec![0.0; self.m];
        let mut buf = vec![0.0; 1 << CHUNK_BITS.min(self.k as u32)];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected.
            return unsafe { self.walk_avx2(start, end, &mut act, &mut buf) };
        }
        self.walk_inner(start, end, &mut act, &mut buf)
    }
}

/// Enumerates the smaller layer of `rbm` over the states of `shard`, returning the log-sum of
/// exp(-F) over them (ln Z for [`Shard::WHOLE`]). The observer is told the states done after each
/// batch of units and may stop the run (`Error::Interrupted`).
pub fn rbm_enumerate(rbm: &Rbm, shard: Shard, observer: &mut dyn Observer) -> Result<Enumeration> {
    let layout = Layout::new(rbm);
    let k = layout.k;
    if k > MAX_ENUMERATED_UNITS {
        return Err(Error::TooLarge {
            method: "exact RBM enumeration".into(),
            detail: format!(
                "the smaller layer has {k} units: 2^{k} states (at most 2^{MAX_ENUMERATED_UNITS})"
            ),
        });
    }
    let (start, end) = shard.range(1u64 << k);
    let unit = 1u64 << UNIT_BITS;
    let mut units = Vec::new();
    let mut s = start;
    while s < end {
        let e = ((s / unit + 1) * unit).min(end);
        units.push((s, e));
        s = e;
    }
    let mut total = LogSumExp::new();
    let mut done = 0u64;
    for group in units.chunks(64) {
        let parts: Vec<LogSumExp> = group.par_iter().map(|&(a, b)| layout.walk(a, b)).collect();
        for p in &parts {
            total.merge(p);
        }
        done += group.iter().map(|&(a, b)| b - a).sum::<u64>();
        report_or_interrupt(observer, done, end - start)?;
    }
    Ok(Enumeration {
        log_sum: total.value(),
        marginals: None,
        states: end - start,
        range: (start, end),
    })
}

/// Exact ln Z of `rbm`, enumerating the smaller layer (cost 2^min(n_v, n_h) * max(n_v, n_h)).
pub fn rbm_log_partition(rbm: &Rbm) -> Result<f64> {
    Ok(rbm_enumerate(rbm, Shard::WHOLE, &mut Silent)?.log_sum)
}

/// The number of states [`rbm_log_partition`] enumerates, 2^min(n_v, n_h), as a power of two.
pub fn rbm_enumerated_bits(rbm: &Rbm) -> usize {
    rbm.n_visible().min(rbm.n_hidden())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_rbm(nv: usize, nh: usize, scale: f64) -> Rbm {
        let w = (0..nv * nh)
            .map(|k| ((k * 13 % 17) as f64 - 8.0) * 0.25 * scale)
            .collect();
        let b = (0..nv).map(|i| 0.3 - i as f64 * 0.15).collect();
        let c = (0..nh).map(|j| j as f64 * 0.2 - 0.3).collect();
        Rbm::new(nv, nh, w, b, c).unwrap()
    }

    fn brute(rbm: &Rbm) -> f64 {
        let (nv, nh) = (rbm.n_visible(), rbm.n_hidden());
        let mut acc = LogSumExp::new();
        for vs in 0..(1u32 << nv) {
            let v: Vec<u8> = (0..nv).map(|i| (vs >> i & 1) as u8).collect();
            for hs in 0..(1u32 << nh) {
                let h: Vec<u8> = (0..nh).map(|j| (hs >> j & 1) as u8).collect();
                acc.add(-rbm.energy(&v, &h));
            }
        }
        acc.value()
    }

    #[test]
    fn matches_enumeration_over_both_layers_and_either_orientation() {
        let rbm = test_rbm(6, 5, 1.0);
        let reference = brute(&rbm);
        let exact = rbm_log_partition(&rbm).unwrap();
        assert!((exact - reference).abs() < 1e-12 * reference.abs().max(1.0));
        let swapped = rbm_log_partition(&rbm.transposed()).unwrap();
        assert!((swapped - exact).abs() < 1e-12 * exact.abs().max(1.0));
        // The uniform RBM: Z = 2^(n_v + n_h).
        let zero = Rbm::zeros(4, 3).unwrap();
        assert!((rbm_log_partition(&zero).unwrap() - 7.0 * 2f64.ln()).abs() < 1e-12);
    }

    /// ln Z by the hidden free energies of every hidden state, one at a time (the plain sum the
    /// fast walks must equal).
    fn log_z_over_hidden_states(rbm: &Rbm) -> f64 {
        let nh = rbm.n_hidden();
        let terms: Vec<f64> = (0..1u32 << nh)
            .map(|hs| {
                let h: Vec<u8> = (0..nh).map(|j| (hs >> j & 1) as u8).collect();
                -rbm.hidden_free_energy(&h)
            })
            .collect();
        crate::logspace::log_sum_exp(&terms)
    }

    #[test]
    fn multiplicative_walk_matches_scalar_free_energies_across_chunks() {
        let rbm = test_rbm(40, 13, 1.0);
        assert!(
            Layout::new(&rbm).renorm > 0,
            "small weights take the multiplicative walk"
        );
        let reference = log_z_over_hidden_states(&rbm);
        let got = rbm_log_partition(&rbm).unwrap();
        assert!(
            (got - reference).abs() < 1e-12 * reference.abs(),
            "{got} vs {reference}"
        );
    }

    #[test]
    fn survives_huge_weights_and_chunk_boundaries() {
        // 13 hidden units enumerated: several chunks; weights up to +-400 would overflow exp.
        let rbm = test_rbm(16, 13, 200.0);
        let reference = log_z_over_hidden_states(&rbm);
        let got = rbm_log_partition(&rbm).unwrap();
        assert!(got.is_finite());
        assert!(
            (got - reference).abs() < 1e-12 * reference.abs(),
            "{got} vs {reference}"
        );
    }
}
