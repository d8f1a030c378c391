//! `ebm train-rbm`: training of a binary RBM by contrastive divergence, persistent CD,
//! pseudo-likelihood, ratio matching or noise-contrastive estimation.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::GlobalArgs;
use super::evaluate::EvaluateMethodArg;
use super::output::{CSV, Outputs, PNG, SAFETENSORS, eprint_line, print_json, say};
use super::read_dataset;
use super::sample_rbm::{square_side, tile_image};
use super::ui::{BarObserver, progress_enabled};
use ebm::infer::ais::{AisParams, DEFAULT_AIS_BETAS, DEFAULT_AIS_RUNS};
use ebm::io::atomic::write_bytes_atomic;
use ebm::io::images::encode_grey_png;
use ebm::io::safetensors::{read_rbm, write_rbm};
use ebm::learn::cd::{
    CdParams, DEFAULT_INIT_STD, DEFAULT_MONITOR_ROWS, EpochStats, LrSchedule, Objective,
    TrainObserver, TrainState,
};
use ebm::learn::checkpoint::{Checkpoint, Requested, checkpoint_file};
use ebm::learn::train_rbm;
use ebm::progress::{Control, Observer, Step};
use ebm::sample::gradient::{DEFAULT_STEP_SIZE, GradientSampler};

/// Ctrl-C (SIGINT) handling: the first Ctrl-C sets a flag that the training observer checks after
/// every epoch and during likelihood evaluations; training then stops, the checkpoint is written
/// (the final model is written before the final evaluation) and the command exits with status 1
/// after printing its report (`"interrupted": true`). A second Ctrl-C ends the process at once.
#[cfg(unix)]
pub(super) mod interrupt {
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
pub(super) mod interrupt {
    pub fn install() {}
    pub fn uninstall() {}
    pub fn requested() -> bool {
        false
    }
}

/// Training objectives (see docs/rbm.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    /// Contrastive divergence CD-k (Hinton 2002).
    Cd,
    /// Persistent contrastive divergence PCD-k (Tieleman 2008); the same as --persistent.
    Pcd,
    /// Exact pseudo-likelihood (Besag 1975): no Markov chain, O(n_v n_h) per example.
    PseudoLikelihood,
    /// Ratio matching (Hyvarinen 2007; Marlin et al. 2010): no Markov chain, O(n_v n_h) per
    /// example.
    RatioMatching,
    /// Noise-contrastive estimation (Gutmann & Hyvarinen 2012): no Markov chain; data against
    /// --nce-ratio samples per example from the data's independent bit means, with ln Z learned.
    Nce,
    /// Score matching in closed form (Hyvarinen 2005; Swersky et al. 2011); --visible gaussian.
    ScoreMatching,
    /// Denoising score matching (Vincent 2011) with --noise-std; --visible gaussian.
    DenoisingScoreMatching,
}

