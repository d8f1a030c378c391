//! Gradient estimators: what a training objective contributes to the epoch loop of
//! [`crate::learn::cd::train_with_estimator`]. A new objective is a new [`GradientEstimator`]; the loop,
//! the optimizer ([`crate::learn::optimizer`]), monitoring and checkpoints stay as they are.
//!
//! [`ContrastiveDivergence`] estimates the gradient of the average log-likelihood with respect
//! to W_ij as <v_i h_j>_data - <v_i h_j>_model (Hinton, "Training products of experts by
//! minimizing contrastive divergence", Neural Computation 2002). The data term (positive phase)
//! is exact per mini-batch: the mean of v_i P(h_j = 1 | v). The model term (negative phase) is
//! the mean of x_i P(h_j = 1 | x) over samples x from k block Gibbs sweeps started at the batch
//! (CD-k) or continued from persistent fantasy chains (PCD: Tieleman, "Training restricted
//! Boltzmann machines using approximations to the likelihood gradient", ICML 2008). The biases
//! get the analogous <v_i> and <h_j> differences. With
//! [`ContrastiveDivergence::with_negative_sampler`] the persistent chains move by a gradient
//! sampler on the visible units (GWG or DMALA of [`crate::sample::gradient`]) instead of block
//! Gibbs: k proposals per update.
//!
//! The binary operands (the data batch, sampled layers) go to the binary-aware kernels when
//! sparse enough ([`BinaryConditionals`] for the conditionals,
//! [`crate::linalg::binary_matmul_panels`] for the statistics V^T P(h | V) - X^T P(h | X), both
//! in one pass): the same values as the dense GEMM up to the f32 summation
//! order, chosen by [`ContrastiveDivergence::with_kernels`] (by density by default).

use super::optimizer::Momentum;
use crate::linalg::{
    AlignedRows, BinaryRows, KernelChoice, PARALLEL_MIN_FLOPS, View, binary_matmul,
    binary_row_sums, matmul,
};
use crate::model::rbm_f32::{BinaryConditionals, RbmF32, sigmoid_rows};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rng::EbmRng;
use crate::sample::gradient::{GradientSampler, RbmChain};

/// A gradient (or any direction of ascent) with respect to the parameters of an RBM: the same
/// shapes as [`RbmF32`]'s W (`n_visible x n_hidden`, row-major), b and c.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// With respect to W.
    pub weights: Vec<f32>,
    /// With respect to b.
    pub visible_bias: Vec<f32>,
    /// With respect to c.
    pub hidden_bias: Vec<f32>,
}

impl Gradient {
    /// A zero gradient for an `n_visible x n_hidden` RBM.
    pub fn zeros(n_visible: usize, n_hidden: usize) -> Self {
        Gradient {
            weights: vec![0.0; n_visible * n_hidden],
            visible_bias: vec![0.0; n_visible],
            hidden_bias: vec![0.0; n_hidden],
        }
    }
}

/// One training objective: from a model and a mini-batch, the direction the optimizer ascends.
///
/// Implementations allocate their buffers when they are built, not per call.
pub trait GradientEstimator {
    /// Writes into `grad` the estimated gradient of the objective (to be increased) at `model`
    /// for `batch`, whose rows are training examples (`rows x n_visible`, entries 0.0 or 1.0).
    /// `rngs` holds at least [`GradientEstimator::streams`] generators, seeded by the epoch
    /// loop for this batch (row or chain r draws from `rngs[r]`).
    fn gradient(&mut self, model: &RbmF32, batch: &[f32], rngs: &mut [EbmRng], grad: &mut Gradient);

    /// The number of random streams [`GradientEstimator::gradient`] needs for a batch of
    /// `batch_rows` rows.
    fn streams(&self, batch_rows: usize) -> usize;

    /// State carried from one batch to the next that a checkpoint must keep, as visible states
    /// `rows x n_visible` (PCD: the persistent chains); empty when there is none.
    fn chains(&self) -> &[f32] {
        &[]
    }

    /// Parameters of the objective that are not the RBM's and that the estimator owns (NCE: `[c]`,
    /// its estimate of ln Z); a checkpoint keeps them. Empty when there are none.
    fn own_parameters(&self) -> &[f32] {
        &[]
    }

    /// Called by the epoch loop after each optimizer step: one plain gradient-ascent step at
    /// learning rate `lr` of [`GradientEstimator::own_parameters`] along the gradient of the
    /// last [`GradientEstimator::gradient`] call (no momentum: the optimizer stays generic and
    /// holds no state for them).
    fn step_own_parameters(&mut self, _lr: f32) {}

    /// The value of the objective this estimator ascends or descends, on the batch of the last
    /// [`GradientEstimator::gradient`] call at the parameters before that batch's update (mean
    /// per example): pseudo-log-likelihood, ratio-matching loss, NCE's J. `None` for CD and PCD,
    /// whose objective (the log-likelihood) is not computed.
    fn batch_objective(&self) -> Option<f64> {
        None
    }

