//! `ebm compose`: products, mixtures and negations of models, and how the other commands
//! (`partition`, `evaluate`, `sample`, `info`) treat the composite manifests it writes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::ais_report::{AisReport, RAISE_FLAGS};
use super::output::{DATASET, Outputs, PNG, SAFETENSORS, eprint_line, print_json, say};
use super::sample::{SampleArgs, SamplerArg};
use super::ui::{BarObserver, progress_enabled};
use super::{GlobalArgs, UsageError};
use ebm::infer::ais::{AisParams, DEFAULT_AIS_BETAS, DEFAULT_AIS_RUNS};
use ebm::infer::composite::{LogZRequest, log_partition, log_z_of};
use ebm::io::LoadedModel;
use ebm::io::composite::{
    ComponentEntry, MANIFEST_VERSION, Manifest, Operation, StoredLogZ, encode_manifest,
    relative_path, sha256_hex,
};
use ebm::io::safetensors::{RbmFile, encode_rbm};
use ebm::learn::checkpoint::DATA_MEANS;
use ebm::model::FreeEnergyModel;
use ebm::model::composite::{Composite, LogZ, LogZMethod, check_weights};
use ebm::sample::LocalRule;
use ebm::sample::composite::sample_composite;

const EXAMPLES: &str = "Examples:
  ebm compose product bars.safetensors stripes.safetensors --output both.safetensors
  ebm compose mixture bars.safetensors stripes.safetensors --weights 0.5,0.5 --output bas.json
  ebm compose negation bas.json bars.safetensors --alpha 1 --output stripes.json
  ebm compose mixture a.safetensors b.safetensors --weights 0.7,0.3 --log-z ais --ais-betas 14500 --ais-runs 100 --output m.json --json

A product of RBMs is written as a plain RBM (.safetensors); every other composite as a JSON
manifest naming its components (paths relative to the manifest, SHA-256 checked on load).
Manifests are accepted wherever --model is (partition, evaluate, sample, info) and nest.";

/// Combine models over the same visible units.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ComposeArgs {
    #[command(subcommand)]
    pub operation: OperationArg,
}

#[derive(Debug, Subcommand)]
pub enum OperationArg {
    /// p ∝ prod_k p_k (AND). Of RBMs: an RBM (hidden layers concatenated, visible biases added).
    #[command(after_help = EXAMPLES)]
    Product(ProductArgs),
    /// p = sum_k w_k p_k (OR); stores each component's ln Z (exact, or AIS with its spread).
    #[command(after_help = EXAMPLES)]
    Mixture(MixtureArgs),
    /// p ∝ p_A p_B^(-alpha) (A AND NOT B): free energy F_A - alpha F_B.
    #[command(after_help = EXAMPLES)]
    Negation(NegationArgs),
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The component model files (RBM .safetensors, UAI models or composite manifests).
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<PathBuf>,
    /// The composite: .safetensors for a product of RBMs, .json (a manifest) otherwise.
    #[arg(long)]
    pub output: PathBuf,
    /// Temperature T > 0: p^(1/T) (F / T), written as a manifest (a product of RBMs with a
    /// temperature too: its visible marginal p(v)^(1/T) is not an RBM).
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ProductArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// How each mixture component's ln Z is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogZArg {
    /// Exact when the RBM's smaller layer has at most 25 units, AIS beyond.
    Auto,
    /// Exact (refused when too large).
    Exact,
    /// Annealed importance sampling (RBMs only).
    Ais,
}

#[derive(Debug, Args)]
pub struct MixtureArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The weights w_k, one per model, comma-separated, positive, summing to 1.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        allow_hyphen_values = true
    )]
    pub weights: Vec<f64>,
    /// How each component's ln Z is obtained.
    #[arg(long, value_enum, default_value_t = LogZArg::Auto)]
    pub log_z: LogZArg,
    /// AIS: number of annealing steps.
    #[arg(long, default_value_t = DEFAULT_AIS_BETAS)]
    pub ais_betas: usize,
    /// AIS: number of independent runs.
    #[arg(long, default_value_t = DEFAULT_AIS_RUNS)]
    pub ais_runs: usize,
}

#[derive(Debug, Args)]
pub struct NegationArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The exponent alpha > 0 of p_B^(-alpha).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub alpha: f64,
}

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

