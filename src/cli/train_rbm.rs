//! `ebm train-rbm`: contrastive divergence / persistent CD training of a binary RBM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::GlobalArgs;
use super::evaluate::MethodArg;
use super::output::{print_json, say};
use super::sample_rbm::{square_side, tile_image};
use super::ui::{BarObserver, progress_enabled};
use ebm::infer::ais::{AisParams, DEFAULT_AIS_BETAS, DEFAULT_AIS_RUNS};
use ebm::io::atomic::write_bytes_atomic;
use ebm::io::datasets::read_dataset;
use ebm::io::images::write_grey_png;
use ebm::io::safetensors::{RbmFile, Tensor, read_rbm, write_rbm};
use ebm::learn::cd::{
    CdParams, DATA_MEANS, DEFAULT_BATCH_SIZE, DEFAULT_CD_K, DEFAULT_CHAINS, DEFAULT_EPOCHS,
    DEFAULT_HIDDEN, DEFAULT_INIT_STD, DEFAULT_LEARNING_RATE, DEFAULT_MOMENTUM,
    DEFAULT_MONITOR_ROWS, DEFAULT_WEIGHT_DECAY, EpochStats, LrSchedule, PERSISTENT_CHAINS,
    TrainObserver, TrainState, VELOCITY_HIDDEN, VELOCITY_VISIBLE, VELOCITY_WEIGHTS,
};
use ebm::learn::train_rbm;
use ebm::progress::{Control, Observer, Step};

/// Ctrl-C (SIGINT) handling: the first Ctrl-C sets a flag that the training observer checks after
/// every epoch and during likelihood evaluations; training then stops, the checkpoint is written
/// (the final model is written before the final evaluation) and the command exits with status 1
/// after printing its report (`"interrupted": true`). A second Ctrl-C ends the process at once.
#[cfg(unix)]
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static REQUESTED: AtomicBool = AtomicBool::new(false);
    const SIGINT: i32 = 2;
    const SIG_DFL: usize = 0;

    unsafe extern "C" {
        // POSIX signal(2) from the C library that std already links.
        fn signal(signum: i32, handler: usize) -> usize;
    }

    extern "C" fn on_sigint(_: i32) {
        // Only async-signal-safe work here: an atomic store and restoring the default action.
        REQUESTED.store(true, Ordering::SeqCst);
        // SAFETY: signal(2) is async-signal-safe; SIG_DFL is a valid disposition.
        unsafe {
            signal(SIGINT, SIG_DFL);
        }
    }

    /// Installs the handler.
    pub fn install() {
        let handler: extern "C" fn(i32) = on_sigint;
        // SAFETY: the handler only performs async-signal-safe operations.
        unsafe {
            signal(SIGINT, handler as usize);
        }
    }

    /// Restores the default action (Ctrl-C ends the process).
    pub fn uninstall() {
        // SAFETY: SIG_DFL is a valid disposition.
        unsafe {
            signal(SIGINT, SIG_DFL);
        }
    }

    /// True once Ctrl-C was pressed.
    pub fn requested() -> bool {
        REQUESTED.load(Ordering::SeqCst)
    }
}

#[cfg(not(unix))]
mod interrupt {
    pub fn install() {}
    pub fn uninstall() {}
    pub fn requested() -> bool {
        false
    }
}

/// Metadata key of the number of completed epochs in a checkpoint.
pub const EPOCHS_DONE_KEY: &str = "epochs_done";

/// Learning-rate schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// The same rate every epoch.
    Constant,
    /// lr * (1 - epoch / epochs): annealed towards 0 by the last epoch.
    Linear,
}

