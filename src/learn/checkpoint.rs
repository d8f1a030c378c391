//! Checkpoints of RBM training: what a model file must hold for a run to continue exactly, how
//! it is read and checked, and how the settings of a resumed run are merged with the stored ones.
//!
//! A checkpoint is an RBM `.safetensors` file ([`crate::io::safetensors`]) holding, besides
//! `weights`, `visible_bias` and `hidden_bias`:
//!
//! | what | where |
//! |---|---|
//! | momentum velocities of W, b, c | tensors [`VELOCITY_WEIGHTS`], [`VELOCITY_VISIBLE`], [`VELOCITY_HIDDEN`] |
//! | the training data's visible means (AIS base rates) | tensor [`DATA_MEANS`] |
//! | the persistent chains (PCD only) | tensor [`PERSISTENT_CHAINS`], `chains x n_visible` |
//! | NCE's learned normaliser c (NCE only) | tensor [`NCE_LOG_Z`], shape `[1]` |
//! | the completed epochs | metadata [`EPOCHS_DONE_KEY`] |
//! | the settings that shape the updates | metadata [`TRAINING_KEY`], a JSON object |
//!
//! The settings object holds `epochs` (the total the linear schedule decays over), `batch_size`,
//! `learning_rate`, `lr_schedule`, `objective` (`cd`, `pcd`, `pseudo-likelihood`,
//! `ratio-matching` or `nce`; absent in older files, which mean `cd` or `pcd` by `persistent`), `cd_k`, `persistent`, `chains`, `nce_ratio` (absent in older files: 1), `momentum`, `weight_decay`
//! and `seed` (all needed to continue), plus `data`, `hidden` and `init_std` for the record.
//! [`Checkpoint::from_file`] refuses a file that lacks any needed piece, naming it.
//!
//! Resuming: a setting left out takes the stored value, a setting given with another value is
//! refused (the run would not continue the one it resumes); under the linear schedule `epochs`
//! cannot change, since lr_t = lr (1 - t / epochs) depends on it ([`Requested::resolve`]).
//!
//! Gaussian-Bernoulli training keeps its checkpoint in its own model file with the same
//! metadata keys and velocity names (`crate::learn::gaussian::GaussianCheckpoint`).

use crate::error::{Error, Result};
use crate::io::safetensors::{RbmFile, Tensor};
use crate::learn::cd::{
    CdParams, DEFAULT_BATCH_SIZE, DEFAULT_CD_K, DEFAULT_CHAINS, DEFAULT_EPOCHS, DEFAULT_HIDDEN,
    DEFAULT_LEARNING_RATE, DEFAULT_LR_SCHEDULE, DEFAULT_MOMENTUM, DEFAULT_NCE_RATIO,
    DEFAULT_WEIGHT_DECAY, LrSchedule, Objective, TrainState,
};
use crate::model::Rbm;
use crate::model::RbmF32;
use crate::sample::gradient::GradientSampler;

/// Metadata key of the number of completed epochs.
pub const EPOCHS_DONE_KEY: &str = "epochs_done";
/// Metadata key of the training settings (a JSON object).
pub const TRAINING_KEY: &str = "training";
/// Tensor name of the momentum velocity of W.
pub const VELOCITY_WEIGHTS: &str = "velocity_weights";
/// Tensor name of the momentum velocity of b.
pub const VELOCITY_VISIBLE: &str = "velocity_visible_bias";
/// Tensor name of the momentum velocity of c.
pub const VELOCITY_HIDDEN: &str = "velocity_hidden_bias";
/// Tensor name of the persistent chains' visible states.
pub const PERSISTENT_CHAINS: &str = "persistent_chains";
/// Tensor name of the training data's visible means.
pub const DATA_MEANS: &str = "data_visible_means";
/// Tensor name of noise-contrastive estimation's learned normaliser c (estimate of ln Z),
/// shape `[1]`; present for `objective` `nce` once an epoch is complete.
pub const NCE_LOG_Z: &str = "nce_log_z";

/// The name of a schedule in the settings object (and on the command line).
pub fn schedule_name(schedule: LrSchedule) -> &'static str {
    match schedule {
        LrSchedule::Constant => "constant",
        LrSchedule::Linear => "linear",
    }
}

