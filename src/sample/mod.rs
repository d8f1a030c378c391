//! Markov-chain Monte Carlo sampling of binary models, and the statistics of its output.
//!
//! | sampler | applies to | module |
//! |---|---|---|
//! | Gibbs (heat bath), Metropolis, sequential | any [`EnergyModel`](crate::model::EnergyModel) | [`general`] |
//! | Gibbs, Metropolis, checkerboard, rayon over rows | bipartite [`IsingLattice`] | [`lattice`] |
//! | the same, multi-spin coded (64 spins per word, bitwise adders) | [`IsingLattice`] torus with even sides | [`multispin`] |
//! | Wolff, Swendsen-Wang | ferromagnetic [`IsingLattice`] (J >= 0), any field | [`cluster`] |
//! | Gibbs-with-Gradients, DULA, DMALA (many chains) | pairwise models, factor graphs, [`IsingLattice`], RBM visible units | [`gradient`] |
//!
//! [`sample_lattice`] picks the checkerboard when the lattice is bipartite (even width; even
//! height, open boundary or height 1) with a uniform field, and the sequential sweep otherwise
//! (a periodic side of odd length is not two-colourable). All samplers target
//! p(s) ∝ exp(-beta E(s)) with `E(s) = -J sum_<ij> s_i s_j - sum_i h_i s_i`, s_i in {-1, +1}.
//!
//! Results do not depend on the number of rayon threads: the checkerboard gives every row its
//! own random stream, and the other samplers are sequential.
//!
//! # Example
//! ```
//! use ebm::model::{Boundary, IsingLattice};
//! use ebm::progress::Silent;
//! use ebm::sample::{LatticeParams, SamplerKind, lattice_observables, sample_lattice};
//!
//! let lattice = IsingLattice::new(16, 16, Boundary::Periodic, 1.0, 0.0)?;
//! let params = LatticeParams { sweeps: 2000, burn_in: 200, ..LatticeParams::new(0.3, SamplerKind::Metropolis) };
//! let run = sample_lattice(&lattice, &params, &mut Silent)?;
//! let obs = lattice_observables(&run, 0.3);
//! assert!(obs.energy_per_spin.value < 0.0);
//! # Ok::<(), ebm::Error>(())
//! ```

pub mod cluster;
pub mod composite;
pub mod gaussian;
pub mod general;
pub mod gradient;
pub mod lattice;
pub mod multispin;
pub mod rbm;
pub mod stats;

use rand::Rng;

use crate::error::{Error, Result, check_finite};
use crate::model::{IsingLattice, Spin};
use crate::progress::{Control, Observer, Step};
use crate::rng;
use stats::{TauEstimate, ValueWithStderr};

pub use general::{ModelParams, ModelRun, sample_factor_graph, sample_model};

/// A single-site update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalRule {
    /// Heat bath: draw the spin from its conditional distribution.
    Gibbs,
    /// Metropolis: propose the flip, accept with min(1, exp(-beta Delta E)).
    Metropolis,
}

/// The samplers of a lattice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    /// Heat-bath single-spin updates (checkerboard or sequential).
    Gibbs,
    /// Metropolis single-spin updates (checkerboard or sequential).
    Metropolis,
    /// Wolff single-cluster updates (J >= 0); one "sweep" is one cluster update.
    Wolff,
    /// Swendsen-Wang updates of all clusters (J >= 0); one sweep is one update.
    SwendsenWang,
    /// Gibbs-with-Gradients, DULA or DMALA with exact flip scores ([`gradient`]); a sweep is
    /// N proposals of GWG, one of DULA/DMALA.
    Gradient(gradient::GradientSampler),
}

impl SamplerKind {
    /// The single-site rule, for the local samplers.
    pub fn local_rule(self) -> Option<LocalRule> {
        match self {
            SamplerKind::Gibbs => Some(LocalRule::Gibbs),
            SamplerKind::Metropolis => Some(LocalRule::Metropolis),
            _ => None,
        }
    }
}

/// The initial configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Independent uniform spins ("hot start"), from the run's seed.
    Random,
    /// All spins +1 ("cold start").
    Up,
}

/// The initial configuration for `n` spins.
pub fn initial_state(n: usize, start: Start, seed: u64) -> Vec<Spin> {
    initial_state_of_chain(n, start, seed, 0)
}