/// Likelihood evaluation during and after training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalArg {
    /// Exact when the smaller layer has at most 25 units, AIS beyond.
    Auto,
    /// Exact enumeration of the smaller layer.
    Exact,
    /// Annealed importance sampling.
    Ais,
    /// No likelihoods (reconstruction error and pseudo-likelihood only).
    None,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ebm train-rbm --data data/digits_train.txt --test data/digits_test.txt --hidden 16 --persistent --epochs 200 --output digits16.safetensors\n  ebm train-rbm --data data/mnist5k_train.txt --test data/mnist5k_test.txt --hidden 25 --persistent --batch-size 100 --log metrics.csv --filters filters.png --output mnist25.safetensors\n  ebm train-rbm --data data/digits_train.txt --hidden 16 --persistent --epochs 400 --stop-after 100 --log log.csv --output digits16.safetensors\n  ebm train-rbm --data data/digits_train.txt --resume digits16.safetensors --log log.csv --output digits16.safetensors\n\nResuming: the checkpoint stores the training settings; a flag left out takes the stored value, a flag given with another value is refused. Under the default linear schedule --epochs is the total the rate decays over and cannot change; with --lr-schedule constant a larger --epochs extends the run. Pass --seed again when the run used a non-default seed."
)]
pub struct TrainRbmArgs {
    /// Training examples (.txt, .csv, .npy, IDX; optionally .gz).
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out examples for the test log-likelihood.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Binarization threshold for .csv/.npy (default 0.5) and IDX (default 128) data.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Number of hidden units [default: 64, or the resumed model's].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Total number of epochs; the linear schedule decays over this total [default: 100, or the
    /// resumed run's].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many epochs in total, writing the checkpoint to --output (the schedule
    /// still runs over --epochs; continue with --resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Examples per mini-batch [default: 10, or the resumed run's].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Initial learning rate [default: 0.05, or the resumed run's].
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Learning-rate schedule over the epochs [default: linear, or the resumed run's].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<ScheduleArg>,
    /// Gibbs sweeps per update (CD-k, or PCD-k with --persistent) [default: 1, or the resumed
    /// run's].
    #[arg(long)]
    pub cd_k: Option<usize>,
    /// Persistent contrastive divergence (fantasy chains kept across updates) [default: off, or
    /// the resumed run's].
    #[arg(long)]
    pub persistent: bool,
    /// Number of persistent chains (with --persistent) [default: 100, or the resumed run's].
    #[arg(long)]
    pub chains: Option<usize>,
    /// Momentum in [0, 1) [default: 0.5, or the resumed run's].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// L2 weight decay on W [default: 0.0001, or the resumed run's].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Standard deviation of the initial weights.
    #[arg(long, default_value_t = DEFAULT_INIT_STD)]
    pub init_std: f64,
    /// Training examples used for the per-epoch reconstruction error and pseudo-likelihood.
    #[arg(long, default_value_t = DEFAULT_MONITOR_ROWS)]
    pub monitor_rows: usize,
    /// Likelihood evaluation (at the end, and every --eval-every epochs).
    #[arg(long, value_enum, default_value_t = EvalArg::Auto)]
    pub eval: EvalArg,
    /// Evaluate the likelihood every N epochs (0: at the end only).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// AIS: number of annealing steps.
    #[arg(long, default_value_t = DEFAULT_AIS_BETAS)]
    pub ais_betas: usize,
    /// AIS: number of independent runs.
    #[arg(long, default_value_t = DEFAULT_AIS_RUNS)]
    pub ais_runs: usize,
    /// Write the per-epoch figures as CSV (.csv; on resume, the rows up to the checkpoint's
    /// epoch are kept).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Write the model (with optimizer state and chains) to --output every N epochs (0: never).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue training from a checkpoint written by this command (its stored settings).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Draw each hidden unit's weights as a tile (.png; needs a square n_visible).
    #[arg(long)]
    pub filters: Option<PathBuf>,
    /// The trained model (.safetensors), with the state needed to resume.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    output: String,
    n_visible: usize,
    n_hidden: usize,
    train_examples: usize,
    test_examples: Option<usize>,
    epochs: usize,
    epochs_total: usize,
    epochs_run: usize,
    interrupted: bool,
    stopped_as_asked: bool,
    train_log_likelihood: Option<f64>,
    test_log_likelihood: Option<f64>,
    log_z: Option<f64>,
    log_z_method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_high: Option<f64>,
    reconstruction_error: f64,
    pseudo_log_likelihood: f64,
    seconds: f64,
    seconds_per_epoch: f64,
    seed: u64,
}

struct CliObserver<'a> {
    bar: BarObserver,
    log: Option<&'a Path>,
    csv: String,
    checkpoint_every: usize,
    output: &'a Path,
    metadata: &'a BTreeMap<String, String>,
    error: Option<anyhow::Error>,
    total: u64,
    stop_after: Option<usize>,
    stopped: bool,
    /// The epoch whose state was last written to `output`.
    written: Option<usize>,
}

impl CliObserver<'_> {
    /// Writes the state to `output` unless that epoch's state is already there.
    fn save(&mut self, state: &TrainState) -> anyhow::Result<()> {
        if self.written != Some(state.epoch) {
            write_state(self.output, state, self.metadata)?;
            self.written = Some(state.epoch);
        }
        Ok(())
    }
}

