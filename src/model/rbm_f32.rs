//! The RBM with f32 parameters ([`RbmF32`]) and the matrix kernels that sampling
//! ([`crate::sample::rbm`]), training ([`crate::learn`]) and AIS ([`crate::infer::ais`]) run on.
//!
//! Conditionals of many rows at once: P(h_j = 1 | v) = sigmoid(c_j + (v^T W)_j) and
//! P(v_i = 1 | h) = sigmoid(b_i + (W h)_i), each one GEMM ([`crate::linalg::matmul`]) followed
//! by a vectorisable sigmoid pass ([`sigmoid_rows`] with the polynomial [`exp_f32`]); Bernoulli
//! draws ([`bernoulli_rows`]) take two 24-bit uniforms per `next_u64`, row r from its own
//! generator, and rows run in parallel, so results do not depend on the number of threads.
//!
//! [`BinaryConditionals`] computes the same conditionals with the binary-aware kernel
//! ([`crate::linalg::binary_matmul_panels`]) when the conditioning layer is 0/1 and sparse
//! enough: v W (and h W^T) is then a sum of selected rows of W (of W^T), packed in column panels
//! once per parameter update, not a product.

use rand::Rng;
use rayon::prelude::*;

use crate::error::Result;
use crate::linalg::{
    BinaryRows, KernelChoice, PanelTerm, Panels, SimdLevel, View, binary_matmul_panels,
    list_ones_portable, matmul, update_packed,
};
use crate::model::Rbm;

/// Matrices with fewer entries than this are processed on the calling thread (waking the pool
/// costs more than the work: a few microseconds, against about 1 ns per entry of a sigmoid or
/// Bernoulli pass). 2^14 lets a batch of 100 x 500 (50 us of sigmoids) use every core.
const PARALLEL_MIN_ENTRIES: usize = 1 << 14;

/// An RBM with f32 parameters, the form used by the sampling and training kernels.
///
/// Same conventions as [`Rbm`]: E(v, h) = - v^T W h - b^T v - c^T h, W row-major
/// `n_visible x n_hidden`.
#[derive(Debug, Clone, PartialEq)]
pub struct RbmF32 {
    /// Number of visible units.
    pub n_visible: usize,
    /// Number of hidden units.
    pub n_hidden: usize,
    /// W, row-major `n_visible x n_hidden`.
    pub weights: Vec<f32>,
    /// Visible bias b.
    pub visible_bias: Vec<f32>,
    /// Hidden bias c.
    pub hidden_bias: Vec<f32>,
}

impl RbmF32 {
    /// Rounds an [`Rbm`]'s parameters to f32.
    pub fn from_rbm(rbm: &Rbm) -> Self {
        let f = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        RbmF32 {
            n_visible: rbm.n_visible(),
            n_hidden: rbm.n_hidden(),
            weights: f(rbm.weights()),
            visible_bias: f(rbm.visible_bias()),
            hidden_bias: f(rbm.hidden_bias()),
        }
    }

    /// The same parameters as an f64 [`Rbm`] (exact: every f32 is an f64); fails if a
    /// parameter is not finite.
    pub fn to_rbm(&self) -> Result<Rbm> {
        let f = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        Rbm::new(
            self.n_visible,
            self.n_hidden,
            f(&self.weights),
            f(&self.visible_bias),
            f(&self.hidden_bias),
        )
    }

    /// W as a `n_visible x n_hidden` view.
    pub fn w(&self) -> View<'_> {
        View::row_major(&self.weights, self.n_visible, self.n_hidden)
    }
}

/// e^x in f32 with relative error below 2e-7 for x in [-87, 88] (inputs are clamped there).
///
/// Cody-Waite reduction x = n ln 2 + r, |r| <= ln(2)/2, and the degree-6 minimax polynomial of
/// Cephes' `expf` for e^r; 2^n is built in the exponent bits. Written without calls or
/// saturating casts so that loops over it vectorise.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let n_int = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// `out[r, j] = sigmoid(scale * x[r, j] + offset[j])` in place, for a row-major matrix whose rows
/// have `offset.len()` columns.
pub fn sigmoid_rows(x: &mut [f32], scale: f32, offset: &[f32]) {
    let cols = offset.len();
    let kernel = |row: &mut [f32]| sigmoid_row(row, scale, offset);
    if x.len() < PARALLEL_MIN_ENTRIES {
        x.chunks_exact_mut(cols).for_each(kernel);
    } else {
        x.par_chunks_exact_mut(cols).for_each(kernel);
    }
}

