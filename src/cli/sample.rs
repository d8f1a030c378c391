//! `ebm sample`: Markov-chain sampling of Ising lattices and UAI models, with observables and
//! autocorrelation-aware error bars.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::lattice::LatticeArgs;
use super::output::{CSV, IMAGE, Outputs, print_json, print_stdout, say};
use super::ui::{BarObserver, progress_enabled};
use super::{GlobalArgs, UsageError};
use ebm::image::BinaryImage;
use ebm::io::LoadedModel;
use ebm::io::images::{encode_binary_image, format_for_path};
use ebm::model::EnergyModel;
use ebm::sample::gradient::{self, GradientParams, GradientSampler, sample_model_gradient};
use ebm::sample::stats::{self, ValueWithStderr};
use ebm::sample::{
    LatticeParams, LocalRule, MAX_PARAMETER, ModelParams, SamplerKind, Start, lattice_observables,
    sample_factor_graph, sample_lattice,
};

const EXAMPLES: &str = "Examples:
  ebm sample ising --width 64 --height 64 --beta 0.4406868 --sampler wolff --sweeps 20000 --image critical.png
  ebm sample ising --width 256 --height 256 --beta 0.6 --sampler metropolis --sweeps 2000 --burn-in 500 --json
  ebm sample --model model.uai --sampler gibbs --sweeps 100000 --marginals
  ebm sample --model model.uai --sampler dmala --step-size 0.2 --chains 8 --sweeps 10000 --marginals
  ebm sample --model rbm.safetensors --chains 64 --steps 1000 --image samples.png --output samples.txt";

