//! MAP restoration of binary images (Bishop, *Pattern Recognition and Machine Learning*,
//! section 8.3.3).
//!
//! The noisy image `x` and the restored image `s` have pixels in {-1, +1} (+1 white). The
//! restoration minimises
//!
//! ```text
//! E(s; x) = h * sum_i s_i - beta * sum_{<ij>} s_i s_j - eta * sum_i x_i s_i
//! ```
//!
//! over 4-neighbour pairs with an open boundary (PRML's defaults: `beta = 1`, `eta = 2.1`,
//! `h = 0`). Every method reports the energy of its result under exactly this formula
//! ([`crate::infer::map::GridEnergy`], from integer sums), so methods compare number for number.
//!
//! ```
//! use ebm::denoise::{denoise, DenoiseParams};
//! use ebm::image::BinaryImage;
//! use ebm::progress::Silent;
//!
//! // A white square on black, with 10% of the pixels flipped.
//! let clean: Vec<i8> = (0..32 * 32)
//!     .map(|k| if (8..24).contains(&(k % 32)) && (8..24).contains(&(k / 32)) { 1 } else { -1 })
//!     .collect();
//! let clean = BinaryImage::new(32, 32, clean)?;
//! let noisy = clean.with_flip_noise(0.1, 7)?;
//! let out = denoise(&noisy, &DenoiseParams::default(), &mut Silent)?;
//! assert!(out.energy <= out.input_energy);
//! assert!(out.image.error_rate(&clean)? < noisy.error_rate(&clean)?);
//! # Ok::<(), ebm::Error>(())
//! ```

use crate::error::{Error, Result, check_finite};
use crate::image::BinaryImage;
use crate::infer::map::anneal::{AnnealParams, anneal};
use crate::infer::map::gibbs::{GibbsParams, gibbs_marginal_mode};
use crate::infer::map::icm::icm;
use crate::infer::map::mincut::graph_cut;
use crate::infer::map::{GridEnergy, MapMethod};
use crate::progress::Observer;

/// Settings of [`denoise`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenoiseParams {
    /// The method.
    pub method: MapMethod,
    /// Coupling between neighbours (>= 0 for graph cut).
    pub beta: f64,
    /// Weight of the agreement with the noisy image.
    pub eta: f64,
    /// Field `h` (a positive value favours -1, black).
    pub field: f64,
    /// Anneal: heat-bath sweeps; Gibbs: recorded sweeps; ICM: the largest number of sweeps.
    pub sweeps: Option<u64>,
    /// Gibbs: sweeps discarded before recording.
    pub burn_in: u64,
    /// Anneal: first temperature.
    pub t_start: f64,
    /// Anneal: last temperature.
    pub t_end: f64,
    /// Seed of the per-row random streams (anneal, Gibbs).
    pub seed: u64,
}

impl Default for DenoiseParams {
    fn default() -> Self {
        let anneal = AnnealParams::default();
        DenoiseParams {
            method: MapMethod::GraphCut,
            beta: 1.0,
            eta: 2.1,
            field: 0.0,
            sweeps: None,
            burn_in: GibbsParams::default().burn_in,
            t_start: anneal.t_start,
            t_end: anneal.t_end,
            seed: crate::rng::DEFAULT_SEED,
        }
    }
}

impl DenoiseParams {
    /// Checks the parameters (finite numbers; `beta >= 0` for graph cut).
    pub fn validate(&self) -> Result<()> {
        check_finite("beta", self.beta)?;
        check_finite("eta", self.eta)?;
        check_finite("field", self.field)?;
        if self.method == MapMethod::GraphCut && self.beta < 0.0 {
            return Err(Error::param(
                "beta",
                format!(
                    "{} is negative: the energy is not submodular, so graph cut cannot minimise \
                     it exactly; use --method icm, anneal or gibbs",
                    self.beta
                ),
            ));
        }
        if self.sweeps == Some(0) {
            return Err(Error::param("sweeps", "must be at least 1"));
        }
        Ok(())
    }
}

/// The most single-site updates a stochastic method (anneal, Gibbs) is asked to do: 2^50, about
/// 10^15, which is days of work at the measured 1-5 ns per site (docs/denoise.md).
pub const MAX_SITE_UPDATES: u128 = 1 << 50;

/// Refuses an anneal or Gibbs run whose `(burn-in +) sweeps x pixels` exceeds
/// [`MAX_SITE_UPDATES`] (a run that would not end), as [`Error::TooLarge`].
fn check_sweep_work(params: &DenoiseParams, pixels: usize) -> Result<()> {
    let sweeps = match params.method {
        MapMethod::Anneal => params.sweeps.unwrap_or(AnnealParams::default().sweeps) as u128,
        MapMethod::Gibbs => {
            params.sweeps.unwrap_or(GibbsParams::default().sweeps) as u128 + params.burn_in as u128
        }
        MapMethod::GraphCut | MapMethod::Icm => return Ok(()),
    };
    let work = sweeps * pixels as u128;
    if work > MAX_SITE_UPDATES {
        return Err(Error::TooLarge {
            method: params.method.name().to_string(),
            detail: format!(
                "{sweeps} sweeps x {pixels} pixels = {work} site updates, beyond 2^50 (days of \
                 work); ask for fewer sweeps"
            ),
        });
    }
    Ok(())
}

/// True when [`denoise`] with these parameters runs entirely on the calling thread for a
/// `width x height` image (graph cut on a grid of one piece, see
/// [`crate::infer::map::mincut::runs_on_one_thread`]): a caller may then skip starting a thread
/// pool.
pub fn runs_on_one_thread(params: &DenoiseParams, width: usize, height: usize) -> bool {
    params.method == MapMethod::GraphCut
        && crate::infer::map::mincut::runs_on_one_thread(width, height)
}

