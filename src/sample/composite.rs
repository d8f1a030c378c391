//! Sampling composite models ([`crate::model::composite`]) by single-site chains over their
//! visible units.

use rand::Rng;
use rayon::prelude::*;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::model::composite::Composite;
use crate::model::{FreeEnergyModel, Spin};
use crate::progress::{Observer, report_or_interrupt};
use crate::rng::{Purpose, stream_for};
use crate::sample::LocalRule;
use crate::sample::general::sweep;

/// Runs `chains` independent single-site chains over the visible units of `model` for `steps`
/// sweeps each (Gibbs: each unit drawn from its exact conditional
/// P(v_i = 1 | rest) = sigmoid(F(v_i = 0) - F(v_i = 1)); Metropolis: its flip accepted with
/// min(1, exp(F(v) - F(v'))), see [`crate::sample::general`]) and returns their final states as
/// a dataset, one row per chain. Chain c starts from uniform random bits and draws from the
/// stream (seed, [`Purpose::CompositeChains`], c), so the result does not depend on the number
/// of threads. The observer sees each batch of chains and may stop the run.
pub fn sample_composite(
    model: &Composite,
    rule: LocalRule,
    chains: usize,
    steps: usize,
    seed: u64,
    observer: &mut dyn Observer,
) -> Result<Dataset> {
    if chains == 0 {
        return Err(Error::param("chains", "must be at least 1"));
    }
    let n = model.num_visible();
    let mut bits = vec![0u8; chains * n];
    // Chains per progress report (fixed: it does not change which chain draws what).
    const CHAINS_PER_BATCH: usize = 64;
    let batches = chains.div_ceil(CHAINS_PER_BATCH);
    for (b, batch) in bits.chunks_mut(CHAINS_PER_BATCH * n.max(1)).enumerate() {
        let first = b * CHAINS_PER_BATCH;
        batch
            .par_chunks_mut(n.max(1))
            .enumerate()
            .for_each(|(c, row)| {
                let mut rng = stream_for(seed, Purpose::CompositeChains, (first + c) as u64);
                let mut s: Vec<Spin> = (0..n)
                    .map(|_| if rng.next_u64() >> 63 == 1 { 1 } else { -1 })
                    .collect();
                for _ in 0..steps {
                    sweep(model, 1.0, rule, &mut s, &mut rng);
                }
                for (x, &spin) in row.iter_mut().zip(&s) {
                    *x = (spin > 0) as u8;
                }
            });
        report_or_interrupt(observer, b as u64 + 1, batches as u64)?;
    }
    Dataset::new(chains, n, bits)
}