/// The settings a checkpoint was trained with: those that shape the updates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredSettings {
    /// Total epochs of the run (the linear schedule decays over them).
    pub epochs: usize,
    /// Examples per mini-batch.
    pub batch_size: usize,
    /// Initial learning rate.
    pub learning_rate: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// The objective (contrastive divergence when the file has no `objective`: files
    /// written before objectives existed).
    pub objective: Objective,
    /// Gibbs sweeps per update.
    pub cd_k: usize,
    /// Persistent CD.
    pub persistent: bool,
    /// Number of persistent chains.
    pub chains: usize,
    /// The sampler of the persistent chains (`None`: block Gibbs, also when the file has no
    /// `negative_sampler`).
    pub negative_sampler: Option<GradientSampler>,
    /// Noise samples per example of NCE (1 when the file has no `nce_ratio`).
    pub nce_ratio: usize,
    /// Momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl StoredSettings {
    /// Reads the settings object; `Err` names the first missing or invalid setting.
    fn parse(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Format(format!("bad `{TRAINING_KEY}` metadata: {e}")))?;
        let get = |key: &str| {
            v.get(key).ok_or_else(|| {
                lacks(&format!(
                    "the setting `{key}` in its `{TRAINING_KEY}` metadata"
                ))
            })
        };
        let bad = |key: &str| {
            Error::Format(format!(
                "bad `{TRAINING_KEY}` metadata: {key} = {} is not a valid value",
                v[key]
            ))
        };
        let uint = |key: &str| -> Result<u64> { get(key)?.as_u64().ok_or_else(|| bad(key)) };
        let size =
            |key: &str| -> Result<usize> { usize::try_from(uint(key)?).map_err(|_| bad(key)) };
        let float = |key: &str| -> Result<f64> { get(key)?.as_f64().ok_or_else(|| bad(key)) };
        let schedule = match get("lr_schedule")?.as_str() {
            Some("constant") => LrSchedule::Constant,
            Some("linear") => LrSchedule::Linear,
            _ => return Err(bad("lr_schedule")),
        };
        let persistent = get("persistent")?
            .as_bool()
            .ok_or_else(|| bad("persistent"))?;
        let objective = match v.get("objective") {
            None => Objective::ContrastiveDivergence,
            Some(o) => match o.as_str().and_then(Objective::from_name) {
                Some((objective, p)) if p == persistent => objective,
                _ => return Err(bad("objective")),
            },
        };
        Ok(StoredSettings {
            epochs: size("epochs")?,
            batch_size: size("batch_size")?,
            learning_rate: float("learning_rate")?,
            schedule,
            objective,
            cd_k: size("cd_k")?,
            persistent,
            chains: size("chains")?,
            negative_sampler: match v.get("negative_sampler").map(|s| s.as_str()) {
                None | Some(Some("gibbs")) => None,
                Some(Some("gwg")) => Some(GradientSampler::Gwg),
                Some(Some("dmala")) => Some(GradientSampler::Dmala {
                    step_size: float("negative_step_size")?,
                }),
                Some(_) => return Err(bad("negative_sampler")),
            },
            nce_ratio: match v.get("nce_ratio") {
                None => DEFAULT_NCE_RATIO,
                Some(_) => size("nce_ratio")?,
            },
            momentum: float("momentum")?,
            weight_decay: float("weight_decay")?,
            seed: uint("seed")?,
        })
    }
}

/// The error for a checkpoint that lacks `what`.
fn lacks(what: &str) -> Error {
    Error::Format(format!(
        "the file lacks {what}, so training cannot continue from it (a checkpoint written by \
         ebm train-rbm holds its settings, the epoch count, the momentum velocities, the data \
         means and, for persistent CD, the chains)"
    ))
}

