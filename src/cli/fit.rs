//! `ebm fit`: fit a fully visible pairwise binary MRF (Ising form) to binary data by maximum
//! pseudo-likelihood and write it as a UAI model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::lattice::BoundaryArg;
use super::output::{Outputs, print_json, say};
use super::{GlobalArgs, UsageError, read_dataset};
use ebm::io::uai::{format_uai, read_uai};
use ebm::learn::fit::{
    FitParams, complete_edges, fit_asymmetric_pl, fit_mean_field, fit_pseudo_likelihood,
    lattice_edges,
};
use ebm::model::FactorGraph;

/// `--graph`: which pairs get a coupling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphArg {
    /// Every pair of columns.
    Complete,
    /// Nearest neighbours of a --width x --height lattice (columns row-major).
    Lattice,
}

/// `--method`: the estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Maximum pseudo-likelihood (Besag 1975), one coupling per edge, solved by L-BFGS.
    PseudoLikelihood,
    /// Asymmetric pseudo-likelihood (Aurell & Ekeberg 2012): one logistic regression per spin,
    /// J_ij the average of the two regressions' weights (a different estimator).
    AsymmetricPl,
    /// Naive mean-field inversion J = -(C^-1) off-diagonal on the edges (fast, biased).
    MeanField,
}

impl MethodArg {
    fn name(self) -> &'static str {
        match self {
            MethodArg::PseudoLikelihood => "pseudo-likelihood",
            MethodArg::AsymmetricPl => "asymmetric-pl",
            MethodArg::MeanField => "mean-field",
        }
    }
}

#[derive(Debug, Args)]
#[command(
    group = clap::ArgGroup::new("edges").required(true).args(["graph", "structure"]),
    after_help = "Example:\n  ebm fit --data data/digits_train.txt --graph complete --l2 0.01 --output digits_pl.uai\n  ebm partition --model digits_pl.uai"
)]
pub struct FitArgs {
    /// Binary data (.txt, .csv, .npy, IDX; optionally .gz), one example per row.
    #[arg(long)]
    pub data: PathBuf,
    /// Binarization threshold for .csv/.npy (default 0.5) and IDX (default 128) data.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// The edges: every pair (complete) or a lattice (with --width and --height).
    #[arg(long, value_enum)]
    pub graph: Option<GraphArg>,
    /// Lattice width (columns of the image); width x height must equal the data's columns.
    #[arg(long)]
    pub width: Option<usize>,
    /// Lattice height (rows of the image).
    #[arg(long)]
    pub height: Option<usize>,
    /// Lattice boundary.
    #[arg(long, value_enum, default_value_t = BoundaryArg::Open)]
    pub boundary: BoundaryArg,
    /// Take the edges from the pair factors of this binary pairwise UAI model (its numbers are
    /// ignored).
    #[arg(long, conflicts_with = "graph")]
    pub structure: Option<PathBuf>,
    /// The fitted model, a UAI MARKOV file in Ising form; written only when complete.
    #[arg(long)]
    pub output: PathBuf,
    /// Estimator.
    #[arg(long, value_enum, default_value_t = MethodArg::PseudoLikelihood)]
    pub method: MethodArg,
    /// Weight l2 of the penalty (l2 / 2) sum J_ij^2 on couplings (fields are not penalised).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub l2: f64,
    /// Weight l1 of the penalty l1 sum |J_ij| on couplings (fields are not penalised), solved
    /// by OWL-QN; not for mean-field.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub l1: f64,
    /// Stop when the largest absolute (minimum-norm sub)gradient component is at most this.
    #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
    pub tolerance: f64,
    /// Stop after this many L-BFGS iterations (the report then says converged: false).
    #[arg(long, default_value_t = 10_000)]
    pub max_iterations: usize,
}

#[derive(Debug, Serialize)]
struct FitReport<'a> {
    method: &'static str,
    output: &'a str,
    examples: usize,
    variables: usize,
    edges: usize,
    l2: f64,
    l1: f64,
    tolerance: f64,
    objective: f64,
    gradient_norm: f64,
    iterations: usize,
    converged: bool,
    seconds: f64,
}

