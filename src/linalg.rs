//! The matrix products of `ebm`: the dense f32 [`matmul`] over the `gemm` crate, and the
//! binary-aware [`binary_matmul`] for products whose left operand is a 0/1 matrix.
//!
//! Every matrix is a [`View`] (pointer-free: a slice, a shape and row/column strides), so that
//! transposes are free: `View::row_major(a, m, k).t()` is A^T without a copy.
//!
//! Determinism: `gemm` splits the work between threads over blocks of the OUTPUT only; the
//! depth (k) loop of every output element runs in the same fixed blocks whatever the number of
//! threads, so the result is bit-identical for any rayon pool size (checked by the tests in
//! `tests/learn.rs`, which train with one and with several threads).

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

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

/// [`KernelChoice::Auto`] uses [`binary_matmul`] when at most this fraction of the binary
/// operand's entries are ones, and the dense [`matmul`] above it.
///
/// A dense product costs m k n multiply-adds in `gemm`'s register-blocked kernel; the binary one
/// costs (ones) x n additions of rows of B gathered from memory, plus one pass over the m k
/// entries to list the ones. Measured on the development machine (`cargo bench --bench rbm --
/// kernels`: 100 x 784 times 784 x 500, one thread, under load) the binary product is 1.9-2.2x
/// faster at density 0.13 (MNIST), about even at 0.25-0.3 and slower beyond; 0.25 keeps it
/// where it wins.
pub const BINARY_MAX_DENSITY: f64 = 0.25;

/// [`KernelChoice::Auto`] uses [`binary_matmul`] only for products at least this many columns
/// wide: for narrow ones (16 or 25 hidden units) the dense kernel was faster in whole training
/// epochs (digits x 16, MNIST-5k x 25), the binary one's per-row overhead dominating.
pub const BINARY_MIN_WIDTH: usize = 128;

/// Which kernel a product with a binary operand uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// [`binary_matmul`] when the operand's density is at most [`BINARY_MAX_DENSITY`] and the
    /// product at least [`BINARY_MIN_WIDTH`] columns wide, else the dense [`matmul`].
    #[default]
    Auto,
    /// Always the dense [`matmul`] (the reference).
    Dense,
    /// Always [`binary_matmul`] (when the operand is binary).
    Binary,
}

impl KernelChoice {
    /// Whether a product of `width` output columns whose binary operand has this `density`
    /// (fraction of ones) goes to [`binary_matmul`].
    pub fn use_binary(self, density: f64, width: usize) -> bool {
        match self {
            KernelChoice::Auto => density <= BINARY_MAX_DENSITY && width >= BINARY_MIN_WIDTH,
            KernelChoice::Dense => false,
            KernelChoice::Binary => true,
        }
    }
}

/// The positions of the ones of a 0/1 matrix, row by row (compressed sparse rows without
/// values), each row's column indices in increasing order.
///
/// Buffers are kept between fills, so refilling a matrix of the same size allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct BinaryRows {
    rows: usize,
    cols: usize,
    /// Row r's ones are `indices[starts[r]..starts[r + 1]]`; `rows + 1` entries.
    starts: Vec<usize>,
    /// Column indices (at least `rows * cols` long: rows are written without a branch).
    indices: Vec<u32>,
    /// Per column counts, the scratch of [`BinaryRows::fill_transposed`].
    counts: Vec<usize>,
}

impl BinaryRows {
    /// An empty list (fill it with [`BinaryRows::fill`] or [`BinaryRows::fill_transposed`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists the ones of the row-major `rows x cols` matrix `data`. Returns `false` (and leaves
    /// the lists unusable) when an entry is neither 0.0 nor 1.0: the matrix is not binary.
    pub fn fill(&mut self, data: &[f32], rows: usize, cols: usize) -> bool {
        assert!(cols <= u32::MAX as usize, "BinaryRows: too many columns");
        assert_eq!(
            data.len(),
            rows * cols,
            "BinaryRows: data has the wrong size"
        );
        self.rows = rows;
        self.cols = cols;
        self.starts.clear();
        self.starts.push(0);
        if self.indices.len() < rows * cols {
            self.indices.resize(rows * cols, 0);
        }
        let indices = &mut self.indices[..];
        let mut n = 0;
        let mut binary = true;
        if cols > 0 {
            for row in data.chunks_exact(cols) {
                for (k, chunk) in row.chunks(32).enumerate() {
                    let (mut mask, ok) = ones_mask(chunk);
                    binary &= ok;
                    while mask != 0 {
                        indices[n] = (k * 32) as u32 + mask.trailing_zeros();
                        n += 1;
                        mask &= mask - 1;
                    }
                }
                self.starts.push(n);
            }
        } else {
            self.starts.resize(rows + 1, 0);
        }
        binary
    }

