//! Training of binary-binary RBMs (units in {0, 1}): the settings ([`CdParams`]), the training
//! state ([`TrainState`]) and the one epoch loop ([`train_with_estimator`]) that every objective
//! shares.
//!
//! Each epoch shuffles the training rows, and for every mini-batch asks a
//! [`GradientEstimator`] for a gradient (CD-k and PCD-k: [`ContrastiveDivergence`]) and the
//! optimizer ([`Momentum`], at the rate of the [`LrSchedule`]) for the update; after the epoch
//! come the divergence checks, the monitoring figures, the likelihood evaluation when due and
//! the observer (progress, log, checkpoints). A new objective is a new estimator, nothing else.
//!
//! Initialisation follows Hinton, "A practical guide to training restricted Boltzmann machines"
//! (UTML TR 2010-003): weights N(0, init_std^2), visible biases ln(p_i / (1 - p_i)) of the
//! training data's means, hidden biases 0.
//!
//! Parameters and statistics are f32 and every product is one GEMM ([`crate::linalg::matmul`])
//! or, for sparse binary operands, the binary-aware [`crate::linalg::binary_matmul_panels`];
//! monitoring figures and likelihoods are f64. All randomness comes from streams keyed by
//! (seed, epoch, batch, row), so a run is identical for any number of threads, and a run resumed
//! from a checkpoint of epoch e with the same [`CdParams`] (`epochs` included: the linear
//! schedule depends on it) continues exactly as the uninterrupted run would.

use std::time::Instant;

use rand::RngExt;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::checkpoint::{VELOCITY_HIDDEN, VELOCITY_VISIBLE, VELOCITY_WEIGHTS};
use super::estimator::{ContrastiveDivergence, Gradient, GradientEstimator};
use super::eval::{Evaluation, average_log_likelihood, evaluate};
use super::nce::NoiseContrastive;
use super::objectives::{PseudoLikelihood, RatioMatching};
pub use super::optimizer::LrSchedule;
use super::optimizer::Momentum;
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::infer::ais::BASE_RATE_CLIP;
use crate::linalg::{View, matmul};
use crate::logspace::softplus;
use crate::model::rbm::{MAX_PARAMETER_SUM, parameter_bound_violation};
use crate::model::rbm_f32::{RbmF32, bernoulli_rows, sigmoid_rows, visible_probs};
use crate::progress::{Control, Observer, Silent, Step};
use crate::rng::{EbmRng, Purpose, splitmix64, stream_for};

/// Default number of hidden units.
pub const DEFAULT_HIDDEN: usize = 64;
/// Default number of passes over the training data.
pub const DEFAULT_EPOCHS: usize = 100;
/// Default mini-batch size.
pub const DEFAULT_BATCH_SIZE: usize = 10;
/// Default initial learning rate.
pub const DEFAULT_LEARNING_RATE: f64 = 0.05;
/// Default learning-rate schedule.
pub const DEFAULT_LR_SCHEDULE: LrSchedule = LrSchedule::Linear;
/// Default number of Gibbs sweeps per update (the k of CD-k / PCD-k).
pub const DEFAULT_CD_K: usize = 1;
/// Default number of persistent chains (fantasy particles) for PCD.
pub const DEFAULT_CHAINS: usize = 100;
/// Default noise samples per data example of noise-contrastive estimation.
pub const DEFAULT_NCE_RATIO: usize = 1;
/// Default momentum.
pub const DEFAULT_MOMENTUM: f64 = 0.5;
/// Default L2 weight decay (applied to W only).
pub const DEFAULT_WEIGHT_DECAY: f64 = 1e-4;
/// Default standard deviation of the initial weights (Hinton's guide: 0.01).
pub const DEFAULT_INIT_STD: f64 = 0.01;
/// Default number of training examples used for the per-epoch reconstruction error and
/// pseudo-log-likelihood.
pub const DEFAULT_MONITOR_ROWS: usize = 1000;

/// The training objective, i.e. which [`GradientEstimator`] [`train_rbm`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Objective {
    /// CD-k, or PCD-k when [`CdParams::persistent`] ([`ContrastiveDivergence`]).
    #[default]
    ContrastiveDivergence,
    /// Exact pseudo-likelihood ([`PseudoLikelihood`]).
    PseudoLikelihood,
    /// Ratio matching ([`RatioMatching`]).
    RatioMatching,
    /// Noise-contrastive estimation ([`NoiseContrastive`]).
    NoiseContrastive,
}

