//! The matrix products of `ebm`: the dense f32 [`matmul`] over the `gemm` crate, and the
//! binary-aware products for a left operand that is a 0/1 matrix: [`binary_matmul`] (B
//! row-major, the simple form) and [`binary_matmul_panels`] (B packed in 16-column
//! [`Panels`], rows of S in groups, several products fused; the same bits, faster), which RBM
//! training uses.
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

/// [`KernelChoice::Auto`] uses the binary kernel ([`binary_matmul_panels`]) when at most this
/// fraction of the binary operand's entries are ones, and the dense [`matmul`] above it.
///
/// A dense product costs m k n multiply-adds in `gemm`'s register-blocked kernel; the binary one
/// costs (ones) x n additions of rows of B from L1-resident panels, plus one pass over the m k
/// entries to list the ones (and, once per parameter update, packing W or W^T in panels).
/// Measured on the development machine (`RAYON_NUM_THREADS=N cargo bench --bench rbm --
/// kernels`: 100 x 784 times 784 x 500, idle, 2026-12-01, one / two threads), against GEMM's
/// 785-841 / 413-457 us: binary V W (listing included) 223 / 100 us at density 0.13 (MNIST),
/// 436 / 263 at 0.35, 579 / 340 at 0.5, 741 / 433 at 0.7; H W^T (W^T packed) 176 / 85,
/// 376 / 198, 479 / 305, 637 / 411. Training repacks W and W^T inside the optimizer step
/// ([`update_packed`]), so the packing is not charged to the products. Up to 0.5 the binary
/// kernel wins clearly on one and two threads. (In the PCD-1 run on MNIST-5k x 500 of
/// `benches/rbm_epoch_ab.sh` the sampled hidden layer has density 0.48-0.50 for most of the
/// first epoch, so its h W^T now goes to the binary kernel; those products only feed Bernoulli
/// draws, none of which changed: the five-epoch model file is the same as with the earlier
/// threshold 0.35, and the epoch time changed by less than the noise, about 1 % expected.)
pub const BINARY_MAX_DENSITY: f64 = 0.5;

/// [`KernelChoice::Auto`] uses [`binary_matmul`] only for products at least this many columns
/// wide: for narrow ones (16 or 25 hidden units) the dense kernel was faster in whole training
/// epochs (digits x 16, MNIST-5k x 25), the binary one's per-row overhead dominating.
pub const BINARY_MIN_WIDTH: usize = 128;

/// Which kernel a product with a binary operand uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// The binary kernel when the operand's density is at most [`BINARY_MAX_DENSITY`] and the
    /// product at least [`BINARY_MIN_WIDTH`] columns wide, else the dense [`matmul`].
    #[default]
    Auto,
    /// Always the dense [`matmul`] (the reference).
    Dense,
    /// Always the binary kernel (when the operand is binary).
    Binary,
}

impl KernelChoice {
    /// Whether a product of `width` output columns whose binary operand has this `density`
    /// (fraction of ones) goes to the binary kernel ([`binary_matmul_panels`] or
    /// [`binary_matmul`]).
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
    /// Row r's ones are `indices[begins[r]..ends[r]]`, the rows one after the other
    /// ([`BinaryRows::fill`] first lists row r in a slot of `cols` entries at `r * cols`, so
    /// that rows are listed in parallel, then moves the lists together).
    begins: Vec<usize>,
    ends: Vec<usize>,
    /// Column indices (`rows * cols` long after [`BinaryRows::fill`]: rows are written without a
    /// branch).
    indices: Vec<u32>,
    /// Number of ones.
    ones: usize,
    /// Per column counts, the scratch of the transposing fills and of the sort by count.
    counts: Vec<usize>,
    /// The rows in increasing order of their numbers of ones (ties by index).
    by_count: Vec<u32>,
}

/// [`BinaryRows::fill`] lists rows in parallel from this many entries on.
const FILL_PARALLEL_MIN_ENTRIES: usize = 1 << 15;

impl BinaryRows {
    /// An empty list (fill it with [`BinaryRows::fill`] or [`BinaryRows::fill_transposed`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists the ones of the row-major `rows x cols` matrix `data` (rows in parallel when the
    /// matrix is large). Returns `false` (and leaves the lists unusable) when an entry is
    /// neither 0.0 nor 1.0: the matrix is not binary.
    pub fn fill(&mut self, data: &[f32], rows: usize, cols: usize) -> bool {
        assert_eq!(
            data.len(),
            rows * cols,
            "BinaryRows: data has the wrong size"
        );
        self.fill_by(rows, cols, |slots, counts| {
            if cols == 0 {
                return true;
            }
            let list_row = |((row, slot), count): ((&[f32], &mut [u32]), &mut usize)| {
                let (n, binary) = list_ones(row, slot);
                *count = n;
                binary
            };
            if rows * cols < FILL_PARALLEL_MIN_ENTRIES {
                data.chunks_exact(cols)
                    .zip(slots.chunks_exact_mut(cols))
                    .zip(counts.iter_mut())
                    .map(list_row)
                    .fold(true, |a, b| a & b)
            } else {
                data.par_chunks_exact(cols)
                    .zip(slots.par_chunks_exact_mut(cols))
                    .zip(counts.par_iter_mut())
                    .map(list_row)
                    .reduce(|| true, |a, b| a & b)
            }
        })
    }

    /// Lists the ones of a `rows x cols` 0/1 matrix that `list_rows(slots, counts)` lists: it
    /// gets `rows` slots of `cols` entries (`slots`, row r's at `r * cols`) and must write the
    /// column indices of row r's ones, increasing, at the start of row r's slot and their number
    /// in `counts[r]` (rows may be listed in parallel: the slots are disjoint), then return
    /// whether the matrix is binary. Returns that flag; when it is `false` the lists are left
    /// empty (no rows). [`BinaryRows::fill`] is this with a scan of a matrix; a sampler that
    /// draws the matrix row by row can list each row while it is in the cache. Crate-private:
    /// the kernels read B at the listed indices without bounds checks, so every caller lists
    /// its rows with [`list_ones`] (increasing indices below `cols` by construction; checked in
    /// debug builds).
    ///
    /// # Panics
    /// If `rows` or `cols` exceeds `u32::MAX`, or a count exceeds `cols`.
    pub(crate) fn fill_by<F>(&mut self, rows: usize, cols: usize, list_rows: F) -> bool
    where
        F: FnOnce(&mut [u32], &mut [usize]) -> bool,
    {
        assert!(
            cols <= u32::MAX as usize && rows <= u32::MAX as usize,
            "BinaryRows: too many rows or columns"
        );
        self.rows = rows;
        self.cols = cols;
        self.begins.clear();
        self.begins.extend((0..rows).map(|r| r * cols));
        self.ends.clear();
        self.ends.resize(rows, 0);
        if self.indices.len() < rows * cols {
            self.indices.resize(rows * cols, 0);
        }
        let binary = list_rows(&mut self.indices[..rows * cols], &mut self.ends);
        if !binary {
            // Unusable lists must not pass for the previous matrix's (nor be read: no rows).
            self.rows = 0;
            self.begins.clear();
            self.ends.clear();
            self.ones = 0;
            self.by_count.clear();
            return false;
        }
        // Moves the lists down next to each other (row r's lands at or before its slot, so
        // going up the rows never overwrites one not yet moved): the kernels read them many
        // times, and compact lists take a fraction of the cache lines of the slots.
        let mut next = 0;
        for r in 0..rows {
            let (begin, count) = (self.begins[r], self.ends[r]);
            assert!(
                count <= cols,
                "BinaryRows: a row lists more ones than columns"
            );
            debug_assert!(
                self.indices[begin..begin + count]
                    .windows(2)
                    .all(|w| w[0] < w[1])
                    && self.indices[begin..begin + count]
                        .iter()
                        .all(|&l| (l as usize) < cols),
                "BinaryRows::fill_by: row {r} is not increasing column indices below {cols}"
            );
            self.indices.copy_within(begin..begin + count, next);
            self.begins[r] = next;
            next += count;
            self.ends[r] = next;
        }
        self.ones = next;
        self.sort_by_count();
        true
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
        self.counts.clear();
        self.counts.resize(cols, 0);
        let mut binary = true;
        if cols > 0 {
            for row in data.chunks_exact(cols) {
                for (c, &x) in self.counts.iter_mut().zip(row) {
                    *c += (x == 1.0) as usize;
                    binary &= x == 0.0 || x == 1.0;
                }
            }
        }
        if !binary {
            return false;
        }
        self.start_transposed(rows, cols);
        // next[l] is the next free slot of column l; rows are visited in order, so each
        // column's list comes out sorted.
        if cols > 0 {
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
        }
        self.sort_by_count();
        true
    }