/// The initial configuration of chain `chain` of a multi-chain run: random spins from
/// `stream_for(seed, InitialState, chain)`, so chain 0 starts where a single chain does.
pub fn initial_state_of_chain(n: usize, start: Start, seed: u64, chain: u64) -> Vec<Spin> {
    match start {
        Start::Up => vec![1; n],
        Start::Random => {
            let mut rng = rng::stream_for(seed, rng::Purpose::InitialState, chain);
            let mut s = Vec::with_capacity(n);
            while s.len() < n {
                let bits = rng.next_u64();
                for b in 0..64.min(n - s.len()) {
                    s.push(if bits >> b & 1 == 1 { 1 } else { -1 });
                }
            }
            s
        }
    }
}

/// Largest magnitude accepted for beta, a lattice's coupling J and its fields h.
///
/// With |beta|, |J|, |h| <= 1e50 and at most 2^40 sites, the largest figure a run computes, the
/// specific heat bound beta^2 N (2|J| + |h|)^2 <= 1e100 * 2^40 * 9e100 (about 1e214), stays far
/// inside the f64 range, so no energy, mean or fluctuation overflows to infinity or NaN. Larger
/// values are refused up front.
pub const MAX_PARAMETER: f64 = 1e50;

/// The most memory a sampler may plan to allocate for its state: 64 GiB. A job above it is
/// refused before allocating, with [`Error::TooLarge`] ("job too large"), instead of aborting
/// in the allocator.
pub const MAX_SAMPLER_BYTES: u64 = 1 << 36;

/// Refuses a value that is not finite or larger in magnitude than [`MAX_PARAMETER`].
fn check_magnitude(name: &str, value: f64) -> Result<()> {
    check_finite(name, value)?;
    if value.abs() > MAX_PARAMETER {
        return Err(Error::param(
            name,
            format!(
                "magnitude must be at most {MAX_PARAMETER:e}, got {value:e} (larger values overflow \
                 the energies and their fluctuations)"
            ),
        ));
    }
    Ok(())
}

/// [`Error::TooLarge`] for a job of `bytes` (None: beyond 64-bit arithmetic).
fn job_too_large(what: &str, bytes: Option<u64>) -> Error {
    let need = bytes.map_or("more than 2^64 bytes".to_string(), |b| {
        format!("about {:.1} GiB", b as f64 / (1u64 << 30) as f64)
    });
    Error::TooLarge {
        method: "sampling".into(),
        detail: format!(
            "job too large: {what} needs {need}, more than the limit of {} GiB",
            MAX_SAMPLER_BYTES >> 30
        ),
    }
}

/// Checks that a lattice chain's parameters stay within [`MAX_PARAMETER`] and its state within
/// [`MAX_SAMPLER_BYTES`] (estimated at 4 bytes per site for the local samplers, 64 for the
/// cluster samplers with their bond lists and work arrays), before anything is allocated.
fn check_lattice_job(model: &IsingLattice, sampler: SamplerKind, beta: f64) -> Result<()> {
    check_magnitude("beta", beta)?;
    check_magnitude("coupling", model.coupling())?;
    check_magnitude("field", model.uniform_field())?;
    if let Some(h) = model.site_field() {
        let largest = h.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        check_magnitude("field", largest)?;
    }
    let per_site: u64 = match sampler {
        SamplerKind::Gibbs | SamplerKind::Metropolis => 4,
        SamplerKind::Wolff | SamplerKind::SwendsenWang => 64,
        // Spin, score, weight, stamp, work lists and the neighbour rows.
        SamplerKind::Gradient(_) => 96,
    };
    let bytes = (model.num_sites() as u64).checked_mul(per_site);
    if bytes.is_none_or(|b| b > MAX_SAMPLER_BYTES) {
        let what = format!(
            "a {} x {} lattice ({} sites) with {sampler:?}",
            model.width(),
            model.height(),
            model.num_sites()
        );
        return Err(job_too_large(&what, bytes));
    }
    Ok(())
}