impl Objective {
    /// The name of the objective in checkpoints, reports and on the command line: `cd`, `pcd`
    /// (contrastive divergence with `persistent`), `pseudo-likelihood`, `ratio-matching` or `nce`.
    pub fn name(self, persistent: bool) -> &'static str {
        match (self, persistent) {
            (Objective::ContrastiveDivergence, false) => "cd",
            (Objective::ContrastiveDivergence, true) => "pcd",
            (Objective::PseudoLikelihood, _) => "pseudo-likelihood",
            (Objective::RatioMatching, _) => "ratio-matching",
            (Objective::NoiseContrastive, _) => "nce",
        }
    }

    /// The objective and `persistent` of a [`Objective::name`]; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<(Objective, bool)> {
        match name {
            "cd" => Some((Objective::ContrastiveDivergence, false)),
            "pcd" => Some((Objective::ContrastiveDivergence, true)),
            "pseudo-likelihood" => Some((Objective::PseudoLikelihood, false)),
            "ratio-matching" => Some((Objective::RatioMatching, false)),
            "nce" => Some((Objective::NoiseContrastive, false)),
            _ => None,
        }
    }
}

/// Training settings. `CdParams::default()` holds the documented `DEFAULT_*` values.
#[derive(Debug, Clone, PartialEq)]
pub struct CdParams {
    /// Number of hidden units.
    pub hidden: usize,
    /// Total number of epochs (a resumed run continues up to this count). The linear schedule
    /// decays over this total, so a resumed run equals the uninterrupted one only with the same
    /// value (and the same other settings); `ebm train-rbm` stores them and checks.
    pub epochs: usize,
    /// Examples per mini-batch.
    pub batch_size: usize,
    /// Initial learning rate.
    pub learning_rate: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// The objective whose gradient is ascended.
    pub objective: Objective,
    /// Gibbs sweeps per update (contrastive divergence only).
    pub cd_k: usize,
    /// Persistent chains (PCD) instead of chains restarted at the data (CD); contrastive
    /// divergence only.
    pub persistent: bool,
    /// Number of persistent chains (PCD only).
    pub chains: usize,
    /// The sampler that moves the persistent chains: `None` for block Gibbs (`cd_k` sweeps),
    /// or GWG / DMALA on the visible units (`cd_k` proposals per update; PCD only).
    pub negative_sampler: Option<crate::sample::gradient::GradientSampler>,
    /// Noise samples per data example (noise-contrastive estimation only; >= 1).
    pub nce_ratio: usize,
    /// Momentum in [0, 1).
    pub momentum: f64,
    /// L2 weight decay (>= 0).
    pub weight_decay: f64,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
    /// Training examples used for the per-epoch monitoring figures.
    pub monitor_rows: usize,
    /// Evaluate the likelihood every this many epochs (0: only at the end when `evaluation` is
    /// set).
    pub eval_every: usize,
    /// How ln Z is obtained for the likelihood figures; `None`: no likelihoods.
    pub evaluation: Option<Evaluation>,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for CdParams {
    fn default() -> Self {
        CdParams {
            hidden: DEFAULT_HIDDEN,
            epochs: DEFAULT_EPOCHS,
            batch_size: DEFAULT_BATCH_SIZE,
            learning_rate: DEFAULT_LEARNING_RATE,
            schedule: DEFAULT_LR_SCHEDULE,
            objective: Objective::ContrastiveDivergence,
            cd_k: DEFAULT_CD_K,
            persistent: false,
            chains: DEFAULT_CHAINS,
            negative_sampler: None,
            nce_ratio: DEFAULT_NCE_RATIO,
            momentum: DEFAULT_MOMENTUM,
            weight_decay: DEFAULT_WEIGHT_DECAY,
            init_std: DEFAULT_INIT_STD,
            monitor_rows: DEFAULT_MONITOR_ROWS,
            eval_every: 0,
            evaluation: None,
            seed: crate::rng::DEFAULT_SEED,
        }
    }
}

fn finite_at_least(name: &str, x: f64, min: f64) -> Result<()> {
    if !x.is_finite() || x < min {
        return Err(Error::param(
            name,
            format!("must be a finite number >= {min}, got {x}"),
        ));
    }
    Ok(())
}

impl CdParams {
    /// Checks every setting; the error names the flag and the value.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("hidden", self.hidden),
            ("epochs", self.epochs),
            ("batch-size", self.batch_size),
            ("cd-k", self.cd_k),
            ("nce-ratio", self.nce_ratio),
        ] {
            if v == 0 {
                return Err(Error::param(name, "must be at least 1, got 0"));
            }
        }
        if self.persistent && self.chains == 0 {
            return Err(Error::param("chains", "PCD needs at least 1 chain, got 0"));
        }
        if let Some(sampler) = self.negative_sampler {
            sampler.check()?;
            if !self.persistent || self.objective != Objective::ContrastiveDivergence {
                return Err(Error::param(
                    "negative-sampler",
                    format!(
                        "{} moves persistent chains: it needs --objective pcd (or --persistent), \
                         not {}",
                        sampler.name(),
                        self.objective.name(self.persistent)
                    ),
                ));
            }
        }
        if self.persistent && self.objective != Objective::ContrastiveDivergence {
            return Err(Error::param(
                "persistent",
                format!(
                    "persistent chains belong to contrastive divergence, not to the objective {}",
                    self.objective.name(false)
                ),
            ));
        }
        // The update runs in f32: a rate that is finite as f64 can be infinite (1e39) or zero
        // (1e-50) once converted.
        let lr32 = self.learning_rate as f32;
        if !self.learning_rate.is_finite() || !lr32.is_finite() || lr32 <= 0.0 {
            return Err(Error::param(
                "learning-rate",
                format!(
                    "must be a number > 0 that is finite and non-zero in single precision \
                     (about 1.2e-38 .. 3.4e38), got {:?}",
                    self.learning_rate
                ),
            ));
        }
        finite_at_least("momentum", self.momentum, 0.0)?;
        if self.momentum >= 1.0 {
            return Err(Error::param(
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        finite_at_least("weight-decay", self.weight_decay, 0.0)?;
        finite_at_least("init-std", self.init_std, 0.0)?;
        for (name, x) in [
            ("weight-decay", self.weight_decay),
            ("init-std", self.init_std),
        ] {
            if !(x as f32).is_finite() {
                return Err(Error::param(
                    name,
                    format!("must be finite in single precision (below 3.4e38), got {x:?}"),
                ));
            }
        }
        if let Some(Evaluation::Ais(p) | Evaluation::Auto(p)) = &self.evaluation {
            p.validate()?;
        }
        Ok(())
    }

    /// Checks that the arrays of a run on `n_visible` visible units can be sized: every
    /// `rows x columns` product must fit in memory addresses (as f64, the widest copy, made for
    /// checkpoints). The error names the flag that makes an array too large.
    pub fn check_sizes(&self, n_visible: usize, train_rows: usize) -> Result<()> {
        let batch = self.batch_size.min(train_rows);
        let mut products = vec![
            ("hidden", n_visible, self.hidden),
            ("batch-size", batch, n_visible.max(self.hidden)),
        ];
        if self.persistent {
            products.push(("chains", self.chains, n_visible.max(self.hidden)));
        }
        for (flag, a, b) in products {
            array_len(a, b, flag)?;
        }
        Ok(())
    }

    /// The learning rate of epoch `t` (0-based).
    pub fn learning_rate_at(&self, t: usize) -> f64 {
        self.schedule.rate_at(self.learning_rate, t, self.epochs)
    }
}

/// The largest number of elements of one array (f64: 8 bytes each; a `Vec` holds at most
/// `isize::MAX` bytes).
const MAX_ARRAY_LEN: usize = isize::MAX as usize / 8;

/// `rows * cols` when an array of that many f64 can exist and be reserved, else an error naming
/// `flag` (instead of an overflow, or the abort of a failed allocation later on). The probe
/// reserves address space only and frees it at once.
fn array_len(rows: usize, cols: usize, flag: &str) -> Result<usize> {
    let too_large = |why: &str| {
        Error::param(
            flag,
            format!("too large: an array of {rows} x {cols} values {why}"),
        )
    };
    let n = rows
        .checked_mul(cols)
        .filter(|&n| n <= MAX_ARRAY_LEN)
        .ok_or_else(|| {
            too_large(&format!(
                "exceeds the {MAX_ARRAY_LEN} values an array can hold"
            ))
        })?;
    let mut probe: Vec<f64> = Vec::new();
    probe
        .try_reserve_exact(n)
        .map_err(|_| too_large(&format!("({} bytes) cannot be allocated", n * 8)))?;
    Ok(n)
}

/// Everything a run needs to continue exactly: parameters, optimizer state, persistent chains.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// Completed epochs.
    pub epoch: usize,
    /// The model.
    pub model: RbmF32,
    /// Momentum velocity of W.
    pub velocity_weights: Vec<f32>,
    /// Momentum velocity of b.
    pub velocity_visible: Vec<f32>,
    /// Momentum velocity of c.
    pub velocity_hidden: Vec<f32>,
    /// Persistent chains' visible states, `chains x n_visible` (empty for CD).
    pub chains: Vec<f32>,
    /// The training data's visible means (base rates of AIS; NCE's noise means).
    pub data_means: Vec<f64>,
    /// The estimator's own parameters ([`GradientEstimator::own_parameters`]; NCE: `[c]`);
    /// empty for the other objectives and for a fresh NCE run (c then starts at
    /// [`crate::learn::nce::initial_log_z`]).
    pub own_parameters: Vec<f32>,
}

const TAG_INIT: u64 = 1;
const TAG_CHAINS: u64 = 2;
const TAG_SHUFFLE: u64 = 3;
const TAG_BATCH: u64 = 4;
const TAG_MONITOR: u64 = 5;
const TAG_AIS: u64 = 6;

/// A seed derived from `seed` and a path of indices (tag, epoch, batch, ...).
fn derive(seed: u64, path: &[u64]) -> u64 {
    let mut s = seed;
    let mut out = splitmix64(&mut s);
    for &p in path {
        s ^= p.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ out;
        out = splitmix64(&mut s);
    }
    out
}

impl TrainState {
    /// A fresh state: Hinton's initialisation and, for PCD, chains drawn from the data's means.
    pub fn init(train: &Dataset, params: &CdParams) -> Result<Self> {
        let (nv, nh) = (train.cols(), params.hidden);
        params.check_sizes(nv, train.rows())?;
        let data_means = train.column_means();
        let mut rng = stream_for(
            params.seed,
            Purpose::Training,
            derive(params.seed, &[TAG_INIT]),
        );
        let normal = Normal::new(0.0, params.init_std)
            .map_err(|e| Error::param("init-std", e.to_string()))?;
        let weights: Vec<f32> = (0..nv * nh)
            .map(|_| normal.sample(&mut rng) as f32)
            .collect();
        let visible_bias: Vec<f32> = data_means
            .iter()
            .map(|&p| {
                let p = p.clamp(BASE_RATE_CLIP, 1.0 - BASE_RATE_CLIP);
                (p / (1.0 - p)).ln() as f32
            })
            .collect();
        let model = RbmF32 {
            n_visible: nv,
            n_hidden: nh,
            weights,
            visible_bias,
            hidden_bias: vec![0.0; nh],
        };
        let chains = if params.persistent {
            let n = params.chains;
            let mut rngs: Vec<EbmRng> = (0..n as u64)
                .map(|r| stream_for(derive(params.seed, &[TAG_CHAINS]), Purpose::Training, r))
                .collect();
            let mut p = vec![0.0f32; n * nv];
            sigmoid_rows(&mut p, 0.0, &model.visible_bias);
            let mut x = vec![0.0f32; n * nv];
            bernoulli_rows(&p, &mut x, nv, &mut rngs);
            x
        } else {
            Vec::new()
        };
        Ok(TrainState {
            epoch: 0,
            velocity_weights: vec![0.0; nv * nh],
            velocity_visible: vec![0.0; nv],
            velocity_hidden: vec![0.0; nh],
            model,
            chains,
            data_means,
            own_parameters: Vec::new(),
        })
    }

