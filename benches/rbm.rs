//! RBM kernels and training epochs, timed side by side (`cargo bench --bench rbm`).
//!
//! Prints the median of several repetitions for: the sigmoid pass with the in-project
//! polynomial exp versus `f32::exp`; the Bernoulli pass; block Gibbs sweeps of 100 chains of a
//! 784 x 500 RBM; and one PCD-1 training epoch on the bundled digits and MNIST-5k data.

use std::hint::black_box;
use std::time::Instant;

use ebm::io::datasets::read_dataset;
use ebm::learn::cd::{CdParams, LrSchedule};
use ebm::learn::train_rbm;
use ebm::model::Rbm;
use ebm::progress::Silent;
use ebm::rng::{EbmRng, Purpose, stream_for};
use ebm::sample::rbm::{GibbsChains, RbmF32, bernoulli_rows, sigmoid_rows};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
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
