//! The PRML section 8.3.3 experiment on the bundled images, as a table and a figure.
//!
//! `cargo bench --bench prml` flips 10% of the pixels of each image in data/images (seed 1),
//! restores it with every method at the book's parameters (beta = 1, eta = 2.1, h = 0) and
//! prints error rates, energies and times as a Markdown table; it also writes
//! docs/img/denoise_prml.png: noisy, ICM, graph cut and clean side by side (horse.png).

use std::path::Path;
use std::time::Instant;

use ebm::denoise::{DenoiseParams, denoise};
use ebm::image::BinaryImage;
use ebm::infer::map::MapMethod;
use ebm::io::images::{read_binary_image, write_grey_png};
use ebm::progress::Silent;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(root.join("data/images"))
        .expect("data/images exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    paths.sort();
    println!("| image | method | error rate | energy | seconds |");
    println!("|---|---|---|---|---|");
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let clean = read_binary_image(path, 128).expect("readable image");
        let noisy = clean.with_flip_noise(0.1, 1).expect("noise");
        let defaults = DenoiseParams::default();
        let input_energy = {
            let out = denoise(&noisy, &defaults, &mut Silent).expect("denoise");
            out.input_energy
        };
        println!(
            "| {name} | (noisy input) | {:.2}% | {input_energy:.1} | |",
            100.0 * noisy.error_rate(&clean).unwrap()
        );
        let mut panels: Vec<BinaryImage> = vec![noisy.clone()];
        for method in [
            MapMethod::Icm,
            MapMethod::Anneal,
            MapMethod::Gibbs,
            MapMethod::GraphCut,
        ] {
            let params = DenoiseParams { method, ..defaults };
            let t = Instant::now();
            let out = denoise(&noisy, &params, &mut Silent).expect("denoise");
            let seconds = t.elapsed().as_secs_f64();
            println!(
                "| {name} | {} | {:.2}% | {:.1} | {seconds:.3} |",
                method.name(),
                100.0 * out.image.error_rate(&clean).unwrap(),
                out.energy
            );
            if matches!(method, MapMethod::Icm | MapMethod::GraphCut) {
                panels.push(out.image);
            }
        }
        if name == "horse.png" {
            panels.push(clean);
            let out = root.join("docs/img/denoise_prml.png");
            write_panels(&out, &panels);
            eprintln!("wrote {}", out.display());
        }
    }
}

/// The images side by side, separated by 8 grey columns.
fn write_panels(path: &Path, panels: &[BinaryImage]) {
    let (w, h) = (panels[0].width(), panels[0].height());
    let gap = 8;
    let total = panels.len() * w + (panels.len() - 1) * gap;
    let mut luma = vec![128u8; total * h];
    for (k, img) in panels.iter().enumerate() {
        let x0 = k * (w + gap);
        for r in 0..h {
            for c in 0..w {
                luma[r * total + x0 + c] = if img.pixels()[r * w + c] > 0 { 255 } else { 0 };
            }
        }
    }
    std::fs::create_dir_all(path.parent().unwrap()).expect("docs/img can be created");
    write_grey_png(path, total, h, &luma).expect("figure written");
}