    /// The first parameter or velocity that is NaN or infinite: (array name, index).
    pub fn first_non_finite(&self) -> Option<(&'static str, usize)> {
        let m = &self.model;
        [
            ("weights", &m.weights),
            ("visible_bias", &m.visible_bias),
            ("hidden_bias", &m.hidden_bias),
            (VELOCITY_WEIGHTS, &self.velocity_weights),
            (VELOCITY_VISIBLE, &self.velocity_visible),
            (VELOCITY_HIDDEN, &self.velocity_hidden),
        ]
        .into_iter()
        .find_map(|(name, x)| x.iter().position(|v| !v.is_finite()).map(|k| (name, k)))
    }
}

/// The figures of one epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochStats {
    /// Completed epochs (1-based count).
    pub epoch: usize,
    /// Learning rate used in this epoch.
    pub learning_rate: f64,
    /// Mean over the monitored examples of sum_i (v_i - P(v_i = 1 | P(h | v)))^2 (mean-field
    /// reconstruction; NOT a likelihood).
    pub reconstruction_error: f64,
    /// Stochastic pseudo-log-likelihood n_v ln sigmoid(F(v~) - F(v)), v~ = v with one random
    /// unit flipped, averaged over the monitored examples (nats).
    pub pseudo_log_likelihood: f64,
    /// Average train log-likelihood (nats) when evaluated this epoch.
    pub train_log_likelihood: Option<f64>,
    /// Average test log-likelihood (nats) when evaluated this epoch and a test set was given.
    pub test_log_likelihood: Option<f64>,
    /// ln Z when evaluated this epoch.
    pub log_z: Option<f64>,
    /// `"exact"` or `"ais"` when evaluated.
    pub log_z_method: Option<&'static str>,
    /// AIS spread: ln Z bounds (ln(mean ± 3 s.e.)).
    pub log_z_low: Option<f64>,
    /// AIS spread: upper bound.
    pub log_z_high: Option<f64>,
    /// Effective sample size (sum w)^2 / sum w^2 of the AIS weights, when ln Z is from AIS.
    pub ais_ess: Option<f64>,
    /// The AIS estimate is flagged unreliable (ESS below
    /// [`crate::infer::ais::ess_threshold`]), when ln Z is from AIS.
    pub ais_unreliable: Option<bool>,
    /// The training objective averaged over this epoch's batches, each at the parameters
    /// before its update (pseudo-log-likelihood, ratio-matching loss or NCE's J, per example);
    /// `None` for CD and PCD.
    pub objective: Option<f64>,
    /// Seconds spent on the updates of this epoch (monitoring excluded).
    pub seconds: f64,
}

