//! `ebm score`: per-example free energies and log-probabilities of a dataset under a model, and
//! anomaly-detection figures (AUROC, average precision) against 0/1 labels.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::ais_report::{AisReport, RAISE_FLAGS};
use super::output::{CSV, Outputs, print_json, say};
use super::ui::{BarObserver, progress_enabled};
use super::{GlobalArgs, UsageError, read_dataset, read_real_dataset};
use ebm::infer::ais::{AisEstimate, AisParams, DEFAULT_AIS_BETAS, DEFAULT_AIS_RUNS};
use ebm::infer::composite::{LogZRequest, log_z_of};
use ebm::infer::partition::{Method, Model, PartitionOptions, exact_log_partition};
use ebm::infer::score::{LogPartition, free_energies, mean_log_likelihood};
use ebm::io::labels::{anomaly_labels, check_label_count, read_labels};
use ebm::io::{LoadedModel, open_model};
use ebm::learn::checkpoint::DATA_MEANS;
use ebm::learn::{Evaluation, evaluate};
use ebm::metrics::{auroc, average_precision, top_k};
use ebm::model::composite::{Composite, LogZMethod};
use ebm::model::{FactorGraph, FreeEnergyModel};

const AFTER_HELP: &str = "Examples:
  ebm score --model digits16.safetensors --data data/digits_test.txt --output scores.csv
  ebm score --model digits16.safetensors --data test.txt --labels anomalies.txt --top 5 --json
  ebm score --model data/uai/DBN_11.uai --data rows.txt --log-z none --output scores.csv

scores.csv has the header index,free_energy,log_p_unnormalized,log_p: index is the 0-based row
of --data, free_energy is F(v), log_p_unnormalized = -F(v), and log_p = -F(v) - ln Z (empty
with --log-z none). A higher free energy is a more anomalous example; AUROC and average
precision rank the examples by F, which needs no ln Z (for one model, ranking by -ln p is the
same ranking, so the figures are equal). Labels: one 0 (normal) or 1 (anomaly) per line.";

/// How ln Z is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogZArg {
    /// RBM: exact when the smaller layer has at most 25 units, else AIS. UAI: exact when the
    /// cheapest exact method fits the default budget (1 hour, 2 GiB), else none.
    Auto,
    /// Exact (refused when the model is too large for it).
    Exact,
    /// Annealed importance sampling (RBMs only), with its spread.
    Ais,
    /// No ln Z: free energies, rankings, AUROC and average precision only.
    None,
}

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct ScoreArgs {
    /// The model, recognised by content: an RBM (.safetensors), a UAI model, a composite
    /// manifest (`ebm compose`) or a Gaussian-Bernoulli RBM (real-valued data).
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
    /// Write the per-example scores here (.csv).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// How ln Z is obtained.
    #[arg(long, value_enum, default_value_t = LogZArg::Auto)]
    pub log_z: LogZArg,
    /// Anomaly labels, one 0 (normal) or 1 (anomaly) per line, one line per example: adds
    /// AUROC and average precision.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// List the K examples with the highest free energy (the most anomalous).
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// AIS: number of annealing steps.
    #[arg(long, default_value_t = DEFAULT_AIS_BETAS)]
    pub ais_betas: usize,
    /// AIS: number of independent runs.
    #[arg(long, default_value_t = DEFAULT_AIS_RUNS)]
    pub ais_runs: usize,
}

/// One of the K most anomalous examples.
#[derive(Debug, Serialize)]
struct TopRow {
    index: usize,
    free_energy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    model_kind: &'static str,
    data: String,
    examples: usize,
    n_visible: usize,
    mean_free_energy: f64,
    /// ln Z; null with --log-z none (or auto beyond the exact budget of a UAI model).
    log_z: Option<f64>,
    /// "exact", "ais" or null.
    log_z_method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_exact_method: Option<&'static str>,
    /// With AIS: its spread, settings, effective sample size and flag.
    #[serde(flatten)]
    ais: AisReport,
    /// Mean ln p(v) in nats; null without ln Z (or when an example has probability 0).
    mean_log_likelihood: Option<f64>,
    /// With AIS: the mean log-likelihood at the high and low ends of ln Z's interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_log_likelihood_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_log_likelihood_high: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomalies: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auroc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    average_precision: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top: Option<Vec<TopRow>>,
    seconds: f64,
    seed: u64,
}

