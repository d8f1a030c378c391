//! Learning RBMs from binary data: contrastive divergence (CD-k) and persistent CD, and the
//! figures that measure a trained model.

pub mod cd;
pub mod eval;

pub use cd::{
    CdParams, EpochStats, LrSchedule, TrainObserver, TrainOutcome, TrainState, train_rbm,
};
pub use eval::{Evaluation, LikelihoodReport, average_log_likelihood, evaluate};
