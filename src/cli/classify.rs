//! `ebm classify`: the Bayes decision of a class-conditional classifier (one RBM per class, as
//! written by `ebm train-rbm --labels`), with accuracy and the confusion matrix against labels.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::GlobalArgs;
use super::output::{Outputs, print_json, say};
use super::read_dataset;
use ebm::io::classifier::read_classifier;
use ebm::io::labels::{check_label_count, read_labels};
use ebm::learn::classifier::{ClassModel, argmax_rows, log_posteriors};
use ebm::metrics::ConfusionMatrix;

const AFTER_HELP: &str = "Examples:
  ebm train-rbm --data data/digits_train.txt --labels data/digits_train_labels.txt --hidden 16 --persistent --epochs 200 --output digits.json
  ebm classify --model digits.json --data data/digits_test.txt --labels data/digits_test_labels.txt --json
  ebm classify --model digits.json --data data/digits_test.txt --output predictions.txt

Each example v gets the class argmax_k [-F_k(v) - ln Z_k + ln prior_k] (ties: the lowest label),
with F_k, ln Z_k and prior_k of class k's RBM as stored in the manifest. --output writes one
predicted label per line. With --labels (one integer per line), accuracy and the confusion
matrix (rows: true class, columns: predicted class, both in the manifest's label order).";

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct ClassifyArgs {
    /// The classifier manifest (.json) written by `ebm train-rbm --labels`.
    #[arg(long)]
    pub model: PathBuf,
    /// The examples to classify (.txt, .csv, .npy, IDX; optionally .gz).
    #[arg(long)]
    pub data: PathBuf,
    /// Binarization threshold for .csv/.npy (default 0.5) and IDX (default 128) data.
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// True labels, one integer per line for each row of --data: adds accuracy and the
    /// confusion matrix.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Write the predicted labels here, one per line (.txt).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    data: String,
    examples: usize,
    classes: Vec<u32>,
    /// How each class's ln Z was obtained ("exact" or "ais"), in class order.
    log_z_methods: Vec<String>,
    /// Predictions per class, in class order.
    predicted_counts: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accuracy: Option<f64>,
    /// Rows: true class; columns: predicted class (class order of `classes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    confusion_matrix: Option<Vec<Vec<u64>>>,
    seconds: f64,
}

pub fn run(args: &ClassifyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut outputs = Outputs::new();
    outputs.declare(
        "--output",
        args.output.as_deref(),
        &[".txt"],
        "the predicted labels (one per line)",
    )?;
    let classifier = read_classifier(&args.model)
        .with_context(|| format!("reading classifier {}", args.model.display()))?;
    let data = read_dataset(&args.data, args.threshold)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    let classes: Vec<u32> = classifier
        .manifest
        .classes
        .iter()
        .map(|c| c.label)
        .collect();
    if data.cols() != classifier.manifest.n_visible {
        return Err(ebm::Error::SizeMismatch(format!(
            "{} has {} columns per example, the classifier {} has {} visible units",
            args.data.display(),
            data.cols(),
            args.model.display(),
            classifier.manifest.n_visible
        ))
        .into());
    }
    // Truth as class indices; a label the classifier does not know is refused with its line.
    let truth = match &args.labels {
        Some(path) => {
            let context = || format!("--labels {}", path.display());
            let labels = read_labels(path).with_context(context)?;
            check_label_count(&labels, data.rows()).with_context(context)?;
            let mut idx = Vec::with_capacity(labels.len());
            for (line, l) in labels.iter().enumerate() {
                let k = classes.iter().position(|c| c == l).ok_or_else(|| {
                    ebm::Error::parse(
                        line + 1,
                        format!("label {l} is not a class of the classifier (classes {classes:?})"),
                    )
                });
                idx.push(k.with_context(context)?);
            }
            Some(idx)
        }
        None => None,
    };
    let t0 = Instant::now();
    let models: Vec<ClassModel> = classifier
        .manifest
        .classes
        .iter()
        .zip(&classifier.models)
        .map(|(c, m)| ClassModel {
            model: m,
            log_z: c.log_z,
            log_prior: c.prior.ln(),
        })
        .collect();
    let scores = log_posteriors(&models, &data)?;
    let predicted = argmax_rows(&scores, classes.len());
    let mut predicted_counts = vec![0usize; classes.len()];
    for &p in &predicted {
        predicted_counts[p] += 1;
    }
    let confusion = match &truth {
        Some(t) => Some(ConfusionMatrix::new(classes.len(), t, &predicted)?),
        None => None,
    };
    if args.output.is_some() {
        let mut text = String::new();
        for &p in &predicted {
            let _ = writeln!(text, "{}", classes[p]);
        }
        outputs.stage_bytes("--output", text.as_bytes())?;
    }
    let report = Report {
        model: args.model.to_string_lossy().into_owned(),
        data: args.data.to_string_lossy().into_owned(),
        examples: data.rows(),
        classes: classes.clone(),
        log_z_methods: classifier
            .manifest
            .classes
            .iter()
            .map(|c| c.log_z_method.clone())
            .collect(),
        predicted_counts,
        accuracy: confusion.as_ref().map(ConfusionMatrix::accuracy),
        confusion_matrix: confusion.as_ref().map(ConfusionMatrix::rows),
        seconds: t0.elapsed().as_secs_f64(),
    };
    if global.json {
        print_json(&report)?;
    } else {
        let mut line = format!(
            "{} examples, {} classes",
            report.examples,
            report.classes.len()
        );
        if let Some(a) = report.accuracy {
            let _ = write!(line, ": accuracy {a:.4}");
        }
        say(global, &line);
        if let Some(m) = &report.confusion_matrix {
            say(
                global,
                "confusion matrix (rows: true class, columns: predicted):",
            );
            let header: String = classes.iter().map(|c| format!("{c:>5}")).collect();
            say(global, &format!("     {header}"));
            for (c, row) in classes.iter().zip(m) {
                let cells: String = row.iter().map(|n| format!("{n:>5}")).collect();
                say(global, &format!("{c:>5}{cells}"));
            }
        }
    }
    outputs.commit()
}