/// One row of [`sigmoid_rows`], with the widest vector instructions of the CPU (the same
/// operations in the same order whatever the instructions: the same bits; no fused
/// multiply-adds, which Rust does not form on its own).
#[inline]
fn sigmoid_row(row: &mut [f32], scale: f32, offset: &[f32]) {
    if row.len() < SIGMOID_DISPATCH_MIN_COLUMNS {
        // Short rows (small models): the dispatch would cost more than it saves.
        return sigmoid_row_portable(row, scale, offset);
    }
    match SimdLevel::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX-512F (checked by `SimdLevel::get`).
        SimdLevel::Avx512 => unsafe { sigmoid_row_avx512(row, scale, offset) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX2 (checked by `SimdLevel::get`).
        SimdLevel::Avx2 => unsafe { sigmoid_row_avx2(row, scale, offset) },
        SimdLevel::Baseline => sigmoid_row_portable(row, scale, offset),
    }
}

/// Rows at least this long go to the widest vector instructions in [`sigmoid_row`].
const SIGMOID_DISPATCH_MIN_COLUMNS: usize = 64;

/// [`sigmoid_row_portable`] compiled for AVX-512F.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sigmoid_row_avx512(row: &mut [f32], scale: f32, offset: &[f32]) {
    sigmoid_row_portable(row, scale, offset)
}

/// [`sigmoid_row_portable`] compiled for AVX2.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sigmoid_row_avx2(row: &mut [f32], scale: f32, offset: &[f32]) {
    sigmoid_row_portable(row, scale, offset)
}

/// row[j] = sigmoid(scale * row[j] + offset[j]) = 1 / (1 + e^-(scale * row[j] + offset[j])).
#[inline(always)]
fn sigmoid_row_portable(row: &mut [f32], scale: f32, offset: &[f32]) {
    for (v, &o) in row.iter_mut().zip(offset) {
        *v = 1.0 / (1.0 + exp_f32(-(scale * *v + o)));
    }
}

/// Draws out[r, j] = 1 with probability p[r, j] (else 0), row r using `rngs[r]`.
///
/// Each `next_u64` gives two 24-bit uniforms u, and the unit is on when u < p (exact for
/// probabilities that are multiples of 2^-24; p = 0 never and p = 1 always fires).
pub fn bernoulli_rows<R: Rng + Send>(p: &[f32], out: &mut [f32], cols: usize, rngs: &mut [R]) {
    debug_assert_eq!(p.len(), out.len());
    debug_assert!(rngs.len() * cols >= p.len());
    let kernel = |((probs, dst), rng): ((&[f32], &mut [f32]), &mut R)| {
        bernoulli_row(probs, dst, rng);
    };
    if p.len() < PARALLEL_MIN_ENTRIES {
        p.chunks_exact(cols)
            .zip(out.chunks_exact_mut(cols))
            .zip(rngs.iter_mut())
            .for_each(kernel);
    } else {
        p.par_chunks_exact(cols)
            .zip(out.par_chunks_exact_mut(cols))
            .zip(rngs.par_iter_mut())
            .for_each(kernel);
    }
}

