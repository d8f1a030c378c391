//! Statistics of Markov-chain time series: means with error bars that account for
//! autocorrelation, the integrated autocorrelation time, and jackknife errors of derived
//! quantities (specific heat, susceptibility, Binder cumulant).
//!
//! # Integrated autocorrelation time
//! For a stationary series x_t with normalised autocorrelation rho(t),
//! tau_int = 1/2 + sum_{t >= 1} rho(t), and the variance of the sample mean of n values is
//! approximately 2 tau_int Var(x) / n (so n / (2 tau_int) is the effective sample size).
//! The sum is cut off with Sokal's automatic window: the smallest M with M >= c tau_int(M),
//! c = [`SOKAL_C`] (A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and
//! new algorithms", Cargese lectures 1996, section 3; N. Madras & A. D. Sokal, J. Stat. Phys. 50,
//! 109 (1988)). The estimate is trustworthy when the series is much longer than tau_int
//! (Sokal asks for n > 1000 tau_int; [`TauEstimate::reliable`] uses n >= 50 tau_int).
//!
//! # Derived quantities
//! Fluctuation formulas (C, chi, U) are non-linear in the means; their error bars come from a
//! blocked jackknife: the series is cut into B blocks each several tau_int long, and the
//! quantity is recomputed B times leaving one block out (Efron; see e.g. Newman & Barkema,
//! "Monte Carlo Methods in Statistical Physics", section 3.4).

/// Sokal's window constant c: the autocorrelation sum stops at the first M >= c * tau_int(M).
pub const SOKAL_C: f64 = 6.0;

/// The autocorrelation sum stops at this lag at the latest (or at n / 2 if smaller), so
/// tau_int costs at most this many passes over the series, O(n * MAX_TAU_LAG), when the window
/// never closes (a trending or very slowly mixing series). A capped estimate is marked
/// unreliable: tau_int is then at least MAX_TAU_LAG / [`SOKAL_C`], far too long for the run to
/// be trusted anyway.
pub const MAX_TAU_LAG: usize = 10_000;

/// Blocks of the jackknife are at least this many integrated autocorrelation times long.
pub const BLOCK_TAUS: f64 = 6.0;

/// At most this many jackknife blocks.
pub const MAX_BLOCKS: usize = 64;

/// The integrated autocorrelation time of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TauEstimate {
    /// tau_int, in units of the series' time step (1/2 for independent samples).
    pub tau: f64,
    /// The window M at which the sum was cut off.
    pub window: usize,
    /// True when the series is at least 50 tau_int long and the window closed before
    /// min(n / 2, [`MAX_TAU_LAG`]).
    pub reliable: bool,
}

/// A statistic (a mean, or a function of means from the jackknife) with its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueWithStderr {
    /// The value.
    pub value: f64,
    /// Its standard error (0 for a constant series; `None` when it cannot be estimated).
    pub stderr: Option<f64>,
}

/// Arithmetic mean (0 for an empty slice).
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Integrated autocorrelation time with Sokal's automatic window (see the module docs).
///
/// A series of fewer than 2 values, or one with zero variance, has tau_int = 1/2. The sum
/// runs over at most min(n / 2, [`MAX_TAU_LAG`]) lags; if the window has not closed by then,
/// the partial sum is returned with `reliable = false` and `window` = the last lag summed.
pub fn integrated_autocorrelation_time(x: &[f64]) -> TauEstimate {
    let n = x.len();
    if n < 2 {
        return TauEstimate {
            tau: 0.5,
            window: 0,
            reliable: false,
        };
    }
    let m = mean(x);
    let centred: Vec<f64> = x.iter().map(|v| v - m).collect();
    let c0 = centred.iter().map(|v| v * v).sum::<f64>() / n as f64;
    if c0 <= 0.0 || !c0.is_finite() {
        return TauEstimate {
            tau: 0.5,
            window: 0,
            reliable: n >= 100,
        };
    }
    let mut tau = 0.5;
    let max_lag = (n / 2).min(MAX_TAU_LAG);
    for t in 1..=max_lag {
        let ct = centred[..n - t]
            .iter()
            .zip(&centred[t..])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / n as f64;
        tau += ct / c0;
        if t as f64 >= SOKAL_C * tau {
            // A negative running sum (possible for anti-correlated noise) is floored at the
            // smallest meaningful value.
            let tau = tau.max(0.5 / n as f64).max(f64::MIN_POSITIVE);
            return TauEstimate {
                tau,
                window: t,
                reliable: n as f64 >= 50.0 * tau,
            };
        }
    }
    TauEstimate {
        tau: tau.max(0.5),
        window: max_lag,
        reliable: false,
    }
}

/// Mean of a correlated series with standard error sqrt(2 tau_int Var / n), and its tau_int.
pub fn mean_with_error(x: &[f64]) -> (ValueWithStderr, TauEstimate) {
    let tau = integrated_autocorrelation_time(x);
    let n = x.len();
    let m = mean(x);
    let stderr = if n < 2 {
        None
    } else {
        let var = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1) as f64;
        Some((2.0 * tau.tau * var / n as f64).sqrt())
    };
    (ValueWithStderr { value: m, stderr }, tau)
}

/// Number of jackknife blocks for a series of length n whose slowest observable has
/// integrated autocorrelation time `tau`: blocks of at least [`BLOCK_TAUS`] tau (and 1) steps,
/// at most [`MAX_BLOCKS`] of them; 0 when fewer than 2 blocks fit.
pub fn block_count(n: usize, tau: f64) -> usize {
    let len = (BLOCK_TAUS * tau).ceil().max(1.0) as usize;
    let b = (n / len).min(MAX_BLOCKS);
    if b < 2 { 0 } else { b }
}

