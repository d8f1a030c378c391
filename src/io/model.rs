//! One entry point for model files: [`open_model`] recognises a file by its content, not its
//! name, so a UAI model saved as `model.txt` or an RBM without an extension open all the same.
//!
//! Recognition ([`sniff_model`]) looks at the first bytes only:
//! - a `.safetensors` file starts with its header length N (8 bytes, little-endian u64) followed
//!   by the JSON header, whose first byte is `{`;
//! - a UAI file's first token (after any whitespace) is `MARKOV` or `BAYES`, in any case;
//! - a composite manifest (JSON, [`crate::io::composite`]) starts, after any whitespace, with
//!   `{` (and holds the key `ebm_composite`); the safetensors test comes first, and the manifests
//!   `ebm compose` writes never have `{` as their ninth byte.
//!
//! None of these prefixes can start a dataset, an image or a `.PR` answer, so the test is unambiguous.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::composite::decode_composite;
use crate::io::safetensors::{
    GAUSSIAN_UNITS, GaussianRbmFile, RbmFile, decode_gaussian_rbm, decode_rbm, visible_units,
};
use crate::io::uai::{parse_uai, text_of};
use crate::model::FactorGraph;
use crate::model::composite::Composite;

/// The kinds of model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A UAI `MARKOV` (or `BAYES`) factor graph.
    Uai,
    /// An RBM in the `.safetensors` format.
    Rbm,
    /// A composite manifest (JSON).
    Composite,
}

/// A model read from a file.
#[derive(Debug)]
pub enum LoadedModel {
    /// A factor graph from a UAI file.
    Factors(FactorGraph),
    /// An RBM with the file's metadata and extra tensors.
    Rbm(RbmFile),
    /// A composite model from a manifest, its components loaded and their checksums checked.
    Composite(Composite),
    /// A Gaussian-Bernoulli RBM (real visible units): an RBM file whose metadata says
    /// `visible_units = gaussian`.
    GaussianRbm(GaussianRbmFile),
}

/// The kind of model whose file starts with `head` (16 bytes are enough), or `None`.
pub fn sniff_model(head: &[u8]) -> Option<ModelKind> {
    if let Some(first8) = head.get(..8)
        && head.get(8) == Some(&b'{')
    {
        let header_len = u64::from_le_bytes(first8.try_into().expect("8 bytes"));
        // The smallest header is `{}`.
        if header_len >= 2 {
            return Some(ModelKind::Rbm);
        }
    }
    let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    if head[start] == b'{' {
        return Some(ModelKind::Composite);
    }
    let word = &head[start..];
    let word = &word[..word
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(word.len())];
    (word.eq_ignore_ascii_case(b"MARKOV") || word.eq_ignore_ascii_case(b"BAYES"))
        .then_some(ModelKind::Uai)
}

/// Reads the model in `path`, whatever its name: a UAI factor graph or an RBM (see the module
/// docs). A file that is neither is refused with [`Error::Format`] saying what was expected.
pub fn open_model(path: &Path) -> Result<LoadedModel> {
    let bytes = std::fs::read(path)?;
    match sniff_model(&bytes[..bytes.len().min(16)]) {
        Some(ModelKind::Uai) => Ok(LoadedModel::Factors(parse_uai(&text_of(bytes)?)?)),
        Some(ModelKind::Rbm) if visible_units(&bytes).as_deref() == Some(GAUSSIAN_UNITS) => {
            Ok(LoadedModel::GaussianRbm(decode_gaussian_rbm(&bytes)?))
        }
        Some(ModelKind::Rbm) => Ok(LoadedModel::Rbm(decode_rbm(&bytes)?)),
        Some(ModelKind::Composite) => Ok(LoadedModel::Composite(decode_composite(&bytes, path)?)),
        None => Err(Error::Format(
            "not a model file: expected a UAI model (text starting with MARKOV or BAYES), an \
             RBM in the safetensors format (an 8-byte header length, then a JSON header) or a \
             composite manifest (JSON)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_by_the_first_bytes() {
        assert_eq!(sniff_model(b"MARKOV\n3\n"), Some(ModelKind::Uai));
        assert_eq!(sniff_model(b"  \n bayes 2"), Some(ModelKind::Uai));
        assert_eq!(sniff_model(b"MARKOVIAN 2"), None);
        let mut st = 60u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{\"weights\"");
        assert_eq!(sniff_model(&st), Some(ModelKind::Rbm));
        assert_eq!(
            sniff_model(b"{\n  \"ebm_composite\""),
            Some(ModelKind::Composite)
        );
        for other in [
            &b"0101\n1100\n"[..],
            b"PR\n-1.5\n",
            b"\x89PNG\r\n\x1a\n",
            b"\x93NUMPY\x01\x00",
            b"\x00\x00\x08\x03",
            b"",
            b"\x00\x00\x00\x00\x00\x00\x00\x00{",
        ] {
            assert_eq!(sniff_model(other), None, "{other:?}");
        }
    }
}