/// One row of [`bernoulli_rows`].
#[inline]
fn bernoulli_row<R: Rng>(probs: &[f32], dst: &mut [f32], rng: &mut R) {
    const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
    let mut pairs_p = probs.chunks_exact(2);
    let mut pairs_d = dst.chunks_exact_mut(2);
    for (pp, dd) in (&mut pairs_p).zip(&mut pairs_d) {
        let bits = rng.next_u64();
        let u0 = (bits >> 40) as u32 as f32 * SCALE;
        let u1 = ((bits >> 8) & 0xFF_FFFF) as u32 as f32 * SCALE;
        dd[0] = if u0 < pp[0] { 1.0 } else { 0.0 };
        dd[1] = if u1 < pp[1] { 1.0 } else { 0.0 };
    }
    if let (Some(&pl), Some(dl)) = (
        pairs_p.remainder().first(),
        pairs_d.into_remainder().first_mut(),
    ) {
        let u = (rng.next_u64() >> 40) as u32 as f32 * SCALE;
        *dl = if u < pl { 1.0 } else { 0.0 };
    }
}

/// [`sigmoid_rows`] and then [`bernoulli_rows`] in one pass over the rows, the ones of the draws
/// listed in `ones` while each row is in the cache: `act` holds
/// activations (`rows x offset.len()`) and is left holding the probabilities
/// sigmoid(scale * act + offset); `out` gets the 0/1 draws, row r from `rngs[r]`. The same bits
/// as the two calls, for any number of threads.
pub fn sample_rows_listed<R: Rng + Send>(
    act: &mut [f32],
    scale: f32,
    offset: &[f32],
    out: &mut [f32],
    rngs: &mut [R],
    ones: &mut BinaryRows,
) {
    let cols = offset.len();
    assert_eq!(act.len(), out.len(), "sample_rows_listed: sizes differ");
    let rows = act.len().checked_div(cols).unwrap_or(0);
    assert!(rngs.len() >= rows, "sample_rows_listed: too few streams");
    ones.fill_by(rows, cols, |slots, counts| {
        if cols == 0 {
            return true;
        }
        let kernel = |((((a, dst), rng), slot), count): Items<'_, R>| {
            *count = sample_row_listed(a, (scale, offset), dst, rng, slot);
        };
        if act.len() < PARALLEL_MIN_ENTRIES {
            act.chunks_exact_mut(cols)
                .zip(out.chunks_exact_mut(cols))
                .zip(rngs.iter_mut())
                .zip(slots.chunks_exact_mut(cols))
                .zip(counts.iter_mut())
                .for_each(kernel);
        } else {
            act.par_chunks_exact_mut(cols)
                .zip(out.par_chunks_exact_mut(cols))
                .zip(rngs.par_iter_mut())
                .zip(slots.par_chunks_exact_mut(cols))
                .zip(counts.par_iter_mut())
                .for_each(kernel);
        }
        // Draws are 0.0 or 1.0 by construction.
        true
    });
}

/// One row of [`sample_rows_listed`] (returns the number of ones listed in `slot`), with the
/// widest vector instructions of the CPU: the same integer and separately rounded float
/// operations whatever the instructions, so the same bits.
#[inline]
fn sample_row_listed<R: Rng>(
    act: &mut [f32],
    (scale, offset): (f32, &[f32]),
    dst: &mut [f32],
    rng: &mut R,
    slot: &mut [u32],
) -> usize {
    match SimdLevel::get() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX-512F (checked by `SimdLevel::get`).
        SimdLevel::Avx512 => unsafe {
            sample_row_listed_avx512(act, scale, offset, dst, rng, slot)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX2 (checked by `SimdLevel::get`).
        SimdLevel::Avx2 => unsafe { sample_row_listed_avx2(act, scale, offset, dst, rng, slot) },
        SimdLevel::Baseline => sample_row_listed_portable(act, scale, offset, dst, rng, slot),
    }
}

/// [`sample_row_listed_portable`] compiled for AVX-512F.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sample_row_listed_avx512<R: Rng>(
    act: &mut [f32],
    scale: f32,
    offset: &[f32],
    dst: &mut [f32],
    rng: &mut R,
    slot: &mut [u32],
) -> usize {
    sample_row_listed_portable(act, scale, offset, dst, rng, slot)
}

