//! Argument parsing and printing. Each subcommand has its own file: an args struct, a
//! conversion to validated library parameters, the library call, and the output.

mod ais_report;
mod classify;
mod compose;
mod denoise;
mod evaluate;
mod fit;
mod gaussian;
mod info;
mod lattice;
mod noise;
pub mod output;
mod partition;
mod sample;
mod sample_rbm;
mod score;
mod train_classes;
mod train_rbm;
pub mod ui;

use clap::{Args, Parser, Subcommand};

/// Binary energy-based models: Ising models, pairwise MRFs and RBMs.
#[derive(Debug, Parser)]
#[command(
    name = "ebm",
    version,
    about = "Binary energy-based models: exact partition functions, sampling, RBM training, MAP denoising",
    after_help = "Examples:\n  ebm info data/digits_train.txt\n  ebm partition ising --width 4 --height 4 --beta 0.4406868\n  ebm sample ising --width 64 --height 64 --beta 0.4406868 --sampler wolff --sweeps 20000\n  ebm train-rbm --data data/digits_train.txt --test data/digits_test.txt --hidden 16 --persistent --output digits16.safetensors\n  ebm evaluate --model digits16.safetensors --data data/digits_test.txt\n  ebm fit --data data/digits_train.txt --graph lattice --width 8 --height 8 --output fitted.uai\n  ebm compose mixture a.safetensors b.safetensors --weights 0.5,0.5 --output m.json\n  ebm noise --input data/images/horse.png --flip 0.1 --output noisy.png\n  ebm denoise --input noisy.png --output restored.png --clean data/images/horse.png\n\nRun `ebm <command> --help` for each command's flags and an example."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The largest `--threads` accepted: more threads than this only cost memory and start-up.
pub const MAX_THREADS: u16 = 1024;

/// Flags every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Seed of every random choice; the same seed gives the same output for any --threads.
    #[arg(long, global = true, default_value_t = ebm::rng::DEFAULT_SEED)]
    pub seed: u64,
    /// Worker threads, 1 to 1024 (default: all cores). Results do not depend on it.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    pub threads: Option<u16>,
    /// Print exactly one JSON object with the figures on stdout, nothing else.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or summaries on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a file is and its key facts (image, dataset, UAI model, RBM, composite).
    Info(info::InfoArgs),
    /// Flip each pixel of a binary image independently with probability P.
    Noise(noise::NoiseArgs),
    /// Exact ln Z (and marginals) of an Ising lattice, a UAI model, an RBM or a composite.
    Partition(partition::PartitionArgs),
    /// Sample a lattice, UAI model, RBM or composite by MCMC (Gibbs, Metropolis, clusters, GWG,
    /// discrete or Gaussian Langevin); report observables with error bars.
    Sample(Box<sample::SampleArgs>),
    /// Train an RBM: CD-k, PCD, pseudo-likelihood, ratio matching, NCE; Gaussian visible units
    /// with score matching; one RBM per class with --labels.
    TrainRbm(Box<train_rbm::TrainRbmArgs>),
    /// Average log-likelihood of a dataset under an RBM or a composite (ln Z exact or by AIS).
    Evaluate(evaluate::EvaluateArgs),
    /// Fit a fully visible pairwise binary MRF (Ising form) to data by pseudo-likelihood.
    Fit(fit::FitArgs),
    /// Restore a noisy binary image: exact MAP by graph cut, or ICM, annealing, Gibbs.
    Denoise(denoise::DenoiseArgs),
    /// Per-example free energies and ln p of a dataset; AUROC and average precision with labels.
    Score(score::ScoreArgs),
    /// Classify examples with one RBM per class (from `train-rbm --labels`): accuracy, confusion.
    Classify(classify::ClassifyArgs),
    /// Combine models: product (AND), mixture (OR), negation (A AND NOT B), temperature.
    Compose(compose::ComposeArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // The command itself runs on a worker of the pool (`rayon::scope`), so that its parallel
    // loops split work on that thread's own queue instead of waking a worker and blocking the
    // calling thread at every loop (measured: a futex wake and wait per parallel loop, about a
    // tenth of a one-thread RBM epoch). Workers get the main thread's stack size.
    let mut pool = rayon::ThreadPoolBuilder::new().stack_size(WORKER_STACK_BYTES);
    if let Some(threads) = cli.global.threads {
        pool = pool.num_threads(threads as usize);
    }
    pool.build_global().map_err(|e| match cli.global.threads {
        Some(threads) => anyhow::anyhow!("cannot start {threads} threads: {e}"),
        None => anyhow::anyhow!("cannot start the worker threads: {e}"),
    })?;
    rayon::scope(|_| match &cli.command {
        Command::Info(args) => info::run(args, &cli.global),
        Command::Noise(args) => noise::run(args, &cli.global),
        Command::Partition(args) => partition::run(args, &cli.global),
        Command::TrainRbm(args) => train_rbm::run(args, &cli.global),
        Command::Evaluate(args) => evaluate::run(args, &cli.global),
        Command::Denoise(args) => denoise::run(args, &cli.global),
        Command::Fit(args) => fit::run(args, &cli.global),
        Command::Sample(args) => sample::run(args, &cli.global),
        Command::Score(args) => score::run(args, &cli.global),
        Command::Classify(args) => classify::run(args, &cli.global),
        Command::Compose(args) => compose::run(args, &cli.global),
    })
}

