//! Sampler speed: `cargo bench --bench sampling` (release profile, fat LTO).
//!
//! Prints medians over repeated timings of
//! * checkerboard Metropolis and Gibbs sweeps on a 1024 x 1024 torus at beta_c, 1 and 2 threads,
//!   with the byte kernel (AVX2 copy and baseline x86-64 copy) and the multi-spin-coded kernel
//!   (64 spins per u64, `sample::multispin`; the AVX-512 or AVX2 copy the CPU picks, and the
//!   portable copy forced), in flips per ns (attempted single-spin updates per nanosecond) and
//!   per core;
//! * the sequential byte-per-spin sweep over `EnergyModel::flip_delta` (the "before" figure);
//! * Wolff cluster updates per second on a 256 x 256 torus at beta_c, and the integrated
//!   autocorrelation time of the energy for Metropolis (in sweeps) and Wolff (in updates and in
//!   sweep equivalents, updates * mean cluster size / N).
//!
//! Pass `quick` as an argument for fewer repetitions, `kernel` for the single-spin part only,
//! `multispin` for the multi-spin rows only (`benches/multispin_ab.sh` alternates several builds
//! of this bench with that argument and prints medians and ranges).

use std::time::Instant;

use ebm::model::{Boundary, IsingLattice};
use ebm::sample::{
    LatticeChain, LocalRule, SamplerKind, Start, general, initial_state,
    lattice::{Checkerboard, Kernel},
    stats,
};

const BETA_C: f64 = 0.440_686_793_509_771_6;