    /// Lists the ones of the transpose of the matrices that `parts` list stacked one above the
    /// other ([A; B; ...]: the rows of A, then those of B numbered from A's row count on), in
    /// O(ones) without reading the matrices.
    ///
    /// # Panics
    /// If the parts have different numbers of columns.
    pub fn fill_transposed_stacked(&mut self, parts: &[&BinaryRows]) {
        let cols = parts.first().map_or(0, |p| p.cols);
        assert!(
            parts.iter().all(|p| p.cols == cols),
            "BinaryRows: stacked parts have different numbers of columns"
        );
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        assert!(rows <= u32::MAX as usize, "BinaryRows: too many rows");
        self.counts.clear();
        self.counts.resize(cols, 0);
        for part in parts {
            for r in 0..part.rows {
                for &l in part.row(r) {
                    self.counts[l as usize] += 1;
                }
            }
        }
        self.start_transposed(rows, cols);
        let (indices, next) = (&mut self.indices[..], &mut self.counts[..]);
        let mut first = 0;
        for part in parts {
            for r in 0..part.rows {
                for &l in part.row(r) {
                    let slot = &mut next[l as usize];
                    indices[*slot] = (first + r) as u32;
                    *slot += 1;
                }
            }
            first += part.rows;
        }
        self.sort_by_count();
    }

    /// For the transposing fills: with `counts[l]` the number of ones of column l of a
    /// `rows x cols` matrix, lays the lists out one after the other (`cols` rows of `rows`
    /// columns), sizes `indices`, and turns `counts[l]` into column l's first slot.
    fn start_transposed(&mut self, rows: usize, cols: usize) {
        self.rows = cols;
        self.cols = rows;
        self.begins.clear();
        self.ends.clear();
        let mut total = 0;
        for c in self.counts.iter_mut() {
            let count = *c;
            *c = total;
            self.begins.push(total);
            total += count;
            self.ends.push(total);
        }
        self.ones = total;
        if self.indices.len() < total {
            self.indices.resize(total, 0);
        }
    }

    /// Fills `by_count` by a counting sort of the rows on their numbers of ones (stable).
    fn sort_by_count(&mut self) {
        let mut counts = std::mem::take(&mut self.counts);
        let len = |r: usize| self.ends[r] - self.begins[r];
        let longest = (0..self.rows).map(len).max().unwrap_or(0);
        counts.clear();
        counts.resize(longest + 2, 0);
        for r in 0..self.rows {
            counts[len(r) + 1] += 1;
        }
        for c in 1..counts.len() {
            counts[c] += counts[c - 1];
        }
        // counts[len] is now the first slot of the rows with `len` ones.
        self.by_count.clear();
        self.by_count.resize(self.rows, 0);
        for r in 0..self.rows {
            let len = self.ends[r] - self.begins[r];
            self.by_count[counts[len]] = r as u32;
            counts[len] += 1;
        }
        self.counts = counts;
    }

    /// The rows in increasing order of their numbers of ones (rows with equal counts in
    /// increasing order), as of the last fill.
    pub fn by_count(&self) -> &[u32] {
        &self.by_count
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
        self.ones
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
        &self.indices[self.begins[r]..self.ends[r]]
    }
}

/// Writes the positions of the entries 1.0 of `row`, increasing, at the start of `slot` (at
/// least as long as `row`); returns their number and whether every entry is 0.0 or 1.0. One
/// row of `BinaryRows::fill_by`, with the widest vector instructions of the CPU (the
/// comparisons of 32 entries become one mask).
#[inline]
pub fn list_ones(row: &[f32], slot: &mut [u32]) -> (usize, bool) {
    match SimdLevel::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX-512F (checked by `SimdLevel::get`).
        SimdLevel::Avx512 => unsafe { list_ones_avx512(row, slot) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX2 (checked by `SimdLevel::get`).
        SimdLevel::Avx2 => unsafe { list_ones_avx2(row, slot) },
        SimdLevel::Baseline => list_ones_portable(row, slot),
    }
}

/// [`list_ones_portable`] compiled for AVX-512F.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn list_ones_avx512(row: &[f32], slot: &mut [u32]) -> (usize, bool) {
    list_ones_portable(row, slot)
}

/// [`list_ones_portable`] compiled for AVX2.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn list_ones_avx2(row: &[f32], slot: &mut [u32]) -> (usize, bool) {
    list_ones_portable(row, slot)
}

