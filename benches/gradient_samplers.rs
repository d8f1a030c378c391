//! Gradient samplers against single-site samplers: `cargo bench --bench gradient_samplers`
//! (release profile). Writes CSV curves for the figures of docs/sampling.md (plotted by
//! `benches/plot_gradient_samplers.py`) and prints a table of effective sample sizes per second.
//!
//! Sections (arguments; default: all):
//! * `lattice`: 5 x 5 periodic Ising lattice, J = 0.2 per bond, h = 0.2, beta = 1 (the setting
//!   of Grathwohl et al. 2021 and Zhang et al. 2022); exact marginals by enumeration of the
//!   2^25 states.
//! * `uai`: the frustrated 10 x 10 grid `data/uai/Grids_11.uai`; exact marginals by variable
//!   elimination.
//! * `glass`: a frustrated 10 x 10 +-J spin glass with random +-fields (see [`spin_glass`]),
//!   which mixes within seconds; exact marginals by variable elimination.
//! * `throughput`: GWG proposals per second on one core for a random 784 x 500 RBM.
//! * `alpha`: DMALA at step sizes 0.05 .. 1 on the lattice and the spin glass, with random-scan
//!   Gibbs as the reference (chains of half the usual length).
//! * `proposals`: nanoseconds per DMALA / DULA proposal alone (no recording) on the lattice
//!   and the spin glass at several step sizes, as CPU time of the thread (median of 7 blocks of
//!   0.3 s): the cost of a proposal on the score-table path, little disturbed by other jobs.
//!   Run an old and a new build of this bench alternately to compare them.
//!
//! `quick` shortens every chain to 0.5 s. Rows marked "general path" run the same gradient
//! sampler with the score tables switched off (`ExactChain::general_path`, the code before
//! them), timed side by side in the same run.
//!
//! Samplers: random-scan Gibbs and random-scan Metropolis (one site drawn uniformly per update),
//! GWG, DULA and DMALA (step size 0.2 and the best of a small grid for DMALA). Every sampler runs
//! the same [`PairwiseMrf`], single-threaded, `SEEDS` independent chains for a fixed wall-clock
//! budget each. A "sweep" is n single-site updates (Gibbs, Metropolis), n GWG proposals, or one
//! DULA / DMALA proposal. After every sweep the running mean of each spin is updated; at
//! log-spaced sweep counts the RMSE over sites of (running mean of P(s_i = +1)) - (exact
//! marginal) is recorded with the elapsed seconds (CPU time of the sampling thread on Linux, so
//! that other jobs on a shared machine matter less; see [`Clock`]). ESS: sweeps / (2 tau_int)
//! of the magnetisation series (Sokal's window, over the first 100 000 sweeps), per second of
//! sampling.

use std::io::Write;
use std::time::Instant;

use ebm::infer::eliminate::{EliminateOptions, marginals_pairwise};
use ebm::infer::exact::enumerate_marginals;
use ebm::model::{Boundary, EnergyModel, IsingLattice, PairwiseMrf, RbmF32, Spin};
use ebm::rng::{EbmRng, from_seed, uniform_f64};
use ebm::sample::general::flip_probability;
use ebm::sample::gradient::{ExactChain, GradientSampler, RbmChain};
use ebm::sample::{LocalRule, stats};

const SEEDS: u64 = 3;

#[derive(Clone, Copy)]
enum Kind {
    RandomScan(LocalRule),
    Gradient(GradientSampler),
    /// The same sampler forced onto the general path (exp / softplus per score; the code
    /// before the score tables), to time one path against the other in the same run.
    GeneralPath(GradientSampler),
}

impl Kind {
    fn label(self) -> String {
        match self {
            Kind::RandomScan(LocalRule::Gibbs) => "gibbs (random scan)".into(),
            Kind::RandomScan(LocalRule::Metropolis) => "metropolis (random scan)".into(),
            Kind::Gradient(g) => match g.step_size() {
                Some(a) => format!("{} (alpha {a})", g.name()),
                None => g.name().into(),
            },
            Kind::GeneralPath(g) => format!("{} general path", Kind::Gradient(g).label()),
        }
    }
}

