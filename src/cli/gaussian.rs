//! Gaussian-Bernoulli RBMs on the command line: `train-rbm --visible gaussian`, and `sample`,
//! `partition` and `evaluate` of a model file whose metadata says `visible_units = gaussian`.
//! The subcommands' own files only dispatch here.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::ValueEnum;
use serde::Serialize;

use super::GlobalArgs;
use super::UsageError;
use super::evaluate::{EvaluateArgs, EvaluateMethodArg};
use super::output::{CSV, Outputs, PNG, SAFETENSORS, print_json, say};
use super::read_real_dataset;
use super::sample::{SampleArgs, SamplerArg};
use super::sample_rbm::{square_side, tile_image};
use super::train_rbm::{EvalArg, ObjectiveArg, ScheduleArg, TrainRbmArgs};
use super::ui::{BarObserver, progress_enabled};
use ebm::dataset::RealDataset;
use ebm::io::safetensors::{
    GaussianRbmFile, RbmFile, SIGMA_NAME, STANDARDISATION_NAMES, Tensor, encode_gaussian_rbm,
};
use ebm::learn::gaussian::{
    GaussianObjective, GaussianTrainParams, GaussianTrainer, average_log_likelihood,
};
use ebm::model::gaussian_rbm::MAX_EXACT_HIDDEN;
use ebm::model::{GaussianRbm, Rbm};
use ebm::progress::{Observer, Step};
use ebm::sample::gaussian::{GaussianChainParams, GaussianSampler, run_gaussian_chains};

/// Default hidden units of a Gaussian RBM (small enough for exact likelihoods).
pub const DEFAULT_HIDDEN: usize = 16;
/// Default epochs.
pub const DEFAULT_EPOCHS: usize = 100;
/// Default learning rate.
pub const DEFAULT_LEARNING_RATE: f64 = 0.01;
/// Default batch size.
pub const DEFAULT_BATCH_SIZE: usize = 20;
/// Default momentum.
pub const DEFAULT_MOMENTUM: f64 = 0.5;
/// Default noise of denoising score matching.
pub const DEFAULT_NOISE_STD: f64 = 0.1;
/// Default Langevin step size.
pub const DEFAULT_STEP_SIZE: f64 = 0.01;

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

/// Refuses the Gaussian-only flags of `train-rbm` on a binary RBM.
pub fn refuse_gaussian_flags(args: &TrainRbmArgs) -> anyhow::Result<()> {
    for (flag, given) in [
        ("--noise-std", args.noise_std.is_some()),
        ("--learn-sigma", args.learn_sigma),
        ("--sigma", args.sigma.is_some()),
        ("--standardise", args.standardise),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} applies to real-valued data: add --visible gaussian"
            )));
        }
    }
    Ok(())
}

/// True when `path` holds a Gaussian-Bernoulli RBM (false when it cannot be read: the caller's
/// own reading then reports why).
pub fn is_gaussian_file(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        ebm::io::safetensors::visible_units(&bytes).as_deref()
            == Some(ebm::io::safetensors::GAUSSIAN_UNITS)
    })
}

/// The file as a plain RBM file with `visible_units` and `visible_sigma` among its metadata and
/// extra tensors (for `ebm info`).
pub fn as_rbm_file(file: &GaussianRbmFile) -> ebm::Result<RbmFile> {
    let m = &file.model;
    let mut out = RbmFile::new(Rbm::new(
        m.n_visible(),
        m.n_hidden(),
        m.weights().to_vec(),
        m.visible_bias().to_vec(),
        m.hidden_bias().to_vec(),
    )?);
    out.metadata = file.metadata.clone();
    out.metadata.insert(
        ebm::io::safetensors::VISIBLE_UNITS_KEY.into(),
        ebm::io::safetensors::GAUSSIAN_UNITS.into(),
    );
    out.extra = file.extra.clone();
    out.extra.insert(
        SIGMA_NAME.into(),
        Tensor {
            shape: vec![m.n_visible()],
            data: m.visible_sigma().to_vec(),
        },
    );
    Ok(out)
}

/// Brings `data` into the units of `file`'s model (its stored standardisation, if any) and
/// returns ln |d z / d x| = -sum_i ln std_i, the term that turns a log-density of standardised
/// values into one of the data's own values.
fn to_model_units(file: &GaussianRbmFile, data: &mut RealDataset) -> f64 {
    match file.standardisation() {
        Some((mean, std)) => {
            data.standardise(mean, std);
            -std.iter().map(|s| s.ln()).sum::<f64>()
        }
        None => 0.0,
    }
}

