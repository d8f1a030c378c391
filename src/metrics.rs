//! Figures of merit for scores and predictions: AUROC, average precision, accuracy and the
//! confusion matrix.
//!
//! Convention for the ranking metrics: a *higher* score means *more anomalous* (more likely to
//! be a positive, label 1). For an energy-based model the natural anomaly score is the free
//! energy F(v) = -ln p~(v): any score that is a strictly increasing function of F (such as
//! -ln p(v) = F(v) + ln Z for one model) ranks the examples identically and so has the same
//! AUROC and average precision.

use crate::error::{Error, Result};

fn check_inputs(scores: &[f64], positive: &[bool]) -> Result<(usize, usize)> {
    if scores.len() != positive.len() {
        return Err(Error::SizeMismatch(format!(
            "{} scores but {} labels",
            scores.len(),
            positive.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::param("scores", format!("score {i} is NaN")));
    }
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(Error::param(
            "labels",
            format!(
                "AUROC and average precision need both classes: {n_pos} examples are labelled 1 \
                 (anomaly) and {n_neg} are labelled 0"
            ),
        ));
    }
    Ok((n_pos, n_neg))
}

/// Indices of `scores` from the highest score to the lowest; equal scores keep index order.
fn descending_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// The area under the ROC curve of `scores` for the positives `positive` (higher score = more
/// likely positive): the Mann-Whitney statistic
///
/// AUROC = (1 / (n_+ n_-)) sum_{i positive} sum_{j negative} (1{s_i > s_j} + 1/2 1{s_i = s_j}),
///
/// the probability that a random positive scores above a random negative, ties counted 1/2.
/// Computed from mid-ranks in O(n log n): AUROC = (R_+ - n_+ (n_+ + 1) / 2) / (n_+ n_-), where
/// R_+ is the sum of the positives' ranks (rank 1 = lowest score; tied scores share the mean of
/// their ranks). Scores may be +-inf (they tie with each other); NaN is refused, and so are
/// labels of one class only.
pub fn auroc(scores: &[f64], positive: &[bool]) -> Result<f64> {
    let (n_pos, n_neg) = check_inputs(scores, positive)?;
    let mut order = descending_order(scores);
    order.reverse(); // ascending
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean.
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        let positives = order[start..end].iter().filter(|&&i| positive[i]).count();
        rank_sum += mid_rank * positives as f64;
        start = end;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision of `scores` for the positives `positive` (higher score = more likely
/// positive), defined as scikit-learn's `average_precision_score`: the step-wise sum
///
/// AP = sum_t (R_t - R_{t-1}) P_t
///
/// over the distinct score values t from the highest down, where P_t and R_t are the precision
/// and recall of calling positive every example with score >= t (R_0 = 0). Tied scores enter
/// together, at one threshold, as in scikit-learn. Refuses NaN scores and labels of one class.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Result<f64> {
    let (n_pos, _) = check_inputs(scores, positive)?;
    let order = descending_order(scores);
    let mut ap = 0.0;
    let (mut true_pos, mut called) = (0usize, 0usize);
    let mut last_recall = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        true_pos += order[start..end].iter().filter(|&&i| positive[i]).count();
        called += end - start;
        let recall = true_pos as f64 / n_pos as f64;
        let precision = true_pos as f64 / called as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
        start = end;
    }
    Ok(ap)
}

/// The `k` indices with the highest scores (most anomalous first; equal scores in index order).
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order = descending_order(scores);
    order.truncate(k);
    order
}

/// Counts of (true class, predicted class) pairs over `n` classes: `counts[t * n + p]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    n: usize,
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// Tallies `truth[i]` against `predicted[i]`; every entry must be below `classes`.
    pub fn new(classes: usize, truth: &[usize], predicted: &[usize]) -> Result<Self> {
        if truth.len() != predicted.len() {
            return Err(Error::SizeMismatch(format!(
                "{} true classes but {} predictions",
                truth.len(),
                predicted.len()
            )));
        }
        let mut counts = vec![0u64; classes * classes];
        for (i, (&t, &p)) in truth.iter().zip(predicted).enumerate() {
            if t >= classes || p >= classes {
                return Err(Error::param(
                    "classes",
                    format!("example {i}: class {t} or {p} is not below {classes}"),
                ));
            }
            counts[t * classes + p] += 1;
        }
        Ok(ConfusionMatrix { n: classes, counts })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.n
    }

    /// How many examples of true class `t` were predicted as `p`.
    pub fn count(&self, t: usize, p: usize) -> u64 {
        self.counts[t * self.n + p]
    }

    /// The matrix as rows (one per true class) of counts per predicted class.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.n.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    /// Fraction of examples on the diagonal (0 when there are none).
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let right: u64 = (0..self.n).map(|k| self.count(k, k)).sum();
        if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_every_pair_and_ties_as_half() {
        // Pairs by hand: positive 3 beats the three negatives; positive 2 beats 1, ties one 2.
        let scores = [3.0, 2.0, 2.0, 1.0, 0.5];
        let positive = [true, true, false, false, false];
        // 3 + (2 + 0.5) = 5.5 of 6 pairs.
        assert!((auroc(&scores, &positive).unwrap() - 5.5 / 6.0).abs() < 1e-15);
        assert!(auroc(&[1.0, 2.0], &[true, true]).is_err());
        assert!(auroc(&[f64::NAN, 2.0], &[true, false]).is_err());
        assert!(auroc(&[1.0], &[true, false]).is_err());
    }

    #[test]
    fn average_precision_enters_ties_together() {
        // Thresholds 3 (1 of 1 positive: P 1, R 1/2), then 2 (tie: 2 of 3, R 1): 1/2 + 1/2 * 2/3.
        let scores = [3.0, 2.0, 2.0, 1.0];
        let positive = [true, true, false, false];
        let ap = average_precision(&scores, &positive).unwrap();
        assert!((ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-15, "{ap}");
        assert_eq!(top_k(&scores, 3), vec![0, 1, 2]);
    }

    #[test]
    fn confusion_matrix_counts_pairs() {
        let m = ConfusionMatrix::new(3, &[0, 0, 1, 2, 2], &[0, 1, 1, 2, 0]).unwrap();
        assert_eq!(m.rows(), vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 1]]);
        assert!((m.accuracy() - 0.6).abs() < 1e-15);
        assert!(ConfusionMatrix::new(2, &[0, 2], &[0, 1]).is_err());
    }
}