/// The kind of visible units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VisibleArg {
    /// Units in {0, 1} (the data binarised at --threshold).
    Binary,
    /// Real units, Gaussian given h (a Gaussian-Bernoulli RBM; see docs/gaussian.md).
    Gaussian,
}

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
    after_help = "Examples:\n  ebm train-rbm --data data/digits_train.txt --test data/digits_test.txt --hidden 16 --persistent --epochs 200 --output digits16.safetensors\n  ebm train-rbm --data data/mnist5k_train.txt --test data/mnist5k_test.txt --hidden 25 --persistent --batch-size 100 --log metrics.csv --filters filters.png --output mnist25.safetensors\n  ebm train-rbm --data data/digits_train.txt --hidden 16 --persistent --epochs 400 --stop-after 100 --log log.csv --output digits16.safetensors\n  ebm train-rbm --data data/digits_train.txt --test data/digits_test.txt --hidden 16 --objective pseudo-likelihood --epochs 200 --output digits16pl.safetensors\n  ebm train-rbm --data data/digits_train.txt --test data/digits_test.txt --hidden 16 --objective nce --nce-ratio 4 --epochs 200 --output digits16nce.safetensors\n  ebm train-rbm --data data/digits_train.txt --resume digits16.safetensors --log log.csv --output digits16.safetensors\n  ebm train-rbm --visible gaussian --objective score-matching --learn-sigma --standardise --data data/digits_grey_train.csv --test data/digits_grey_test.csv --filters grey-filters.png --stop-after 50 --output grey16.safetensors\n  ebm train-rbm --visible gaussian --data data/digits_grey_train.csv --test data/digits_grey_test.csv --resume grey16.safetensors --output grey16.safetensors\n\nResuming: the checkpoint stores the training settings; a flag left out takes the stored value, a flag given with another value is refused. Under the default linear schedule --epochs is the total the rate decays over and cannot change; with --lr-schedule constant a larger --epochs extends the run. Pass --seed again when the run used a non-default seed."
)]
pub struct TrainRbmArgs {
    /// Training examples (.txt, .csv, .npy, IDX; optionally .gz).
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out examples for the test log-likelihood.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Binarization threshold for .csv/.npy (default 0.5) and IDX (default 128) data.
    #[arg(long, allow_negative_numbers = true)]
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
    #[arg(long, allow_negative_numbers = true)]
    pub learning_rate: Option<f64>,
    /// Learning-rate schedule over the epochs [default: linear, or the resumed run's].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<ScheduleArg>,
    /// The objective whose gradient training ascends [default: cd (pcd with --persistent), or
    /// the resumed run's].
    #[arg(long, value_enum)]
    pub objective: Option<ObjectiveArg>,
    /// Gibbs sweeps per update (CD-k, or PCD-k with --persistent) [default: 1, or the resumed
    /// run's].
    #[arg(long)]
    pub cd_k: Option<usize>,
    /// Persistent contrastive divergence (fantasy chains kept across updates; the same as
    /// --objective pcd) [default: off, or the resumed run's].
    #[arg(long)]
    pub persistent: bool,
    /// Number of persistent chains (with --persistent) [default: 100, or the resumed run's].
    #[arg(long)]
    pub chains: Option<usize>,
    /// Sampler of the persistent chains (PCD only): gibbs (block Gibbs, --cd-k sweeps), gwg
    /// (Gibbs-with-Gradients) or dmala (discrete Langevin with correction) on the visible
    /// units, --cd-k proposals per update [default: gibbs, or the resumed run's].
    #[arg(long, value_enum)]
    pub negative_sampler: Option<NegativeSamplerArg>,
    /// Step size alpha of --negative-sampler dmala [default: 0.2, or the resumed run's].
    #[arg(long)]
    pub step_size: Option<f64>,
    /// Noise samples per data example, an integer >= 1 (with --objective nce) [default: 1, or
    /// the resumed run's].
    #[arg(long)]
    pub nce_ratio: Option<usize>,
    /// Momentum in [0, 1) [default: 0.5, or the resumed run's].
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// L2 weight decay on W [default: 0.0001, or the resumed run's].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Standard deviation of the initial weights.
    #[arg(long, default_value_t = DEFAULT_INIT_STD, allow_negative_numbers = true)]
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
    /// Write the per-epoch figures as CSV (.csv): reconstruction error, pseudo-log-likelihood,
    /// log-likelihoods and ln Z when evaluated, seconds, the objective and the AIS effective
    /// sample size (on resume, the rows up to the checkpoint's epoch are kept).
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
    /// The trained model (.safetensors), with the state needed to resume; with --labels, the
    /// classifier manifest (.json), the class RBMs written beside it.
    #[arg(long)]
    pub output: PathBuf,
    /// Class labels, one integer per line for each row of --data: trains one RBM per class
    /// and writes a classifier for `ebm classify` (see `ebm classify --help`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Visible units: binary, or gaussian for real-valued data (read without a threshold)
    /// [default: binary]. Gaussian defaults: --hidden 16, --learning-rate 0.01, --batch-size 20,
    /// --momentum 0.5, --weight-decay 0, --lr-schedule constant, --objective cd.
    #[arg(long, value_enum)]
    pub visible: Option<VisibleArg>,
    /// Read --data and --test as real values, no threshold: the explicit form of --visible
    /// gaussian's reading (refused for binary RBMs, which binarise at --threshold).
    #[arg(long)]
    pub real: bool,
    /// Gaussian: standard deviation of the noise of --objective denoising-score-matching
    /// [default: 0.1].
    #[arg(long)]
    pub noise_std: Option<f64>,
    /// Gaussian: learn sigma (kept in [0.01, 100]) instead of keeping it at --sigma. On
    /// quantised data (e.g. grey levels) see --dequantise.
    #[arg(long)]
    pub learn_sigma: bool,
    /// Gaussian: add uniform noise of width STEP to every value of --data and --test (centred
    /// on it): `auto` dequantises by the detected grid step when --learn-sigma meets quantised
    /// data (a learned sigma would collapse onto the grid), `off` never (then --learn-sigma on
    /// quantised data is refused), or a step [default: auto].
    #[arg(long, value_name = "auto|off|STEP")]
    pub dequantise: Option<String>,
    /// Gaussian: the (initial) sigma of every visible unit [default: 1].
    #[arg(long)]
    pub sigma: Option<f64>,
    /// Gaussian: standardise every column to mean 0 and standard deviation 1 (constant columns
    /// only centred); the mean and std are stored in the model and applied to every dataset
    /// evaluated with it.
    #[arg(long)]
    pub standardise: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    output: String,
    n_visible: usize,
    n_hidden: usize,
    train_examples: usize,
    test_examples: Option<usize>,
    objective: &'static str,
    /// Sampler of the persistent chains: gibbs, gwg or dmala (null without persistent chains).
    negative_sampler: Option<&'static str>,
    epochs: usize,
    epochs_total: usize,
    epochs_run: usize,
    interrupted: bool,
    stopped_as_asked: bool,
    train_log_likelihood: Option<f64>,
    test_log_likelihood: Option<f64>,
    log_z: Option<f64>,
    log_z_method: Option<&'static str>,
    /// NCE's learned normaliser c (its estimate of ln Z); null for the other objectives.
    nce_log_z: Option<f64>,
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
    params: &'a CdParams,
    data: &'a str,
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
            write_state(self.output, state, self.params, self.data)?;
            self.written = Some(state.epoch);
        }
        Ok(())
    }
}