/// [`sample_row_listed_portable`] compiled for AVX2.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sample_row_listed_avx2<R: Rng>(
    act: &mut [f32],
    scale: f32,
    offset: &[f32],
    dst: &mut [f32],
    rng: &mut R,
    slot: &mut [u32],
) -> usize {
    sample_row_listed_portable(act, scale, offset, dst, rng, slot)
}

/// Sigmoid, draws and list of one row.
#[inline(always)]
fn sample_row_listed_portable<R: Rng>(
    act: &mut [f32],
    scale: f32,
    offset: &[f32],
    dst: &mut [f32],
    rng: &mut R,
    slot: &mut [u32],
) -> usize {
    sigmoid_row_portable(act, scale, offset);
    bernoulli_row(act, dst, rng);
    list_ones_portable(dst, slot).0
}

/// One row's work of [`sample_rows_listed`]: activations, draws, stream, list slot and count.
type Items<'a, R> = (
    (((&'a mut [f32], &'a mut [f32]), &'a mut R), &'a mut [u32]),
    &'a mut usize,
);

/// P(h | v) for every row of `v` (`rows x n_visible`) into `out` (`rows x n_hidden`), at inverse
/// temperature `beta`: out = sigmoid(beta * (v W + c)).
pub fn hidden_probs(model: &RbmF32, v: &[f32], out: &mut [f32], beta: f32, offset: &[f32]) {
    let rows = v.len() / model.n_visible;
    matmul(
        out,
        View::row_major(v, rows, model.n_visible),
        model.w(),
        0.0,
        1.0,
    );
    sigmoid_rows(out, beta, offset);
}

/// P(v | h) for every row of `h` (`rows x n_hidden`) into `out` (`rows x n_visible`):
/// out = sigmoid(beta * h W^T + offset), where `offset` is b for plain sampling.
pub fn visible_probs(model: &RbmF32, h: &[f32], out: &mut [f32], beta: f32, offset: &[f32]) {
    let rows = h.len() / model.n_hidden;
    matmul(
        out,
        View::row_major(h, rows, model.n_hidden),
        model.w().t(),
        0.0,
        1.0,
    );
    sigmoid_rows(out, beta, offset);
}

/// The conditionals [`hidden_probs`] and [`visible_probs`] with the kernel chosen per product:
/// when the conditioning layer is binary (every entry 0.0 or 1.0) and its measured density
/// (fraction of ones) passes [`KernelChoice::use_binary`], the activations are sums of rows of W
/// (or of W^T) by [`binary_matmul_panels`]; otherwise (probabilities, dense data) the dense GEMM.
/// Both give the same values up to the f32 summation order.
///
/// The binary products run on W and W^T packed in column panels ([`Panels`], for
/// [`binary_matmul_panels`]): W is packed at the first binary `v W`, W^T at the first binary
/// `h W^T` after [`BinaryConditionals::parameters_changed`], which the owner must call whenever
/// the model's weights change. The scratch (lists of ones, panels) is kept, so that repeated
/// calls allocate nothing.
#[derive(Debug, Clone, Default)]
pub struct BinaryConditionals {
    choice: KernelChoice,
    ones: BinaryRows,
    /// W (`n_visible x n_hidden`) in panels, valid when `weights_fresh`.
    weights: Panels,
    weights_fresh: bool,
    /// W^T (`n_hidden x n_visible`) in panels, valid when `transposed_fresh`.
    transposed: Panels,
    transposed_fresh: bool,
}

impl BinaryConditionals {
    /// Kernels chosen by `choice` ([`KernelChoice::Auto`]: by density).
    pub fn new(choice: KernelChoice) -> Self {
        BinaryConditionals {
            choice,
            ..Self::default()
        }
    }

    /// The kernel choice.
    pub fn choice(&self) -> KernelChoice {
        self.choice
    }

    /// Marks W^T stale: call after every change of the model's weights (or before using another
    /// model).
    pub fn parameters_changed(&mut self) {
        self.weights_fresh = false;
        self.transposed_fresh = false;
    }