/// Receives each epoch's figures and the state (to draw progress, log, checkpoint).
///
/// Order of the calls for each epoch: the update; for the last epoch
/// [`TrainObserver::on_final_state`]; the monitoring figures; the likelihood evaluation when due
/// (reporting through [`TrainObserver::on_evaluation_step`]); [`TrainObserver::on_epoch`].
pub trait TrainObserver {
    /// Called after every epoch; `Control::Break` stops training after this epoch.
    fn on_epoch(&mut self, _state: &TrainState, _stats: &EpochStats) -> Control {
        Control::Continue
    }

    /// Called once, when the last epoch's update is done and before that epoch's (possibly
    /// long) likelihood evaluation: the model is final from here, so this is the place to save
    /// it. `Control::Break` skips the evaluation (the run then ends as interrupted) when one is
    /// due, and changes nothing otherwise.
    fn on_final_state(&mut self, _state: &TrainState) -> Control {
        Control::Continue
    }

    /// Progress of a likelihood evaluation (ln Z by enumeration or AIS). `Control::Break` stops
    /// the evaluation; the run then ends after this epoch as interrupted, and the epoch's
    /// figures lack the likelihoods.
    fn on_evaluation_step(&mut self, _step: &Step) -> Control {
        Control::Continue
    }
}