/// A chain of either kind on a pairwise model.
enum Chain {
    RandomScan {
        model: PairwiseMrf,
        rule: LocalRule,
        s: Vec<Spin>,
        rng: EbmRng,
    },
    Gradient(Box<ExactChain<PairwiseMrf>>),
}

impl Chain {
    fn new(model: &PairwiseMrf, kind: Kind, seed: u64) -> Self {
        let mut rng = from_seed(seed);
        let s: Vec<Spin> = (0..model.num_vars())
            .map(|_| if uniform_f64(&mut rng) < 0.5 { 1 } else { -1 })
            .collect();
        match kind {
            Kind::RandomScan(rule) => Chain::RandomScan {
                model: model.clone(),
                rule,
                s,
                rng,
            },
            Kind::Gradient(g) => Chain::Gradient(Box::new(
                ExactChain::new(model.clone(), g, 1.0, s, rng).unwrap(),
            )),
            Kind::GeneralPath(g) => Chain::Gradient(Box::new(
                ExactChain::new(model.clone(), g, 1.0, s, rng)
                    .unwrap()
                    .general_path(),
            )),
        }
    }

    fn sweep(&mut self) {
        match self {
            Chain::RandomScan {
                model,
                rule,
                s,
                rng,
            } => {
                let n = s.len();
                for _ in 0..n {
                    let i = ((uniform_f64(rng) * n as f64) as usize).min(n - 1);
                    let p = flip_probability(*rule, 1.0, model.flip_delta(s, i));
                    if uniform_f64(rng) < p {
                        s[i] = -s[i];
                    }
                }
            }
            Chain::Gradient(c) => {
                c.sweep();
            }
        }
    }

    fn spins(&self) -> &[Spin] {
        match self {
            Chain::RandomScan { s, .. } => s,
            Chain::Gradient(c) => c.spins(),
        }
    }
}

/// The clock of the ESS-per-second comparison: the CPU time of the sampling thread where Linux
/// reports it (/proc/thread-self/schedstat), so that other jobs on a shared machine, which
/// take the core away for a while, do not count against whichever sampler was running; the
/// wall-clock time elsewhere. (Cache and memory-bandwidth contention still count.)
struct Clock {
    wall: Instant,
    cpu_ns: Option<u64>,
}

impl Clock {
    const NAME: &str = "seconds: CPU time of the sampling thread on Linux, else wall time";

    fn start() -> Self {
        Clock {
            wall: Instant::now(),
            cpu_ns: thread_cpu_ns(),
        }
    }

    /// Seconds since `start`.
    fn seconds(&self) -> f64 {
        match (self.cpu_ns, thread_cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 * 1e-9,
            _ => self.wall.elapsed().as_secs_f64(),
        }
    }
}

