//! `ebm denoise`: MAP restoration of a noisy binary image (PRML section 8.3.3).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::GlobalArgs;
use super::output::{IMAGE, Outputs, PNG, print_json, say};
use super::ui::{BarObserver, progress_enabled};
use ebm::denoise::{DenoiseParams, denoise, runs_on_one_thread};
use ebm::infer::map::MapMethod;
use ebm::io::images::{
    DEFAULT_THRESHOLD, encode_binary_image, encode_grey_png, format_for_path, read_binary_image,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DenoiseMethodArg {
    /// Exact MAP by minimum s-t cut (needs --beta >= 0).
    Graphcut,
    /// Iterated conditional modes from the noisy image, checkerboard order.
    Icm,
    /// Simulated annealing (checkerboard heat bath), then an ICM quench.
    Anneal,
    /// Posterior sampling at temperature 1; each pixel's majority value.
    Gibbs,
}

impl From<DenoiseMethodArg> for MapMethod {
    fn from(m: DenoiseMethodArg) -> Self {
        match m {
            DenoiseMethodArg::Graphcut => MapMethod::GraphCut,
            DenoiseMethodArg::Icm => MapMethod::Icm,
            DenoiseMethodArg::Anneal => MapMethod::Anneal,
            DenoiseMethodArg::Gibbs => MapMethod::Gibbs,
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Energy (PRML 8.3.3), pixels +-1, 4-neighbours, open boundary:
  E(s; x) = h sum s_i - beta sum_<ij> s_i s_j - eta sum x_i s_i

Examples:
  ebm noise --input data/images/horse.png --flip 0.1 --output noisy.png --seed 1
  ebm denoise --input noisy.png --output restored.png --clean data/images/horse.png
  ebm denoise --input noisy.png --output icm.png --method icm --json
  ebm denoise --input noisy.png --output mode.png --method gibbs --sweeps 500 --marginals p.png"
)]
pub struct DenoiseArgs {
    /// Noisy image (PNG, PBM/PGM/PPM); grey levels >= --threshold are white (+1).
    #[arg(long)]
    pub input: PathBuf,
    /// Restored image, PNG or PBM by extension; written only when complete.
    #[arg(long)]
    pub output: PathBuf,
    /// Minimisation method.
    #[arg(long, value_enum, default_value_t = DenoiseMethodArg::Graphcut)]
    pub method: DenoiseMethodArg,
    /// Coupling between 4-neighbours (graphcut needs >= 0).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub beta: f64,
    /// Weight of agreement with the noisy image.
    #[arg(long, default_value_t = 2.1, allow_negative_numbers = true)]
    pub eta: f64,
    /// Field h (positive favours black, -1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub field: f64,
    /// anneal: heat-bath sweeps (default 200); gibbs: recorded sweeps (default 200); icm: at
    /// most this many sweeps (default: until a sweep changes nothing).
    #[arg(long)]
    pub sweeps: Option<u64>,
    /// gibbs: sweeps discarded before recording [default: 20].
    #[arg(long)]
    pub burn_in: Option<u64>,
    /// anneal: temperature of the first sweep [default: 4].
    #[arg(long, allow_negative_numbers = true)]
    pub t_start: Option<f64>,
    /// anneal: temperature of the last sweep (geometric schedule in between) [default: 0.05].
    #[arg(long, allow_negative_numbers = true)]
    pub t_end: Option<f64>,
    /// The clean image, to report the error rate of the result.
    #[arg(long)]
    pub clean: Option<PathBuf>,
    /// gibbs: write the posterior probability of +1 as a grey PNG (255 = certainly white).
    #[arg(long)]
    pub marginals: Option<PathBuf>,
    /// Grey level (0-255) at and above which a pixel is white (for --input and --clean).
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: u8,
}

#[derive(Debug, Serialize)]
struct DenoiseReport<'a> {
    input: &'a str,
    output: &'a str,
    method: &'static str,
    width: usize,
    height: usize,
    beta: f64,
    eta: f64,
    field: f64,
    energy: f64,
    input_energy: f64,
    sweeps: u64,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_error_rate: Option<f64>,
    seed: u64,
}

fn usage(msg: String) -> anyhow::Error {
    super::UsageError(msg).into()
}

/// `--burn-in` when not given (gibbs).
const DEFAULT_BURN_IN: u64 = 20;
/// `--t-start` when not given (anneal).
const DEFAULT_T_START: f64 = 4.0;
/// `--t-end` when not given (anneal).
const DEFAULT_T_END: f64 = 0.05;

/// Refuses a flag given with a method that does not use it (it would be silently ignored).
fn check_flags_apply(args: &DenoiseArgs, method: MapMethod) -> anyhow::Result<()> {
    let given = [
        (
            "--sweeps",
            args.sweeps.is_some(),
            method != MapMethod::GraphCut,
        ),
        (
            "--burn-in",
            args.burn_in.is_some(),
            method == MapMethod::Gibbs,
        ),
        (
            "--t-start",
            args.t_start.is_some(),
            method == MapMethod::Anneal,
        ),
        ("--t-end", args.t_end.is_some(), method == MapMethod::Anneal),
        (
            "--marginals",
            args.marginals.is_some(),
            method == MapMethod::Gibbs,
        ),
    ];
    for (flag, is_given, applies) in given {
        if is_given && !applies {
            return Err(usage(format!(
                "{flag} does not apply to --method {}; see `ebm denoise --help` for the \
                 flags each method takes",
                method.name()
            )));
        }
    }
    Ok(())
}

pub fn run(args: &DenoiseArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let method: MapMethod = args.method.into();
    check_flags_apply(args, method)?;
    let burn_in = args.burn_in.unwrap_or(DEFAULT_BURN_IN);
    let t_start = args.t_start.unwrap_or(DEFAULT_T_START);
    let t_end = args.t_end.unwrap_or(DEFAULT_T_END);
    for (flag, v) in [
        ("--beta", args.beta),
        ("--eta", args.eta),
        ("--field", args.field),
        ("--t-start", t_start),
        ("--t-end", t_end),
    ] {
        if !v.is_finite() {
            return Err(usage(format!("{flag} must be a finite number, got {v}")));
        }
    }
    if method == MapMethod::GraphCut && args.beta < 0.0 {
        return Err(usage(format!(
            "--beta {} is negative: the energy is then not submodular and graph cut cannot \
             minimise it exactly; use --method icm, anneal or gibbs",
            args.beta
        )));
    }
    if args.sweeps == Some(0) {
        return Err(usage("--sweeps must be at least 1".into()));
    }
    if method == MapMethod::Anneal && (t_start <= 0.0 || t_end <= 0.0) {
        return Err(usage(format!(
            "--t-start and --t-end must be > 0, got {t_start} and {t_end}"
        )));
    }
    let mut outputs = Outputs::new();
    outputs.declare("--output", Some(&args.output), IMAGE, "the restored image")?;
    outputs.declare(
        "--marginals",
        args.marginals.as_deref(),
        PNG,
        "the marginals (a grey PNG)",
    )?;
    let noisy = read_binary_image(&args.input, args.threshold)
        .with_context(|| format!("reading image {}", args.input.display()))?;
    let clean = match &args.clean {
        Some(p) => {
            let img = read_binary_image(p, args.threshold)
                .with_context(|| format!("reading clean image {}", p.display()))?;
            if (img.width(), img.height()) != (noisy.width(), noisy.height()) {
                return Err(usage(format!(
                    "--clean {} is {} x {} but --input is {} x {}",
                    p.display(),
                    img.width(),
                    img.height(),
                    noisy.width(),
                    noisy.height()
                )));
            }
            Some(img)
        }
        None => None,
    };
    let params = DenoiseParams {
        method,
        beta: args.beta,
        eta: args.eta,
        field: args.field,
        sweeps: args.sweeps,
        burn_in,
        t_start,
        t_end,
        seed: global.seed,
    };
    let total = match method {
        MapMethod::Anneal => args.sweeps.unwrap_or(200),
        MapMethod::Gibbs => burn_in.saturating_add(args.sweeps.unwrap_or(200)),
        _ => 0,
    };
    let mut bar = BarObserver::new(
        progress_enabled(global) && total > 0,
        total,
        method.name(),
        "T",
    );
    let one_thread = runs_on_one_thread(&params, noisy.width(), noisy.height());
    if !one_thread {
        // Start rayon's worker threads before the clock, so that `seconds` times the restoration.
        rayon::broadcast(|_| ());
    }
    let start = Instant::now();
    let result = if one_thread {
        // A small graph cut never uses the pool: run here, without starting it.
        denoise(&noisy, &params, &mut bar)
    } else {
        // Run on a rayon worker, so that the parallel steps inside split work without handing
        // each one over from the main thread (a thread wake-up per step on a busy machine).
        rayon::scope(|_| denoise(&noisy, &params, &mut bar))
    }?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish();
    let bytes = encode_binary_image(&result.image, format_for_path(&args.output)?)?;
    outputs.stage_bytes("--output", &bytes)?;
    if let (Some(_), Some(m)) = (&args.marginals, &result.marginals) {
        let luma: Vec<u8> = m.iter().map(|&p| (p * 255.0).round() as u8).collect();
        let bytes = encode_grey_png(noisy.width(), noisy.height(), &luma)?;
        outputs.stage_bytes("--marginals", &bytes)?;
    }
    let (error_rate, input_error_rate) = match &clean {
        Some(c) => (
            Some(result.image.error_rate(c)?),
            Some(noisy.error_rate(c)?),
        ),
        None => (None, None),
    };
    let report = DenoiseReport {
        input: &args.input.to_string_lossy(),
        output: &args.output.to_string_lossy(),
        method: method.name(),
        width: noisy.width(),
        height: noisy.height(),
        beta: args.beta,
        eta: args.eta,
        field: args.field,
        energy: result.energy,
        input_energy: result.input_energy,
        sweeps: result.sweeps,
        seconds,
        error_rate,
        input_error_rate,
        seed: global.seed,
    };
    if global.json {
        print_json(&report)?;
    } else {
        let mut line = format!(
            "{}: {} x {} restored by {} in {:.3} s; energy {} (input {})",
            report.output,
            report.width,
            report.height,
            report.method,
            seconds,
            report.energy,
            report.input_energy
        );
        if let (Some(e), Some(i)) = (error_rate, input_error_rate) {
            line += &format!("; error rate {:.3}% (input {:.3}%)", 100.0 * e, 100.0 * i);
        }
        say(global, &line);
    }
    outputs.commit()
}