/// A component as read: its model, bytes' checksum and AIS base rates when stored.
struct Part {
    path: PathBuf,
    sha256: String,
    model: Composite,
    data_means: Option<Vec<f64>>,
}

fn read_part(path: &Path) -> anyhow::Result<Part> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let loaded =
        ebm::io::open_model(path).with_context(|| format!("reading model {}", path.display()))?;
    let (model, data_means) = match loaded {
        LoadedModel::Rbm(file) => {
            let means = file
                .extra
                .get(DATA_MEANS)
                .filter(|t| t.data.len() == file.rbm.n_visible())
                .map(|t| t.data.clone());
            (Composite::Rbm(file.rbm), means)
        }
        LoadedModel::Factors(g) => (Composite::Factors(g), None),
        LoadedModel::Composite(c) => (c, None),
        LoadedModel::GaussianRbm(_) => {
            return Err(super::UsageError(format!(
                "{} is a Gaussian-Bernoulli RBM (real visible units); compose combines models \
                 over binary visible units",
                path.display()
            ))
            .into());
        }
    };
    Ok(Part {
        path: path.to_path_buf(),
        sha256: sha256_hex(&bytes),
        model,
        data_means,
    })
}

#[derive(Debug, Serialize)]
struct ComponentReport {
    path: String,
    sha256: String,
    visible: usize,
    operation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<f64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    log_z: Option<LogZReport>,
}

/// A ln Z as printed: value, method, and for AIS the keys of [`AisReport`].
#[derive(Debug, Serialize)]
pub struct LogZReport {
    log_z: f64,
    log_z_method: &'static str,
    #[serde(flatten)]
    ais: AisReport,
}

impl LogZReport {
    fn of(z: &LogZ) -> LogZReport {
        LogZReport {
            log_z: z.value,
            log_z_method: z.method.name(),
            ais: AisReport::of_log_z(z),
        }
    }
}

fn describe_log_z(z: &LogZ) -> String {
    match AisReport::of_log_z(z).spread_text(6) {
        Some(spread) => format!("{:.6} (AIS; {spread})", z.value),
        None => format!("{:.6} (exact)", z.value),
    }
}

#[derive(Debug, Serialize)]
struct ComposeReport {
    operation: &'static str,
    output: String,
    format: &'static str,
    visible: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    hidden: Option<usize>,
    components: Vec<ComponentReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    /// ln Z of the composite when it comes at no cost (a mixture: from the stored ln Z's).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    log_z: Option<LogZReport>,
    seconds: f64,
    seed: u64,
}

