//! `ebm info FILE`: what a file is and its key facts.
//!
//! Model files (UAI, RBM) are recognised by their content (`ebm::io::open_model`), whatever
//! their name; other kinds by the extension (`.PR`, dataset names of `io::datasets`, image
//! extensions), and by the first bytes when the extension says nothing.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::GlobalArgs;
use super::output::{print_json, say};
use super::read_dataset;
use ebm::infer::evidence::{Evidence, condition};
use ebm::io::datasets::{DatasetFormat, dataset_format};
use ebm::io::images::{DEFAULT_THRESHOLD, read_luma};
use ebm::io::safetensors::RbmFile;
use ebm::io::uai::{read_evidence, read_pr};
use ebm::io::{LoadedModel, ModelKind, open_model, sniff_model};
use ebm::model::FactorGraph;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ebm info data/images/horse.png\n  ebm info data/digits_train.txt --json\n  ebm info model.safetensors\n  ebm info data/uai/Grids_11.uai"
)]
pub struct InfoArgs {
    /// The file: an image, a dataset (.txt, .csv, .npy, IDX; optionally .gz), a UAI model
    /// (.uai) or its answer (.PR), or an RBM (.safetensors).
    pub file: PathBuf,
    /// Binarization threshold: grey level (0-255, default 128) for images; value for .csv/.npy
    /// (default 0.5) and IDX (default 128) datasets.
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// UAI evidence file (.evid) for a .uai model: checked against the model, and the facts are
    /// those of the model conditioned on it.
    #[arg(long, value_name = "FILE")]
    pub evidence: Option<PathBuf>,
}

/// What kind of file it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Dataset,
    Uai,
    Pr,
    Rbm,
    Composite,
}

#[derive(Debug, Serialize)]
struct Report {
    file: String,
    #[serde(flatten)]
    facts: Facts,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Facts {
    Image {
        width: usize,
        height: usize,
        threshold: f64,
        fraction_white: f64,
        grey_levels: usize,
    },
    Dataset {
        format: &'static str,
        gzip: bool,
        rows: usize,
        cols: usize,
        fraction_of_ones: f64,
        distinct_rows: usize,
        threshold: Option<f64>,
    },
    Uai {
        variables: usize,
        factors: usize,
        max_arity: usize,
        arity_counts: BTreeMap<usize, usize>,
        pairwise: bool,
        zero_entries: usize,
        ising_form: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        evidence_variables: Option<usize>,
    },
    PrAnswer {
        log10_z: f64,
        log_z: f64,
    },
    Composite(super::compose::CompositeFacts),
    Rbm {
        n_visible: usize,
        n_hidden: usize,
        parameters: usize,
        weights_range: [f64; 2],
        visible_bias_range: [f64; 2],
        hidden_bias_range: [f64; 2],
        metadata: BTreeMap<String, String>,
        extra_tensors: BTreeMap<String, Vec<usize>>,
    },
}

pub fn run(args: &InfoArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let path = &args.file;
    if path.is_dir() {
        return Err(super::UsageError(format!(
            "{} is a folder; give a file (image, dataset, .uai, .PR or .safetensors)",
            path.display()
        ))
        .into());
    }
    let kind = detect(path).with_context(|| format!("reading {}", path.display()))?;
    if args.threshold.is_some() && !matches!(kind, Kind::Image | Kind::Dataset) {
        return Err(super::UsageError(format!(
            "--threshold applies to images and datasets; {} is a model or an answer file",
            path.display()
        ))
        .into());
    }
    if args.evidence.is_some() && kind != Kind::Uai {
        return Err(super::UsageError(format!(
            "--evidence applies to UAI models (.uai); {} is not one",
            path.display()
        ))
        .into());
    }
    let facts = match kind {
        Kind::Image => image_facts(path, args.threshold)
            .with_context(|| format!("reading image {}", path.display()))?,
        Kind::Dataset => dataset_facts(path, args.threshold)
            .with_context(|| format!("reading dataset {}", path.display()))?,
        Kind::Uai | Kind::Rbm | Kind::Composite => {
            match open_model(path).with_context(|| format!("reading model {}", path.display()))? {
                LoadedModel::Factors(graph) => uai_facts(graph, args.evidence.as_deref())?,
                LoadedModel::Rbm(file) => rbm_facts(&file),
                LoadedModel::Composite(c) => Facts::Composite(super::compose::facts(path, &c)?),
                LoadedModel::GaussianRbm(file) => rbm_facts(&super::gaussian::as_rbm_file(&file)?),
            }
        }
        Kind::Pr => {
            let log10_z =
                read_pr(path).with_context(|| format!("reading answer {}", path.display()))?;
            Facts::PrAnswer {
                log10_z,
                log_z: log10_z * std::f64::consts::LN_10,
            }
        }
    };
    let report = Report {
        file: path.to_string_lossy().into_owned(),
        facts,
    };
    if global.json {
        print_json(&report)?;
    } else {
        say(global, &describe(&report));
    }
    Ok(())
}

/// The kind of `path`: a model by its first bytes, else by extension, else by its first bytes.
fn detect(path: &Path) -> anyhow::Result<Kind> {
    let head = read_head(path)?;
    match sniff_model(&head) {
        Some(ModelKind::Uai) => return Ok(Kind::Uai),
        Some(ModelKind::Rbm) => return Ok(Kind::Rbm),
        Some(ModelKind::Composite) => return Ok(Kind::Composite),
        None => {}
    }
    if dataset_format(path).is_some() {
        return Ok(Kind::Dataset);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "uai" => return Ok(Kind::Uai),
        "pr" => return Ok(Kind::Pr),
        "safetensors" => return Ok(Kind::Rbm),
        "png" | "pbm" | "pgm" | "ppm" | "pnm" => return Ok(Kind::Image),
        _ => {}
    }
    let head = &head[..];
    let text = String::from_utf8_lossy(head);
    let first_word = text.split_whitespace().next().unwrap_or("");
    if head.starts_with(b"\x89PNG")
        || (head.len() >= 2 && head[0] == b'P' && (b'1'..=b'6').contains(&head[1]))
    {
        Ok(Kind::Image)
    } else if first_word == "PR" {
        Ok(Kind::Pr)
    } else {
        Err(super::UsageError(
            "cannot tell what kind of file this is: expected an image (.png, .pbm, .pgm, .ppm), a \
             dataset (.txt, .csv, .npy, *-ubyte, *.idx, optionally .gz), a UAI model (.uai), a \
             .PR answer or an RBM (.safetensors)"
                .into(),
        )
        .into())
    }
}

/// The first 16 bytes of `path` (fewer when the file is shorter).
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)?.take(16).read_to_end(&mut head)?;
    Ok(head)
}