fn check_columns(data: &RealDataset, path: &Path, model: &GaussianRbm) -> anyhow::Result<()> {
    if data.cols() != model.n_visible() {
        return Err(ebm::Error::SizeMismatch(format!(
            "{} has {} columns per example, the model has {} visible units",
            path.display(),
            data.cols(),
            model.n_visible()
        ))
        .into());
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct TrainReport {
    output: String,
    visible_units: &'static str,
    n_visible: usize,
    n_hidden: usize,
    train_examples: usize,
    test_examples: Option<usize>,
    objective: String,
    epochs: usize,
    standardised: bool,
    learn_sigma: bool,
    final_objective_loss: Option<f64>,
    train_log_likelihood: Option<f64>,
    test_log_likelihood: Option<f64>,
    log_z: Option<f64>,
    sigma_min: f64,
    sigma_max: f64,
    seconds: f64,
    seconds_per_epoch: f64,
    seed: u64,
}

fn name_of<T: ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// `ebm train-rbm --visible gaussian`.
pub fn train(args: &TrainRbmArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    for (flag, given) in [
        ("--resume", args.resume.is_some()),
        ("--threshold", args.threshold.is_some()),
        ("--persistent", args.persistent),
        ("--chains", args.chains.is_some()),
        ("--nce-ratio", args.nce_ratio.is_some()),
        ("--stop-after", args.stop_after.is_some()),
        ("--checkpoint-every", args.checkpoint_every > 0),
        ("--filters", args.filters.is_some()),
        ("--eval ais", args.eval == EvalArg::Ais),
        ("--negative-sampler", args.negative_sampler.is_some()),
        ("--step-size", args.step_size.is_some()),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} is not available with --visible gaussian (see docs/gaussian.md; PCD is \
                 --objective pcd, likelihoods are exact up to {MAX_EXACT_HIDDEN} hidden units)"
            )));
        }
    }
    let objective_arg = args.objective.unwrap_or(ObjectiveArg::Cd);
    let k = args.cd_k.unwrap_or(1);
    let objective = match objective_arg {
        ObjectiveArg::Cd => GaussianObjective::Cd { k },
        ObjectiveArg::Pcd => GaussianObjective::Pcd { k },
        ObjectiveArg::ScoreMatching => GaussianObjective::ScoreMatching,
        ObjectiveArg::DenoisingScoreMatching => GaussianObjective::DenoisingScoreMatching {
            noise_std: args.noise_std.unwrap_or(DEFAULT_NOISE_STD),
        },
        other => {
            return Err(usage(format!(
                "--objective {} is for binary visible units; --visible gaussian takes cd, pcd, \
                 score-matching or denoising-score-matching",
                name_of(&other)
            )));
        }
    };
    if args.cd_k.is_some() && !matches!(objective_arg, ObjectiveArg::Cd | ObjectiveArg::Pcd) {
        return Err(usage("--cd-k applies to --objective cd or pcd".into()));
    }
    if args.noise_std.is_some() && objective_arg != ObjectiveArg::DenoisingScoreMatching {
        return Err(usage(
            "--noise-std applies to --objective denoising-score-matching".into(),
        ));
    }
    let epochs = args.epochs.unwrap_or(DEFAULT_EPOCHS);
    let params = GaussianTrainParams {
        hidden: args.hidden.unwrap_or(DEFAULT_HIDDEN),
        batch_size: args.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
        learning_rate: args.learning_rate.unwrap_or(DEFAULT_LEARNING_RATE),
        momentum: args.momentum.unwrap_or(DEFAULT_MOMENTUM),
        weight_decay: args.weight_decay.unwrap_or(0.0),
        objective,
        learn_sigma: args.learn_sigma,
        sigma: args.sigma.unwrap_or(1.0),
        init_std: args.init_std,
        seed: global.seed,
    };
    params.validate()?;
    let exact_possible = params.hidden <= MAX_EXACT_HIDDEN;
    let evaluate = match args.eval {
        EvalArg::None => false,
        EvalArg::Auto => exact_possible,
        EvalArg::Exact if !exact_possible => {
            return Err(usage(format!(
                "--eval exact enumerates 2^{} hidden states; at most {MAX_EXACT_HIDDEN} hidden \
                 units are enumerated (use --eval none)",
                params.hidden
            )));
        }
        EvalArg::Exact | EvalArg::Ais => true,
    };
    let mut outputs = Outputs::new();
    outputs.declare("--output", Some(&args.output), SAFETENSORS, "the model")?;
    outputs.declare("--log", args.log.as_deref(), CSV, "the log (CSV)")?;
    let mut train = read_real_dataset(&args.data)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    let mut test = match &args.test {
        Some(p) => Some(
            read_real_dataset(p).with_context(|| format!("reading test data {}", p.display()))?,
        ),
        None => None,
    };
    if let (Some(t), Some(p)) = (&test, &args.test)
        && t.cols() != train.cols()
    {
        return Err(usage(format!(
            "--test {} has {} columns per example, --data {} has {}",
            p.display(),
            t.cols(),
            args.data.display(),
            train.cols()
        )));
    }
    let mut extra = std::collections::BTreeMap::new();
    let mut log_jacobian = 0.0;
    if args.standardise {
        let (mean, std) = train.column_mean_std();
        // A constant column is only centred (std 1), so that every value stays finite.
        let std: Vec<f64> = std
            .into_iter()
            .map(|s| if s > 1e-12 { s } else { 1.0 })
            .collect();
        train.standardise(&mean, &std);
        if let Some(t) = test.as_mut() {
            t.standardise(&mean, &std);
        }
        log_jacobian = -std.iter().map(|s| s.ln()).sum::<f64>();
        let nv = train.cols();
        for (name, data) in STANDARDISATION_NAMES.into_iter().zip([mean, std]) {
            extra.insert(
                name.to_string(),
                Tensor {
                    shape: vec![nv],
                    data,
                },
            );
        }
    }
    let start = Instant::now();
    let mut trainer = GaussianTrainer::new(&train, params.clone())?;
    let mut bar = BarObserver::new(progress_enabled(global), epochs as u64, "training", "");
    let mut csv = String::from(
        "epoch,learning_rate,objective_loss,train_log_likelihood,test_log_likelihood,log_z,seconds\n",
    );
    let mut train_seconds = 0.0;
    let mut last = (None, None, None, None);
    for epoch in 1..=epochs {
        let lr = match args.lr_schedule.unwrap_or(ScheduleArg::Constant) {
            ScheduleArg::Constant => params.learning_rate,
            ScheduleArg::Linear => {
                params.learning_rate * (1.0 - (epoch - 1) as f64 / epochs as f64)
            }
        };
        trainer.set_learning_rate(lr);
        let t0 = Instant::now();
        let loss = trainer.epoch(&train)?;
        train_seconds += t0.elapsed().as_secs_f64();
        let due =
            evaluate && (epoch == epochs || (args.eval_every > 0 && epoch % args.eval_every == 0));
        let (mut train_ll, mut test_ll, mut log_z) = (None, None, None);
        if due {
            let model = trainer.model();
            log_z = Some(model.log_partition()?);
            train_ll = Some(average_log_likelihood(model, &train)? + log_jacobian);
            if let Some(t) = &test {
                test_ll = Some(average_log_likelihood(model, t)? + log_jacobian);
            }
        }
        let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        csv.push_str(&format!(
            "{epoch},{lr},{},{},{},{},{}\n",
            opt(loss),
            opt(train_ll),
            opt(test_ll),
            opt(log_z),
            start.elapsed().as_secs_f64()
        ));
        bar.on_step(&Step {
            done: epoch as u64,
            total: epochs as u64,
            metric: test_ll.or(train_ll).or(loss),
        });
        last = (loss, train_ll, test_ll, log_z);
    }
    bar.finish();
    let model = trainer.model().clone();
    let mut file = GaussianRbmFile::new(model.clone());
    file.extra = extra;
    let settings = serde_json::json!({
        "objective": name_of(&objective_arg),
        "epochs": epochs,
        "hidden": params.hidden,
        "batch_size": params.batch_size,
        "learning_rate": params.learning_rate,
        "lr_schedule": name_of(&args.lr_schedule.unwrap_or(ScheduleArg::Constant)),
        "momentum": params.momentum,
        "weight_decay": params.weight_decay,
        "cd_k": k,
        "noise_std": args.noise_std.unwrap_or(DEFAULT_NOISE_STD),
        "learn_sigma": params.learn_sigma,
        "sigma": params.sigma,
        "init_std": params.init_std,
        "standardise": args.standardise,
        "seed": global.seed,
        "data": args.data.display().to_string(),
    });
    file.metadata
        .insert("training".into(), settings.to_string());
    outputs.stage_bytes("--output", &encode_gaussian_rbm(&file)?)?;
    if args.log.is_some() {
        outputs.stage_bytes("--log", csv.as_bytes())?;
    }
    let sigma = model.visible_sigma();
    let report = TrainReport {
        output: args.output.display().to_string(),
        visible_units: "gaussian",
        n_visible: model.n_visible(),
        n_hidden: model.n_hidden(),
        train_examples: train.rows(),
        test_examples: test.as_ref().map(|t| t.rows()),
        objective: name_of(&objective_arg),
        epochs,
        standardised: args.standardise,
        learn_sigma: params.learn_sigma,
        final_objective_loss: last.0,
        train_log_likelihood: last.1,
        test_log_likelihood: last.2,
        log_z: last.3,
        sigma_min: sigma.iter().copied().fold(f64::INFINITY, f64::min),
        sigma_max: sigma.iter().copied().fold(0.0, f64::max),
        seconds: start.elapsed().as_secs_f64(),
        seconds_per_epoch: train_seconds / epochs.max(1) as f64,
        seed: global.seed,
    };
    outputs.commit()?;
    if global.json {
        print_json(&report)?;
    } else {
        let ll = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
        say(
            global,
            &format!(
                "Gaussian RBM {} x {} by {} ({} epochs, {:.4} s/epoch): train LL {}, test LL {} \
                 nats/example; wrote {}",
                report.n_visible,
                report.n_hidden,
                report.objective,
                epochs,
                report.seconds_per_epoch,
                ll(report.train_log_likelihood),
                ll(report.test_log_likelihood),
                report.output
            ),
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct SampleReport {
    model: String,
    sampler: &'static str,
    chains: usize,
    steps: usize,
    step_size: Option<f64>,
    acceptance: Option<f64>,
    n_visible: usize,
    n_hidden: usize,
    mean_value: f64,
    seconds: f64,
    image: Option<String>,
    output: Option<String>,
    seed: u64,
}

/// `ebm sample --model g.safetensors --sampler langevin|mala|gibbs`: the final state of every
/// chain, in the data's units (the stored standardisation undone).
pub fn sample(
    path: &Path,
    file: &GaussianRbmFile,
    args: &SampleArgs,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    for (flag, set) in [
        ("--marginals", args.marginals),
        ("--evidence", args.evidence.is_some()),
        ("--trace", args.chain.trace.is_some()),
        ("--sweeps", args.chain.sweeps.is_some()),
        ("--beta", args.chain.beta.is_some()),
        ("--start", args.chain.start.is_some()),
    ] {
        if set {
            return Err(usage(format!(
                "{flag} does not apply to Gaussian RBMs (use --sampler langevin|mala|gibbs, \
                 --step-size, --chains, --steps, --burn-in, --image, --output)"
            )));
        }
    }
    let sampler = match args.chain.sampler.unwrap_or(SamplerArg::Gibbs) {
        SamplerArg::Gibbs => GaussianSampler::Gibbs,
        SamplerArg::Langevin => GaussianSampler::Langevin,
        SamplerArg::Mala => GaussianSampler::Mala,
        other => {
            return Err(usage(format!(
                "--sampler {} does not apply to a Gaussian RBM; use langevin, mala or gibbs",
                name_of(&other)
            )));
        }
    };
    if sampler == GaussianSampler::Gibbs && args.chain.step_size.is_some() {
        return Err(usage(
            "--step-size applies to --sampler langevin or mala".into(),
        ));
    }
    let step_size = args.chain.step_size.unwrap_or(DEFAULT_STEP_SIZE);
    let chains = args.chains.unwrap_or(super::sample_rbm::DEFAULT_CHAINS);
    let steps = args.steps.unwrap_or(super::sample_rbm::DEFAULT_STEPS);
    if steps == 0 {
        return Err(usage("--steps must be at least 1".into()));
    }
    let burn_in = args.chain.burn_in.unwrap_or(0) as usize;
    let model = &file.model;
    let mut outputs = Outputs::new();
    outputs.declare(
        "--image",
        args.chain.image.as_deref(),
        PNG,
        "the grid of samples (a grey PNG)",
    )?;
    outputs.declare(
        "--output",
        args.output.as_deref(),
        CSV,
        "the samples (real values, .csv)",
    )?;
    let side = square_side(model.n_visible());
    if args.chain.image.is_some() && side.is_none() {
        return Err(usage(format!(
            "--image needs a square number of visible units, the model has {}",
            model.n_visible()
        )));
    }
    let params = GaussianChainParams {
        sampler,
        step_size,
        chains,
        burn_in,
        // Only each chain's final state is kept; MALA's acceptance counts every move after
        // the burn-in.
        steps,
        thin: steps,
        seed: global.seed,
    };
    let t0 = Instant::now();
    let run = run_gaussian_chains(model, &params)?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut states = run.states;
    if let Some((mean, std)) = file.standardisation() {
        for row in states.chunks_exact_mut(model.n_visible()) {
            for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
                *x = *x * s + m;
            }
        }
    }
    if args.output.is_some() {
        let mut text = String::new();
        for row in states.chunks_exact(model.n_visible()) {
            let cells: Vec<String> = row.iter().map(|x| x.to_string()).collect();
            text.push_str(&cells.join(","));
            text.push('\n');
        }
        outputs.stage_bytes("--output", text.as_bytes())?;
    }
    if let (Some(_), Some(side)) = (&args.chain.image, side) {
        let tiles: Vec<Vec<f64>> = states
            .chunks_exact(model.n_visible())
            .map(|r| r.to_vec())
            .collect();
        let (w, h, luma) = tile_image(&tiles, side, false);
        outputs.stage_bytes("--image", &ebm::io::images::encode_grey_png(w, h, &luma)?)?;
    }
    let langevin = sampler != GaussianSampler::Gibbs;
    let report = SampleReport {
        model: path.display().to_string(),
        sampler: match sampler {
            GaussianSampler::Langevin => "langevin",
            GaussianSampler::Mala => "mala",
            GaussianSampler::Gibbs => "gibbs",
        },
        chains,
        steps,
        step_size: langevin.then_some(step_size),
        acceptance: (sampler == GaussianSampler::Mala).then_some(run.acceptance),
        n_visible: model.n_visible(),
        n_hidden: model.n_hidden(),
        mean_value: states.iter().sum::<f64>() / states.len().max(1) as f64,
        seconds,
        image: args.chain.image.as_ref().map(|p| p.display().to_string()),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        seed: global.seed,
    };
    outputs.commit()?;
    if global.json {
        print_json(&report)
    } else {
        say(
            global,
            &format!(
                "{} chains x {} {} steps in {:.2} s; mean value {:.4}{} (seed {})",
                chains,
                steps,
                report.sampler,
                seconds,
                report.mean_value,
                report
                    .acceptance
                    .map_or(String::new(), |a| format!("; MALA acceptance {a:.3}")),
                global.seed
            ),
        );
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct PartitionReport {
    model: String,
    visible_units: &'static str,
    n_visible: usize,
    n_hidden: usize,
    log_z: f64,
    method: &'static str,
    states: u64,
    seconds: f64,
}

/// `ebm partition --model g.safetensors`: exact ln Z by enumerating the hidden units.
pub fn partition(
    path: &Path,
    file: &GaussianRbmFile,
    global: &GlobalArgs,
    start: Instant,
) -> anyhow::Result<()> {
    let model = &file.model;
    let log_z = model
        .log_partition()
        .with_context(|| format!("ln Z of {}", path.display()))?;
    let report = PartitionReport {
        model: path.display().to_string(),
        visible_units: "gaussian",
        n_visible: model.n_visible(),
        n_hidden: model.n_hidden(),
        log_z,
        method: "exact-hidden",
        states: 1u64 << model.n_hidden(),
        seconds: start.elapsed().as_secs_f64(),
    };
    if global.json {
        print_json(&report)
    } else {
        println!(
            "{}: Gaussian-Bernoulli RBM {} x {}\nln Z = {log_z:.6} (exact: 2^{} hidden states, a \
             Gaussian integral each; {:.3} s)",
            report.model, report.n_visible, report.n_hidden, report.n_hidden, report.seconds
        );
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct EvaluateReport {
    model: String,
    data: String,
    examples: usize,
    log_likelihood: f64,
    log_z: f64,
    method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_high: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_betas: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_runs: Option<usize>,
    standardised: bool,
    seconds: f64,
    seed: u64,
}

/// `ebm evaluate` of a Gaussian RBM: the average log-density of the data (nats per example, in
/// the data's own units: a stored standardisation is applied and its Jacobian added), with ln Z
/// exact by enumerating the hidden units or by AIS from the beta = 0 base
/// (`--method ais`, or `auto` above [`MAX_EXACT_HIDDEN`] hidden units).
/// For `ebm score`: each example's free energy in the data's own units,
/// F_x(x) = F(z) - ln|dz/dx| with z the stored standardisation of x (F itself when there is
/// none), so that ln p(x) = -F_x(x) - ln Z; and ln Z, exact by enumerating the hidden units,
/// when `with_log_z`.
pub fn free_energies_in_data_units(
    file: &GaussianRbmFile,
    data: &mut RealDataset,
    data_path: &Path,
    with_log_z: bool,
) -> anyhow::Result<(Vec<f64>, Option<f64>)> {
    check_columns(data, data_path, &file.model)?;
    let log_jacobian = to_model_units(file, data);
    let mut hidden = vec![0.0; file.model.n_hidden()];
    let free = data
        .iter_rows()
        .map(|v| file.model.free_energy_with(v, &mut hidden) - log_jacobian)
        .collect();
    let log_z = if with_log_z {
        Some(file.model.log_partition()?)
    } else {
        None
    };
    Ok((free, log_z))
}

pub fn evaluate(args: &EvaluateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.threshold.is_some() {
        return Err(usage(
            "--threshold does not apply to a Gaussian RBM (its data are real values)".into(),
        ));
    }
    let start = Instant::now();
    let file = ebm::io::safetensors::read_gaussian_rbm(&args.model)
        .with_context(|| format!("reading model {}", args.model.display()))?;
    let mut data = read_real_dataset(&args.data)
        .with_context(|| format!("reading data {}", args.data.display()))?;
    check_columns(&data, &args.data, &file.model)?;
    let log_jacobian = to_model_units(&file, &mut data);
    let ais = args.method == EvaluateMethodArg::Ais
        || (args.method == EvaluateMethodArg::Auto && file.model.n_hidden() > MAX_EXACT_HIDDEN);
    let (log_z, spread) = if ais {
        let params = ebm::infer::ais::AisParams {
            betas: args.ais_betas,
            runs: args.ais_runs,
            seed: global.seed,
        };
        let est = ebm::infer::gaussian_ais::gaussian_ais_log_partition(&file.model, &params)
            .with_context(|| format!("AIS of ln Z of {}", args.model.display()))?;
        (est.log_z, Some((est.log_z_low, est.log_z_high)))
    } else {
        let log_z = file
            .model
            .log_partition()
            .with_context(|| format!("ln Z of {}", args.model.display()))?;
        (log_z, None)
    };
    let mut hidden = vec![0.0; file.model.n_hidden()];
    let mean_free_energy = data
        .iter_rows()
        .map(|v| file.model.free_energy_with(v, &mut hidden))
        .sum::<f64>()
        / data.rows() as f64;
    let ll = -mean_free_energy - log_z + log_jacobian;
    let report = EvaluateReport {
        model: args.model.display().to_string(),
        data: args.data.display().to_string(),
        examples: data.rows(),
        log_likelihood: ll,
        log_z,
        method: if ais { "ais" } else { "exact" },
        // AIS's ln(mean -+ 3 standard errors) of the weights; the likelihood's interval is
        // the reverse: log_likelihood_low = log_likelihood - (log_z_high - log_z).
        log_z_low: spread.map(|s| s.0).filter(|x| x.is_finite()),
        log_z_high: spread.map(|s| s.1),
        ais_betas: ais.then_some(args.ais_betas),
        ais_runs: ais.then_some(args.ais_runs),
        standardised: file.standardisation().is_some(),
        seconds: start.elapsed().as_secs_f64(),
        seed: global.seed,
    };
    if global.json {
        print_json(&report)
    } else {
        println!(
            "{}: average log-likelihood {ll:.4} nats per example over {} examples (ln Z = \
             {log_z:.4}, {})",
            report.data, report.examples, report.method
        );
        Ok(())
    }
}