pub fn run(args: &ComposeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let (op, common) = match &args.operation {
        OperationArg::Product(a) => (Operation::Product, &a.common),
        OperationArg::Mixture(a) => (Operation::Mixture, &a.common),
        OperationArg::Negation(a) => (Operation::Negation, &a.common),
    };
    // Flag values first: a bad value is the first thing to say.
    if let Some(t) = common.temperature
        && !(t.is_finite() && t > 0.0)
    {
        return Err(usage(format!(
            "--temperature must be a positive number, got {t}"
        )));
    }
    let mut ais = None;
    match &args.operation {
        OperationArg::Mixture(a) => {
            check_weights(&a.weights, common.models.len())
                .map_err(|e| usage(format!("--weights: {e}")))?;
            if a.log_z != LogZArg::Exact {
                let p = AisParams {
                    betas: a.ais_betas,
                    runs: a.ais_runs,
                    seed: global.seed,
                };
                p.validate().map_err(|e| usage(e.to_string()))?;
                ais = Some(p);
            }
        }
        OperationArg::Negation(a) => {
            if !(a.alpha.is_finite() && a.alpha > 0.0) {
                return Err(usage(format!(
                    "--alpha must be a positive number, got {}",
                    a.alpha
                )));
            }
            if common.models.len() != 2 {
                return Err(usage(format!(
                    "negation takes exactly 2 models (A, then the negated B), got {}",
                    common.models.len()
                )));
            }
        }
        OperationArg::Product(_) => {}
    }
    let parts = common
        .models
        .iter()
        .map(|p| read_part(p))
        .collect::<anyhow::Result<Vec<Part>>>()?;
    let all_rbms = parts.iter().all(|p| p.model.as_rbm().is_some());
    // A product of RBMs is an RBM and is written as one; with a temperature it is written as a
    // manifest, whose F / T is exactly p^(1/T) (dividing the product RBM's parameters by T
    // would temper the joint p(v, h) instead, whose visible marginal is not p(v)^(1/T)).
    let writes_rbm =
        op == Operation::Product && all_rbms && common.temperature.is_none_or(|t| t == 1.0);
    let mut outputs = Outputs::new();
    if writes_rbm {
        outputs.declare(
            "--output",
            Some(&common.output),
            SAFETENSORS,
            "the product of RBMs (an RBM)",
        )?;
    } else {
        outputs.declare(
            "--output",
            Some(&common.output),
            &[".json"],
            "the composite manifest (JSON)",
        )?;
    }
    let out_dir = match common.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let models: Vec<Composite> = parts.iter().map(|p| p.model.clone()).collect();
    // ln Z of each mixture component.
    let mut log_zs: Vec<Option<LogZ>> = vec![None; parts.len()];
    if let OperationArg::Mixture(a) = &args.operation {
        for (k, part) in parts.iter().enumerate() {
            let request = match (a.log_z, ais) {
                (LogZArg::Exact, _) => LogZRequest::Exact,
                (LogZArg::Ais, Some(p)) => LogZRequest::Ais(p),
                (_, Some(p)) => LogZRequest::Auto(p),
                (_, None) => LogZRequest::Exact,
            };
            let mut bar = BarObserver::new(progress_enabled(global), 1, "ln Z", "");
            let z = log_z_of(&part.model, request, part.data_means.as_deref(), &mut bar).map_err(
                |e| match e {
                    ebm::Error::InvalidParam { .. } => {
                        usage(format!("--log-z for {}: {e}", part.path.display()))
                    }
                    other => anyhow::Error::new(other)
                        .context(format!("ln Z of {}", part.path.display())),
                },
            )?;
            bar.finish();
            log_zs[k] = Some(z);
        }
    }
    // Build the composite in the library (checks sizes, weights, alpha, negatability).
    let composite = match &args.operation {
        OperationArg::Product(_) => Composite::product(models),
        OperationArg::Mixture(a) => Composite::mixture(
            models,
            &a.weights,
            log_zs.iter().map(|z| z.expect("computed")).collect(),
        ),
        OperationArg::Negation(a) => {
            let mut m = models;
            let negated = m.pop().expect("2 models");
            let base = m.pop().expect("2 models");
            Composite::negation(base, negated, a.alpha)
        }
    }
    .context("composing")?;
    let weights: Option<Vec<f64>> = match &args.operation {
        OperationArg::Mixture(a) => Some(check_weights(&a.weights, parts.len())?),
        _ => None,
    };
    let alpha = match &args.operation {
        OperationArg::Negation(a) => Some(a.alpha),
        _ => None,
    };
    let temperature = common.temperature.filter(|&t| t != 1.0);
    let mut hidden = None;
    if writes_rbm {
        let rbm = composite
            .as_rbm()
            .expect("a product of RBMs is an RBM")
            .clone();
        hidden = Some(rbm.n_hidden());
        let mut file = RbmFile::new(rbm);
        let listed: Vec<serde_json::Value> = parts
            .iter()
            .map(|p| serde_json::json!({"path": p.path.display().to_string(), "sha256": p.sha256}))
            .collect();
        file.metadata.insert("composed".into(), "product".into());
        file.metadata.insert(
            "components".into(),
            serde_json::to_string(&listed).expect("JSON of strings"),
        );
        outputs.stage_bytes("--output", &encode_rbm(&file)?)?;
    } else {
        let mut components = Vec::with_capacity(parts.len());
        for (k, p) in parts.iter().enumerate() {
            let rel = relative_path(&out_dir, &p.path).with_context(|| {
                format!(
                    "the path of {} relative to {}",
                    p.path.display(),
                    out_dir.display()
                )
            })?;
            components.push(ComponentEntry {
                path: rel.to_string_lossy().into_owned(),
                sha256: p.sha256.clone(),
                weight: weights.as_ref().map(|w| w[k]),
                log_z: log_zs[k].as_ref().map(StoredLogZ::of),
            });
        }
        let manifest = Manifest {
            ebm_composite: MANIFEST_VERSION,
            operation: op,
            components,
            alpha,
            temperature,
        };
        outputs.stage_bytes("--output", &encode_manifest(&manifest)?)?;
    }
    let composite_log_z = match (&composite, temperature) {
        (Composite::Mixture(_), None) => {
            Some(log_partition(&composite, &mut ebm::progress::Silent)?)
        }
        _ => None,
    };
    let report = ComposeReport {
        operation: match op {
            Operation::Product => "product",
            Operation::Mixture => "mixture",
            Operation::Negation => "negation",
        },
        output: common.output.display().to_string(),
        format: if writes_rbm { "rbm" } else { "manifest" },
        visible: composite.num_visible(),
        hidden,
        components: parts
            .iter()
            .enumerate()
            .map(|(k, p)| ComponentReport {
                path: p.path.display().to_string(),
                sha256: p.sha256.clone(),
                visible: p.model.num_visible(),
                operation: p.model.operation(),
                weight: weights.as_ref().map(|w| w[k]),
                log_z: log_zs[k].as_ref().map(LogZReport::of),
            })
            .collect(),
        alpha,
        temperature,
        log_z: composite_log_z.as_ref().map(LogZReport::of),
        seconds: start.elapsed().as_secs_f64(),
        seed: global.seed,
    };
    if global.json {
        print_json(&report)?;
    } else {
        let mut text = format!(
            "{} of {} model(s) over {} visible units written to {} ({})",
            report.operation,
            parts.len(),
            report.visible,
            report.output,
            if writes_rbm {
                format!("an RBM with {} hidden units", hidden.unwrap_or(0))
            } else {
                "a manifest".to_string()
            }
        );
        for (k, p) in parts.iter().enumerate() {
            if let Some(z) = &log_zs[k] {
                text.push_str(&format!(
                    "\n  ln Z of {} = {}",
                    p.path.display(),
                    describe_log_z(z)
                ));
            }
        }
        say(global, &text);
    }
    for (part, z) in parts.iter().zip(&log_zs) {
        if let Some(w) = z
            .as_ref()
            .and_then(|z| AisReport::of_log_z(z).warning(RAISE_FLAGS))
        {
            eprint_line(&format!("warning: ln Z of {}: {w}", part.path.display()));
        }
    }
    outputs.commit()
}