/// A model that `score` accepts: anything with a visible-unit free energy and a way to its ln Z.
enum Scored {
    Rbm(Box<ebm::io::safetensors::RbmFile>),
    Factors(FactorGraph),
    Composite(Composite),
}

impl Scored {
    fn free_energy_model(&self) -> &dyn FreeEnergyModel {
        match self {
            Scored::Rbm(file) => &file.rbm,
            Scored::Factors(graph) => graph,
            Scored::Composite(c) => c,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Scored::Rbm(_) => "rbm",
            Scored::Factors(_) => "uai",
            Scored::Composite(_) => "composite",
        }
    }
}

/// Finite values only (JSON has no infinity): `None` otherwise.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

fn ais_for_rbms_only() -> anyhow::Error {
    usage("--log-z ais applies to RBMs only; for a UAI model use --log-z exact or none".into())
}

/// ln Z of `model` as `--log-z` asks; `None` for `none` (and for `auto` on a UAI model beyond
/// the exact budget).
fn log_partition(
    model: &Scored,
    how: LogZArg,
    ais: AisParams,
    data_means: &dyn Fn() -> Vec<f64>,
    global: &GlobalArgs,
) -> anyhow::Result<Option<LogPartition>> {
    let mut bar = BarObserver::new(progress_enabled(global), 1, "ln Z", "");
    let result = match (model, how) {
        (_, LogZArg::None) => None,
        (Scored::Rbm(file), _) => {
            let rbm = &file.rbm;
            let method = match how {
                LogZArg::Exact => Evaluation::Exact,
                LogZArg::Ais => Evaluation::Ais(ais),
                _ => Evaluation::Auto(ais),
            };
            // AIS base rates: the training data's means stored by `ebm train-rbm`, else these
            // data's.
            let marginals = match file.extra.get(DATA_MEANS) {
                Some(t) if t.data.len() == rbm.n_visible() => t.data.clone(),
                _ => data_means(),
            };
            let report = evaluate(rbm, method, &marginals, &mut bar).map_err(|e| match e {
                e @ ebm::Error::TooLarge { .. } => anyhow::Error::new(e).context(
                    "--log-z exact: this RBM is too large to enumerate; use --log-z ais, or \
                     --log-z none (free energies, AUROC and average precision need no ln Z)",
                ),
                other => other.into(),
            })?;
            Some(LogPartition {
                log_z: report.log_z,
                method: report.method,
                detail: (report.method == "exact").then_some("rbm"),
                ais: report.ais.as_ref().map(AisEstimate::to_log_z),
            })
        }
        (Scored::Composite(c), _) => {
            let request = match how {
                LogZArg::Exact => LogZRequest::Exact,
                LogZArg::Ais => LogZRequest::Ais(ais),
                _ => LogZRequest::Auto(ais),
            };
            let means = data_means();
            let lz = log_z_of(c, request, Some(&means), &mut bar)?;
            let derived = lz.method == LogZMethod::Ais;
            Some(LogPartition {
                log_z: lz.value,
                method: lz.method.name(),
                detail: (!derived).then_some(c.operation()),
                ais: derived.then_some(lz),
            })
        }
        (Scored::Factors(_), LogZArg::Ais) => return Err(ais_for_rbms_only()),
        (Scored::Factors(graph), _) => {
            match exact_log_partition(
                &Model::Factors(graph),
                Method::Auto,
                &PartitionOptions::default(),
                &mut bar,
            ) {
                Ok(p) => Some(LogPartition {
                    log_z: p.log_z,
                    method: "exact",
                    detail: Some(p.method.name()),
                    ais: None,
                }),
                Err(ebm::Error::TooLarge { .. }) if how == LogZArg::Auto => None,
                Err(e @ ebm::Error::TooLarge { .. }) => {
                    return Err(anyhow::Error::new(e).context(
                        "--log-z exact: no exact method fits the budget for this model; use \
                         --log-z none (free energies, AUROC and average precision need no ln Z)",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    bar.finish();
    Ok(result)
}

/// The CSV table of scores (header and one row per example).
fn scores_csv(free: &[f64], log_z: Option<f64>, labels: Option<&[u32]>) -> String {
    let mut out = String::from("index,free_energy,log_p_unnormalized,log_p");
    if labels.is_some() {
        out.push_str(",label");
    }
    out.push('\n');
    for (i, &f) in free.iter().enumerate() {
        let log_p = log_z.map_or(String::new(), |z| format!("{}", -f - z));
        let _ = write!(out, "{i},{f},{},{log_p}", -f);
        if let Some(l) = labels {
            let _ = write!(out, ",{}", l[i]);
        }
        out.push('\n');
    }
    out
}

pub fn run(args: &ScoreArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    super::gaussian::check_real_flag(args.real, args.threshold, &args.model)?;
    let mut outputs = Outputs::new();
    outputs.declare(
        "--output",
        args.output.as_deref(),
        CSV,
        "the table of scores",
    )?;
    let ais = AisParams {
        betas: args.ais_betas,
        runs: args.ais_runs,
        seed: global.seed,
    };
    if args.log_z != LogZArg::None {
        ais.validate()?;
    }
    let loaded = open_model(&args.model)
        .with_context(|| format!("reading model {}", args.model.display()))?;
    let t0;
    let (free, lz, labels, rows, cols, kind) = if let LoadedModel::GaussianRbm(file) = loaded {
        let mut data = read_real_dataset(&args.data)
            .with_context(|| format!("reading data {}", args.data.display()))?;
        if args.threshold.is_some() {
            return Err(usage(
                "--threshold does not apply to a Gaussian RBM (its data are real values)".into(),
            ));
        }
        if args.log_z == LogZArg::Ais {
            return Err(usage(
                "--log-z ais: score takes ln Z of a Gaussian RBM exactly (by enumerating its \
                 hidden units); use `ebm evaluate --method ais` for larger ones"
                    .into(),
            ));
        }
        if data.rows() == 0 {
            return Err(ebm::Error::param("data", "the dataset has no examples"))
                .with_context(|| format!("reading data {}", args.data.display()));
        }
        let labels = match &args.labels {
            Some(path) => Some(read_checked_labels(path, data.rows())?),
            None => None,
        };
        t0 = Instant::now();
        let (free, log_z) = super::gaussian::free_energies_in_data_units(
            &file,
            &mut data,
            &args.data,
            args.log_z != LogZArg::None,
        )
        .with_context(|| format!("scoring with {}", args.model.display()))?;
        let lz = log_z.map(|log_z| LogPartition {
            log_z,
            method: "exact",
            detail: Some("gaussian-rbm"),
            ais: None,
        });
        (free, lz, labels, data.rows(), data.cols(), "gaussian-rbm")
    } else {
        let model = match loaded {
            LoadedModel::Rbm(file) => Scored::Rbm(Box::new(file)),
            LoadedModel::Factors(graph) => Scored::Factors(graph),
            LoadedModel::Composite(c) => Scored::Composite(c),
            LoadedModel::GaussianRbm(_) => unreachable!("handled above"),
        };
        if matches!(model, Scored::Factors(_)) && args.log_z == LogZArg::Ais {
            return Err(ais_for_rbms_only());
        }
        let data = read_dataset(&args.data, args.threshold)
            .with_context(|| format!("reading data {}", args.data.display()))?;
        if data.rows() == 0 {
            return Err(ebm::Error::param("data", "the dataset has no examples"))
                .with_context(|| format!("reading data {}", args.data.display()));
        }
        let fem = model.free_energy_model();
        if data.cols() != fem.num_visible() {
            return Err(ebm::Error::SizeMismatch(format!(
                "{} has {} columns per example, the model {} has {} visible units",
                args.data.display(),
                data.cols(),
                args.model.display(),
                fem.num_visible()
            ))
            .into());
        }
        let labels = match &args.labels {
            Some(path) => Some(read_checked_labels(path, data.rows())?),
            None => None,
        };
        t0 = Instant::now();
        let free = free_energies(fem, &data)?;
        let lz = log_partition(&model, args.log_z, ais, &|| data.column_means(), global)?;
        (free, lz, labels, data.rows(), data.cols(), model.kind())
    };
    let log_z = lz.as_ref().map(|l| l.log_z);
    let mean_ll = log_z
        .and_then(|z| mean_log_likelihood(&free, z))
        .and_then(finite);
    let (z_low, z_high) = lz
        .as_ref()
        .map_or((f64::NAN, f64::NAN), LogPartition::interval);
    let ais_report = lz
        .as_ref()
        .and_then(|l| l.ais.as_ref())
        .map_or_else(AisReport::default, AisReport::of_log_z);
    let is_ais = ais_report.is_ais();
    let (auroc_value, ap) = match &labels {
        Some(l) => {
            let positive = anomaly_labels(l).expect("checked on reading");
            (
                Some(auroc(&free, &positive)?),
                Some(average_precision(&free, &positive)?),
            )
        }
        None => (None, None),
    };
    let top = args.top.map(|k| {
        top_k(&free, k)
            .into_iter()
            .map(|i| TopRow {
                index: i,
                free_energy: free[i],
                log_p: log_z.map(|z| -free[i] - z),
                label: labels.as_ref().map(|l| l[i]),
            })
            .collect::<Vec<_>>()
    });
    if args.output.is_some() {
        let csv = scores_csv(&free, log_z, labels.as_deref());
        outputs.stage_bytes("--output", csv.as_bytes())?;
    }
    let report = Report {
        model: args.model.to_string_lossy().into_owned(),
        model_kind: kind,
        data: args.data.to_string_lossy().into_owned(),
        examples: rows,
        n_visible: cols,
        mean_free_energy: free.iter().sum::<f64>() / free.len() as f64,
        log_z,
        log_z_method: lz.as_ref().map(|l| l.method),
        log_z_exact_method: lz.as_ref().and_then(|l| l.detail),
        ais: ais_report,
        mean_log_likelihood: mean_ll,
        // The interval of ln Z, carried over: a higher ln Z gives a lower likelihood.
        mean_log_likelihood_low: is_ais
            .then(|| mean_log_likelihood(&free, z_high))
            .flatten()
            .and_then(finite),
        mean_log_likelihood_high: is_ais
            .then(|| mean_log_likelihood(&free, z_low))
            .flatten()
            .and_then(finite),
        anomalies: labels
            .as_ref()
            .map(|l| l.iter().filter(|&&x| x == 1).count()),
        auroc: auroc_value,
        average_precision: ap,
        top,
        seconds: t0.elapsed().as_secs_f64(),
        seed: global.seed,
    };
    if !report.mean_free_energy.is_finite() {
        // +inf: some example has probability 0 under the model.
        say(
            global,
            "note: some examples have probability 0 under the model (free energy +inf)",
        );
    }
    if global.json {
        print_json(&report)?;
    } else {
        say(global, &human_summary(&report));
        if let Some(top) = &report.top {
            for row in top {
                let label = row.label.map_or(String::new(), |l| format!(", label {l}"));
                let log_p = row
                    .log_p
                    .map_or(String::new(), |p| format!(", ln p {p:.4}"));
                say(
                    global,
                    &format!(
                        "  row {}: free energy {:.4}{log_p}{label}",
                        row.index, row.free_energy
                    ),
                );
            }
        }
    }
    report.ais.warn_if_unreliable(RAISE_FLAGS);
    outputs.commit()
}

/// Reads `--labels` and checks it: one 0/1 label per example.
fn read_checked_labels(path: &Path, rows: usize) -> anyhow::Result<Vec<u32>> {
    let context = || format!("--labels {}", path.display());
    let labels = read_labels(path).with_context(context)?;
    anomaly_labels(&labels).with_context(context)?;
    check_label_count(&labels, rows).with_context(context)?;
    Ok(labels)
}

fn human_summary(r: &Report) -> String {
    let mut line = format!(
        "{} examples, mean free energy {:.4}",
        r.examples, r.mean_free_energy
    );
    match (r.log_z, r.log_z_method) {
        (Some(z), Some(m)) => {
            let _ = write!(line, "; ln Z = {z:.4} ({m}");
            if let Some(spread) = r.ais.spread_text(4) {
                let _ = write!(line, ", {spread}");
            }
            line.push(')');
            if let Some(ll) = r.mean_log_likelihood {
                let _ = write!(line, ", mean log-likelihood {ll:.4} nats");
            }
        }
        _ => line.push_str("; ln Z not computed"),
    }
    if let (Some(a), Some(ap), Some(n)) = (r.auroc, r.average_precision, r.anomalies) {
        let _ = write!(
            line,
            "; {n} anomalies: AUROC {a:.4}, average precision {ap:.4}"
        );
    }
    line
}