    /// Lists the ones of the TRANSPOSE of the row-major `rows x cols` matrix `data`: row l of
    /// the lists is column l of `data`, the rows r with data[r, l] = 1 in increasing order.
    /// Returns `false` when an entry is neither 0.0 nor 1.0.
    pub fn fill_transposed(&mut self, data: &[f32], rows: usize, cols: usize) -> bool {
        assert!(rows <= u32::MAX as usize, "BinaryRows: too many rows");
        assert_eq!(
            data.len(),
            rows * cols,
            "BinaryRows: data has the wrong size"
        );
        self.rows = cols;
        self.cols = rows;
        self.counts.clear();
        self.counts.resize(cols, 0);
        self.starts.clear();
        self.starts.push(0);
        if cols == 0 {
            self.starts.resize(cols + 1, 0);
            return true;
        }
        let mut binary = true;
        for row in data.chunks_exact(cols) {
            for (c, &x) in self.counts.iter_mut().zip(row) {
                *c += (x == 1.0) as usize;
                binary &= x == 0.0 || x == 1.0;
            }
        }
        if !binary {
            return false;
        }
        let mut total = 0;
        for c in self.counts.iter_mut() {
            let count = *c;
            *c = total;
            total += count;
            self.starts.push(total);
        }
        if self.indices.len() < total {
            self.indices.resize(total, 0);
        }
        // counts[l] is now the next free slot of column l; rows are visited in order, so each
        // column's list comes out sorted.
        let (indices, next) = (&mut self.indices[..], &mut self.counts[..]);
        for (r, row) in data.chunks_exact(cols).enumerate() {
            for (k, chunk) in row.chunks(32).enumerate() {
                let mut mask = ones_mask(chunk).0;
                while mask != 0 {
                    let l = k * 32 + mask.trailing_zeros() as usize;
                    indices[next[l]] = r as u32;
                    next[l] += 1;
                    mask &= mask - 1;
                }
            }
        }
        true
    }

    /// Number of rows of the listed matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns of the listed matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of ones.
    pub fn ones(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The fraction of entries that are ones (0 for an empty matrix).
    pub fn density(&self) -> f64 {
        let entries = self.rows * self.cols;
        if entries == 0 {
            0.0
        } else {
            self.ones() as f64 / entries as f64
        }
    }

    /// The column indices of the ones of row `r`, increasing.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.indices[self.starts[r]..self.starts[r + 1]]
    }
}

/// Bit k of the mask is set when `chunk[k] == 1.0` (at most 32 entries); the flag is whether
/// every entry is 0.0 or 1.0.
#[inline(always)]
fn ones_mask(chunk: &[f32]) -> (u32, bool) {
    let mut mask = 0u32;
    let mut binary = true;
    for (k, &x) in chunk.iter().enumerate() {
        mask |= ((x == 1.0) as u32) << k;
        binary &= x == 0.0 || x == 1.0;
    }
    (mask, binary)
}

/// `out = alpha * out + beta * S . B` for a binary `S` (`m x k`, given by its [`BinaryRows`])
/// and a dense row-major `B` (`k x n`, `b.len() == k * n`), `out` row-major `m x n`.
///
/// Row r of S B is the sum of the rows l of B with S[r, l] = 1: no multiplications. Each output
/// entry is summed in f32 from 0 over those rows in increasing l, then scaled:
/// out[r, j] = alpha * out[r, j] + beta * (sum_{l: S[r, l] = 1} B[l, j]) (with `alpha == 0` the
/// old content is ignored, even NaN). This order is the same for every number of threads
/// (output rows run in parallel when the work is large) and every instruction set chosen at run
/// time (AVX-512, AVX2 or the baseline), so results are reproducible; they differ from
/// [`matmul`]'s only by the f32 summation order (an error of order k * 2^-24 times the sum of
/// the |B[l, j]| involved).
///
/// # Panics
/// If the sizes disagree.
pub fn binary_matmul(out: &mut [f32], s: &BinaryRows, b: &[f32], n: usize, alpha: f32, beta: f32) {
    let (m, k) = (s.rows(), s.cols());
    assert_eq!(b.len(), k * n, "binary_matmul: B has the wrong size");
    assert_eq!(out.len(), m * n, "binary_matmul: output has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    let level = SimdLevel::detect();
    let kernel = |(r, row): (usize, &mut [f32])| {
        let list = s.row(r);
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F (checked by `SimdLevel::detect`).
            SimdLevel::Avx512 => unsafe { sum_rows_avx512(row, list, b, alpha, beta) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 (checked by `SimdLevel::detect`).
            SimdLevel::Avx2 => unsafe { sum_rows_avx2(row, list, b, alpha, beta) },
            SimdLevel::Baseline => sum_rows::<32>(row, list, b, alpha, beta),
        }
    };
    if s.ones() * n + m * n < PARALLEL_MIN_FLOPS {
        out.chunks_exact_mut(n).enumerate().for_each(kernel);
    } else {
        out.par_chunks_exact_mut(n).enumerate().for_each(kernel);
    }
}

/// The widest vector instructions usable for [`binary_matmul`] on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SimdLevel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Baseline,
}

