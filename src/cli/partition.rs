//! `ebm partition`: exact ln Z of an Ising lattice, a UAI model or an RBM; shards and their merge.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::GlobalArgs;
use super::lattice::LatticeArgs;
use super::output::{Outputs, print_json, say};
use super::ui::{BarObserver, progress_enabled};
use ebm::infer::eliminate::Heuristic;
use ebm::infer::evidence::{Evidence, condition};
use ebm::infer::exact::Shard;
use ebm::infer::partition::{
    Budget, MAX_LOG_WEIGHT, Method, Model, PartitionOptions, exact_log_partition,
};
use ebm::infer::shards::{ShardRecord, fingerprint, merge_records, parse_record, parse_shard_spec};
use ebm::io::uai::{format_mar, format_pr, read_evidence};
use ebm::model::{FactorGraph, IsingLattice, Rbm};

const AFTER_HELP: &str = "Examples:
  ebm partition ising --width 4 --height 4 --beta 0.4406868
  ebm partition ising --width 6 --height 6 --method enumerate --json
  ebm partition ising --width 4096 --height 4096 --beta 0.44 --method kaufman
  ebm partition --model data/uai/Grids_11.uai --method eliminate
  ebm partition --model rbm.safetensors
  ebm partition ising --width 6 --height 6 --method enumerate --shard 3/8 > part3.json
  ebm partition merge part*.json

Methods: enumerate (all 2^n states: n <= 40, or n <= 63 in --shard parts of <= 2^40), rbm (smaller RBM layer), eliminate (variable
elimination; reports the induced width), transfer (lattices of small width), kaufman (zero-field
torus, any size), auto (cheapest by estimated cost; refuses when none fits --max-seconds and
--max-memory-mb). ln Z is the natural log; log10_z = ln Z / ln 10.";

/// Exact ln Z of a model given by `--model FILE` or by the `ising` subcommand.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct PartitionArgs {
    #[command(subcommand)]
    pub target: Option<Target>,
    /// Model file: a UAI MARKOV model (.uai) or an RBM (.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Exact method [default: auto].
    #[arg(long, global = true, value_enum)]
    pub method: Option<PartitionMethodArg>,
    /// Also compute P(x_i = 1) for every variable (enumerate or eliminate).
    #[arg(long, global = true)]
    pub marginals: bool,
    /// Sum only the K-th (0-based) of N equal parts of the enumeration and print it as JSON;
    /// combine the parts with `ebm partition merge`.
    #[arg(long, global = true, value_name = "K/N")]
    pub shard: Option<String>,
    /// Elimination ordering heuristic [default: min-fill].
    #[arg(long, global = true, value_enum)]
    pub ordering: Option<OrderingArg>,
    /// auto refuses when every method's estimated time exceeds this many seconds [default: 3600].
    #[arg(long, global = true, allow_negative_numbers = true)]
    pub max_seconds: Option<f64>,
    /// Memory limit for tables (elimination, transfer), in MiB [default: 2048].
    #[arg(long, global = true, allow_negative_numbers = true)]
    pub max_memory_mb: Option<f64>,
    /// UAI evidence file (.evid: k, then k variable/value pairs) for a --model .uai: ln Z becomes
    /// ln of the sum over the states that agree with it, marginals become conditional.
    #[arg(long, global = true, value_name = "FILE")]
    pub evidence: Option<PathBuf>,
    /// Also write the answer in the UAI competition format, chosen by extension: x.PR (log10 Z)
    /// or x.MAR (marginals; computed even without --marginals).
    #[arg(long, global = true, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// What `--output` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Pr,
    Mar,
}