/// A [`TrainObserver`] seen as the progress [`Observer`] of a likelihood evaluation.
struct EvaluationProgress<'a>(&'a mut dyn TrainObserver);

impl Observer for EvaluationProgress<'_> {
    fn on_step(&mut self, step: &Step) -> Control {
        self.0.on_evaluation_step(step)
    }
}

impl TrainObserver for Silent {}

/// The result of [`train_rbm`].
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Final state (model, optimizer state, chains).
    pub state: TrainState,
    /// Figures of every epoch run in this call.
    pub history: Vec<EpochStats>,
    /// True when the observer stopped the run: before `params.epochs`, or during a likelihood
    /// evaluation (see `evaluation_interrupted`).
    pub interrupted: bool,
    /// True when the stop came during (or, from [`TrainObserver::on_final_state`], instead of)
    /// the likelihood evaluation of the last epoch run; `state` is complete up to its epoch.
    pub evaluation_interrupted: bool,
    /// Seconds spent in updates (monitoring and evaluation excluded).
    pub train_seconds: f64,
}

/// Trains an RBM on `train` (and evaluates on `test` when given) by `params.objective` (CD-k,
/// or PCD-k when `params.persistent`; pseudo-likelihood; ratio matching; noise-contrastive
/// estimation), starting from `resume` or a fresh [`TrainState::init`], until
/// `params.epochs` epochs are complete.
pub fn train_rbm(
    train: &Dataset,
    test: Option<&Dataset>,
    params: &CdParams,
    resume: Option<TrainState>,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    let state = start_state(train, test, params, resume)?;
    let mut estimator: Box<dyn GradientEstimator> = match params.objective {
        Objective::ContrastiveDivergence => {
            let cd = ContrastiveDivergence::new(
                &state.model,
                params.batch_size.min(train.rows()),
                params.cd_k,
                if params.persistent {
                    state.chains.clone()
                } else {
                    Vec::new()
                },
            );
            Box::new(match params.negative_sampler {
                None => cd,
                Some(sampler) => cd.with_negative_sampler(&state.model, sampler)?,
            })
        }
        Objective::PseudoLikelihood => Box::new(PseudoLikelihood::new(&state.model)),
        Objective::RatioMatching => Box::new(RatioMatching::new(&state.model)),
        Objective::NoiseContrastive => Box::new(NoiseContrastive::new(
            &state.model,
            &state.data_means,
            params.nce_ratio,
            params.batch_size.min(train.rows()),
            state.own_parameters.first().copied(),
        )),
    };
    train_with_estimator(train, test, params, state, estimator.as_mut(), observer)
}

/// Checks the data and settings, and returns the state a run starts from: `resume` (checked
/// against them) or a fresh [`TrainState::init`].
pub fn start_state(
    train: &Dataset,
    test: Option<&Dataset>,
    params: &CdParams,
    resume: Option<TrainState>,
) -> Result<TrainState> {
    check_inputs(train, test, params)?;
    match resume {
        None => TrainState::init(train, params),
        Some(s) => {
            check_resume(&s, train, params)?;
            Ok(s)
        }
    }
}

