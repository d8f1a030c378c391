//! RBM kernels and training epochs, timed side by side (`cargo bench --bench rbm [-- SECTION]`,
//! SECTION one of `passes`, `kernels`, `epochs`, `phases`; all four without).
//!
//! Prints the median of several repetitions for: the sigmoid pass with the in-project
//! polynomial exp versus `f32::exp`; the Bernoulli pass; block Gibbs sweeps of 100 chains of a
//! 784 x 500 RBM (`passes`); the binary-aware products against the dense GEMM at several
//! densities of the binary operand (`kernels`); and one PCD-1 training epoch on the bundled
//! digits and MNIST-5k data (`epochs`).

use std::hint::black_box;
use std::time::Instant;

use ebm::io::datasets::read_dataset;
use ebm::learn::cd::{CdParams, LrSchedule};
use ebm::learn::train_rbm;
use ebm::learn::{ContrastiveDivergence, Gradient, GradientEstimator, Momentum};
use ebm::linalg::KernelChoice;
use ebm::linalg::{
    BinaryRows, PanelTerm, Panels, View, binary_matmul, binary_matmul_panels, matmul,
    transpose_into,
};
use ebm::model::Rbm;
use ebm::model::rbm_f32::BinaryConditionals;
use ebm::progress::Silent;
use ebm::rng::{EbmRng, Purpose, stream_for};
use ebm::sample::rbm::{GibbsChains, RbmF32, bernoulli_rows, sigmoid_rows};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn time<F: FnMut()>(reps: usize, f: F) -> f64 {
    median(samples(reps, f))
}

/// `reps` timings of `f` (after one warm-up call), in seconds.
fn samples<F: FnMut()>(reps: usize, mut f: F) -> Vec<f64> {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// "median (min)" in microseconds: on a loaded machine the minimum is the steadier figure.
fn us(xs: Vec<f64>) -> String {
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    format!("{:.0} ({:.0})", median(xs) * 1e6, min * 1e6)
}

fn main() {
    let section = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let wanted = |name: &str| section.is_empty() || section == name;
    // On a worker of the pool, as `ebm` runs its commands: parallel loops then split work on
    // this thread's queue instead of waking a worker and blocking the main thread each time
    // (which inflated the one-thread figures of earlier rounds).
    rayon::scope(|_| {
        if wanted("passes") {
            passes();
        }
        if wanted("kernels") {
            kernels();
        }
        if wanted("epochs") {
            epochs();
        }
        if wanted("phases") {
            phases();
        }
    });
}

/// A 0/1 matrix with about `density` ones, from a fixed linear congruential sequence.
fn binary_matrix(rows: usize, cols: usize, density: f64, salt: u64) -> Vec<f32> {
    let mut s = 0x2545_F491_4F6C_DD1Du64 ^ salt;
    (0..rows * cols)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) < density
        })
        .map(|on| on as u8 as f32)
        .collect()
}

