//! Vectorisable f64 kernels for the exact enumerations: exp on (-inf, 0], the log-sum of a block
//! of log-weights, and a sum of softplus values.
//!
//! `f64::exp` calls the scalar libm routine, which stops the compiler from vectorising the hot
//! loops of enumeration. The exp here uses the classic reduction x = k ln 2 + r with |r| <= ln 2 / 2,
//! a degree-13 Taylor polynomial for e^r (truncation error below 5e-18 relative) and builds 2^k
//! from its bits, so it compiles to straight-line SIMD code. Its relative error is a few ulp.

const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// ln 2 split into a high part with trailing zero bits (so k * LN2_HI is exact) and the rest.
const LN2_HI: f64 = 6.931_471_803_691_238_164_9e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
/// 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits.
const SHIFTER: f64 = 6_755_399_441_055_744.0;
/// Inputs below this are clamped (exp(-708) ~ 3e-308 is still a normal number).
const EXP_FLOOR: f64 = -708.0;

/// exp(x) for x <= 0, with inputs below -708 (including -inf) clamped to -708.
///
/// The clamp changes a result by less than 3.1e-308 in absolute terms, which is invisible in
/// every sum it enters here (each block sum contains a term equal to 1). NaN is not expected.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    let x = if x < EXP_FLOOR { EXP_FLOOR } else { x };
    let t = x * LOG2_E + SHIFTER;
    let k = t - SHIFTER;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series of e^r to degree 13, Horner form.
    let mut p = 1.0 / 6_227_020_800.0;
    p = p * r + 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k from its bits: t's low mantissa bits hold k (two's complement, |k| < 2^51).
    let scale_bits = t
        .to_bits()
        .wrapping_sub(SHIFTER.to_bits())
        .wrapping_add(1023)
        << 52;
    p * f64::from_bits(scale_bits)
}

/// The maximum of `xs` (-inf for an empty slice), in a form that vectorises.
#[inline(always)]
pub fn max_of(xs: &[f64]) -> f64 {
    let mut lanes = [f64::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let mut m = f64::NEG_INFINITY;
    for &x in lanes.iter().chain(chunks.remainder()) {
        if x > m {
            m = x;
        }
    }
    m
}

/// Sum of exp(x_i - shift) for a shift >= every x_i, in a form that vectorises.
#[inline(always)]
pub fn sum_exp_shifted(xs: &[f64], shift: f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] += exp_nonpositive(c[l] - shift);
        }
    }
    let mut s = 0.0;
    for &x in chunks.remainder() {
        s += exp_nonpositive(x - shift);
    }
    lanes.iter().sum::<f64>() + s
}

/// ln(sum_i exp(x_i)) of a block: the maximum shift plus the log of the shifted sum. Returns
/// -inf when every entry is -inf (or the block is empty).
#[inline(always)]
pub fn block_log_sum(xs: &[f64]) -> f64 {
    let m = max_of(xs);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + sum_exp_shifted(xs, m).ln()
}

/// Lanes used by the softplus product (products of 128 factors in (1, 2] stay below 2^128).
const SP_LANES: usize = 8;
const SP_BLOCK: usize = SP_LANES * 128;

/// Adds `sign * column` to `act` and returns sum_i softplus(act_i) of the updated activations.
///
/// softplus(a) = max(a, 0) + ln(1 + e^{-|a|}); the second terms are multiplied together in eight
/// lanes and one logarithm is taken per lane per 1024 inputs, so each input costs one
/// vectorised exp and no logarithm. Relative error per term is a few ulp of the product.
#[inline(always)]
pub fn update_softplus_sum(act: &mut [f64], column: &[f64], sign: f64) -> f64 {
    debug_assert_eq!(act.len(), column.len());
    let mut linear = [0.0f64; SP_LANES];
    let mut log_total = 0.0;
    let mut act_blocks = act.chunks_mut(SP_BLOCK);
    let mut col_blocks = column.chunks(SP_BLOCK);
    for (a_block, w_block) in (&mut act_blocks).zip(&mut col_blocks) {
        let mut prod = [1.0f64; SP_LANES];
        let mut a_chunks = a_block.chunks_exact_mut(SP_LANES);
        let mut w_chunks = w_block.chunks_exact(SP_LANES);
        for (a, w) in (&mut a_chunks).zip(&mut w_chunks) {
            for l in 0..SP_LANES {
                let x = a[l] + sign * w[l];
                a[l] = x;
                linear[l] += if x > 0.0 { x } else { 0.0 };
                let neg_abs = if x > 0.0 { -x } else { x };
                prod[l] *= 1.0 + exp_nonpositive(neg_abs);
            }
        }
        for (a, &w) in a_chunks
            .into_remainder()
            .iter_mut()
            .zip(w_chunks.remainder())
        {
            let x = *a + sign * w;
            *a = x;
            linear[0] += if x > 0.0 { x } else { 0.0 };
            prod[0] *= 1.0 + exp_nonpositive(-x.abs());
        }
        for p in prod {
            log_total += p.ln();
        }
    }
    linear.iter().sum::<f64>() + log_total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logspace::{log_sum_exp, softplus};

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst: f64 = 0.0;
        for k in 0..200_000 {
            let x = -(k as f64) * 0.003_541_7;
            let (a, b) = (exp_nonpositive(x), x.exp());
            if b > 1e-300 {
                worst = worst.max(((a - b) / b).abs());
            }
        }
        assert!(worst < 4e-16, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f64::NEG_INFINITY) < 4e-308);
        assert!(exp_nonpositive(f64::NEG_INFINITY) >= 0.0);
    }

    #[test]
    fn block_log_sum_matches_reference() {
        let xs: Vec<f64> = (0..1001).map(|i| ((i * 7919) % 613) as f64 * 0.37 - 50.0).collect();
        assert!((block_log_sum(&xs) - log_sum_exp(&xs)).abs() < 1e-13);
        let mut with_zeros = xs.clone();
        with_zeros[3] = f64::NEG_INFINITY;
        with_zeros[700] = f64::NEG_INFINITY;
        let finite: Vec<f64> = with_zeros.iter().copied().filter(|x| x.is_finite()).collect();
        assert!((block_log_sum(&with_zeros) - log_sum_exp(&finite)).abs() < 1e-13);
        assert_eq!(block_log_sum(&[f64::NEG_INFINITY; 5]), f64::NEG_INFINITY);
        assert_eq!(block_log_sum(&[]), f64::NEG_INFINITY);
    }

    #[test]
    fn softplus_sum_matches_scalar_softplus() {
        for n in [1usize, 7, 8, 9, 1023, 1024, 1025, 3000] {
            let mut act: Vec<f64> = (0..n).map(|i| ((i * 31) % 97) as f64 - 48.0).collect();
            let col: Vec<f64> = (0..n).map(|i| ((i * 17) % 13) as f64 * 0.5 - 3.0).collect();
            let fast = update_softplus_sum(&mut act, &col, -1.0);
            let reference: f64 = act.iter().map(|&a| softplus(a)).sum();
            assert!(
                (fast - reference).abs() < 1e-12 * reference.abs().max(1.0),
                "n = {n}: {fast} vs {reference}"
            );
        }
        let mut big = vec![800.0, -800.0];
        let v = update_softplus_sum(&mut big, &[0.0, 0.0], 1.0);
        assert_eq!(v, 800.0);
    }
}