/// Blocked jackknife of a function of several series' means.
///
/// `series` are equally long series; `f` maps their means (in the same order) to the derived
/// quantity. The value is `f` of the full means; the error is the jackknife standard error over
/// `blocks` contiguous blocks (the remainder of n / blocks is left out of the error estimate
/// only). `blocks < 2` gives no error.
pub fn jackknife<F>(series: &[&[f64]], blocks: usize, f: F) -> ValueWithStderr
where
    F: Fn(&[f64]) -> f64,
{
    let k = series.len();
    let n = series.first().map_or(0, |s| s.len());
    debug_assert!(series.iter().all(|s| s.len() == n));
    let full: Vec<f64> = series.iter().map(|s| mean(s)).collect();
    let value = f(&full);
    if blocks < 2 || n < blocks {
        return ValueWithStderr {
            value,
            stderr: None,
        };
    }
    let len = n / blocks;
    let used = len * blocks;
    let totals: Vec<f64> = series.iter().map(|s| s[..used].iter().sum()).collect();
    let mut block_sums = vec![0.0; k * blocks];
    for (j, s) in series.iter().enumerate() {
        for b in 0..blocks {
            block_sums[b * k + j] = s[b * len..(b + 1) * len].iter().sum();
        }
    }
    let mut leave_one_out = Vec::with_capacity(blocks);
    let mut means = vec![0.0; k];
    for b in 0..blocks {
        for j in 0..k {
            means[j] = (totals[j] - block_sums[b * k + j]) / (used - len) as f64;
        }
        leave_one_out.push(f(&means));
    }
    let avg = mean(&leave_one_out);
    let var = leave_one_out
        .iter()
        .map(|v| (v - avg) * (v - avg))
        .sum::<f64>()
        * (blocks - 1) as f64
        / blocks as f64;
    ValueWithStderr {
        value,
        stderr: var.is_finite().then(|| var.sqrt()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{from_seed, uniform_f64};

    /// AR(1) series x_t = a x_{t-1} + noise has rho(t) = a^t, so
    /// tau_int = 1/2 + a / (1 - a) = (1 + a) / (2 (1 - a)).
    fn ar1(a: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = from_seed(seed);
        let mut x = 0.0;
        (0..n)
            .map(|_| {
                // Uniform noise with variance 1/12 is enough for an AR(1) test.
                x = a * x + uniform_f64(&mut rng) - 0.5;
                x
            })
            .collect()
    }

    #[test]
    fn tau_of_independent_samples_is_one_half() {
        let x = ar1(0.0, 100_000, 1);
        let t = integrated_autocorrelation_time(&x);
        // The windowed estimator's standard deviation is about sqrt(2(2M+1)/n) tau = 0.01 here.
        assert!((t.tau - 0.5).abs() < 0.05, "tau = {}", t.tau);
        assert!(t.reliable);
    }

    #[test]
    fn tau_of_an_ar1_series_matches_the_closed_form() {
        let a = 0.9;
        let exact = (1.0 + a) / (2.0 * (1.0 - a)); // 9.5
        let x = ar1(a, 400_000, 2);
        let t = integrated_autocorrelation_time(&x);
        // Relative statistical error sqrt(2(2M+1)/n) ~ 0.02 plus a bias of order exp(-M/tau)
        // ~ exp(-6) from the window: 10% is several standard deviations.
        assert!((t.tau - exact).abs() < 0.1 * exact, "tau = {}", t.tau);
        let (m, _) = mean_with_error(&x);
        // The error bar of the mean uses the same tau: the true mean is 0.
        assert!(m.value.abs() < 5.0 * m.stderr.unwrap());
    }

    /// A trend never decorrelates: the window would not close before n / 2 and the sum would
    /// cost O(n^2). The sum must stop at MAX_TAU_LAG lags and say the estimate is unreliable.
    #[test]
    fn a_trending_series_stops_at_the_lag_cap_and_is_unreliable() {
        let n = 50_000; // n / 2 = 25 000 > MAX_TAU_LAG
        let x: Vec<f64> = (0..n).map(|t| t as f64).collect();
        let t = integrated_autocorrelation_time(&x);
        assert_eq!(t.window, MAX_TAU_LAG);
        assert!(!t.reliable);
        assert!(
            t.tau.is_finite() && t.tau > MAX_TAU_LAG as f64 / SOKAL_C,
            "{}",
            t.tau
        );
        let (m, _) = mean_with_error(&x);
        assert!(m.stderr.unwrap().is_finite());
    }

    #[test]
    fn constant_series_has_zero_error_and_no_nan() {
        let (m, t) = mean_with_error(&[2.0; 50]);
        assert_eq!(m.value, 2.0);
        assert_eq!(m.stderr, Some(0.0));
        assert_eq!(t.tau, 0.5);
    }

    #[test]
    fn jackknife_of_a_mean_equals_the_blocked_standard_error() {
        let x: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64).collect();
        let j = jackknife(&[&x], 10, |m| m[0]);
        let block_means: Vec<f64> = x.chunks(100).map(mean).collect();
        let bm = mean(&block_means);
        let var = block_means.iter().map(|v| (v - bm).powi(2)).sum::<f64>() / 9.0;
        assert!((j.value - mean(&x)).abs() < 1e-12);
        assert!((j.stderr.unwrap() - (var / 10.0).sqrt()).abs() < 1e-9);
        assert_eq!(jackknife(&[&x], 1, |m| m[0]).stderr, None);
    }

    #[test]
    fn block_count_respects_tau_and_bounds() {
        assert_eq!(block_count(1000, 0.5), 64);
        assert_eq!(block_count(1000, 10.0), 16);
        assert_eq!(block_count(10, 10.0), 0);
    }
}