/// The loop of [`list_ones`], to be inlined into code compiled for a given instruction set.
#[inline(always)]
pub(crate) fn list_ones_portable(row: &[f32], slot: &mut [u32]) -> (usize, bool) {
    assert!(
        slot.len() >= row.len(),
        "list_ones: slot shorter than the row"
    );
    let mut n = 0;
    let mut binary = true;
    for (k, chunk) in row.chunks(32).enumerate() {
        let (mut mask, ok) = ones_mask(chunk);
        binary &= ok;
        while mask != 0 {
            slot[n] = (k * 32) as u32 + mask.trailing_zeros();
            n += 1;
            mask &= mask - 1;
        }
    }
    (n, binary)
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
    let level = SimdLevel::get();
    let kernel = |(r, row): (usize, &mut [f32])| {
        let list = s.row(r);
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F (checked by `SimdLevel::get`).
            SimdLevel::Avx512 => unsafe { sum_rows_avx512(row, list, b, alpha, beta) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 (checked by `SimdLevel::get`).
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

/// The widest vector instructions usable for [`binary_matmul`] (and the crate's other
/// run-time dispatched loops) on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimdLevel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Baseline,
}

impl SimdLevel {
    /// Detected at the first call, then remembered.
    pub(crate) fn get() -> Self {
        static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
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
        })
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

/// Width of the panels of [`Panels`]: 16 f32, one cache line, one AVX-512 register.
pub const PANEL_WIDTH: usize = 16;

/// A dense `rows x cols` matrix B stored as panels of [`PANEL_WIDTH`] columns: panel p holds
/// columns 16p .. 16p + 16 of every row, row after row (`rows x 16`, contiguous, the columns
/// past `cols` zero), so that row l of a panel is one aligned cache line and a whole panel of a
/// few hundred rows stays in the L1 cache. The layout [`binary_matmul_panels`] reads.
///
/// The buffer is kept between packings: repacking a matrix of the same size allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct Panels {
    rows: usize,
    cols: usize,
    /// The panels start at `data[offset]`, the first entry on a 64-byte (cache line) boundary.
    data: Vec<f32>,
    offset: usize,
}

impl Panels {
    /// Empty (fill with [`Panels::pack`] or [`Panels::pack_transposed`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rows of the packed matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns of the packed matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn panels(&self) -> usize {
        self.cols.div_ceil(PANEL_WIDTH)
    }

    /// Panel p: `rows x 16`, row-major, starting on a 64-byte boundary.
    fn panel(&self, p: usize) -> &[f32] {
        let len = self.rows * PANEL_WIDTH;
        &self.data[self.offset + p * len..self.offset + (p + 1) * len]
    }

    /// All the panels, one after the other.
    fn panels_mut(&mut self) -> &mut [f32] {
        let len = self.panels() * self.rows * PANEL_WIDTH;
        &mut self.data[self.offset..self.offset + len]
    }

    fn resize(&mut self, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        let len = cols.div_ceil(PANEL_WIDTH) * PANEL_WIDTH * rows;
        self.offset = resize_aligned(&mut self.data, len);
    }

    /// Packs the row-major `rows x cols` matrix `b` (an exact copy).
    pub fn pack(&mut self, b: &[f32], rows: usize, cols: usize) {
        assert_eq!(b.len(), rows * cols, "Panels: matrix has the wrong size");
        if cols == 0 {
            self.resize(rows, cols);
            return;
        }
        // A scale of 1 changes no entry.
        self.pack_stacked(&[(b, 1.0)], cols);
    }

    /// Runs `kernel((p, panel p))` for every panel (after [`Panels::resize`]), in parallel when
    /// the packed matrix has at least 2^16 entries.
    fn fill_panels<F>(&mut self, kernel: F)
    where
        F: Fn((usize, &mut [f32])) + Sync + Send,
    {
        let chunk = self.rows * PANEL_WIDTH;
        let parallel = self.rows * self.cols >= 1 << 16;
        let panels = self.panels_mut();
        if chunk == 0 {
            return;
        }
        if parallel {
            panels
                .par_chunks_exact_mut(chunk)
                .enumerate()
                .for_each(kernel);
        } else {
            panels.chunks_exact_mut(chunk).enumerate().for_each(kernel);
        }
    }

    /// Packs the row-major matrices `blocks` (each `rows_k x cols`, with a scale `s_k`) stacked
    /// one above the other: the packed matrix is [s_1 B_1; s_2 B_2; ...], each entry the f32
    /// product s_k * b.
    ///
    /// # Panics
    /// If a block's length is not a multiple of `cols` (or `cols` is 0 and a block is not
    /// empty).
    pub fn pack_stacked(&mut self, blocks: &[(&[f32], f32)], cols: usize) {
        let rows = stacked_rows(blocks, cols);
        self.resize(rows, cols);
        if rows == 0 || cols == 0 {
            return;
        }
        let kernel = |(p, panel): (usize, &mut [f32])| {
            let c0 = p * PANEL_WIDTH;
            let w = PANEL_WIDTH.min(cols - c0);
            let mut lines = panel.chunks_exact_mut(PANEL_WIDTH);
            for &(block, scale) in blocks {
                // The block first: zip would take (and lose) a line past the block's end.
                for (src, dst) in block.chunks_exact(cols).zip(&mut lines) {
                    for (d, &x) in dst[..w].iter_mut().zip(&src[c0..c0 + w]) {
                        *d = scale * x;
                    }
                    dst[w..].fill(0.0);
                }
            }
        };
        self.fill_panels(kernel);
    }

    /// Packs the TRANSPOSE of the row-major `rows x cols` matrix `a` (so the packed matrix is
    /// `cols x rows`; an exact copy): panel p holds rows 16p .. 16p + 16 of `a`, transposed.
    pub fn pack_transposed(&mut self, a: &[f32], rows: usize, cols: usize) {
        assert_eq!(a.len(), rows * cols, "Panels: matrix has the wrong size");
        self.resize(cols, rows);
        if cols == 0 {
            return;
        }
        let kernel = |(p, panel): (usize, &mut [f32])| {
            let r0 = p * PANEL_WIDTH;
            let h = PANEL_WIDTH.min(rows - r0);
            pack_band_transposed(panel, &a[r0 * cols..(r0 + h) * cols], cols);
        };
        self.fill_panels(kernel);
    }
}

/// Packs the band `band` (at most 16 rows of a row-major matrix with `cols` columns) into
/// `panel` (`cols x 16`) transposed: panel row j holds column j of the band, lanes past the
/// band's rows zero. One panel of [`Panels::pack_transposed`].
fn pack_band_transposed(panel: &mut [f32], band: &[f32], cols: usize) {
    #[cfg(target_arch = "x86_64")]
    let avx2 = SimdLevel::get() != SimdLevel::Baseline;
    let h = band.len() / cols;
    let mut j0 = 0;
    // With AVX2 and 16 source rows: 8 x 8 tiles transposed in registers, the band's rows
    // 0 .. 8 into lanes 0-7 of 8 panel rows, 8 .. 16 into 8-15.
    #[cfg(target_arch = "x86_64")]
    if avx2 && h == PANEL_WIDTH {
        while j0 + 8 <= cols {
            for half in 0..2 {
                let src = &band[8 * half * cols + j0..];
                let dst = &mut panel[j0 * PANEL_WIDTH + 8 * half..];
                // SAFETY: AVX2 is available (SimdLevel covers it); the tile's 8 source
                // rows (stride `cols`) and 8 destination rows (stride 16) lie in the
                // slices, which transpose_8x8_avx2 asserts.
                unsafe { transpose_8x8_avx2(src, cols, dst, PANEL_WIDTH) };
            }
            j0 += 8;
        }
    }
    // Tiles of 16 source columns: 16 x 16 floats, read row by row, written column by
    // column into 16 consecutive panel rows (1 KiB, in L1).
    for j0 in (j0..cols).step_by(PANEL_WIDTH) {
        let jw = PANEL_WIDTH.min(cols - j0);
        let tile = &mut panel[j0 * PANEL_WIDTH..(j0 + jw) * PANEL_WIDTH];
        for t in 0..PANEL_WIDTH {
            if t < h {
                let src = &band[t * cols + j0..t * cols + j0 + jw];
                for (j, &x) in src.iter().enumerate() {
                    tile[j * PANEL_WIDTH + t] = x;
                }
            } else {
                for j in 0..jw {
                    tile[j * PANEL_WIDTH + t] = 0.0;
                }
            }
        }
    }
}