fn check_inputs(train: &Dataset, test: Option<&Dataset>, params: &CdParams) -> Result<()> {
    params.validate()?;
    if train.rows() == 0 {
        return Err(Error::param("data", "the training data has no examples"));
    }
    if train.cols() == 0 {
        return Err(Error::param(
            "data",
            "the training examples have no columns",
        ));
    }
    if let Some(t) = test {
        if t.cols() != train.cols() {
            return Err(Error::SizeMismatch(format!(
                "the test data has {} columns, the training data {}",
                t.cols(),
                train.cols()
            )));
        }
        if t.rows() == 0 {
            return Err(Error::param("test", "the test data has no examples"));
        }
    }
    params.check_sizes(train.cols(), train.rows())
}

/// The epoch loop: trains from `state` (see [`start_state`]) until `params.epochs` epochs are
/// complete, with the gradients of `estimator` and the optimizer of `params` (momentum, weight
/// decay, learning-rate schedule). The estimator's [`GradientEstimator::chains`], when not
/// empty, are copied into `state.chains` after every epoch (so that checkpoints hold them).
/// `params.cd_k`, `persistent` and `chains` matter only to the estimator and to
/// [`TrainState::init`].
pub fn train_with_estimator(
    train: &Dataset,
    test: Option<&Dataset>,
    params: &CdParams,
    mut state: TrainState,
    estimator: &mut dyn GradientEstimator,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    check_inputs(train, test, params)?;
    let mut epochs = EpochRunner::new(train, params, &state, &*estimator);
    let mut monitor = Monitor::new(train, params, &state);
    let mut history = Vec::new();
    let mut train_seconds = 0.0;
    let mut interrupted = false;
    let mut evaluation_interrupted = false;
    while state.epoch < params.epochs {
        let t0 = Instant::now();
        let lr = params.learning_rate_at(state.epoch);
        let objective = epochs.run(&mut state, estimator, lr);
        let seconds = t0.elapsed().as_secs_f64();
        train_seconds += seconds;
        state.epoch += 1;
        // Before anything (monitoring, the observer's checkpoint) sees the new state.
        if let Some((what, k)) = state.first_non_finite() {
            return Err(Error::InvalidModel(format!(
                "training diverged at epoch {} ({what}[{k}] is not finite): lower --learning-rate",
                state.epoch
            )));
        }
        let m = &state.model;
        if let Some((what, k, value, _)) =
            parameter_bound_violation(&m.weights, &m.visible_bias, &m.hidden_bias)
        {
            return Err(Error::InvalidModel(format!(
                "training diverged at epoch {} ({what}[{k}] = {value:e}; the parameters' \
                 absolute values sum to more than {MAX_PARAMETER_SUM:e}): lower --learning-rate",
                state.epoch
            )));
        }
        let due = params.evaluation.is_some()
            && (state.epoch == params.epochs
                || (params.eval_every > 0 && state.epoch.is_multiple_of(params.eval_every)));
        let mut skip_evaluation = false;
        if state.epoch == params.epochs && observer.on_final_state(&state) == Control::Break && due
        {
            // Training is complete; only the evaluation is skipped.
            skip_evaluation = true;
            interrupted = true;
            evaluation_interrupted = true;
        }
        let (reconstruction_error, pseudo_log_likelihood) = monitor.measure(&state);
        let mut stats = EpochStats {
            epoch: state.epoch,
            learning_rate: lr,
            reconstruction_error,
            pseudo_log_likelihood,
            train_log_likelihood: None,
            test_log_likelihood: None,
            log_z: None,
            log_z_method: None,
            log_z_low: None,
            log_z_high: None,
            ais_ess: None,
            ais_unreliable: None,
            objective,
            seconds,
        };
        if due && !skip_evaluation {
            let mut progress = EvaluationProgress(&mut *observer);
            match evaluate_likelihoods(&state, train, test, params, &mut stats, &mut progress) {
                Ok(()) => {}
                Err(Error::Interrupted) => {
                    interrupted = true;
                    evaluation_interrupted = true;
                }
                Err(e) => return Err(e),
            }
        }
        let control = observer.on_epoch(&state, &stats);
        history.push(stats);
        if interrupted {
            break;
        }
        if control == Control::Break && state.epoch < params.epochs {
            interrupted = true;
            break;
        }
    }
    Ok(TrainOutcome {
        state,
        history,
        interrupted,
        evaluation_interrupted,
        train_seconds,
    })
}