    /// Lists the ones of `x` (`rows x cols`) when it is binary and the choice takes the binary
    /// kernel at its density for a product `width` columns wide.
    fn binary_operand(&mut self, x: &[f32], cols: usize, width: usize, listed: bool) -> bool {
        // Decide on the width first: a product that cannot go binary is not scanned.
        if cols == 0 || !self.choice.use_binary(0.0, width) {
            return false;
        }
        if listed {
            assert!(
                self.ones.cols() == cols && self.ones.rows() * cols == x.len(),
                "the lists are not those of the operand (their shape differs)"
            );
            debug_assert!(
                self.lists(x, cols),
                "the lists are not those of the operand"
            );
        } else if !self.ones.fill(x, x.len() / cols, cols) {
            return false;
        }
        self.choice.use_binary(self.ones.density(), width)
    }

    /// Whether [`BinaryConditionals::ones`] lists the ones of `x` (`cols` columns): a check of
    /// the callers of the `listed` products.
    fn lists(&self, x: &[f32], cols: usize) -> bool {
        let mut fresh = BinaryRows::new();
        fresh.fill(x, x.len() / cols, cols)
            && fresh.rows() == self.ones.rows()
            && fresh.cols() == self.ones.cols()
            && (0..fresh.rows()).all(|r| fresh.row(r) == self.ones.row(r))
            && fresh.by_count() == self.ones.by_count()
    }

    /// Draws the binary layer `out` from the activations `act` (`act` left holding the
    /// probabilities sigmoid(scale * act + offset), row r drawn from `rngs[r]`: the values of
    /// [`sigmoid_rows`] and [`bernoulli_rows`]) for a following product `next_width` columns
    /// wide. When that product can take the binary kernel, the ones are listed in the same pass
    /// ([`sample_rows_listed`]) and the product, called with `listed` set, reads them instead of
    /// scanning `out`; otherwise (narrow products: the dense GEMM) nothing is listed, and the
    /// product with `listed` set takes the GEMM without reading lists.
    pub fn sample<R: Rng + Send>(
        &mut self,
        act: &mut [f32],
        (scale, offset): (f32, &[f32]),
        out: &mut [f32],
        rngs: &mut [R],
        next_width: usize,
    ) {
        if self.choice.use_binary(0.0, next_width) {
            sample_rows_listed(act, scale, offset, out, rngs, &mut self.ones);
        } else {
            sigmoid_rows(act, scale, offset);
            bernoulli_rows(act, out, offset.len(), rngs);
        }
    }

    /// The ones of the last binary operand: after a call of [`BinaryConditionals::hidden_probs`]
    /// or [`BinaryConditionals::visible_probs`] that returned `true`, those of its `v` or `h`.
    pub fn ones(&self) -> &BinaryRows {
        &self.ones
    }

    /// [`hidden_probs`]: out = sigmoid(beta * v W + offset), for the rows of `v`. Returns
    /// whether the binary kernel ran (then [`BinaryConditionals::ones`] lists the ones of `v`).
    pub fn hidden_probs(
        &mut self,
        model: &RbmF32,
        v: &[f32],
        out: &mut [f32],
        beta: f32,
        offset: &[f32],
    ) -> bool {
        let binary = self.hidden_activations(model, v, false, out);
        sigmoid_rows(out, beta, offset);
        binary
    }

    /// out = v W (the activations of [`BinaryConditionals::hidden_probs`] before the sigmoid).
    /// With `listed`, [`BinaryConditionals::ones`] must list the ones of `v` (as
    /// [`BinaryConditionals::sample`] left them): `v` is not scanned. Returns whether the
    /// binary kernel ran.
    pub fn hidden_activations(
        &mut self,
        model: &RbmF32,
        v: &[f32],
        listed: bool,
        out: &mut [f32],
    ) -> bool {
        if self.binary_operand(v, model.n_visible, model.n_hidden, listed) {
            self.pack_weights(model);
            let term = PanelTerm {
                s: &self.ones,
                b: &self.weights,
                beta: 1.0,
            };
            binary_matmul_panels(out, 0.0, &[term]);
            true
        } else {
            let rows = v.len() / model.n_visible;
            let v = View::row_major(v, rows, model.n_visible);
            matmul(out, v, model.w(), 0.0, 1.0);
            false
        }
    }