/// `ebm sample ising ...` or `ebm sample --model FILE`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_help = EXAMPLES)]
pub struct SampleArgs {
    #[command(subcommand)]
    pub target: Option<SampleTarget>,
    /// Model to sample: a UAI file (.uai), or an RBM (.safetensors). UAI tables may contain
    /// zeros (hard constraints): a start of zero probability is repaired greedily, and
    /// variables tied by pairwise equalities or inequalities (tables 1 0 0 1, 0 1 1 0) are
    /// moved together as blocks. Variables that other hard constraints pin are listed as
    /// `frozen_variables` with a warning; a chain that never moves is refused. See
    /// docs/sampling.md.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Print the estimated marginals P(x_i = 1) with their standard errors (UAI models).
    #[arg(long)]
    pub marginals: bool,
    /// Number of chains run in parallel: RBMs [default: 100], and UAI models with
    /// --sampler gwg|dula|dmala [default: 1].
    #[arg(long)]
    pub chains: Option<usize>,
    /// RBM only: block-Gibbs steps per chain [default: 1000].
    #[arg(long)]
    pub steps: Option<usize>,
    /// RBM only: file the final visible states are written to, as a dataset.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// UAI only: evidence file (.evid); the model conditioned on it is sampled, and observed
    /// variables report their value as marginal (stderr 0).
    #[arg(long, value_name = "FILE")]
    pub evidence: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SampleTarget {
    /// A square-lattice Ising model: E = -J sum_<ij> s_i s_j - h sum_i s_i.
    #[command(after_help = EXAMPLES)]
    Ising(IsingArgs),
}

/// Lattice shape and couplings, and the chain.
#[derive(Debug, Args)]
pub struct IsingArgs {
    #[command(flatten)]
    pub lattice: LatticeArgs,
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Number of chains run in parallel, with --sampler gwg, dula or dmala: one random stream
    /// each, the same output for any --threads; observables and error bars combine all chains
    /// [default: 1].
    #[arg(long)]
    pub chains: Option<usize>,
}

/// Settings of the chain, shared by the lattice and model forms. The numbers are options so
/// that a flag given to a form it does not apply to (an RBM) is refused, not ignored; the
/// defaults are filled in by [`ChainArgs::settings`].
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// Inverse temperature beta (p ∝ exp(-beta E)), at most 1e50; the critical point of the
    /// square lattice with J = 1, h = 0 is 0.4406868 [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f64>,
    /// Sampler: gibbs, metropolis (any model), wolff, swendsen-wang (lattices with J >= 0), or
    /// the gradient samplers gwg (Gibbs-with-Gradients), dula, dmala (discrete Langevin,
    /// without and with Metropolis correction; lattices, UAI models and RBMs); langevin, mala or
    /// gibbs for Gaussian RBMs (real visible units) [default: metropolis for lattices, gibbs for
    /// models, block Gibbs for RBMs].
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// Step size of the Langevin samplers. Binary models, --sampler dula and dmala: alpha, each
    /// bit flips with probability sigmoid(d_i / 2 - 1 / (2 alpha)) [default: 0.2]. Gaussian
    /// RBMs, --sampler langevin and mala: epsilon, v' = v - epsilon grad F(v) + sqrt(2 epsilon)
    /// xi [default: 0.01].
    #[arg(long, allow_negative_numbers = true)]
    pub step_size: Option<f64>,
    /// Sweeps recorded (for wolff: cluster updates) [default: 1000].
    #[arg(long)]
    pub sweeps: Option<u64>,
    /// Sweeps discarded before recording [default: 100].
    #[arg(long)]
    pub burn_in: Option<u64>,
    /// Initial configuration: random (hot) or up (all +1, cold) [default: random].
    #[arg(long, value_enum)]
    pub start: Option<StartArg>,
    /// Write the final configuration as an image (PNG or PBM by extension; +1 is white).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Write the energy and magnetisation per spin after every sweep as CSV.
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

/// [`ChainArgs`] with the defaults filled in.
#[derive(Debug, Clone, Copy)]
struct ChainSettings {
    beta: f64,
    sweeps: u64,
    burn_in: u64,
    start: Start,
}

impl ChainArgs {
    fn settings(&self) -> ChainSettings {
        ChainSettings {
            beta: self.beta.unwrap_or(1.0),
            sweeps: self.sweeps.unwrap_or(LatticeParams::DEFAULT_SWEEPS),
            burn_in: self.burn_in.unwrap_or(LatticeParams::DEFAULT_BURN_IN),
            start: self.start.unwrap_or(StartArg::Random).start(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    Gibbs,
    Metropolis,
    Wolff,
    SwendsenWang,
    /// Unadjusted Langevin (Gaussian RBMs).
    Langevin,
    /// Metropolis-adjusted Langevin (Gaussian RBMs).
    Mala,
    /// Gibbs-with-Gradients (sample::gradient).
    Gwg,
    /// Discrete unadjusted Langevin (biased; see docs/sampling.md).
    Dula,
    /// Discrete Metropolis-adjusted Langevin.
    Dmala,
}

impl SamplerArg {
    fn kind(self, step_size: Option<f64>) -> SamplerKind {
        match self {
            SamplerArg::Gibbs => SamplerKind::Gibbs,
            SamplerArg::Metropolis => SamplerKind::Metropolis,
            SamplerArg::Wolff => SamplerKind::Wolff,
            SamplerArg::SwendsenWang => SamplerKind::SwendsenWang,
            SamplerArg::Langevin | SamplerArg::Mala => {
                unreachable!("Langevin samplers are refused before a lattice is sampled")
            }
            other => SamplerKind::Gradient(other.gradient(step_size).expect("gradient sampler")),
        }
    }
    /// The gradient sampler with its step size (default [`gradient::DEFAULT_STEP_SIZE`]), or
    /// None for the other samplers.
    pub fn gradient(self, step_size: Option<f64>) -> Option<GradientSampler> {
        let step_size = step_size.unwrap_or(gradient::DEFAULT_STEP_SIZE);
        match self {
            SamplerArg::Gwg => Some(GradientSampler::Gwg),
            SamplerArg::Dula => Some(GradientSampler::Dula { step_size }),
            SamplerArg::Dmala => Some(GradientSampler::Dmala { step_size }),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            SamplerArg::Gibbs => "gibbs",
            SamplerArg::Metropolis => "metropolis",
            SamplerArg::Wolff => "wolff",
            SamplerArg::SwendsenWang => "swendsen-wang",
            SamplerArg::Langevin => "langevin",
            SamplerArg::Mala => "mala",
            SamplerArg::Gwg => "gwg",
            SamplerArg::Dula => "dula",
            SamplerArg::Dmala => "dmala",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartArg {
    Random,
    Up,
}

impl StartArg {
    fn start(self) -> Start {
        match self {
            StartArg::Random => Start::Random,
            StartArg::Up => Start::Up,
        }
    }
}

/// A finite number or JSON null.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn stderr_of(e: &ValueWithStderr) -> Option<f64> {
    e.stderr.and_then(finite)
}

/// Refuses a --flag whose magnitude exceeds [`MAX_PARAMETER`] or is not finite.
fn check_magnitude(flag: &str, value: f64) -> anyhow::Result<()> {
    if !(value.is_finite() && value.abs() <= MAX_PARAMETER) {
        return Err(UsageError(format!(
            "{flag} must be a finite number of magnitude at most {MAX_PARAMETER:e}, got {value:e} \
             (larger values overflow the energies and their fluctuations)"
        ))
        .into());
    }
    Ok(())
}

/// Refuses --step-size without --sampler dula, dmala, langevin or mala, and a step size that is not a finite
/// positive number.
pub fn check_step_size(chain: &ChainArgs) -> anyhow::Result<()> {
    let Some(alpha) = chain.step_size else {
        return Ok(());
    };
    if !matches!(
        chain.sampler,
        Some(SamplerArg::Dula | SamplerArg::Dmala | SamplerArg::Langevin | SamplerArg::Mala)
    ) {
        return Err(UsageError(format!(
            "--step-size applies to --sampler dula and dmala (binary models) and langevin and \
             mala (Gaussian RBMs) only, not to --sampler {}",
            chain.sampler.map_or("(default)", |s| s.name())
        ))
        .into());
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(UsageError(format!(
            "--step-size must be a finite number > 0, got {alpha}"
        ))
        .into());
    }
    Ok(())
}

fn check_chain_args(chain: &ChainArgs, settings: &ChainSettings) -> anyhow::Result<()> {
    check_magnitude("--beta", settings.beta)?;
    if settings.beta < 0.0 {
        return Err(UsageError(format!("--beta must be >= 0, got {}", settings.beta)).into());
    }
    if settings.sweeps == 0 {
        return Err(UsageError("--sweeps must be at least 1".into()).into());
    }
    check_step_size(chain)?;
    if let Some(path) = &chain.image {
        format_for_path(path).with_context(|| format!("--image {}", path.display()))?;
    }
    Ok(())
}

pub fn run(args: &SampleArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    match (&args.target, &args.model) {
        (Some(SampleTarget::Ising(ising)), _) => run_ising(ising, global),
        (None, Some(model)) => run_model(model, args, global),
        (None, None) => Err(UsageError(
            "say what to sample: `ebm sample ising --width W --height H ...` or \
             `ebm sample --model FILE.uai`"
                .into(),
        )
        .into()),
    }
}

/// What `ebm sample ising --json` prints.
#[derive(Debug, Serialize)]
struct IsingReport {
    model: &'static str,
    width: usize,
    height: usize,
    boundary: &'static str,
    coupling: f64,
    field: f64,
    beta: f64,
    sampler: &'static str,
    /// Step size alpha of dula and dmala (null for the other samplers).
    step_size: Option<f64>,
    /// Chains run in parallel (--chains, gwg, dula and dmala; 1 for the other samplers).
    chains: usize,
    /// True when the parallel checkerboard ran (bipartite lattice, gibbs or metropolis).
    checkerboard: bool,
    sweeps: u64,
    burn_in: u64,
    seed: u64,
    threads: usize,
    energy_per_spin: Option<f64>,
    energy_per_spin_stderr: Option<f64>,
    abs_magnetization_per_spin: Option<f64>,
    abs_magnetization_per_spin_stderr: Option<f64>,
    magnetization_per_spin: Option<f64>,
    magnetization_per_spin_stderr: Option<f64>,
    specific_heat: Option<f64>,
    specific_heat_stderr: Option<f64>,
    susceptibility: Option<f64>,
    susceptibility_stderr: Option<f64>,
    binder_cumulant: Option<f64>,
    binder_cumulant_stderr: Option<f64>,
    /// In sweeps (cluster updates for wolff).
    tau_int_energy: Option<f64>,
    tau_int_abs_magnetization: Option<f64>,
    /// False when the run is shorter than 50 tau_int: error bars are then too small.
    tau_int_reliable: bool,
    error_method: &'static str,
    /// Fraction of single-spin updates that flipped the spin (local samplers), or of proposals
    /// accepted (gwg, dula, dmala).
    acceptance_rate: Option<f64>,
    /// Spins flipped per proposal (gwg, dula, dmala only).
    mean_bits_flipped: Option<f64>,
    /// Proposals made, burn-in included (gwg: N per sweep; dula, dmala: one per sweep).
    proposals: Option<u64>,
    /// Mean number of spins flipped per cluster update (cluster samplers only).
    mean_cluster_flips: Option<f64>,
    spin_updates: Option<u64>,
    cluster_updates: Option<u64>,
    spins_flipped: u64,
    seconds: f64,
    /// Attempted single-spin updates per second (local samplers) or spins flipped per second
    /// (cluster and gradient samplers); burn-in included.
    flips_per_second: Option<f64>,
    image: Option<String>,
    trace: Option<String>,
}

const ERROR_METHOD: &str = "means: sqrt(2 tau_int var / n) with tau_int from Sokal's automatic window (c = 6); specific heat, susceptibility, Binder cumulant: jackknife over blocks of >= 6 tau_int sweeps";

fn run_ising(args: &IsingArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let chain = &args.chain;
    let settings = chain.settings();
    check_chain_args(chain, &settings)?;
    check_magnitude("--coupling", args.lattice.coupling)?;
    check_magnitude("--field", args.lattice.field)?;
    let mut outputs = Outputs::new();
    outputs.declare(
        "--image",
        chain.image.as_deref(),
        IMAGE,
        "the final configuration",
    )?;
    outputs.declare("--trace", chain.trace.as_deref(), CSV, "the trace (CSV)")?;
    let sampler = chain.sampler.unwrap_or(SamplerArg::Metropolis);
    if matches!(sampler, SamplerArg::Langevin | SamplerArg::Mala) {
        return Err(UsageError(format!(
            "--sampler {} moves real-valued units: it samples Gaussian RBMs (--model)",
            sampler.name()
        ))
        .into());
    }
    if args.chains.is_some() && sampler.gradient(chain.step_size).is_none() {
        return Err(UsageError(format!(
            "--chains applies to lattices with --sampler gwg, dula or dmala, not to --sampler {}",
            sampler.name()
        ))
        .into());
    }
    if args.chains == Some(0) {
        return Err(UsageError("--chains must be at least 1, got 0".into()).into());
    }
    let shape = &args.lattice;
    let lattice = shape.lattice()?;
    let params = LatticeParams {
        beta: settings.beta,
        sampler: sampler.kind(chain.step_size),
        sweeps: settings.sweeps,
        burn_in: settings.burn_in,
        seed: global.seed,
        start: settings.start,
        // The trace lists the burn-in sweeps too; otherwise only recorded sweeps are stored.
        record_burn_in: chain.trace.is_some(),
    };
    let mut bar = BarObserver::new(
        progress_enabled(global),
        params.burn_in.saturating_add(params.sweeps),
        "sampling",
        "E/N",
    );
    let started = Instant::now();
    let (run, obs) = match args.chains {
        Some(chains) => {
            let r = gradient::sample_lattice_gradient(&lattice, &params, chains, &mut bar)?;
            let obs = r.observables(settings.beta);
            (r.run, obs)
        }
        None => {
            let run = sample_lattice(&lattice, &params, &mut bar)?;
            let obs = lattice_observables(&run, settings.beta);
            (run, obs)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    bar.finish();

    if let Some(path) = &chain.image {
        let image = BinaryImage::new(shape.width, shape.height, run.state.clone())?;
        outputs.stage_bytes(
            "--image",
            &encode_binary_image(&image, format_for_path(path)?)?,
        )?;
    }
    if chain.trace.is_some() {
        let n = run.sites as f64;
        outputs.stage("--trace", |w| {
            writeln!(w, "sweep,recorded,energy_per_spin,magnetization_per_spin")?;
            for (t, (e, m)) in run.energies.iter().zip(&run.magnetizations).enumerate() {
                let recorded = (t >= run.burn_in) as u8;
                writeln!(w, "{},{recorded},{},{}", t + 1, e / n, m / n)?;
            }
            Ok(())
        })?;
    }

    let local = sampler.kind(chain.step_size).local_rule().is_some();
    let proposals = run.proposals;
    let rate = |count: u64| (seconds > 0.0).then(|| count as f64 / seconds);
    let report = IsingReport {
        model: "ising",
        width: shape.width,
        height: shape.height,
        boundary: shape.boundary.name(),
        coupling: shape.coupling,
        field: shape.field,
        beta: settings.beta,
        sampler: sampler.name(),
        step_size: sampler
            .gradient(chain.step_size)
            .and_then(GradientSampler::step_size),
        chains: args.chains.unwrap_or(1),
        checkerboard: run.checkerboard,
        sweeps: settings.sweeps,
        burn_in: settings.burn_in,
        seed: global.seed,
        threads: rayon::current_num_threads(),
        energy_per_spin: finite(obs.energy_per_spin.value),
        energy_per_spin_stderr: stderr_of(&obs.energy_per_spin),
        abs_magnetization_per_spin: finite(obs.abs_magnetization_per_spin.value),
        abs_magnetization_per_spin_stderr: stderr_of(&obs.abs_magnetization_per_spin),
        magnetization_per_spin: finite(obs.magnetization_per_spin.value),
        magnetization_per_spin_stderr: stderr_of(&obs.magnetization_per_spin),
        specific_heat: finite(obs.specific_heat.value),
        specific_heat_stderr: stderr_of(&obs.specific_heat),
        susceptibility: finite(obs.susceptibility.value),
        susceptibility_stderr: stderr_of(&obs.susceptibility),
        binder_cumulant: finite(obs.binder_cumulant.value),
        binder_cumulant_stderr: stderr_of(&obs.binder_cumulant),
        tau_int_energy: finite(obs.tau_int_energy.tau),
        tau_int_abs_magnetization: finite(obs.tau_int_abs_magnetization.tau),
        tau_int_reliable: obs.tau_int_energy.reliable && obs.tau_int_abs_magnetization.reliable,
        error_method: ERROR_METHOD,
        acceptance_rate: match proposals {
            Some(c) => Some(c.acceptance_rate()),
            None => local.then(|| run.flips as f64 / run.updates as f64),
        },
        mean_bits_flipped: proposals.map(|c| c.mean_bits_flipped()),
        proposals: proposals.map(|c| c.proposals),
        mean_cluster_flips: (!local && proposals.is_none())
            .then(|| run.flips as f64 / run.updates as f64),
        spin_updates: local.then_some(run.updates),
        cluster_updates: (!local && proposals.is_none()).then_some(run.updates),
        spins_flipped: run.flips,
        seconds,
        flips_per_second: if local {
            rate(run.updates)
        } else {
            rate(run.flips)
        },
        image: chain.image.as_ref().map(|p| p.display().to_string()),
        trace: chain.trace.as_ref().map(|p| p.display().to_string()),
    };
    if global.json {
        print_json(&report)?;
        return outputs.commit();
    }
    let pm = |v: Option<f64>, e: Option<f64>| match (v, e) {
        (Some(v), Some(e)) => format!("{v:.6} ± {e:.6}"),
        (Some(v), None) => format!("{v:.6} (no error bar: too few sweeps)"),
        _ => "undefined".to_string(),
    };
    let lines = [
        format!(
            "{} x {} {} Ising, J = {}, h = {}, beta = {}: {} {} sweeps after {} burn-in (seed {}{})",
            shape.width,
            shape.height,
            report.boundary,
            shape.coupling,
            shape.field,
            settings.beta,
            settings.sweeps,
            sampler.name(),
            settings.burn_in,
            global.seed,
            if run.checkerboard {
                ", checkerboard"
            } else {
                ""
            }
        ),
        format!(
            "  energy per spin      {}",
            pm(report.energy_per_spin, report.energy_per_spin_stderr)
        ),
        format!(
            "  |m| per spin         {}",
            pm(
                report.abs_magnetization_per_spin,
                report.abs_magnetization_per_spin_stderr
            )
        ),
        format!(
            "  specific heat        {}",
            pm(report.specific_heat, report.specific_heat_stderr)
        ),
        format!(
            "  susceptibility       {}",
            pm(report.susceptibility, report.susceptibility_stderr)
        ),
        format!(
            "  Binder cumulant      {}",
            pm(report.binder_cumulant, report.binder_cumulant_stderr)
        ),
        format!(
            "  tau_int(E) = {:.2}, tau_int(|m|) = {:.2} {}{}",
            obs.tau_int_energy.tau,
            obs.tau_int_abs_magnetization.tau,
            if local {
                "sweeps"
            } else if sampler == SamplerArg::Wolff {
                "cluster updates"
            } else if proposals.is_some() {
                "sweeps"
            } else {
                "updates"
            },
            if report.tau_int_reliable {
                ""
            } else {
                " (run shorter than 50 tau_int: error bars are too small; run longer)"
            }
        ),
        match (report.acceptance_rate, report.mean_cluster_flips) {
            (Some(a), _) if proposals.is_some() => format!(
                "  acceptance {:.4}, {:.3} spins flipped per proposal, {:.3e} flips/s, {:.2} s",
                a,
                report.mean_bits_flipped.unwrap_or(0.0),
                report.flips_per_second.unwrap_or(0.0),
                seconds
            ),
            (Some(a), _) => format!(
                "  acceptance {:.4}, {:.3e} spin updates/s, {:.2} s",
                a,
                report.flips_per_second.unwrap_or(0.0),
                seconds
            ),
            (_, Some(c)) => format!(
                "  {c:.1} spins flipped per update, {:.3e} flips/s, {:.2} s",
                report.flips_per_second.unwrap_or(0.0),
                seconds
            ),
            _ => String::new(),
        },
    ];
    for line in &lines {
        say(global, line);
    }
    outputs.commit()
}

/// What `ebm sample --model FILE.uai --json` prints.
#[derive(Debug, Serialize)]
struct ModelReport {
    model: String,
    variables: usize,
    factors: usize,
    beta: f64,
    sampler: &'static str,
    /// Step size alpha of dula and dmala (null for the other samplers).
    step_size: Option<f64>,
    /// Chains run in parallel (gwg, dula, dmala; 1 for gibbs and metropolis).
    chains: usize,
    sweeps: u64,
    burn_in: u64,
    seed: u64,
    /// Mean energy E = -sum_f ln phi_f over the recorded sweeps (gwg, dula, dmala: of the
    /// mean over the chains after each sweep).
    energy: Option<f64>,
    energy_stderr: Option<f64>,
    tau_int_energy: Option<f64>,
    tau_int_reliable: bool,
    /// Estimated P(x_i = 1) (state 1 of variable i), averaged over the recorded sweeps.
    marginals: Vec<f64>,
    /// Batch-means standard errors of the marginals (32 batches); null with fewer sweeps, and
    /// null for a frozen variable.
    marginals_stderr: Option<Vec<Option<f64>>>,
    /// Variables that never changed over the recorded sweeps (their marginals are not
    /// estimates unless the model forces those values).
    frozen_variables: Vec<usize>,
    /// Set when some variable is frozen.
    warning: Option<String>,
    /// Blocks of variables tied by pairwise hard constraints, each moved as one.
    tied_blocks: usize,
    /// Accepted moves over attempted moves (a block move counts once; a gwg, dula or dmala
    /// proposal counts once however many spins it flips).
    acceptance_rate: f64,
    /// Spins flipped per proposal (gwg, dula, dmala only).
    mean_bits_flipped: Option<f64>,
    /// Moves attempted: single-variable updates plus block moves, burn-in included.
    spin_updates: u64,
    seconds: f64,
    flips_per_second: Option<f64>,
    trace: Option<String>,
}

/// The warning for variables that never changed over the recorded sweeps, if any.
fn frozen_warning(frozen: &[usize], sweeps: u64) -> Option<String> {
    const SHOWN: usize = 20;
    if frozen.is_empty() {
        return None;
    }
    let mut list: Vec<String> = frozen.iter().take(SHOWN).map(|v| v.to_string()).collect();
    if frozen.len() > SHOWN {
        list.push(format!("... ({} in all)", frozen.len()));
    }
    Some(format!(
        "{} variable(s) never changed over the {sweeps} recorded sweeps: {}. Their marginals \
         are the value they kept, not estimates, unless the model forces that value: hard \
         constraints (zero table entries) that the sampler's moves cannot cross pin them, or \
         the run is too short",
        frozen.len(),
        list.join(", ")
    ))
}

fn run_model(path: &Path, args: &SampleArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // Flag values are checked before the file is read (a bad value is the first thing to say).
    let chain = &args.chain;
    let settings = chain.settings();
    check_chain_args(chain, &settings)?;
    // The file's content decides its kind, not its name.
    let graph = match ebm::io::open_model(path)
        .with_context(|| format!("reading model {}", path.display()))?
    {
        LoadedModel::Factors(graph) => graph,
        LoadedModel::Composite(c) => return super::compose::sample(path, &c, args, global),
        LoadedModel::GaussianRbm(file) => {
            return super::gaussian::sample(path, &file, args, global);
        }
        LoadedModel::Rbm(file) => {
            for (flag, set) in [
                ("--marginals", args.marginals),
                ("--evidence", args.evidence.is_some()),
                ("--trace", args.chain.trace.is_some()),
                (
                    "--sampler",
                    matches!(
                        args.chain.sampler,
                        Some(
                            SamplerArg::Gibbs
                                | SamplerArg::Metropolis
                                | SamplerArg::Wolff
                                | SamplerArg::SwendsenWang
                                | SamplerArg::Langevin
                                | SamplerArg::Mala
                        )
                    ),
                ),
                ("--sweeps", args.chain.sweeps.is_some()),
                ("--burn-in", args.chain.burn_in.is_some()),
                ("--beta", args.chain.beta.is_some()),
                ("--start", args.chain.start.is_some()),
            ] {
                if set {
                    return Err(UsageError(format!(
                        "{flag} does not apply to RBMs (they are sampled by block Gibbs or \
                         --sampler gwg|dula|dmala on the visible units; use --chains, --steps, \
                         --image, --output)"
                    ))
                    .into());
                }
            }
            return super::sample_rbm::run(
                path,
                &file.rbm,
                args.chains.unwrap_or(super::sample_rbm::DEFAULT_CHAINS),
                args.steps.unwrap_or(super::sample_rbm::DEFAULT_STEPS),
                args.chain.image.as_deref(),
                args.output.as_deref(),
                args.chain
                    .sampler
                    .and_then(|s| s.gradient(args.chain.step_size)),
                global,
            );
        }
    };
    let sampler = chain.sampler.unwrap_or(SamplerArg::Gibbs);
    let gradient_sampler = sampler.gradient(chain.step_size);
    let rule = match sampler {
        SamplerArg::Gibbs => LocalRule::Gibbs,
        SamplerArg::Metropolis => LocalRule::Metropolis,
        other @ (SamplerArg::Langevin | SamplerArg::Mala) => {
            return Err(UsageError(format!(
                "--sampler {} moves real-valued units: it samples Gaussian RBMs, not UAI models",
                other.name()
            ))
            .into());
        }
        SamplerArg::Gwg | SamplerArg::Dula | SamplerArg::Dmala => LocalRule::Gibbs, // unused
        other => {
            return Err(UsageError(format!(
                "--sampler {} needs a ferromagnetic lattice: use `ebm sample ising`; \
                 UAI models take gibbs, metropolis, gwg, dula or dmala",
                other.name()
            ))
            .into());
        }
    };
    if chain.image.is_some() {
        return Err(UsageError(
            "--image draws lattices (`ebm sample ising`) and RBM visible states; a UAI model \
             has no image shape"
                .into(),
        )
        .into());
    }
    if args.chains.is_some() && gradient_sampler.is_none() {
        return Err(UsageError(
            "--chains applies to RBM models and to UAI models with --sampler gwg, dula or \
             dmala (gibbs and metropolis run one sequential chain)"
                .into(),
        )
        .into());
    }
    if args.chains == Some(0) {
        return Err(UsageError("--chains must be at least 1, got 0".into()).into());
    }
    for (flag, set) in [
        ("--steps", args.steps.is_some()),
        ("--output", args.output.is_some()),
    ] {
        if set {
            return Err(UsageError(format!("{flag} applies to RBM models only")).into());
        }
    }
    let mut outputs = Outputs::new();
    outputs.declare("--trace", chain.trace.as_deref(), CSV, "the trace (CSV)")?;
    let conditioned = ebm::infer::evidence::condition_on_file(&graph, args.evidence.as_deref())
        .with_context(|| format!("evidence for {}", path.display()))?;
    let graph = conditioned.graph.clone();
    let params = ModelParams {
        beta: settings.beta,
        rule,
        sweeps: settings.sweeps,
        burn_in: settings.burn_in,
        seed: global.seed,
        start: settings.start,
    };
    let mut bar = BarObserver::new(
        progress_enabled(global),
        params.burn_in.saturating_add(params.sweeps),
        "sampling",
        "E",
    );
    let started = Instant::now();
    let chains = args.chains.unwrap_or(1);
    let context = || format!("sampling {}", path.display());
    let (mut run, proposals) = match gradient_sampler {
        None => (
            sample_factor_graph(&graph, &params, &mut bar).with_context(context)?,
            None,
        ),
        Some(g) => {
            let gradient_params = GradientParams {
                beta: settings.beta,
                sampler: g,
                sweeps: settings.sweeps,
                burn_in: settings.burn_in,
                seed: global.seed,
                start: settings.start,
                chains,
            };
            let r = sample_model_gradient(&graph, &gradient_params, Some(&graph), &mut bar)
                .with_context(context)?;
            (r.run, Some(r.counts))
        }
    };
    run.marginals = conditioned.expand(&run.marginals, |v| v as f64);
    run.marginal_stderr = (run.marginal_stderr.as_deref()).map(|s| conditioned.expand(s, |_| 0.0));
    let seconds = started.elapsed().as_secs_f64();
    bar.finish();
    let (energy, tau) = stats::mean_with_error(&run.energies);
    if chain.trace.is_some() {
        outputs.stage("--trace", |w| {
            writeln!(w, "sweep,energy")?;
            for (t, e) in run.energies.iter().enumerate() {
                writeln!(w, "{},{e}", settings.burn_in + t as u64 + 1)?;
            }
            Ok(())
        })?;
    }
    let report = ModelReport {
        model: path.display().to_string(),
        variables: conditioned.evidence.num_vars(),
        factors: graph.factors().len(),
        beta: settings.beta,
        sampler: sampler.name(),
        step_size: gradient_sampler.and_then(GradientSampler::step_size),
        chains: if gradient_sampler.is_some() {
            chains
        } else {
            1
        },
        sweeps: settings.sweeps,
        burn_in: settings.burn_in,
        seed: global.seed,
        energy: finite(energy.value),
        energy_stderr: stderr_of(&energy),
        tau_int_energy: finite(tau.tau),
        tau_int_reliable: tau.reliable,
        marginals: run.marginals.clone(),
        marginals_stderr: run.marginal_stderr.as_ref().map(|se| {
            se.iter()
                .enumerate()
                .map(|(i, &e)| (!run.frozen.contains(&i)).then_some(e))
                .collect()
        }),
        frozen_variables: run.frozen.clone(),
        warning: frozen_warning(&run.frozen, settings.sweeps),
        tied_blocks: run.tied_blocks,
        acceptance_rate: run.flips as f64 / run.updates.max(1) as f64,
        mean_bits_flipped: proposals.map(|c| c.mean_bits_flipped()),
        spin_updates: run.updates,
        seconds,
        flips_per_second: (seconds > 0.0).then(|| run.updates as f64 / seconds),
        trace: chain.trace.as_ref().map(|p| p.display().to_string()),
    };
    debug_assert_eq!(graph.num_vars(), EnergyModel::num_vars(&graph));
    if global.json {
        print_json(&report)?;
        return outputs.commit();
    }
    say(
        global,
        &format!(
            "{}: {} variables, {} {} sweeps after {} burn-in at beta = {} (seed {}): \
             mean energy {}, tau_int(E) = {:.2} sweeps, acceptance {:.4}{}",
            report.model,
            report.variables,
            settings.sweeps,
            sampler.name(),
            settings.burn_in,
            settings.beta,
            global.seed,
            match (report.energy, report.energy_stderr) {
                (Some(v), Some(e)) => format!("{v:.6} ± {e:.6}"),
                (Some(v), None) => format!("{v:.6} (no error bar: too few sweeps)"),
                _ => "undefined".to_string(),
            },
            tau.tau,
            report.acceptance_rate,
            if report.tied_blocks > 0 {
                format!(
                    " ({} block(s) of tied variables moved together)",
                    report.tied_blocks
                )
            } else {
                String::new()
            }
        ),
    );
    if let Some(warning) = &report.warning {
        // Not silenced by --quiet: the figures above are not estimates for these variables.
        super::output::eprint_line(&format!("warning: {warning}"));
    }
    if args.marginals {
        let mut table = String::from("variable\tP(x=1)\tstderr\n");
        for (i, p) in run.marginals.iter().enumerate() {
            let se = match &report.marginals_stderr {
                Some(s) => s[i].map_or("frozen".to_string(), |e| format!("{e:.6}")),
                None => "-".to_string(),
            };
            table += &format!("{i}\t{p:.6}\t{se}\n");
        }
        print_stdout(table.as_bytes())?;
    }
    outputs.commit()
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use crate::cli::lattice::BoundaryArg;
    use clap::Parser;

    #[test]
    fn ising_flags_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "ebm",
            "sample",
            "ising",
            "--width",
            "8",
            "--height",
            "4",
            "--beta",
            "0.3",
            "--sampler",
            "swendsen-wang",
            "--field",
            "-0.5",
        ])
        .unwrap();
        let Command::Sample(args) = cli.command else {
            panic!("not sample")
        };
        let Some(SampleTarget::Ising(ising)) = args.target else {
            panic!("not ising")
        };
        assert_eq!(ising.lattice.width, 8);
        assert_eq!(ising.lattice.field, -0.5);
        assert_eq!(ising.chain.sampler, Some(SamplerArg::SwendsenWang));
        assert_eq!(ising.chain.settings().sweeps, LatticeParams::DEFAULT_SWEEPS);
        assert_eq!(ising.lattice.boundary, BoundaryArg::Periodic);
    }

    #[test]
    fn model_form_parses_and_refuses_unknown_samplers() {
        let cli =
            Cli::try_parse_from(["ebm", "sample", "--model", "a.uai", "--marginals"]).unwrap();
        let Command::Sample(args) = cli.command else {
            panic!("not sample")
        };
        assert!(args.marginals);
        assert!(args.target.is_none());
        assert!(
            Cli::try_parse_from(["ebm", "sample", "--model", "a.uai", "--sampler", "x"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["ebm", "sample", "ising", "--width", "4"]).is_err(),
            "--height is required"
        );
    }
}