impl SimdLevel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sum_rows_avx512(out: &mut [f32], list: &[u32], b: &[f32], alpha: f32, beta: f32) {
    // Blocks of 256 f32 = 16 zmm accumulators: independent add chains hide the add latency.
    sum_rows::<256>(out, list, b, alpha, beta)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_rows_avx2(out: &mut [f32], list: &[u32], b: &[f32], alpha: f32, beta: f32) {
    // 64 f32 = 8 ymm accumulators.
    sum_rows::<64>(out, list, b, alpha, beta)
}

/// out[j] = alpha * out[j] + beta * sum_{l in list} b[l * n + j] with n = out.len(), each entry
/// summed from 0 in the order of `list`. Columns go in blocks of `BLOCK`, then of 128, 64, 32,
/// 16, 8 (when narrower than `BLOCK`), then one by one; each block's sums are held in a local
/// array that the compiler keeps in vector registers.
#[inline(always)]
fn sum_rows<const BLOCK: usize>(out: &mut [f32], list: &[u32], b: &[f32], alpha: f32, beta: f32) {
    let n = out.len();
    let mut c0 = 0;
    while n - c0 >= BLOCK {
        sum_block::<BLOCK>(&mut out[c0..c0 + BLOCK], c0, n, list, b, alpha, beta);
        c0 += BLOCK;
    }
    macro_rules! narrower_block {
        ($w:expr) => {
            if $w < BLOCK && n - c0 >= $w {
                sum_block::<$w>(&mut out[c0..c0 + $w], c0, n, list, b, alpha, beta);
                c0 += $w;
            }
        };
    }
    narrower_block!(128);
    narrower_block!(64);
    narrower_block!(32);
    narrower_block!(16);
    narrower_block!(8);
    for (j, o) in out.iter_mut().enumerate().skip(c0) {
        let mut acc = 0.0f32;
        for &l in list {
            acc += b[l as usize * n + j];
        }
        *o = if alpha == 0.0 {
            beta * acc
        } else {
            alpha * *o + beta * acc
        };
    }
}

/// One block of [`sum_rows`]: `dst` = out[c0 .. c0 + W] of rows of length `n`.
#[inline(always)]
fn sum_block<const W: usize>(
    dst: &mut [f32],
    c0: usize,
    n: usize,
    list: &[u32],
    b: &[f32],
    alpha: f32,
    beta: f32,
) {
    let mut acc = [0.0f32; W];
    for &l in list {
        let start = l as usize * n + c0;
        let src: &[f32; W] = b[start..start + W].try_into().expect("block of W entries");
        for k in 0..W {
            acc[k] += src[k];
        }
    }
    let dst: &mut [f32; W] = dst.try_into().expect("block of W entries");
    if alpha == 0.0 {
        for k in 0..W {
            dst[k] = beta * acc[k];
        }
    } else {
        for k in 0..W {
            dst[k] = alpha * dst[k] + beta * acc[k];
        }
    }
}

/// `dst = src^T`: `src` row-major `rows x cols`, `dst` row-major `cols x rows`. Tiles of 8 x 8
/// (with AVX2: eight row loads, 24 shuffles, eight column stores); bands of 8 output rows run
/// in parallel when the matrix is large. A copy: the result is exact.
pub fn transpose_into(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    assert_eq!(
        src.len(),
        rows * cols,
        "transpose: source has the wrong size"
    );
    assert_eq!(
        dst.len(),
        rows * cols,
        "transpose: destination has the wrong size"
    );
    const T: usize = 8;
    if rows == 0 || cols == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    // Band t holds output rows (= source columns) t*T .. t*T + bw.
    let band = |(t, out): (usize, &mut [f32])| {
        let c0 = t * T;
        let bw = out.len() / rows;
        let mut r0 = 0;
        if bw == T {
            while r0 + T <= rows {
                let block = &src[r0 * cols + c0..(r0 + T - 1) * cols + c0 + T];
                let dst_block = &mut out[r0..(T - 1) * rows + r0 + T];
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: AVX2 is available; `block` holds the 8 source rows of the tile
                    // (stride `cols`, 8 entries each) and `dst_block` its 8 destination rows
                    // (stride `rows`), as the slicing above checked.
                    unsafe { transpose_8x8_avx2(block, cols, dst_block, rows) };
                    r0 += T;
                    continue;
                }
                for dc in 0..T {
                    for dr in 0..T {
                        dst_block[dc * rows + dr] = block[dr * cols + dc];
                    }
                }
                r0 += T;
            }
        }
        for r in r0..rows {
            for dc in 0..bw {
                out[dc * rows + r] = src[r * cols + c0 + dc];
            }
        }
    };
    if rows * cols < 1 << 16 {
        dst.chunks_mut(T * rows).enumerate().for_each(band);
    } else {
        dst.par_chunks_mut(T * rows).enumerate().for_each(band);
    }
}

