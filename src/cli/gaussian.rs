//! Gaussian-Bernoulli RBMs on the command line: `train-rbm --visible gaussian`, and `sample`,
//! `partition` and `evaluate` of a model file whose metadata says `visible_units = gaussian`.
//! The subcommands' own files only dispatch here.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::ValueEnum;
use serde::Serialize;

use super::GlobalArgs;
use super::UsageError;
use super::evaluate::{EvaluateArgs, EvaluateMethodArg};
use super::output::{CSV, Outputs, PNG, SAFETENSORS, print_json, say};
use super::read_real_dataset;
use super::sample::{SampleArgs, SamplerArg};
use super::sample_rbm::{square_side, tile_image};
use super::train_rbm::{EvalArg, ObjectiveArg, ScheduleArg, TrainRbmArgs};
use super::ui::{BarObserver, progress_enabled};
use ebm::dataset::RealDataset;
use ebm::io::safetensors::{GaussianRbmFile, RbmFile, SIGMA_NAME, STANDARDISATION_NAMES, Tensor};
use ebm::learn::gaussian::{
    GaussianCheckpoint, GaussianObjective, GaussianRunSettings, GaussianTrainParams,
    GaussianTrainer, KEY_DEQUANTISE_TEST, KEY_DEQUANTISE_TRAIN, MAX_LEARNED_SIGMA,
    MIN_LEARNED_SIGMA, dequantise, detect_quantisation, objective_name,
};
use ebm::learn::optimizer::LrSchedule;
use ebm::model::gaussian_rbm::MAX_EXACT_HIDDEN;
use ebm::model::{GaussianRbm, Rbm};
use ebm::progress::{Observer, Step};
use ebm::sample::gaussian::{GaussianChainParams, GaussianSampler, run_gaussian_chains};

/// Default hidden units of a Gaussian RBM (small enough for exact likelihoods).
pub const DEFAULT_HIDDEN: usize = 16;
/// Default epochs.
pub const DEFAULT_EPOCHS: usize = 100;
/// Default learning rate.
pub const DEFAULT_LEARNING_RATE: f64 = 0.01;
/// Default batch size.
pub const DEFAULT_BATCH_SIZE: usize = 20;
/// Default momentum.
pub const DEFAULT_MOMENTUM: f64 = 0.5;
/// Default noise of denoising score matching.
pub const DEFAULT_NOISE_STD: f64 = 0.1;
/// Default Langevin step size.
pub const DEFAULT_STEP_SIZE: f64 = 0.01;

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

/// Refuses the Gaussian-only flags of `train-rbm` on a binary RBM.
pub fn refuse_gaussian_flags(args: &TrainRbmArgs) -> anyhow::Result<()> {
    for (flag, given) in [
        ("--noise-std", args.noise_std.is_some()),
        ("--learn-sigma", args.learn_sigma),
        ("--sigma", args.sigma.is_some()),
        ("--standardise", args.standardise),
        ("--dequantise", args.dequantise.is_some()),
        ("--real", args.real),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} applies to real-valued data: add --visible gaussian"
            )));
        }
    }
    Ok(())
}

/// `--real` of `evaluate` and `score`: the explicit form of how a Gaussian-Bernoulli RBM reads
/// its data (real values, no threshold); refused with --threshold and for any other model,
/// whose data are binarised.
pub fn check_real_flag(real: bool, threshold: Option<f64>, model: &Path) -> anyhow::Result<()> {
    if !real {
        return Ok(());
    }
    if threshold.is_some() {
        return Err(usage(
            "--real and --threshold contradict each other: --real reads the data as real \
             values, --threshold binarises them"
                .into(),
        ));
    }
    if model.exists() && !is_gaussian_file(model) {
        return Err(usage(format!(
            "--real: {} has binary visible units, so its data are read as 0/1 (.csv/.npy/IDX \
             binarised at --threshold); --real applies to Gaussian-Bernoulli RBMs (trained with \
             --visible gaussian)",
            model.display()
        )));
    }
    Ok(())
}

/// True when `path` holds a Gaussian-Bernoulli RBM (false when it cannot be read: the caller's
/// own reading then reports why).
pub fn is_gaussian_file(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        ebm::io::safetensors::visible_units(&bytes).as_deref()
            == Some(ebm::io::safetensors::GAUSSIAN_UNITS)
    })
}

/// The file as a plain RBM file with `visible_units` and `visible_sigma` among its metadata and
/// extra tensors (for `ebm info`).
pub fn as_rbm_file(file: &GaussianRbmFile) -> ebm::Result<RbmFile> {
    let m = &file.model;
    let mut out = RbmFile::new(Rbm::new(
        m.n_visible(),
        m.n_hidden(),
        m.weights().to_vec(),
        m.visible_bias().to_vec(),
        m.hidden_bias().to_vec(),
    )?);
    out.metadata = file.metadata.clone();
    out.metadata.insert(
        ebm::io::safetensors::VISIBLE_UNITS_KEY.into(),
        ebm::io::safetensors::GAUSSIAN_UNITS.into(),
    );
    out.extra = file.extra.clone();
    out.extra.insert(
        SIGMA_NAME.into(),
        Tensor {
            shape: vec![m.n_visible()],
            data: m.visible_sigma().to_vec(),
        },
    );
    Ok(out)
}

/// The dequantisation step stored with a model trained on dequantised data (`None` without).
fn stored_dequantise_step(file: &GaussianRbmFile) -> Option<f64> {
    let text = file.metadata.get(ebm::learn::checkpoint::TRAINING_KEY)?;
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("dequantise_step")?.as_f64()
}

