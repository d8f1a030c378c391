//! Class-conditional models: one model p_k(v) = exp(-F_k(v)) / Z_k per class k, a prior pi_k,
//! and the Bayes decision
//!
//!   predict(v) = argmax_k [ -F_k(v) - ln Z_k + ln pi_k ],
//!
//! the class of highest posterior P(k | v) proportional to pi_k p_k(v). Ties go to the first
//! class (in ascending label order). Training one RBM per class is [`split_by_class`] followed by
//! one training run per part, each seeded by [`class_seed`].

use rayon::prelude::*;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::model::FreeEnergyModel;

/// The seed of class index `k`'s training run in a run seeded by `seed`: SplitMix64 of
/// `seed XOR (k + 1) * 0x9E3779B97F4A7C15` (distinct per class, unrelated to the run's own
/// streams, and the same whatever the number of threads or the order the classes run in).
pub fn class_seed(seed: u64, k: usize) -> u64 {
    let mut state = seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    crate::rng::splitmix64(&mut state)
}

/// The rows of `data` grouped by label: `(label, rows)` in ascending label order, each part in
/// the original row order. `labels` must have one entry per row.
pub fn split_by_class(data: &Dataset, labels: &[u32]) -> Result<Vec<(u32, Dataset)>> {
    if labels.len() != data.rows() {
        return Err(Error::SizeMismatch(format!(
            "{} labels for {} examples",
            labels.len(),
            data.rows()
        )));
    }
    let mut classes: Vec<u32> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    Ok(classes
        .into_iter()
        .map(|c| {
            let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
            (c, data.select(&rows))
        })
        .collect())
}

/// One class of a classifier: its model and the constant -ln Z_k + ln pi_k added to -F_k.
pub struct ClassModel<'a> {
    /// The class-conditional model p_k.
    pub model: &'a dyn FreeEnergyModel,
    /// ln Z_k.
    pub log_z: f64,
    /// ln pi_k (the class prior).
    pub log_prior: f64,
}

/// Rows per parallel task (fixed: results do not depend on the number of threads).
const ROWS_PER_TASK: usize = 64;

/// The unnormalised log-posteriors -F_k(v) - ln Z_k + ln pi_k of every row (row-major,
/// `rows x classes`).
pub fn log_posteriors(classes: &[ClassModel], data: &Dataset) -> Result<Vec<f64>> {
    if classes.is_empty() {
        return Err(Error::param("classes", "the classifier has no classes"));
    }
    for (k, c) in classes.iter().enumerate() {
        if c.model.num_visible() != data.cols() {
            return Err(Error::SizeMismatch(format!(
                "the data has {} columns per example, class {k}'s model {} visible units",
                data.cols(),
                c.model.num_visible()
            )));
        }
    }
    let cols = data.cols().max(1);
    let parts: Vec<Vec<f64>> = data
        .data()
        .par_chunks(ROWS_PER_TASK * cols)
        .map(|block| {
            let rows = block.len() / cols;
            let n = classes.len();
            let (mut out, mut free) = (vec![0.0; rows * n], vec![0.0; rows]);
            for (k, c) in classes.iter().enumerate() {
                c.model.free_energies_into(block, &mut free);
                for (r, f) in free.iter().enumerate() {
                    out[r * n + k] = -f - c.log_z + c.log_prior;
                }
            }
            out
        })
        .collect();
    Ok(parts.concat())
}

/// The index of the largest entry of each row of `scores` (`rows x classes`); ties go to the
/// first. A row where every class has probability 0 (all -inf) predicts class 0.
pub fn argmax_rows(scores: &[f64], classes: usize) -> Vec<usize> {
    scores
        .chunks_exact(classes.max(1))
        .map(|row| {
            let mut best = 0;
            for (k, &s) in row.iter().enumerate() {
                if s > row[best] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rbm;

    #[test]
    fn classes_split_in_label_order_and_seeds_differ() {
        let data = Dataset::new(4, 1, vec![0, 1, 1, 0]).unwrap();
        let parts = split_by_class(&data, &[7, 2, 7, 2]).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0, parts[0].1.data()), (2, &[1u8, 0][..]));
        assert_eq!((parts[1].0, parts[1].1.data()), (7, &[0u8, 1][..]));
        assert!(split_by_class(&data, &[1, 2]).is_err());
        assert_ne!(class_seed(42, 0), class_seed(42, 1));
        assert_ne!(class_seed(42, 0), class_seed(43, 0));
    }

    #[test]
    fn ties_go_to_the_first_class() {
        assert_eq!(argmax_rows(&[1.0, 1.0, 0.0, 2.0], 2), vec![0, 1]);
        let rbm = Rbm::new(1, 1, vec![0.0], vec![0.0], vec![0.0]).unwrap();
        let c = [ClassModel {
            model: &rbm,
            log_z: 0.0,
            log_prior: 0.0,
        }];
        let wrong = Dataset::new(1, 2, vec![0, 1]).unwrap();
        assert!(log_posteriors(&c, &wrong).is_err());
    }
}