fn image_facts(path: &Path, threshold: Option<f64>) -> anyhow::Result<Facts> {
    let threshold = threshold.unwrap_or(DEFAULT_THRESHOLD as f64);
    if !(0.0..=256.0).contains(&threshold) {
        return Err(super::UsageError(format!(
            "--threshold for an image is a grey level in [0, 256], got {threshold}"
        ))
        .into());
    }
    let (width, height, luma) = read_luma(path)?;
    let white = luma.iter().filter(|&&l| l as f64 >= threshold).count();
    let mut seen = [false; 256];
    for &l in &luma {
        seen[l as usize] = true;
    }
    Ok(Facts::Image {
        width,
        height,
        threshold,
        fraction_white: white as f64 / luma.len() as f64,
        grey_levels: seen.iter().filter(|&&s| s).count(),
    })
}

fn dataset_facts(path: &Path, threshold: Option<f64>) -> anyhow::Result<Facts> {
    let (format, gzip) = dataset_format(path).expect("detected as a dataset");
    let data = read_dataset(path, threshold)?;
    let distinct: HashSet<&[u8]> = data.iter_rows().collect();
    Ok(Facts::Dataset {
        format: match format {
            DatasetFormat::Txt => "txt",
            DatasetFormat::Csv => "csv",
            DatasetFormat::Npy => "npy",
            DatasetFormat::Idx => "idx",
        },
        gzip,
        rows: data.rows(),
        cols: data.cols(),
        fraction_of_ones: data.fraction_of_ones(),
        distinct_rows: distinct.len(),
        threshold: match format {
            DatasetFormat::Txt => None,
            _ => threshold.or(format.default_threshold()),
        },
    })
}

fn uai_facts(graph: FactorGraph, evidence: Option<&Path>) -> anyhow::Result<Facts> {
    let (graph, evidence_variables) = match evidence {
        None => (graph, None),
        Some(evid) => {
            let pairs = read_evidence(evid)
                .with_context(|| format!("reading evidence {}", evid.display()))?;
            let conditioned = Evidence::new(graph.num_vars(), &pairs)
                .and_then(|e| condition(&graph, &e))
                .with_context(|| format!("evidence {}", evid.display()))?;
            let observed = conditioned.evidence.len();
            (conditioned.graph, Some(observed))
        }
    };
    let mut arity_counts = BTreeMap::new();
    let mut zero_entries = 0;
    for f in graph.factors() {
        *arity_counts.entry(f.arity()).or_insert(0) += 1;
        zero_entries += f.table().iter().filter(|&&t| t == 0.0).count();
    }
    let pairwise = graph.max_arity() <= 2;
    Ok(Facts::Uai {
        variables: graph.num_vars(),
        factors: graph.factors().len(),
        max_arity: graph.max_arity(),
        arity_counts,
        pairwise,
        zero_entries,
        ising_form: pairwise && zero_entries == 0,
        evidence_variables,
    })
}