/// Brings `data` into the units of `file`'s model (its stored standardisation, if any) and
/// returns ln |d z / d x| = -sum_i ln std_i, the term that turns a log-density of standardised
/// values into one of the data's own values.
fn to_model_units(file: &GaussianRbmFile, data: &mut RealDataset) -> f64 {
    match file.standardisation() {
        Some((mean, std)) => {
            data.standardise(mean, std);
            -std.iter().map(|s| s.ln()).sum::<f64>()
        }
        None => 0.0,
    }
}

fn check_columns(data: &RealDataset, path: &Path, model: &GaussianRbm) -> anyhow::Result<()> {
    if data.cols() != model.n_visible() {
        return Err(ebm::Error::SizeMismatch(format!(
            "{} has {} columns per example, the model has {} visible units",
            path.display(),
            data.cols(),
            model.n_visible()
        ))
        .into());
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct TrainReport {
    output: String,
    visible_units: &'static str,
    n_visible: usize,
    n_hidden: usize,
    train_examples: usize,
    test_examples: Option<usize>,
    objective: String,
    /// Epochs completed (the checkpoint's epoch).
    epochs: usize,
    epochs_total: usize,
    epochs_run: usize,
    interrupted: bool,
    stopped_as_asked: bool,
    standardised: bool,
    learn_sigma: bool,
    /// The step of the uniform dequantisation of --data and --test (null: none); the
    /// likelihoods are then those of the dequantised data.
    dequantise_step: Option<f64>,
    final_objective_loss: Option<f64>,
    train_log_likelihood: Option<f64>,
    test_log_likelihood: Option<f64>,
    log_z: Option<f64>,
    log_z_method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_high: Option<f64>,
    /// Effective sample size of the last AIS evaluation's weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_ess: Option<f64>,
    /// The last AIS evaluation is flagged unreliable (ESS below max(10, runs / 10)).
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_unreliable: Option<bool>,
    sigma_min: f64,
    sigma_max: f64,
    /// Some learned sigma ended at a bound of [MIN_LEARNED_SIGMA, MAX_LEARNED_SIGMA].
    sigma_at_bound: bool,
    seconds: f64,
    seconds_per_epoch: f64,
    seed: u64,
}

fn name_of<T: ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// `--dequantise`: `auto` (the default), `off`, or a step > 0.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DequantiseArg {
    Auto,
    Off,
    Step(f64),
}

fn dequantise_arg(text: Option<&str>) -> anyhow::Result<Option<DequantiseArg>> {
    Ok(match text {
        None => None,
        Some("auto") => Some(DequantiseArg::Auto),
        Some("off") => Some(DequantiseArg::Off),
        Some(t) => match t.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Some(DequantiseArg::Step(x)),
            _ => {
                return Err(usage(format!(
                    "--dequantise {t}: expected auto, off or a step > 0 (e.g. 0.0625 for 17 \
                     grey levels in [0, 1])"
                )));
            }
        },
    })
}

/// The step of the dequantisation of a fresh run: an explicit step; `auto` with --learn-sigma
/// and quantised data the detected grid step (said on stderr); else none. With --learn-sigma,
/// data that keep atoms (quantised, or a constant column) are refused: the likelihood and the
/// score-matching objective are then unbounded as sigma -> 0 (see
/// `ebm::learn::gaussian::detect_quantisation`).
fn dequantise_step(
    arg: DequantiseArg,
    train: &RealDataset,
    params: &GaussianTrainParams,
    args: &TrainRbmArgs,
    global: &GlobalArgs,
) -> anyhow::Result<Option<f64>> {
    let grid = detect_quantisation(train);
    let step = match (arg, grid) {
        (DequantiseArg::Step(s), _) => Some(s),
        (DequantiseArg::Auto, Some(q)) if params.learn_sigma => {
            if !global.json && !global.quiet {
                eprintln!(
                    "note: --data {} is quantised ({} levels, step {}); with --learn-sigma it is \
                     dequantised by adding uniform noise of one step (--dequantise auto; \
                     likelihoods are those of the dequantised data; --dequantise off refuses)",
                    args.data.display(),
                    q.levels,
                    q.step
                );
            }
            Some(q.step)
        }
        _ => None,
    };
    if params.learn_sigma && step.is_none() {
        if let Some(q) = grid {
            return Err(usage(format!(
                "--learn-sigma on quantised data ({} holds {} distinct values, on a grid of \
                 step {}) with --dequantise off: a density can pile onto the grid values, so the \
                 objective is unbounded as sigma -> 0 and training diverges; use --dequantise \
                 auto (uniform noise of one step, the default) or a fixed --sigma",
                args.data.display(),
                q.levels,
                q.step
            )));
        }
        let (_, std) = train.column_mean_std();
        if let Some(i) = std.iter().position(|&s| s <= 1e-12) {
            return Err(usage(format!(
                "--learn-sigma: column {} of {} is constant, so the objective is unbounded as \
                 its sigma -> 0; give --dequantise STEP (uniform noise of that width) or a fixed \
                 --sigma",
                i + 1,
                args.data.display()
            )));
        }
    }
    Ok(step)
}

/// A setting of a resumed run: the stored value unless given; a given value that differs is
/// refused, naming the flag and both values.
fn keep<T: PartialEq + std::fmt::Debug>(
    flag: &str,
    given: Option<T>,
    stored: T,
) -> anyhow::Result<T> {
    match given {
        Some(g) if g != stored => Err(usage(format!(
            "{flag} {g:?} differs from the value {stored:?} stored in the checkpoint: a resumed \
             run continues with the settings it was started with (leave {flag} out)"
        ))),
        _ => Ok(stored),
    }
}