/// Stack of each worker thread (the command runs on one): 8 MiB, as the main thread's.
const WORKER_STACK_BYTES: usize = 8 << 20;

/// Environment variable that sets the largest decompressed size, in bytes, of a `.gz` dataset
/// (default [`ebm::io::datasets::DEFAULT_MAX_DECOMPRESSED_BYTES`], 1 GiB).
pub const MAX_DECOMPRESSED_ENV: &str = "EBM_MAX_DECOMPRESSED_BYTES";

/// Reads a dataset as `ebm::io::datasets::read_dataset` does, with the cap on a `.gz` file's
/// decompressed size taken from [`MAX_DECOMPRESSED_ENV`]; a refusal says how to raise it.
pub fn read_dataset(
    path: &std::path::Path,
    threshold: Option<f64>,
) -> ebm::Result<ebm::dataset::Dataset> {
    use ebm::io::datasets::read_dataset_capped;
    let cap = decompressed_cap()?;
    read_dataset_capped(path, threshold, cap).map_err(explain_cap)
}

/// Reads a real-valued dataset (`ebm::io::datasets::read_real_dataset`) with the same cap on a
/// `.gz` file's decompressed size as [`read_dataset`].
pub fn read_real_dataset(path: &std::path::Path) -> ebm::Result<ebm::dataset::RealDataset> {
    ebm::io::datasets::read_real_dataset(path, decompressed_cap()?).map_err(explain_cap)
}

/// The cap on a `.gz` dataset's decompressed size, from [`MAX_DECOMPRESSED_ENV`].
fn decompressed_cap() -> ebm::Result<u64> {
    use ebm::io::datasets::DEFAULT_MAX_DECOMPRESSED_BYTES;
    Ok(match std::env::var(MAX_DECOMPRESSED_ENV) {
        Err(std::env::VarError::NotPresent) => DEFAULT_MAX_DECOMPRESSED_BYTES,
        Ok(text) => text.trim().parse().map_err(|_| {
            ebm::Error::param(
                MAX_DECOMPRESSED_ENV,
                format!("must be a whole number of bytes, got {text:?}"),
            )
        })?,
        Err(e) => return Err(ebm::Error::param(MAX_DECOMPRESSED_ENV, e.to_string())),
    })
}

/// A refusal of a too large `.gz` file, saying how to raise the cap.
fn explain_cap(e: ebm::Error) -> ebm::Error {
    match e {
        ebm::Error::TooLarge { method, detail } => ebm::Error::TooLarge {
            method,
            detail: format!(
                "{detail}; a larger limit is set with the environment variable \
                 {MAX_DECOMPRESSED_ENV}=<bytes>"
            ),
        },
        other => other,
    }
}

/// Reports a command line that clap refused: `--help` and `--version` print as usual (exit 0);
/// an error goes to stderr and, when `--json` is among the arguments, as one JSON object
/// `{"error": ..., "exit_code": 2}` to stdout.
pub fn parse_error(err: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        err.exit();
    }
    let code = u8::try_from(err.exit_code()).unwrap_or(2);
    // clap's own printing returns its io errors instead of panicking: ignored.
    let _ = err.print();
    if std::env::args_os().skip(1).any(|a| a == "--json") {
        let message = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            "a subcommand is required (see `ebm --help`)".to_string()
        } else {
            // The first paragraph of clap's message, without its `error: ` label.
            let text = err.render().to_string();
            let first = text.split("\n\n").next().unwrap_or("").trim();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        };
        output::print_error_json(&message, code);
    }
    std::process::ExitCode::from(code)
}

/// True when the error comes from writing to a closed pipe (`ebm ... | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            cause.downcast_ref::<ebm::Error>().and_then(|e| match e {
                ebm::Error::Io(io) => Some(io),
                _ => None,
            })
        });
        io.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Exit status for an error: 2 for bad input or parameters, 1 for runtime failures.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ebm::Error>() {
            return match e {
                ebm::Error::Io(_) | ebm::Error::TooLarge { .. } | ebm::Error::Interrupted => 1,
                _ => 2,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return 2;
        }
    }
    1
}

/// An error in how the command was called (bad flag combination or value): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_flags_parse_anywhere() {
        let cli = Cli::try_parse_from([
            "ebm", "noise", "--input", "a.png", "--flip", "0.1", "--output", "b.png", "--seed",
            "7", "--json",
        ])
        .unwrap();
        assert_eq!(cli.global.seed, 7);
        assert!(cli.global.json);
        assert!(Cli::try_parse_from(["ebm", "--threads", "0", "noise"]).is_err());
    }
}