/// Checks, before anything is allocated, that `chains` block-Gibbs chains of an RBM with
/// `n_visible` x `n_hidden` units fit within [`MAX_SAMPLER_BYTES`]: per chain a generator (32
/// bytes), three f32 visible buffers and the output byte per visible unit (13 n_visible), two
/// f32 hidden buffers (8 n_hidden). Errors: [`Error::TooLarge`] ("job too large").
pub fn check_rbm_job(n_visible: usize, n_hidden: usize, chains: usize) -> Result<()> {
    let per_chain = (n_visible as u64)
        .checked_mul(13)
        .and_then(|v| (n_hidden as u64).checked_mul(8)?.checked_add(v))
        .and_then(|b| b.checked_add(32));
    let bytes = per_chain.and_then(|b| b.checked_mul(chains as u64));
    if bytes.is_none_or(|b| b > MAX_SAMPLER_BYTES) {
        let what = format!("{chains} chains of an RBM with {n_visible} x {n_hidden} units");
        return Err(job_too_large(&what, bytes));
    }
    Ok(())
}

pub(crate) fn check_chain(beta: f64, sweeps: u64, burn_in: u64) -> Result<()> {
    check_magnitude("beta", beta)?;
    if beta < 0.0 {
        return Err(Error::param("beta", format!("must be >= 0, got {beta}")));
    }
    if sweeps == 0 {
        return Err(Error::param("sweeps", "must be at least 1"));
    }
    if burn_in.checked_add(sweeps).is_none() {
        return Err(Error::param(
            "sweeps",
            format!("{burn_in} burn-in plus {sweeps} recorded sweeps overflow a 64-bit count"),
        ));
    }
    Ok(())
}

/// `count` series of `len` f64 values each (the per-sweep records of a run), with the memory
/// reserved up front through `try_reserve_exact`: records above [`MAX_SAMPLER_BYTES`] or that
/// cannot be allocated fail with [`Error::TooLarge`] ("job too large", exit status 1 like every
/// other size refusal) naming the bytes needed, instead of aborting the process.
pub(crate) fn series_buffers(len: u64, count: usize) -> Result<Vec<Vec<f64>>> {
    let bytes = (len as u128) * 8 * count as u128;
    let what =
        format!("recording {len} sweeps ({bytes} bytes of per-sweep series; record fewer sweeps)");
    let too_large = || job_too_large(&what, u64::try_from(bytes).ok());
    if bytes > u128::from(MAX_SAMPLER_BYTES) {
        return Err(too_large());
    }
    let len = usize::try_from(len).map_err(|_| too_large())?;
    (0..count)
        .map(|_| {
            let mut v = Vec::new();
            v.try_reserve_exact(len).map_err(|_| too_large())?;
            Ok(v)
        })
        .collect()
}

/// Settings of a lattice run. Defaults ([`LatticeParams::new`]): 1000 sweeps, 100 burn-in
/// sweeps, seed [`rng::DEFAULT_SEED`], random start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatticeParams {
    /// Inverse temperature.
    pub beta: f64,
    /// The sampler.
    pub sampler: SamplerKind,
    /// Sweeps (cluster updates for Wolff) recorded after the burn-in.
    pub sweeps: u64,
    /// Sweeps discarded first.
    pub burn_in: u64,
    /// Seed of the run.
    pub seed: u64,
    /// Initial configuration.
    pub start: Start,
    /// Also keep E and M of the burn-in sweeps in the [`LatticeRun`] (for a full trace); by
    /// default only the recorded sweeps are stored.
    pub record_burn_in: bool,
}

impl LatticeParams {
    /// Default number of recorded sweeps.
    pub const DEFAULT_SWEEPS: u64 = 1000;
    /// Default burn-in.
    pub const DEFAULT_BURN_IN: u64 = 100;

    /// The defaults for `beta` and `sampler`.
    pub fn new(beta: f64, sampler: SamplerKind) -> Self {
        LatticeParams {
            beta,
            sampler,
            sweeps: Self::DEFAULT_SWEEPS,
            burn_in: Self::DEFAULT_BURN_IN,
            seed: rng::DEFAULT_SEED,
            start: Start::Random,
            record_burn_in: false,
        }
    }
}