    /// One optimizer step of `model` along `grad` (this estimator's last gradient) at learning
    /// rate `lr`, with the velocities `velocities` (W, b, c): by default
    /// [`Momentum::step`]. An estimator that keeps packed copies of the weights may refresh them
    /// in the same pass, for its next [`GradientEstimator::gradient`] call when that gets
    /// `model` as this call left it (the epoch loop's order); it must check that it does.
    fn apply_step(
        &mut self,
        optimizer: &Momentum,
        model: &mut RbmF32,
        velocities: (&mut [f32], &mut [f32], &mut [f32]),
        grad: &Gradient,
        lr: f32,
    ) {
        let (u_w, u_b, u_c) = velocities;
        optimizer.step(model, u_w, u_b, u_c, grad, lr);
    }

    /// One update, what the epoch loop calls for every batch: the parameters
    /// [`GradientEstimator::gradient`] followed by [`GradientEstimator::apply_step`] give (the
    /// default is those two calls). `grad` is scratch here: an estimator that fuses the two may
    /// leave parts of it unwritten (CD and PCD compute each band of rows of the weight
    /// statistics inside the step, while the band of W is in the cache).
    #[allow(clippy::too_many_arguments)]
    fn gradient_and_step(
        &mut self,
        optimizer: &Momentum,
        model: &mut RbmF32,
        velocities: (&mut [f32], &mut [f32], &mut [f32]),
        batch: &[f32],
        rngs: &mut [EbmRng],
        grad: &mut Gradient,
        lr: f32,
    ) {
        self.gradient(model, batch, rngs, grad);
        self.apply_step(optimizer, model, velocities, grad, lr);
    }
}

/// CD-k (negative samples from k sweeps started at the batch) or PCD-k (from persistent
/// chains), with every buffer allocated once.
#[derive(Debug, Clone)]
pub struct ContrastiveDivergence {
    k: usize,
    persistent: bool,
    /// Number of persistent chains (0 for CD).
    n_chains: usize,
    /// Persistent chains' visible states, `chains x n_visible` (empty for CD).
    chains: Vec<f32>,
    ph: Vec<f32>,
    x: Vec<f32>,
    px: Vec<f32>,
    hx: Vec<f32>,
    phx: Vec<f32>,
    /// PCD with a gradient sampler: one chain state per persistent chain (else empty).
    gradient_chains: Vec<RbmChain>,
    /// The conditionals' kernels and scratch.
    kernels: BinaryConditionals,
    /// The ones of the data batch (a copy of the conditionals' lists), then of [V; X]^T: the
    /// data batch and the negative samples stacked, transposed, for the weight statistics.
    ones_v: BinaryRows,
    ones_t: BinaryRows,
    /// PCD with block Gibbs: the ones of the persistent chains (`chains`), kept from the
    /// update that drew them when `chains_listed`.
    ones_chains: BinaryRows,
    chains_listed: bool,
    /// [P(h | V) / rows; -P(h | X) / neg] in aligned rows, for the weight statistics.
    statistics: AlignedRows,
    /// When the last [`GradientEstimator::apply_step`] left W and W^T packed: the fingerprint
    /// of the weights it left (the next gradient repacks unless its model matches).
    packed_for: Option<WeightsFingerprint>,
}

