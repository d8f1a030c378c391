//! The true quality of an RBM: average log-likelihood ln p(v) = -F(v) - ln Z over a dataset, with
//! ln Z exact (enumeration of the smaller layer) or estimated by AIS.

use rayon::prelude::*;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::infer::ais::{AisEstimate, AisParams, ais_log_partition};
use crate::infer::exact::Shard;
use crate::infer::rbm::rbm_enumerate;
use crate::model::Rbm;
use crate::progress::Observer;

/// `Evaluation::Auto` enumerates exactly when the smaller layer has at most this many units
/// (2^25 states: seconds with the Gray-code enumeration); AIS beyond.
pub const AUTO_EXACT_MAX_UNITS: usize = 25;

/// How ln Z is obtained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Evaluation {
    /// Exact enumeration of the smaller layer.
    Exact,
    /// Annealed importance sampling.
    Ais(AisParams),
    /// Exact when the smaller layer has at most [`AUTO_EXACT_MAX_UNITS`] units, else AIS.
    Auto(AisParams),
}

impl Evaluation {
    /// The method that will actually run for `rbm`.
    pub fn resolve(self, rbm: &Rbm) -> Evaluation {
        match self {
            Evaluation::Auto(p) => {
                if rbm.n_visible().min(rbm.n_hidden()) <= AUTO_EXACT_MAX_UNITS {
                    Evaluation::Exact
                } else {
                    Evaluation::Ais(p)
                }
            }
            other => other,
        }
    }
}

/// ln Z of a model and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct LikelihoodReport {
    /// ln Z (the AIS estimate for AIS).
    pub log_z: f64,
    /// `"exact"` or `"ais"`.
    pub method: &'static str,
    /// The AIS details (spread) when AIS was used.
    pub ais: Option<AisEstimate>,
}

/// ln Z of `rbm` by `method`. AIS uses `base_marginals` (the training data's P(v_i = 1)) for its
/// base-rate model. The observer sees the progress of either method and may stop it
/// (`Error::Interrupted`).
pub fn evaluate(
    rbm: &Rbm,
    method: Evaluation,
    base_marginals: &[f64],
    observer: &mut dyn Observer,
) -> Result<LikelihoodReport> {
    match method.resolve(rbm) {
        Evaluation::Exact => Ok(LikelihoodReport {
            log_z: rbm_enumerate(rbm, Shard::WHOLE, observer)?.log_sum,
            method: "exact",
            ais: None,
        }),
        Evaluation::Ais(p) | Evaluation::Auto(p) => {
            let est = ais_log_partition(rbm, base_marginals, &p, observer)?;
            Ok(LikelihoodReport {
                log_z: est.log_z,
                method: "ais",
                ais: Some(est),
            })
        }
    }
}

/// Rows per parallel task of [`average_log_likelihood`] (fixed, so sums do not depend on threads).
const ROWS_PER_TASK: usize = 64;

/// Average over the rows of `data` of ln p(v) = -F(v) - ln Z (nats per example), in f64.
pub fn average_log_likelihood(rbm: &Rbm, data: &Dataset, log_z: f64) -> Result<f64> {
    if data.cols() != rbm.n_visible() {
        return Err(Error::SizeMismatch(format!(
            "the data has {} columns, the model {} visible units",
            data.cols(),
            rbm.n_visible()
        )));
    }
    if data.rows() == 0 {
        return Err(Error::param("data", "the dataset has no examples"));
    }
    let chunks: Vec<f64> = data
        .data()
        .par_chunks(ROWS_PER_TASK * data.cols())
        .map(|block| {
            // One buffer for the hidden activations per task, not per example.
            let mut scratch = vec![0.0; rbm.n_hidden()];
            block
                .chunks_exact(data.cols())
                .map(|v| -rbm.free_energy_with(v, &mut scratch))
                .sum::<f64>()
        })
        .collect();
    Ok(chunks.iter().sum::<f64>() / data.rows() as f64 - log_z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::rbm::rbm_log_partition;
    use crate::logspace::LogSumExp;

    #[test]
    fn probabilities_of_all_states_sum_to_one() {
        let rbm = Rbm::new(
            3,
            2,
            vec![0.5, -1.0, 0.25, 2.0, -0.5, 0.75],
            vec![0.1, -0.2, 0.3],
            vec![-0.4, 0.6],
        )
        .unwrap();
        let log_z = rbm_log_partition(&rbm).unwrap();
        let mut total = LogSumExp::new();
        for s in 0..8u8 {
            let d = Dataset::new(1, 3, vec![s & 1, s >> 1 & 1, s >> 2 & 1]).unwrap();
            total.add(average_log_likelihood(&rbm, &d, log_z).unwrap());
        }
        assert!(total.value().abs() < 1e-12);
        let wrong = Dataset::new(1, 2, vec![0, 1]).unwrap();
        assert!(average_log_likelihood(&rbm, &wrong, log_z).is_err());
    }
}