/// What [`denoise`] returns.
#[derive(Debug, Clone)]
pub struct Denoised {
    /// The restored image.
    pub image: BinaryImage,
    /// `E(s; x)` of the restored image.
    pub energy: f64,
    /// `E(x; x)`: the energy of the noisy image itself.
    pub input_energy: f64,
    /// Sweeps run (0 for graph cut; ICM: sweeps to convergence; anneal: heat-bath sweeps plus
    /// the quench; Gibbs: burn-in plus recorded).
    pub sweeps: u64,
    /// Gibbs only: the estimated posterior probability of +1 per pixel, row-major.
    pub marginals: Option<Vec<f64>>,
}

/// Restores `noisy` by the method of `params`; the stochastic methods report each sweep to
/// `observer`.
pub fn denoise(
    noisy: &BinaryImage,
    params: &DenoiseParams,
    observer: &mut dyn Observer,
) -> Result<Denoised> {
    params.validate()?;
    let x = noisy.pixels();
    let energy = GridEnergy::new(
        noisy.width(),
        noisy.height(),
        params.beta,
        params.eta,
        params.field,
        x,
    )?;
    check_sweep_work(params, x.len())?;
    let (labels, sweeps, marginals) = match params.method {
        MapMethod::GraphCut => (graph_cut(&energy)?, 0, None),
        MapMethod::Icm => {
            let out = icm(&energy, x, params.sweeps.unwrap_or(u64::MAX));
            (out.labels, out.sweeps, None)
        }
        MapMethod::Anneal => {
            let p = AnnealParams {
                sweeps: params.sweeps.unwrap_or(AnnealParams::default().sweeps),
                t_start: params.t_start,
                t_end: params.t_end,
                seed: params.seed,
            };
            let out = anneal(&energy, x, &p, observer)?;
            (out.labels, out.sweeps + out.quench_sweeps, None)
        }
        MapMethod::Gibbs => {
            let p = GibbsParams {
                burn_in: params.burn_in,
                sweeps: params.sweeps.unwrap_or(GibbsParams::default().sweeps),
                seed: params.seed,
            };
            let out = gibbs_marginal_mode(&energy, x, &p, observer)?;
            (out.labels, out.sweeps, Some(out.marginals))
        }
    };
    let image = BinaryImage::new(noisy.width(), noisy.height(), labels)?;
    Ok(Denoised {
        energy: energy.energy(image.pixels()),
        input_energy: energy.energy(x),
        image,
        sweeps,
        marginals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_graph_cut_runs_on_one_thread_with_the_result_of_the_pool() {
        // Up to 2^17 pixels graph cut runs on the calling thread (the CLI then starts no thread
        // pool); the other methods and larger images use rayon. Either way the restoration is
        // the same as in a pool of 2 threads (just below and above the limit).
        let params = DenoiseParams::default();
        assert!(runs_on_one_thread(&params, 256, 512));
        assert!(!runs_on_one_thread(&params, 256, 513));
        let icm = DenoiseParams {
            method: MapMethod::Icm,
            ..params
        };
        assert!(!runs_on_one_thread(&icm, 16, 16));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (w, h) in [(256, 512), (256, 520)] {
            let clean: Vec<i8> = (0..w * h)
                .map(|k| {
                    if (k % w) * 3 < w || (k / w) % 100 < 40 {
                        1
                    } else {
                        -1
                    }
                })
                .collect();
            let noisy = BinaryImage::new(w, h, clean)
                .unwrap()
                .with_flip_noise(0.1, 4)
                .unwrap();
            let here = denoise(&noisy, &params, &mut crate::progress::Silent).unwrap();
            let pooled = pool
                .install(|| denoise(&noisy, &params, &mut crate::progress::Silent))
                .unwrap();
            assert_eq!(here.image, pooled.image, "{w} x {h}");
            assert_eq!(here.energy, pooled.energy, "{w} x {h}");
            assert!(here.energy < here.input_energy);
        }
    }

    /// A stochastic run that would not end is refused as too large before any work; one at
    /// the limit is accepted (the check alone, so the test does not run it).
    #[test]
    fn sweep_work_beyond_the_limit_is_too_large() {
        let pixels = 1 << 20;
        let at_limit = DenoiseParams {
            method: MapMethod::Anneal,
            sweeps: Some(1 << 30),
            ..DenoiseParams::default()
        };
        assert!(check_sweep_work(&at_limit, pixels).is_ok());
        let over = DenoiseParams {
            sweeps: Some((1 << 30) + 1),
            ..at_limit
        };
        assert!(matches!(
            check_sweep_work(&over, pixels),
            Err(Error::TooLarge { .. })
        ));
        let gibbs = DenoiseParams {
            method: MapMethod::Gibbs,
            sweeps: Some(1 << 30),
            burn_in: 1,
            ..DenoiseParams::default()
        };
        assert!(matches!(
            check_sweep_work(&gibbs, pixels),
            Err(Error::TooLarge { .. })
        ));
        let icm = DenoiseParams {
            method: MapMethod::Icm,
            sweeps: Some(u64::MAX),
            ..DenoiseParams::default()
        };
        assert!(check_sweep_work(&icm, pixels).is_ok());
        let image = BinaryImage::new(2, 2, vec![1, -1, 1, 1]).unwrap();
        let huge = DenoiseParams {
            method: MapMethod::Anneal,
            sweeps: Some(u64::MAX),
            ..DenoiseParams::default()
        };
        assert!(matches!(
            denoise(&image, &huge, &mut crate::progress::Silent),
            Err(Error::TooLarge { .. })
        ));
    }
}