/// One named array of a [`TrainState`] for checkpoint files: (name, shape, values).
pub type NamedArray = (&'static str, Vec<usize>, Vec<f64>);

/// A looked-up checkpoint array: (shape, values).
pub type Shaped = (Vec<usize>, Vec<f64>);

impl TrainState {
    /// The arrays besides the model that a checkpoint must hold.
    pub fn extra_arrays(&self) -> Vec<NamedArray> {
        let (nv, nh) = (self.model.n_visible, self.model.n_hidden);
        let f = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let mut out = vec![
            (VELOCITY_WEIGHTS, vec![nv, nh], f(&self.velocity_weights)),
            (VELOCITY_VISIBLE, vec![nv], f(&self.velocity_visible)),
            (VELOCITY_HIDDEN, vec![nh], f(&self.velocity_hidden)),
            (DATA_MEANS, vec![nv], self.data_means.clone()),
        ];
        if !self.own_parameters.is_empty() {
            out.push((
                NCE_LOG_Z,
                vec![self.own_parameters.len()],
                f(&self.own_parameters),
            ));
        }
        if !self.chains.is_empty() {
            out.push((
                PERSISTENT_CHAINS,
                vec![self.chains.len() / nv, nv],
                f(&self.chains),
            ));
        }
        out
    }

    /// Rebuilds a state from a model, its completed epochs and the arrays of
    /// [`TrainState::extra_arrays`] (looked up by name; missing velocities start at zero,
    /// missing chains are an error for PCD only when `train_rbm` needs them).
    pub fn from_parts(
        rbm: &Rbm,
        epoch: usize,
        get: &dyn Fn(&str) -> Option<Shaped>,
    ) -> Result<Self> {
        let model = RbmF32::from_rbm(rbm);
        let (nv, nh) = (model.n_visible, model.n_hidden);
        let fetch = |name: &str, shape: &[usize]| -> Result<Option<Vec<f64>>> {
            match get(name) {
                None => Ok(None),
                Some((s, data)) => {
                    if s != shape || data.len() != shape.iter().product::<usize>() {
                        return Err(Error::SizeMismatch(format!(
                            "checkpoint tensor {name} has shape {s:?}, expected {shape:?}"
                        )));
                    }
                    if let Some(k) = data.iter().position(|x| !x.is_finite()) {
                        return Err(Error::InvalidModel(format!(
                            "checkpoint tensor {name}[{k}] is not finite"
                        )));
                    }
                    Ok(Some(data))
                }
            }
        };
        let f32s = |x: Option<Vec<f64>>, n: usize| -> Vec<f32> {
            x.map(|v| v.iter().map(|&a| a as f32).collect())
                .unwrap_or_else(|| vec![0.0; n])
        };
        let chains = match get(PERSISTENT_CHAINS) {
            None => Vec::new(),
            Some((s, _)) => {
                let rows = s.first().copied().unwrap_or(0);
                let data = fetch(PERSISTENT_CHAINS, &[rows, nv])?.unwrap_or_default();
                if data.iter().any(|&x| x != 0.0 && x != 1.0) {
                    return Err(Error::InvalidModel(
                        "checkpoint tensor persistent_chains holds values other than 0 and 1"
                            .into(),
                    ));
                }
                data.iter().map(|&x| x as f32).collect()
            }
        };
        let own_parameters = fetch(NCE_LOG_Z, &[1])?
            .map(|x| x.iter().map(|&a| a as f32).collect())
            .unwrap_or_default();
        let data_means = match fetch(DATA_MEANS, &[nv])? {
            Some(m) => m,
            None => rbm
                .visible_bias()
                .iter()
                .map(|&b| crate::logspace::sigmoid(b))
                .collect(),
        };
        Ok(TrainState {
            epoch,
            velocity_weights: f32s(fetch(VELOCITY_WEIGHTS, &[nv, nh])?, nv * nh),
            velocity_visible: f32s(fetch(VELOCITY_VISIBLE, &[nv])?, nv),
            velocity_hidden: f32s(fetch(VELOCITY_HIDDEN, &[nh])?, nh),
            model,
            chains,
            data_means,
            own_parameters,
        })
    }
}

/// A training state read from a checkpoint, with the settings it was trained with.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Model, optimizer state, chains and completed epochs.
    pub state: TrainState,
    /// The stored settings.
    pub settings: StoredSettings,
}

impl Checkpoint {
    /// Reads a checkpoint from a model file, refusing one that lacks any piece a resumed run
    /// needs (see the module docs); the error names the first missing piece.
    pub fn from_file(file: &RbmFile) -> Result<Self> {
        let epoch: usize = file
            .metadata
            .get(EPOCHS_DONE_KEY)
            .ok_or_else(|| {
                lacks(&format!(
                    "the `{EPOCHS_DONE_KEY}` metadata (the epoch count)"
                ))
            })?
            .parse()
            .map_err(|e| Error::Format(format!("bad `{EPOCHS_DONE_KEY}` metadata: {e}")))?;
        let text = file
            .metadata
            .get(TRAINING_KEY)
            .ok_or_else(|| lacks(&format!("the `{TRAINING_KEY}` metadata (its settings)")))?;
        let settings = StoredSettings::parse(text)?;
        let mut needed = vec![
            VELOCITY_WEIGHTS,
            VELOCITY_VISIBLE,
            VELOCITY_HIDDEN,
            DATA_MEANS,
        ];
        if settings.persistent {
            needed.push(PERSISTENT_CHAINS);
        }
        if let Some(name) = needed.iter().find(|n| !file.extra.contains_key(**n)) {
            return Err(lacks(&format!("the tensor `{name}`")));
        }
        let get = |name: &str| {
            file.extra
                .get(name)
                .map(|t| (t.shape.clone(), t.data.clone()))
        };
        let state = TrainState::from_parts(&file.rbm, epoch, &get)?;
        Ok(Checkpoint { state, settings })
    }
}