/// The `--log` columns. `objective` is the training objective averaged over the epoch's batches
/// (pseudo-log-likelihood, ratio-matching loss or NCE's J per example; empty for CD and PCD);
/// `ais_ess` the effective sample size of the AIS weights of the epoch's likelihood evaluation
/// (empty without one, or when ln Z was exact).
const CSV_HEADER: &str = "epoch,learning_rate,reconstruction_error,pseudo_log_likelihood,train_log_likelihood,test_log_likelihood,log_z,log_z_method,seconds,objective,ais_ess\n";

/// The headers of logs written by earlier versions (before the `ais_ess` column, and before the
/// `objective` column too), with the number of columns they lack at the end: such a log is still
/// resumed, its rows getting those columns empty.
const OLDER_CSV_HEADERS: [(&str, usize); 2] = [
    (
        "epoch,learning_rate,reconstruction_error,pseudo_log_likelihood,train_log_likelihood,test_log_likelihood,log_z,log_z_method,seconds,objective",
        1,
    ),
    (
        "epoch,learning_rate,reconstruction_error,pseudo_log_likelihood,train_log_likelihood,test_log_likelihood,log_z,log_z_method,seconds",
        2,
    ),
];

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
                    "{},{},{},{},{},{},{},{},{},{},{}\n",
                    s.epoch,
                    s.learning_rate,
                    s.reconstruction_error,
                    s.pseudo_log_likelihood,
                    opt(s.train_log_likelihood),
                    opt(s.test_log_likelihood),
                    opt(s.log_z),
                    s.log_z_method.unwrap_or(""),
                    s.seconds,
                    opt(s.objective),
                    opt(s.ais_ess.filter(|x| x.is_finite()))
                ));
                write_bytes_atomic(path, self.csv.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if self.checkpoint_every > 0 && s.epoch.is_multiple_of(self.checkpoint_every) {
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
    params: &CdParams,
    data: &str,
) -> anyhow::Result<()> {
    let file = checkpoint_file(state, params, data)?;
    write_rbm(path, &file).with_context(|| format!("writing model {}", path.display()))
}

/// The samplers of `--negative-sampler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NegativeSamplerArg {
    /// Block Gibbs (the default).
    Gibbs,
    /// Gibbs-with-Gradients on the visible units.
    Gwg,
    /// Discrete Metropolis-adjusted Langevin on the visible units.
    Dmala,
}

/// `--negative-sampler` with `--step-size` (None: not given); refuses a step size without
/// dmala and one that is not a finite positive number.
pub(super) fn negative_sampler(
    args: &TrainRbmArgs,
) -> anyhow::Result<Option<Option<GradientSampler>>> {
    if let Some(alpha) = args.step_size {
        if args.negative_sampler != Some(NegativeSamplerArg::Dmala) {
            return Err(usage(
                "--step-size applies to --negative-sampler dmala only".to_string(),
            ));
        }
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(usage(format!(
                "--step-size must be a finite number > 0, got {alpha}"
            )));
        }
    }
    Ok(args.negative_sampler.map(|s| match s {
        NegativeSamplerArg::Gibbs => None,
        NegativeSamplerArg::Gwg => Some(GradientSampler::Gwg),
        NegativeSamplerArg::Dmala => Some(GradientSampler::Dmala {
            step_size: args.step_size.unwrap_or(DEFAULT_STEP_SIZE),
        }),
    }))
}