const CSV_HEADER: &str = "epoch,learning_rate,reconstruction_error,pseudo_log_likelihood,train_log_likelihood,test_log_likelihood,log_z,log_z_method,seconds\n";

fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v}")).unwrap_or_default()
}

impl TrainObserver for CliObserver<'_> {
    fn on_epoch(&mut self, state: &TrainState, s: &EpochStats) -> Control {
        let metric = s.test_log_likelihood.or(s.train_log_likelihood);
        self.bar.on_step(&Step {
            done: s.epoch as u64,
            total: self.total,
            metric: Some(metric.unwrap_or(s.pseudo_log_likelihood)),
        });
        let result = (|| -> anyhow::Result<()> {
            if let Some(path) = self.log {
                self.csv.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{}\n",
                    s.epoch,
                    s.learning_rate,
                    s.reconstruction_error,
                    s.pseudo_log_likelihood,
                    opt(s.train_log_likelihood),
                    opt(s.test_log_likelihood),
                    opt(s.log_z),
                    s.log_z_method.unwrap_or(""),
                    s.seconds
                ));
                write_bytes_atomic(path, self.csv.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if self.checkpoint_every > 0 && s.epoch % self.checkpoint_every == 0 {
                self.save(state)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) if interrupt::requested() => Control::Break,
            Ok(()) if self.stop_after == Some(s.epoch) => {
                self.stopped = true;
                Control::Break
            }
            Ok(()) => Control::Continue,
            Err(e) => {
                self.error = Some(e);
                Control::Break
            }
        }
    }

    fn on_final_state(&mut self, state: &TrainState) -> Control {
        // The model is final: write it before the final evaluation, which may be long and may
        // be stopped by Ctrl-C.
        match self.save(state) {
            Ok(()) if interrupt::requested() => Control::Break,
            Ok(()) => Control::Continue,
            Err(e) => {
                self.error = Some(e);
                Control::Break
            }
        }
    }

    fn on_evaluation_step(&mut self, _step: &Step) -> Control {
        if interrupt::requested() {
            Control::Break
        } else {
            Control::Continue
        }
    }
}

fn write_state(
    path: &Path,
    state: &TrainState,
    metadata: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let mut file = RbmFile::new(state.model.to_rbm()?);
    file.metadata = metadata.clone();
    file.metadata
        .insert(EPOCHS_DONE_KEY.into(), state.epoch.to_string());
    for (name, shape, data) in state.extra_arrays() {
        file.extra.insert(name.to_string(), Tensor { shape, data });
    }
    write_rbm(path, &file).with_context(|| format!("writing model {}", path.display()))
}

fn usage(msg: String) -> anyhow::Error {
    super::UsageError(msg).into()
}