/// Runs every sampler on `model` for `seconds` per chain; writes `name`.csv rows
/// (sampler, seed, sweeps, seconds, rmse) and prints ESS per second.
fn compare(name: &str, model: &PairwiseMrf, exact: &[f64], kinds: &[Kind], seconds: f64) {
    let n = model.num_vars();
    let path = format!("target/gradient_{name}.csv");
    let mut csv = std::fs::File::create(&path).unwrap();
    writeln!(csv, "sampler,seed,sweeps,seconds,rmse").unwrap();
    println!(
        "\n{name}: {n} variables, {seconds} s per chain ({}), {SEEDS} chains per sampler",
        Clock::NAME
    );
    println!(
        "{:<26} {:>12} {:>10} {:>10} {:>12} {:>14}",
        "sampler", "sweeps/s", "tau_int", "ESS/s", "final RMSE", "acceptance"
    );
    for &kind in kinds {
        let (mut ess_rates, mut sweep_rates, mut taus, mut finals, mut acc) =
            (vec![], vec![], vec![], vec![], vec![]);
        for seed in 0..SEEDS {
            let mut chain = Chain::new(model, kind, 1000 + seed);
            // 32-bit counters (a run of 4 s makes far fewer than 2^32 sweeps): the recording
            // after every sweep, the same for every sampler, stays a small part of the cheapest
            // sweeps (one DMALA proposal).
            let mut ones = vec![0u32; n];
            let mut mags: Vec<f64> = Vec::with_capacity(1 << 20);
            let mut next_record = 1u64;
            let mut sweeps = 0u64;
            let mut paused = 0.0;
            let start = Clock::start();
            let mut last_rmse: f64;
            loop {
                chain.sweep();
                sweeps += 1;
                let s = chain.spins();
                let mut m = 0i32;
                for (c, &x) in ones.iter_mut().zip(s) {
                    *c += (x > 0) as u32;
                    m += x as i32;
                }
                mags.push(m as f64);
                if sweeps == next_record {
                    let t0 = Clock::start();
                    let elapsed = start.seconds() - paused;
                    let mse = ones
                        .iter()
                        .zip(exact)
                        .map(|(&c, &p)| (c as f64 / sweeps as f64 - p).powi(2))
                        .sum::<f64>()
                        / n as f64;
                    last_rmse = mse.sqrt();
                    writeln!(
                        csv,
                        "{},{seed},{sweeps},{elapsed:.6},{last_rmse:.6e}",
                        kind.label()
                    )
                    .unwrap();
                    next_record = (next_record as f64 * 1.2).ceil() as u64;
                    paused += t0.seconds();
                    if elapsed > seconds {
                        break;
                    }
                }
            }
            let elapsed = start.seconds() - paused;
            // tau_int from the first 100 000 sweeps (Sokal's window is O(n W) and a slowly
            // mixing chain has a wide window); ESS scales it to the whole run.
            let (_, tau) = stats::mean_with_error(&mags[..mags.len().min(100_000)]);
            let ess = mags.len() as f64 / (2.0 * tau.tau);
            ess_rates.push(ess / elapsed);
            sweep_rates.push(sweeps as f64 / elapsed);
            taus.push(tau.tau);
            finals.push(last_rmse);
            if let Chain::Gradient(c) = &chain {
                acc.push(c.counts().acceptance_rate());
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "{:<26} {:>12.0} {:>10.2} {:>10.0} {:>12.2e} {:>14}",
            kind.label(),
            mean(&sweep_rates),
            mean(&taus),
            mean(&ess_rates),
            mean(&finals),
            if acc.is_empty() {
                "-".to_string()
            } else {
                format!("{:.3}", mean(&acc))
            }
        );
    }
    println!("curves: {path}");
}

fn kinds(dmala_alpha: f64, general: bool) -> Vec<Kind> {
    let mut kinds = vec![
        Kind::RandomScan(LocalRule::Gibbs),
        Kind::RandomScan(LocalRule::Metropolis),
        Kind::Gradient(GradientSampler::Gwg),
        Kind::Gradient(GradientSampler::Dula { step_size: 0.2 }),
        Kind::Gradient(GradientSampler::Dmala { step_size: 0.2 }),
        Kind::Gradient(GradientSampler::Dmala {
            step_size: dmala_alpha,
        }),
    ];
    if general {
        kinds.push(Kind::GeneralPath(GradientSampler::Gwg));
        kinds.push(Kind::GeneralPath(GradientSampler::Dmala {
            step_size: dmala_alpha,
        }));
    }
    kinds
}

/// The 5x5 lattice of section `lattice` and its exact marginals.
fn lattice_model() -> (PairwiseMrf, Vec<f64>) {
    let lattice = IsingLattice::new(5, 5, Boundary::Periodic, 0.2, 0.2).unwrap();
    let model = lattice.to_pairwise().unwrap();
    let t = Instant::now();
    let exact = enumerate_marginals(&model, 1.0).unwrap();
    println!(
        "5x5 lattice: exact marginals by enumeration of 2^25 states in {:.1} s: P(s = +1) = {:.6}",
        t.elapsed().as_secs_f64(),
        exact[0]
    );
    (model, exact)
}

fn lattice(seconds: f64) {
    let (model, exact) = lattice_model();
    compare("lattice", &model, &exact, &kinds(0.5, true), seconds);
}

/// Section `alpha`: DMALA's ESS per second against its step size on the lattice and the spin
/// glass, random-scan Gibbs alongside as the reference (curves in target/gradient_*_alpha.csv).
fn alpha_scan(seconds: f64) {
    let mut kinds = vec![Kind::RandomScan(LocalRule::Gibbs)];
    for step_size in [0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0] {
        kinds.push(Kind::Gradient(GradientSampler::Dmala { step_size }));
    }
    let (model, exact) = lattice_model();
    compare("lattice_alpha", &model, &exact, &kinds, seconds);
    let glass = spin_glass();
    let exact = marginals_pairwise(&glass, 1.0, &EliminateOptions::default()).unwrap();
    compare("glass_alpha", &glass, &exact, &kinds, seconds);
}

fn uai(seconds: f64) {
    let path = "data/uai/Grids_11.uai";
    let graph = match ebm::io::open_model(std::path::Path::new(path)).unwrap() {
        ebm::io::LoadedModel::Factors(g) => g,
        _ => panic!("{path} is not a UAI model"),
    };
    let model = graph.to_pairwise().unwrap();
    let exact = marginals_pairwise(&model, 1.0, &EliminateOptions::default()).unwrap();
    compare("uai", &model, &exact, &kinds(0.1, false), seconds);
}

/// The frustrated spin glass of section `glass`: a 10 x 10 grid with open boundaries, every
/// bond J_ij = +0.75 or -0.75 and every field h_i = +0.25 or -0.25 with probability 1/2 each,
/// drawn in order (horizontal bonds row by row, then vertical bonds, then fields) from
/// `from_seed(13)`; beta = 1. Its parameters are multiples of 0.25, so the gradient samplers
/// run on the score-table path.
fn spin_glass() -> PairwiseMrf {
    let (w, h) = (10, 10);
    let mut rng = from_seed(13);
    let mut sign = |x: f64| if uniform_f64(&mut rng) < 0.5 { x } else { -x };
    let mut bonds = Vec::new();
    for r in 0..h {
        for c in 0..w - 1 {
            bonds.push((r * w + c, r * w + c + 1, sign(0.75)));
        }
    }
    for r in 0..h - 1 {
        for c in 0..w {
            bonds.push((r * w + c, (r + 1) * w + c, sign(0.75)));
        }
    }
    let fields = (0..w * h).map(|_| sign(0.25)).collect();
    PairwiseMrf::new(fields, &bonds).unwrap()
}

fn glass(seconds: f64) {
    let model = spin_glass();
    let exact = marginals_pairwise(&model, 1.0, &EliminateOptions::default()).unwrap();
    println!("\n10 x 10 +-J spin glass (J = +-0.75, h = +-0.25, seed 13), beta = 1");
    compare("glass", &model, &exact, &kinds(0.5, true), seconds);
}

/// GWG proposals per second on one core for a 784 x 500 RBM with weights ~ U(-0.05, 0.05),
/// biases ~ U(-1, 1); "bit proposals": each GWG proposal scores all 784 bits.
fn throughput() {
    let (nv, nh) = (784, 500);
    let mut rng = from_seed(7);
    let mut u = |s: f64| (s * (2.0 * uniform_f64(&mut rng) - 1.0)) as f32;
    let model = RbmF32 {
        n_visible: nv,
        n_hidden: nh,
        weights: (0..nv * nh).map(|_| u(0.05)).collect(),
        visible_bias: (0..nv).map(|_| u(1.0)).collect(),
        hidden_bias: (0..nh).map(|_| u(1.0)).collect(),
    };
    for sampler in [
        GradientSampler::Gwg,
        GradientSampler::Dmala { step_size: 0.2 },
    ] {
        let mut chain = RbmChain::new(&model, sampler, vec![0; nv]).unwrap();
        let mut rng = from_seed(8);
        let mut rates = Vec::new();
        for _ in 0..5 {
            let steps = 2000;
            let t = Instant::now();
            for _ in 0..steps {
                chain.step(&model, &mut rng);
            }
            rates.push(steps as f64 / t.elapsed().as_secs_f64());
        }
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = rates[rates.len() / 2];
        println!(
            "784 x 500 RBM, {} on one core: {:.0} proposals/s = {:.2e} bit proposals/s (median of 5), \
             acceptance {:.3}, {:.2} bits flipped per proposal",
            sampler.name(),
            median,
            median * nv as f64,
            chain.counts().acceptance_rate(),
            chain.counts().mean_bits_flipped()
        );
    }
}

/// Nanoseconds this thread has run on a CPU (Linux: /proc/thread-self/schedstat), so that
/// time-slicing on a shared machine does not count; None elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds per proposal of `sampler` on `model` (beta = 1) alone: chain.step() in a loop,
/// over 7 timed blocks of about 0.3 s of wall time each (after a warm-up block). Prints the
/// median, min and max over the blocks of the thread's CPU time per proposal (wall time where
/// the CPU time is not available), and the median wall time.
fn proposal_cost(name: &str, model: &PairwiseMrf, sampler: GradientSampler) {
    let mut rng = from_seed(1);
    let s: Vec<Spin> = (0..model.num_vars())
        .map(|_| if uniform_f64(&mut rng) < 0.5 { 1 } else { -1 })
        .collect();
    let mut chain = ExactChain::new(model.clone(), sampler, 1.0, s, rng).unwrap();
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for rep in 0..8 {
        let t = Instant::now();
        let c0 = thread_cpu_ns();
        let mut steps = 0u64;
        while t.elapsed().as_secs_f64() < 0.3 {
            for _ in 0..20_000 {
                chain.step();
            }
            steps += 20_000;
        }
        let wall_ns = t.elapsed().as_secs_f64() * 1e9;
        let cpu_ns = match (c0, thread_cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64,
            _ => wall_ns,
        };
        if rep > 0 {
            cpu.push(cpu_ns / steps as f64);
            wall.push(wall_ns / steps as f64);
        }
    }
    let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    sort(&mut cpu);
    sort(&mut wall);
    let c = chain.counts();
    println!(
        "{name:<8} {:<20} {:>7.1} ns/proposal CPU (min {:.1}, max {:.1}; wall {:.1}), \
         acceptance {:.3}, {:.2} bits flipped",
        Kind::Gradient(sampler).label(),
        cpu[cpu.len() / 2],
        cpu[0],
        cpu[cpu.len() - 1],
        wall[wall.len() / 2],
        c.acceptance_rate(),
        c.mean_bits_flipped()
    );
}

fn proposals() {
    let lattice = IsingLattice::new(5, 5, Boundary::Periodic, 0.2, 0.2)
        .unwrap()
        .to_pairwise()
        .unwrap();
    let glass = spin_glass();
    println!("\ncost of one proposal alone (table path), beta = 1:");
    for (name, model) in [("lattice", &lattice), ("glass", &glass)] {
        for sampler in [
            GradientSampler::Dula { step_size: 0.2 },
            GradientSampler::Dmala { step_size: 0.1 },
            GradientSampler::Dmala { step_size: 0.2 },
            GradientSampler::Dmala { step_size: 0.5 },
        ] {
            proposal_cost(name, model, sampler);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "quick");
    let seconds = if quick { 0.5 } else { 4.0 };
    let wants = |s: &str| args.iter().any(|a| a == s);
    let any = [
        "lattice",
        "uai",
        "glass",
        "throughput",
        "proposals",
        "alpha",
    ]
    .iter()
    .any(|s| wants(s));
    if !any || wants("lattice") {
        lattice(seconds);
    }
    if !any || wants("glass") {
        glass(seconds);
    }
    if !any || wants("uai") {
        uai(seconds);
    }
    if !any || wants("throughput") {
        throughput();
    }
    if !any || wants("proposals") {
        proposals();
    }
    if !any || wants("alpha") {
        alpha_scan(seconds / 2.0);
    }
}