/// One lattice sampler: the state it owns and its update. A new lattice sampler is one new type
/// implementing this trait (plus its [`SamplerKind`] and a line in [`LatticeChain::new`]);
/// [`LatticeChain`] and the recording loop of [`sample_lattice`] serve every sampler alike.
pub trait LatticeUpdate: std::fmt::Debug + Send {
    /// One sweep (one cluster update for Wolff); returns the number of spins flipped.
    fn sweep(&mut self) -> u64;
    /// The energy E(s) of the current configuration.
    fn energy(&self) -> f64;
    /// The magnetisation sum_i s_i.
    fn magnetization(&self) -> i64;
    /// The current configuration, row-major.
    fn state(&self) -> Vec<Spin>;
    /// What [`LatticeRun::updates`] counts per sweep: N single-spin updates for the local
    /// samplers, one cluster update for Wolff and Swendsen-Wang.
    fn updates_per_sweep(&self) -> u64;
    /// True when the parallel checkerboard drives the chain.
    fn is_checkerboard(&self) -> bool {
        false
    }
    /// A boxed copy (for [`Clone`] of [`LatticeChain`]).
    fn boxed_clone(&self) -> Box<dyn LatticeUpdate>;
    /// Proposals made and accepted, for samplers whose moves can flip several spins or be
    /// rejected as a whole (the gradient samplers); None for the others.
    fn proposal_counts(&self) -> Option<gradient::ProposalCounts> {
        None
    }
}

/// A running chain on a lattice, whichever sampler drives it.
#[derive(Debug)]
pub struct LatticeChain {
    update: Box<dyn LatticeUpdate>,
}

impl Clone for LatticeChain {
    fn clone(&self) -> Self {
        LatticeChain {
            update: self.update.boxed_clone(),
        }
    }
}

impl LatticeChain {
    /// A chain of `sampler` on `model` at `beta`, started from `state`: the checkerboard for a
    /// local rule on a bipartite lattice with a uniform field, the sequential sweep for other
    /// local cases, the cluster samplers as named.
    pub fn new(
        model: &IsingLattice,
        sampler: SamplerKind,
        beta: f64,
        seed: u64,
        state: Vec<Spin>,
    ) -> Result<Self> {
        check_chain(beta, 1, 0)?;
        check_lattice_job(model, sampler, beta)?;
        if state.len() != model.num_sites() {
            return Err(Error::SizeMismatch(format!(
                "initial state has {} spins, the lattice {}",
                state.len(),
                model.num_sites()
            )));
        }
        let update: Box<dyn LatticeUpdate> = match sampler {
            SamplerKind::Gibbs | SamplerKind::Metropolis => {
                let rule = sampler.local_rule().expect("local sampler");
                if lattice::Checkerboard::applies(model) {
                    Box::new(lattice::Checkerboard::new(model, rule, beta, seed, &state))
                } else {
                    Box::new(general::SequentialLattice::new(
                        model, rule, beta, seed, state,
                    ))
                }
            }
            SamplerKind::Wolff => Box::new(cluster::Wolff::new(model, beta, seed, state)?),
            SamplerKind::SwendsenWang => {
                Box::new(cluster::SwendsenWang::new(model, beta, seed, state)?)
            }
            SamplerKind::Gradient(sampler) => Box::new(gradient::ExactChain::new(
                model.clone(),
                sampler,
                beta,
                state,
                rng::stream_for(seed, rng::Purpose::GradientChain, 0),
            )?),
        };
        Ok(LatticeChain { update })
    }

    /// True when the parallel checkerboard drives the chain.
    pub fn is_checkerboard(&self) -> bool {
        self.update.is_checkerboard()
    }

    /// One sweep (one cluster update for Wolff); returns the number of spins flipped.
    pub fn step(&mut self) -> u64 {
        self.update.sweep()
    }

    /// The energy E(s) of the current configuration.
    pub fn energy(&self) -> f64 {
        self.update.energy()
    }

    /// The magnetisation sum_i s_i.
    pub fn magnetization(&self) -> i64 {
        self.update.magnetization()
    }

    /// The current configuration, row-major.
    pub fn state(&self) -> Vec<Spin> {
        self.update.state()
    }

    /// Updates counted per sweep (see [`LatticeUpdate::updates_per_sweep`]).
    pub fn updates_per_sweep(&self) -> u64 {
        self.update.updates_per_sweep()
    }

    /// Proposal counts of the gradient samplers (see [`LatticeUpdate::proposal_counts`]).
    pub fn proposal_counts(&self) -> Option<gradient::ProposalCounts> {
        self.update.proposal_counts()
    }
}