impl ContrastiveDivergence {
    /// The same PCD estimator with its persistent chains moved by `sampler` on the visible
    /// units: each update resets every chain to its stored state under the current parameters
    /// and makes k proposals (GWG: one flip each; DMALA: any number), chain r drawing from
    /// `rngs[r]`. Errors: [`Error::InvalidParam`] for CD (no persistent chains).
    pub fn with_negative_sampler(
        mut self,
        model: &RbmF32,
        sampler: GradientSampler,
    ) -> Result<Self> {
        if !self.persistent {
            return Err(Error::param(
                "negative-sampler",
                format!(
                    "{} needs persistent chains (PCD): CD restarts its chains at the data",
                    sampler.name()
                ),
            ));
        }
        let nv = model.n_visible;
        self.gradient_chains = self
            .chains
            .chunks_exact(nv)
            .map(|row| {
                RbmChain::new(
                    model,
                    sampler,
                    row.iter().map(|&x| (x > 0.5) as u8).collect(),
                )
            })
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// An estimator for batches of at most `max_rows` rows of `model`'s shape, with `k` Gibbs
    /// sweeps per update; `chains` (`chains x n_visible`) are the persistent chains for PCD, or
    /// empty for CD.
    ///
    /// # Panics
    /// If `chains` is not whole rows of `n_visible`.
    pub fn new(model: &RbmF32, max_rows: usize, k: usize, chains: Vec<f32>) -> Self {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        assert!(
            chains.len().is_multiple_of(nv.max(1)),
            "ContrastiveDivergence: the chains are not whole rows of {nv} visible units"
        );
        let persistent = !chains.is_empty();
        let neg = if persistent {
            chains.len() / nv
        } else {
            max_rows
        };
        ContrastiveDivergence {
            k,
            persistent,
            n_chains: if persistent { neg } else { 0 },
            chains,
            ph: vec![0.0; max_rows * nh],
            x: vec![0.0; neg * nv],
            px: vec![0.0; neg * nv],
            hx: vec![0.0; neg * nh],
            phx: vec![0.0; neg * nh],
            gradient_chains: Vec::new(),
            kernels: BinaryConditionals::new(KernelChoice::Auto),
            ones_v: BinaryRows::new(),
            ones_t: BinaryRows::new(),
            ones_chains: BinaryRows::new(),
            chains_listed: false,
            statistics: AlignedRows::new(),
            packed_for: None,
        }
    }

    /// The same estimator with the products of binary operands computed by `choice`
    /// ([`KernelChoice::Auto`], the default: binary-aware kernels for sparse operands;
    /// [`KernelChoice::Dense`]: always GEMM, the reference).
    pub fn with_kernels(mut self, choice: KernelChoice) -> Self {
        self.kernels = BinaryConditionals::new(choice);
        self
    }
}

/// What identifies the weights an estimator packed: their address and length and 64 entries
/// spread over them (bit patterns). A model swapped for another, or changed by another
/// optimizer step, almost surely differs in the sampled entries; a change of only entries that
/// are not sampled would go unnoticed, so code that edits a model's weights in place between
/// [`GradientEstimator::apply_step`] and [`GradientEstimator::gradient`] must build a new
/// estimator (the epoch loop never does).
#[derive(Debug, Clone, PartialEq, Eq)]
struct WeightsFingerprint {
    address: usize,
    len: usize,
    samples: [u32; 64],
}

impl WeightsFingerprint {
    fn of(model: &RbmF32) -> Self {
        let w = &model.weights;
        let mut samples = [0u32; 64];
        if !w.is_empty() {
            for (k, s) in samples.iter_mut().enumerate() {
                // Entries k (len - 1) / 63: the first, the last and 62 between.
                *s = w[k * (w.len() - 1) / 63].to_bits();
            }
        }
        WeightsFingerprint {
            address: w.as_ptr() as usize,
            len: w.len(),
            samples,
        }
    }
}

/// `out = alpha * out + beta * X^T P` for the visible states `x` (`rows x n_visible`) and
/// statistics `p` (`rows x n_hidden`), by [`binary_matmul`] over the ones of X^T when X is
/// binary and `choice` takes the binary kernel at its density, else by GEMM.
#[allow(clippy::too_many_arguments)]
fn add_weight_statistics(
    out: &mut [f32],
    x: &[f32],
    p: &[f32],
    (nv, nh): (usize, usize),
    alpha: f32,
    beta: f32,
    choice: KernelChoice,
    ones_t: &mut BinaryRows,
) {
    let rows = x.len() / nv;
    if choice.use_binary(0.0, nh)
        && ones_t.fill_transposed(x, rows, nv)
        && choice.use_binary(ones_t.density(), nh)
    {
        binary_matmul(out, ones_t, p, nh, alpha, beta);
    } else {
        matmul(
            out,
            View::row_major(x, rows, nv).t(),
            View::row_major(p, rows, nh),
            alpha,
            beta,
        );
    }
}

impl ContrastiveDivergence {
    /// The gradient of [`GradientEstimator::gradient`], except that when both layers went to
    /// the binary kernels the weight statistics are left to the caller: then `grad.weights` is
    /// not written, `ones_t` lists [V; X]^T and `statistics` holds
    /// [P(h | V) / rows; -P(h | X) / neg], and the return value is `true`
    /// ([`weight_statistics`] or [`ContrastiveDivergence::step_with_statistics`] finish it).
    fn gradient_deferred(
        &mut self,
        model: &RbmF32,
        batch: &[f32],
        rngs: &mut [EbmRng],
        grad: &mut Gradient,
    ) -> bool {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        let rows = batch.len() / nv;
        let v = batch;
        let ph = &mut self.ph[..rows * nh];
        let kernels = &mut self.kernels;
        if self.packed_for.take() != Some(WeightsFingerprint::of(model)) {
            kernels.parameters_changed();
        }
        // Positive phase: P(h | v) of the data; when v went to the binary kernel, its lists are
        // kept for the weight statistics.
        let positive_binary = kernels.hidden_activations(model, v, false, ph);
        if positive_binary {
            kernels.swap_ones(&mut self.ones_v);
        }
        // CD draws h from P(h | v) in the same pass as the sigmoid, listing its ones for h W^T.
        let restart = self.gradient_chains.is_empty() && !self.persistent;
        if restart {
            let hx = &mut self.hx[..rows * nh];
            kernels.sample(ph, (1.0, &model.hidden_bias), hx, rngs, nv);
        } else {
            sigmoid_rows(ph, 1.0, &model.hidden_bias);
        }
        // Negative phase.
        let neg = if !self.gradient_chains.is_empty() {
            let n = self.n_chains;
            let k = self.k;
            let x = &mut self.x[..n * nv];
            let chains = &self.chains;
            (self.gradient_chains.par_iter_mut())
                .zip(x.par_chunks_exact_mut(nv))
                .zip(rngs[..n].par_iter_mut())
                .enumerate()
                .for_each(|(r, ((chain, row), rng))| {
                    chain.reset(model, &chains[r * nv..(r + 1) * nv]);
                    for _ in 0..k {
                        chain.step(model, rng);
                    }
                    for (o, &b) in row.iter_mut().zip(chain.visible()) {
                        *o = b as f32;
                    }
                });
            self.chains.copy_from_slice(x);
            n
        } else if self.persistent {
            let n = self.n_chains;
            // The chains' state is moved (not copied) into x, their lists into the
            // conditionals when the last update kept them.
            std::mem::swap(&mut self.x, &mut self.chains);
            let listed = std::mem::take(&mut self.chains_listed);
            if listed {
                kernels.swap_ones(&mut self.ones_chains);
            }
            let (x, phx, hx, px) = (
                &mut self.x[..n * nv],
                &mut self.phx[..n * nh],
                &mut self.hx[..n * nh],
                &mut self.px[..n * nv],
            );
            // Each draw lists its ones for the next product (`listed`), which then reads no
            // f32 matrix.
            for step in 0..self.k {
                kernels.hidden_activations(model, x, listed || step > 0, phx);
                kernels.sample(phx, (1.0, &model.hidden_bias), hx, rngs, nv);
                kernels.visible_activations(model, hx, true, px);
                kernels.sample(px, (1.0, &model.visible_bias), x, rngs, nh);
            }
            self.chains.copy_from_slice(x);
            n
        } else {
            let (x, phx, hx, px) = (
                &mut self.x[..rows * nv],
                &mut self.phx[..rows * nh],
                &mut self.hx[..rows * nh],
                &mut self.px[..rows * nv],
            );
            // h was drawn (and listed) with P(h | v).
            for step in 0..self.k {
                kernels.visible_activations(model, hx, true, px);
                kernels.sample(px, (1.0, &model.visible_bias), x, rngs, nh);
                if step + 1 < self.k {
                    kernels.hidden_activations(model, x, true, phx);
                    kernels.sample(phx, (1.0, &model.hidden_bias), hx, rngs, nv);
                }
            }
            rows
        };
        let x = &self.x[..neg * nv];
        let phx = &mut self.phx[..neg * nh];
        // The block-Gibbs chains' last draw listed x.
        let x_listed = self.gradient_chains.is_empty() && self.k > 0;
        let negative_binary = kernels.hidden_activations(model, x, x_listed, phx);
        sigmoid_rows(phx, 1.0, &model.hidden_bias);
        // PCD's chains are x: their lists serve the next update's first product too.
        let keep_chain_lists = self.persistent && x_listed;
        if keep_chain_lists {
            kernels.swap_ones(&mut self.ones_chains);
            self.chains_listed = true;
        }
        let x_ones = if keep_chain_lists {
            &self.ones_chains
        } else {
            kernels.ones()
        };
        // grad_w = V^T P(h|V) / rows - X^T P(h|X) / neg.
        let choice = kernels.choice();
        if positive_binary && negative_binary {
            // Both statistics as one sum of rows: row i of grad_w adds the rows r of
            // [P(h | V) / rows; -P(h | X) / neg] with [V; X][r, i] = 1 (the same kernel choice as
            // the products with V and X: the same densities and width). The same values as the
            // two products below up to the f32 rounding (the scale is applied to each row before
            // the sum instead of after it).
            self.ones_t.fill_transposed_stacked(&[&self.ones_v, x_ones]);
            let (scale_v, scale_x) = (1.0 / rows as f32, -1.0 / neg as f32);
            self.statistics
                .pack_stacked(&[(&*ph, scale_v), (&*phx, scale_x)], nh);
            // <v_i> - <x_i> from the numbers of ones of column i of V and of X.
            for (i, g) in grad.visible_bias.iter_mut().enumerate() {
                let list = self.ones_t.row(i);
                let in_v = list.partition_point(|&r| (r as usize) < rows);
                *g = in_v as f32 / rows as f32 - (list.len() - in_v) as f32 / neg as f32;
            }
            mean_difference(&mut grad.hidden_bias, ph, phx);
            return true;
        }
        add_weight_statistics(
            &mut grad.weights,
            v,
            ph,
            (nv, nh),
            0.0,
            1.0 / rows as f32,
            choice,
            &mut self.ones_t,
        );
        add_weight_statistics(
            &mut grad.weights,
            x,
            phx,
            (nv, nh),
            1.0,
            -1.0 / neg as f32,
            choice,
            &mut self.ones_t,
        );
        mean_difference(&mut grad.visible_bias, v, x);
        mean_difference(&mut grad.hidden_bias, ph, phx);
        false
    }

