//! Per-example scores of a [`FreeEnergyModel`]: the free energy F(v), the unnormalised
//! log-probability ln p~(v) = -F(v), and ln p(v) = -F(v) - ln Z when ln Z is known.
//!
//! Comparisons between examples need no Z (p(v) / p(v') = exp(F(v') - F(v))), so anomaly
//! rankings use F alone (see [`crate::metrics`]); ln Z only shifts every ln p by one constant.

use rayon::prelude::*;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::model::FreeEnergyModel;
use crate::model::composite::LogZ;

/// Rows per parallel task (fixed, so that nothing depends on the number of threads).
const ROWS_PER_TASK: usize = 64;

/// F(v) of every row of `data`, in row order. Refuses data whose width is not the model's
/// number of visible units. A row of probability 0 (a UAI table entry 0) has F = +inf.
pub fn free_energies<M: FreeEnergyModel + ?Sized>(model: &M, data: &Dataset) -> Result<Vec<f64>> {
    if data.cols() != model.num_visible() {
        return Err(Error::SizeMismatch(format!(
            "the data has {} columns per example, the model {} visible units",
            data.cols(),
            model.num_visible()
        )));
    }
    let cols = data.cols().max(1);
    let parts: Vec<Vec<f64>> = data
        .data()
        .par_chunks(ROWS_PER_TASK * cols)
        .map(|block| {
            let mut out = vec![0.0; block.len() / cols];
            model.free_energies_into(block, &mut out);
            out
        })
        .collect();
    let out: Vec<f64> = parts.concat();
    if let Some(i) = out.iter().position(|f| f.is_nan()) {
        return Err(Error::InvalidModel(format!(
            "the free energy of example {i} is NaN: the model's parameters overflow"
        )));
    }
    Ok(out)
}

/// ln Z of a scored model and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPartition {
    /// ln Z (the estimate, for AIS).
    pub log_z: f64,
    /// The method: `"exact"` (with the exact method's name in `detail`) or `"ais"`.
    pub method: &'static str,
    /// The exact method that ran (`"rbm"`, `"enumerate"`, `"eliminate"`), or `None` for AIS.
    pub detail: Option<&'static str>,
    /// The AIS estimate with its spread, settings and effective sample size, when AIS was used
    /// (directly, or through the stored estimates of a mixture's components).
    pub ais: Option<LogZ>,
}

impl LogPartition {
    /// The interval of ln Z carried into every ln p: ln Z itself (twice) when exact; for AIS,
    /// ln(mean -+ 3 standard errors) of the importance weights (the low end may be -inf).
    pub fn interval(&self) -> (f64, f64) {
        match &self.ais {
            Some(a) => (a.low, a.high),
            None => (self.log_z, self.log_z),
        }
    }
}

/// Mean over the examples of ln p(v) = -F(v) - ln Z, in nats; -inf when an example has
/// probability 0. `None` for no examples.
pub fn mean_log_likelihood(free_energies: &[f64], log_z: f64) -> Option<f64> {
    if free_energies.is_empty() {
        return None;
    }
    let sum: f64 = free_energies.iter().sum();
    Some(-sum / free_energies.len() as f64 - log_z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rbm;

    #[test]
    fn free_energies_follow_the_rows_and_refuse_other_widths() {
        let rbm = Rbm::new(2, 1, vec![1.0, -2.0], vec![0.5, 0.0], vec![0.25]).unwrap();
        let rows: Vec<u8> = (0..200)
            .flat_map(|i| [(i % 2) as u8, (i % 3 == 0) as u8])
            .collect();
        let data = Dataset::new(200, 2, rows).unwrap();
        let f = free_energies(&rbm, &data).unwrap();
        for (i, fi) in f.iter().enumerate() {
            // F(v) = -b.v - softplus(c + v.W), written out.
            let v = [(i % 2) as f64, u8::from(i % 3 == 0) as f64];
            let a = 0.25 + v[0] * 1.0 + v[1] * -2.0;
            let direct = -0.5 * v[0] - (1.0 + f64::exp(a)).ln();
            assert!((fi - direct).abs() < 1e-12, "row {i}");
        }
        let wide = Dataset::new(1, 3, vec![0, 1, 0]).unwrap();
        assert!(free_energies(&rbm, &wide).is_err());
        assert_eq!(mean_log_likelihood(&[1.0, 3.0], 0.5), Some(-2.5));
    }
}
