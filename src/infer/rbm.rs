//! Exact ln Z of an RBM: sum out the larger layer analytically, enumerate the smaller one.
//!
//! Z = sum_h exp(-F(h)) with F(h) = -c^T h - sum_i softplus(b_i + (W h)_i) when the hidden layer
//! is the smaller one (and symmetrically otherwise), so the cost is 2^min(n_v, n_h) states times
//! max(n_v, n_h) softplus evaluations.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::logspace::LogSumExp;
use crate::model::Rbm;

/// The largest smaller-layer size that exact RBM enumeration accepts (2^30 states).
pub const MAX_ENUMERATED_UNITS: usize = 30;

/// Exact ln Z of `rbm`, enumerating the smaller layer.
///
/// Work is split into fixed blocks of the enumeration, each summed in log space and merged in
/// block order, so the result is bit-identical for any number of threads.
pub fn rbm_log_partition(rbm: &Rbm) -> Result<f64> {
    let model = if rbm.n_hidden() <= rbm.n_visible() {
        rbm.clone()
    } else {
        rbm.transposed()
    };
    let k = model.n_hidden();
    if k > MAX_ENUMERATED_UNITS {
        return Err(Error::TooLarge {
            method: "exact RBM enumeration".into(),
            detail: format!(
                "the smaller layer has {k} units: 2^{k} states (at most 2^{MAX_ENUMERATED_UNITS})"
            ),
        });
    }
    let block_bits = k.min(10);
    let blocks = 1u64 << (k - block_bits);
    let partials: Vec<LogSumExp> = (0..blocks)
        .into_par_iter()
        .map(|block| {
            let mut acc = LogSumExp::new();
            let mut h = vec![0u8; k];
            for low in 0..(1u64 << block_bits) {
                let state = (block << block_bits) | low;
                for (j, hj) in h.iter_mut().enumerate() {
                    *hj = (state >> j & 1) as u8;
                }
                acc.add(-model.hidden_free_energy(&h));
            }
            acc
        })
        .collect();
    let mut total = LogSumExp::new();
    for p in &partials {
        total.merge(p);
    }
    Ok(total.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_enumeration_over_both_layers_and_either_orientation() {
        let (nv, nh) = (6, 5);
        let w = (0..nv * nh)
            .map(|k| ((k * 13 % 17) as f64 - 8.0) * 0.25)
            .collect();
        let b = (0..nv).map(|i| 0.3 - i as f64 * 0.15).collect();
        let c = (0..nh).map(|j| j as f64 * 0.2 - 0.3).collect();
        let rbm = Rbm::new(nv, nh, w, b, c).unwrap();
        let mut brute = LogSumExp::new();
        for vs in 0..(1 << nv) {
            let v: Vec<u8> = (0..nv).map(|i| (vs >> i & 1) as u8).collect();
            for hs in 0..(1 << nh) {
                let h: Vec<u8> = (0..nh).map(|j| (hs >> j & 1) as u8).collect();
                brute.add(-rbm.energy(&v, &h));
            }
        }
        let exact = rbm_log_partition(&rbm).unwrap();
        assert!((exact - brute.value()).abs() < 1e-12 * brute.value().abs().max(1.0));
        let swapped = rbm_log_partition(&rbm.transposed()).unwrap();
        assert!((swapped - exact).abs() < 1e-12 * exact.abs().max(1.0));
        // The uniform RBM: Z = 2^(n_v + n_h).
        let zero = Rbm::zeros(4, 3).unwrap();
        assert!((rbm_log_partition(&zero).unwrap() - 7.0 * 2f64.ln()).abs() < 1e-12);
    }
}