    /// Whether both packed forms (W and W^T) are fresh: after a gradient, whether its products
    /// used both or the packing of the previous step was kept (then
    /// [`BinaryConditionals::update_weights`] is worth its packing; when the layers turn dense
    /// for good the forms stop being fresh after one update).
    pub fn packs_both(&self) -> bool {
        self.weights_fresh && self.transposed_fresh
    }

    /// Exchanges the lists of the last binary operand ([`BinaryConditionals::ones`]) with
    /// `other`, without copying (the conditionals' own lists are scratch, refilled by the next
    /// product).
    pub fn swap_ones(&mut self, other: &mut BinaryRows) {
        std::mem::swap(&mut self.ones, other);
    }

    /// Updates the weights of `model` by `update` band by band ([`update_packed`], with
    /// `velocity` as the companion matrix) and packs W and W^T in the same pass: both fresh
    /// afterwards, for a following product with the same model.
    pub fn update_weights<F>(&mut self, model: &mut RbmF32, velocity: &mut [f32], update: F)
    where
        F: Fn(usize, &mut [f32], &mut [f32]) + Sync,
    {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        update_packed(
            (&mut model.weights, velocity),
            (nv, nh),
            &mut self.weights,
            &mut self.transposed,
            update,
        );
        self.weights_fresh = true;
        self.transposed_fresh = true;
    }

    /// Packs W in panels unless they are fresh.
    fn pack_weights(&mut self, model: &RbmF32) {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        if !self.weights_fresh || self.weights.rows() != nv || self.weights.cols() != nh {
            self.weights.pack(&model.weights, nv, nh);
            self.weights_fresh = true;
        }
    }

    /// [`visible_probs`]: out = sigmoid(beta * h W^T + offset), for the rows of `h`. Returns
    /// whether the binary kernel ran (then [`BinaryConditionals::ones`] lists the ones of `h`).
    pub fn visible_probs(
        &mut self,
        model: &RbmF32,
        h: &[f32],
        out: &mut [f32],
        beta: f32,
        offset: &[f32],
    ) -> bool {
        let binary = self.visible_activations(model, h, false, out);
        sigmoid_rows(out, beta, offset);
        binary
    }

    /// out = h W^T (the activations of [`BinaryConditionals::visible_probs`] before the
    /// sigmoid); `listed` as in [`BinaryConditionals::hidden_activations`]. Returns whether the
    /// binary kernel ran.
    pub fn visible_activations(
        &mut self,
        model: &RbmF32,
        h: &[f32],
        listed: bool,
        out: &mut [f32],
    ) -> bool {
        if self.binary_operand(h, model.n_hidden, model.n_visible, listed) {
            let (nv, nh) = (model.n_visible, model.n_hidden);
            if !self.transposed_fresh
                || self.transposed.rows() != nh
                || self.transposed.cols() != nv
            {
                self.transposed.pack_transposed(&model.weights, nv, nh);
                self.transposed_fresh = true;
            }
            let term = PanelTerm {
                s: &self.ones,
                b: &self.transposed,
                beta: 1.0,
            };
            binary_matmul_panels(out, 0.0, &[term]);
            true
        } else {
            let rows = h.len() / model.n_hidden;
            let h = View::row_major(h, rows, model.n_hidden);
            matmul(out, h, model.w().t(), 0.0, 1.0);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{EbmRng, Purpose, stream_for};

    #[test]
    fn exp_f32_is_accurate_over_its_range() {
        let mut worst: f64 = 0.0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = (exp_f32(x) as f64 - (x as f64).exp()).abs() / (x as f64).exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(-1000.0), exp_f32(-87.0));
        assert!(exp_f32(1000.0).is_finite());
    }

    /// Activations spread over the sigmoid's range (and past the clamp of `exp_f32`).
    fn activations(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|k| ((k * 7919) % 2001) as f32 * 0.1 - 100.0)
            .collect()
    }