/// The outcome of [`sample_lattice`].
#[derive(Debug, Clone, PartialEq)]
pub struct LatticeRun {
    /// Number of sites N.
    pub sites: usize,
    /// E(s) after every stored sweep: the recorded sweeps, preceded by the burn-in sweeps when
    /// [`LatticeParams::record_burn_in`] is set.
    pub energies: Vec<f64>,
    /// sum_i s_i after every stored sweep (same sweeps as `energies`).
    pub magnetizations: Vec<f64>,
    /// How many leading stored sweeps are burn-in (0 unless `record_burn_in`).
    pub burn_in: usize,
    /// Single-spin updates attempted (local samplers) or cluster updates (Wolff: one per sweep;
    /// Swendsen-Wang: one per sweep), burn-in included.
    pub updates: u64,
    /// Spins flipped, burn-in included.
    pub flips: u64,
    /// True when the checkerboard ran (false: sequential or cluster).
    pub checkerboard: bool,
    /// The last configuration, row-major.
    pub state: Vec<Spin>,
    /// Proposals made and accepted and bits flipped, burn-in included (gradient samplers only).
    pub proposals: Option<gradient::ProposalCounts>,
}

impl LatticeRun {
    /// Energies of the recorded sweeps.
    pub fn recorded_energies(&self) -> &[f64] {
        &self.energies[self.burn_in..]
    }
    /// Magnetisations of the recorded sweeps.
    pub fn recorded_magnetizations(&self) -> &[f64] {
        &self.magnetizations[self.burn_in..]
    }
}

/// Runs `params.burn_in + params.sweeps` sweeps on `model`, recording E and M after each
/// recorded sweep (and after the burn-in sweeps too with `record_burn_in`).
///
/// The observer hears about progress about 200 times; `Break` stops with
/// [`Error::Interrupted`]. Errors: beta negative, not finite or above [`MAX_PARAMETER`] (J and
/// h too), zero sweeps, a cluster sampler with J < 0, per-sweep series that cannot be allocated
/// (16 bytes per stored sweep), a lattice state above [`MAX_SAMPLER_BYTES`] ([`Error::TooLarge`]).
pub fn sample_lattice(
    model: &IsingLattice,
    params: &LatticeParams,
    obs: &mut dyn Observer,
) -> Result<LatticeRun> {
    check_chain(params.beta, params.sweeps, params.burn_in)?;
    check_lattice_job(model, params.sampler, params.beta)?;
    let n = model.num_sites();
    let state = initial_state(n, params.start, params.seed);
    let mut chain = LatticeChain::new(model, params.sampler, params.beta, params.seed, state)?;
    let total = params.burn_in + params.sweeps; // checked by check_chain
    let first_stored = if params.record_burn_in {
        0
    } else {
        params.burn_in
    };
    let [mut energies, mut magnetizations]: [Vec<f64>; 2] =
        series_buffers(total - first_stored, 2)?
            .try_into()
            .expect("two buffers");
    let report_every = (total / 200).max(1);
    let mut flips = 0;
    for t in 0..total {
        flips += chain.step();
        let e = chain.energy();
        if t >= first_stored {
            energies.push(e);
            magnetizations.push(chain.magnetization() as f64);
        }
        if (t + 1) % report_every == 0 || t + 1 == total {
            let step = Step {
                done: t + 1,
                total,
                metric: Some(e / n as f64),
            };
            if obs.on_step(&step) == Control::Break {
                return Err(Error::Interrupted);
            }
        }
    }
    Ok(LatticeRun {
        sites: n,
        energies,
        magnetizations,
        burn_in: (params.burn_in - first_stored) as usize,
        updates: total.saturating_mul(chain.updates_per_sweep()),
        flips,
        checkerboard: chain.is_checkerboard(),
        state: chain.state(),
        proposals: chain.proposal_counts(),
    })
}

/// The physical observables of a lattice run, per spin, with error bars.
///
/// With e = E / N and m = M / N over the recorded sweeps:
/// * `energy_per_spin` `<e>`, `abs_magnetization_per_spin` `<|m|>` (standard errors from
///   tau_int);
/// * `specific_heat` `C = beta^2 N (<e^2> - <e>^2)`, `susceptibility`
///   `chi = beta N (<m^2> - <|m|>^2)` (the finite-lattice form with |m|), `binder_cumulant`
///   `U = 1 - <m^4> / (3 <m^2>^2)` (blocked jackknife errors; see [`stats`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatticeObservables {
    /// `<E> / N`.
    pub energy_per_spin: ValueWithStderr,
    /// `<|M|> / N`.
    pub abs_magnetization_per_spin: ValueWithStderr,
    /// `<M> / N`.
    pub magnetization_per_spin: ValueWithStderr,
    /// Specific heat per spin.
    pub specific_heat: ValueWithStderr,
    /// Susceptibility per spin.
    pub susceptibility: ValueWithStderr,
    /// Binder cumulant (NaN when every recorded m is 0).
    pub binder_cumulant: ValueWithStderr,
    /// tau_int of the energy, in sweeps.
    pub tau_int_energy: TauEstimate,
    /// tau_int of |m|, in sweeps.
    pub tau_int_abs_magnetization: TauEstimate,
    /// Jackknife blocks used for the derived quantities (0: too few sweeps for error bars).
    pub blocks: usize,
}

