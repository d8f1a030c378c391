//! Speed of the exact partition functions (`cargo bench --bench partition`).
//!
//! Prints, for each case, the median wall time of its repeats, states per second per core
//! (from a one-thread run), and the ln Z found (so that a run also shows the answers agree).
//! `cargo bench --bench partition -- quick` skips the 6x6 torus (2^36 states, about a minute).
//! The numpy comparison lives in `benches/numpy_compare.py` (see docs/partition.md).

use std::time::Instant;

use ebm::infer::eliminate::{EliminateOptions, eliminate_factor_graph};
use ebm::infer::exact::{self, EnumerateOptions};
use ebm::infer::rbm::rbm_log_partition;
use ebm::model::{Boundary, FactorGraph, IsingLattice, PairwiseMrf, Rbm};
use ebm::progress::Silent;
use rand::RngExt;

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

fn report(name: &str, states: f64, one_thread: (f64, f64), all: (f64, f64), threads: usize) {
    println!(
        "{name:<44} {:>10.3} s  {:>8.3} s ({threads} thr)  {:>7.3} ns/state/core  ln Z = {:.12}",
        one_thread.0,
        all.0,
        one_thread.0 / states * 1e9,
        all.1
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let threads = rayon::current_num_threads();
    println!("threads available: {threads}; medians of repeated runs\n");
    println!(
        "{:<44} {:>12}  {:>16}  {:>22}",
        "case", "1 thread", "all threads", "per state per core"
    );

    // Uniform torus: the (bond sum, magnetisation) histogram.
    let l56 = IsingLattice::new(6, 5, Boundary::Periodic, 1.0, 0.0).unwrap();
    let run = || exact::log_partition_lattice(&l56, 0.4406868).unwrap();
    report(
        "enumerate 6x5 torus histogram (2^30)",
        2f64.powi(30),
        time(1, 3, run),
        time(threads, 3, run),
        threads,
    );
    if !quick {
        let l66 = IsingLattice::new(6, 6, Boundary::Periodic, 1.0, 0.0).unwrap();
        let run = || exact::log_partition_lattice(&l66, 0.4406868).unwrap();
        let all = time(threads, 1, run);
        println!(
            "{:<44} {:>12}  {:>8.3} s ({threads} thr)  {:>7.3} ns/state/core  ln Z = {:.12}",
            "enumerate 6x6 torus histogram (2^36)",
            "-",
            all.0,
            all.0 * threads as f64 / 2f64.powi(36) * 1e9,
            all.1
        );
    }

    // 30-variable random models as UAI-style factor graphs (pairwise tables exp(J s s), exp(h s)).
    for (label, density) in [
        ("sparse, mean degree ~4", 4.0 / 29.0),
        ("dense, all 435 pairs", 1.0),
    ] {
        let model = random_pairwise(30, density, 7);
        let graph = FactorGraph::from_pairwise(&model, 1.0).unwrap();
        let small = FactorGraph::from_pairwise(&random_pairwise(26, density, 7), 1.0).unwrap();
        let one = time(1, 3, || exact::log_partition_factor_graph(&small).unwrap());
        let all = time(threads, 1, || {
            exact::log_partition_factor_graph(&graph).unwrap()
        });
        println!(
            "{:<44} {:>8.3} s/2^26  {:>8.3} s ({threads} thr)  {:>7.3} ns/state/core  ln Z = {:.12}",
            format!("enumerate 30-var random model ({label})"),
            one.0,
            all.0,
            one.0 / 2f64.powi(26) * 1e9,
            all.1
        );
    }
    let _ = EnumerateOptions::default();
    let _ = Silent;

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
    let small = Rbm::new(
        nv,
        20,
        rbm.weights()
            .iter()
            .enumerate()
            .filter(|(k, _)| k % 25 < 20)
            .map(|(_, &x)| x)
            .collect(),
        rbm.visible_bias().to_vec(),
        rbm.hidden_bias()[..20].to_vec(),
    )
    .unwrap();
    let one = time(1, 3, || rbm_log_partition(&small).unwrap());
    let all = time(threads, if quick { 1 } else { 3 }, || {
        rbm_log_partition(&rbm).unwrap()
    });
    println!(
        "{:<44} {:>8.3} s/2^20  {:>8.3} s ({threads} thr)  {:>7.3} ns/state/core  ln Z = {:.12}",
        "rbm 784 x 25 (2^25 hidden states)",
        one.0,
        all.0,
        one.0 / 2f64.powi(20) * 1e9,
        all.1
    );
    println!(
        "{:<44} {:>7.3} ns per softplus term per core",
        "",
        one.0 / 2f64.powi(20) / 784.0 * 1e9
    );

    // UAI 2014 models by elimination.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ref/ising/uai");
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
            let (t, lz) = time(threads, 3, || {
                let e = eliminate_factor_graph(&graph, &EliminateOptions::default()).unwrap();
                e.log_z
            });
            let plan = ebm::infer::eliminate::plan_factor_graph(&graph, Default::default());
            width = width.max(plan.induced_width);
            println!(
                "eliminate {:<22} {:>8.3} s ({threads} thr)  width {width:>2}  log10 Z = {:.6} (.PR {pr})",
                path.file_name().unwrap().to_string_lossy(),
                t,
                lz / std::f64::consts::LN_10
            );
        }
    }
}