/// The binary-aware products (`binary_matmul_panels`) against the dense GEMM, for the shapes of
/// a batch of 100 on a 784 x 500 RBM: V W (the hidden activations), H W^T (the visible ones)
/// and V^T P (the weight statistics, P packed in the timing); W and W^T are packed once per
/// parameter update in training, timed separately.
fn kernels() {
    let (m, nv, nh) = (100, 784, 500);
    let w: Vec<f32> = (0..nv * nh)
        .map(|k| ((k * 7919 % 1000) as f32 - 500.0) * 1e-4)
        .collect();
    let p: Vec<f32> = (0..m * nh).map(|k| (k * 37 % 101) as f32 / 101.0).collect();
    let mut wt = vec![0.0f32; nv * nh];
    let mut out_h = vec![0.0f32; m * nh];
    let mut out_v = vec![0.0f32; m * nv];
    let mut out_w = vec![0.0f32; nv * nh];
    let mut ones = BinaryRows::new();
    let (mut w_panels, mut wt_panels, mut p_panels) = (Panels::new(), Panels::new(), Panels::new());
    w_panels.pack(&w, nv, nh);
    wt_panels.pack_transposed(&w, nv, nh);
    let reps = 31;
    println!(
        "binary-aware products vs GEMM, batch {m}, {nv} x {nh}, microseconds: median (min) of {reps}"
    );
    for density in [0.05, 0.13, 0.25, 0.35, 0.5, 0.7] {
        let v = binary_matrix(m, nv, density, 1);
        let h = binary_matrix(m, nh, density, 2);
        let vw_dense = samples(reps, || {
            matmul(
                black_box(&mut out_h),
                View::row_major(&v, m, nv),
                View::row_major(&w, nv, nh),
                0.0,
                1.0,
            )
        });
        let vw_binary = samples(reps, || {
            ones.fill(&v, m, nv);
            let term = PanelTerm {
                s: &ones,
                b: &w_panels,
                beta: 1.0,
            };
            binary_matmul_panels(black_box(&mut out_h), 0.0, &[term]);
        });
        let vw_rows = samples(reps, || {
            ones.fill(&v, m, nv);
            binary_matmul(black_box(&mut out_h), &ones, &w, nh, 0.0, 1.0);
        });
        let fill = samples(reps, || {
            black_box(ones.fill(&v, m, nv));
        });
        let hwt_dense = samples(reps, || {
            matmul(
                black_box(&mut out_v),
                View::row_major(&h, m, nh),
                View::row_major(&w, nv, nh).t(),
                0.0,
                1.0,
            )
        });
        let hwt_binary = samples(reps, || {
            ones.fill(&h, m, nh);
            let term = PanelTerm {
                s: &ones,
                b: &wt_panels,
                beta: 1.0,
            };
            binary_matmul_panels(black_box(&mut out_v), 0.0, &[term]);
        });
        let vtp_dense = samples(reps, || {
            matmul(
                black_box(&mut out_w),
                View::row_major(&v, m, nv).t(),
                View::row_major(&p, m, nh),
                0.0,
                1.0,
            )
        });
        let vtp_binary = samples(reps, || {
            ones.fill_transposed(&v, m, nv);
            p_panels.pack(&p, m, nh);
            let term = PanelTerm {
                s: &ones,
                b: &p_panels,
                beta: 1.0,
            };
            binary_matmul_panels(black_box(&mut out_w), 0.0, &[term]);
        });
        println!(
            "  density {density:.2}: V W: GEMM {}, binary {} (row kernel {}; listing the ones {}); \
             H W^T: GEMM {}, binary {} (W^T packed); V^T P: GEMM {}, binary {} (P packed in it)",
            us(vw_dense),
            us(vw_binary),
            us(vw_rows),
            us(fill),
            us(hwt_dense),
            us(hwt_binary),
            us(vtp_dense),
            us(vtp_binary),
        );
    }
    let t = samples(reps, || transpose_into(black_box(&mut wt), &w, nv, nh));
    println!("  transpose of W ({nv} x {nh}): {}", us(t));
    let t = samples(reps, || w_panels.pack(black_box(&w), nv, nh));
    println!("  W packed in panels: {}", us(t));
    let t = samples(reps, || wt_panels.pack_transposed(black_box(&w), nv, nh));
    println!("  W^T packed in panels: {}", us(t));
}

fn passes() {
    let n = 100 * 500;
    let offset = vec![0.1f32; 500];
    let src: Vec<f32> = (0..n)
        .map(|k| ((k * 37 % 101) as f32 - 50.0) / 10.0)
        .collect();
    let mut buf = src.clone();
    let poly = time(51, || {
        buf.copy_from_slice(&src);
        sigmoid_rows(black_box(&mut buf), 1.0, &offset);
    });
    let std_exp = time(51, || {
        buf.copy_from_slice(&src);
        for row in buf.chunks_exact_mut(500) {
            for (v, &o) in row.iter_mut().zip(&offset) {
                *v = 1.0 / (1.0 + (-(*v + o)).exp());
            }
        }
        black_box(&buf);
    });
    println!(
        "sigmoid pass, 100 x 500: polynomial exp {:.1} us, f32::exp {:.1} us (ratio {:.2})",
        poly * 1e6,
        std_exp * 1e6,
        std_exp / poly
    );
    let p = buf.clone();
    let mut out = vec![0.0f32; n];
    let mut rngs: Vec<EbmRng> = (0..100)
        .map(|r| stream_for(1, Purpose::RbmChains, r))
        .collect();
    let bern = time(51, || {
        bernoulli_rows(&p, black_box(&mut out), 500, &mut rngs)
    });
    println!(
        "Bernoulli pass, 100 x 500: {:.1} us ({:.2} G draws/s)",
        bern * 1e6,
        n as f64 / bern / 1e9
    );

    let w: Vec<f64> = (0..784 * 500)
        .map(|k| ((k * 7919 % 1000) as f64 - 500.0) * 1e-4)
        .collect();
    let rbm = Rbm::new(784, 500, w, vec![-1.0; 784], vec![0.0; 500]).unwrap();
    let model = RbmF32::from_rbm(&rbm);
    let mut chains = GibbsChains::new(&model, 100, 3);
    let sweep = time(11, || chains.sweep(&model));
    println!(
        "block Gibbs, 100 chains of 784 x 500: {:.2} ms per sweep ({:.0} chain-sweeps/s)",
        sweep * 1e3,
        100.0 / sweep
    );
}