/// Updates the row-major `rows x cols` matrix `w` band by band and leaves it packed in
/// `packed` ([`Panels::pack`]) and `transposed` ([`Panels::pack_transposed`]), each band packed
/// while it is in the cache: `update(first_row, w_band, companion_band)` gets 16 rows of `w`
/// (fewer at the end) and the same rows of `companion` (a matrix of the same shape updated
/// alongside: an optimizer's velocities). Bands run in parallel when the matrix is large; the
/// results are those of the update followed by the two packings, whatever the threads.
///
/// # Panics
/// If `w` or `companion` is not `rows x cols`.
pub fn update_packed<F>(
    (w, companion): (&mut [f32], &mut [f32]),
    (rows, cols): (usize, usize),
    packed: &mut Panels,
    transposed: &mut Panels,
    update: F,
) where
    F: Fn(usize, &mut [f32], &mut [f32]) + Sync,
{
    assert_eq!(
        w.len(),
        rows * cols,
        "update_packed: matrix has the wrong size"
    );
    assert_eq!(
        companion.len(),
        rows * cols,
        "update_packed: companion has the wrong size"
    );
    packed.resize(rows, cols);
    transposed.resize(cols, rows);
    if rows == 0 || cols == 0 {
        return;
    }
    let panels = cols.div_ceil(PANEL_WIDTH);
    let packed_lines = SharedOut(packed.panels_mut().as_mut_ptr());
    let band = PANEL_WIDTH * cols;
    let job = |q: usize, wb: &mut [f32], cb: &mut [f32], tp: &mut [f32]| {
        let r0 = q * PANEL_WIDTH;
        update(r0, wb, cb);
        // Row r0 + t of W is line r0 + t of every panel p: disjoint from other bands' lines.
        for (t, row) in wb.chunks_exact(cols).enumerate() {
            for p in 0..panels {
                let c0 = p * PANEL_WIDTH;
                let width = PANEL_WIDTH.min(cols - c0);
                // SAFETY: line r0 + t of panel p lies in the packed buffer (`rows` lines of
                // 16 per panel, `panels` panels) and only this band writes it.
                let line = unsafe {
                    std::slice::from_raw_parts_mut(
                        packed_lines.get().add((p * rows + r0 + t) * PANEL_WIDTH),
                        PANEL_WIDTH,
                    )
                };
                if width == PANEL_WIDTH {
                    // A copy of a known size: one vector move, not a call of memcpy.
                    let src: &Line = row[c0..c0 + PANEL_WIDTH].try_into().expect("16 floats");
                    line.copy_from_slice(src);
                } else {
                    line[..width].copy_from_slice(&row[c0..c0 + width]);
                    line[width..].fill(0.0);
                }
            }
        }
        pack_band_transposed(tp, wb, cols);
    };
    let chunk = cols * PANEL_WIDTH;
    let transposed_panels = transposed.panels_mut();
    // One panel of W^T per band of 16 rows of W (zip would drop the surplus silently).
    debug_assert_eq!(transposed_panels.len() / chunk, rows.div_ceil(PANEL_WIDTH));
    if rows * cols < 1 << 16 {
        w.chunks_mut(band)
            .zip(companion.chunks_mut(band))
            .zip(transposed_panels.chunks_exact_mut(chunk))
            .enumerate()
            .for_each(|(q, ((wb, cb), tp))| job(q, wb, cb, tp));
    } else {
        w.par_chunks_mut(band)
            .zip(companion.par_chunks_mut(band))
            .zip(transposed_panels.par_chunks_exact_mut(chunk))
            .enumerate()
            .for_each(|(q, ((wb, cb), tp))| job(q, wb, cb, tp));
    }
}

/// Columns of one block of [`binary_row_sums`]: eight lines of [`PANEL_WIDTH`], eight
/// independent sums in vector registers. [`AlignedRows`] pads its rows to a multiple of it.
pub const ROW_SUM_BLOCK: usize = 8 * PANEL_WIDTH;

/// The number of rows of the row-major blocks (`cols` columns each) stacked one above the other.
///
/// # Panics
/// If a block's length is not a multiple of `cols` (or `cols` is 0 and a block is not empty).
fn stacked_rows(blocks: &[(&[f32], f32)], cols: usize) -> usize {
    for (b, _) in blocks {
        let whole = if cols == 0 {
            b.is_empty()
        } else {
            b.len() % cols == 0
        };
        assert!(whole, "a stacked block has the wrong size");
    }
    blocks.iter().map(|(b, _)| b.len() / cols.max(1)).sum()
}

/// Sizes `data` to hold `len` entries from a 64-byte (cache line) boundary on, with room for
/// the shift (a `Vec<f32>` is only 4-byte aligned); returns the offset of that boundary.
fn resize_aligned(data: &mut Vec<f32>, len: usize) -> usize {
    data.resize(len + PANEL_WIDTH, 0.0);
    let misaligned = data.as_ptr() as usize % 64 / 4;
    (PANEL_WIDTH - misaligned) % PANEL_WIDTH
}

/// A row-major `rows x cols` matrix whose rows start on 64-byte (cache line) boundaries,
/// each padded with zeros to a multiple of [`ROW_SUM_BLOCK`] entries: the layout
/// [`binary_row_sums`] reads, a block of a row being eight whole cache lines.
///
/// The buffer is kept between packings: repacking a matrix of the same size allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct AlignedRows {
    rows: usize,
    cols: usize,
    /// Entries from one row's start to the next's (a multiple of [`ROW_SUM_BLOCK`]).
    stride: usize,
    /// Row r starts at `data[offset + r * stride]`, on a 64-byte boundary.
    data: Vec<f32>,
    offset: usize,
}

impl AlignedRows {
    /// Empty (fill with [`AlignedRows::pack_stacked`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (without the padding).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Packs the row-major matrices `blocks` (each `rows_k x cols`, with a scale `s_k`) stacked
    /// one above the other: [s_1 B_1; s_2 B_2; ...], each entry the f32 product s_k * b (the
    /// entries of [`Panels::pack_stacked`], in rows).
    ///
    /// # Panics
    /// If a block's length is not a multiple of `cols` (or `cols` is 0 and a block is not
    /// empty).
    pub fn pack_stacked(&mut self, blocks: &[(&[f32], f32)], cols: usize) {
        let rows = stacked_rows(blocks, cols);
        self.rows = rows;
        self.cols = cols;
        self.stride = cols.div_ceil(ROW_SUM_BLOCK) * ROW_SUM_BLOCK;
        self.offset = resize_aligned(&mut self.data, rows * self.stride);
        if rows == 0 || cols == 0 {
            return;
        }
        let mut dst_rows = self.data[self.offset..].chunks_exact_mut(self.stride);
        for &(block, scale) in blocks {
            // The block first: zip would take (and lose) a row past the block's end.
            for (src, dst) in block.chunks_exact(cols).zip(&mut dst_rows) {
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = scale * x;
                }
                dst[cols..].fill(0.0);
            }
        }
    }
}

/// Rows `first ..` of S B for a binary S (`m x k`, its [`BinaryRows`]) and a dense B
/// (`k x n`, in [`AlignedRows`]) into `out` (row-major, `out.len() / n` rows of `n`): row i of
/// `out` is the sum of the rows l of B with S[first + i, l] = 1, summed in f32 from +0.0 over
/// increasing l - the sums of [`binary_matmul`] and [`binary_matmul_panels`] (with
/// `alpha = 0`, `beta = 1`), bit for bit, for whatever instruction set is chosen at run time.
///
/// For one row of S at a time, eight lines of 16 columns advance together (independent sums
/// in registers) over the row's list, the rows of B read being whole cache lines: suited to
/// short lists over a B that stays in L2 (CD's weight statistics, [V; X]^T [P; P_X], row by
/// row of W, where the optimizer step can use each row while it is in the cache).
///
/// # Panics
/// If `out` is not whole rows, the rows pass the end of S, or S's columns are not B's rows.
pub fn binary_row_sums(out: &mut [f32], s: &BinaryRows, first: usize, b: &AlignedRows) {
    let n = b.cols();
    if n == 0 {
        assert!(out.is_empty(), "binary_row_sums: output has the wrong size");
        return;
    }
    assert_eq!(
        out.len() % n,
        0,
        "binary_row_sums: output is not whole rows"
    );
    assert!(
        first + out.len() / n <= s.rows(),
        "binary_row_sums: rows past the end of S"
    );
    assert_eq!(
        s.cols(),
        b.rows(),
        "binary_row_sums: inner dimensions differ"
    );
    match SimdLevel::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX-512F (checked by `SimdLevel::get`).
        SimdLevel::Avx512 => unsafe { row_sums_avx512(out, s, first, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX2 (checked by `SimdLevel::get`).
        SimdLevel::Avx2 => unsafe { row_sums_avx2(out, s, first, b) },
        SimdLevel::Baseline => row_sums_portable(out, s, first, b),
    }
}

/// [`row_sums_portable`] compiled for AVX-512F.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_sums_avx512(out: &mut [f32], s: &BinaryRows, first: usize, b: &AlignedRows) {
    row_sums_portable(out, s, first, b)
}

/// [`row_sums_portable`] compiled for AVX2.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_sums_avx2(out: &mut [f32], s: &BinaryRows, first: usize, b: &AlignedRows) {
    row_sums_portable(out, s, first, b)
}