/// The model file of a training state: the model, every array of
/// [`TrainState::extra_arrays`], the completed epochs and the settings of `params` (with `data`,
/// the name of the training data, for the record).
pub fn checkpoint_file(state: &TrainState, params: &CdParams, data: &str) -> Result<RbmFile> {
    let mut file = RbmFile::new(state.model.to_rbm()?);
    file.metadata.insert(
        TRAINING_KEY.to_string(),
        serde_json::json!({
            "data": data,
            "hidden": params.hidden,
            "epochs": params.epochs,
            "batch_size": params.batch_size,
            "learning_rate": params.learning_rate,
            "lr_schedule": schedule_name(params.schedule),
            "objective": params.objective.name(params.persistent),
            "cd_k": params.cd_k,
            "persistent": params.persistent,
            "chains": params.chains,
            "negative_sampler": params.negative_sampler.map_or("gibbs", |s| s.name()),
            "negative_step_size": params.negative_sampler.and_then(|s| s.step_size()),
            "nce_ratio": params.nce_ratio,
            "momentum": params.momentum,
            "weight_decay": params.weight_decay,
            "init_std": params.init_std,
            "seed": params.seed,
        })
        .to_string(),
    );
    file.metadata
        .insert(EPOCHS_DONE_KEY.into(), state.epoch.to_string());
    for (name, shape, data) in state.extra_arrays() {
        file.extra.insert(name.to_string(), Tensor { shape, data });
    }
    Ok(file)
}

/// The settings a caller asks for; `None` (or `false` for `persistent`): not given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Requested {
    /// Hidden units.
    pub hidden: Option<usize>,
    /// Total epochs.
    pub epochs: Option<usize>,
    /// Examples per mini-batch.
    pub batch_size: Option<usize>,
    /// Initial learning rate.
    pub learning_rate: Option<f64>,
    /// Learning-rate schedule.
    pub schedule: Option<LrSchedule>,
    /// The objective (with `persistent`: PCD).
    pub objective: Option<Objective>,
    /// Gibbs sweeps per update.
    pub cd_k: Option<usize>,
    /// Persistent CD asked for.
    pub persistent: bool,
    /// Number of persistent chains.
    pub chains: Option<usize>,
    /// The sampler of the persistent chains: `Some(None)` block Gibbs asked for by name.
    pub negative_sampler: Option<Option<GradientSampler>>,
    /// Noise samples per example of NCE.
    pub nce_ratio: Option<usize>,
    /// Momentum.
    pub momentum: Option<f64>,
    /// L2 weight decay.
    pub weight_decay: Option<f64>,
}

/// A setting of a resumed run: the stored value unless given; a given value that differs from
/// the stored one is refused, naming both.
fn merge<T: PartialEq + std::fmt::Display + Copy>(
    flag: &str,
    given: Option<T>,
    stored: Option<T>,
    default: T,
) -> Result<T> {
    match (given, stored) {
        (Some(g), Some(s)) if g != s => Err(Error::param(
            flag,
            format!(
                "{g} differs from the value {s} stored in the checkpoint: a resumed run \
                 continues with the settings it was started with (leave {flag} out to use {s})"
            ),
        )),
        (Some(g), _) => Ok(g),
        (None, Some(s)) => Ok(s),
        (None, None) => Ok(default),
    }
}

/// Displays a schedule by its name (for [`merge`]'s messages).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ScheduleName(LrSchedule);

impl std::fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(schedule_name(self.0))
    }
}

