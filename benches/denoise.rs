//! Throughput of the denoising methods on synthetic 10%-noise images (run with
//! `cargo bench --bench denoise`; `-- --sizes 256,1024 --runs 5` to choose).
//!
//! graphcut: Mpixel/s of the whole exact MAP (cut construction, max-flow, labels). ICM: Mpixel
//! sweeps/s of checkerboard sweeps (20 sweeps per run, whether or not they change anything).
//! Medians over the runs; the machine is shared, so compare figures taken in one run.

use std::time::Instant;

use ebm::image::BinaryImage;
use ebm::infer::map::GridEnergy;
use ebm::infer::map::icm::Icm;
use ebm::infer::map::mincut::GridCut;

/// A clean test picture: a few discs and bars scaled to the size, white on black.
fn picture(size: usize) -> BinaryImage {
    let s = size as f64;
    let discs = [(0.3, 0.35, 0.2), (0.7, 0.6, 0.25), (0.45, 0.8, 0.12)];
    let pixels = (0..size * size)
        .map(|k| {
            let (y, x) = ((k / size) as f64 / s, (k % size) as f64 / s);
            let disc = discs
                .iter()
                .any(|&(cx, cy, r)| (x - cx).powi(2) + (y - cy).powi(2) < r * r);
            let bar = (0.1..0.9).contains(&x) && (0.05..0.12).contains(&y);
            if disc ^ bar { 1 } else { -1 }
        })
        .collect();
    BinaryImage::new(size, size, pixels).expect("valid picture")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut sizes = vec![256usize, 512, 1024, 2048, 4096];
    let mut runs = 5usize;
    let mut k = 1;
    while k < args.len() {
        match args[k].as_str() {
            "--sizes" => {
                sizes = args[k + 1]
                    .split(',')
                    .map(|v| v.parse().expect("--sizes takes numbers"))
                    .collect();
                k += 1;
            }
            "--runs" => {
                runs = args[k + 1].parse().expect("--runs takes a number");
                k += 1;
            }
            _ => {} // cargo bench passes --bench
        }
        k += 1;
    }
    println!(
        "threads: {}; medians of {runs} runs",
        rayon::current_num_threads()
    );
    println!(
        "{:>6} {:>12} {:>14} {:>10} {:>14}",
        "size", "graphcut ms", "graphcut Mpx/s", "cut MB", "ICM Mpx-sw/s"
    );
    for &size in &sizes {
        let noisy = picture(size).with_flip_noise(0.1, 1).expect("noise");
        let energy = GridEnergy::new(size, size, 1.0, 2.1, 0.0, noisy.pixels()).expect("energy");
        let n = (size * size) as f64;
        let mut cut_times = Vec::new();
        let mut mem = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let mut cut = GridCut::from_energy(&energy).expect("beta >= 0");
            let labels = cut.labels();
            cut_times.push(t.elapsed().as_secs_f64());
            mem = cut.memory_bytes();
            std::hint::black_box(labels);
        }
        let sweeps = 20;
        let mut icm_times = Vec::new();
        for _ in 0..runs {
            let mut icm = Icm::new(&energy, noisy.pixels());
            let t = Instant::now();
            for _ in 0..sweeps {
                std::hint::black_box(icm.sweep());
            }
            icm_times.push(t.elapsed().as_secs_f64());
        }
        let cut = median(cut_times);
        let icm = median(icm_times);
        println!(
            "{size:>6} {:>12.1} {:>14.1} {:>10.0} {:>14.0}",
            cut * 1e3,
            n / cut / 1e6,
            mem as f64 / 1e6,
            n * sweeps as f64 / icm / 1e6
        );
    }
}
