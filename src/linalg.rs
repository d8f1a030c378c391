//! The one dense matrix product of `ebm`: a strided f32 `matmul` over the `gemm` crate.
//!
//! Every matrix is a [`View`] (pointer-free: a slice, a shape and row/column strides), so that
//! transposes are free: `View::row_major(a, m, k).t()` is A^T without a copy.
//!
//! Determinism: `gemm` splits the work between threads over blocks of the OUTPUT only; the
//! depth (k) loop of every output element runs in the same fixed blocks whatever the number of
//! threads, so the result is bit-identical for any rayon pool size (checked by the tests in
//! `tests/learn.rs`, which train with one and with several threads).

use gemm::{Parallelism, gemm};

/// Products with fewer multiply-adds than this run on the calling thread: below it (a few tens
/// of microseconds of work), waking rayon's pool for every product costs about as much as it
/// saves. An estimate, not a tuned value.
pub const PARALLEL_MIN_FLOPS: usize = 1 << 20;

/// A read-only strided matrix view over f32 data.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix (entry (i, j) at `i * cols + j`).
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view out of bounds");
        View {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (a view of the same data).
    pub fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn max_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
        }
    }
}

/// `out = alpha * out + beta * a . b` with `out` row-major `a.rows() x b.cols()`.
///
/// With `alpha == 0` the previous content of `out` is ignored (it may hold anything, even NaN).
///
/// # Panics
/// If the inner dimensions or the output size disagree.
pub fn matmul(out: &mut [f32], a: View<'_>, b: View<'_>, alpha: f32, beta: f32) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "matmul: inner dimensions differ");
    assert_eq!(out.len(), m * n, "matmul: output has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.iter_mut().for_each(|x| *x *= alpha);
        if alpha == 0.0 {
            out.fill(0.0);
        }
        return;
    }
    assert!(a.max_index() < a.data.len() && b.max_index() < b.data.len());
    let parallelism = if m * n * k < PARALLEL_MIN_FLOPS {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    // SAFETY: the views were checked to lie inside their slices (max_index < len), `out` holds
    // exactly m x n row-major entries, and `out` is a unique borrow not aliasing `a` or `b`.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            alpha != 0.0,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            alpha,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: View<'_>, b: View<'_>) -> Vec<f64> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for l in 0..a.cols {
                    out[i * b.cols + j] += a.data[i * a.row_stride + l * a.col_stride] as f64
                        * b.data[l * b.row_stride + j * b.col_stride] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_product_with_transposes_and_accumulation() {
        for &(m, k, n) in &[(3, 5, 4), (70, 33, 65), (1, 7, 9), (40, 1, 3)] {
            let a: Vec<f32> = (0..m * k)
                .map(|x| ((x * 7 % 13) as f32 - 6.0) / 8.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|x| ((x * 5 % 11) as f32 - 5.0) / 4.0)
                .collect();
            let av = View::row_major(&a, m, k);
            let bv = View::row_major(&b, k, n);
            let want = naive(av, bv);
            let mut out = vec![f32::NAN; m * n];
            matmul(&mut out, av, bv, 0.0, 1.0);
            for (o, w) in out.iter().zip(&want) {
                assert!((*o as f64 - w).abs() < 1e-4, "{o} vs {w}");
            }
            // (B^T A^T)^T = A B: compute B^T A^T into an n x m buffer through transposed views.
            let mut out_t = vec![0.0; n * m];
            matmul(&mut out_t, bv.t(), av.t(), 0.0, 1.0);
            for i in 0..m {
                for j in 0..n {
                    assert!((out_t[j * m + i] as f64 - want[i * n + j]).abs() < 1e-4);
                }
            }
            // out = 2 * out - A B = A B.
            matmul(&mut out, av, bv, 2.0, -1.0);
            for (o, w) in out.iter().zip(&want) {
                assert!((*o as f64 - w).abs() < 1e-4);
            }
        }
    }
}
