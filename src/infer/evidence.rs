//! Evidence: some variables of a factor graph observed at fixed values, and the graph
//! conditioned on them.
//!
//! Conditioning clamps: every factor is restricted to the rows that agree with the evidence and
//! loses the observed variables from its scope, and the observed variables are dropped from the
//! model. The reduced graph's Z is Z_e = sum over the states x that agree with the evidence of
//! prod_f phi_f(x_f) (the UAI "PR with evidence", P(e) times Z), and its distribution is
//! p(x_free | e). [`Conditioned::kept`] maps the reduced variables back to the original ones.

use crate::error::{Error, Result};
use crate::model::{Factor, FactorGraph};

/// Observed values of some variables of a model of `num_vars` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    num_vars: usize,
    /// The observed value (0 or 1) of each variable, or `None`.
    values: Vec<Option<u8>>,
}

impl Evidence {
    /// No variable observed.
    pub fn none(num_vars: usize) -> Evidence {
        Evidence {
            num_vars,
            values: vec![None; num_vars],
        }
    }

    /// Evidence from (variable, value) pairs for a model of `num_vars` binary variables. Refused
    /// (`InvalidParam` "evidence", naming the pair by its 1-based position): a variable out of
    /// range, a value other than 0 or 1, a variable given twice with different values (the same
    /// value twice is accepted).
    pub fn new(num_vars: usize, pairs: &[(usize, u64)]) -> Result<Evidence> {
        let mut values = vec![None; num_vars];
        for (k, &(var, value)) in pairs.iter().enumerate() {
            let at = || format!("pair {} (variable {var} = {value})", k + 1);
            if var >= num_vars {
                return Err(Error::param(
                    "evidence",
                    format!(
                        "{}: the model has {num_vars} variables (indices 0..{})",
                        at(),
                        num_vars.saturating_sub(1)
                    ),
                ));
            }
            if value > 1 {
                return Err(Error::param(
                    "evidence",
                    format!("{}: binary variables take the values 0 and 1", at()),
                ));
            }
            match values[var] {
                Some(old) if old as u64 != value => {
                    return Err(Error::param(
                        "evidence",
                        format!("{}: contradicts an earlier {var} = {old}", at()),
                    ));
                }
                _ => values[var] = Some(value as u8),
            }
        }
        Ok(Evidence { num_vars, values })
    }

    /// The observed value of `var`, if any.
    pub fn value(&self, var: usize) -> Option<u8> {
        self.values[var]
    }

    /// Number of observed variables.
    pub fn len(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }

    /// True when no variable is observed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of variables of the model it was made for.
    pub fn num_vars(&self) -> usize {
        self.num_vars
    }
}

/// A factor graph conditioned on evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditioned {
    /// The reduced graph over the unobserved variables (renumbered 0..m in original order).
    pub graph: FactorGraph,
    /// `kept[r]` is the original index of reduced variable r.
    pub kept: Vec<usize>,
    /// The evidence.
    pub evidence: Evidence,
}

impl Conditioned {
    /// Per-variable values of the original model from values of the reduced one: observed
    /// variables get `observed(value)`, the others their reduced value. For marginals
    /// P(x_i = 1 | e) use `observed = |v| v as f64`; for standard errors `|_| 0.0`.
    pub fn expand(&self, reduced: &[f64], observed: impl Fn(u8) -> f64) -> Vec<f64> {
        debug_assert_eq!(reduced.len(), self.kept.len());
        let mut out: Vec<f64> = (0..self.evidence.num_vars)
            .map(|i| self.evidence.value(i).map_or(f64::NAN, &observed))
            .collect();
        for (r, &i) in self.kept.iter().enumerate() {
            out[i] = reduced[r];
        }
        out
    }
}

/// `graph` conditioned on the evidence file at `path` ([`crate::io::uai::read_evidence`]); with
/// no file, on no evidence (the same graph, `kept` = 0..n).
pub fn condition_on_file(
    graph: &FactorGraph,
    path: Option<&std::path::Path>,
) -> Result<Conditioned> {
    let pairs = match path {
        Some(p) => crate::io::uai::read_evidence(p)?,
        None => Vec::new(),
    };
    condition(graph, &Evidence::new(graph.num_vars(), &pairs)?)
}