/// Refuses an output path whose extension is not `ext` or whose folder does not exist, before
/// any work is done.
fn check_output(flag: &str, path: &Path, ext: &str, what: &str) -> anyhow::Result<()> {
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
    {
        return Err(usage(format!(
            "{flag} {}: {what} is written as .{ext} (use a .{ext} name)",
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(usage(format!(
            "{flag} {}: is a folder; {what} needs a file name (.{ext})",
            path.display()
        )));
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        return Err(usage(format!(
            "{flag} {}: cannot write it, the folder {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Metadata key of the training settings (a JSON object) in a model file.
pub const TRAINING_KEY: &str = "training";

/// The error for a `--resume` file that lacks `what`.
fn incomplete(path: &Path, what: &str) -> anyhow::Error {
    usage(format!(
        "--resume {}: the file lacks {what}, so training cannot continue from it (a checkpoint \
         written by ebm train-rbm holds its settings, the epoch count, the momentum velocities, \
         the data means and, for persistent CD, the chains)",
        path.display()
    ))
}

/// The settings a checkpoint was trained with.
#[derive(Debug, Default)]
struct Stored {
    epochs: Option<usize>,
    batch_size: Option<usize>,
    learning_rate: Option<f64>,
    schedule: Option<ScheduleArg>,
    cd_k: Option<usize>,
    persistent: Option<bool>,
    chains: Option<usize>,
    momentum: Option<f64>,
    weight_decay: Option<f64>,
    seed: Option<u64>,
}

impl Stored {
    fn parse(path: &Path, metadata: &BTreeMap<String, String>) -> anyhow::Result<Stored> {
        let Some(text) = metadata.get(TRAINING_KEY) else {
            return Err(incomplete(
                path,
                &format!("the `{TRAINING_KEY}` metadata (its settings)"),
            ));
        };
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: bad {TRAINING_KEY} metadata: {e}", path.display()))?;
        let bad = |key: &str| {
            anyhow::anyhow!(
                "{}: bad {TRAINING_KEY} metadata: {key} = {} is not a valid value",
                path.display(),
                v[key]
            )
        };
        let missing = |key: &str| {
            incomplete(
                path,
                &format!("the setting `{key}` in its `{TRAINING_KEY}` metadata"),
            )
        };
        let uint = |key: &str| -> anyhow::Result<Option<u64>> {
            match v.get(key) {
                None => Err(missing(key)),
                Some(x) => x.as_u64().map(Some).ok_or_else(|| bad(key)),
            }
        };
        let size = |key: &str| -> anyhow::Result<Option<usize>> {
            uint(key)?
                .map(|x| usize::try_from(x).map_err(|_| bad(key)))
                .transpose()
        };
        let float = |key: &str| -> anyhow::Result<Option<f64>> {
            match v.get(key) {
                None => Err(missing(key)),
                Some(x) => x.as_f64().map(Some).ok_or_else(|| bad(key)),
            }
        };
        let schedule = match v.get("lr_schedule") {
            None => return Err(missing("lr_schedule")),
            Some(x) => Some(
                x.as_str()
                    .and_then(|s| ScheduleArg::from_str(s, true).ok())
                    .ok_or_else(|| bad("lr_schedule"))?,
            ),
        };
        let persistent = match v.get("persistent") {
            None => return Err(missing("persistent")),
            Some(x) => Some(x.as_bool().ok_or_else(|| bad("persistent"))?),
        };
        Ok(Stored {
            epochs: size("epochs")?,
            batch_size: size("batch_size")?,
            learning_rate: float("learning_rate")?,
            schedule,
            cd_k: size("cd_k")?,
            persistent,
            chains: size("chains")?,
            momentum: float("momentum")?,
            weight_decay: float("weight_decay")?,
            seed: uint("seed")?,
        })
    }
}

impl std::fmt::Display for ScheduleArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScheduleArg::Constant => "constant",
            ScheduleArg::Linear => "linear",
        })
    }
}

/// A setting of a resumed run: the stored value unless the flag was given; a given value that
/// differs from the stored one is refused (the run would not continue the one it resumes).
fn setting<T: PartialEq + std::fmt::Display + Copy>(
    checkpoint: &str,
    flag: &str,
    given: Option<T>,
    stored: Option<T>,
    default: T,
) -> anyhow::Result<T> {
    match (given, stored) {
        (Some(g), Some(s)) if g != s => Err(usage(format!(
            "{flag} {g} differs from the value {s} stored in the checkpoint {checkpoint}: a \
             resumed run continues with the settings it was started with (leave {flag} out to \
             use {s})"
        ))),
        (Some(g), _) => Ok(g),
        (None, Some(s)) => Ok(s),
        (None, None) => Ok(default),
    }
}

/// The rows of an existing `--log` up to epoch `done` (with the header), for a resumed run; a
/// fresh header when the file does not exist.
fn resumed_log(path: &Path, done: usize) -> anyhow::Result<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CSV_HEADER.into()),
        Err(e) => return Err(e).with_context(|| format!("reading --log {}", path.display())),
    };
    let mut lines = text.lines();
    if lines.next() != Some(CSV_HEADER.trim_end()) {
        return Err(usage(format!(
            "--log {}: the existing file is not a train-rbm log (its first line is not the \
             header {}); give another --log",
            path.display(),
            CSV_HEADER.trim_end()
        )));
    }
    let mut out = CSV_HEADER.to_string();
    for (k, line) in lines.enumerate() {
        let epoch: usize = line
            .split(',')
            .next()
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| {
                usage(format!(
                    "--log {} line {}: expected an epoch number first, got {line:?}",
                    path.display(),
                    k + 2
                ))
            })?;
        if epoch <= done {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

pub fn run(args: &TrainRbmArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // Every output is checked before the data are read and the training runs.
    check_output("--output", &args.output, "safetensors", "the model")?;
    if let Some(p) = &args.log {
        check_output("--log", p, "csv", "the log")?;
    }
    if let Some(p) = &args.filters {
        check_output("--filters", p, "png", "the filter image")?;
    }
    let train = read_dataset(&args.data, args.threshold)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    let test = match &args.test {
        Some(p) => Some(
            read_dataset(p, args.threshold)
                .with_context(|| format!("reading test data {}", p.display()))?,
        ),
        None => None,
    };
    if let (Some(t), Some(p)) = (&test, &args.test)
        && t.cols() != train.cols()
    {
        return Err(usage(format!(
            "--test {} has {} columns per example, --data {} has {}: both must have the same \
             number of visible units",
            p.display(),
            t.cols(),
            args.data.display(),
            train.cols()
        )));
    }
    let ckpt = args
        .resume
        .as_ref()
        .map_or(String::new(), |p| p.display().to_string());
    let (resume, stored) = match &args.resume {
        Some(p) => {
            let file =
                read_rbm(p).with_context(|| format!("reading checkpoint {}", p.display()))?;
            let epoch: usize = file
                .metadata
                .get(EPOCHS_DONE_KEY)
                .ok_or_else(|| {
                    incomplete(
                        p,
                        &format!("the `{EPOCHS_DONE_KEY}` metadata (the epoch count)"),
                    )
                })?
                .parse()
                .map_err(|e| {
                    anyhow::anyhow!("{}: bad {EPOCHS_DONE_KEY} metadata: {e}", p.display())
                })?;
            let stored = Stored::parse(p, &file.metadata)?;
            let mut needed = vec![
                VELOCITY_WEIGHTS,
                VELOCITY_VISIBLE,
                VELOCITY_HIDDEN,
                DATA_MEANS,
            ];
            if stored.persistent == Some(true) {
                needed.push(PERSISTENT_CHAINS);
            }
            if let Some(name) = needed.iter().find(|n| !file.extra.contains_key(**n)) {
                return Err(incomplete(p, &format!("the tensor `{name}`")));
            }
            let get = |name: &str| {
                file.extra
                    .get(name)
                    .map(|t| (t.shape.clone(), t.data.clone()))
            };
            let state = TrainState::from_parts(&file.rbm, epoch, &get)
                .with_context(|| format!("reading checkpoint {}", p.display()))?;
            (Some(state), stored)
        }
        None => (None, Stored::default()),
    };
    let hidden = match (&resume, args.hidden) {
        (Some(s), None) => s.model.n_hidden,
        (_, Some(h)) => h,
        (None, None) => DEFAULT_HIDDEN,
    };
    if let Some(s) = stored.seed
        && s != global.seed
    {
        return Err(usage(format!(
            "--seed {} differs from the seed {s} stored in the checkpoint {ckpt}: resume with \
             --seed {s}",
            global.seed
        )));
    }
    let schedule = setting(
        &ckpt,
        "--lr-schedule",
        args.lr_schedule,
        stored.schedule,
        ScheduleArg::Linear,
    )?;
    let epochs = match (args.epochs, stored.epochs) {
        (Some(g), Some(s)) if g != s && schedule == ScheduleArg::Linear => {
            return Err(usage(format!(
                "--epochs {g}: the linear schedule decays over {s} epochs (as stored in the \
                 checkpoint {ckpt}); resume with \
                 --epochs {s} (or leave --epochs out), or train with --lr-schedule constant"
            )));
        }
        (Some(g), _) => g,
        (None, Some(s)) => s,
        (None, None) => DEFAULT_EPOCHS,
    };
    let persistent = match stored.persistent {
        Some(false) if args.persistent => {
            return Err(usage(format!(
                "--persistent: the checkpoint {ckpt} was trained with CD, not \
                 persistent CD; leave --persistent out to resume it"
            )));
        }
        Some(s) => s,
        None => args.persistent,
    };
    let ais = AisParams {
        betas: args.ais_betas,
        runs: args.ais_runs,
        seed: global.seed,
    };
    let evaluation = match args.eval {
        EvalArg::None => None,
        EvalArg::Auto => Some(MethodArg::Auto.evaluation(ais)),
        EvalArg::Exact => Some(MethodArg::Exact.evaluation(ais)),
        EvalArg::Ais => Some(MethodArg::Ais.evaluation(ais)),
    };
    let params = CdParams {
        hidden,
        epochs,
        batch_size: setting(
            &ckpt,
            "--batch-size",
            args.batch_size,
            stored.batch_size,
            DEFAULT_BATCH_SIZE,
        )?,
        learning_rate: setting(
            &ckpt,
            "--learning-rate",
            args.learning_rate,
            stored.learning_rate,
            DEFAULT_LEARNING_RATE,
        )?,
        schedule: match schedule {
            ScheduleArg::Constant => LrSchedule::Constant,
            ScheduleArg::Linear => LrSchedule::Linear,
        },
        cd_k: setting(&ckpt, "--cd-k", args.cd_k, stored.cd_k, DEFAULT_CD_K)?,
        persistent,
        chains: setting(
            &ckpt,
            "--chains",
            args.chains,
            stored.chains,
            DEFAULT_CHAINS,
        )?,
        momentum: setting(
            &ckpt,
            "--momentum",
            args.momentum,
            stored.momentum,
            DEFAULT_MOMENTUM,
        )?,
        weight_decay: setting(
            &ckpt,
            "--weight-decay",
            args.weight_decay,
            stored.weight_decay,
            DEFAULT_WEIGHT_DECAY,
        )?,
        init_std: args.init_std,
        monitor_rows: args.monitor_rows,
        eval_every: args.eval_every,
        evaluation,
        seed: global.seed,
    };
    params.validate()?;
    if let Some(s) = &resume {
        s.check_resumable(&train, &params).with_context(|| {
            format!(
                "resuming the checkpoint {ckpt} on --data {}",
                args.data.display()
            )
        })?;
    }
    let done = resume.as_ref().map_or(0, |s| s.epoch);
    if let Some(n) = args.stop_after
        && (n <= done || n >= params.epochs)
    {
        return Err(usage(format!(
            "--stop-after {n}: must lie between the epochs already done ({done}) and --epochs \
             ({}), both excluded",
            params.epochs
        )));
    }
    let csv = match (&args.log, &resume) {
        (Some(p), Some(s)) => resumed_log(p, s.epoch)?,
        _ => CSV_HEADER.to_string(),
    };
    let side = square_side(train.cols());
    if args.filters.is_some() && side.is_none() {
        return Err(super::UsageError(format!(
            "--filters needs a square number of visible units, the data has {} columns",
            train.cols()
        ))
        .into());
    }
    let mut metadata = BTreeMap::new();
    metadata.insert(
        TRAINING_KEY.to_string(),
        serde_json::json!({
            "data": args.data.to_string_lossy(),
            "hidden": params.hidden,
            "epochs": params.epochs,
            "batch_size": params.batch_size,
            "learning_rate": params.learning_rate,
            "lr_schedule": format!("{:?}", params.schedule).to_lowercase(),
            "cd_k": params.cd_k,
            "persistent": params.persistent,
            "chains": params.chains,
            "momentum": params.momentum,
            "weight_decay": params.weight_decay,
            "init_std": params.init_std,
            "seed": params.seed,
        })
        .to_string(),
    );
    let mut observer = CliObserver {
        bar: BarObserver::new(
            progress_enabled(global),
            params.epochs as u64,
            "training",
            "ll",
        ),
        log: args.log.as_deref(),
        csv,
        checkpoint_every: args.checkpoint_every,
        output: &args.output,
        metadata: &metadata,
        error: None,
        total: params.epochs as u64,
        stop_after: args.stop_after,
        stopped: false,
        written: None,
    };
    interrupt::install();
    let outcome = train_rbm(&train, test.as_ref(), &params, resume, &mut observer);
    interrupt::uninstall();
    let outcome = outcome?;
    observer.bar.finish();
    if let Some(e) = observer.error.take() {
        return Err(e);
    }
    observer.save(&outcome.state)?;
    let stopped = observer.stopped;
    let interrupted = outcome.interrupted && !stopped;
    if let (Some(p), Some(side)) = (&args.filters, side)
        && (!interrupted || outcome.evaluation_interrupted)
    {
        let (nv, nh) = (outcome.state.model.n_visible, outcome.state.model.n_hidden);
        let w = &outcome.state.model.weights;
        let tiles: Vec<Vec<f64>> = (0..nh)
            .map(|j| (0..nv).map(|i| w[i * nh + j] as f64).collect())
            .collect();
        let (tw, th, luma) = tile_image(&tiles, side, true);
        write_grey_png(p, tw, th, &luma).with_context(|| format!("writing {}", p.display()))?;
    }
    let runs = outcome.history.len();
    let last = outcome.history.last();
    let report = Report {
        output: args.output.to_string_lossy().into_owned(),
        n_visible: train.cols(),
        n_hidden: params.hidden,
        train_examples: train.rows(),
        test_examples: test.as_ref().map(|t| t.rows()),
        epochs: outcome.state.epoch,
        epochs_total: params.epochs,
        epochs_run: runs,
        interrupted,
        stopped_as_asked: stopped,
        train_log_likelihood: last.and_then(|s| s.train_log_likelihood),
        test_log_likelihood: last.and_then(|s| s.test_log_likelihood),
        log_z: last.and_then(|s| s.log_z),
        log_z_method: last.and_then(|s| s.log_z_method),
        log_z_low: last.and_then(|s| s.log_z_low).filter(|x| x.is_finite()),
        log_z_high: last.and_then(|s| s.log_z_high),
        reconstruction_error: last.map_or(f64::NAN, |s| s.reconstruction_error),
        pseudo_log_likelihood: last.map_or(f64::NAN, |s| s.pseudo_log_likelihood),
        seconds: outcome.train_seconds,
        seconds_per_epoch: outcome.train_seconds / runs.max(1) as f64,
        seed: global.seed,
    };
    if global.json {
        print_json(&report)?;
    }
    if interrupted {
        let output = args.output.display();
        let msg = if outcome.evaluation_interrupted {
            format!(
                "stopped by Ctrl-C during the likelihood evaluation after epoch {}; the model of \
                 that epoch is in {output} (evaluate it with `ebm evaluate --model {output} --data {}`{})",
                outcome.state.epoch,
                args.data.display(),
                if outcome.state.epoch < params.epochs {
                    format!(", continue with --resume {output}")
                } else {
                    String::new()
                }
            )
        } else {
            format!(
                "stopped by Ctrl-C after epoch {}; checkpoint written to {output} (continue with \
                 --resume {output})",
                outcome.state.epoch
            )
        };
        return Err(anyhow::Error::new(ebm::Error::Interrupted).context(msg));
    }
    if !global.json {
        if stopped {
            say(
                global,
                &format!(
                    "stopped after epoch {} of {} as asked by --stop-after; continue with --resume {}",
                    outcome.state.epoch,
                    params.epochs,
                    args.output.display()
                ),
            );
        }
        let ll = match (report.train_log_likelihood, report.test_log_likelihood) {
            (Some(a), Some(b)) => format!(
                "; log-likelihood train {a:.4}, test {b:.4} nats ({})",
                report.log_z_method.unwrap_or("")
            ),
            (Some(a), None) => format!(
                "; train log-likelihood {a:.4} nats ({})",
                report.log_z_method.unwrap_or("")
            ),
            _ => String::new(),
        };
        say(
            global,
            &format!(
                "{}: {} x {} RBM, {} epochs ({:.4} s/epoch){ll}; reconstruction error {:.4}, pseudo-log-likelihood {:.4}",
                report.output,
                report.n_visible,
                report.n_hidden,
                report.epochs,
                report.seconds_per_epoch,
                report.reconstruction_error,
                report.pseudo_log_likelihood,
            ),
        );
    }
    Ok(())
}
