//! Binary images from and to files through the `image` crate.
//!
//! Reading: any format the build supports (PNG, PBM/PGM/PPM), colour converted to luma, then
//! `luma >= threshold` is +1 (white), below is -1. Writing: PNG or PBM chosen by the extension
//! (`.png`, `.pbm`); +1 is written as white (255 in PNG), -1 as black.

use std::io::{BufReader, Cursor};
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::codecs::pnm::{PnmEncoder, PnmSubtype, SampleEncoding};
use image::{ExtendedColorType, ImageEncoder, ImageReader};

use crate::error::{Error, Result};
use crate::image::BinaryImage;
use crate::io::atomic::write_bytes_atomic;

/// The default luma threshold: 128 and above is white (+1).
pub const DEFAULT_THRESHOLD: u8 = 128;

/// Grey levels (luma, 0-255) of an image file, row-major, with its width and height.
pub fn read_luma(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let file = std::fs::File::open(path)?;
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(Error::Io)?;
    if reader.format().is_none() {
        return Err(Error::Format(
            "not an image this build can read (expected PNG, PBM, PGM or PPM)".into(),
        ));
    }
    let img = reader
        .decode()
        .map_err(|e| Error::Format(format!("cannot decode image: {e}")))?;
    let luma = img.to_luma8();
    let (w, h) = (luma.width() as usize, luma.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::Format(format!(
            "image has size {w} x {h} (no pixels)"
        )));
    }
    Ok((w, h, luma.into_raw()))
}

/// Reads an image file and thresholds it: luma >= `threshold` is +1, below is -1.
pub fn read_binary_image(path: &Path, threshold: u8) -> Result<BinaryImage> {
    let (w, h, luma) = read_luma(path)?;
    let pixels = luma
        .iter()
        .map(|&l| if l >= threshold { 1 } else { -1 })
        .collect();
    BinaryImage::new(w, h, pixels)
}

/// The output format chosen by a path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// `.png`: 8-bit greyscale.
    Png,
    /// `.pbm`: binary portable bitmap (P4).
    Pbm,
}

/// The format for `path` by its extension, or an error naming the extensions supported.
pub fn format_for_path(path: &Path) -> Result<ImageFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(ImageFormat::Png),
        Some("pbm") => Ok(ImageFormat::Pbm),
        _ => Err(Error::param(
            "output image",
            format!("{}: unknown extension (use .png or .pbm)", path.display()),
        )),
    }
}

/// Encodes 8-bit grey levels as PNG into memory.
pub fn encode_grey_png(width: usize, height: usize, luma: &[u8]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    PngEncoder::new(Cursor::new(&mut bytes))
        .write_image(luma, width as u32, height as u32, ExtendedColorType::L8)
        .map_err(|e| Error::Format(format!("cannot encode PNG: {e}")))?;
    Ok(bytes)
}

/// Writes 8-bit grey levels as a PNG file, atomically.
pub fn write_grey_png(path: &Path, width: usize, height: usize, luma: &[u8]) -> Result<()> {
    let bytes = encode_grey_png(width, height, luma)?;
    write_bytes_atomic(path, &bytes)
}

/// Writes a binary image as PNG or PBM (by extension), atomically.
pub fn write_binary_image(path: &Path, image: &BinaryImage) -> Result<()> {
    let bytes = encode_binary_image(image, format_for_path(path)?)?;
    write_bytes_atomic(path, &bytes)
}

/// Encodes a binary image as PNG (+1 white 255, -1 black 0) or PBM into memory.
pub fn encode_binary_image(image: &BinaryImage, format: ImageFormat) -> Result<Vec<u8>> {
    let (w, h) = (image.width(), image.height());
    let bytes = match format {
        ImageFormat::Png => {
            let luma: Vec<u8> = image
                .pixels()
                .iter()
                .map(|&p| if p > 0 { 255 } else { 0 })
                .collect();
            encode_grey_png(w, h, &luma)?
        }
        ImageFormat::Pbm => {
            // The PBM encoder takes luma in {0, 1} with 1 meaning white.
            let luma: Vec<u8> = image.pixels().iter().map(|&p| (p > 0) as u8).collect();
            let mut bytes = Vec::new();
            PnmEncoder::new(Cursor::new(&mut bytes))
                .with_subtype(PnmSubtype::Bitmap(SampleEncoding::Binary))
                .write_image(&luma, w as u32, h as u32, ExtendedColorType::L8)
                .map_err(|e| Error::Format(format!("cannot encode PBM: {e}")))?;
            bytes
        }
    };
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_and_pbm_round_trip() {
        let dir = std::env::temp_dir().join(format!("ebm-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pixels: Vec<i8> = (0..35)
            .map(|k| if (k * 7) % 5 < 2 { 1 } else { -1 })
            .collect();
        let img = BinaryImage::new(7, 5, pixels).unwrap();
        for name in ["a.png", "a.pbm"] {
            let path = dir.join(name);
            write_binary_image(&path, &img).unwrap();
            assert_eq!(
                read_binary_image(&path, DEFAULT_THRESHOLD).unwrap(),
                img,
                "{name}"
            );
        }
        assert!(write_binary_image(&dir.join("a.jpg"), &img).is_err());
        std::fs::write(dir.join("fake.png"), b"not an image at all").unwrap();
        assert!(read_binary_image(&dir.join("fake.png"), 128).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
