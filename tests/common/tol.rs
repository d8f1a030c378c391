//! Tolerances used across the tests, named in one place.
#![allow(dead_code)] // each test module uses a different subset

/// Relative tolerance for quantities computed exactly in f64 by two different methods.
pub const EXACT_REL: f64 = 1e-9;
/// Monte Carlo checks accept deviations up to this many standard errors (two-sided, normal:
/// a false-failure rate of about 6e-7 per check at 5 sigma).
pub const MC_SIGMAS: f64 = 5.0;
/// Significance level of chi-square goodness-of-fit tests: a correct sampler fails a given test
/// with probability 1e-4 (and, being seeded, fails or passes deterministically).
pub const CHI_SQUARE_ALPHA: f64 = 1e-4;
/// Largest accepted gap between a Gibbs-sampled posterior marginal and the exact one in the
/// denoising tests (about 5 standard errors of 40000 correlated sweeps; see tests/map.rs).
pub const GIBBS_MARGINAL_ABS: f64 = 0.03;
/// Absolute tolerance on log10 Z against a UAI `.PR` answer file, which prints 4 decimals
/// (rounding error up to 5e-5); a little slack for the competition solver's own rounding.
pub const PR_FILE_ABS: f64 = 1e-4;
/// Absolute tolerance on log10 Z against the UAI 2014 `.PR` files of data/uai,
/// which print 6 significant digits (e.g. 169.408: rounding error up to 5e-4), as issue 3 asks.
pub const PR_DIGITS_ABS: f64 = 1e-3;
/// Stationarity of an exactly built transition matrix: |pi T - pi| per state, in f64 sums of at
/// most 16 terms.
pub const STATIONARY_ABS: f64 = 1e-12;
/// Stationarity of the exact one-sweep matrix of the checkerboard on a 2x2 torus. Its flip
/// probabilities are 32-bit thresholds q with p - 2^-32 < q <= p; each single-site kernel then
/// differs from the exact one by at most 2 * 2^-32 in every row's L1 norm, so the 4 site updates
/// of a sweep move pi T by at most 4 * 2^-31 = 2^-29 (about 1.9e-9) from pi; plus f64 rounding.
pub const CHECKERBOARD_STATIONARY_ABS: f64 = 1.0 / (1u64 << 29) as f64 + 1e-12;
/// Chi-square tests merge states whose expected count is below this into one cell, so that the
/// chi-square approximation of the statistic holds (the usual rule of thumb).
pub const CHI_SQUARE_MIN_EXPECTED: f64 = 5.0;
