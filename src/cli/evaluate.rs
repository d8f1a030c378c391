//! `ebm evaluate`: the average log-likelihood of a dataset under an RBM, with ln Z exact or by AIS.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::GlobalArgs;
use super::ais_report::{AisReport, RAISE_FLAGS};
use super::output::{print_json, say};
use super::read_dataset;
use super::ui::{BarObserver, progress_enabled};
use ebm::infer::ais::{AisParams, DEFAULT_AIS_BETAS, DEFAULT_AIS_RUNS};
use ebm::io::safetensors::read_rbm;
use ebm::learn::checkpoint::DATA_MEANS;
use ebm::learn::{Evaluation, average_log_likelihood, evaluate};

/// How ln Z is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvaluateMethodArg {
    /// Exact when the smaller layer has at most 25 units, AIS beyond.
    Auto,
    /// Enumerate the smaller layer (refused beyond 2^36 states, i.e. more than 36 units).
    Exact,
    /// Annealed importance sampling (Salakhutdinov & Murray 2008).
    Ais,
}

impl EvaluateMethodArg {
    /// The library's evaluation for these AIS settings.
    pub fn evaluation(self, ais: AisParams) -> Evaluation {
        match self {
            EvaluateMethodArg::Auto => Evaluation::Auto(ais),
            EvaluateMethodArg::Exact => Evaluation::Exact,
            EvaluateMethodArg::Ais => Evaluation::Ais(ais),
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ebm evaluate --model model.safetensors --data data/digits_test.txt\n  ebm evaluate --model big.safetensors --data data/mnist5k_test.txt --method ais --ais-betas 14500 --ais-runs 100 --json\n  ebm evaluate --model grey16.safetensors --data data/digits_grey_test.csv --real"
)]
pub struct EvaluateArgs {
    /// The RBM (.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// The examples to score (.txt, .csv, .npy, IDX; optionally .gz).
    #[arg(long)]
    pub data: PathBuf,
    /// Binarization threshold for .csv/.npy (default 0.5) and IDX (default 128) data.
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// Read --data as real values, no threshold (implied for a Gaussian-Bernoulli RBM, whose
    /// data are always real; refused for binary models, which binarise at --threshold).
    #[arg(long)]
    pub real: bool,
    /// How ln Z is obtained.
    #[arg(long, value_enum, default_value_t = EvaluateMethodArg::Auto)]
    pub method: EvaluateMethodArg,
    /// AIS: number of annealing steps (Salakhutdinov & Murray's schedule, scaled).
    #[arg(long, default_value_t = DEFAULT_AIS_BETAS)]
    pub ais_betas: usize,
    /// AIS: number of independent runs.
    #[arg(long, default_value_t = DEFAULT_AIS_RUNS)]
    pub ais_runs: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    data: String,
    examples: usize,
    log_likelihood: f64,
    log_z: f64,
    method: &'static str,
    /// Total probability of the distinct examples, sum_v exp(-F(v) - ln Z).
    probability_mass: f64,
    #[serde(flatten)]
    ais: AisReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_base: Option<&'static str>,
    seconds: f64,
    seed: u64,
}

pub fn run(args: &EvaluateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let ais = AisParams {
        betas: args.ais_betas,
        runs: args.ais_runs,
        seed: global.seed,
    };
    ais.validate()?;
    super::gaussian::check_real_flag(args.real, args.threshold, &args.model)?;
    if let Some(composite) = super::compose::composite_model(&args.model)? {
        return super::compose::evaluate(args, &composite, global);
    }
    if super::gaussian::is_gaussian_file(&args.model) {
        return super::gaussian::evaluate(args, global);
    }
    let file =
        read_rbm(&args.model).with_context(|| format!("reading model {}", args.model.display()))?;
    let data = read_dataset(&args.data, args.threshold)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    let rbm = &file.rbm;
    if data.rows() == 0 {
        return Err(ebm::Error::param("data", "the dataset has no examples"))
            .with_context(|| format!("reading data {}", args.data.display()));
    }
    if data.cols() != rbm.n_visible() {
        return Err(ebm::Error::SizeMismatch(format!(
            "{} has {} columns per example, the model {} has {} visible units",
            args.data.display(),
            data.cols(),
            args.model.display(),
            rbm.n_visible()
        ))
        .into());
    }
    // AIS base rates: the training data's means stored by `ebm train-rbm`, else these data's.
    let (marginals, base) = match file.extra.get(DATA_MEANS) {
        Some(t) if t.data.len() == rbm.n_visible() => (t.data.clone(), "training data"),
        _ => (data.column_means(), "evaluated data"),
    };
    let t0 = Instant::now();
    let mut bar = BarObserver::new(progress_enabled(global), 1, "AIS", "");
    let report = evaluate(rbm, args.method.evaluation(ais), &marginals, &mut bar)?;
    bar.finish();
    let ll = average_log_likelihood(rbm, &data, report.log_z)?;
    let out = Report {
        model: args.model.to_string_lossy().into_owned(),
        data: args.data.to_string_lossy().into_owned(),
        examples: data.rows(),
        log_likelihood: ll,
        log_z: report.log_z,
        method: report.method,
        probability_mass: super::compose::probability_mass(rbm, &data, report.log_z),
        ais: AisReport::of_estimate(report.ais.as_ref()),
        ais_base: report.ais.as_ref().map(|_| base),
        seconds: t0.elapsed().as_secs_f64(),
        seed: global.seed,
    };
    if global.json {
        print_json(&out)?;
    } else {
        let spread = out
            .ais
            .spread_text(4)
            .map_or_else(String::new, |s| format!(" ({s})"));
        say(
            global,
            &format!(
                "average log-likelihood {:.4} nats over {} examples; ln Z = {:.4} by {}{spread}",
                ll,
                data.rows(),
                report.log_z,
                report.method
            ),
        );
    }
    out.ais.warn_if_unreliable(RAISE_FLAGS);
    Ok(())
}
