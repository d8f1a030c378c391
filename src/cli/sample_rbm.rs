//! Sampling of an RBM (`ebm sample --model rbm.safetensors`): block Gibbs, or a gradient
//! sampler (GWG, DULA, DMALA) on the visible units; many chains at once, the final visible
//! states written as a dataset and/or a grid of tiles.

use std::path::Path;

use anyhow::Context;
use std::time::Instant;

use serde::Serialize;

use super::GlobalArgs;
use super::output::{DATASET, Outputs, PNG, print_json, say};
use super::ui::{BarObserver, progress_enabled};
use ebm::io::datasets::write_dataset_to;
use ebm::io::images::encode_grey_png;
use ebm::model::{Rbm, RbmF32};
use ebm::sample::gradient::{GradientSampler, sample_rbm_gradient};
use ebm::sample::rbm::sample_rbm;

/// Default number of chains.
pub const DEFAULT_CHAINS: usize = 100;
/// Default number of block Gibbs sweeps per chain.
pub const DEFAULT_STEPS: usize = 1000;

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    chains: usize,
    steps: usize,
    /// gibbs (block Gibbs), gwg, dula or dmala.
    sampler: &'static str,
    /// Step size alpha of dula and dmala (null otherwise).
    step_size: Option<f64>,
    /// Accepted over made proposals (gwg, dula, dmala; null for block Gibbs).
    acceptance_rate: Option<f64>,
    /// Visible bits flipped per proposal (gwg, dula, dmala; null for block Gibbs).
    mean_bits_flipped: Option<f64>,
    n_visible: usize,
    n_hidden: usize,
    fraction_of_ones: f64,
    seconds: f64,
    sweeps_per_second: f64,
    image: Option<String>,
    output: Option<String>,
    seed: u64,
}

/// Samples `chains` chains of `rbm` (read from the file `model`) for `steps` sweeps of block
/// Gibbs, or of `gradient` on the visible units (a sweep: n_visible GWG proposals, or one
/// DULA/DMALA proposal); writes `image` and/or `output`; prints the summary (JSON with
/// `--json`).
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &Path,
    rbm: &Rbm,
    chains: usize,
    steps: usize,
    image: Option<&Path>,
    output: Option<&Path>,
    gradient: Option<GradientSampler>,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    if chains == 0 {
        return Err(super::UsageError("--chains must be at least 1, got 0".into()).into());
    }
    let mut outputs = Outputs::new();
    outputs.declare("--image", image, PNG, "the grid of samples (a grey PNG)")?;
    outputs.declare("--output", output, DATASET, "the samples (a dataset)")?;
    ebm::sample::check_rbm_job(rbm.n_visible(), rbm.n_hidden(), chains)
        .with_context(|| format!("--chains {chains}"))?;
    let side = square_side(rbm.n_visible());
    if image.is_some() && side.is_none() {
        return Err(super::UsageError(format!(
            "--image needs a square number of visible units, the model has {}",
            rbm.n_visible()
        ))
        .into());
    }
    let t0 = Instant::now();
    let mut bar = BarObserver::new(progress_enabled(global), steps as u64, "sampling", "");
    let (samples, counts) = match gradient {
        None => (sample_rbm(rbm, chains, steps, global.seed, &mut bar)?, None),
        Some(g) => {
            let model = RbmF32::from_rbm(rbm);
            let run = sample_rbm_gradient(&model, g, chains, steps, global.seed, &mut bar)?;
            (run.samples, Some(run.counts))
        }
    };
    bar.finish();
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(p) = output {
        outputs.stage("--output", |w| write_dataset_to(w, p, &samples))?;
    }
    if let (Some(_), Some(side)) = (image, side) {
        let tiles: Vec<Vec<f64>> = samples
            .iter_rows()
            .map(|r| r.iter().map(|&x| x as f64).collect())
            .collect();
        let (w, h, luma) = tile_image(&tiles, side, false);
        outputs.stage_bytes("--image", &encode_grey_png(w, h, &luma)?)?;
    }
    let report = Report {
        model: model.to_string_lossy().into_owned(),
        chains,
        steps,
        sampler: gradient.map_or("gibbs", GradientSampler::name),
        step_size: gradient.and_then(GradientSampler::step_size),
        acceptance_rate: counts.map(|c| c.acceptance_rate()),
        mean_bits_flipped: counts.map(|c| c.mean_bits_flipped()),
        n_visible: rbm.n_visible(),
        n_hidden: rbm.n_hidden(),
        fraction_of_ones: samples.fraction_of_ones(),
        seconds,
        sweeps_per_second: (chains * steps) as f64 / seconds.max(1e-12),
        image: image.map(|p| p.to_string_lossy().into_owned()),
        output: output.map(|p| p.to_string_lossy().into_owned()),
        seed: global.seed,
    };
    if global.json {
        print_json(&report)?;
    } else {
        say(
            global,
            &format!(
                "{} chains x {} {} sweeps in {:.2} s; fraction of ones {:.4}{} (seed {})",
                chains,
                steps,
                report.sampler,
                seconds,
                report.fraction_of_ones,
                match (report.acceptance_rate, report.mean_bits_flipped) {
                    (Some(a), Some(b)) =>
                        format!("; acceptance {a:.4}, {b:.3} bits flipped per proposal"),
                    _ => String::new(),
                },
                global.seed
            ),
        );
    }
    outputs.commit()
}

/// The side of a square image of `n` pixels, if `n` is a perfect square.
pub fn square_side(n: usize) -> Option<usize> {
    let s = (n as f64).sqrt().round() as usize;
    (s * s == n && s > 0).then_some(s)
}

/// Lays out tiles of `side x side` values as a near-square grid with 1-pixel black gaps.
/// With `normalise`, each tile is scaled from its own min..max to 0..255; otherwise values in
/// [0, 1] map to 0..255.
pub fn tile_image(tiles: &[Vec<f64>], side: usize, normalise: bool) -> (usize, usize, Vec<u8>) {
    let n = tiles.len().max(1);
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (w, h) = (cols * (side + 1) + 1, rows * (side + 1) + 1);
    let mut luma = vec![0u8; w * h];
    for (t, tile) in tiles.iter().enumerate() {
        let (lo, hi) = if normalise {
            let lo = tile.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = tile.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, if hi > lo { hi } else { lo + 1.0 })
        } else {
            (0.0, 1.0)
        };
        let (x0, y0) = ((t % cols) * (side + 1) + 1, (t / cols) * (side + 1) + 1);
        for (k, &v) in tile.iter().enumerate() {
            let g = ((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0;
            luma[(y0 + k / side) * w + x0 + k % side] = g.round() as u8;
        }
    }
    (w, h, luma)
}