/// The kind of `--output` file, by extension (any case), and a check that its folder exists.
fn answer_kind(path: &Path) -> anyhow::Result<Answer> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let kind = match ext.as_deref() {
        Some("pr") => Answer::Pr,
        Some("mar") => Answer::Mar,
        _ => {
            return Err(usage(format!(
                "--output {}: expected a .PR (log10 Z) or .MAR (marginals) file",
                path.display()
            )));
        }
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| !p.is_dir()) {
        return Err(usage(format!(
            "--output {}: the folder {} does not exist",
            path.display(),
            parent.expect("checked").display()
        )));
    }
    Ok(kind)
}

#[derive(Debug, Subcommand)]
pub enum Target {
    /// A square-lattice Ising model given by flags.
    Ising(IsingArgs),
    /// Combine the JSON outputs of `--shard K/N` runs into ln Z.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct IsingArgs {
    #[command(flatten)]
    pub lattice: LatticeArgs,
    /// Inverse temperature beta.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub beta: f64,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// JSON files written by `ebm partition ... --shard K/N`, one per shard.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PartitionMethodArg {
    Auto,
    Enumerate,
    Eliminate,
    Transfer,
    Kaufman,
    Rbm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderingArg {
    MinFill,
    MinDegree,
}

impl PartitionMethodArg {
    fn method(self) -> Method {
        match self {
            PartitionMethodArg::Auto => Method::Auto,
            PartitionMethodArg::Enumerate => Method::Enumerate,
            PartitionMethodArg::Eliminate => Method::Eliminate,
            PartitionMethodArg::Transfer => Method::Transfer,
            PartitionMethodArg::Kaufman => Method::Kaufman,
            PartitionMethodArg::Rbm => Method::Rbm,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    log_z: f64,
    log10_z: f64,
    method: &'static str,
    variables: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence_variables: Option<usize>,
    seconds: f64,
    model: String,
    estimated_seconds: f64,
    cost: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    induced_width: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    states: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    marginals: Option<Vec<f64>>,
    threads: usize,
}

#[derive(Debug, Serialize)]
struct MergeReport {
    log_z: f64,
    log10_z: f64,
    method: String,
    variables: usize,
    seconds: f64,
    model: String,
    fingerprint: String,
    shards: u64,
    states: u64,
}

/// The error for a whole model with Z = 0 (ln Z = -inf has no JSON number).
fn zero_partition(description: &str) -> anyhow::Error {
    anyhow::Error::new(ebm::Error::InvalidModel(
        "no state has positive weight: Z = 0, so ln Z = -inf".into(),
    ))
    .context(format!("ln Z of {description}"))
}

/// A number as a user would type it: plain for ordinary magnitudes, `1e308` style otherwise.
fn short(x: f64) -> String {
    if x == 0.0 || (1e-4..1e15).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

fn usage(msg: String) -> anyhow::Error {
    super::UsageError(msg).into()
}

fn parse_shard(text: &str) -> anyhow::Result<Shard> {
    parse_shard_spec(text).map_err(|e| usage(format!("--shard {text}: {e}")))
}

enum Loaded {
    Lattice(IsingLattice, f64),
    Factors(FactorGraph),
    Rbm(Rbm),
    Composite(ebm::model::Composite),
    Gaussian(Box<ebm::io::safetensors::GaussianRbmFile>),
}

fn load_file(path: &Path) -> anyhow::Result<Loaded> {
    // The file's content decides its kind, not its name.
    match ebm::io::open_model(path).with_context(|| format!("reading model {}", path.display()))? {
        ebm::io::LoadedModel::Factors(graph) => Ok(Loaded::Factors(graph)),
        ebm::io::LoadedModel::Rbm(file) => Ok(Loaded::Rbm(file.rbm)),
        ebm::io::LoadedModel::Composite(c) => Ok(match c.as_rbm() {
            Some(rbm) => Loaded::Rbm(rbm.clone()),
            None => Loaded::Composite(c),
        }),
        ebm::io::LoadedModel::GaussianRbm(file) => Ok(Loaded::Gaussian(Box::new(file))),
    }
}

pub fn run(args: &PartitionArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let (loaded, description, fp_source): (Loaded, String, Vec<u8>) =
        match (&args.target, &args.model) {
            (Some(Target::Merge(m)), None) => {
                let given = [
                    ("--evidence", args.evidence.is_some()),
                    ("--output", args.output.is_some()),
                    ("--method", args.method.is_some()),
                    ("--marginals", args.marginals),
                    ("--shard", args.shard.is_some()),
                    ("--ordering", args.ordering.is_some()),
                    ("--max-seconds", args.max_seconds.is_some()),
                    ("--max-memory-mb", args.max_memory_mb.is_some()),
                ];
                if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                    return Err(usage(format!(
                        "{flag} does not apply to `partition merge` (it only adds up the \
                         shards' sums; give {flag} to the --shard runs)"
                    )));
                }
                return merge(m, global, start);
            }
            (Some(_), Some(_)) => {
                return Err(usage(
                    "give either --model FILE or a subcommand (ising, merge), not both".into(),
                ));
            }
            (None, None) => {
                return Err(usage(
                    "nothing to compute: give --model FILE (.uai or .safetensors) or \
                     `ising --width W --height H` (see `ebm partition --help`)"
                        .into(),
                ));
            }
            (Some(Target::Ising(i)), None) => {
                if !i.beta.is_finite() {
                    return Err(usage(format!("--beta must be finite, got {}", i.beta)));
                }
                let l = &i.lattice;
                for (flag, v) in [("--coupling", l.coupling), ("--field", l.field)] {
                    if !v.is_finite() {
                        return Err(usage(format!("{flag} must be finite, got {v}")));
                    }
                }
                let lattice = l.lattice().map_err(|e| usage(e.to_string()))?;
                let bound = Model::Lattice {
                    lattice: &lattice,
                    beta: i.beta,
                }
                .log_weight_bound();
                if bound.is_nan() || bound > MAX_LOG_WEIGHT {
                    return Err(usage(format!(
                        "--beta {} with --coupling {} and --field {} on {} sites: a state's \
                         log-weight can reach {bound:e}, beyond {MAX_LOG_WEIGHT:e}, so ln Z would \
                         overflow; use smaller values",
                        short(i.beta),
                        short(l.coupling),
                        short(l.field),
                        lattice.num_sites()
                    )));
                }
                let desc = format!(
                    "ising {}x{} {:?} J={} h={} beta={}",
                    l.width,
                    l.height,
                    l.boundary.boundary(),
                    l.coupling,
                    l.field,
                    i.beta
                );
                let bytes = desc.clone().into_bytes();
                (Loaded::Lattice(lattice, i.beta), desc, bytes)
            }
            (None, Some(path)) => {
                let loaded = load_file(path)?;
                if let Loaded::Gaussian(file) = &loaded {
                    let given = [
                        ("--evidence", args.evidence.is_some()),
                        ("--output", args.output.is_some()),
                        ("--method", args.method.is_some()),
                        ("--marginals", args.marginals),
                        ("--shard", args.shard.is_some()),
                        ("--ordering", args.ordering.is_some()),
                    ];
                    if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                        return Err(usage(format!(
                            "{flag} does not apply to a Gaussian RBM (its ln Z is exact by \
                             enumerating the hidden units)"
                        )));
                    }
                    return super::gaussian::partition(path, file, global, start);
                }
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading model {}", path.display()))?;
                (loaded, path.display().to_string(), bytes)
            }
        };
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let answer = args.output.as_deref().map(answer_kind).transpose()?;
    // The answer file is checked now and staged; it is renamed into place after the report.
    let mut outputs = Outputs::new();
    outputs.declare(
        "--output",
        args.output.as_deref(),
        &[".pr", ".mar"],
        "the answer (.PR or .MAR)",
    )?;
    if shard.is_some() && answer.is_some() {
        return Err(usage(
            "--output writes a whole answer; a --shard run prints its part as JSON for \
             `partition merge`"
                .into(),
        ));
    }
    // Evidence: the model is replaced by the one conditioned on it (UAI models only).
    let mut fp_source = fp_source;
    let (loaded, conditioned) = match (&args.evidence, loaded) {
        (None, loaded) => (loaded, None),
        (Some(evid), Loaded::Factors(graph)) => {
            let pairs = read_evidence(evid)
                .with_context(|| format!("reading evidence {}", evid.display()))?;
            let evidence = Evidence::new(graph.num_vars(), &pairs)
                .and_then(|e| condition(&graph, &e))
                .with_context(|| format!("evidence {}", evid.display()))?;
            fp_source.extend_from_slice(b"\nevidence\n");
            fp_source.extend(
                pairs
                    .iter()
                    .flat_map(|&(v, x)| format!("{v} {x} ").into_bytes()),
            );
            (Loaded::Factors(evidence.graph.clone()), Some(evidence))
        }
        (Some(_), _) => {
            return Err(usage(
                "--evidence applies to UAI models (--model FILE.uai) only".into(),
            ));
        }
    };
    let max_seconds = args.max_seconds.unwrap_or(Budget::default().max_seconds);
    let max_memory_mb = args
        .max_memory_mb
        .unwrap_or(Budget::default().max_bytes / (1024.0 * 1024.0));
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(max_seconds) || !positive(max_memory_mb) {
        return Err(usage(format!(
            "--max-seconds and --max-memory-mb must be positive, got {max_seconds} and \
             {max_memory_mb}"
        )));
    }
    let opts = PartitionOptions {
        marginals: args.marginals || answer == Some(Answer::Mar),
        shard: shard.unwrap_or(Shard::WHOLE),
        budget: Budget {
            max_seconds,
            max_bytes: max_memory_mb * 1024.0 * 1024.0,
        },
        heuristic: match args.ordering.unwrap_or(OrderingArg::MinFill) {
            OrderingArg::MinFill => Heuristic::MinFill,
            OrderingArg::MinDegree => Heuristic::MinDegree,
        },
    };
    if shard.is_some() && opts.marginals {
        return Err(usage("--marginals cannot be combined with --shard".into()));
    }
    let model = match &loaded {
        Loaded::Composite(c) => {
            let flags = [
                ("--method", args.method.is_some()),
                ("--marginals", args.marginals),
                ("--shard", args.shard.is_some()),
                ("--ordering", args.ordering.is_some()),
                ("--max-seconds", args.max_seconds.is_some()),
                ("--max-memory-mb", args.max_memory_mb.is_some()),
                ("--output", args.output.is_some()),
            ];
            let path = args
                .model
                .as_deref()
                .expect("a composite comes from --model");
            return super::compose::partition(path, c, &flags, global);
        }
        Loaded::Lattice(l, beta) => Model::Lattice {
            lattice: l,
            beta: *beta,
        },
        Loaded::Factors(g) => Model::Factors(g),
        Loaded::Rbm(r) => Model::Rbm(r),
        Loaded::Gaussian(_) => unreachable!("Gaussian RBMs are handled when loaded"),
    };
    let method = args.method.unwrap_or(PartitionMethodArg::Auto).method();
    // A bar only for the long-running enumerations (total set by the first report).
    let mut bar = BarObserver::new(progress_enabled(global), 1, "partition", "");
    let result = exact_log_partition(&model, method, &opts, &mut bar).map_err(|e| match e {
        ebm::Error::InvalidParam { .. } => usage(e.to_string()),
        other => anyhow::Error::new(other).context(format!("ln Z of {description}")),
    })?;
    bar.finish();
    let seconds = start.elapsed().as_secs_f64();
    if let Some(shard) = shard {
        let report = ShardRecord {
            shard: format!("{}/{}", shard.index, shard.count),
            shard_index: shard.index,
            shard_count: shard.count,
            log_sum: result.log_z,
            states: result.states.unwrap_or(0),
            method: result.method.name().into(),
            fingerprint: fingerprint(&[&fp_source, result.method.name().as_bytes()]),
            model: description,
            variables: conditioned
                .as_ref()
                .map_or(model.num_vars(), |c| c.evidence.num_vars()),
            seconds,
        };
        // A shard's result is data for `merge`: always JSON on stdout.
        return print_json(&report);
    }
    if result.log_z == f64::NEG_INFINITY {
        if let Some(evid) = &args.evidence {
            return Err(anyhow::Error::new(ebm::Error::param(
                "evidence",
                format!(
                    "{}: the evidence has probability zero (no state that agrees with it has \
                     positive weight)",
                    evid.display()
                ),
            ))
            .context(format!("ln Z of {description}")));
        }
        return Err(zero_partition(&description));
    }
    // Marginals of the original variables: the observed ones at their value.
    let marginals = match (&result.marginals, &conditioned) {
        (Some(m), Some(c)) => Some(c.expand(m, |v| v as f64)),
        (m, _) => m.clone(),
    };
    let log10_z = result.log_z / std::f64::consts::LN_10;
    match answer {
        Some(Answer::Pr) => outputs.stage_bytes("--output", format_pr(log10_z)?.as_bytes())?,
        Some(Answer::Mar) => outputs.stage_bytes(
            "--output",
            format_mar(marginals.as_deref().expect("computed for .MAR"))?.as_bytes(),
        )?,
        None => {}
    }
    let report = Report {
        log_z: result.log_z,
        log10_z,
        method: result.method.name(),
        variables: conditioned
            .as_ref()
            .map_or(model.num_vars(), |c| c.evidence.num_vars()),
        evidence_variables: conditioned.as_ref().map(|c| c.evidence.len()),
        seconds,
        model: description,
        estimated_seconds: result.estimate.seconds,
        cost: result.estimate.detail.clone(),
        induced_width: result.induced_width,
        states: result.states,
        marginals: if args.marginals { marginals } else { None },
        threads: rayon::current_num_threads(),
    };
    if global.json {
        print_json(&report)?;
    } else {
        let mut text = format!(
            "ln Z = {:.15} (log10 Z = {:.15}) by {}, {} variables, {:.3} s ({})",
            report.log_z, report.log10_z, report.method, report.variables, seconds, report.cost
        );
        if let Some(k) = report.evidence_variables {
            text.push_str(&format!(
                "\nconditioned on {k} observed variable(s): ln Z is ln of the sum over the states \
                 that agree with the evidence"
            ));
        }
        if let Some(m) = &report.marginals {
            text.push_str("\nP(x_i = 1):");
            for (i, p) in m.iter().enumerate() {
                text.push_str(&format!("\n  {i} {p:.12}"));
            }
        }
        say(global, &text);
    }
    outputs.commit()
}

fn merge(args: &MergeArgs, global: &GlobalArgs, start: Instant) -> anyhow::Result<()> {
    let mut records: Vec<(ShardRecord, String)> = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading shard {}", path.display()))?;
        let name = path.display().to_string();
        records.push((parse_record(&text, &name)?, name));
    }
    let merged = merge_records(&records)?;
    let log_z = merged.log_z;
    let count = merged.shards;
    if log_z == f64::NEG_INFINITY {
        return Err(zero_partition(&merged.model));
    }
    let report = MergeReport {
        log_z,
        log10_z: log_z / std::f64::consts::LN_10,
        method: merged.method,
        variables: merged.variables,
        seconds: start.elapsed().as_secs_f64() + merged.seconds,
        model: merged.model,
        fingerprint: merged.fingerprint,
        shards: count,
        states: merged.states,
    };
    if global.json {
        print_json(&report)
    } else {
        say(
            global,
            &format!(
                "ln Z = {:.15} (log10 Z = {:.15}) from {count} shards of {} ({}, {} states)",
                log_z, report.log10_z, report.model, report.method, report.states
            ),
        );
        Ok(())
    }
}
