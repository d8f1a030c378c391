//! Factor graphs over binary variables, with tables of any arity (what a UAI `MARKOV` file holds).

use super::{EnergyModel, PairwiseMrf, Spin, bit_of_spin};
use crate::error::{Error, Result};

/// One factor: a scope of distinct variables and a table of 2^k non-negative values.
///
/// Table order: the FIRST scope variable is the most significant bit and the LAST changes
/// fastest, so entry `sum_k x_{scope[k]} << (arity - 1 - k)` holds phi(x_scope).
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    scope: Vec<usize>,
    table: Vec<f64>,
    log_table: Vec<f64>,
}

impl Factor {
    /// Builds a factor, checking the table length, that entries are finite and non-negative,
    /// that at least one is positive, and that the scope has no repeated variable.
    pub fn new(scope: Vec<usize>, table: Vec<f64>) -> Result<Self> {
        if scope.len() > 30 {
            return Err(Error::InvalidModel(format!(
                "factor arity {} is too large (at most 30)",
                scope.len()
            )));
        }
        for (a, &v) in scope.iter().enumerate() {
            if scope[..a].contains(&v) {
                return Err(Error::InvalidModel(format!(
                    "factor scope {scope:?} repeats variable {v}"
                )));
            }
        }
        let expected = 1usize << scope.len();
        if table.len() != expected {
            return Err(Error::InvalidModel(format!(
                "factor over {scope:?} needs {expected} table entries, got {}",
                table.len()
            )));
        }
        if let Some(k) = table.iter().position(|&t| !(t.is_finite() && t >= 0.0)) {
            return Err(Error::InvalidModel(format!(
                "factor over {scope:?}: entry {k} is {} (entries must be finite and >= 0)",
                table[k]
            )));
        }
        if table.iter().all(|&t| t == 0.0) {
            return Err(Error::InvalidModel(format!(
                "factor over {scope:?} is all zeros (no state has positive probability)"
            )));
        }
        let log_table = table.iter().map(|t| t.ln()).collect();
        Ok(Factor {
            scope,
            table,
            log_table,
        })
    }

    /// The variables of the factor, in table-axis order.
    pub fn scope(&self) -> &[usize] {
        &self.scope
    }
    /// Number of variables in the scope.
    pub fn arity(&self) -> usize {
        self.scope.len()
    }
    /// The table as given.
    pub fn table(&self) -> &[f64] {
        &self.table
    }
    /// ln of each table entry (-inf for zeros).
    pub fn log_table(&self) -> &[f64] {
        &self.log_table
    }

    /// Index into the table for the bits `x` of the whole model.
    #[inline]
    pub fn index_of_bits(&self, x: &[u8]) -> usize {
        self.scope
            .iter()
            .fold(0usize, |idx, &v| (idx << 1) | x[v] as usize)
    }

    /// Index into the table for the spins `s` of the whole model (spin +1 is bit 1).
    #[inline]
    pub fn index_of_spins(&self, s: &[Spin]) -> usize {
        self.scope
            .iter()
            .fold(0usize, |idx, &v| (idx << 1) | bit_of_spin(s[v]) as usize)
    }
}

/// A model p(x) = prod_f phi_f(x_f) / Z over bits x_i in {0, 1}; E(x) = -sum_f ln phi_f(x_f).
#[derive(Debug, Clone, PartialEq)]
pub struct FactorGraph {
    num_vars: usize,
    factors: Vec<Factor>,
    var_factors: Vec<Vec<usize>>,
}

impl FactorGraph {
    /// Builds a factor graph over `num_vars` binary variables; every scope index must be in range.
    pub fn new(num_vars: usize, factors: Vec<Factor>) -> Result<Self> {
        let mut var_factors = vec![Vec::new(); num_vars];
        for (f, factor) in factors.iter().enumerate() {
            for &v in factor.scope() {
                if v >= num_vars {
                    return Err(Error::InvalidModel(format!(
                        "factor {f} names variable {v}, but the model has {num_vars} variables"
                    )));
                }
                var_factors[v].push(f);
            }
        }
        Ok(FactorGraph {
            num_vars,
            factors,
            var_factors,
        })
    }

    /// Number of variables.
    pub fn num_vars(&self) -> usize {
        self.num_vars
    }
    /// The factors, in file order.
    pub fn factors(&self) -> &[Factor] {
        &self.factors
    }
    /// Indices of the factors that contain variable v.
    pub fn factors_of(&self, v: usize) -> &[usize] {
        &self.var_factors[v]
    }
    /// The largest arity of any factor (0 without factors).
    pub fn max_arity(&self) -> usize {
        self.factors.iter().map(Factor::arity).max().unwrap_or(0)
    }

    /// ln of the unnormalised probability, sum_f ln phi_f(x_f), for bits x (may be -inf).
    pub fn log_weight_bits(&self, x: &[u8]) -> f64 {
        self.factors
            .iter()
            .map(|f| f.log_table[f.index_of_bits(x)])
            .sum()
    }