/// The edges of a `--structure` model: the scopes of its pair factors, after checking that it
/// is pairwise and has `columns` variables.
fn structure_edges(path: &std::path::Path, columns: usize) -> anyhow::Result<Vec<(usize, usize)>> {
    let graph: FactorGraph =
        read_uai(path).with_context(|| format!("reading --structure {}", path.display()))?;
    if graph.max_arity() > 2 {
        return Err(UsageError(format!(
            "--structure {}: has a factor of arity {}; only pairwise models (arity <= 2) can be fitted",
            path.display(),
            graph.max_arity()
        ))
        .into());
    }
    if graph.num_vars() != columns {
        return Err(UsageError(format!(
            "--structure {}: has {} variables but --data has {columns} columns",
            path.display(),
            graph.num_vars()
        ))
        .into());
    }
    Ok(graph
        .factors()
        .iter()
        .filter(|f| f.arity() == 2)
        .map(|f| (f.scope()[0], f.scope()[1]))
        .collect())
}

pub fn run(args: &FitArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let params = FitParams {
        l2: args.l2,
        l1: args.l1,
        tolerance: args.tolerance,
        max_iterations: args.max_iterations,
    };
    params.validate()?;
    if args.graph == Some(GraphArg::Lattice) && (args.width.is_none() || args.height.is_none()) {
        return Err(UsageError("--graph lattice needs --width and --height".into()).into());
    }
    if args.graph != Some(GraphArg::Lattice) && (args.width.is_some() || args.height.is_some()) {
        return Err(UsageError("--width and --height apply only to --graph lattice".into()).into());
    }
    let mut outputs = Outputs::new();
    outputs.declare(
        "--output",
        Some(&args.output),
        &[".uai"],
        "the fitted UAI model",
    )?;
    let data = read_dataset(&args.data, args.threshold)
        .with_context(|| format!("reading --data {}", args.data.display()))?;
    if data.rows() == 0 {
        return Err(UsageError(format!("--data {}: has no examples", args.data.display())).into());
    }
    let columns = data.cols();
    let edges = match (args.graph, &args.structure) {
        (Some(GraphArg::Complete), _) => complete_edges(columns),
        (Some(GraphArg::Lattice), _) => {
            let (w, h) = (args.width.unwrap_or(0), args.height.unwrap_or(0));
            if w.checked_mul(h) != Some(columns) {
                return Err(UsageError(format!(
                    "--width {w} x --height {h} = {} sites, but --data {} has {columns} columns",
                    w.saturating_mul(h),
                    args.data.display()
                ))
                .into());
            }
            lattice_edges(w, h, args.boundary.boundary())?
        }
        (None, Some(path)) => structure_edges(path, columns)?,
        (None, None) => unreachable!("clap requires --graph or --structure"),
    };
    let constant = data
        .column_means()
        .iter()
        .filter(|&&m| m == 0.0 || m == 1.0)
        .count();
    if constant > 0 && args.method != MethodArg::MeanField {
        say(
            global,
            &format!(
                "warning: {constant} of the {columns} columns of --data {} are constant; their \
                 fields have no finite optimum, so the gradient tolerance is reached only \
                 slowly (many iterations); drop those columns or raise --tolerance",
                args.data.display()
            ),
        );
    }
    let start = Instant::now();
    let outcome = match args.method {
        MethodArg::PseudoLikelihood => fit_pseudo_likelihood(&data, &edges, &params)?,
        MethodArg::AsymmetricPl => fit_asymmetric_pl(&data, &edges, &params)?,
        MethodArg::MeanField => fit_mean_field(&data, &edges, &params)
            .with_context(|| format!("--method mean-field on --data {}", args.data.display()))?,
    };
    let seconds = start.elapsed().as_secs_f64();
    let graph = FactorGraph::from_pairwise(&outcome.model, 1.0)?;
    outputs.stage_bytes("--output", format_uai(&graph).as_bytes())?;
    let report = FitReport {
        method: args.method.name(),
        output: &args.output.to_string_lossy(),
        examples: data.rows(),
        variables: columns,
        edges: outcome.model.edges().len(),
        l2: args.l2,
        l1: args.l1,
        tolerance: args.tolerance,
        objective: outcome.objective,
        gradient_norm: outcome.gradient_norm,
        iterations: outcome.iterations,
        converged: outcome.converged,
        seconds,
    };
    if global.json {
        print_json(&report)?;
    } else {
        say(
            global,
            &format!(
                "{}: {} fit of {} variables, {} edges on {} examples: objective {:.9}, \
                 gradient norm {:.2e} after {} iterations{} ({:.2} s)",
                report.output,
                report.method,
                report.variables,
                report.edges,
                report.examples,
                report.objective,
                report.gradient_norm,
                report.iterations,
                if report.converged {
                    ""
                } else {
                    " (NOT converged: --max-iterations reached or no further decrease)"
                },
                seconds
            ),
        );
    }
    outputs.commit()
}
