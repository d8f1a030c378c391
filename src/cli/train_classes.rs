//! `ebm train-rbm --labels L.txt --output C.json`: one RBM per class with the same settings,
//! written next to a classifier manifest (see `ebm::io::classifier`).
//!
//! Class k (in ascending label order) trains on its rows only, with the seed
//! `ebm::learn::classifier::class_seed(--seed, k)`. The classes run one after the other (each run
//! is itself parallel and independent of --threads), so the result is the same for any
//! --threads. Class k's RBM goes to `<stem of --output>.class<label>.safetensors` in the
//! manifest's folder; its ln Z is the final evaluation of its training run (exact when the
//! smaller layer has at most 25 units under the default `--eval auto`, else AIS with its
//! spread), and its prior is its share of the training rows.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::GlobalArgs;
use super::evaluate::EvaluateMethodArg;
use super::output::{Outputs, print_json, say};
use super::read_dataset;
use super::train_rbm::{EvalArg, ScheduleArg, TrainRbmArgs, objective_flags};
use super::ui::{BarObserver, progress_enabled};
use ebm::infer::ais::AisParams;
use ebm::io::atomic::StagedFile;
use ebm::io::classifier::{ClassEntry, ClassifierManifest};
use ebm::io::labels::{check_label_count, read_labels};
use ebm::io::safetensors::encode_rbm;
use ebm::io::sha256::sha256_hex;
use ebm::learn::cd::{CdParams, EpochStats, LrSchedule, TrainObserver, TrainState};
use ebm::learn::checkpoint::{Requested, checkpoint_file};
use ebm::learn::classifier::{class_seed, split_by_class};
use ebm::learn::train_rbm;
use ebm::progress::{Control, Observer, Step};

/// Manifest names end in `.json`.
const JSON: &[&str] = &[".json"];

#[derive(Debug, Serialize)]
struct ClassReport {
    label: u32,
    file: String,
    examples: usize,
    prior: f64,
    log_z: f64,
    log_z_method: String,
    train_log_likelihood: Option<f64>,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    output: String,
    n_visible: usize,
    n_hidden: usize,
    train_examples: usize,
    objective: &'static str,
    epochs: usize,
    classes: Vec<ClassReport>,
    seconds: f64,
    seed: u64,
}

/// Forwards every epoch of every class to one progress bar over all classes' epochs.
struct ClassesObserver<'a> {
    bar: &'a mut BarObserver,
    done_before: u64,
    total: u64,
}

impl TrainObserver for ClassesObserver<'_> {
    fn on_epoch(&mut self, _state: &TrainState, s: &EpochStats) -> Control {
        self.bar.on_step(&Step {
            done: self.done_before + s.epoch as u64,
            total: self.total,
            metric: Some(s.pseudo_log_likelihood),
        })
    }
}

fn usage(msg: String) -> anyhow::Error {
    super::UsageError(msg).into()
}

/// The RBM file of class `label` beside the manifest `output`.
fn class_file_name(output: &Path, label: u32) -> String {
    let stem = output
        .file_stem()
        .map_or("classifier".into(), |s| s.to_string_lossy().into_owned());
    format!("{stem}.class{label}.safetensors")
}