/// Conditions `graph` on `evidence` (see the module docs). A factor whose entries all vanish
/// on the observed values makes the evidence impossible: refused (`InvalidParam` "evidence",
/// naming the factor). Evidence whose probability is zero only jointly (each factor allows it,
/// their product does not) shows up as Z_e = 0 in the computation that follows.
pub fn condition(graph: &FactorGraph, evidence: &Evidence) -> Result<Conditioned> {
    let n = graph.num_vars();
    if evidence.num_vars != n {
        return Err(Error::SizeMismatch(format!(
            "evidence for {} variables, model of {n}",
            evidence.num_vars
        )));
    }
    let kept: Vec<usize> = (0..n).filter(|&i| evidence.value(i).is_none()).collect();
    let mut new_index = vec![usize::MAX; n];
    for (r, &i) in kept.iter().enumerate() {
        new_index[i] = r;
    }
    let mut factors = Vec::with_capacity(graph.factors().len());
    for (f, factor) in graph.factors().iter().enumerate() {
        let k = factor.arity();
        let scope = factor.scope();
        // Bits of the table index fixed by the evidence, and the positions left free.
        let mut fixed = 0usize;
        let mut free_pos = Vec::new();
        for (pos, &v) in scope.iter().enumerate() {
            let bit = k - 1 - pos;
            match evidence.value(v) {
                Some(x) => fixed |= (x as usize) << bit,
                None => free_pos.push(pos),
            }
        }
        if free_pos.len() == k {
            factors.push(Factor::new(
                scope.iter().map(|&v| new_index[v]).collect(),
                factor.table().to_vec(),
            )?);
            continue;
        }
        let m = free_pos.len();
        let table: Vec<f64> = (0..1usize << m)
            .map(|r| {
                // Reduced index r: free position q is bit m-1-q (first scope variable most
                // significant, as in the original table).
                let idx = free_pos.iter().enumerate().fold(fixed, |acc, (q, &pos)| {
                    acc | ((r >> (m - 1 - q) & 1) << (k - 1 - pos))
                });
                factor.table()[idx]
            })
            .collect();
        if table.iter().all(|&t| t == 0.0) {
            let observed: Vec<String> = scope
                .iter()
                .filter_map(|&v| evidence.value(v).map(|x| format!("x{v} = {x}")))
                .collect();
            return Err(Error::param(
                "evidence",
                format!(
                    "the evidence has probability zero: factor {f} (scope {scope:?}) is 0 for \
                     every state with {}",
                    observed.join(", ")
                ),
            ));
        }
        factors.push(Factor::new(
            free_pos.iter().map(|&p| new_index[scope[p]]).collect(),
            table,
        )?);
    }
    Ok(Conditioned {
        graph: FactorGraph::new(kept.len(), factors)?,
        kept,
        evidence: evidence.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::exact;
    use crate::logspace::log_sum_exp;

    fn graph() -> FactorGraph {
        FactorGraph::new(
            4,
            vec![
                Factor::new(vec![2, 0, 1], (0..8).map(|k| 0.5 + k as f64).collect()).unwrap(),
                Factor::new(vec![1, 3], vec![1.0, 0.0, 2.0, 0.7]).unwrap(),
                Factor::new(vec![3], vec![0.2, 1.3]).unwrap(),
            ],
        )
        .unwrap()
    }

    /// Z_e and P(x_i = 1 | e) by direct sums over the original model's states.
    fn direct(g: &FactorGraph, e: &Evidence) -> (f64, Vec<f64>) {
        let n = g.num_vars();
        let mut terms = Vec::new();
        let mut per_var = vec![Vec::new(); n];
        for x in 0..1u32 << n {
            let bits: Vec<u8> = (0..n).map(|i| (x >> i & 1) as u8).collect();
            if (0..n).any(|i| e.value(i).is_some_and(|v| v != bits[i])) {
                continue;
            }
            let lw = g.log_weight_bits(&bits);
            terms.push(lw);
            for i in 0..n {
                if bits[i] == 1 {
                    per_var[i].push(lw);
                }
            }
        }
        let lz = log_sum_exp(&terms);
        let m = per_var
            .iter()
            .map(|t| (log_sum_exp(t) - lz).exp())
            .collect();
        (lz, m)
    }

    #[test]
    fn conditioning_matches_sums_over_agreeing_states() {
        let g = graph();
        for pairs in [
            vec![],
            vec![(0, 1)],
            vec![(1, 1), (3, 1)],
            vec![(2, 1), (0, 0), (2, 1)],
            vec![(0, 1), (1, 1), (2, 0), (3, 0)],
        ] {
            let e = Evidence::new(4, &pairs).unwrap();
            let c = condition(&g, &e).unwrap();
            assert_eq!(c.graph.num_vars(), 4 - e.len());
            let (want_z, want_m) = direct(&g, &e);
            let got_z = exact::log_partition_factor_graph(&c.graph).unwrap();
            assert!(
                (got_z - want_z).abs() < 1e-13,
                "{pairs:?}: {got_z} vs {want_z}"
            );
            let m = c.expand(&exact::marginals_factor_graph(&c.graph).unwrap(), |v| {
                v as f64
            });
            for (a, b) in m.iter().zip(&want_m) {
                assert!((a - b).abs() < 1e-13, "{pairs:?}: {m:?} vs {want_m:?}");
            }
        }
    }

    #[test]
    fn bad_evidence_is_refused_by_name() {
        let msg = |pairs: &[(usize, u64)]| Evidence::new(4, pairs).unwrap_err().to_string();
        assert!(msg(&[(4, 0)]).contains("4 variables"));
        assert!(msg(&[(1, 2)]).contains("values 0 and 1"));
        assert!(msg(&[(1, 0), (1, 1)]).contains("contradicts"));
        // x1 = 0 and x3 = 1: factor 1's entry (0, 1) is 0.
        let e = Evidence::new(4, &[(1, 0), (3, 1)]).unwrap();
        let err = condition(&graph(), &e).unwrap_err().to_string();
        assert!(
            err.contains("probability zero") && err.contains("factor 1"),
            "{err}"
        );
    }
}