/// The objective asked for by `--objective` and `--persistent` (`None`: neither given), and
/// whether persistent chains are; refuses flags that contradict each other or do not apply.
pub(super) fn objective_flags(args: &TrainRbmArgs) -> anyhow::Result<(Option<Objective>, bool)> {
    let Some(arg) = args.objective else {
        return Ok((None, args.persistent));
    };
    let name = arg
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string());
    let (objective, persistent) = match arg {
        ObjectiveArg::Cd => (Objective::ContrastiveDivergence, false),
        ObjectiveArg::Pcd => (Objective::ContrastiveDivergence, true),
        ObjectiveArg::PseudoLikelihood => (Objective::PseudoLikelihood, false),
        ObjectiveArg::RatioMatching => (Objective::RatioMatching, false),
        ObjectiveArg::Nce => (Objective::NoiseContrastive, false),
        ObjectiveArg::ScoreMatching | ObjectiveArg::DenoisingScoreMatching => {
            return Err(usage(format!(
                "--objective {name} is for real-valued data: add --visible gaussian"
            )));
        }
    };
    if args.persistent && !persistent {
        return Err(usage(format!(
            "--objective {name} and --persistent contradict each other: --persistent means \
             --objective pcd"
        )));
    }
    if objective != Objective::ContrastiveDivergence {
        for (flag, given) in [
            ("--cd-k", args.cd_k.is_some()),
            ("--chains", args.chains.is_some()),
        ] {
            if given {
                return Err(usage(format!(
                    "{flag} does not apply to --objective {name} (it sets the Markov chains of \
                     contrastive divergence; {name} uses none)"
                )));
            }
        }
    }
    Ok((Some(objective), persistent))
}

fn usage(msg: String) -> anyhow::Error {
    super::UsageError(msg).into()
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
    let header = lines.next();
    let missing = OLDER_CSV_HEADERS
        .iter()
        .find(|(old, _)| header == Some(*old))
        .map_or(0, |&(_, missing)| missing);
    if header != Some(CSV_HEADER.trim_end()) && missing == 0 {
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
            out.push_str(&",".repeat(missing));
            out.push('\n');
        }
    }
    Ok(out)
}