    /// Converts to Ising form when every factor has arity <= 2 and no entry is zero.
    ///
    /// With s = 2x - 1, a unary table [a0, a1] adds h += (ln a1 - ln a0) / 2 and a constant; a
    /// pair table [t00 t01; t10 t11] adds J_ij += (ln t00 + ln t11 - ln t01 - ln t10) / 4,
    /// h_i += (ln t10 + ln t11 - ln t00 - ln t01) / 4, h_j += (ln t01 + ln t11 - ln t00 - ln t10) / 4
    /// and a constant (sum of the four logs) / 4, so that E_ising(s) = E(x) for every state.
    pub fn to_pairwise(&self) -> Result<PairwiseMrf> {
        let mut fields = vec![0.0; self.num_vars];
        let mut couplings = Vec::new();
        let mut log_constant = 0.0;
        for (f, factor) in self.factors.iter().enumerate() {
            if factor.arity() > 2 {
                return Err(Error::InvalidModel(format!(
                    "factor {f} has arity {}; only factors of arity <= 2 have an Ising form",
                    factor.arity()
                )));
            }
            if factor.table.contains(&0.0) {
                return Err(Error::InvalidModel(format!(
                    "factor {f} has a zero entry (a hard constraint has no Ising form)"
                )));
            }
            let l = &factor.log_table;
            match factor.scope.as_slice() {
                [] => log_constant += l[0],
                [i] => {
                    fields[*i] += (l[1] - l[0]) / 2.0;
                    log_constant += (l[0] + l[1]) / 2.0;
                }
                [i, j] => {
                    couplings.push((*i, *j, (l[0] + l[3] - l[1] - l[2]) / 4.0));
                    fields[*i] += (l[2] + l[3] - l[0] - l[1]) / 4.0;
                    fields[*j] += (l[1] + l[3] - l[0] - l[2]) / 4.0;
                    log_constant += (l[0] + l[1] + l[2] + l[3]) / 4.0;
                }
                _ => unreachable!("arity checked above"),
            }
        }
        PairwiseMrf::with_constant(fields, &couplings, -log_constant)
    }

    /// The factor graph of a pairwise model at inverse temperature `beta`: one unary factor per
    /// nonzero field and one pair factor per coupling, tables exp(beta J s_i s_j) and
    /// exp(beta h s), so that both define the same distribution.
    pub fn from_pairwise(model: &PairwiseMrf, beta: f64) -> Result<Self> {
        let mut factors = Vec::new();
        for (i, &h) in model.fields().iter().enumerate() {
            if h != 0.0 {
                factors.push(Factor::new(
                    vec![i],
                    vec![(-beta * h).exp(), (beta * h).exp()],
                )?);
            }
        }
        for &(i, j, w) in model.edges() {
            let (same, diff) = ((beta * w).exp(), (-beta * w).exp());
            factors.push(Factor::new(vec![i, j], vec![same, diff, diff, same])?);
        }
        FactorGraph::new(model.fields().len(), factors)
    }
}

impl EnergyModel for FactorGraph {
    fn num_vars(&self) -> usize {
        self.num_vars
    }

    fn energy(&self, s: &[Spin]) -> f64 {
        -self
            .factors
            .iter()
            .map(|f| f.log_table[f.index_of_spins(s)])
            .sum::<f64>()
    }

    fn flip_delta(&self, s: &[Spin], i: usize) -> f64 {
        let mut delta = 0.0;
        for &f in &self.var_factors[i] {
            let factor = &self.factors[f];
            let before = factor.index_of_spins(s);
            let pos = factor.scope.iter().position(|&v| v == i).expect("scope");
            let after = before ^ (1 << (factor.arity() - 1 - pos));
            delta -= factor.log_table[after] - factor.log_table[before];
        }
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spin_of_bit;

    fn small_graph() -> FactorGraph {
        FactorGraph::new(
            3,
            vec![
                Factor::new(vec![0], vec![1.0, 3.0]).unwrap(),
                Factor::new(vec![2, 0], vec![2.0, 0.5, 1.5, 4.0]).unwrap(),
                Factor::new(vec![1, 2], vec![1.0, 2.0, 3.0, 0.25]).unwrap(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn table_order_is_last_variable_fastest() {
        let g = small_graph();
        // x = (x0, x1, x2) = (1, 0, 1): phi0(1) = 3, phi1(x2=1, x0=1) = 4, phi2(x1=0, x2=1) = 2.
        assert!((g.log_weight_bits(&[1, 0, 1]) - (24f64).ln()).abs() < 1e-12);
    }

    #[test]
    fn pairwise_form_matches_every_state() {
        let g = small_graph();
        let p = g.to_pairwise().unwrap();
        for state in 0..8u8 {
            let x: Vec<u8> = (0..3).map(|k| state >> k & 1).collect();
            let s: Vec<Spin> = x.iter().map(|&b| spin_of_bit(b)).collect();
            assert!((p.energy(&s) + g.log_weight_bits(&x)).abs() < 1e-12);
            assert!((g.energy(&s) + g.log_weight_bits(&x)).abs() < 1e-12);
            for i in 0..3 {
                let mut t = s.clone();
                t[i] = -t[i];
                assert!((g.flip_delta(&s, i) - (g.energy(&t) - g.energy(&s))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn bad_factors_are_refused() {
        assert!(Factor::new(vec![0, 1], vec![1.0; 3]).is_err());
        assert!(Factor::new(vec![0, 0], vec![1.0; 4]).is_err());
        assert!(Factor::new(vec![0], vec![-1.0, 1.0]).is_err());
        assert!(Factor::new(vec![0], vec![0.0, 0.0]).is_err());
        assert!(Factor::new(vec![0], vec![f64::NAN, 1.0]).is_err());
        assert!(FactorGraph::new(1, vec![Factor::new(vec![1], vec![1.0, 1.0]).unwrap()]).is_err());
        let zero =
            FactorGraph::new(1, vec![Factor::new(vec![0], vec![0.0, 1.0]).unwrap()]).unwrap();
        assert!(zero.to_pairwise().is_err());
    }
}