/// The settings of a resumed run: the stored ones, refusing any flag given with another value.
fn resumed_settings(
    args: &TrainRbmArgs,
    global: &GlobalArgs,
    stored: &GaussianRunSettings,
) -> anyhow::Result<GaussianRunSettings> {
    let p = &stored.params;
    if global.seed != p.seed {
        return Err(usage(format!(
            "--seed {} differs from the seed {} stored in the checkpoint: resume with --seed {}",
            global.seed, p.seed, p.seed
        )));
    }
    let objective_arg = args.objective.map(|o| name_of(&o));
    keep(
        "--objective",
        objective_arg.as_deref(),
        objective_name(p.objective),
    )?;
    match p.objective {
        GaussianObjective::Cd { k } | GaussianObjective::Pcd { k } => {
            keep("--cd-k", args.cd_k, k)?;
        }
        GaussianObjective::DenoisingScoreMatching { noise_std } => {
            keep("--noise-std", args.noise_std, noise_std)?;
        }
        GaussianObjective::ScoreMatching => {}
    }
    keep("--hidden", args.hidden, p.hidden)?;
    keep("--batch-size", args.batch_size, p.batch_size)?;
    keep("--learning-rate", args.learning_rate, p.learning_rate)?;
    keep("--momentum", args.momentum, p.momentum)?;
    keep("--weight-decay", args.weight_decay, p.weight_decay)?;
    keep("--sigma", args.sigma, p.sigma)?;
    keep(
        "--learn-sigma",
        args.learn_sigma.then_some(true),
        p.learn_sigma,
    )?;
    keep(
        "--standardise",
        args.standardise.then_some(true),
        stored.standardise,
    )?;
    let schedule = args.lr_schedule.map(|s| match s {
        ScheduleArg::Constant => LrSchedule::Constant,
        ScheduleArg::Linear => LrSchedule::Linear,
    });
    keep("--lr-schedule", schedule, stored.schedule)?;
    let epochs = match args.epochs {
        Some(e) if e != stored.epochs && stored.schedule == LrSchedule::Linear => {
            return Err(usage(format!(
                "--epochs {e}: the linear schedule decays over {} epochs (as stored in the \
                 checkpoint); resume with --epochs {} (or leave --epochs out)",
                stored.epochs, stored.epochs
            )));
        }
        Some(e) => e,
        None => stored.epochs,
    };
    match dequantise_arg(args.dequantise.as_deref())? {
        None | Some(DequantiseArg::Auto) => {}
        Some(DequantiseArg::Off) => {
            keep(
                "--dequantise",
                Some("off".to_string()),
                dq_name(stored.dequantise_step),
            )?;
        }
        Some(DequantiseArg::Step(s)) => {
            keep(
                "--dequantise",
                Some(s.to_string()),
                dq_name(stored.dequantise_step),
            )?;
        }
    }
    Ok(GaussianRunSettings {
        epochs,
        ..stored.clone()
    })
}

fn dq_name(step: Option<f64>) -> String {
    step.map_or_else(|| "off".to_string(), |s| s.to_string())
}

/// The `--log` columns of Gaussian training; `ais_ess` is the effective sample size of the
/// epoch's AIS evaluation (empty without one, or when ln Z was exact).
const LOG_HEADER: &str = "epoch,learning_rate,objective_loss,train_log_likelihood,test_log_likelihood,log_z,log_z_method,sigma_min,sigma_max,seconds,ais_ess\n";

/// The header of logs written before the `ais_ess` column existed: still resumed, their rows
/// getting an empty `ais_ess`.
const LOG_HEADER_WITHOUT_ESS: &str = "epoch,learning_rate,objective_loss,train_log_likelihood,test_log_likelihood,log_z,log_z_method,sigma_min,sigma_max,seconds";

