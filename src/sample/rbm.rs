//! Block Gibbs sampling of RBMs, many chains at once in matrix form (units in {0, 1}).
//!
//! One sweep of a chain is v -> h -> v with
//! P(h_j = 1 | v) = sigmoid(c_j + (v^T W)_j) and P(v_i = 1 | h) = sigmoid(b_i + (W h)_i).
//! The states of all chains are the rows of f32 matrices, so each half-sweep is one GEMM
//! ([`crate::linalg::matmul`]) followed by two passes: a vectorisable sigmoid over the whole
//! matrix, then Bernoulli draws with two 24-bit uniforms per `next_u64` (the kernels of
//! [`crate::model::rbm_f32`]). Every chain (row) owns
//! its own generator, and rows are processed in parallel by rayon, so the samples do not depend
//! on the number of threads.

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::model::Rbm;
use crate::progress::{Observer, report_or_interrupt};
use crate::rng::{EbmRng, Purpose, stream_for};

// The f32 RBM and its kernels live with the models; re-exported here for existing callers.
pub use crate::model::rbm_f32::{
    RbmF32, bernoulli_rows, exp_f32, hidden_probs, sigmoid_rows, visible_probs,
};

/// A set of block Gibbs chains with their buffers and one generator per chain.
#[derive(Debug, Clone)]
pub struct GibbsChains {
    /// Visible states, `chains x n_visible`, each 0.0 or 1.0.
    pub visible: Vec<f32>,
    /// Hidden states of the last half-sweep, `chains x n_hidden`.
    pub hidden: Vec<f32>,
    /// P(h | v) of the current visible states after [`GibbsChains::sweep`].
    pub hidden_probs: Vec<f32>,
    visible_probs: Vec<f32>,
    rngs: Vec<EbmRng>,
}

impl GibbsChains {
    /// `chains` chains started from visible states drawn independently with
    /// P(v_i = 1) = sigmoid(b_i) (the visible biases alone), chain r using stream (seed, r).
    pub fn new(model: &RbmF32, chains: usize, seed: u64) -> Self {
        let mut rngs: Vec<EbmRng> = (0..chains as u64)
            .map(|r| stream_for(seed, Purpose::RbmChains, r))
            .collect();
        let mut p = vec![0.0; chains * model.n_visible];
        sigmoid_rows(&mut p, 0.0, &model.visible_bias);
        let mut visible = vec![0.0; p.len()];
        bernoulli_rows(&p, &mut visible, model.n_visible, &mut rngs);
        GibbsChains {
            visible,
            hidden: vec![0.0; chains * model.n_hidden],
            hidden_probs: vec![0.0; chains * model.n_hidden],
            visible_probs: p,
            rngs,
        }
    }

    /// Number of chains.
    pub fn len(&self) -> usize {
        self.rngs.len()
    }

    /// True when there are no chains.
    pub fn is_empty(&self) -> bool {
        self.rngs.is_empty()
    }

    /// One sweep v -> h -> v of every chain; afterwards `hidden_probs` holds P(h | v_new).
    pub fn sweep(&mut self, model: &RbmF32) {
        hidden_probs(
            model,
            &self.visible,
            &mut self.hidden_probs,
            1.0,
            &model.hidden_bias,
        );
        bernoulli_rows(
            &self.hidden_probs,
            &mut self.hidden,
            model.n_hidden,
            &mut self.rngs,
        );
        visible_probs(
            model,
            &self.hidden,
            &mut self.visible_probs,
            1.0,
            &model.visible_bias,
        );
        bernoulli_rows(
            &self.visible_probs,
            &mut self.visible,
            model.n_visible,
            &mut self.rngs,
        );
        hidden_probs(
            model,
            &self.visible,
            &mut self.hidden_probs,
            1.0,
            &model.hidden_bias,
        );
    }
}

/// Runs `chains` block Gibbs chains for `steps` sweeps and returns their final visible states
/// as a dataset (one row per chain). Chains start as in [`GibbsChains::new`]; the observer
/// sees every sweep and may stop the run (then `Error::Interrupted`).
pub fn sample_rbm(
    rbm: &Rbm,
    chains: usize,
    steps: usize,
    seed: u64,
    observer: &mut dyn Observer,
) -> Result<Dataset> {
    if chains == 0 {
        return Err(Error::param("chains", "must be at least 1"));
    }
    let model = RbmF32::from_rbm(rbm);
    let mut state = GibbsChains::new(&model, chains, seed);
    for s in 0..steps {
        state.sweep(&model);
        report_or_interrupt(observer, s as u64 + 1, steps as u64)?;
    }
    let bits = state.visible.iter().map(|&x| (x > 0.5) as u8).collect();
    Dataset::new(chains, model.n_visible, bits)
}
