//! Datasets: `n` examples of `d` bits each ([`Dataset`]), or of `d` real numbers
//! ([`RealDataset`], for models with real visible units).

use crate::error::{Error, Result};

/// A dataset of binary examples, stored row-major as bytes 0/1 (`rows x cols`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl Dataset {
    /// Builds a dataset from row-major bits; every value must be 0 or 1.
    pub fn new(rows: usize, cols: usize, data: Vec<u8>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::SizeMismatch(format!(
                "dataset of {rows} x {cols} needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        if let Some(k) = data.iter().position(|&x| x > 1) {
            return Err(Error::Format(format!(
                "row {}, column {}: value {} is not 0 or 1",
                k / cols.max(1) + 1,
                k % cols.max(1) + 1,
                data[k]
            )));
        }
        Ok(Dataset { rows, cols, data })
    }

    /// Number of examples.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Bits per example.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// All bits, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Example `r`.
    #[inline]
    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
    /// Iterator over examples.
    pub fn iter_rows(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.data.chunks_exact(self.cols.max(1)).take(self.rows)
    }
    /// Fraction of ones over the whole dataset (0 for an empty one).
    pub fn fraction_of_ones(&self) -> f64 {
        if self.data.is_empty() {
            return 0.0;
        }
        self.data.iter().map(|&x| x as u64).sum::<u64>() as f64 / self.data.len() as f64
    }
    /// Mean of each column (the data's visible marginals).
    pub fn column_means(&self) -> Vec<f64> {
        let mut sums = vec![0u64; self.cols];
        for row in self.iter_rows() {
            for (s, &x) in sums.iter_mut().zip(row) {
                *s += x as u64;
            }
        }
        sums.iter()
            .map(|&s| s as f64 / self.rows.max(1) as f64)
            .collect()
    }
    /// The examples at the given indices, as a new dataset.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &r in indices {
            data.extend_from_slice(self.row(r));
        }
        Dataset {
            rows: indices.len(),
            cols: self.cols,
            data,
        }
    }
}

/// A dataset of real-valued examples, row-major f64 (`rows x cols`), every value finite.
#[derive(Debug, Clone, PartialEq)]
pub struct RealDataset {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl RealDataset {
    /// Builds a dataset from row-major values; every value must be finite.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::SizeMismatch(format!(
                "dataset of {rows} x {cols} needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        if let Some(k) = data.iter().position(|x| !x.is_finite()) {
            return Err(Error::Format(format!(
                "row {}, column {}: value {} is not finite",
                k / cols.max(1) + 1,
                k % cols.max(1) + 1,
                data[k]
            )));
        }
        Ok(RealDataset { rows, cols, data })
    }
    /// Number of examples.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Values per example.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// All values, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }
    /// Example `r`.
    #[inline]
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
    /// Iterator over examples.
    pub fn iter_rows(&self) -> impl ExactSizeIterator<Item = &[f64]> {
        self.data.chunks_exact(self.cols.max(1)).take(self.rows)
    }
    /// The mean and the (population) standard deviation of each column.
    pub fn column_mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.rows.max(1) as f64;
        let mut mean = vec![0.0; self.cols];
        for row in self.iter_rows() {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x / n;
            }
        }
        let mut var = vec![0.0; self.cols];
        for row in self.iter_rows() {
            for ((v, x), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (x - m) * (x - m) / n;
            }
        }
        (mean, var.into_iter().map(f64::sqrt).collect())
    }
    /// Applies x -> (x - mean) / std column by column.
    pub fn standardise(&mut self, mean: &[f64], std: &[f64]) {
        for row in self.data.chunks_exact_mut(self.cols.max(1)) {
            for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
                *x = (*x - m) / s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_means_and_selection() {
        let d = Dataset::new(3, 2, vec![1, 0, 1, 1, 0, 0]).unwrap();
        assert_eq!(d.row(1), &[1, 1]);
        assert_eq!(d.column_means(), vec![2.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(d.fraction_of_ones(), 0.5);
        assert_eq!(d.select(&[2, 0]).data(), &[0, 0, 1, 0]);
        assert!(Dataset::new(2, 2, vec![0, 1, 2, 0]).is_err());
        assert!(Dataset::new(2, 2, vec![0, 1, 0]).is_err());
    }
}
