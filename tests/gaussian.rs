//! Gaussian-Bernoulli RBMs: exact ln Z against quadrature, score matching against its
//! definition, training against the true model, samplers against exact moments.

use ebm::model::GaussianRbm;

/// A model with `nv` visible and `nh` hidden units and parameters from a fixed pattern.
fn model(nv: usize, nh: usize, scale: f64) -> GaussianRbm {
    let w = (0..nv * nh)
        .map(|k| scale * (((k * 7 + 3) % 11) as f64 / 5.0 - 1.0))
        .collect();
    let b = (0..nv).map(|i| 0.3 * i as f64 - 0.2).collect();
    let c = (0..nh).map(|j| 0.4 - 0.5 * j as f64).collect();
    let sigma = (0..nv).map(|i| 0.6 + 0.35 * i as f64).collect();
    GaussianRbm::new(nv, nh, w, b, c, sigma).unwrap()
}

/// The integration box [-L, L]^n_v: every component mean lies within |b_i| + sum_j |W_ij| of 0,
/// and 14 sigma beyond that the Gaussian tails hold less than exp(-98) of the mass.
fn half_width(m: &GaussianRbm) -> f64 {
    let nh = m.n_hidden();
    let reach = (0..m.n_visible())
        .map(|i| {
            m.visible_bias()[i].abs()
                + m.weights()[i * nh..(i + 1) * nh]
                    .iter()
                    .map(|w| w.abs())
                    .sum::<f64>()
        })
        .fold(0.0, f64::max);
    reach + 14.0 * m.visible_sigma().iter().copied().fold(0.0, f64::max)
}

/// ln Z from enumerating h equals ln of the integral of exp(-F(v)) over v, computed by the
/// trapezoid rule on a uniform grid. For a smooth integrand that decays like a Gaussian the
/// rule's error is of order exp(-2 pi^2 sigma_min^2 / step^2) (its aliasing term), which for
/// step = sigma_min / 8 is below exp(-1200): what is left is rounding in the sum of ~10^5 terms,
/// ~1e-12 relative, and the cut-off tails (< exp(-98)). Tolerance 1e-9 on ln Z.
#[test]
fn log_partition_by_enumeration_equals_quadrature_over_v() {
    for (nv, nh) in [(1, 1), (1, 3), (2, 2), (2, 3)] {
        let m = model(nv, nh, 0.9);
        let l = half_width(&m);
        let step = m.visible_sigma().iter().copied().fold(f64::MAX, f64::min) / 8.0;
        let n = (2.0 * l / step).ceil() as usize + 1;
        let x = |k: usize| -l + k as f64 * step;
        let mut hidden = vec![0.0; nh];
        let ln_z = m.log_partition().unwrap();
        // Sum exp(-F - ln Z) so that the terms are O(1).
        let mut total = 0.0;
        if nv == 1 {
            for k in 0..n {
                total += (-m.free_energy_with(&[x(k)], &mut hidden) - ln_z).exp();
            }
            total *= step;
        } else {
            for k in 0..n {
                for q in 0..n {
                    total += (-m.free_energy_with(&[x(k), x(q)], &mut hidden) - ln_z).exp();
                }
            }
            total *= step * step;
        }
        assert!(
            total.ln().abs() < 1e-9,
            "{nv}x{nh}: quadrature gives ln Z + {:e}",
            total.ln()
        );
    }
}