impl Requested {
    /// The settings of a run: for a fresh run (`resume` = `None`) the requested values and the
    /// `DEFAULT_*` ones for the rest; for a resumed run the stored values for what is not
    /// requested, refusing any requested value that differs from a stored one (errors name the
    /// flag, e.g. `--batch-size`, and both values). The hidden layer of a resumed run is the
    /// checkpoint's. Settings not stored in checkpoints (`init_std`, `monitor_rows`,
    /// `eval_every`, `evaluation`) come from `base`, and so does `seed`, which must equal the
    /// stored one when resuming.
    pub fn resolve(&self, resume: Option<&Checkpoint>, base: &CdParams) -> Result<CdParams> {
        let stored = resume.map(|c| c.settings);
        if let Some(s) = stored
            && s.seed != base.seed
        {
            return Err(Error::param(
                "--seed",
                format!(
                    "{} differs from the seed {} stored in the checkpoint: resume with --seed {}",
                    base.seed, s.seed, s.seed
                ),
            ));
        }
        let schedule = merge(
            "--lr-schedule",
            self.schedule.map(ScheduleName),
            stored.map(|s| ScheduleName(s.schedule)),
            ScheduleName(DEFAULT_LR_SCHEDULE),
        )?
        .0;
        let epochs = match (self.epochs, stored) {
            (Some(g), Some(s)) if g != s.epochs && schedule == LrSchedule::Linear => {
                return Err(Error::param(
                    "--epochs",
                    format!(
                        "{g}: the linear schedule decays over {} epochs (as stored in the \
                         checkpoint); resume with --epochs {} (or leave --epochs out), or train \
                         with --lr-schedule constant",
                        s.epochs, s.epochs
                    ),
                ));
            }
            (Some(g), _) => g,
            (None, Some(s)) => s.epochs,
            (None, None) => DEFAULT_EPOCHS,
        };
        if let (Some(g), Some(s)) = (self.objective, stored)
            && (g != s.objective
                || (g == Objective::ContrastiveDivergence && !self.persistent && s.persistent))
        {
            let given = g.name(self.persistent);
            let was = s.objective.name(s.persistent);
            return Err(Error::param(
                "--objective",
                format!(
                    "{given} differs from the objective {was} stored in the checkpoint: a \
                     resumed run continues with the objective it was started with (leave \
                     --objective out to use {was})"
                ),
            ));
        }
        let objective = stored.map_or(
            self.objective.unwrap_or(Objective::ContrastiveDivergence),
            |s| s.objective,
        );
        let persistent = match stored {
            Some(s) if self.persistent && !s.persistent => {
                let was = match s.objective {
                    Objective::ContrastiveDivergence => "CD",
                    other => other.name(false),
                };
                return Err(Error::param(
                    "--persistent",
                    format!(
                        "the checkpoint was trained with {was}, not persistent CD; leave \
                         --persistent out to resume it"
                    ),
                ));
            }
            Some(s) => s.persistent,
            None => self.persistent,
        };
        let hidden = match (resume, self.hidden) {
            (Some(c), None) => c.state.model.n_hidden,
            (_, Some(h)) => h,
            (None, None) => DEFAULT_HIDDEN,
        };
        Ok(CdParams {
            hidden,
            epochs,
            batch_size: merge(
                "--batch-size",
                self.batch_size,
                stored.map(|s| s.batch_size),
                DEFAULT_BATCH_SIZE,
            )?,
            learning_rate: merge(
                "--learning-rate",
                self.learning_rate,
                stored.map(|s| s.learning_rate),
                DEFAULT_LEARNING_RATE,
            )?,
            schedule,
            objective,
            cd_k: merge("--cd-k", self.cd_k, stored.map(|s| s.cd_k), DEFAULT_CD_K)?,
            persistent,
            chains: merge(
                "--chains",
                self.chains,
                stored.map(|s| s.chains),
                DEFAULT_CHAINS,
            )?,
            negative_sampler: match (self.negative_sampler, stored.map(|s| s.negative_sampler)) {
                (Some(g), Some(s)) if g != s => {
                    let name = |x: Option<GradientSampler>| {
                        x.map_or("gibbs".to_string(), |g| match g.step_size() {
                            Some(a) => format!("{} (step size {a})", g.name()),
                            None => g.name().to_string(),
                        })
                    };
                    return Err(Error::param(
                        "--negative-sampler",
                        format!(
                            "{} differs from {} stored in the checkpoint: a resumed run \
                             continues with the settings it was started with",
                            name(g),
                            name(s)
                        ),
                    ));
                }
                (Some(g), _) => g,
                (None, Some(s)) => s,
                (None, None) => None,
            },
            nce_ratio: merge(
                "--nce-ratio",
                self.nce_ratio,
                stored.map(|s| s.nce_ratio),
                DEFAULT_NCE_RATIO,
            )?,
            momentum: merge(
                "--momentum",
                self.momentum,
                stored.map(|s| s.momentum),
                DEFAULT_MOMENTUM,
            )?,
            weight_decay: merge(
                "--weight-decay",
                self.weight_decay,
                stored.map(|s| s.weight_decay),
                DEFAULT_WEIGHT_DECAY,
            )?,
            ..base.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;

    fn state_and_params() -> (TrainState, CdParams) {
        let data = Dataset::new(3, 4, vec![0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1]).unwrap();
        let params = CdParams {
            hidden: 2,
            persistent: true,
            chains: 3,
            epochs: 7,
            batch_size: 2,
            ..CdParams::default()
        };
        (TrainState::init(&data, &params).unwrap(), params)
    }

    #[test]
    fn a_checkpoint_file_reads_back_to_the_same_state_and_settings() {
        let (mut state, mut params) = state_and_params();
        params.negative_sampler = Some(GradientSampler::Dmala { step_size: 0.3 });
        state.epoch = 3;
        state.velocity_hidden = vec![0.25, -0.5];
        // An estimator's own parameter (NCE's c) is stored and read back.
        state.own_parameters = vec![-2.25];
        let file = checkpoint_file(&state, &params, "d.txt").unwrap();
        assert_eq!(file.extra[NCE_LOG_Z].data, vec![-2.25]);
        let back = Checkpoint::from_file(&file).unwrap();
        assert_eq!(back.state, state);
        assert_eq!(
            back.settings,
            StoredSettings {
                epochs: 7,
                batch_size: 2,
                learning_rate: params.learning_rate,
                schedule: params.schedule,
                objective: Objective::ContrastiveDivergence,
                cd_k: params.cd_k,
                persistent: true,
                chains: 3,
                negative_sampler: Some(GradientSampler::Dmala { step_size: 0.3 }),
                nce_ratio: 1,
                momentum: params.momentum,
                weight_decay: params.weight_decay,
                seed: params.seed,
            }
        );
        // Resuming with nothing requested gives the stored settings back.
        let resolved = Requested::default()
            .resolve(Some(&back), &CdParams::default())
            .unwrap();
        assert_eq!(resolved, params);
    }

    #[test]
    fn the_objective_is_stored_resumed_and_kept() {
        let data = Dataset::new(3, 4, vec![0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1]).unwrap();
        let params = CdParams {
            hidden: 2,
            objective: Objective::PseudoLikelihood,
            ..CdParams::default()
        };
        let state = TrainState::init(&data, &params).unwrap();
        let file = checkpoint_file(&state, &params, "d.txt").unwrap();
        assert!(file.metadata[TRAINING_KEY].contains(r#""objective":"pseudo-likelihood""#));
        let back = Checkpoint::from_file(&file).unwrap();
        assert_eq!(back.settings.objective, Objective::PseudoLikelihood);
        // Left out, the stored objective continues; the same one is accepted.
        for objective in [None, Some(Objective::PseudoLikelihood)] {
            let r = Requested {
                objective,
                ..Requested::default()
            };
            let resolved = r.resolve(Some(&back), &CdParams::default()).unwrap();
            assert_eq!(resolved.objective, Objective::PseudoLikelihood);
        }
        // Another objective, or persistent chains, are refused, naming the flag.
        let refused = |r: Requested, flag: &str| {
            let msg = r
                .resolve(Some(&back), &CdParams::default())
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(flag) && msg.contains("pseudo-likelihood"),
                "{msg}"
            );
        };
        refused(
            Requested {
                objective: Some(Objective::RatioMatching),
                ..Requested::default()
            },
            "--objective",
        );
        refused(
            Requested {
                persistent: true,
                ..Requested::default()
            },
            "--persistent",
        );
        // A file from before objectives (no `objective` key) is contrastive divergence, and an
        // explicit `cd` request does not resume a PCD file.
        let (pcd_state, pcd_params) = state_and_params();
        let mut old = checkpoint_file(&pcd_state, &pcd_params, "d.txt").unwrap();
        let mut settings: serde_json::Value =
            serde_json::from_str(&old.metadata[TRAINING_KEY]).unwrap();
        assert_eq!(settings["objective"], "pcd");
        settings.as_object_mut().unwrap().remove("objective");
        old.metadata
            .insert(TRAINING_KEY.into(), settings.to_string());
        let back = Checkpoint::from_file(&old).unwrap();
        assert_eq!(back.settings.objective, Objective::ContrastiveDivergence);
        let resolved = Requested::default()
            .resolve(Some(&back), &CdParams::default())
            .unwrap();
        assert_eq!(resolved, pcd_params);
        let cd = Requested {
            objective: Some(Objective::ContrastiveDivergence),
            ..Requested::default()
        };
        let msg = cd
            .resolve(Some(&back), &CdParams::default())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--objective") && msg.contains("cd differs from the objective pcd"),
            "{msg}"
        );
    }

    #[test]
    fn each_missing_piece_is_named() {
        let (state, params) = state_and_params();
        let good = checkpoint_file(&state, &params, "d.txt").unwrap();
        let msg = |file: &RbmFile| Checkpoint::from_file(file).unwrap_err().to_string();
        for name in [
            VELOCITY_WEIGHTS,
            VELOCITY_VISIBLE,
            VELOCITY_HIDDEN,
            DATA_MEANS,
            PERSISTENT_CHAINS,
        ] {
            let mut file = good.clone();
            file.extra.remove(name);
            assert!(
                msg(&file).contains(&format!("the tensor `{name}`")),
                "{name}"
            );
        }
        for key in [EPOCHS_DONE_KEY, TRAINING_KEY] {
            let mut file = good.clone();
            file.metadata.remove(key);
            assert!(msg(&file).contains(&format!("`{key}` metadata")), "{key}");
        }
        let settings: serde_json::Value =
            serde_json::from_str(&good.metadata[TRAINING_KEY]).unwrap();
        for key in [
            "epochs",
            "batch_size",
            "learning_rate",
            "lr_schedule",
            "cd_k",
            "persistent",
            "chains",
            "momentum",
            "weight_decay",
            "seed",
        ] {
            let mut s = settings.clone();
            s.as_object_mut().unwrap().remove(key);
            let mut file = good.clone();
            file.metadata.insert(TRAINING_KEY.into(), s.to_string());
            assert!(
                msg(&file).contains(&format!("the setting `{key}`")),
                "{key}"
            );
        }
        // A CD checkpoint needs no chains.
        let (mut state, mut params) = state_and_params();
        params.persistent = false;
        state.chains.clear();
        assert!(Checkpoint::from_file(&checkpoint_file(&state, &params, "d").unwrap()).is_ok());
    }

    #[test]
    fn resumed_settings_keep_the_stored_values_and_refuse_changes() {
        let (state, params) = state_and_params();
        let file = checkpoint_file(&state, &params, "d.txt").unwrap();
        let ckpt = Checkpoint::from_file(&file).unwrap();
        let base = CdParams::default();
        let refused = |r: Requested, base: &CdParams, needles: &[&str]| {
            let msg = r.resolve(Some(&ckpt), base).unwrap_err().to_string();
            for n in needles {
                assert!(msg.contains(n), "{msg:?} does not mention {n:?}");
            }
        };
        refused(
            Requested {
                batch_size: Some(5),
                ..Requested::default()
            },
            &base,
            &["--batch-size", "5 differs from the value 2"],
        );
        refused(
            Requested {
                epochs: Some(9),
                ..Requested::default()
            },
            &base,
            &["--epochs", "decays over 7 epochs"],
        );
        refused(
            Requested {
                schedule: Some(LrSchedule::Constant),
                ..Requested::default()
            },
            &base,
            &["--lr-schedule", "constant differs from the value linear"],
        );
        refused(
            Requested::default(),
            &CdParams {
                seed: 7,
                ..CdParams::default()
            },
            &["--seed", "resume with --seed"],
        );
        // Values equal to the stored ones are accepted; a fresh run takes the defaults.
        let same = Requested {
            batch_size: Some(2),
            persistent: true,
            ..Requested::default()
        };
        assert_eq!(same.resolve(Some(&ckpt), &base).unwrap(), params);
        let fresh = Requested::default().resolve(None, &base).unwrap();
        assert_eq!(fresh, CdParams::default());
    }
}