/// The 8 x 8 tile at the start of `src` (rows `src_stride` apart) transposed into `dst` (rows
/// `dst_stride` apart): interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn transpose_8x8_avx2(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    use std::arch::x86_64::*;
    assert!(src.len() >= 7 * src_stride + 8 && dst.len() >= 7 * dst_stride + 8);
    // SAFETY: the assertion keeps every 8-wide load and store inside the slices.
    unsafe {
        let p = src.as_ptr();
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(p.add(i * src_stride)));
        let lo = |a, b| _mm256_unpacklo_ps(a, b);
        let hi = |a, b| _mm256_unpackhi_ps(a, b);
        // t: [a0, b0, a1, b1 | a4, b4, a5, b5] and [a2, b2, a3, b3 | a6, b6, a7, b7].
        let t = [
            lo(r[0], r[1]),
            hi(r[0], r[1]),
            lo(r[2], r[3]),
            hi(r[2], r[3]),
            lo(r[4], r[5]),
            hi(r[4], r[5]),
            lo(r[6], r[7]),
            hi(r[6], r[7]),
        ];
        // s[k]: column k (rows 0-3 | 4-7 of the quad) and column k + 4.
        let s = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        let q = dst.as_mut_ptr();
        for k in 0..4 {
            let low = _mm256_permute2f128_ps::<0x20>(s[k], s[k + 4]);
            let high = _mm256_permute2f128_ps::<0x31>(s[k], s[k + 4]);
            _mm256_storeu_ps(q.add(k * dst_stride), low);
            _mm256_storeu_ps(q.add((k + 4) * dst_stride), high);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0/1 matrix with about `density` ones from a fixed sequence.
    fn binary(rows: usize, cols: usize, density: f64, salt: u64) -> Vec<f32> {
        let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ salt;
        (0..rows * cols)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (((s >> 11) as f64 / (1u64 << 53) as f64) < density) as u8 as f32
            })
            .collect()
    }

    #[test]
    fn binary_rows_list_the_ones_of_a_matrix_and_of_its_transpose() {
        let (m, k) = (13, 70);
        let a = binary(m, k, 0.3, 1);
        let mut rows = BinaryRows::new();
        assert!(rows.fill(&a, m, k));
        let mut cols = BinaryRows::new();
        assert!(cols.fill_transposed(&a, m, k));
        assert_eq!(
            (rows.rows(), rows.cols(), cols.rows(), cols.cols()),
            (m, k, k, m)
        );
        for r in 0..m {
            let want: Vec<u32> = (0..k as u32)
                .filter(|&j| a[r * k + j as usize] == 1.0)
                .collect();
            assert_eq!(rows.row(r), &want[..]);
        }
        for j in 0..k {
            let want: Vec<u32> = (0..m as u32)
                .filter(|&r| a[r as usize * k + j] == 1.0)
                .collect();
            assert_eq!(cols.row(j), &want[..]);
        }
        let ones = a.iter().filter(|&&x| x == 1.0).count();
        assert_eq!((rows.ones(), cols.ones()), (ones, ones));
        // Not binary: refused by both.
        let mut p = a.clone();
        p[17] = 0.5;
        assert!(!rows.fill(&p, m, k));
        assert!(!cols.fill_transposed(&p, m, k));
    }

    #[test]
    fn binary_matmul_matches_the_exact_product_and_gemm() {
        // Widths that exercise every block size (256, 128, ..., 8) and the scalar tail.
        for &(m, k, n) in &[
            (3, 5, 4),
            (20, 40, 500),
            (7, 33, 1),
            (9, 64, 263),
            (40, 1, 17),
        ] {
            for density in [0.0, 0.13, 0.6, 1.0] {
                let a = binary(m, k, density, (m * n) as u64);
                let b: Vec<f32> = (0..k * n)
                    .map(|x| ((x * 5 % 11) as f32 - 5.0) / 4.0 + 1e-3 * (x % 17) as f32)
                    .collect();
                let want = naive(View::row_major(&a, m, k), View::row_major(&b, k, n));
                let mut ones = BinaryRows::new();
                assert!(ones.fill(&a, m, k));
                let mut out = vec![f32::NAN; m * n];
                binary_matmul(&mut out, &ones, &b, n, 0.0, 1.0);
                let mut dense = vec![0.0; m * n];
                matmul(
                    &mut dense,
                    View::row_major(&a, m, k),
                    View::row_major(&b, k, n),
                    0.0,
                    1.0,
                );
                // f32 sums of at most k terms of size < 1.3: each rounding is at most 2^-24
                // of a partial sum below 1.3 k, so the error is below k^2 * 1.3 * 2^-24 < 3.2e-4
                // for k <= 64 (both kernels).
                for ((o, d), w) in out.iter().zip(&dense).zip(&want) {
                    assert!((*o as f64 - w).abs() < 3.2e-4, "{o} vs {w}");
                    assert!((*o - *d).abs() < 6.4e-4, "{o} vs gemm {d}");
                }
                // out = 2 out - 0.5 S B = 1.5 S B.
                binary_matmul(&mut out, &ones, &b, n, 2.0, -0.5);
                for (o, w) in out.iter().zip(&want) {
                    assert!((*o as f64 - 1.5 * w).abs() < 1e-3);
                }
                // S^T C through the transposed lists equals the dense A^T C.
                let c: Vec<f32> = (0..m * n).map(|x| (x % 7) as f32 - 3.0).collect();
                let want_t = naive(View::row_major(&a, m, k).t(), View::row_major(&c, m, n));
                assert!(ones.fill_transposed(&a, m, k));
                let mut out_t = vec![0.0; k * n];
                binary_matmul(&mut out_t, &ones, &c, n, 0.0, 1.0);
                for (o, w) in out_t.iter().zip(&want_t) {
                    assert!((*o as f64 - w).abs() < 1e-9, "{o} vs {w}");
                }
            }
        }
    }

    #[test]
    fn binary_matmul_is_the_same_for_any_number_of_threads() {
        // Large enough to run in parallel (ones x n above PARALLEL_MIN_FLOPS).
        let (m, k, n) = (200, 784, 500);
        let a = binary(m, k, 0.13, 5);
        let b: Vec<f32> = (0..k * n)
            .map(|x| ((x * 7919 % 1000) as f32 - 500.0) * 1e-4)
            .collect();
        let mut ones = BinaryRows::new();
        assert!(ones.fill(&a, m, k));
        assert!(ones.ones() * n > PARALLEL_MIN_FLOPS);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0.0f32; m * n];
            pool.install(|| binary_matmul(&mut out, &ones, &b, n, 0.0, 1.0));
            out
        };
        let one = run(1);
        assert!(
            one.iter()
                .zip(run(2))
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
        assert!(
            one.iter()
                .zip(run(3))
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
    }

    #[test]
    fn transpose_is_exact_for_any_shape() {
        for &(r, c) in &[(1, 1), (8, 8), (9, 17), (784, 500), (3, 40), (300, 250)] {
            let src: Vec<f32> = (0..r * c).map(|x| x as f32).collect();
            let mut dst = vec![f32::NAN; r * c];
            transpose_into(&mut dst, &src, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(dst[j * r + i], src[i * c + j]);
                }
            }
        }
    }

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