pub fn run(args: &TrainRbmArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if let Some(labels) = &args.labels {
        if args.visible == Some(VisibleArg::Gaussian) {
            return Err(super::UsageError(
                "--labels trains binary RBMs per class; --visible gaussian is not supported with it"
                    .into(),
            )
            .into());
        }
        return super::train_classes::run(args, labels, global);
    }
    if args.visible == Some(VisibleArg::Gaussian) {
        return super::gaussian::train(args, global);
    }
    super::gaussian::refuse_gaussian_flags(args)?;
    // Every output is checked before the data are read and the training runs. The model and
    // the log are written during the run (checkpoints); the filter image with the result.
    let mut outputs = Outputs::new();
    outputs.declare("--output", Some(&args.output), SAFETENSORS, "the model")?;
    outputs.declare("--log", args.log.as_deref(), CSV, "the log (CSV)")?;
    outputs.declare(
        "--filters",
        args.filters.as_deref(),
        PNG,
        "the filter image",
    )?;
    // --threshold binarizes .csv/.npy/IDX files; with a .txt test set beside such training data
    // (or the other way round) it applies to the file that needs it. Given for .txt files
    // only, the library refuses it.
    let uses_threshold = |p: &Path| {
        ebm::io::datasets::dataset_format(p)
            .is_some_and(|(f, _)| f != ebm::io::datasets::DatasetFormat::Txt)
    };
    let any_uses_threshold =
        uses_threshold(&args.data) || args.test.as_deref().is_some_and(uses_threshold);
    let threshold_for = |p: &Path| {
        if any_uses_threshold && !uses_threshold(p) {
            None
        } else {
            args.threshold
        }
    };
    let train = read_dataset(&args.data, threshold_for(&args.data))
        .with_context(|| format!("reading data {}", args.data.display()))?;
    let test = match &args.test {
        Some(p) => Some(
            read_dataset(p, threshold_for(p))
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
    let resume = match &args.resume {
        Some(p) => Some(
            read_rbm(p)
                .map_err(anyhow::Error::from)
                .and_then(|file| Ok(Checkpoint::from_file(&file)?))
                .with_context(|| format!("--resume {}", p.display()))?,
        ),
        None => None,
    };
    let ais = AisParams {
        betas: args.ais_betas,
        runs: args.ais_runs,
        seed: global.seed,
    };
    let evaluation = match args.eval {
        EvalArg::None => None,
        EvalArg::Auto => Some(EvaluateMethodArg::Auto.evaluation(ais)),
        EvalArg::Exact => Some(EvaluateMethodArg::Exact.evaluation(ais)),
        EvalArg::Ais => Some(EvaluateMethodArg::Ais.evaluation(ais)),
    };
    let (objective, persistent) = objective_flags(args)?;
    let requested = Requested {
        hidden: args.hidden,
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        schedule: args.lr_schedule.map(|s| match s {
            ScheduleArg::Constant => LrSchedule::Constant,
            ScheduleArg::Linear => LrSchedule::Linear,
        }),
        objective,
        cd_k: args.cd_k,
        persistent,
        chains: args.chains,
        negative_sampler: negative_sampler(args)?,
        nce_ratio: args.nce_ratio,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
    };
    let base = CdParams {
        init_std: args.init_std,
        monitor_rows: args.monitor_rows,
        eval_every: args.eval_every,
        evaluation,
        seed: global.seed,
        ..CdParams::default()
    };
    let params = requested
        .resolve(resume.as_ref(), &base)
        .with_context(|| format!("resuming the checkpoint {ckpt}"))?;
    if args.nce_ratio.is_some() && params.objective != Objective::NoiseContrastive {
        return Err(usage(format!(
            "--nce-ratio does not apply to --objective {} (it sets the noise samples of \
             --objective nce)",
            params.objective.name(params.persistent)
        )));
    }
    params.validate()?;
    let resume = resume.map(|c| c.state);
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
    let data_name = args.data.to_string_lossy();
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
        params: &params,
        data: &data_name,
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
    if let (Some(_), Some(side)) = (&args.filters, side)
        && (!interrupted || outcome.evaluation_interrupted)
    {
        let (nv, nh) = (outcome.state.model.n_visible, outcome.state.model.n_hidden);
        let w = &outcome.state.model.weights;
        let tiles: Vec<Vec<f64>> = (0..nh)
            .map(|j| (0..nv).map(|i| w[i * nh + j] as f64).collect())
            .collect();
        let (tw, th, luma) = tile_image(&tiles, side, true);
        outputs.stage_bytes("--filters", &encode_grey_png(tw, th, &luma)?)?;
    }
    let runs = outcome.history.len();
    let last = outcome.history.last();
    let report = Report {
        output: args.output.to_string_lossy().into_owned(),
        n_visible: train.cols(),
        n_hidden: params.hidden,
        train_examples: train.rows(),
        test_examples: test.as_ref().map(|t| t.rows()),
        objective: params.objective.name(params.persistent),
        negative_sampler: params
            .persistent
            .then(|| params.negative_sampler.map_or("gibbs", |s| s.name())),
        epochs: outcome.state.epoch,
        epochs_total: params.epochs,
        epochs_run: runs,
        interrupted,
        stopped_as_asked: stopped,
        train_log_likelihood: last.and_then(|s| s.train_log_likelihood),
        test_log_likelihood: last.and_then(|s| s.test_log_likelihood),
        log_z: last.and_then(|s| s.log_z),
        log_z_method: last.and_then(|s| s.log_z_method),
        nce_log_z: (params.objective == Objective::NoiseContrastive)
            .then(|| outcome.state.own_parameters.first().map(|&c| c as f64))
            .flatten(),
        log_z_low: last.and_then(|s| s.log_z_low).filter(|x| x.is_finite()),
        log_z_high: last.and_then(|s| s.log_z_high),
        ais_ess: last.and_then(|s| s.ais_ess).filter(|x| x.is_finite()),
        ais_unreliable: last.and_then(|s| s.ais_unreliable),
        reconstruction_error: last.map_or(f64::NAN, |s| s.reconstruction_error),
        pseudo_log_likelihood: last.map_or(f64::NAN, |s| s.pseudo_log_likelihood),
        seconds: outcome.train_seconds,
        seconds_per_epoch: outcome.train_seconds / runs.max(1) as f64,
        seed: global.seed,
    };
    if report.ais_unreliable == Some(true) {
        // On stderr in every mode: the reported likelihoods rest on this ln Z.
        let ess = report.ais_ess.unwrap_or(f64::NAN);
        eprint_line(&format!(
            "warning: the AIS effective sample size of the last evaluation is {ess:.1} of {} \
             runs, below {:.0}: ln Z is probably too low, so the reported log-likelihoods too \
             high; raise --ais-betas (the number of annealing steps)",
            args.ais_runs,
            ebm::infer::ais::ess_threshold(args.ais_runs)
        ));
    }
    if global.json {
        print_json(&report)?;
    }
    if interrupted {
        // The model (and the filters of a finished training) are kept: Ctrl-C came after them.
        outputs.commit()?;
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
    outputs.commit()
}
