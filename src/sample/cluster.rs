//! Cluster updates for ferromagnetic lattices: Wolff and Swendsen-Wang.
//!
//! Both use the Fortuin-Kasteleyn bond variables: a bond (i, j) with s_i = s_j is *activated*
//! with probability p = 1 - exp(-2 beta J) (J >= 0); activated bonds join spins into clusters.
//! On a torus side of length 2 the two bonds between a pair are activated independently, which
//! is the same as one bond of 2J.
//!
//! * **Swendsen-Wang** (Phys. Rev. Lett. 58, 86 (1987)): activate every bond, then give each
//!   cluster a new orientation. Without a field each cluster flips with probability 1/2. With a
//!   field the clusters are still independent given the bonds, with weight exp(beta sum_{i in C}
//!   h_i s_i), so each cluster is flipped with the heat-bath probability 1 / (1 + exp(2 beta F_C)),
//!   F_C = sum_{i in C} h_i s_i; this is the ghost-spin construction written per cluster.
//! * **Wolff** (Phys. Rev. Lett. 62, 361 (1989)): grow one cluster from a uniformly chosen seed
//!   site through activated bonds and flip it. With a field the flip is accepted with the
//!   Metropolis probability min(1, exp(-2 beta F_C)), which keeps detailed balance because the
//!   growth probabilities already account for the bond energy.
//!
//! Near beta_c these decorrelate the energy in a few updates where single-spin dynamics need
//! hundreds of sweeps (dynamic exponent z about 0.25 versus 2.17).

use rand::{Rng, RngExt};

use super::general::flip_probability;
use super::{LatticeUpdate, LocalRule};
use crate::error::{Error, Result};
use crate::model::{EnergyModel, IsingLattice, Spin};
use crate::rng::{self, EbmRng};

/// Probability threshold for comparisons with a 64-bit uniform: P(u < t) = t / 2^64.
fn threshold64(p: f64) -> u64 {
    if p >= 1.0 {
        u64::MAX
    } else if p <= 0.0 {
        0
    } else {
        (p * 18_446_744_073_709_551_616.0) as u64
    }
}

/// Checks that a lattice is ferromagnetic (J >= 0).
pub fn check_ferromagnetic(model: &IsingLattice, sampler: &str) -> Result<()> {
    if model.coupling() < 0.0 {
        return Err(Error::param(
            "sampler",
            format!(
                "{sampler} needs a ferromagnetic coupling J >= 0, got J = {}; \
                 use gibbs or metropolis",
                model.coupling()
            ),
        ));
    }
    Ok(())
}

/// Adjacency lists of a lattice (a double bond appears twice), in CSR form.
#[derive(Debug, Clone)]
struct Adjacency {
    start: Vec<u32>,
    list: Vec<u32>,
}

impl Adjacency {
    fn new(model: &IsingLattice) -> Self {
        let n = model.num_sites();
        let bonds = model.bonds();
        let mut degree = vec![0u32; n + 1];
        for &(i, j) in &bonds {
            degree[i] += 1;
            degree[j] += 1;
        }
        let mut start = vec![0u32; n + 1];
        for i in 0..n {
            start[i + 1] = start[i] + degree[i];
        }
        let mut fill = start.clone();
        let mut list = vec![0u32; start[n] as usize];
        for &(i, j) in &bonds {
            list[fill[i] as usize] = j as u32;
            fill[i] += 1;
            list[fill[j] as usize] = i as u32;
            fill[j] += 1;
        }
        Adjacency { start, list }
    }

    #[inline]
    fn of(&self, i: usize) -> &[u32] {
        &self.list[self.start[i] as usize..self.start[i + 1] as usize]
    }
}

/// A Wolff single-cluster chain.
#[derive(Debug, Clone)]
pub struct Wolff {
    model: IsingLattice,
    adjacency: Adjacency,
    beta: f64,
    add: u64,
    s: Vec<Spin>,
    mark: Vec<u32>,
    generation: u32,
    stack: Vec<u32>,
    cluster: Vec<u32>,
    rng: EbmRng,
    energy: f64,
    magnetization: i64,
}

impl Wolff {
    /// A chain on `model` (J >= 0) at `beta`, started from `state`.
    pub fn new(model: &IsingLattice, beta: f64, seed: u64, state: Vec<Spin>) -> Result<Self> {
        check_ferromagnetic(model, "wolff")?;
        let n = model.num_sites();
        Ok(Wolff {
            model: model.clone(),
            adjacency: Adjacency::new(model),
            beta,
            add: threshold64(1.0 - (-2.0 * beta * model.coupling()).exp()),
            energy: model.energy(&state),
            magnetization: state.iter().map(|&x| x as i64).sum(),
            s: state,
            mark: vec![0; n],
            generation: 0,
            stack: Vec::new(),
            cluster: Vec::new(),
            rng: rng::stream_for(seed, rng::Purpose::Chain, 0),
        })
    }

