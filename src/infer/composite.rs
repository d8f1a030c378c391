//! ln Z of composite models ([`crate::model::composite`]) with its provenance: exact
//! enumeration, the closed form of a mixture from its stored ln Z's (with their spread), or AIS
//! for an RBM ([`log_z_of`], the entry point for commands that need ln Z of any model file).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::infer::ais::{AisParams, ais_log_partition};
use crate::infer::exact::Shard;
use crate::infer::partition::{Method, Model, PartitionOptions, exact_log_partition};
use crate::infer::rbm::rbm_enumerate;
use crate::logspace::LogSumExp;
use crate::model::FreeEnergyModel;
use crate::model::composite::{Composite, LogZ, LogZMethod};
use crate::progress::{Observer, Silent, report_or_interrupt};

/// The largest number of visible units whose 2^n states [`log_partition`] enumerates for
/// products, negations and tempered composites (2^24 states, each costing one free energy).
pub const MAX_ENUMERATED_VISIBLE: usize = 24;

/// ln Z of this composite, with its provenance.
///
/// * RBM leaf: exact enumeration of the smaller layer ([`crate::infer::rbm`]), refused beyond
///   its limit (the CLI estimates large RBMs by AIS before composing);
/// * factor graph leaf: the exact methods of [`crate::infer::partition`] (`auto`);
/// * mixture: ln sum_k w_k Z_k / Ẑ_k from the stored ln Z's: 0 and exact when all are exact,
///   otherwise 0 with the interval [ln sum_k w_k e^(low_k - ln Ẑ_k), ln sum_k w_k
///   e^(high_k - ln Ẑ_k)] and method [`LogZMethod::Ais`];
/// * product, negation, temperature: enumeration of the 2^n visible states, exact for the
///   model as stored, refused ([`Error::TooLarge`]) beyond [`MAX_ENUMERATED_VISIBLE`] units.
pub fn log_partition(model: &Composite, observer: &mut dyn Observer) -> Result<LogZ> {
    match model {
        Composite::Rbm(r) => Ok(LogZ::exact(
            rbm_enumerate(r, Shard::WHOLE, observer)?.log_sum,
        )),
        Composite::Factors(g) => {
            let opts = PartitionOptions::default();
            let z = exact_log_partition(&Model::Factors(g), Method::Auto, &opts, observer)?;
            Ok(LogZ::exact(z.log_z))
        }
        Composite::Mixture(m) => {
            let (mut mid, mut low, mut high) =
                (LogSumExp::new(), LogSumExp::new(), LogSumExp::new());
            for (&lw, z) in m.log_weights().iter().zip(m.log_z()) {
                mid.add(lw);
                low.add(lw + z.low - z.value);
                high.add(lw + z.high - z.value);
            }
            if m.log_z().iter().all(|z| z.method == LogZMethod::Exact) {
                Ok(LogZ::exact(mid.value()))
            } else {
                Ok(LogZ {
                    value: mid.value(),
                    low: low.value(),
                    high: high.value(),
                    method: LogZMethod::Ais,
                    ais: None,
                })
            }
        }
        _ => Ok(LogZ::exact(enumerate_log_partition(model, observer)?)),
    }
}

/// ln sum_v exp(-F(v)) over all 2^n visible states (n <= [`MAX_ENUMERATED_VISIBLE`]), in
/// blocks of 2^12 states summed in parallel and merged in a fixed order (the result does not
/// depend on the number of threads).
pub fn enumerate_log_partition(model: &Composite, observer: &mut dyn Observer) -> Result<f64> {
    let n = model.num_visible();
    if n > MAX_ENUMERATED_VISIBLE {
        return Err(Error::TooLarge {
            method: "enumeration of the visible units".into(),
            detail: format!(
                "{n} visible units means 2^{n} states; the limit is \
                 {MAX_ENUMERATED_VISIBLE} units (products of non-RBM parts, negations and \
                 tempered composites have no cheaper exact method here)"
            ),
        });
    }
    const BLOCK_BITS: usize = 12;
    let total = 1u64 << n;
    let block = 1u64 << BLOCK_BITS.min(n);
    let blocks = total / block;
    // Batches of blocks between progress reports, so that an interrupt is honoured.
    let batch = 256u64;
    let mut acc = LogSumExp::new();
    let mut done = 0u64;
    while done < blocks {
        let end = (done + batch).min(blocks);
        let sums: Vec<LogSumExp> = (done..end)
            .into_par_iter()
            .map(|b| {
                let mut s = LogSumExp::new();
                for x in b * block..(b + 1) * block {
                    s.add(-model.free_energy_of_index(x));
                }
                s
            })
            .collect();
        for s in &sums {
            acc.merge(s);
        }
        done = end;
        report_or_interrupt(observer, done, blocks)?;
    }
    Ok(acc.value())
}

/// ln p(v) of every one of the 2^n states (n <= 20), in enumeration order (unit i = bit i of
/// the index): for tests and demonstrations.
pub fn log_probabilities(model: &Composite) -> Result<Vec<f64>> {
    let n = model.num_visible();
    if n > 20 {
        return Err(Error::TooLarge {
            method: "a table of probabilities".into(),
            detail: format!("{n} visible units; the limit is 20"),
        });
    }
    let log_z = enumerate_log_partition(model, &mut Silent)?;
    Ok((0..1u64 << n)
        .map(|x| -model.free_energy_of_index(x) - log_z)
        .collect())
}

/// How a ln Z is to be obtained by [`log_z_of`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogZRequest {
    /// Exact where affordable: an RBM whose smaller layer has at most
    /// [`crate::learn::eval::AUTO_EXACT_MAX_UNITS`] units is enumerated, a larger one estimated
    /// by AIS with these settings; composites as [`log_partition`].
    Auto(AisParams),
    /// Exact or refused.
    Exact,
    /// AIS with these settings (RBMs only).
    Ais(AisParams),
}

/// ln Z of `model` with its provenance (exact, AIS with its spread, or derived from the stored
/// ln Z's of a mixture): the one entry point for commands that need ln Z of any model file.
///
/// `base_marginals` are the P(v_i = 1) of AIS's base-rate model (the training data's means when
/// known); `None` uses 1/2 for every unit. AIS is implemented for RBMs only: asking for it on
/// another model is an error ([`Error::InvalidParam`] naming `log-z`).
pub fn log_z_of(
    model: &Composite,
    request: LogZRequest,
    base_marginals: Option<&[f64]>,
    observer: &mut dyn Observer,
) -> Result<LogZ> {
    let ais = match (model, request) {
        (Composite::Rbm(r), LogZRequest::Auto(p)) => (r.n_visible().min(r.n_hidden())
            > crate::learn::eval::AUTO_EXACT_MAX_UNITS)
            .then_some(p),
        (Composite::Rbm(_), LogZRequest::Ais(p)) => Some(p),
        (_, LogZRequest::Ais(_)) => {
            return Err(Error::param(
                "log-z",
                format!(
                    "AIS is implemented for RBMs only; this model is a {} (use exact)",
                    model.operation()
                ),
            ));
        }
        _ => None,
    };
    match (model, ais) {
        (Composite::Rbm(r), Some(params)) => {
            let half;
            let base = match base_marginals {
                Some(b) => b,
                None => {
                    half = vec![0.5; r.n_visible()];
                    &half
                }
            };
            let est = ais_log_partition(r, base, &params, observer)?;
            Ok(LogZ {
                value: est.log_z,
                low: est.log_z_low,
                high: est.log_z_high,
                method: LogZMethod::Ais,
                ais: Some((est.betas, est.runs)),
            })
        }
        _ => log_partition(model, observer),
    }
}