/// Computes [`LatticeObservables`] from the recorded part of a run.
pub fn lattice_observables(run: &LatticeRun, beta: f64) -> LatticeObservables {
    lattice_observables_of_chains(
        run.sites,
        &[run.recorded_energies()],
        &[run.recorded_magnetizations()],
        beta,
    )
}

/// [`LatticeObservables`] of K independent chains of equal length on a lattice of `sites`
/// sites, from each chain's E and M after every recorded sweep. Every per-sweep quantity (e,
/// |m|, m, (e - `<e>`)^2, m^2, m^4) is averaged over the chains first, as the multi-chain UAI
/// runs average their energies: the means are the pooled means, C, chi and U use the pooled
/// moments, tau_int is that of one chain (the average of independent chains has the same
/// autocorrelation), and its error sqrt(2 tau_int var / n) of the chain-averaged series is the
/// error of the pooled mean. With one chain this is exactly the single-chain computation.
pub fn lattice_observables_of_chains(
    sites: usize,
    energies: &[&[f64]],
    magnetizations: &[&[f64]],
    beta: f64,
) -> LatticeObservables {
    let nf = sites as f64;
    let k = energies.len().max(1) as f64;
    let len = energies.first().map_or(0, |e| e.len());
    let mean_over_chains = |series: &[&[f64]], f: &dyn Fn(f64) -> f64| -> Vec<f64> {
        (0..len)
            .map(|t| series.iter().map(|c| f(c[t])).sum::<f64>() / k)
            .collect()
    };
    let e = mean_over_chains(energies, &|x| x / nf);
    let m = mean_over_chains(magnetizations, &|x| x / nf);
    let abs_m = mean_over_chains(magnetizations, &|x| (x / nf).abs());
    // The variance is taken about the mean: <e^2> - <e>^2 of raw energies cancels
    // catastrophically when |<e>| dwarfs the fluctuations (large fields or couplings gave
    // negative specific heats). Var(e) = <(e - c)^2> - <e - c>^2 for any constant c, in every
    // jackknife block too, so shifting by c = <e> changes nothing but the rounding.
    let centre = e.iter().sum::<f64>() / e.len().max(1) as f64;
    let de = mean_over_chains(energies, &|x| x / nf - centre);
    let de2 = mean_over_chains(energies, &|x| (x / nf - centre) * (x / nf - centre));
    let m2 = mean_over_chains(magnetizations, &|x| (x / nf) * (x / nf));
    let m4 = mean_over_chains(magnetizations, &|x| {
        let m2 = (x / nf) * (x / nf);
        m2 * m2
    });
    let (energy, tau_e) = stats::mean_with_error(&e);
    let (abs_mag, tau_m) = stats::mean_with_error(&abs_m);
    let (mag, _) = stats::mean_with_error(&m);
    let blocks = stats::block_count(e.len(), tau_e.tau.max(tau_m.tau));
    let specific_heat = stats::jackknife(&[&de, &de2], blocks, |v| {
        beta * beta * nf * (v[1] - v[0] * v[0])
    });
    let susceptibility =
        stats::jackknife(&[&abs_m, &m2], blocks, |v| beta * nf * (v[1] - v[0] * v[0]));
    let binder_cumulant =
        stats::jackknife(&[&m2, &m4], blocks, |v| 1.0 - v[1] / (3.0 * v[0] * v[0]));
    LatticeObservables {
        energy_per_spin: energy,
        abs_magnetization_per_spin: abs_mag,
        magnetization_per_spin: mag,
        specific_heat,
        susceptibility,
        binder_cumulant,
        tau_int_energy: tau_e,
        tau_int_abs_magnetization: tau_m,
        blocks,
    }
}