/// Fills the likelihood figures of `stats` (ln Z by `params.evaluation`, average train and test
/// log-likelihoods) for the model of `state`.
fn evaluate_likelihoods(
    state: &TrainState,
    train: &Dataset,
    test: Option<&Dataset>,
    params: &CdParams,
    stats: &mut EpochStats,
    progress: &mut dyn Observer,
) -> Result<()> {
    let method = match params.evaluation.expect("checked by the caller") {
        Evaluation::Ais(mut p) => {
            p.seed = derive(params.seed, &[TAG_AIS]);
            Evaluation::Ais(p)
        }
        Evaluation::Auto(mut p) => {
            p.seed = derive(params.seed, &[TAG_AIS]);
            Evaluation::Auto(p)
        }
        Evaluation::Exact => Evaluation::Exact,
    };
    let rbm = state.model.to_rbm()?;
    let report = evaluate(&rbm, method, &state.data_means, progress)?;
    stats.log_z = Some(report.log_z);
    stats.log_z_method = Some(report.method);
    stats.log_z_low = report.ais.as_ref().map(|a| a.log_z_low);
    stats.log_z_high = report.ais.as_ref().map(|a| a.log_z_high);
    stats.ais_ess = report.ais.as_ref().map(|a| a.ess);
    stats.ais_unreliable = report.ais.as_ref().map(|a| a.is_unreliable());
    stats.train_log_likelihood = Some(average_log_likelihood(&rbm, train, report.log_z)?);
    if let Some(t) = test {
        stats.test_log_likelihood = Some(average_log_likelihood(&rbm, t, report.log_z)?);
    }
    Ok(())
}

impl TrainState {
    /// Checks that training may continue from this state on `train` with `params`: epochs left,
    /// the data's width, the hidden layer and the persistent chains agree.
    pub fn check_resumable(&self, train: &Dataset, params: &CdParams) -> Result<()> {
        check_resume(self, train, params)
    }
}

fn check_resume(s: &TrainState, train: &Dataset, params: &CdParams) -> Result<()> {
    if s.epoch >= params.epochs {
        return Err(Error::param(
            "epochs",
            format!(
                "the checkpoint has already completed {} epochs; --epochs is the total, ask for more than {}",
                s.epoch, s.epoch
            ),
        ));
    }
    if s.model.n_visible != train.cols() {
        return Err(Error::SizeMismatch(format!(
            "the checkpoint has {} visible units, the training data {} columns",
            s.model.n_visible,
            train.cols()
        )));
    }
    if s.model.n_hidden != params.hidden {
        return Err(Error::SizeMismatch(format!(
            "the checkpoint has {} hidden units, the settings ask for {}",
            s.model.n_hidden, params.hidden
        )));
    }
    if params.persistent && s.chains.len() != params.chains * train.cols() {
        return Err(Error::SizeMismatch(format!(
            "the checkpoint holds {} persistent chains, the settings ask for {}",
            s.chains.len() / train.cols(),
            params.chains
        )));
    }
    Ok(())
}

/// Batches of at least this many entries are converted to f32 rows in parallel.
const BATCH_PARALLEL_MIN_ENTRIES: usize = 1 << 15;

/// The shuffling and batching of an epoch, with buffers reused by every batch (no allocation
/// inside the epoch loop).
struct EpochRunner<'a> {
    train: &'a Dataset,
    params: &'a CdParams,
    optimizer: Momentum,
    order: Vec<usize>,
    batch: Vec<f32>,
    grad: Gradient,
    rngs: Vec<EbmRng>,
}

impl<'a> EpochRunner<'a> {
    fn new(
        train: &'a Dataset,
        params: &'a CdParams,
        state: &TrainState,
        estimator: &dyn GradientEstimator,
    ) -> Self {
        let (nv, nh) = (state.model.n_visible, state.model.n_hidden);
        let b = params.batch_size.min(train.rows());
        EpochRunner {
            train,
            params,
            optimizer: Momentum {
                momentum: params.momentum as f32,
                weight_decay: params.weight_decay as f32,
            },
            order: (0..train.rows()).collect(),
            batch: vec![0.0; b * nv],
            grad: Gradient::zeros(nv, nh),
            rngs: (0..estimator.streams(b) as u64)
                .map(|r| stream_for(0, Purpose::Training, r))
                .collect(),
        }
    }