/// The total probability sum_v p(v) = sum_v exp(-F(v) - ln Z) of the distinct rows of `data`
/// (a row given twice counts once): the mass a model puts on a set of patterns.
pub fn probability_mass(
    model: &dyn FreeEnergyModel,
    data: &ebm::dataset::Dataset,
    log_z: f64,
) -> f64 {
    use rayon::prelude::*;
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&[u8]> = data.iter_rows().filter(|row| seen.insert(*row)).collect();
    // Fixed blocks summed in order: the same figure for any number of threads.
    distinct
        .par_chunks(64)
        .map(|rows| {
            rows.iter()
                .map(|row| (-model.free_energy(row) - log_z).exp())
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// The composite of the manifest at `path`, or `None` when the file is not a manifest.
pub fn composite_model(path: &Path) -> anyhow::Result<Option<Composite>> {
    let mut head = [0u8; 16];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("reading model {}", path.display()))?;
        let mut n = 0;
        while n < head.len() {
            let k = f
                .read(&mut head[n..])
                .with_context(|| format!("reading model {}", path.display()))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    };
    if ebm::io::sniff_model(&head[..n]) != Some(ebm::io::ModelKind::Composite) {
        return Ok(None);
    }
    let model = ebm::io::composite::read_composite(path)
        .with_context(|| format!("reading model {}", path.display()))?;
    Ok(Some(model))
}

#[derive(Debug, Serialize)]
struct PartitionReport {
    #[serde(flatten)]
    log_z: LogZReport,
    log10_z: f64,
    method: &'static str,
    operation: &'static str,
    variables: usize,
    seconds: f64,
    model: String,
}

/// `ebm partition --model composite.json`: ln Z of a composite (see
/// `ebm::infer::composite::log_partition`). `flags` lists the partition flags given, refused here.
pub fn partition(
    path: &Path,
    model: &Composite,
    flags: &[(&str, bool)],
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    if let Some((flag, _)) = flags.iter().find(|(_, set)| *set) {
        return Err(usage(format!(
            "{flag} does not apply to composite models ({} is a {}: its ln Z comes from the \
             stored ln Z's of a mixture or from enumerating the visible units)",
            path.display(),
            model.operation()
        )));
    }
    let start = Instant::now();
    let mut bar = BarObserver::new(progress_enabled(global), 1, "partition", "");
    // Beyond the enumeration limit, products of non-RBM parts, negations and tempered
    // composites are estimated by AIS over their visible units (default settings, --seed).
    let visible_ais = matches!(
        model,
        Composite::Product(_) | Composite::Negation { .. } | Composite::Tempered { .. }
    ) && model.num_visible() > ebm::infer::composite::MAX_ENUMERATED_VISIBLE;
    let z = if visible_ais {
        let params = AisParams {
            betas: DEFAULT_AIS_BETAS,
            runs: DEFAULT_AIS_RUNS,
            seed: global.seed,
        };
        log_z_of(model, LogZRequest::Ais(params), None, &mut bar)
    } else {
        log_partition(model, &mut bar)
    }
    .with_context(|| format!("ln Z of {}", path.display()))?;
    bar.finish();
    let method = match (model, z.method) {
        _ if visible_ais => "ais-visible",
        (Composite::Mixture(_), LogZMethod::Exact) => "mixture-of-exact",
        (Composite::Mixture(_), LogZMethod::Ais) => "mixture-of-ais",
        (Composite::Rbm(_), _) => "rbm",
        (Composite::Factors(_), _) => "auto",
        _ => "enumerate-visible",
    };
    let report = PartitionReport {
        log_z: LogZReport::of(&z),
        log10_z: z.value / std::f64::consts::LN_10,
        method,
        operation: model.operation(),
        variables: model.num_visible(),
        seconds: start.elapsed().as_secs_f64(),
        model: path.display().to_string(),
    };
    if global.json {
        print_json(&report)?;
    } else {
        say(
            global,
            &format!(
                "ln Z = {} by {method} ({}, {} visible units), {:.3} s",
                describe_log_z(&z),
                report.operation,
                report.variables,
                report.seconds
            ),
        );
    }
    report.log_z.ais.warn_if_unreliable(
        "ebm partition uses the default AIS settings; `ebm evaluate --method ais` with a \
         larger --ais-betas estimates ln Z with more annealing steps",
    );
    Ok(())
}

#[derive(Debug, Serialize)]
struct EvaluateReport {
    model: String,
    data: String,
    examples: usize,
    operation: &'static str,
    log_likelihood: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_likelihood_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_likelihood_high: Option<f64>,
    /// Total probability of the distinct examples (with the ln Z reported).
    probability_mass: f64,
    #[serde(flatten)]
    log_z: LogZReport,
    method: &'static str,
    seconds: f64,
    seed: u64,
}

/// `ebm evaluate --model composite.json`: the average ln p(v) = -F(v) - ln Z; with an AIS ln Z
/// (a mixture of AIS-normalised parts) the interval [mean(-F) - high, mean(-F) - low] too.
pub fn evaluate(
    args: &super::evaluate::EvaluateArgs,
    model: &Composite,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    use super::evaluate::EvaluateMethodArg;
    let ais = AisParams {
        betas: args.ais_betas,
        runs: args.ais_runs,
        seed: global.seed,
    };
    ais.validate()?;
    let data = super::read_dataset(&args.data, args.threshold)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    if data.rows() == 0 {
        return Err(ebm::Error::param("data", "the dataset has no examples"))
            .with_context(|| format!("reading data {}", args.data.display()));
    }
    if data.cols() != model.num_visible() {
        return Err(ebm::Error::SizeMismatch(format!(
            "{} has {} columns per example, the model {} has {} visible units",
            args.data.display(),
            data.cols(),
            args.model.display(),
            model.num_visible()
        ))
        .into());
    }
    let start = Instant::now();
    let request = match args.method {
        EvaluateMethodArg::Auto => LogZRequest::Auto(ais),
        EvaluateMethodArg::Exact => LogZRequest::Exact,
        EvaluateMethodArg::Ais => LogZRequest::Ais(ais),
    };
    let mut bar = BarObserver::new(progress_enabled(global), 1, "ln Z", "");
    let z =
        log_z_of(model, request, Some(&data.column_means()), &mut bar).map_err(|e| match e {
            ebm::Error::InvalidParam { .. } => usage(format!("--method: {e}")),
            other => anyhow::Error::new(other).context(format!("ln Z of {}", args.model.display())),
        })?;
    bar.finish();
    let neg_f = mean_neg_free_energy(model, &data);
    if !neg_f.is_finite() {
        return Err(ebm::Error::InvalidModel(format!(
            "an example of {} has probability 0 under {} (ln p = -inf)",
            args.data.display(),
            args.model.display()
        ))
        .into());
    }
    // An AIS-normalised mixture: each example's ln p lies between its values with every
    // component's ln Z at the high and at the low end of its spread (see Composite::mixture_at).
    let bound = |pick: fn(&LogZ) -> f64| {
        model
            .mixture_at(pick)
            .map(|m| mean_neg_free_energy(&m, &data))
            .filter(|x| x.is_finite())
    };
    let ais_used = z.method == LogZMethod::Ais;
    let report = EvaluateReport {
        model: args.model.display().to_string(),
        data: args.data.display().to_string(),
        examples: data.rows(),
        operation: model.operation(),
        log_likelihood: neg_f - z.value,
        log_likelihood_low: match (ais_used, model) {
            (false, _) => None,
            (true, Composite::Mixture(_)) => bound(|z| z.high),
            (true, _) => Some(neg_f - z.high),
        },
        log_likelihood_high: match (ais_used, model) {
            (false, _) => None,
            (true, Composite::Mixture(_)) => bound(|z| z.low),
            (true, _) => z.low.is_finite().then_some(neg_f - z.low),
        },
        probability_mass: probability_mass(model, &data, z.value),
        log_z: LogZReport::of(&z),
        method: z.method.name(),
        seconds: start.elapsed().as_secs_f64(),
        seed: global.seed,
    };
    report.log_z.ais.warn_if_unreliable(RAISE_FLAGS);
    if global.json {
        print_json(&report)
    } else {
        let interval = match (report.log_likelihood_low, report.log_likelihood_high) {
            (Some(lo), Some(hi)) => format!(" (interval {lo:.4} .. {hi:.4} from the AIS spread)"),
            (Some(lo), None) => format!(" (at least {lo:.4}; the AIS spread reaches ln 0)"),
            _ => String::new(),
        };
        say(
            global,
            &format!(
                "average log-likelihood {:.4} nats{interval} over {} examples; ln Z = {}; \
                 probability of the distinct examples {:.6}",
                report.log_likelihood,
                report.examples,
                describe_log_z(&z),
                report.probability_mass
            ),
        );
        Ok(())
    }
}

/// The mean of -F(v) over the rows (blocks of 64 rows summed in order: the same figure for any
/// number of threads).
fn mean_neg_free_energy(model: &Composite, data: &ebm::dataset::Dataset) -> f64 {
    use rayon::prelude::*;
    data.data()
        .par_chunks(64 * data.cols())
        .map(|block| {
            block
                .chunks_exact(data.cols())
                .map(|v| -model.free_energy(v))
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum::<f64>()
        / data.rows() as f64
}

#[derive(Debug, Serialize)]
struct SampleReport {
    model: String,
    operation: &'static str,
    sampler: &'static str,
    chains: usize,
    steps: usize,
    n_visible: usize,
    fraction_of_ones: f64,
    seconds: f64,
    image: Option<String>,
    output: Option<String>,
    seed: u64,
}

/// `ebm sample --model composite.json`: an RBM composite by block Gibbs (as any RBM); any other
/// by `--chains` independent single-site chains (`--sampler gibbs|metropolis`) of `--steps`
/// sweeps each, their final states written as a dataset and/or a grid of tiles.
pub fn sample(
    path: &Path,
    model: &Composite,
    args: &SampleArgs,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let chain = &args.chain;
    for (flag, set) in [
        ("--marginals", args.marginals),
        ("--evidence", args.evidence.is_some()),
        ("--trace", chain.trace.is_some()),
        ("--sweeps", chain.sweeps.is_some()),
        ("--burn-in", chain.burn_in.is_some()),
        ("--beta", chain.beta.is_some()),
        ("--start", chain.start.is_some()),
    ] {
        if set {
            return Err(usage(format!(
                "{flag} does not apply to composite models (they are sampled by independent \
                 chains: use --chains, --steps, --sampler gibbs|metropolis, --image, --output)"
            )));
        }
    }
    let chains = args.chains.unwrap_or(super::sample_rbm::DEFAULT_CHAINS);
    let steps = args.steps.unwrap_or(super::sample_rbm::DEFAULT_STEPS);
    if let Some(rbm) = model.as_rbm() {
        if chain.sampler.is_some() {
            return Err(usage(
                "--sampler does not apply: this composite is an RBM, sampled by block Gibbs".into(),
            ));
        }
        return super::sample_rbm::run(
            path,
            rbm,
            chains,
            steps,
            chain.image.as_deref(),
            args.output.as_deref(),
            None,
            global,
        );
    }
    let (rule, sampler) = match chain.sampler {
        None | Some(SamplerArg::Gibbs) => (LocalRule::Gibbs, "gibbs"),
        Some(SamplerArg::Metropolis) => (LocalRule::Metropolis, "metropolis"),
        Some(_) => {
            return Err(usage(
                "--sampler: composite models take gibbs or metropolis (the cluster samplers \
                 need a ferromagnetic lattice)"
                    .into(),
            ));
        }
    };
    if chains == 0 {
        return Err(usage("--chains must be at least 1, got 0".into()));
    }
    let n = model.num_visible();
    let mut outputs = Outputs::new();
    outputs.declare(
        "--image",
        chain.image.as_deref(),
        PNG,
        "the grid of samples (a grey PNG)",
    )?;
    outputs.declare(
        "--output",
        args.output.as_deref(),
        DATASET,
        "the samples (a dataset)",
    )?;
    let side = super::sample_rbm::square_side(n);
    if chain.image.is_some() && side.is_none() {
        return Err(usage(format!(
            "--image needs a square number of visible units, the model has {n}"
        )));
    }
    let t0 = Instant::now();
    let mut bar = BarObserver::new(progress_enabled(global), 1, "sampling", "");
    let samples = sample_composite(model, rule, chains, steps, global.seed, &mut bar)
        .with_context(|| format!("sampling {}", path.display()))?;
    bar.finish();
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(p) = args.output.as_deref() {
        outputs.stage("--output", |w| {
            ebm::io::datasets::write_dataset_to(w, p, &samples)
        })?;
    }
    if let (Some(_), Some(side)) = (chain.image.as_ref(), side) {
        let tiles: Vec<Vec<f64>> = samples
            .iter_rows()
            .map(|r| r.iter().map(|&x| x as f64).collect())
            .collect();
        let (w, h, luma) = super::sample_rbm::tile_image(&tiles, side, false);
        outputs.stage_bytes("--image", &ebm::io::images::encode_grey_png(w, h, &luma)?)?;
    }
    let report = SampleReport {
        model: path.display().to_string(),
        operation: model.operation(),
        sampler,
        chains,
        steps,
        n_visible: n,
        fraction_of_ones: samples.fraction_of_ones(),
        seconds,
        image: chain.image.as_ref().map(|p| p.display().to_string()),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        seed: global.seed,
    };
    if global.json {
        print_json(&report)?;
    } else {
        say(
            global,
            &format!(
                "{chains} {sampler} chains x {steps} sweeps of a {} over {n} visible units in \
                 {seconds:.2} s; fraction of ones {:.4} (seed {})",
                report.operation, report.fraction_of_ones, global.seed
            ),
        );
    }
    outputs.commit()
}

/// What `ebm info` shows of a composite.
#[derive(Debug, Serialize)]
pub struct CompositeFacts {
    operation: &'static str,
    visible: usize,
    depth: usize,
    components: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    stored_log_z_exact: bool,
}

/// The facts of the manifest at `path` (already loaded as `model`).
pub fn facts(path: &Path, model: &Composite) -> anyhow::Result<CompositeFacts> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    Ok(CompositeFacts {
        operation: model.operation(),
        visible: model.num_visible(),
        depth: model.depth(),
        components: manifest
            .components
            .iter()
            .map(|c| serde_json::to_value(c).expect("plain data"))
            .collect(),
        alpha: manifest.alpha,
        temperature: manifest.temperature,
        stored_log_z_exact: model.stored_log_z_exact(),
    })
}

impl CompositeFacts {
    /// The human summary.
    pub fn describe(&self, file: &str) -> String {
        let mut s = format!(
            "{file}: composite model ({}), {} visible units, nested {} level(s)",
            self.operation, self.visible, self.depth
        );
        if let Some(a) = self.alpha {
            s.push_str(&format!("\n  alpha: {a}"));
        }
        if let Some(t) = self.temperature {
            s.push_str(&format!("\n  temperature: {t}"));
        }
        for (k, c) in self.components.iter().enumerate() {
            s.push_str(&format!("\n  component {k}: {c}"));
        }
        s.push_str(&format!(
            "\n  every stored ln Z exact: {}",
            if self.stored_log_z_exact { "yes" } else { "no" }
        ));
        s
    }
}