/// The loops of [`binary_row_sums`] (sizes checked by it).
#[inline(always)]
fn row_sums_portable(out: &mut [f32], s: &BinaryRows, first: usize, b: &AlignedRows) {
    const W: usize = PANEL_WIDTH;
    let (n, stride) = (b.cols, b.stride);
    let data = &b.data[b.offset..b.offset + b.rows * stride];
    for (i, o) in out.chunks_exact_mut(n).enumerate() {
        let list = s.row(first + i);
        for c0 in (0..n).step_by(ROW_SUM_BLOCK) {
            // Line k of the block of B's row l. SAFETY (of every call): l is an index of a
            // list, below s.cols() == b.rows (checked by the caller), and c0 + 128 <= stride,
            // so the 16 floats lie in `data`; [f32; 16] needs only f32 alignment.
            let line = |l: u32, k: usize| -> &Line {
                unsafe { &*(data.as_ptr().add(l as usize * stride + c0 + k * W) as *const Line) }
            };
            let (mut a0, mut a1, mut a2, mut a3) = ([0.0; W], [0.0; W], [0.0; W], [0.0; W]);
            let (mut a4, mut a5, mut a6, mut a7) = ([0.0; W], [0.0; W], [0.0; W], [0.0; W]);
            for &l in list {
                add_line(&mut a0, line(l, 0));
                add_line(&mut a1, line(l, 1));
                add_line(&mut a2, line(l, 2));
                add_line(&mut a3, line(l, 3));
                add_line(&mut a4, line(l, 4));
                add_line(&mut a5, line(l, 5));
                add_line(&mut a6, line(l, 6));
                add_line(&mut a7, line(l, 7));
            }
            let width = ROW_SUM_BLOCK.min(n - c0);
            let sums = [a0, a1, a2, a3, a4, a5, a6, a7];
            for (dst, a) in o[c0..c0 + width].chunks_mut(W).zip(&sums) {
                if let Ok(dst) = <&mut Line>::try_from(&mut *dst) {
                    // A copy of a known size: one vector move, not a call of memcpy.
                    *dst = *a;
                } else {
                    dst.copy_from_slice(&a[..dst.len()]);
                }
            }
        }
    }
}

/// One term beta * S B of [`binary_matmul_panels`]: `s` lists the ones of S (`m x k`), `b` is
/// B (`k x n`) in panels.
#[derive(Debug, Clone, Copy)]
pub struct PanelTerm<'a> {
    /// The ones of the binary factor S.
    pub s: &'a BinaryRows,
    /// The dense factor B, packed.
    pub b: &'a Panels,
    /// The scale of the term.
    pub beta: f32,
}