    /// One cluster update; returns the number of spins flipped (0 if a field rejected it).
    pub fn update(&mut self) -> u64 {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.mark.fill(0);
            self.generation = 1;
        }
        let g = self.generation;
        let n = self.s.len();
        let seed = self.rng.random_range(0..n);
        let sigma = self.s[seed];
        self.mark[seed] = g;
        self.stack.clear();
        self.cluster.clear();
        self.stack.push(seed as u32);
        while let Some(i) = self.stack.pop() {
            self.cluster.push(i);
            for &j in self.adjacency.of(i as usize) {
                let j = j as usize;
                if self.s[j] == sigma && self.mark[j] != g && self.rng.next_u64() < self.add {
                    self.mark[j] = g;
                    self.stack.push(j as u32);
                }
            }
        }
        // Field term and boundary bonds of the cluster, before the flip.
        let mut field_sum = 0.0;
        let mut boundary = 0i64;
        for &i in &self.cluster {
            let i = i as usize;
            field_sum += self.model.field_at(i) * self.s[i] as f64;
            for &j in self.adjacency.of(i) {
                if self.mark[j as usize] != g {
                    boundary += (self.s[i] * self.s[j as usize]) as i64;
                }
            }
        }
        if field_sum != 0.0 {
            let p = flip_probability(LocalRule::Metropolis, self.beta, 2.0 * field_sum);
            if crate::rng::uniform_f64(&mut self.rng) >= p {
                return 0;
            }
        }
        for &i in &self.cluster {
            self.s[i as usize] = -sigma;
        }
        let size = self.cluster.len() as u64;
        self.magnetization -= 2 * sigma as i64 * size as i64;
        self.energy += 2.0 * self.model.coupling() * boundary as f64 + 2.0 * field_sum;
        size
    }

    /// The configuration.
    pub fn state(&self) -> &[Spin] {
        &self.s
    }
    /// The energy, kept up to date incrementally.
    pub fn energy(&self) -> f64 {
        self.energy
    }
    /// Sum of spins.
    pub fn magnetization(&self) -> i64 {
        self.magnetization
    }
}

/// A Swendsen-Wang chain.
#[derive(Debug, Clone)]
pub struct SwendsenWang {
    model: IsingLattice,
    bonds: Vec<(u32, u32)>,
    beta: f64,
    add: u64,
    s: Vec<Spin>,
    parent: Vec<u32>,
    field_sum: Vec<f64>,
    flip: Vec<bool>,
    rng: EbmRng,
}

impl SwendsenWang {
    /// A chain on `model` (J >= 0) at `beta`, started from `state`.
    pub fn new(model: &IsingLattice, beta: f64, seed: u64, state: Vec<Spin>) -> Result<Self> {
        check_ferromagnetic(model, "swendsen-wang")?;
        let n = model.num_sites();
        Ok(SwendsenWang {
            model: model.clone(),
            bonds: model
                .bonds()
                .into_iter()
                .map(|(i, j)| (i as u32, j as u32))
                .collect(),
            beta,
            add: threshold64(1.0 - (-2.0 * beta * model.coupling()).exp()),
            s: state,
            parent: vec![0; n],
            field_sum: vec![0.0; n],
            flip: vec![false; n],
            rng: rng::stream_for(seed, rng::Purpose::Chain, 0),
        })
    }

    fn find(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let p = self.parent[i as usize];
            self.parent[i as usize] = self.parent[p as usize];
            i = p;
        }
        i
    }

    /// One update of all clusters; returns the number of spins flipped.
    pub fn update(&mut self) -> u64 {
        let n = self.s.len();
        for (i, p) in self.parent.iter_mut().enumerate() {
            *p = i as u32;
        }
        for b in 0..self.bonds.len() {
            let (i, j) = self.bonds[b];
            if self.s[i as usize] == self.s[j as usize] && self.rng.next_u64() < self.add {
                let (ri, rj) = (self.find(i), self.find(j));
                if ri != rj {
                    // Attach the larger index to the smaller: roots are the lowest site.
                    let (lo, hi) = if ri < rj { (ri, rj) } else { (rj, ri) };
                    self.parent[hi as usize] = lo;
                }
            }
        }
        let with_field = self.model.site_field().is_some() || self.model.uniform_field() != 0.0;
        if with_field {
            self.field_sum.fill(0.0);
            for i in 0..n {
                let r = self.find(i as u32) as usize;
                self.field_sum[r] += self.model.field_at(i) * self.s[i] as f64;
            }
        }
        // Roots are visited in increasing order (a root is the lowest site of its cluster, and
        // every site's root is found before or at the site itself).
        let mut flipped = 0;
        for i in 0..n {
            let r = self.find(i as u32) as usize;
            if r == i {
                self.flip[i] = if with_field {
                    let p = flip_probability(LocalRule::Gibbs, self.beta, 2.0 * self.field_sum[i]);
                    crate::rng::uniform_f64(&mut self.rng) < p
                } else {
                    self.rng.next_u64() >> 63 == 1
                };
            }
            if self.flip[r] {
                self.s[i] = -self.s[i];
                flipped += 1;
            }
        }
        flipped
    }

    /// The configuration.
    pub fn state(&self) -> &[Spin] {
        &self.s
    }
    /// The energy.
    pub fn energy(&self) -> f64 {
        self.model.energy(&self.s)
    }
    /// Sum of spins.
    pub fn magnetization(&self) -> i64 {
        self.s.iter().map(|&x| x as i64).sum()
    }
}

impl LatticeUpdate for Wolff {
    fn sweep(&mut self) -> u64 {
        self.update()
    }
    fn energy(&self) -> f64 {
        Wolff::energy(self)
    }
    fn magnetization(&self) -> i64 {
        Wolff::magnetization(self)
    }
    fn state(&self) -> Vec<Spin> {
        self.s.clone()
    }
    fn updates_per_sweep(&self) -> u64 {
        1
    }
    fn boxed_clone(&self) -> Box<dyn LatticeUpdate> {
        Box::new(self.clone())
    }
}

impl LatticeUpdate for SwendsenWang {
    fn sweep(&mut self) -> u64 {
        self.update()
    }
    fn energy(&self) -> f64 {
        SwendsenWang::energy(self)
    }
    fn magnetization(&self) -> i64 {
        SwendsenWang::magnetization(self)
    }
    fn state(&self) -> Vec<Spin> {
        self.s.clone()
    }
    fn updates_per_sweep(&self) -> u64 {
        1
    }
    fn boxed_clone(&self) -> Box<dyn LatticeUpdate> {
        Box::new(self.clone())
    }
}
