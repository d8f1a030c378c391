//! Speed of the exact partition functions (`cargo bench --bench partition`).
//!
//! Prints, for each case, the median wall time of its repeats, states per second per core
//! (from a one-thread run), and the ln Z found (so that a run also shows the answers agree).
//! `cargo bench --bench partition -- quick` skips the 6x6 torus (2^36 states, about a minute).
//! Each UAI model is also timed for ln Z alone against ln Z with every marginal (the two-pass
//! elimination), with their ratio; `benches/marginals.sh` does the same for whole `ebm` runs.
//! The numpy comparison lives in `benches/numpy_compare.py` (see docs/partition.md).

use std::time::Instant;

use ebm::infer::eliminate::{
    EliminateOptions, eliminate_factor_graph, eliminate_factor_graph_marginals_with_plan,
    eliminate_factor_graph_with_plan,
};
use ebm::infer::exact;
use ebm::infer::rbm::rbm_log_partition;
use ebm::model::{Boundary, FactorGraph, IsingLattice, PairwiseMrf, Rbm};
use rand::RngExt;

/// CPU seconds (user + system) of this process so far, from /proc/self/stat (Linux; clock ticks
/// of 1/100 s). On a shared machine wall time overstates per-core cost; CPU time does not.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median seconds of `repeats` runs of `f` in a pool of `threads` threads, and the last value.
fn time<F: Fn() -> f64 + Sync>(threads: usize, repeats: usize, f: F) -> (f64, f64) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut times = Vec::new();
    let mut value = f64::NAN;
    for _ in 0..repeats {
        let t = Instant::now();
        value = pool.install(&f);
        times.push(t.elapsed().as_secs_f64());
    }
    (median(times), value)
}

fn random_pairwise(n: usize, density: f64, seed: u64) -> PairwiseMrf {
    let mut rng = ebm::rng::from_seed(seed);
    let fields = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut edges = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if rng.random_bool(density) {
                edges.push((i, j, rng.random_range(-1.0..1.0)));
            }
        }
    }
    PairwiseMrf::new(fields, &edges).unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let threads = rayon::current_num_threads();
    println!("threads available: {threads}; medians of repeated runs\n");

    let case = |name: &str, states: f64, f: &dyn Fn() -> f64| {
        let (c0, t0) = (cpu_seconds(), Instant::now());
        let value = f();
        let (cpu, wall) = (cpu_seconds() - c0, t0.elapsed().as_secs_f64());
        println!(
            "{name:<48} wall {wall:>8.3} s  cpu {cpu:>8.3} s  {:>8.3} ns/state/core (cpu)  {:>10.3e} states/s/core  ln Z = {value:.12}",
            cpu / states * 1e9,
            states / cpu
        );
    };
    let l56 = IsingLattice::new(6, 5, Boundary::Periodic, 1.0, 0.0).unwrap();
    case(
        "enumerate 6x5 torus, histogram (2^30)",
        2f64.powi(30),
        &|| exact::log_partition_lattice(&l56, 0.4406868).unwrap(),
    );
    if !quick {
        let l66 = IsingLattice::new(6, 6, Boundary::Periodic, 1.0, 0.0).unwrap();
        case(
            "enumerate 6x6 torus, histogram (2^36)",
            2f64.powi(36),
            &|| exact::log_partition_lattice(&l66, 0.4406868).unwrap(),
        );
    }
    // 30-variable random models as UAI-style factor graphs (pairwise tables exp(J s s), exp(h s)).
    for (label, density) in [
        ("sparse, mean degree ~4", 4.0 / 29.0),
        ("dense, all pairs", 1.0),
    ] {
        let graph = FactorGraph::from_pairwise(&random_pairwise(30, density, 7), 1.0).unwrap();
        case(
            &format!("enumerate 30-var random ({label})"),
            2f64.powi(30),
            &|| exact::log_partition_factor_graph(&graph).unwrap(),
        );
    }

    // RBM 784 x 25.
    let mut rng = ebm::rng::from_seed(3);
    let normal = |rng: &mut ebm::rng::EbmRng, s: f64| {
        // Box-Muller is enough for benchmark weights.
        let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
        s * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let (nv, nh) = (784, 25);
    let w = (0..nv * nh).map(|_| normal(&mut rng, 0.05)).collect();
    let b = (0..nv).map(|_| normal(&mut rng, 0.5)).collect();
    let c = (0..nh).map(|_| normal(&mut rng, 0.5)).collect();
    let rbm = Rbm::new(nv, nh, w, b, c).unwrap();
    case("rbm 784 x 25 (2^25 hidden states)", 2f64.powi(25), &|| {
        rbm_log_partition(&rbm).unwrap()
    });
    println!("{:<48} (per softplus term: divide ns/state by 784)", "");

    // UAI 2014 models by elimination.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/uai");
    if dir.is_dir() {
        println!();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "uai"))
            .collect();
        files.sort();
        for path in files {
            let graph = ebm::io::uai::read_uai(&path).unwrap();
            let pr = ebm::io::uai::read_pr(&path.with_extension("uai.PR")).unwrap();
            let mut width = 0;
            let (c0, t0) = (cpu_seconds(), Instant::now());
            let (_, lz) = time(threads, 1, || {
                let e = eliminate_factor_graph(&graph, &EliminateOptions::default()).unwrap();
                e.log_z
            });
            let (t, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
            let plan = ebm::infer::eliminate::plan_factor_graph(&graph, Default::default());
            width = width.max(plan.induced_width);
            println!(
                "eliminate {:<22} wall {:>7.3} s  cpu {cpu:>7.3} s ({threads} thr)  width {width:>2}  log10 Z = {:.6} (.PR {pr})",
                path.file_name().unwrap().to_string_lossy(),
                t,
                lz / std::f64::consts::LN_10
            );
            // ln Z alone and ln Z with every marginal (two passes), from the same plan,
            // alternating, three rounds each: medians and their ratio.
            let opts = EliminateOptions::default();
            let (mut alone, mut with) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                alone.push(
                    time(threads, 1, || {
                        eliminate_factor_graph_with_plan(&graph, plan.clone(), &opts)
                            .unwrap()
                            .log_z
                    })
                    .0,
                );
                with.push(
                    time(threads, 1, || {
                        let (e, m) =
                            eliminate_factor_graph_marginals_with_plan(&graph, plan.clone(), &opts)
                                .unwrap();
                        e.log_z + m[0]
                    })
                    .0,
                );
            }
            let (alone, with) = (median(alone), median(with));
            println!(
                "  ln Z {alone:>7.3} s, ln Z and marginals {with:>7.3} s: ratio {:.2} ({} bytes of messages kept)",
                with / alone,
                plan.marginal_bytes()
            );
        }
    }
}