fn epochs() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    let digits = read_dataset(&root.join("data/digits_train.txt"), None).unwrap();
    let mnist = read_dataset(&root.join("data/mnist5k_train.txt"), None).unwrap();
    // chains = batch size is scikit-learn's BernoulliRBM (one persistent chain per example);
    // 100 is ebm's default.
    for (name, data, hidden, batch, chains) in [
        ("digits", &digits, 16, 10, 10),
        ("digits", &digits, 16, 10, 100),
        ("digits", &digits, 64, 10, 10),
        ("digits", &digits, 64, 10, 100),
        ("mnist5k", &mnist, 25, 10, 10),
        ("mnist5k", &mnist, 25, 10, 100),
        ("mnist5k", &mnist, 25, 100, 100),
        ("mnist5k", &mnist, 500, 100, 100),
    ] {
        let params = CdParams {
            hidden,
            batch_size: batch,
            chains,
            persistent: true,
            epochs: 1,
            schedule: LrSchedule::Constant,
            ..CdParams::default()
        };
        let reps = if hidden >= 500 { 5 } else { 11 };
        let t = time(reps, || {
            let out = train_rbm(data, None, &params, None, &mut Silent).unwrap();
            black_box(out.train_seconds);
        });
        println!(
            "PCD-1 epoch, {name} ({} rows) x {hidden} hidden, batch {batch}, {chains} chains: \
             {:.4} s (median of {reps}; includes init and monitoring)",
            data.rows(),
            t
        );
    }
}

