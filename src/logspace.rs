//! Log-space arithmetic shared by every estimator: log-sum-exp, softplus, and a streaming
//! log-sum accumulator.
//!
//! Partition functions and likelihoods overflow f64 for models of a few hundred variables, so
//! `ebm` keeps them as natural logarithms throughout.

/// ln(exp(a) + exp(b)), exact for any finite or -inf inputs.
#[inline]
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// ln(sum_i exp(x_i)); -inf for an empty slice or all -inf.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY || max.is_nan() {
        return max;
    }
    if max == f64::INFINITY {
        return f64::INFINITY;
    }
    let sum: f64 = xs.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

/// softplus(x) = ln(1 + exp(x)), accurate in f64 for every x (no overflow, no loss for x << 0).
#[inline]
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The logistic sigmoid 1 / (1 + exp(-x)), without overflow.
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A streaming accumulator of ln(sum_i exp(x_i)).
///
/// Keeps a running maximum `shift` and a sum of exp(x_i - shift); when a term exceeds the shift
/// the sum is rescaled. Adding terms in the same order always gives the same bits.
#[derive(Debug, Clone, Copy)]
pub struct LogSumExp {
    shift: f64,
    sum: f64,
}

impl Default for LogSumExp {
    fn default() -> Self {
        Self::new()
    }
}

impl LogSumExp {
    /// An empty sum (its value is -inf).
    pub fn new() -> Self {
        LogSumExp {
            shift: f64::NEG_INFINITY,
            sum: 0.0,
        }
    }

    /// Adds exp(x) to the sum.
    #[inline]
    pub fn add(&mut self, x: f64) {
        if x == f64::NEG_INFINITY {
            // exp(-inf) = 0: nothing to add.
        } else if x <= self.shift {
            self.sum += (x - self.shift).exp();
        } else {
            self.sum = self.sum * (self.shift - x).exp() + 1.0;
            self.shift = x;
        }
    }

    /// Adds another accumulator's sum.
    pub fn merge(&mut self, other: &LogSumExp) {
        if other.shift == f64::NEG_INFINITY {
            return;
        }
        if other.shift <= self.shift {
            self.sum += other.sum * (other.shift - self.shift).exp();
        } else {
            self.sum = self.sum * (self.shift - other.shift).exp() + other.sum;
            self.shift = other.shift;
        }
    }

    /// ln of the sum so far.
    pub fn value(&self) -> f64 {
        if self.shift == f64::NEG_INFINITY {
            f64::NEG_INFINITY
        } else {
            self.shift + self.sum.ln()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_matches_direct_sum_and_survives_overflow() {
        let xs = [0.1, -2.0, 3.5, 1.0];
        let direct: f64 = xs.iter().map(|x: &f64| x.exp()).sum::<f64>().ln();
        assert!((log_sum_exp(&xs) - direct).abs() < 1e-14);
        let big = [1000.0, 1000.0];
        assert!((log_sum_exp(&big) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert_eq!(log_sum_exp(&[]), f64::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY; 3]), f64::NEG_INFINITY);
    }

    #[test]
    fn accumulator_equals_batch() {
        let xs: Vec<f64> = (0..50)
            .map(|i| ((i * 37) % 23) as f64 * 1.7 - 10.0)
            .collect();
        let mut acc = LogSumExp::new();
        for &x in &xs {
            acc.add(x);
        }
        assert!((acc.value() - log_sum_exp(&xs)).abs() < 1e-12);
        let (a, b) = xs.split_at(20);
        let mut left = LogSumExp::new();
        a.iter().for_each(|&x| left.add(x));
        let mut right = LogSumExp::new();
        b.iter().for_each(|&x| right.add(x));
        left.merge(&right);
        assert!((left.value() - log_sum_exp(&xs)).abs() < 1e-12);
        let mut with_inf = LogSumExp::new();
        with_inf.add(f64::NEG_INFINITY);
        with_inf.add(0.0);
        assert_eq!(with_inf.value(), 0.0);
    }

    #[test]
    fn softplus_and_sigmoid_are_accurate_at_extremes() {
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(softplus(800.0), 800.0);
        assert!((softplus(-40.0) - (-40f64).exp()).abs() < 1e-30);
        assert!((softplus(3.0) - (1.0 + 3f64.exp()).ln()).abs() < 1e-14);
        assert_eq!(sigmoid(-800.0), 0.0);
        assert_eq!(sigmoid(800.0), 1.0);
        assert!((sigmoid(0.3) - 1.0 / (1.0 + (-0.3f64).exp())).abs() < 1e-16);
    }
}
