//! The lattice flags shared by `ebm partition ising` and `ebm sample ising`.

use clap::{Args, ValueEnum};
use ebm::model::{Boundary, IsingLattice};

/// `--boundary`: periodic (torus) or open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BoundaryArg {
    Periodic,
    Open,
}

impl BoundaryArg {
    /// The library's boundary condition.
    pub fn boundary(self) -> Boundary {
        match self {
            BoundaryArg::Periodic => Boundary::Periodic,
            BoundaryArg::Open => Boundary::Open,
        }
    }

    /// The flag value as typed.
    pub fn name(self) -> &'static str {
        match self {
            BoundaryArg::Periodic => "periodic",
            BoundaryArg::Open => "open",
        }
    }
}

/// A square-lattice Ising model: E = -J sum_<ij> s_i s_j - h sum_i s_i.
#[derive(Debug, Args)]
pub struct LatticeArgs {
    /// Number of columns.
    #[arg(long)]
    pub width: usize,
    /// Number of rows. Gibbs and Metropolis on a torus with even width and height run the
    /// multi-spin-coded checkerboard (up to 64 spins per machine word), the fastest kernel, e.g.
    /// `ebm sample ising --width 1024 --height 1024 --beta 0.4406868 --sampler metropolis`.
    #[arg(long)]
    pub height: usize,
    /// Boundary condition: periodic (torus, 2 W H bonds) or open.
    #[arg(long, value_enum, default_value_t = BoundaryArg::Periodic)]
    pub boundary: BoundaryArg,
    /// Uniform coupling J (J > 0 ferromagnetic).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub coupling: f64,
    /// Uniform field h.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub field: f64,
}

impl LatticeArgs {
    /// The lattice these flags describe (validated by the library).
    pub fn lattice(&self) -> ebm::Result<IsingLattice> {
        IsingLattice::new(
            self.width,
            self.height,
            self.boundary.boundary(),
            self.coupling,
            self.field,
        )
    }
}