pub fn run(args: &TrainRbmArgs, labels_path: &Path, global: &GlobalArgs) -> anyhow::Result<()> {
    for (flag, given) in [
        ("--test", args.test.is_some()),
        ("--resume", args.resume.is_some()),
        ("--log", args.log.is_some()),
        ("--filters", args.filters.is_some()),
        ("--stop-after", args.stop_after.is_some()),
        ("--checkpoint-every", args.checkpoint_every != 0),
        ("--eval-every", args.eval_every != 0),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} does not apply with --labels (one RBM per class; measure the \
                 classifier with `ebm classify --model C.json --data TEST --labels TEST_LABELS`)"
            )));
        }
    }
    if args.eval == EvalArg::None {
        return Err(usage(
            "--eval none does not apply with --labels: the classifier needs each class's ln Z \
             (use --eval auto, exact or ais)"
                .into(),
        ));
    }
    let mut outputs = Outputs::new();
    outputs.declare(
        "--output",
        Some(&args.output),
        JSON,
        "the classifier manifest (JSON; the class RBMs are written beside it)",
    )?;
    let data = read_dataset(&args.data, args.threshold)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    let labels = read_labels(labels_path)
        .and_then(|l| check_label_count(&l, data.rows()).map(|()| l))
        .with_context(|| format!("--labels {}", labels_path.display()))?;
    let parts = split_by_class(&data, &labels)?;
    if parts.len() < 2 {
        return Err(usage(format!(
            "--labels {}: a classifier needs at least 2 classes, the file has {}",
            labels_path.display(),
            parts.len()
        )));
    }
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
        nce_ratio: args.nce_ratio,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        negative_sampler: super::train_rbm::negative_sampler(args)?,
    };
    let folder = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let data_name = args.data.to_string_lossy();
    let t0 = Instant::now();
    let mut bar = BarObserver::new(progress_enabled(global), 0, "training classes", "pll");
    let mut entries = Vec::new();
    let mut class_reports = Vec::new();
    let mut staged = Vec::new();
    let mut params_used: Option<CdParams> = None;
    for (k, (label, part)) in parts.iter().enumerate() {
        let seed = class_seed(global.seed, k);
        let ais = AisParams {
            betas: args.ais_betas,
            runs: args.ais_runs,
            seed,
        };
        let evaluation = Some(match args.eval {
            EvalArg::Exact => EvaluateMethodArg::Exact,
            EvalArg::Ais => EvaluateMethodArg::Ais,
            _ => EvaluateMethodArg::Auto,
        })
        .map(|m| m.evaluation(ais));
        let base = CdParams {
            init_std: args.init_std,
            monitor_rows: args.monitor_rows,
            eval_every: 0,
            evaluation,
            seed,
            ..CdParams::default()
        };
        let params = requested.resolve(None, &base)?;
        params.validate()?;
        let total = (params.epochs * parts.len()) as u64;
        let mut observer = ClassesObserver {
            bar: &mut bar,
            done_before: (k * params.epochs) as u64,
            total,
        };
        let t_class = Instant::now();
        let outcome = train_rbm(part, None, &params, None, &mut observer)
            .with_context(|| format!("training the RBM of class {label}"))?;
        let last = outcome.history.last().context("training ran no epoch")?;
        let (Some(log_z), Some(method)) = (last.log_z, last.log_z_method) else {
            anyhow::bail!("class {label}: the final evaluation gave no ln Z");
        };
        let file = checkpoint_file(&outcome.state, &params, &data_name)?;
        let bytes = encode_rbm(&file)?;
        let name = class_file_name(&args.output, *label);
        let path = folder.join(&name);
        let mut out =
            StagedFile::new(&path).with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::write_all(&mut out, &bytes)
            .and_then(|()| std::io::Write::flush(&mut out))
            .with_context(|| format!("writing {}", path.display()))?;
        staged.push(out);
        let prior = part.rows() as f64 / data.rows() as f64;
        entries.push(ClassEntry {
            label: *label,
            file: name.clone(),
            sha256: sha256_hex(&bytes),
            examples: part.rows(),
            prior,
            log_z,
            log_z_method: method.into(),
            log_z_low: last.log_z_low.filter(|x| x.is_finite()),
            log_z_high: last.log_z_high.filter(|x| x.is_finite()),
        });
        class_reports.push(ClassReport {
            label: *label,
            file: name,
            examples: part.rows(),
            prior,
            log_z,
            log_z_method: method.into(),
            train_log_likelihood: last.train_log_likelihood,
            seconds: t_class.elapsed().as_secs_f64(),
        });
        params_used = Some(params);
    }
    bar.finish();
    let params = params_used.expect("at least two classes");
    let manifest = ClassifierManifest::new(data.cols(), entries);
    outputs.stage_bytes("--output", &manifest.to_json())?;
    let report = Report {
        output: args.output.to_string_lossy().into_owned(),
        n_visible: data.cols(),
        n_hidden: params.hidden,
        train_examples: data.rows(),
        objective: params.objective.name(params.persistent),
        epochs: params.epochs,
        classes: class_reports,
        seconds: t0.elapsed().as_secs_f64(),
        seed: global.seed,
    };
    if global.json {
        print_json(&report)?;
    } else {
        say(
            global,
            &format!(
                "{}: {} class RBMs ({} x {}, {} epochs each) in {:.1} s",
                report.output,
                report.classes.len(),
                report.n_visible,
                report.n_hidden,
                report.epochs,
                report.seconds
            ),
        );
        for c in &report.classes {
            say(
                global,
                &format!(
                    "  class {}: {} examples, prior {:.4}, ln Z {:.4} ({}), {}",
                    c.label, c.examples, c.prior, c.log_z, c.log_z_method, c.file
                ),
            );
        }
    }
    // The class files first, then the manifest that names them.
    for file in staged {
        let target = file.target().to_path_buf();
        file.commit()
            .with_context(|| format!("writing {}", target.display()))?;
    }
    outputs.commit()
}
