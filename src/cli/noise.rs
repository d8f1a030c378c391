//! `ebm noise`: flip each pixel of a binary image independently with probability P.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::GlobalArgs;
use super::output::{IMAGE, Outputs, print_json, say};
use ebm::io::images::{DEFAULT_THRESHOLD, encode_binary_image, format_for_path, read_binary_image};

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  ebm noise --input data/images/horse.png --flip 0.1 --output noisy.png --seed 7"
)]
pub struct NoiseArgs {
    /// Input image (PNG, PBM/PGM/PPM); grey levels >= --threshold are white (+1).
    #[arg(long)]
    pub input: PathBuf,
    /// Probability of flipping each pixel, in [0, 1].
    #[arg(long, allow_negative_numbers = true)]
    pub flip: f64,
    /// Output image, PNG or PBM by extension; written only when complete.
    #[arg(long)]
    pub output: PathBuf,
    /// Grey level (0-255) at and above which a pixel is white.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: u8,
}

#[derive(Debug, Serialize)]
struct NoiseReport<'a> {
    input: &'a str,
    output: &'a str,
    width: usize,
    height: usize,
    flip: f64,
    flipped_fraction: f64,
    seed: u64,
}

pub fn run(args: &NoiseArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.flip) {
        return Err(super::UsageError(format!(
            "--flip must be a probability in [0, 1], got {}",
            args.flip
        ))
        .into());
    }
    let mut outputs = Outputs::new();
    outputs.declare("--output", Some(&args.output), IMAGE, "the noisy image")?;
    let clean = read_binary_image(&args.input, args.threshold)
        .with_context(|| format!("reading image {}", args.input.display()))?;
    let noisy = clean.with_flip_noise(args.flip, global.seed)?;
    let flipped = clean.error_rate(&noisy)?;
    let bytes = encode_binary_image(&noisy, format_for_path(&args.output)?)?;
    outputs.stage_bytes("--output", &bytes)?;
    let report = NoiseReport {
        input: &args.input.to_string_lossy(),
        output: &args.output.to_string_lossy(),
        width: noisy.width(),
        height: noisy.height(),
        flip: args.flip,
        flipped_fraction: flipped,
        seed: global.seed,
    };
    if global.json {
        print_json(&report)?;
    } else {
        say(
            global,
            &format!(
                "{}: {} x {}, flipped {:.2}% of pixels (p = {}, seed {})",
                report.output,
                report.width,
                report.height,
                100.0 * flipped,
                args.flip,
                global.seed
            ),
        );
    }
    outputs.commit()
}
