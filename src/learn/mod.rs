//! Learning RBMs from binary data: contrastive divergence (CD-k) and persistent CD ([`cd`]),
//! pseudo-likelihood and ratio matching ([`objectives`]), noise-contrastive estimation ([`nce`]),
//! checkpoints and the rules of resuming ([`checkpoint`]), and the figures that measure a trained
//! model ([`eval`]); Gaussian-Bernoulli RBMs on real data by CD, PCD, score matching and
//! denoising score matching ([`gaussian`]).

pub mod cd;
pub mod checkpoint;
pub mod classifier;
pub mod estimator;
pub mod eval;
pub mod fit;
pub mod gaussian;
pub mod nce;
pub mod objectives;
pub mod optimizer;

pub use cd::{
    CdParams, EpochStats, LrSchedule, Objective, TrainObserver, TrainOutcome, TrainState,
    start_state, train_rbm, train_with_estimator,
};
pub use checkpoint::{Checkpoint, Requested, StoredSettings, checkpoint_file};
pub use estimator::{ContrastiveDivergence, Gradient, GradientEstimator};
pub use eval::{Evaluation, LikelihoodReport, average_log_likelihood, evaluate};
pub use nce::NoiseContrastive;
pub use objectives::{PseudoLikelihood, RatioMatching};
pub use optimizer::Momentum;