    /// The optimizer step after a deferred gradient
    /// ([`ContrastiveDivergence::gradient_deferred`] returned `true`; `grad` holds the biases'
    /// gradient): each band of 16 rows of the weight statistics is summed into a per-thread
    /// scratch ([`binary_row_sums`]) and used at once for the same band of W (and repacked with
    /// it when both packed forms are in use). The same parameters as [`weight_statistics`]
    /// followed by [`Momentum::step`], bit for bit.
    fn step_with_statistics(
        &mut self,
        optimizer: &Momentum,
        model: &mut RbmF32,
        (u_w, u_b, u_c): (&mut [f32], &mut [f32], &mut [f32]),
        grad: &Gradient,
        lr: f32,
    ) {
        let (ones_t, statistics) = (&self.ones_t, &self.statistics);
        let band_update = |r0: usize, w: &mut [f32], u: &mut [f32]| {
            BAND_STATISTICS.with_borrow_mut(|g| {
                if g.len() < w.len() {
                    g.resize(w.len(), 0.0);
                }
                let g = &mut g[..w.len()];
                binary_row_sums(g, ones_t, r0, statistics);
                optimizer.weights_block(w, u, g, lr);
            });
        };
        if self.kernels.packs_both() {
            self.kernels.update_weights(model, u_w, band_update);
            self.packed_for = Some(WeightsFingerprint::of(model));
        } else {
            let band = STATISTICS_BAND_ROWS * model.n_hidden.max(1);
            let job = |(q, (w, u)): (usize, (&mut [f32], &mut [f32]))| {
                band_update(q * STATISTICS_BAND_ROWS, w, u)
            };
            if ones_t.ones() * model.n_hidden < PARALLEL_MIN_FLOPS {
                model
                    .weights
                    .chunks_mut(band)
                    .zip(u_w.chunks_mut(band))
                    .enumerate()
                    .for_each(job);
            } else {
                (model.weights.par_chunks_mut(band))
                    .zip(u_w.par_chunks_mut(band))
                    .enumerate()
                    .for_each(job);
            }
        }
        optimizer.step_biases(model, u_b, u_c, grad, lr);
    }
}

thread_local! {
    /// Per-thread scratch of [`ContrastiveDivergence::step_with_statistics`]: one band of rows
    /// of the weight statistics (grown once to the largest band).
    static BAND_STATISTICS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl GradientEstimator for ContrastiveDivergence {
    fn gradient(
        &mut self,
        model: &RbmF32,
        batch: &[f32],
        rngs: &mut [EbmRng],
        grad: &mut Gradient,
    ) {
        if self.gradient_deferred(model, batch, rngs, grad) {
            weight_statistics(&mut grad.weights, &self.ones_t, &self.statistics);
        }
    }

    /// The gradient and the step, the weight statistics summed band by band inside the step
    /// when both layers are sparse (`step_with_statistics`); else
    /// [`GradientEstimator::gradient`] and [`GradientEstimator::apply_step`]. `grad.weights` is
    /// not written in the fused case.
    fn gradient_and_step(
        &mut self,
        optimizer: &Momentum,
        model: &mut RbmF32,
        velocities: (&mut [f32], &mut [f32], &mut [f32]),
        batch: &[f32],
        rngs: &mut [EbmRng],
        grad: &mut Gradient,
        lr: f32,
    ) {
        if self.gradient_deferred(model, batch, rngs, grad) {
            self.step_with_statistics(optimizer, model, velocities, grad, lr);
        } else {
            self.apply_step(optimizer, model, velocities, grad, lr);
        }
    }

    fn streams(&self, batch_rows: usize) -> usize {
        self.n_chains.max(batch_rows)
    }

    /// [`Momentum::step`], with W and W^T repacked in the same pass over W when the last
    /// gradient used both packed forms (the same parameters either way).
    fn apply_step(
        &mut self,
        optimizer: &Momentum,
        model: &mut RbmF32,
        (u_w, u_b, u_c): (&mut [f32], &mut [f32], &mut [f32]),
        grad: &Gradient,
        lr: f32,
    ) {
        if !self.kernels.packs_both() {
            optimizer.step(model, u_w, u_b, u_c, grad, lr);
            return;
        }
        let nh = model.n_hidden;
        self.kernels.update_weights(model, u_w, |r0, w, u| {
            let g = &grad.weights[r0 * nh..r0 * nh + w.len()];
            optimizer.weights_block(w, u, g, lr);
        });
        optimizer.step_biases(model, u_b, u_c, grad, lr);
        self.packed_for = Some(WeightsFingerprint::of(model));
    }

    fn chains(&self) -> &[f32] {
        &self.chains
    }
}

/// grad_w = S B for the lists S of [V; X]^T and the rows B of [P(h | V) / rows; -P(h | X) / neg]
/// ([`binary_row_sums`]), bands of rows in parallel when the product is large.
fn weight_statistics(grad_w: &mut [f32], ones_t: &BinaryRows, statistics: &AlignedRows) {
    let nh = statistics.cols();
    if nh == 0 {
        return;
    }
    let band = STATISTICS_BAND_ROWS * nh;
    if ones_t.ones() * nh < PARALLEL_MIN_FLOPS {
        binary_row_sums(grad_w, ones_t, 0, statistics);
    } else {
        grad_w
            .par_chunks_mut(band)
            .enumerate()
            .for_each(|(q, rows)| {
                binary_row_sums(rows, ones_t, q * STATISTICS_BAND_ROWS, statistics)
            });
    }
}

/// Rows of W per task of the weight statistics.
const STATISTICS_BAND_ROWS: usize = 16;

/// out[j] = mean over the rows of `a` of a[., j] minus the same mean of `b` (rows of
/// `out.len()` columns): each column summed in f32 over the rows in order, then divided by the
/// number of rows.
fn mean_difference(out: &mut [f32], a: &[f32], b: &[f32]) {
    const BLOCK: usize = 64;
    let cols = out.len();
    let (ra, rb) = (a.len() / cols, b.len() / cols);
    let column_sums = |m: &[f32], c0: usize, sums: &mut [f32]| {
        sums.fill(0.0);
        for row in m.chunks_exact(cols) {
            for (s, &x) in sums.iter_mut().zip(&row[c0..]) {
                *s += x;
            }
        }
    };
    let (mut sa, mut sb) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
    for (k, o) in out.chunks_mut(BLOCK).enumerate() {
        let w = o.len();
        column_sums(a, k * BLOCK, &mut sa[..w]);
        column_sums(b, k * BLOCK, &mut sb[..w]);
        for ((o, &x), &y) in o.iter_mut().zip(&sa).zip(&sb) {
            *o = x / ra as f32 - y / rb as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::datasets::read_dataset;
    use crate::learn::cd::{CdParams, TrainState, train_with_estimator};
    use crate::progress::Silent;

    fn patterned_model(nv: usize, nh: usize) -> RbmF32 {
        RbmF32 {
            n_visible: nv,
            n_hidden: nh,
            weights: (0..nv * nh)
                .map(|k| ((k * 7919) % 1000) as f32 * 2e-4 - 0.1)
                .collect(),
            visible_bias: vec![-0.5; nv],
            hidden_bias: vec![0.0; nh],
        }
    }

    /// The training streams of rows 0 .. n for a batch keyed `key`.
    fn streams(key: u64, n: usize) -> Vec<EbmRng> {
        (0..n as u64)
            .map(|r| crate::rng::stream_for(key, crate::rng::Purpose::Training, r))
            .collect()
    }

    /// About one entry in `period` set to 1, in a pattern fixed by `salt`.
    fn patterned_bits(n: usize, salt: usize, period: usize) -> Vec<f32> {
        (0..n)
            .map(|k| ((k.wrapping_mul(2_654_435_761) + salt) >> 7).is_multiple_of(period))
            .map(|b| b as u8 as f32)
            .collect()
    }

    /// Six updates with the fused step (apply_step) and with Momentum::step on a twin that
    /// packs afresh every time: the same gradients and parameters bit for bit, for CD-1, CD-2
    /// and PCD-1 with every kernel choice, on 784 x 500 (update_packed in parallel), shapes with
    /// partial panels, and batches of several sizes (1 to 100 rows).
    #[test]
    fn fused_steps_match_the_optimizer_over_many_updates() {
        let optimizer = Momentum {
            momentum: 0.5,
            weight_decay: 1e-4,
        };
        let max = 100;
        let (mut fused_somewhere, mut deferred_somewhere) = (false, false);
        for (nv, nh) in [(784, 500), (300, 170), (20, 7)] {
            for (persistent, k, choice) in [
                (false, 1, KernelChoice::Auto),
                (false, 2, KernelChoice::Binary),
                (true, 1, KernelChoice::Auto),
                (true, 1, KernelChoice::Binary),
                (true, 1, KernelChoice::Dense),
            ] {
                let chains = if persistent {
                    patterned_bits(30 * nv, 5, 3)
                } else {
                    Vec::new()
                };
                let new = || {
                    ContrastiveDivergence::new(&patterned_model(nv, nh), max, k, chains.clone())
                        .with_kernels(choice)
                };
                // `fused`: gradient, then apply_step (packing in the step); `joint`:
                // gradient_and_step (the statistics inside the step); `plain`: gradient, then
                // Momentum::step.
                let (mut fused, mut joint, mut plain) = (new(), new(), new());
                let (mut m_fused, mut m_joint, mut m_plain) = (
                    patterned_model(nv, nh),
                    patterned_model(nv, nh),
                    patterned_model(nv, nh),
                );
                let zeros = || (vec![0.0; nv * nh], vec![0.0; nv], vec![0.0; nh]);
                let (mut u_fused, mut u_joint, mut u_plain) = (zeros(), zeros(), zeros());
                for (step, rows) in [100, 100, 37, 100, 1, 64].into_iter().enumerate() {
                    let batch = patterned_bits(rows * nv, step, 7);
                    let rngs = || streams(step as u64, max);
                    let (mut g_fused, mut g_plain) =
                        (Gradient::zeros(nv, nh), Gradient::zeros(nv, nh));
                    fused.gradient(&m_fused, &batch, &mut rngs(), &mut g_fused);
                    plain.gradient(&m_plain, &batch, &mut rngs(), &mut g_plain);
                    let case = format!("{nv} x {nh}, PCD {persistent}, k {k}, {choice:?}");
                    assert!(g_fused == g_plain, "{case}: gradient of update {step}");
                    assert!(
                        g_fused.weights.iter().any(|&g| g != 0.0),
                        "{case}: a gradient"
                    );
                    fused_somewhere |= fused.kernels.packs_both();
                    let (uw, ub, uc) = &mut u_fused;
                    fused.apply_step(&optimizer, &mut m_fused, (uw, ub, uc), &g_fused, 0.05);
                    let (uw, ub, uc) = &mut u_plain;
                    optimizer.step(&mut m_plain, uw, ub, uc, &g_plain, 0.05);
                    assert!(m_fused == m_plain, "{case}: model after update {step}");
                    assert!(u_fused == u_plain, "{case}: velocities after update {step}");
                    let mut scratch = Gradient::zeros(nv, nh);
                    let (uw, ub, uc) = &mut u_joint;
                    joint.gradient_and_step(
                        &optimizer,
                        &mut m_joint,
                        (uw, ub, uc),
                        &batch,
                        &mut rngs(),
                        &mut scratch,
                        0.05,
                    );
                    deferred_somewhere |= joint.statistics.rows() > 0;
                    assert!(
                        m_joint == m_plain,
                        "{case}: joint model after update {step}"
                    );
                    assert!(
                        u_joint == u_plain,
                        "{case}: joint velocities, update {step}"
                    );
                    assert!(
                        joint.chains == plain.chains,
                        "{case}: chains, update {step}"
                    );
                }
            }
        }
        assert!(fused_somewhere, "the fused path ran");
        assert!(deferred_somewhere, "the statistics ran inside the step");
    }

    #[test]
    fn statistics_inside_the_step_without_packing_match_the_optimizer() {
        // Hidden units almost always on (bias +4): h W^T takes the GEMM, so W^T is not packed,
        // and the step sums the statistics band by band without packing (the sparse v and x
        // still go to the binary kernel).
        let optimizer = Momentum {
            momentum: 0.5,
            weight_decay: 1e-4,
        };
        let (nv, nh, n) = (300, 170, 40);
        let mut model = patterned_model(nv, nh);
        model.hidden_bias.fill(4.0);
        let mut joint = ContrastiveDivergence::new(&model, n, 1, patterned_bits(n * nv, 5, 3));
        let mut plain = joint.clone();
        let (mut m_joint, mut m_plain) = (model.clone(), model);
        let zeros = || (vec![0.0; nv * nh], vec![0.0; nv], vec![0.0; nh]);
        let (mut u_joint, mut u_plain) = (zeros(), zeros());
        for step in 0..4 {
            let batch = patterned_bits(n * nv, step, 7);
            let rngs = || streams(step as u64, n);
            joint.statistics = AlignedRows::new();
            let (uw, ub, uc) = &mut u_joint;
            let mut scratch = Gradient::zeros(nv, nh);
            joint.gradient_and_step(
                &optimizer,
                &mut m_joint,
                (uw, ub, uc),
                &batch,
                &mut rngs(),
                &mut scratch,
                0.05,
            );
            assert!(
                joint.statistics.rows() > 0,
                "deferred statistics, update {step}"
            );
            assert!(!joint.kernels.packs_both(), "W^T not packed, update {step}");
            let mut grad = Gradient::zeros(nv, nh);
            plain.gradient(&m_plain, &batch, &mut rngs(), &mut grad);
            let (uw, ub, uc) = &mut u_plain;
            optimizer.step(&mut m_plain, uw, ub, uc, &grad, 0.05);
            assert!(m_joint == m_plain, "model after update {step}");
            assert!(u_joint == u_plain, "velocities after update {step}");
        }
    }

    #[test]
    fn kept_chain_lists_give_the_gradient_of_fresh_ones() {
        // PCD keeps the lists of its chains from one update to the next; an estimator built
        // afresh on the same chains lists them by scanning. Same gradients and chains.
        let (nv, nh, n) = (300, 170, 40);
        let model = patterned_model(nv, nh);
        let mut kept = ContrastiveDivergence::new(&model, n, 1, patterned_bits(n * nv, 5, 3))
            .with_kernels(KernelChoice::Binary);
        for step in 0..4 {
            let batch = patterned_bits(n * nv, step, 7);
            let rngs = || streams(step as u64, n);
            let mut fresh = ContrastiveDivergence::new(&model, n, 1, kept.chains.clone())
                .with_kernels(KernelChoice::Binary);
            let before = kept.chains.clone();
            let (mut g_kept, mut g_fresh) = (Gradient::zeros(nv, nh), Gradient::zeros(nv, nh));
            kept.gradient(&model, &batch, &mut rngs(), &mut g_kept);
            fresh.gradient(&model, &batch, &mut rngs(), &mut g_fresh);
            assert!(g_kept == g_fresh, "gradient of update {step}");
            assert!(kept.chains == fresh.chains, "chains after update {step}");
            assert!(kept.chains != before, "the chains moved in update {step}");
            assert!(kept.chains_listed && fresh.chains_listed);
        }
    }

    /// A model swapped for another of the same shape between apply_step and gradient is noticed
    /// (fingerprint): the gradient is the one of an estimator that packs the new model afresh.
    #[test]
    fn a_model_changed_after_the_fused_step_is_packed_again() {
        let (nv, nh, rows) = (300, 160, 20);
        let optimizer = Momentum {
            momentum: 0.5,
            weight_decay: 1e-4,
        };
        let mut model = patterned_model(nv, nh);
        let mut cd = ContrastiveDivergence::new(&model, rows, 1, Vec::new())
            .with_kernels(KernelChoice::Binary);
        let batch = patterned_bits(rows * nv, 1, 7);
        let rngs = || streams(1, rows);
        let mut g = Gradient::zeros(nv, nh);
        cd.gradient(&model, &batch, &mut rngs(), &mut g);
        let (mut uw, mut ub, mut uc) = (vec![0.0; nv * nh], vec![0.0; nv], vec![0.0; nh]);
        cd.apply_step(
            &optimizer,
            &mut model,
            (&mut uw, &mut ub, &mut uc),
            &g,
            0.05,
        );
        assert!(cd.packed_for.is_some(), "the step packed");
        let other = patterned_model(nv, nh);
        let mut fresh = ContrastiveDivergence::new(&other, rows, 1, Vec::new())
            .with_kernels(KernelChoice::Binary);
        let (mut g1, mut g2) = (Gradient::zeros(nv, nh), Gradient::zeros(nv, nh));
        cd.gradient(&other, &batch, &mut rngs(), &mut g1);
        fresh.gradient(&other, &batch, &mut rngs(), &mut g2);
        assert_eq!(g1, g2);
    }

    /// One epoch of CD-1 and of PCD-1 on the digits data, with every binary product by the
    /// binary-aware kernel (`binary_matmul_panels`, the fused weight statistics) and by GEMM:
    /// the same model up to the f32 summation order.
    #[test]
    fn binary_kernels_train_the_same_model_as_gemm() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let train = read_dataset(&root.join("data/digits_train.txt"), None).unwrap();
        // 16 hidden units: one panel; 40: two panels and a partial one.
        for (persistent, hidden) in [(false, 16), (true, 16), (false, 40), (true, 40)] {
            let params = CdParams {
                hidden,
                epochs: 1,
                persistent,
                chains: 10,
                seed: 7,
                ..CdParams::default()
            };
            let run = |choice: KernelChoice| {
                let state = TrainState::init(&train, &params).unwrap();
                let chains = if persistent {
                    state.chains.clone()
                } else {
                    Vec::new()
                };
                let mut cd = ContrastiveDivergence::new(&state.model, params.batch_size, 1, chains)
                    .with_kernels(choice);
                let out = train_with_estimator(&train, None, &params, state, &mut cd, &mut Silent)
                    .unwrap();
                out.state.model
            };
            let (dense, binary) = (run(KernelChoice::Dense), run(KernelChoice::Binary));
            let worst = dense
                .weights
                .iter()
                .chain(&dense.visible_bias)
                .chain(&dense.hidden_bias)
                .zip(
                    binary
                        .weights
                        .iter()
                        .chain(&binary.visible_bias)
                        .chain(&binary.hidden_bias),
                )
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            // The activations differ by summation order only (about 1e-7 relative); a draw
            // u < p flips only when u falls between the two roundings of p (probability ~1e-7
            // per draw), which does not happen with this seed, so the parameters after one
            // epoch differ by accumulated f32 rounding: 1.7e-7 to 2.4e-7 measured; 1e-5 leaves a margin
            // of 50x while a single flipped draw (a change of lr / batch = 5e-3) would fail.
            assert!(
                worst < 1e-5,
                "persistent {persistent}, {hidden} hidden: largest difference {worst}"
            );
            assert!(dense != binary || worst == 0.0);
        }
    }
}