/// CPU time of all threads of this process, in ns, from /proc/self/task/*/schedstat (Linux);
/// None elsewhere. On a shared machine the wall clock includes time other processes ran, so
/// flips per CPU-ns is the fair per-core figure.
fn cpu_ns() -> Option<u128> {
    let mut total = 0u128;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u128>().ok()?;
    }
    Some(total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// (flips per wall ns, flips per CPU ns), medians.
fn checkerboard_rate(
    rule: LocalRule,
    threads: usize,
    kernel: Kernel,
    simd: bool,
    reps: usize,
) -> (f64, f64) {
    let l = 1024;
    let m = IsingLattice::new(l, l, Boundary::Periodic, 1.0, 0.0).unwrap();
    let s = initial_state(l * l, Start::Random, 1);
    let mut cb = Checkerboard::with_kernel(&m, rule, BETA_C, 7, &s, kernel);
    assert_eq!(cb.kernel(), kernel);
    cb.set_simd(simd);
    let p = pool(threads);
    p.install(|| {
        for _ in 0..3 {
            cb.sweep();
        }
        let sweeps = 100;
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..reps {
            let c0 = cpu_ns();
            let t = Instant::now();
            for _ in 0..sweeps {
                cb.sweep();
            }
            let flips = (sweeps * l * l) as f64;
            wall.push(flips / t.elapsed().as_nanos() as f64);
            if let (Some(a), Some(b)) = (c0, cpu_ns()) {
                cpu.push(flips / (b - a) as f64);
            }
        }
        let cpu = if cpu.is_empty() {
            f64::NAN
        } else {
            median(cpu)
        };
        (median(wall), cpu)
    })
}

fn sequential_rate(reps: usize) -> f64 {
    let l = 1024;
    let m = IsingLattice::new(l, l, Boundary::Periodic, 1.0, 0.0).unwrap();
    let mut s = initial_state(l * l, Start::Random, 1);
    let mut rng = ebm::rng::from_seed(3);
    let times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            general::sweep(&m, BETA_C, LocalRule::Metropolis, &mut s, &mut rng);
            (l * l) as f64 / t.elapsed().as_nanos() as f64
        })
        .collect();
    median(times)
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let reps = if quick { 3 } else { 7 };
    println!("single-spin sweeps, 1024 x 1024 torus, beta_c; median of {reps} x 100 sweeps");
    println!(
        "  sequential flip_delta Metropolis, 1 thread: {:.3} flips/ns",
        sequential_rate(reps)
    );
    let only_multispin = std::env::args().any(|a| a == "multispin");
    let kernels: &[(Kernel, bool, &str)] = if only_multispin {
        &[
            (
                Kernel::MultiSpin,
                true,
                "multi-spin 64/word, AVX-512 or AVX2 if available",
            ),
            (Kernel::MultiSpin, false, "multi-spin 64/word, portable"),
        ]
    } else {
        &[
            (Kernel::Bytes, false, "bytes, baseline x86-64"),
            (Kernel::Bytes, true, "bytes, AVX2 if available"),
            (
                Kernel::MultiSpin,
                true,
                "multi-spin 64/word, AVX-512 or AVX2 if available",
            ),
            (Kernel::MultiSpin, false, "multi-spin 64/word, portable"),
        ]
    };
    for rule in [LocalRule::Metropolis, LocalRule::Gibbs] {
        for &(kernel, simd, code) in kernels {
            for threads in [1, 2] {
                let (r, c) = checkerboard_rate(rule, threads, kernel, simd, reps);
                println!(
                    "  checkerboard {rule:?}, {code}, {threads} thread(s): {r:.3} flips/ns wall, \
                     {c:.3} flips per CPU-ns (per core)"
                );
            }
        }
    }

    if std::env::args().any(|a| a == "kernel") {
        return;
    }
    let l = 256;
    let n = l * l;
    let m = IsingLattice::new(l, l, Boundary::Periodic, 1.0, 0.0).unwrap();
    let updates = if quick { 20_000 } else { 100_000 };
    let mut wolff = LatticeChain::new(
        &m,
        SamplerKind::Wolff,
        BETA_C,
        11,
        initial_state(n, Start::Up, 0),
    )
    .unwrap();
    for _ in 0..2000 {
        wolff.step();
    }
    let mut energies = Vec::with_capacity(updates);
    let mut flipped = 0u64;
    let t = Instant::now();
    for _ in 0..updates {
        flipped += wolff.step();
        energies.push(wolff.energy());
    }
    let secs = t.elapsed().as_secs_f64();
    let mean_cluster = flipped as f64 / updates as f64;
    let tau_w = stats::integrated_autocorrelation_time(&energies);
    println!("Wolff, 256 x 256 torus, beta_c: {updates} updates");
    println!(
        "  {:.0} updates/s, mean cluster {:.0} spins ({:.3} of N), {:.3} flips/ns",
        updates as f64 / secs,
        mean_cluster,
        mean_cluster / n as f64,
        flipped as f64 / secs / 1e9
    );
    println!(
        "  tau_int(E) = {:.2} updates = {:.3} sweep equivalents (window {}, reliable {})",
        tau_w.tau,
        tau_w.tau * mean_cluster / n as f64,
        tau_w.window,
        tau_w.reliable
    );

    let sweeps = if quick { 5_000 } else { 40_000 };
    let mut metro = LatticeChain::new(
        &m,
        SamplerKind::Metropolis,
        BETA_C,
        13,
        initial_state(n, Start::Up, 0),
    )
    .unwrap();
    for _ in 0..2000 {
        metro.step();
    }
    let mut energies = Vec::with_capacity(sweeps);
    let t = Instant::now();
    for _ in 0..sweeps {
        metro.step();
        energies.push(metro.energy());
    }
    let secs = t.elapsed().as_secs_f64();
    let tau_m = stats::integrated_autocorrelation_time(&energies);
    println!(
        "Metropolis checkerboard, 256 x 256 torus, beta_c: {sweeps} sweeps, {:.3} flips/ns incl. measuring E each sweep",
        (sweeps * n) as f64 / secs / 1e9
    );
    println!(
        "  tau_int(E) = {:.1} sweeps (window {}, reliable {})",
        tau_m.tau, tau_m.window, tau_m.reliable
    );
}
