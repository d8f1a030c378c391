//! Binary images with +-1 pixels, and flip noise. File formats live in `io::images`.

use crate::error::{Error, Result};
use crate::model::{Spin, first_non_spin};
use crate::rng::{Purpose, stream_for, uniform_f64};

/// A binary image: pixels in {-1, +1}, row-major (`row * width + col`); +1 is white.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryImage {
    width: usize,
    height: usize,
    pixels: Vec<Spin>,
}

impl BinaryImage {
    /// Builds an image; every pixel must be -1 or +1 and the size must be at least 1 x 1.
    pub fn new(width: usize, height: usize, pixels: Vec<Spin>) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::Format(format!(
                "image of size {width} x {height} has no pixels"
            )));
        }
        if pixels.len() != width * height {
            return Err(Error::SizeMismatch(format!(
                "{width} x {height} image needs {} pixels, got {}",
                width * height,
                pixels.len()
            )));
        }
        if let Some(k) = first_non_spin(&pixels) {
            return Err(Error::Format(format!(
                "pixel {k} is {} (must be -1 or +1)",
                pixels[k]
            )));
        }
        Ok(BinaryImage {
            width,
            height,
            pixels,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }
    /// Pixels, row-major, -1 or +1.
    pub fn pixels(&self) -> &[Spin] {
        &self.pixels
    }
    /// Mutable pixels (values must stay -1 or +1).
    pub fn pixels_mut(&mut self) -> &mut [Spin] {
        &mut self.pixels
    }
    /// Fraction of white (+1) pixels.
    pub fn fraction_white(&self) -> f64 {
        self.pixels.iter().filter(|&&p| p > 0).count() as f64 / self.pixels.len() as f64
    }
    /// Fraction of pixels that differ from `other` (same size required).
    pub fn error_rate(&self, other: &BinaryImage) -> Result<f64> {
        if self.width != other.width || self.height != other.height {
            return Err(Error::SizeMismatch(format!(
                "images differ in size: {} x {} and {} x {}",
                self.width, self.height, other.width, other.height
            )));
        }
        let wrong = self
            .pixels
            .iter()
            .zip(&other.pixels)
            .filter(|(a, b)| a != b)
            .count();
        Ok(wrong as f64 / self.pixels.len() as f64)
    }

    /// A copy in which every pixel is flipped independently with probability `flip`.
    ///
    /// Row r draws from its own stream `rng::stream_for(seed, Purpose::Noise, r)`, so the result depends only on the
    /// seed.
    pub fn with_flip_noise(&self, flip: f64, seed: u64) -> Result<BinaryImage> {
        if !(0.0..=1.0).contains(&flip) {
            return Err(Error::param(
                "flip probability",
                format!("must be in [0, 1], got {flip}"),
            ));
        }
        let mut out = self.clone();
        for (r, row) in out.pixels.chunks_exact_mut(self.width).enumerate() {
            let mut rng = stream_for(seed, Purpose::Noise, r as u64);
            for p in row {
                if uniform_f64(&mut rng) < flip {
                    *p = -*p;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_noise_rate_matches_probability() {
        let img = BinaryImage::new(200, 100, vec![1; 20_000]).unwrap();
        let noisy = img.with_flip_noise(0.1, 3).unwrap();
        let rate = img.error_rate(&noisy).unwrap();
        // Binomial(20000, 0.1): sd of the rate is sqrt(0.1 * 0.9 / 20000) = 0.0021; 5 sd.
        assert!((rate - 0.1).abs() < 5.0 * 0.0021, "rate {rate}");
        assert_eq!(noisy, img.with_flip_noise(0.1, 3).unwrap());
        assert_eq!(img.with_flip_noise(0.0, 3).unwrap(), img);
        assert!(img.with_flip_noise(1.5, 3).is_err());
        assert!(img.with_flip_noise(f64::NAN, 3).is_err());
    }

    #[test]
    fn invalid_images_are_refused() {
        assert!(BinaryImage::new(0, 3, vec![]).is_err());
        assert!(BinaryImage::new(2, 2, vec![1, -1, 0, 1]).is_err());
        assert!(BinaryImage::new(2, 2, vec![1, -1, 1]).is_err());
    }
}