/// The rows of an existing `--log` up to epoch `done` (a fresh `header` when the file does not
/// exist), for a resumed run.
fn resumed_log(path: &Path, done: usize, header: &str) -> anyhow::Result<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(header.into()),
        Err(e) => return Err(e).with_context(|| format!("reading --log {}", path.display())),
    };
    let mut lines = text.lines();
    let first = lines.next();
    let without_ess = header == LOG_HEADER && first == Some(LOG_HEADER_WITHOUT_ESS);
    if first != Some(header.trim_end()) && !without_ess {
        return Err(usage(format!(
            "--log {}: the existing file is not a Gaussian train-rbm log (its first line is \
             not the header {}); give another --log",
            path.display(),
            header.trim_end()
        )));
    }
    let mut out = header.to_string();
    for line in lines {
        let epoch: Option<usize> = line.split(',').next().and_then(|e| e.parse().ok());
        if epoch.is_some_and(|e| e <= done) {
            out.push_str(line);
            if without_ess {
                out.push(',');
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// The settings of a fresh run from the flags (the dequantisation is decided once the data are
/// read).
fn fresh_settings(args: &TrainRbmArgs, global: &GlobalArgs) -> anyhow::Result<GaussianRunSettings> {
    let objective_arg = args.objective.unwrap_or(ObjectiveArg::Cd);
    let k = args.cd_k.unwrap_or(1);
    let objective = match objective_arg {
        ObjectiveArg::Cd => GaussianObjective::Cd { k },
        ObjectiveArg::Pcd => GaussianObjective::Pcd { k },
        ObjectiveArg::ScoreMatching => GaussianObjective::ScoreMatching,
        ObjectiveArg::DenoisingScoreMatching => GaussianObjective::DenoisingScoreMatching {
            noise_std: args.noise_std.unwrap_or(DEFAULT_NOISE_STD),
        },
        other => {
            return Err(usage(format!(
                "--objective {} is for binary visible units; --visible gaussian takes cd, pcd, \
                 score-matching or denoising-score-matching",
                name_of(&other)
            )));
        }
    };
    if args.cd_k.is_some() && !matches!(objective_arg, ObjectiveArg::Cd | ObjectiveArg::Pcd) {
        return Err(usage("--cd-k applies to --objective cd or pcd".into()));
    }
    if args.noise_std.is_some() && objective_arg != ObjectiveArg::DenoisingScoreMatching {
        return Err(usage(
            "--noise-std applies to --objective denoising-score-matching".into(),
        ));
    }
    let params = GaussianTrainParams {
        hidden: args.hidden.unwrap_or(DEFAULT_HIDDEN),
        batch_size: args.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
        learning_rate: args.learning_rate.unwrap_or(DEFAULT_LEARNING_RATE),
        momentum: args.momentum.unwrap_or(DEFAULT_MOMENTUM),
        weight_decay: args.weight_decay.unwrap_or(0.0),
        objective,
        learn_sigma: args.learn_sigma,
        sigma: args.sigma.unwrap_or(1.0),
        init_std: args.init_std,
        seed: global.seed,
    };
    params.validate()?;
    Ok(GaussianRunSettings {
        params,
        epochs: args.epochs.unwrap_or(DEFAULT_EPOCHS),
        schedule: match args.lr_schedule.unwrap_or(ScheduleArg::Constant) {
            ScheduleArg::Constant => LrSchedule::Constant,
            ScheduleArg::Linear => LrSchedule::Linear,
        },
        standardise: args.standardise,
        dequantise_step: None,
    })
}

/// The likelihood evaluation of `model` (exact up to [`MAX_EXACT_HIDDEN`] hidden units, AIS
/// from the beta = 0 base beyond, or as asked): (train LL, test LL, ln Z, method, ln Z low,
/// ln Z high, AIS effective sample size and unreliable flag), the likelihoods in the data's
/// units.
type Evaluation = (
    f64,
    Option<f64>,
    f64,
    &'static str,
    Option<f64>,
    Option<f64>,
    Option<(f64, bool)>,
);

fn evaluate_model(
    model: &GaussianRbm,
    train: &RealDataset,
    test: Option<&RealDataset>,
    log_jacobian: f64,
    ais: Option<&ebm::infer::ais::AisParams>,
) -> anyhow::Result<Evaluation> {
    let (log_z, method, low, high, ess) = match ais {
        Some(params) => {
            let est = ebm::infer::gaussian_ais::gaussian_ais_log_partition(model, params)?;
            (
                est.log_z,
                "ais",
                Some(est.log_z_low).filter(|x| x.is_finite()),
                Some(est.log_z_high),
                Some((est.ess, est.is_unreliable())),
            )
        }
        None => (model.log_partition()?, "exact", None, None, None),
    };
    let mut hidden = vec![0.0; model.n_hidden()];
    let mut ll = |data: &RealDataset| {
        -data
            .iter_rows()
            .map(|v| model.free_energy_with(v, &mut hidden))
            .sum::<f64>()
            / data.rows() as f64
            - log_z
            + log_jacobian
    };
    let train_ll = ll(train);
    let test_ll = test.map(&mut ll);
    Ok((train_ll, test_ll, log_z, method, low, high, ess))
}

/// `ebm train-rbm --visible gaussian`: a fresh run, or one continued with --resume; the model
/// file holds the state to continue (written at the end, every --checkpoint-every epochs, at
/// --stop-after and on Ctrl-C).
pub fn train(args: &TrainRbmArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    for (flag, given) in [
        ("--threshold", args.threshold.is_some()),
        ("--persistent", args.persistent),
        ("--chains", args.chains.is_some()),
        ("--nce-ratio", args.nce_ratio.is_some()),
        ("--negative-sampler", args.negative_sampler.is_some()),
        ("--step-size", args.step_size.is_some()),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} is not available with --visible gaussian (see docs/gaussian.md; PCD is \
                 --objective pcd with one chain per batch row)"
            )));
        }
    }
    let dq_arg = dequantise_arg(args.dequantise.as_deref())?;
    let checkpoint = match &args.resume {
        Some(p) => {
            if !is_gaussian_file(p) {
                return Err(usage(format!(
                    "--resume {}: not a Gaussian-Bernoulli RBM checkpoint (drop --visible \
                     gaussian to resume a binary RBM)",
                    p.display()
                )));
            }
            let file = ebm::io::safetensors::read_gaussian_rbm(p)
                .with_context(|| format!("--resume {}", p.display()))?;
            let ckpt = GaussianCheckpoint::from_file(&file)
                .with_context(|| format!("--resume {}", p.display()))?;
            Some((file, ckpt))
        }
        None => None,
    };
    let mut settings = match &checkpoint {
        Some((_, c)) => resumed_settings(args, global, &c.settings)
            .with_context(|| format!("resuming {}", args.resume.as_ref().unwrap().display()))?,
        None => fresh_settings(args, global)?,
    };
    let params = settings.params.clone();
    let done = checkpoint.as_ref().map_or(0, |(_, c)| c.epochs_done);
    let epochs = settings.epochs;
    if let Some(n) = args.stop_after
        && (n <= done || n >= epochs)
    {
        return Err(usage(format!(
            "--stop-after {n}: must lie between the epochs already done ({done}) and --epochs \
             ({epochs}), both excluded"
        )));
    }
    let exact_possible = params.hidden <= MAX_EXACT_HIDDEN;
    let ais_params = ebm::infer::ais::AisParams {
        betas: args.ais_betas,
        runs: args.ais_runs,
        seed: global.seed,
    };
    let evaluation = match args.eval {
        EvalArg::None => None,
        EvalArg::Auto if exact_possible => Some(None),
        EvalArg::Auto | EvalArg::Ais => {
            ais_params.validate()?;
            Some(Some(ais_params))
        }
        EvalArg::Exact if !exact_possible => {
            return Err(usage(format!(
                "--eval exact enumerates 2^{} hidden states; at most {MAX_EXACT_HIDDEN} hidden \
                 units are enumerated (use --eval ais or none)",
                params.hidden
            )));
        }
        EvalArg::Exact => Some(None),
    };
    let mut outputs = Outputs::new();
    outputs.declare("--output", Some(&args.output), SAFETENSORS, "the model")?;
    outputs.declare("--log", args.log.as_deref(), CSV, "the log (CSV)")?;
    outputs.declare(
        "--filters",
        args.filters.as_deref(),
        PNG,
        "the filter image",
    )?;
    let mut train = read_real_dataset(&args.data)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    let mut test = match &args.test {
        Some(p) => Some(
            read_real_dataset(p).with_context(|| format!("reading test data {}", p.display()))?,
        ),
        None => None,
    };
    if let (Some(t), Some(p)) = (&test, &args.test)
        && t.cols() != train.cols()
    {
        return Err(usage(format!(
            "--test {} has {} columns per example, --data {} has {}",
            p.display(),
            t.cols(),
            args.data.display(),
            train.cols()
        )));
    }
    let side = square_side(train.cols());
    if args.filters.is_some() && side.is_none() {
        return Err(usage(format!(
            "--filters needs a square number of visible units, the data has {} columns",
            train.cols()
        )));
    }
    if checkpoint.is_none() {
        settings.dequantise_step = dequantise_step(
            dq_arg.unwrap_or(DequantiseArg::Auto),
            &train,
            &params,
            args,
            global,
        )?;
    }
    if let Some(step) = settings.dequantise_step {
        dequantise(&mut train, step, global.seed, KEY_DEQUANTISE_TRAIN)?;
        if let Some(t) = test.as_mut() {
            dequantise(t, step, global.seed, KEY_DEQUANTISE_TEST)?;
        }
    }
    let mut extra = std::collections::BTreeMap::new();
    let mut log_jacobian = 0.0;
    let standardisation = match &checkpoint {
        Some((file, _)) => file
            .standardisation()
            .map(|(m, s)| (m.to_vec(), s.to_vec())),
        None if settings.standardise => {
            let (mean, std) = train.column_mean_std();
            // A constant column is only centred (std 1), so that every value stays finite.
            let std: Vec<f64> = std
                .into_iter()
                .map(|s| if s > 1e-12 { s } else { 1.0 })
                .collect();
            Some((mean, std))
        }
        None => None,
    };
    if let Some((mean, std)) = standardisation {
        if mean.len() != train.cols() {
            return Err(ebm::Error::SizeMismatch(format!(
                "--data {} has {} columns, the checkpoint's standardisation {}",
                args.data.display(),
                train.cols(),
                mean.len()
            ))
            .into());
        }
        train.standardise(&mean, &std);
        if let Some(t) = test.as_mut() {
            t.standardise(&mean, &std);
        }
        log_jacobian = -std.iter().map(|s| s.ln()).sum::<f64>();
        let nv = train.cols();
        for (name, data) in STANDARDISATION_NAMES.into_iter().zip([mean, std]) {
            extra.insert(
                name.to_string(),
                Tensor {
                    shape: vec![nv],
                    data,
                },
            );
        }
    }
    let start = Instant::now();
    let mut trainer = match &checkpoint {
        Some((_, c)) => GaussianTrainer::restore(
            &train,
            params.clone(),
            &c.theta,
            &c.velocity,
            c.chains.as_deref(),
            c.epochs_done,
        )
        .with_context(|| {
            format!(
                "resuming {} on --data {}",
                args.resume.as_ref().unwrap().display(),
                args.data.display()
            )
        })?,
        None => GaussianTrainer::new(&train, params.clone())?,
    };
    let data_name = args.data.display().to_string();
    let file_of = |trainer: &GaussianTrainer| {
        let mut file = GaussianRbmFile::new(trainer.model().clone());
        file.extra = extra.clone();
        GaussianCheckpoint::store(&mut file, trainer, &settings, &data_name);
        file
    };
    let write = |trainer: &GaussianTrainer| -> anyhow::Result<()> {
        ebm::io::safetensors::write_gaussian_rbm(&args.output, &file_of(trainer))
            .with_context(|| format!("writing model {}", args.output.display()))
    };
    let mut csv = match (&args.log, &checkpoint) {
        (Some(p), Some(_)) => resumed_log(p, done, LOG_HEADER)?,
        _ => LOG_HEADER.to_string(),
    };
    let mut bar = BarObserver::new(progress_enabled(global), epochs as u64, "training", "");
    let mut train_seconds = 0.0;
    let mut last: (Option<f64>, Option<Evaluation>) = (None, None);
    let mut stopped = false;
    let mut interrupted = false;
    super::train_rbm::interrupt::install();
    let outcome = (|| -> anyhow::Result<()> {
        for epoch in done + 1..=epochs {
            let lr = settings.learning_rate_at(epoch);
            trainer.set_learning_rate(lr);
            let t0 = Instant::now();
            let loss = trainer.epoch(&train)?;
            train_seconds += t0.elapsed().as_secs_f64();
            let due = evaluation.is_some()
                && (epoch == epochs || (args.eval_every > 0 && epoch % args.eval_every == 0));
            let eval = match (due, &evaluation) {
                (true, Some(ais)) => Some(
                    evaluate_model(
                        trainer.model(),
                        &train,
                        test.as_ref(),
                        log_jacobian,
                        ais.as_ref(),
                    )
                    .with_context(|| format!("evaluating the model after epoch {epoch}"))?,
                ),
                _ => None,
            };
            let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
            let sigma = trainer.model().visible_sigma();
            csv.push_str(&format!(
                "{epoch},{lr},{},{},{},{},{},{},{},{},{}\n",
                opt(loss),
                opt(eval.map(|e| e.0)),
                opt(eval.and_then(|e| e.1)),
                opt(eval.map(|e| e.2)),
                eval.map_or("", |e| e.3),
                sigma.iter().copied().fold(f64::INFINITY, f64::min),
                sigma.iter().copied().fold(0.0, f64::max),
                start.elapsed().as_secs_f64(),
                opt(eval
                    .and_then(|e| e.6)
                    .map(|(ess, _)| ess)
                    .filter(|x| x.is_finite()))
            ));
            if let Some(p) = &args.log {
                ebm::io::atomic::write_bytes_atomic(p, csv.as_bytes())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            bar.on_step(&Step {
                done: epoch as u64,
                total: epochs as u64,
                metric: eval.and_then(|e| e.1).or(eval.map(|e| e.0)).or(loss),
            });
            last = (loss, eval.or(last.1));
            if args.checkpoint_every > 0 && epoch % args.checkpoint_every == 0 && epoch < epochs {
                write(&trainer)?;
            }
            if args.stop_after == Some(epoch) {
                stopped = true;
                break;
            }
            if super::train_rbm::interrupt::requested() {
                interrupted = true;
                break;
            }
        }
        Ok(())
    })();
    super::train_rbm::interrupt::uninstall();
    bar.finish();
    outcome?;
    let model = trainer.model().clone();
    outputs.stage_bytes(
        "--output",
        &ebm::io::safetensors::encode_gaussian_rbm(&file_of(&trainer))?,
    )?;
    if let (Some(_), Some(side)) = (&args.filters, side) {
        let (nv, nh) = (model.n_visible(), model.n_hidden());
        let w = model.weights();
        let tiles: Vec<Vec<f64>> = (0..nh)
            .map(|j| (0..nv).map(|i| w[i * nh + j]).collect())
            .collect();
        let (tw, th, luma) = tile_image(&tiles, side, true);
        outputs.stage_bytes(
            "--filters",
            &ebm::io::images::encode_grey_png(tw, th, &luma)?,
        )?;
    }
    let sigma = model.visible_sigma();
    let at_bound = params.learn_sigma
        && sigma.iter().any(|&s| {
            s <= MIN_LEARNED_SIGMA * (1.0 + 1e-9) || s >= MAX_LEARNED_SIGMA * (1.0 - 1e-9)
        });
    let runs = trainer.epochs_done() - done;
    let eval = last.1;
    let report = TrainReport {
        output: args.output.display().to_string(),
        visible_units: "gaussian",
        n_visible: model.n_visible(),
        n_hidden: model.n_hidden(),
        train_examples: train.rows(),
        test_examples: test.as_ref().map(|t| t.rows()),
        objective: objective_name(params.objective).to_string(),
        epochs: trainer.epochs_done(),
        epochs_total: epochs,
        epochs_run: runs,
        interrupted,
        stopped_as_asked: stopped,
        standardised: settings.standardise,
        learn_sigma: params.learn_sigma,
        dequantise_step: settings.dequantise_step,
        final_objective_loss: last.0,
        train_log_likelihood: eval.map(|e| e.0),
        test_log_likelihood: eval.and_then(|e| e.1),
        log_z: eval.map(|e| e.2),
        log_z_method: eval.map(|e| e.3),
        log_z_low: eval.and_then(|e| e.4),
        log_z_high: eval.and_then(|e| e.5),
        ais_ess: eval
            .and_then(|e| e.6)
            .map(|(ess, _)| ess)
            .filter(|x| x.is_finite()),
        ais_unreliable: eval.and_then(|e| e.6).map(|(_, flag)| flag),
        sigma_min: sigma.iter().copied().fold(f64::INFINITY, f64::min),
        sigma_max: sigma.iter().copied().fold(0.0, f64::max),
        sigma_at_bound: at_bound,
        seconds: start.elapsed().as_secs_f64(),
        seconds_per_epoch: train_seconds / runs.max(1) as f64,
        seed: global.seed,
    };
    outputs.commit()?;
    if report.ais_unreliable == Some(true) {
        // On stderr in every mode: the reported likelihoods rest on this ln Z.
        eprintln!(
            "warning: the AIS effective sample size of the last evaluation is {:.1} of {} runs, \
             below {:.0}: ln Z is probably too low, so the reported log-likelihoods too high; \
             raise --ais-betas (the number of annealing steps)",
            report.ais_ess.unwrap_or(f64::NAN),
            args.ais_runs,
            ebm::infer::ais::ess_threshold(args.ais_runs)
        );
    }
    if at_bound {
        // Visible in every mode: the figures of such a run are not to be trusted.
        eprintln!(
            "warning: a learned sigma ended at a bound ({MIN_LEARNED_SIGMA} or \
             {MAX_LEARNED_SIGMA}; sigma from {} to {}): the objective is probably unbounded on \
             these data (repeated values?); see --dequantise in docs/gaussian.md",
            report.sigma_min, report.sigma_max
        );
    }
    if global.json {
        print_json(&report)?;
    }
    if interrupted {
        return Err(anyhow::Error::new(ebm::Error::Interrupted).context(format!(
            "stopped by Ctrl-C after epoch {}; checkpoint written to {} (continue with --resume \
             {})",
            report.epochs, report.output, report.output
        )));
    }
    if !global.json {
        if stopped {
            say(
                global,
                &format!(
                    "stopped after epoch {} of {epochs} as asked by --stop-after; continue with \
                     --resume {}",
                    report.epochs, report.output
                ),
            );
        }
        let ll = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
        say(
            global,
            &format!(
                "Gaussian RBM {} x {} by {} ({} epochs, {:.4} s/epoch): train LL {}, test LL {} \
                 nats/example ({}){}; wrote {}",
                report.n_visible,
                report.n_hidden,
                report.objective,
                report.epochs,
                report.seconds_per_epoch,
                ll(report.train_log_likelihood),
                ll(report.test_log_likelihood),
                report.log_z_method.unwrap_or("no evaluation"),
                report
                    .dequantise_step
                    .map_or(String::new(), |s| format!(", data dequantised by step {s}")),
                report.output
            ),
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct SampleReport {
    model: String,
    sampler: &'static str,
    chains: usize,
    steps: usize,
    step_size: Option<f64>,
    acceptance: Option<f64>,
    n_visible: usize,
    n_hidden: usize,
    mean_value: f64,
    seconds: f64,
    image: Option<String>,
    output: Option<String>,
    seed: u64,
}

/// `ebm sample --model g.safetensors --sampler langevin|mala|gibbs`: the final state of every
/// chain, in the data's units (the stored standardisation undone).
pub fn sample(
    path: &Path,
    file: &GaussianRbmFile,
    args: &SampleArgs,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    for (flag, set) in [
        ("--marginals", args.marginals),
        ("--evidence", args.evidence.is_some()),
        ("--trace", args.chain.trace.is_some()),
        ("--sweeps", args.chain.sweeps.is_some()),
        ("--beta", args.chain.beta.is_some()),
        ("--start", args.chain.start.is_some()),
    ] {
        if set {
            return Err(usage(format!(
                "{flag} does not apply to Gaussian RBMs (use --sampler langevin|mala|gibbs, \
                 --step-size, --chains, --steps, --burn-in, --image, --output)"
            )));
        }
    }
    let sampler = match args.chain.sampler.unwrap_or(SamplerArg::Gibbs) {
        SamplerArg::Gibbs => GaussianSampler::Gibbs,
        SamplerArg::Langevin => GaussianSampler::Langevin,
        SamplerArg::Mala => GaussianSampler::Mala,
        other => {
            return Err(usage(format!(
                "--sampler {} does not apply to a Gaussian RBM; use langevin, mala or gibbs",
                name_of(&other)
            )));
        }
    };
    if sampler == GaussianSampler::Gibbs && args.chain.step_size.is_some() {
        return Err(usage(
            "--step-size applies to --sampler langevin or mala".into(),
        ));
    }
    let step_size = args.chain.step_size.unwrap_or(DEFAULT_STEP_SIZE);
    let chains = args.chains.unwrap_or(super::sample_rbm::DEFAULT_CHAINS);
    let steps = args.steps.unwrap_or(super::sample_rbm::DEFAULT_STEPS);
    if steps == 0 {
        return Err(usage("--steps must be at least 1".into()));
    }
    let burn_in = args.chain.burn_in.unwrap_or(0) as usize;
    let model = &file.model;
    let mut outputs = Outputs::new();
    outputs.declare(
        "--image",
        args.chain.image.as_deref(),
        PNG,
        "the grid of samples (a grey PNG)",
    )?;
    outputs.declare(
        "--output",
        args.output.as_deref(),
        CSV,
        "the samples (real values, .csv)",
    )?;
    let side = square_side(model.n_visible());
    if args.chain.image.is_some() && side.is_none() {
        return Err(usage(format!(
            "--image needs a square number of visible units, the model has {}",
            model.n_visible()
        )));
    }
    let params = GaussianChainParams {
        sampler,
        step_size,
        chains,
        burn_in,
        // Only each chain's final state is kept; MALA's acceptance counts every move after
        // the burn-in.
        steps,
        thin: steps,
        seed: global.seed,
    };
    let t0 = Instant::now();
    let run = run_gaussian_chains(model, &params)?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut states = run.states;
    if let Some((mean, std)) = file.standardisation() {
        for row in states.chunks_exact_mut(model.n_visible()) {
            for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
                *x = *x * s + m;
            }
        }
    }
    if args.output.is_some() {
        let mut text = String::new();
        for row in states.chunks_exact(model.n_visible()) {
            let cells: Vec<String> = row.iter().map(|x| x.to_string()).collect();
            text.push_str(&cells.join(","));
            text.push('\n');
        }
        outputs.stage_bytes("--output", text.as_bytes())?;
    }
    if let (Some(_), Some(side)) = (&args.chain.image, side) {
        let tiles: Vec<Vec<f64>> = states
            .chunks_exact(model.n_visible())
            .map(|r| r.to_vec())
            .collect();
        let (w, h, luma) = tile_image(&tiles, side, false);
        outputs.stage_bytes("--image", &ebm::io::images::encode_grey_png(w, h, &luma)?)?;
    }
    let langevin = sampler != GaussianSampler::Gibbs;
    let report = SampleReport {
        model: path.display().to_string(),
        sampler: match sampler {
            GaussianSampler::Langevin => "langevin",
            GaussianSampler::Mala => "mala",
            GaussianSampler::Gibbs => "gibbs",
        },
        chains,
        steps,
        step_size: langevin.then_some(step_size),
        acceptance: (sampler == GaussianSampler::Mala).then_some(run.acceptance),
        n_visible: model.n_visible(),
        n_hidden: model.n_hidden(),
        mean_value: states.iter().sum::<f64>() / states.len().max(1) as f64,
        seconds,
        image: args.chain.image.as_ref().map(|p| p.display().to_string()),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        seed: global.seed,
    };
    outputs.commit()?;
    if global.json {
        print_json(&report)
    } else {
        say(
            global,
            &format!(
                "{} chains x {} {} steps in {:.2} s; mean value {:.4}{} (seed {})",
                chains,
                steps,
                report.sampler,
                seconds,
                report.mean_value,
                report
                    .acceptance
                    .map_or(String::new(), |a| format!("; MALA acceptance {a:.3}")),
                global.seed
            ),
        );
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct PartitionReport {
    model: String,
    visible_units: &'static str,
    n_visible: usize,
    n_hidden: usize,
    log_z: f64,
    method: &'static str,
    states: u64,
    seconds: f64,
}

/// `ebm partition --model g.safetensors`: exact ln Z by enumerating the hidden units.
pub fn partition(
    path: &Path,
    file: &GaussianRbmFile,
    global: &GlobalArgs,
    start: Instant,
) -> anyhow::Result<()> {
    let model = &file.model;
    let log_z = model
        .log_partition()
        .with_context(|| format!("ln Z of {}", path.display()))?;
    let report = PartitionReport {
        model: path.display().to_string(),
        visible_units: "gaussian",
        n_visible: model.n_visible(),
        n_hidden: model.n_hidden(),
        log_z,
        method: "exact-hidden",
        states: 1u64 << model.n_hidden(),
        seconds: start.elapsed().as_secs_f64(),
    };
    if global.json {
        print_json(&report)
    } else {
        println!(
            "{}: Gaussian-Bernoulli RBM {} x {}\nln Z = {log_z:.6} (exact: 2^{} hidden states, a \
             Gaussian integral each; {:.3} s)",
            report.model, report.n_visible, report.n_hidden, report.n_hidden, report.seconds
        );
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct EvaluateReport {
    model: String,
    data: String,
    examples: usize,
    log_likelihood: f64,
    log_z: f64,
    method: &'static str,
    /// AIS's ln(mean -+ 3 standard errors) of the weights, settings, ESS and flag; the
    /// likelihood's interval is the reverse: log_likelihood_low = log_likelihood - (log_z_high
    /// - log_z).
    #[serde(flatten)]
    ais: super::ais_report::AisReport,
    standardised: bool,
    /// The data were dequantised by this step (as the model's training data were).
    #[serde(skip_serializing_if = "Option::is_none")]
    dequantise_step: Option<f64>,
    seconds: f64,
    seed: u64,
}

/// `ebm evaluate` of a Gaussian RBM: the average log-density of the data (nats per example, in
/// the data's own units: a stored standardisation is applied and its Jacobian added), with ln Z
/// exact by enumerating the hidden units or by AIS from the beta = 0 base
/// (`--method ais`, or `auto` above [`MAX_EXACT_HIDDEN`] hidden units).
/// For `ebm score`: each example's free energy in the data's own units,
/// F_x(x) = F(z) - ln|dz/dx| with z the stored standardisation of x (F itself when there is
/// none), so that ln p(x) = -F_x(x) - ln Z; and ln Z, exact by enumerating the hidden units,
/// when `with_log_z`.
pub fn free_energies_in_data_units(
    file: &GaussianRbmFile,
    data: &mut RealDataset,
    data_path: &Path,
    with_log_z: bool,
) -> anyhow::Result<(Vec<f64>, Option<f64>)> {
    check_columns(data, data_path, &file.model)?;
    let log_jacobian = to_model_units(file, data);
    let mut hidden = vec![0.0; file.model.n_hidden()];
    let free = data
        .iter_rows()
        .map(|v| file.model.free_energy_with(v, &mut hidden) - log_jacobian)
        .collect();
    let log_z = if with_log_z {
        Some(file.model.log_partition()?)
    } else {
        None
    };
    Ok((free, log_z))
}

pub fn evaluate(args: &EvaluateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.threshold.is_some() {
        return Err(usage(
            "--threshold does not apply to a Gaussian RBM (its data are real values)".into(),
        ));
    }
    let start = Instant::now();
    let file = ebm::io::safetensors::read_gaussian_rbm(&args.model)
        .with_context(|| format!("reading model {}", args.model.display()))?;
    let mut data = read_real_dataset(&args.data)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    check_columns(&data, &args.data, &file.model)?;
    // A model trained on dequantised data is a density of dequantised data: the data are
    // dequantised the same way (the stream of held-out data under --seed), as at training.
    let dequantise_step = stored_dequantise_step(&file);
    if let Some(step) = dequantise_step {
        dequantise(&mut data, step, global.seed, KEY_DEQUANTISE_TEST)?;
    }
    let log_jacobian = to_model_units(&file, &mut data);
    let ais = args.method == EvaluateMethodArg::Ais
        || (args.method == EvaluateMethodArg::Auto && file.model.n_hidden() > MAX_EXACT_HIDDEN);
    let (log_z, estimate) = if ais {
        let params = ebm::infer::ais::AisParams {
            betas: args.ais_betas,
            runs: args.ais_runs,
            seed: global.seed,
        };
        let est = ebm::infer::gaussian_ais::gaussian_ais_log_partition(&file.model, &params)
            .with_context(|| format!("AIS of ln Z of {}", args.model.display()))?;
        (est.log_z, Some(est))
    } else {
        let log_z = file
            .model
            .log_partition()
            .with_context(|| format!("ln Z of {}", args.model.display()))?;
        (log_z, None)
    };
    let mut hidden = vec![0.0; file.model.n_hidden()];
    let mean_free_energy = data
        .iter_rows()
        .map(|v| file.model.free_energy_with(v, &mut hidden))
        .sum::<f64>()
        / data.rows() as f64;
    let ll = -mean_free_energy - log_z + log_jacobian;
    let report = EvaluateReport {
        model: args.model.display().to_string(),
        data: args.data.display().to_string(),
        examples: data.rows(),
        log_likelihood: ll,
        log_z,
        method: if ais { "ais" } else { "exact" },
        ais: super::ais_report::AisReport::of_estimate(estimate.as_ref()),
        standardised: file.standardisation().is_some(),
        dequantise_step,
        seconds: start.elapsed().as_secs_f64(),
        seed: global.seed,
    };
    report
        .ais
        .warn_if_unreliable(super::ais_report::RAISE_FLAGS);
    if global.json {
        print_json(&report)
    } else {
        println!(
            "{}: average log-likelihood {ll:.4} nats per example over {} examples (ln Z = \
             {log_z:.4}, {}){}",
            report.data,
            report.examples,
            report.method,
            dequantise_step.map_or(String::new(), |s| format!(
                "; data dequantised by step {s} as at training"
            ))
        );
        Ok(())
    }
}