/// The parts of one PCD-1 update (batch 100, 100 chains) of a 784 x 500 RBM trained for two
/// epochs on MNIST-5k (so that the hidden layers have their training-time density), each timed
/// alone on the default rayon pool: median (min) of 51, microseconds; and the whole update.
fn phases() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mnist = read_dataset(&root.join("data/mnist5k_train.txt"), None).unwrap();
    let params = CdParams {
        hidden: 500,
        batch_size: 100,
        chains: 100,
        persistent: true,
        epochs: 2,
        ..CdParams::default()
    };
    let state = train_rbm(&mnist, None, &params, None, &mut Silent)
        .unwrap()
        .state;
    let model = &state.model;
    let (m, nv, nh) = (100, 784, 500);
    let v: Vec<f32> = mnist.data()[..m * nv].iter().map(|&x| x as f32).collect();
    let x = state.chains.clone();
    let mut rngs: Vec<EbmRng> = (0..m as u64)
        .map(|r| stream_for(1, Purpose::Training, r))
        .collect();
    let mut kernels = BinaryConditionals::new(KernelChoice::Auto);
    let (mut ph, mut hx) = (vec![0.0f32; m * nh], vec![0.0f32; m * nh]);
    let mut px = vec![0.0f32; m * nv];
    kernels.hidden_probs(model, &x, &mut ph, 1.0, &model.hidden_bias);
    bernoulli_rows(&ph, &mut hx, nh, &mut rngs);
    let density = hx.iter().sum::<f32>() / hx.len() as f32;
    let dens = |a: &[f32]| a.iter().sum::<f32>() / a.len() as f32;
    println!(
        "densities: data {:.3}, persistent chains {:.3}",
        dens(&v),
        dens(&x)
    );
    let reps = 51;
    let mut ones = BinaryRows::new();
    let mut wt = vec![0.0f32; nv * nh];
    let mut gw = vec![0.0f32; nv * nh];
    println!(
        "PCD-1 update of 784 x 500 on MNIST-5k after 2 epochs, batch {m}; sampled hidden density {density:.2}; microseconds, median (min) of {reps}"
    );
    let show = |name: &str, xs: Vec<f64>| println!("  {name}: {}", us(xs));
    show(
        "V W + sigmoid (binary, listing included)",
        samples(reps, || {
            kernels.hidden_probs(model, &v, black_box(&mut ph), 1.0, &model.hidden_bias);
        }),
    );
    {
        let mut junk = vec![0.0f32; 1 << 22];
        let mut times = Vec::new();
        for rep in 0..reps {
            for (k, j) in junk.iter_mut().enumerate() {
                *j += (k + rep) as f32;
            }
            black_box(&junk);
            kernels.parameters_changed();
            let t = Instant::now();
            kernels.hidden_probs(model, &v, black_box(&mut ph), 1.0, &model.hidden_bias);
            let first = t.elapsed().as_secs_f64();
            let t = Instant::now();
            kernels.hidden_probs(model, &x, black_box(&mut ph), 1.0, &model.hidden_bias);
            times.push((first, t.elapsed().as_secs_f64()));
        }
        show(
            "V W + sigmoid after a cache flush, W packed in it",
            times.iter().map(|t| t.0).collect(),
        );
        show(
            "  then X W + sigmoid (W packed)",
            times.iter().map(|t| t.1).collect(),
        );
    }
    ones.fill(&v, m, nv);
    show(
        "  of which listing the ones of V",
        samples(reps, || {
            black_box(ones.fill(&v, m, nv));
        }),
    );
    show(
        "  of which sigmoid 100 x 500",
        samples(reps, || {
            sigmoid_rows(black_box(&mut ph), 0.0, &model.hidden_bias)
        }),
    );
    kernels.hidden_probs(model, &x, &mut ph, 1.0, &model.hidden_bias);
    show(
        "Bernoulli 100 x 500",
        samples(reps, || {
            bernoulli_rows(&ph, black_box(&mut hx), nh, &mut rngs)
        }),
    );
    show(
        "transpose of W",
        samples(reps, || {
            transpose_into(black_box(&mut wt), &model.weights, nv, nh)
        }),
    );
    show(
        "H W^T + sigmoid (binary, W^T given, listing included)",
        samples(reps, || {
            kernels.visible_probs(model, &hx, black_box(&mut px), 1.0, &model.visible_bias);
        }),
    );
    let mut forced = BinaryConditionals::new(KernelChoice::Binary);
    show(
        "H W^T + sigmoid (binary forced, W^T packed, listing included)",
        samples(reps, || {
            forced.visible_probs(model, &hx, black_box(&mut px), 1.0, &model.visible_bias);
        }),
    );
    let mut dense = BinaryConditionals::new(KernelChoice::Dense);
    show(
        "H W^T + sigmoid (GEMM)",
        samples(reps, || {
            dense.visible_probs(model, &hx, black_box(&mut px), 1.0, &model.visible_bias);
        }),
    );
    show(
        "Bernoulli 100 x 784",
        samples(reps, || {
            let mut out = vec![0.0f32; 0];
            out.resize(m * nv, 0.0);
            bernoulli_rows(&px, black_box(&mut out), nv, &mut rngs)
        }),
    );
    show(
        "V^T P (binary, listing included)",
        samples(reps, || {
            ones.fill_transposed(&v, m, nv);
            binary_matmul(black_box(&mut gw), &ones, &ph, nh, 0.0, 1.0);
        }),
    );
    let mut velocity = vec![0.0f32; nv * nh];
    let (mut vb, mut vh) = (vec![0.0f32; nv], vec![0.0f32; nh]);
    let mut model2 = model.clone();
    let grad = Gradient {
        weights: gw.clone(),
        visible_bias: vec![0.0; nv],
        hidden_bias: vec![0.0; nh],
    };
    let optimizer = Momentum {
        momentum: 0.5,
        weight_decay: 1e-4,
    };
    show(
        "optimizer step",
        samples(reps, || {
            optimizer.step(&mut model2, &mut velocity, &mut vb, &mut vh, &grad, 1e-9)
        }),
    );
    let mut cd = ContrastiveDivergence::new(model, m, 1, x.clone());
    let mut g = Gradient::zeros(nv, nh);
    show(
        "whole gradient (ContrastiveDivergence)",
        samples(reps, || {
            cd.gradient(model, &v, &mut rngs, black_box(&mut g))
        }),
    );
}