fn range(values: &[f64]) -> [f64; 2] {
    values
        .iter()
        .fold([f64::INFINITY, f64::NEG_INFINITY], |[lo, hi], &x| {
            [lo.min(x), hi.max(x)]
        })
}

fn rbm_facts(file: &RbmFile) -> Facts {
    let rbm = &file.rbm;
    Facts::Rbm {
        n_visible: rbm.n_visible(),
        n_hidden: rbm.n_hidden(),
        parameters: rbm.n_visible() * rbm.n_hidden() + rbm.n_visible() + rbm.n_hidden(),
        weights_range: range(rbm.weights()),
        visible_bias_range: range(rbm.visible_bias()),
        hidden_bias_range: range(rbm.hidden_bias()),
        metadata: file.metadata.clone(),
        extra_tensors: file
            .extra
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone()))
            .collect(),
    }
}

/// The human summary (several lines).
fn describe(report: &Report) -> String {
    let file = &report.file;
    match &report.facts {
        Facts::Image {
            width,
            height,
            threshold,
            fraction_white,
            grey_levels,
        } => format!(
            "{file}: image, {width} x {height} pixels, {grey_levels} grey level(s)\n  \
             white (grey >= {threshold}): {:.2}%",
            100.0 * fraction_white
        ),
        Facts::Dataset {
            format,
            gzip,
            rows,
            cols,
            fraction_of_ones,
            distinct_rows,
            threshold,
        } => {
            let mut s = format!(
                "{file}: dataset ({format}{}), {rows} examples x {cols} bits\n  \
                 fraction of ones: {fraction_of_ones:.4}\n  distinct examples: {distinct_rows}",
                if *gzip { ", gzip" } else { "" }
            );
            if let Some(t) = threshold {
                s.push_str(&format!("\n  binarized at: value >= {t}"));
            }
            s
        }
        Facts::Uai {
            variables,
            factors,
            max_arity,
            arity_counts,
            pairwise,
            zero_entries,
            ising_form,
            evidence_variables,
        } => {
            let arities: Vec<String> = arity_counts
                .iter()
                .map(|(a, n)| format!("{n} of arity {a}"))
                .collect();
            let conditioned = match evidence_variables {
                Some(k) => format!(" conditioned on {k} observed variable(s)"),
                None => String::new(),
            };
            format!(
                "{file}: UAI model{conditioned}, {variables} binary variables, {factors} factors ({})\n  \
                 max arity: {max_arity} ({})\n  zero table entries: {zero_entries}\n  \
                 Ising form (pairwise, no zeros): {}",
                arities.join(", "),
                if *pairwise {
                    "pairwise"
                } else {
                    "not pairwise"
                },
                if *ising_form { "yes" } else { "no" }
            )
        }
        Facts::Composite(c) => c.describe(file),
        Facts::PrAnswer { log10_z, log_z } => {
            format!(
                "{file}: UAI partition-function answer\n  log10 Z = {log10_z}\n  ln Z = {log_z}"
            )
        }
        Facts::Rbm {
            n_visible,
            n_hidden,
            parameters,
            weights_range,
            visible_bias_range,
            hidden_bias_range,
            metadata,
            extra_tensors,
        } => {
            let mut s = format!(
                "{file}: RBM, {n_visible} visible x {n_hidden} hidden units ({parameters} parameters)\n  \
                 weights in [{:.4}, {:.4}]\n  visible bias in [{:.4}, {:.4}]\n  hidden bias in [{:.4}, {:.4}]",
                weights_range[0],
                weights_range[1],
                visible_bias_range[0],
                visible_bias_range[1],
                hidden_bias_range[0],
                hidden_bias_range[1]
            );
            for (k, v) in metadata {
                s.push_str(&format!("\n  metadata {k}: {v}"));
            }
            for (k, shape) in extra_tensors {
                s.push_str(&format!("\n  extra tensor {k}: {shape:?}"));
            }
            s
        }
    }
}