    #[test]
    fn every_instruction_set_gives_the_same_sigmoid_bits() {
        let cols = 203;
        let offset: Vec<f32> = (0..cols).map(|j| j as f32 * 0.01 - 1.0).collect();
        let x = activations(1, cols);
        let mut portable = x.clone();
        sigmoid_row_portable(&mut portable, 0.7, &offset);
        let mut dispatched = x.clone();
        sigmoid_row(&mut dispatched, 0.7, &offset);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&portable), bits(&dispatched));
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut y = x.clone();
                // SAFETY: AVX2 was detected.
                unsafe { sigmoid_row_avx2(&mut y, 0.7, &offset) };
                assert_eq!(bits(&portable), bits(&y));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut y = x.clone();
                // SAFETY: AVX-512F was detected.
                unsafe { sigmoid_row_avx512(&mut y, 0.7, &offset) };
                assert_eq!(bits(&portable), bits(&y));
            }
        }
        // And the values are the sigmoid's.
        for (j, &p) in portable.iter().enumerate() {
            let z = 0.7 * x[j] as f64 + offset[j] as f64;
            assert!(
                (p as f64 - 1.0 / (1.0 + (-z).exp())).abs() < 1e-6,
                "{j}: {p}"
            );
        }
    }

    #[test]
    fn sampling_with_lists_matches_sigmoid_then_bernoulli() {
        // 3 x 50 runs on the calling thread, 400 x 300 in parallel.
        for (rows, cols) in [(3, 50), (400, 300)] {
            let offset: Vec<f32> = (0..cols).map(|j| (j % 7) as f32 * 0.3 - 1.0).collect();
            let streams = |seed| -> Vec<EbmRng> {
                (0..rows as u64)
                    .map(|r| stream_for(seed, Purpose::RbmChains, r))
                    .collect()
            };
            let act = activations(rows, cols)
                .iter()
                .map(|a| a * 0.05)
                .collect::<Vec<_>>();
            let mut probs = act.clone();
            sigmoid_rows(&mut probs, 0.9, &offset);
            let mut draws = vec![0.5; rows * cols];
            bernoulli_rows(&probs, &mut draws, cols, &mut streams(11));

            let mut fused_probs = act.clone();
            let mut fused_draws = vec![0.5; rows * cols];
            let mut ones = BinaryRows::new();
            let mut rngs = streams(11);
            sample_rows_listed(
                &mut fused_probs,
                0.9,
                &offset,
                &mut fused_draws,
                &mut rngs,
                &mut ones,
            );
            assert_eq!(probs, fused_probs);
            assert_eq!(draws, fused_draws);
            let mut scanned = BinaryRows::new();
            assert!(scanned.fill(&draws, rows, cols));
            assert_eq!(ones.ones(), scanned.ones());
            assert!(ones.ones() > 0 && ones.ones() < rows * cols);
            for r in 0..rows {
                assert_eq!(ones.row(r), scanned.row(r), "row {r}");
            }
            assert_eq!(ones.by_count(), scanned.by_count());
        }
    }

    #[test]
    fn bernoulli_frequencies_match_probabilities() {
        let cols = 5;
        let rows = 4000;
        let probs = [0.0f32, 1.0, 0.25, 0.5, 0.9];
        let p: Vec<f32> = (0..rows).flat_map(|_| probs).collect();
        let mut out = vec![0.0; p.len()];
        let mut rngs: Vec<EbmRng> = (0..rows as u64)
            .map(|r| stream_for(3, Purpose::RbmChains, r))
            .collect();
        bernoulli_rows(&p, &mut out, cols, &mut rngs);
        for (j, &pj) in probs.iter().enumerate() {
            let mean: f64 = (0..rows).map(|r| out[r * cols + j] as f64).sum::<f64>() / rows as f64;
            let sd = (pj as f64 * (1.0 - pj as f64) / rows as f64).sqrt();
            // 5 standard errors (exact for p in {0, 1}).
            assert!((mean - pj as f64).abs() <= 5.0 * sd + 1e-12, "{j}: {mean}");
        }
    }
}
