//! Learning RBMs from binary data: contrastive divergence (CD-k) and persistent CD ([`cd`]),
//! checkpoints and the rules of resuming ([`checkpoint`]), and the figures that measure a trained
//! model ([`eval`]).

pub mod cd;
pub mod checkpoint;
pub mod eval;

pub use cd::{
    CdParams, EpochStats, LrSchedule, TrainObserver, TrainOutcome, TrainState, train_rbm,
};
pub use checkpoint::{Checkpoint, Requested, StoredSettings, checkpoint_file};
pub use eval::{Evaluation, LikelihoodReport, average_log_likelihood, evaluate};