    /// One epoch at learning rate `lr`: every batch's gradient from `estimator`, then one
    /// optimizer step. Returns the estimator's objective averaged over the epoch's examples
    /// (each batch's value at the parameters before its update, weighted by its rows), when it
    /// has one.
    fn run(
        &mut self,
        state: &mut TrainState,
        estimator: &mut dyn GradientEstimator,
        lr: f64,
    ) -> Option<f64> {
        let mut objective_sum = 0.0;
        let mut has_objective = true;
        let nv = state.model.n_visible;
        let seed = self.params.seed;
        let epoch = state.epoch as u64;
        // Fisher-Yates shuffle from the epoch's own stream.
        for (i, o) in self.order.iter_mut().enumerate() {
            *o = i;
        }
        let mut rng = stream_for(derive(seed, &[TAG_SHUFFLE, epoch]), Purpose::Training, 0);
        for i in (1..self.order.len()).rev() {
            let j = rng.random_range(0..=i);
            self.order.swap(i, j);
        }
        let bs = self.params.batch_size.min(self.train.rows());
        let n_batches = self.order.len().div_ceil(bs);
        for bi in 0..n_batches {
            let idx = &self.order[bi * bs..((bi + 1) * bs).min(self.order.len())];
            let rows = idx.len();
            // Rows in parallel when the batch is large (a copy: the same for any threads).
            let train = self.train;
            let copy_row = |(dst, &r): (&mut [f32], &usize)| {
                for (d, &s) in dst.iter_mut().zip(train.row(r)) {
                    *d = s as f32;
                }
            };
            if rows * nv < BATCH_PARALLEL_MIN_ENTRIES {
                self.batch.chunks_exact_mut(nv).zip(idx).for_each(copy_row);
            } else {
                use rayon::prelude::*;
                (self.batch[..rows * nv].par_chunks_exact_mut(nv))
                    .zip(idx.par_iter())
                    .for_each(copy_row);
            }
            let batch_seed = derive(seed, &[TAG_BATCH, epoch, bi as u64]);
            for (r, g) in self.rngs.iter_mut().enumerate() {
                *g = stream_for(batch_seed, Purpose::Training, r as u64);
            }
            estimator.gradient_and_step(
                &self.optimizer,
                &mut state.model,
                (
                    &mut state.velocity_weights,
                    &mut state.velocity_visible,
                    &mut state.velocity_hidden,
                ),
                &self.batch[..rows * nv],
                &mut self.rngs,
                &mut self.grad,
                lr as f32,
            );
            estimator.step_own_parameters(lr as f32);
            match estimator.batch_objective() {
                Some(value) => objective_sum += value * rows as f64,
                None => has_objective = false,
            }
        }
        let chains = estimator.chains();
        if !chains.is_empty() {
            state.chains.copy_from_slice(chains);
        }
        let own = estimator.own_parameters();
        if state.own_parameters.len() != own.len() {
            state.own_parameters = own.to_vec();
        } else {
            state.own_parameters.copy_from_slice(own);
        }
        has_objective.then(|| objective_sum / self.order.len() as f64)
    }
}

/// The per-epoch monitoring figures on the first `monitor_rows` training rows.
struct Monitor {
    seed: u64,
    monitor: Vec<f32>,
    monitor_act: Vec<f32>,
    monitor_pv: Vec<f32>,
}

impl Monitor {
    fn new(train: &Dataset, params: &CdParams, state: &TrainState) -> Self {
        let (nv, nh) = (state.model.n_visible, state.model.n_hidden);
        let m = params.monitor_rows.min(train.rows());
        Monitor {
            seed: params.seed,
            monitor: train.data()[..m * nv].iter().map(|&x| x as f32).collect(),
            monitor_act: vec![0.0; m * nh],
            monitor_pv: vec![0.0; m * nv],
        }
    }

    /// (reconstruction error, pseudo-log-likelihood) on the monitored rows.
    fn measure(&mut self, state: &TrainState) -> (f64, f64) {
        let model = &state.model;
        let (nv, nh) = (model.n_visible, model.n_hidden);
        let m = self.monitor.len() / nv;
        matmul(
            &mut self.monitor_act,
            View::row_major(&self.monitor, m, nv),
            model.w(),
            0.0,
            1.0,
        );
        let pll_seed = derive(self.seed, &[TAG_MONITOR, state.epoch as u64]);
        let pll: f64 = self
            .monitor
            .par_chunks_exact(nv)
            .zip(self.monitor_act.par_chunks_exact(nh))
            .enumerate()
            .with_min_len(32)
            .map(|(r, (v, act))| {
                let i = stream_for(pll_seed, Purpose::Training, r as u64).random_range(0..nv);
                let sign = 1.0 - 2.0 * v[i] as f64;
                let mut f = 0.0;
                let mut f_flip = 0.0;
                for (k, (&vk, &b)) in v.iter().zip(&model.visible_bias).enumerate() {
                    let on = if k == i { 1.0 - vk } else { vk };
                    f -= vk as f64 * b as f64;
                    f_flip -= on as f64 * b as f64;
                }
                let wi = &model.weights[i * nh..(i + 1) * nh];
                for ((&a, &c), &w) in act.iter().zip(&model.hidden_bias).zip(wi) {
                    let x = a as f64 + c as f64;
                    f -= softplus(x);
                    f_flip -= softplus(x + sign * w as f64);
                }
                // ln sigmoid(F(v~) - F(v)) = -softplus(F(v) - F(v~)).
                -(nv as f64) * softplus(f - f_flip)
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum::<f64>()
            / m as f64;
        sigmoid_rows(&mut self.monitor_act, 1.0, &model.hidden_bias);
        visible_probs(
            model,
            &self.monitor_act,
            &mut self.monitor_pv,
            1.0,
            &model.visible_bias,
        );
        let err: f64 = self
            .monitor
            .iter()
            .zip(&self.monitor_pv)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / m as f64;
        (err, pll)
    }
}