/// `out = alpha * out + beta_1 S_1 B_1 + beta_2 S_2 B_2 + ...` for binary S_t (`m x k_t`,
/// their [`BinaryRows`]) and dense B_t (`k_t x n`, packed in [`Panels`]), `out` row-major
/// `m x n`: the same sums as [`binary_matmul`], bit for bit, computed faster.
///
/// Each sum is the one of [`binary_matmul`]: out[r, j] gets sum_{l: S[r, l] = 1} B[l, j] summed
/// in f32 from 0 over increasing l; the terms are then combined in order, each operation
/// rounded to f32: t_1 = alpha * out + beta_1 sum_1 (beta_1 sum_1 when `alpha == 0`, the old
/// content ignored), t_2 = t_1 + beta_2 sum_2, and so on (what successive [`binary_matmul`] calls
/// with alpha = 1 for the later terms give, in one pass over `out`: CD's two weight statistics
/// V^T P / m - X^T P_X / m' need no intermediate write of the output).
///
/// Loop order: for each panel of 16 columns (tasks, in parallel when the work is large), the
/// rows of S in groups of 8 of similar numbers of ones ([`BinaryRows`] keeps them sorted by
/// count); the 8 rows' sums advance together, one 16-wide accumulator each, so the adds form 8
/// independent chains, and every row of B read is a cache line of a panel that stays in L1
/// (a `k x 16` panel is 32-50 KiB for k = 500-784). Whatever the number of threads and the
/// instruction set chosen at run time (AVX-512, AVX2 or the baseline), every entry's sum runs
/// in the same order, so the output bits are the same.
///
/// # Panics
/// If the sizes disagree.
pub fn binary_matmul_panels(out: &mut [f32], alpha: f32, terms: &[PanelTerm<'_>]) {
    binary_matmul_panels_with(SimdLevel::get(), out, alpha, terms)
}

fn binary_matmul_panels_with(
    level: SimdLevel,
    out: &mut [f32],
    alpha: f32,
    terms: &[PanelTerm<'_>],
) {
    let Some(first) = terms.first() else {
        return;
    };
    let (m, n) = (first.s.rows(), first.b.cols());
    assert_eq!(out.len(), m * n, "binary_matmul: output has the wrong size");
    let mut work = m * n;
    for t in terms {
        assert_eq!(
            t.s.rows(),
            m,
            "binary_matmul: S has the wrong number of rows"
        );
        assert_eq!(
            t.b.cols(),
            n,
            "binary_matmul: B has the wrong number of columns"
        );
        assert_eq!(
            t.s.cols(),
            t.b.rows(),
            "binary_matmul: inner dimensions differ"
        );
        work += t.s.ones() * n;
    }
    if m == 0 || n == 0 {
        return;
    }
    let dst = SharedOut(out.as_mut_ptr());
    let parallel = work >= PARALLEL_MIN_FLOPS;
    // `level` is what the CPU supports (`SimdLevel::get`) or less; each job below writes
    // entries of `out` (which outlives the jobs) that no other concurrent job touches.
    let run = |job: Job| unsafe { panel_task(level, &dst, n, alpha, terms, job) };
    let panel_bytes: usize = terms.iter().map(|t| t.b.panels() * t.b.rows() * 64).sum();
    if panel_bytes > ROW_ORDER_MAX_BYTES {
        // Panel after panel: job p writes only the columns of panel p.
        let panels = first.b.panels();
        if parallel {
            (0..panels).into_par_iter().for_each(|p| run(Job::Panel(p)));
        } else {
            (0..panels).for_each(|p| run(Job::Panel(p)));
        }
    } else {
        // Small B (CD's statistics: P is batch x hidden): rows after rows, all panels of a row
        // at once, so each output row is written in one sweep. Term by term (term t + 1 reads
        // what term t wrote); a job writes only its rows.
        for t in 0..terms.len() {
            let jobs = m.div_ceil(ROWS_PER_JOB);
            let job = |k: usize| Job::Rows(t, k * ROWS_PER_JOB..((k + 1) * ROWS_PER_JOB).min(m));
            if parallel {
                (0..jobs).into_par_iter().for_each(|k| run(job(k)));
            } else {
                (0..jobs).for_each(|k| run(job(k)));
            }
        }
    }
}

/// Above this size of all the panels of B (in bytes), [`binary_matmul_panels`] goes panel after
/// panel, each staying in L1 for all the rows; at or below it (B then sits in L2 whole), row
/// groups after row groups, each output row written in one sweep.
const ROW_ORDER_MAX_BYTES: usize = 256 << 10;

/// Rows of one job of the row order of [`binary_matmul_panels`] (a multiple of 8: whole groups).
const ROWS_PER_JOB: usize = 64;

/// What one task of [`binary_matmul_panels`] computes.
#[derive(Debug, Clone)]
enum Job {
    /// Panel p of every term, for every row.
    Panel(usize),
    /// Term t, every panel, for the rows at these positions of the term's order by count.
    Rows(usize, std::ops::Range<usize>),
}

/// The output matrix shared by the tasks of [`binary_matmul_panels`], each writing its own
/// columns.
struct SharedOut(*mut f32);
// SAFETY: the tasks write disjoint entries (see `binary_matmul_panels_with`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `SharedOut`, which is `Sync`).
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Panel p of every term: the columns 16p .. min(16p + 16, n) of every row of the output,
/// with the instructions of `level` ([`panel_task_avx512`], [`panel_task_avx2`] or the
/// baseline build of [`panel_task_portable`]: the same code and arithmetic, so the same bits).
///
/// # Safety
/// `level` must be supported by the CPU; `dst` points to a row-major `m x n` matrix (m the
/// terms' rows) whose columns of panel p no one else reads or writes during the call; the
/// terms passed the size checks of [`binary_matmul_panels_with`].
unsafe fn panel_task(
    level: SimdLevel,
    dst: &SharedOut,
    n: usize,
    alpha: f32,
    terms: &[PanelTerm<'_>],
    job: Job,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => panel_task_avx512(dst, n, alpha, terms, job),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => panel_task_avx2(dst, n, alpha, terms, job),
            SimdLevel::Baseline => panel_task_portable(dst, n, alpha, terms, job),
        }
    }
}

/// [`panel_task_portable`] compiled for AVX-512F: each 16-wide sum is one zmm register.
///
/// # Safety
/// AVX-512F must be available; otherwise as [`panel_task`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn panel_task_avx512(
    dst: &SharedOut,
    n: usize,
    alpha: f32,
    terms: &[PanelTerm<'_>],
    job: Job,
) {
    // SAFETY: forwarded from the caller.
    unsafe { panel_task_portable(dst, n, alpha, terms, job) }
}

/// [`panel_task_portable`] compiled for AVX2: each 16-wide sum is two ymm registers.
///
/// # Safety
/// AVX2 must be available; otherwise as [`panel_task`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn panel_task_avx2(
    dst: &SharedOut,
    n: usize,
    alpha: f32,
    terms: &[PanelTerm<'_>],
    job: Job,
) {
    // SAFETY: forwarded from the caller.
    unsafe { panel_task_portable(dst, n, alpha, terms, job) }
}

/// One 16-wide row of a panel.
type Line = [f32; PANEL_WIDTH];

/// The line of +0.0 that [`panel_rows`] adds to a sum whose list has ended.
static ZERO_LINE: Line = [0.0; PANEL_WIDTH];

/// acc += src, lane by lane (one vector add once vectorised).
#[inline(always)]
fn add_line(acc: &mut Line, src: &Line) {
    for k in 0..PANEL_WIDTH {
        acc[k] += src[k];
    }
}

/// The work of [`panel_task`]: for each term, the rows of S in its order by count of ones, in
/// groups of 8 whose sums advance together (entry j of the eight lists in turn: eight
/// independent add chains; a list that has ended adds a line of +0.0, which changes no bit), then
/// the combination into the output ([`combine`]); the last rows (fewer than 8) one by one. Each
/// row's sum runs over its own list in order either way.
///
/// # Safety
/// As [`panel_task`] (without the CPU condition).
#[inline(always)]
unsafe fn panel_task_portable(
    dst: &SharedOut,
    n: usize,
    alpha: f32,
    terms: &[PanelTerm<'_>],
    job: Job,
) {
    // SAFETY (both arms): forwarded from the caller.
    match job {
        Job::Panel(p) => {
            for (t, term) in terms.iter().enumerate() {
                let rows = term.s.by_count();
                unsafe { panel_rows(dst, n, alpha, (t, term), p, rows) };
            }
        }
        Job::Rows(t, range) => {
            let term = &terms[t];
            let rows = &term.s.by_count()[range];
            for p in 0..term.b.panels() {
                unsafe { panel_rows(dst, n, alpha, (t, term), p, rows) };
            }
        }
    }
}

/// Panel p of term t for the output rows `rows`: groups of 8, then the rest one by one (see
/// [`panel_task_portable`]).
///
/// # Safety
/// As [`panel_task`], for the entries (rows, columns of panel p).
#[inline(always)]
unsafe fn panel_rows(
    dst: &SharedOut,
    n: usize,
    alpha: f32,
    (t, term): (usize, &PanelTerm<'_>),
    p: usize,
    rows: &[u32],
) {
    const W: usize = PANEL_WIDTH;
    let c0 = p * W;
    let width = W.min(n - c0);
    {
        let panel = term.b.panel(p);
        let s = term.s;
        let (begins, ends, indices) = (&s.begins[..], &s.ends[..], &s.indices[..]);
        // Row l of the panel. SAFETY (of every call): l is an index of a list, below
        // s.cols() == panel rows (BinaryRows' invariant and the size checks), so the 16
        // floats at 16 l lie in the panel; [f32; 16] needs only f32 alignment.
        let line =
            |l: u32| -> &Line { unsafe { &*(panel.as_ptr().add(l as usize * W) as *const Line) } };
        // Combines `sum` into output row r. SAFETY (of every call): entries (r, c0 .. c0 +
        // width) lie in the matrix and belong to this task (the caller's contract).
        let store = |r: u32, sum: &Line| {
            let o =
                unsafe { std::slice::from_raw_parts_mut(dst.0.add(r as usize * n + c0), width) };
            for (o, &x) in o.iter_mut().zip(sum) {
                *o = combine(t, alpha, *o, term.beta, x);
            }
        };
        let mut groups = rows.chunks_exact(8);
        for group in &mut groups {
            let mut begin = [0usize; 8];
            let mut end = [0usize; 8];
            for g in 0..8 {
                let r = group[g] as usize;
                begin[g] = begins[r];
                end[g] = ends[r];
            }
            let common = (0..8).map(|g| end[g] - begin[g]).min().unwrap_or(0);
            let longest = (0..8).map(|g| end[g] - begin[g]).max().unwrap_or(0);
            let heads: [&[u32]; 8] = [
                &indices[begin[0]..begin[0] + common],
                &indices[begin[1]..begin[1] + common],
                &indices[begin[2]..begin[2] + common],
                &indices[begin[3]..begin[3] + common],
                &indices[begin[4]..begin[4] + common],
                &indices[begin[5]..begin[5] + common],
                &indices[begin[6]..begin[6] + common],
                &indices[begin[7]..begin[7] + common],
            ];
            let (mut a0, mut a1, mut a2, mut a3) = ([0.0; W], [0.0; W], [0.0; W], [0.0; W]);
            let (mut a4, mut a5, mut a6, mut a7) = ([0.0; W], [0.0; W], [0.0; W], [0.0; W]);
            // Indexing the eight lists by j (not zipping them) keeps the loop simple for the
            // vectoriser; the bounds checks go, every head being `common` long.
            #[allow(clippy::needless_range_loop)]
            for j in 0..common {
                add_line(&mut a0, line(heads[0][j]));
                add_line(&mut a1, line(heads[1][j]));
                add_line(&mut a2, line(heads[2][j]));
                add_line(&mut a3, line(heads[3][j]));
                add_line(&mut a4, line(heads[4][j]));
                add_line(&mut a5, line(heads[5][j]));
                add_line(&mut a6, line(heads[6][j]));
                add_line(&mut a7, line(heads[7][j]));
            }
            // The tails, still eight chains at once: a list that has ended adds a line of
            // +0.0, which leaves its sum's bits unchanged (a sum started at +0.0 is never
            // -0.0, and x + 0.0 = x for every other x, NaN included).
            let tail = |g: usize, j: usize| -> &Line {
                if begin[g] + j < end[g] {
                    line(indices[begin[g] + j])
                } else {
                    &ZERO_LINE
                }
            };
            for j in common..longest {
                add_line(&mut a0, tail(0, j));
                add_line(&mut a1, tail(1, j));
                add_line(&mut a2, tail(2, j));
                add_line(&mut a3, tail(3, j));
                add_line(&mut a4, tail(4, j));
                add_line(&mut a5, tail(5, j));
                add_line(&mut a6, tail(6, j));
                add_line(&mut a7, tail(7, j));
            }
            for (g, acc) in [a0, a1, a2, a3, a4, a5, a6, a7].iter().enumerate() {
                store(group[g], acc);
            }
        }
        for &r in groups.remainder() {
            let mut acc = [0.0f32; W];
            for &l in s.row(r as usize) {
                add_line(&mut acc, line(l));
            }
            store(r, &acc);
        }
    }
}

/// Term t's contribution to an output entry `o` holding the previous value (t = 0: the old
/// content, else the sum of the earlier terms).
#[inline(always)]
fn combine(t: usize, alpha: f32, o: f32, beta: f32, acc: f32) -> f32 {
    if t > 0 {
        o + beta * acc
    } else if alpha == 0.0 {
        beta * acc
    } else {
        alpha * o + beta * acc
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

    #[test]
    fn every_instruction_set_lists_the_same_ones() {
        // 77 entries: two whole chunks of 32 and a partial one; a 0.5 makes a row not binary.
        let row: Vec<f32> = (0..77).map(|k| ((k * 5) % 7 < 3) as u32 as f32).collect();
        let mut half = row.clone();
        half[40] = 0.5;
        for (x, binary) in [(&row, true), (&half, false)] {
            let mut expected = vec![0u32; x.len()];
            let (n, ok) = list_ones_portable(x, &mut expected);
            assert_eq!(ok, binary);
            let ones: Vec<u32> = (0..x.len() as u32)
                .filter(|&k| x[k as usize] == 1.0)
                .collect();
            assert_eq!(&expected[..n], &ones[..]);
            let mut got = vec![0u32; x.len()];
            assert_eq!(list_ones(x, &mut got), (n, ok));
            assert_eq!(&got[..n], &ones[..]);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 was detected.
                    assert_eq!(unsafe { list_ones_avx2(x, &mut got) }, (n, ok));
                    assert_eq!(&got[..n], &ones[..]);
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F was detected.
                    assert_eq!(unsafe { list_ones_avx512(x, &mut got) }, (n, ok));
                    assert_eq!(&got[..n], &ones[..]);
                }
            }
        }
    }

    #[test]
    fn row_sums_match_the_row_kernel_bit_for_bit() {
        // Widths below, at and past a block of 128 columns; rows with no ones; a first row.
        for (m, k, n) in [(40, 200, 500), (17, 33, 128), (9, 5, 130), (12, 64, 7)] {
            let s_dense: Vec<f32> = (0..m * k)
                .map(|x| ((x * 2654435761usize) % 7 < 2 && x % 11 != 0) as u32 as f32)
                .collect();
            // Row 3 empty.
            let mut s_dense = s_dense;
            s_dense[3 * k..4 * k].fill(0.0);
            let b: Vec<f32> = (0..k * n)
                .map(|x| ((x * 7919) % 1013) as f32 * 1e-3 - 0.5)
                .collect();
            let mut s = BinaryRows::new();
            assert!(s.fill(&s_dense, m, k));
            let mut expected = vec![f32::NAN; m * n];
            binary_matmul(&mut expected, &s, &b, n, 0.0, 1.0);
            let mut rows = AlignedRows::new();
            rows.pack_stacked(&[(&b[..2 * n], 1.0), (&b[2 * n..], 1.0)], n);
            assert_eq!((rows.rows(), rows.cols()), (k, n));
            let mut got = vec![f32::NAN; m * n];
            binary_row_sums(&mut got, &s, 0, &rows);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&expected), "{m} x {k} x {n}");
            // Rows 5 .. 9 alone.
            let mut part = vec![f32::NAN; 4 * n];
            binary_row_sums(&mut part, &s, 5, &rows);
            assert_eq!(bits(&part), bits(&expected[5 * n..9 * n]));
            // A scale is applied to each entry before the sums.
            rows.pack_stacked(&[(&b, -0.25)], n);
            binary_row_sums(&mut got, &s, 0, &rows);
            let scaled: Vec<f32> = b.iter().map(|&x| -0.25 * x).collect();
            binary_matmul(&mut expected, &s, &scaled, n, 0.0, 1.0);
            assert_eq!(bits(&got), bits(&expected), "scaled {m} x {k} x {n}");
        }
    }

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
        // 13 x 70 is listed on the calling thread, 100 x 784 (MNIST batch) row by row in
        // parallel; refilling a list with a smaller matrix must not keep stale entries.
        let mut rows = BinaryRows::new();
        let mut cols = BinaryRows::new();
        let mut from_rows = BinaryRows::new();
        for (m, k, salt) in [(100, 784, 2), (13, 70, 1), (0, 5, 3), (4, 0, 4)] {
            assert!(m * k < FILL_PARALLEL_MIN_ENTRIES || m * k == 100 * 784);
            let a = binary(m, k, 0.3, salt);
            assert!(rows.fill(&a, m, k));
            assert!(cols.fill_transposed(&a, m, k));
            from_rows.fill_transposed_stacked(&[&rows]);
            assert_eq!(
                (rows.rows(), rows.cols(), cols.rows(), cols.cols()),
                (m, k, k, m)
            );
            assert_eq!((from_rows.rows(), from_rows.cols()), (k, m));
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
                assert_eq!(from_rows.row(j), &want[..]);
            }
            let ones = a.iter().filter(|&&x| x == 1.0).count();
            assert_eq!(
                (rows.ones(), cols.ones(), from_rows.ones()),
                (ones, ones, ones)
            );
            assert_eq!(from_rows.by_count(), cols.by_count());
            // Stacked: [A; B] with B the first rows of A reversed.
            let top = m.min(5);
            let b: Vec<f32> = (0..top)
                .rev()
                .flat_map(|r| a[r * k..(r + 1) * k].to_vec())
                .collect();
            let mut b_rows = BinaryRows::new();
            assert!(b_rows.fill(&b, top, k));
            let stacked: Vec<f32> = a.iter().chain(&b).copied().collect();
            let mut want = BinaryRows::new();
            assert!(want.fill_transposed(&stacked, m + top, k));
            let mut got = BinaryRows::new();
            got.fill_transposed_stacked(&[&rows, &b_rows]);
            assert_eq!(
                (got.rows(), got.cols(), got.ones()),
                (want.rows(), want.cols(), want.ones())
            );
            for j in 0..k {
                assert_eq!(got.row(j), want.row(j));
            }
            assert_eq!(got.by_count(), want.by_count());
            // Not binary: refused by both.
            if m * k > 17 {
                let mut p = a.clone();
                p[17] = 0.5;
                assert!(!rows.fill(&p, m, k));
                assert!(!cols.fill_transposed(&p, m, k));
            }
        }
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

    /// Every SIMD level this CPU has, and the portable baseline.
    fn levels() -> Vec<SimdLevel> {
        let mut levels = vec![SimdLevel::Baseline];
        if SimdLevel::get() != SimdLevel::Baseline {
            levels.push(SimdLevel::get());
        }
        levels
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn panels_hold_the_matrix_and_its_transpose() {
        // (300, 500): the packings in parallel (at least 2^16 entries), a partial last panel.
        for &(r, c) in &[(1, 1), (3, 16), (17, 33), (40, 7), (300, 500)] {
            let a: Vec<f32> = (0..r * c).map(|x| x as f32 + 0.5).collect();
            let mut p = Panels::new();
            p.pack(&a, r, c);
            assert_eq!((p.rows(), p.cols(), p.panels()), (r, c, c.div_ceil(16)));
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(p.panel(j / 16)[i * 16 + j % 16], a[i * c + j]);
                }
                for j in c..p.panels() * 16 {
                    assert_eq!(p.panel(j / 16)[i * 16 + j % 16], 0.0);
                }
            }
            assert_eq!(
                p.panel(0).as_ptr() as usize % 64,
                0,
                "panels start on a cache line"
            );
            let mut t = Panels::new();
            t.pack_transposed(&a, r, c);
            assert_eq!((t.rows(), t.cols()), (c, r));
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t.panel(i / 16)[j * 16 + i % 16], a[i * c + j]);
                }
            }
            // [0.25 A; -3 A[..2 rows]] stacked: each entry the f32 product.
            let top = 2.min(r);
            let mut st = Panels::new();
            st.pack_stacked(&[(&a, 0.25), (&[], 7.0), (&a[..top * c], -3.0)], c);
            assert_eq!((st.rows(), st.cols()), (r + top, c));
            for i in 0..r + top {
                let (row, scale) = if i < r { (i, 0.25) } else { (i - r, -3.0) };
                for j in 0..st.panels() * 16 {
                    let want = if j < c { scale * a[row * c + j] } else { 0.0 };
                    assert_eq!(st.panel(j / 16)[i * 16 + j % 16], want);
                }
            }
        }
    }

    /// update_packed applies the update to every band once (with the companion's same rows)
    /// and leaves exactly what pack and pack_transposed give of the updated matrix, on the
    /// calling thread (small) and band-parallel (large, a partial last band).
    #[test]
    fn update_packed_updates_then_packs_both_forms() {
        for (r, c) in [(5, 7), (40, 33), (300, 500), (784, 500)] {
            let w0: Vec<f32> = (0..r * c).map(|x| (x % 97) as f32 * 0.25 - 3.0).collect();
            let u0: Vec<f32> = (0..r * c).map(|x| (x % 13) as f32).collect();
            let (mut w, mut u) = (w0.clone(), u0.clone());
            let (mut packed, mut transposed) = (Panels::new(), Panels::new());
            update_packed(
                (&mut w, &mut u),
                (r, c),
                &mut packed,
                &mut transposed,
                |r0, wb, ub| {
                    assert_eq!(r0 % 16, 0);
                    for (k, (x, y)) in wb.iter_mut().zip(ub.iter_mut()).enumerate() {
                        *y = 0.5 * *y + (r0 * c + k) as f32;
                        *x += *y;
                    }
                },
            );
            for k in 0..r * c {
                let y = 0.5 * u0[k] + k as f32;
                assert_eq!((u[k], w[k]), (y, w0[k] + y), "entry {k} of {r} x {c}");
            }
            let (mut want, mut want_t) = (Panels::new(), Panels::new());
            want.pack(&w, r, c);
            want_t.pack_transposed(&w, r, c);
            assert_eq!((packed.rows(), packed.cols()), (r, c));
            assert_eq!((transposed.rows(), transposed.cols()), (c, r));
            for p in 0..want.panels() {
                assert_eq!(packed.panel(p), want.panel(p), "panel {p} of W, {r} x {c}");
            }
            for p in 0..want_t.panels() {
                assert_eq!(
                    transposed.panel(p),
                    want_t.panel(p),
                    "panel {p} of W^T, {r} x {c}"
                );
            }
        }
    }

    /// The panel kernel gives the bits of `binary_matmul` (same sums in the same order), with
    /// the detected SIMD level and with the portable path, for one term and for two fused
    /// terms (= two successive `binary_matmul` calls).
    #[test]
    fn panel_kernel_matches_binary_matmul_bit_for_bit() {
        // Widths below, at and across the 16-column panels; row counts that leave groups of
        // 8 incomplete; densities with empty and full rows.
        for &(m, k, n) in &[
            (3, 5, 4),
            (20, 40, 500),
            (9, 64, 16),
            (19, 33, 17),
            (40, 1, 3),
        ] {
            for density in [0.0, 0.13, 0.6, 1.0] {
                let a = binary(m, k, density, (m * n + k) as u64);
                let x = binary(m, k, 0.3, 11);
                let b: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1.37e-3)
                    .collect();
                let c: Vec<f32> = (0..k * n).map(|i| ((i * 31 % 97) as f32) * 0.01).collect();
                let (mut sa, mut sx) = (BinaryRows::new(), BinaryRows::new());
                assert!(sa.fill(&a, m, k) && sx.fill(&x, m, k));
                let (mut pb, mut pc) = (Panels::new(), Panels::new());
                pb.pack(&b, k, n);
                pc.pack(&c, k, n);
                let old: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32 - 2.0).collect();
                // References: one term with alpha = 0 and with alpha = 0.5, two terms.
                let mut one = old.clone();
                binary_matmul(&mut one, &sa, &b, n, 0.0, 0.25);
                let mut scaled = old.clone();
                binary_matmul(&mut scaled, &sa, &b, n, 0.5, -2.0);
                let mut two = old.clone();
                binary_matmul(&mut two, &sa, &b, n, 0.0, 0.01);
                binary_matmul(&mut two, &sx, &c, n, 1.0, -0.03);
                for level in levels() {
                    let term = |s, b, beta| PanelTerm { s, b, beta };
                    let mut out = vec![f32::NAN; m * n];
                    binary_matmul_panels_with(level, &mut out, 0.0, &[term(&sa, &pb, 0.25)]);
                    assert!(same_bits(&out, &one), "{level:?} {m}x{k}x{n} {density}");
                    let mut out = old.clone();
                    binary_matmul_panels_with(level, &mut out, 0.5, &[term(&sa, &pb, -2.0)]);
                    assert!(same_bits(&out, &scaled), "{level:?} alpha");
                    let mut out = vec![f32::NAN; m * n];
                    let terms = [term(&sa, &pb, 0.01), term(&sx, &pc, -0.03)];
                    binary_matmul_panels_with(level, &mut out, 0.0, &terms);
                    assert!(same_bits(&out, &two), "{level:?} two terms");
                }
            }
        }
    }

    #[test]
    fn panel_kernel_is_the_same_for_any_number_of_threads() {
        // Large enough to run in parallel.
        let (m, k, n) = (100, 784, 500);
        let a = binary(m, k, 0.13, 5);
        let b: Vec<f32> = (0..k * n)
            .map(|x| ((x * 7919 % 1000) as f32 - 500.0) * 1e-4)
            .collect();
        let mut ones = BinaryRows::new();
        assert!(ones.fill(&a, m, k));
        assert!(ones.ones() * n > PARALLEL_MIN_FLOPS);
        let mut panels = Panels::new();
        panels.pack(&b, k, n);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0.0f32; m * n];
            let term = PanelTerm {
                s: &ones,
                b: &panels,
                beta: 1.0,
            };
            pool.install(|| binary_matmul_panels(&mut out, 0.0, &[term]));
            out
        };
        let one = run(1);
        assert!(same_bits(&one, &run(2)) && same_bits(&one, &run(3)));
    }

    #[test]
    fn rows_are_ordered_by_their_numbers_of_ones() {
        let (m, k) = (57, 30);
        let a = binary(m, k, 0.4, 9);
        let mut ones = BinaryRows::new();
        assert!(ones.fill(&a, m, k));
        let order = ones.by_count();
        let mut seen = vec![false; m];
        for w in order.windows(2) {
            let (x, y) = (w[0] as usize, w[1] as usize);
            let (lx, ly) = (ones.row(x).len(), ones.row(y).len());
            assert!(lx < ly || (lx == ly && x < y));
        }
        for &r in order {
            seen[r as usize] = true;
        }
        assert!(order.len() == m && seen.iter().all(|&s| s));
        assert!(ones.fill_transposed(&a, m, k));
        assert_eq!(ones.by_count().len(), k);
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
