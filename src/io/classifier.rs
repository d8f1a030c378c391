//! Classifier manifests: a small JSON file naming one RBM file per class (paths relative to the
//! manifest's folder, each with its SHA-256, checked on load), with each class's prior and
//! ln Z (exact, or AIS with its spread).
//!
//! ```json
//! {"format": "ebm-classifier", "version": 1, "n_visible": 64,
//!  "classes": [{"label": 0, "file": "c.class0.safetensors", "sha256": "…", "examples": 145,
//!               "prior": 0.0969, "log_z": 31.2, "log_z_method": "exact"}, …]}
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::safetensors::decode_rbm;
use crate::io::sha256::sha256_hex;
use crate::model::Rbm;

/// The manifest's `format` value.
pub const CLASSIFIER_FORMAT: &str = "ebm-classifier";
/// The manifest's `version` value.
pub const CLASSIFIER_VERSION: u32 = 1;

/// One class of a classifier manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassEntry {
    /// The class label (as in the label files).
    pub label: u32,
    /// The class's RBM file, relative to the manifest's folder.
    pub file: String,
    /// SHA-256 of that file (64 hex digits).
    pub sha256: String,
    /// Training examples of this class.
    pub examples: usize,
    /// The prior pi_k: the class's share of the training examples.
    pub prior: f64,
    /// ln Z_k of the class's RBM.
    pub log_z: f64,
    /// `"exact"` or `"ais"`.
    pub log_z_method: String,
    /// AIS only: ln(mean - 3 s.e.) of the importance weights (absent when it reaches 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_z_low: Option<f64>,
    /// AIS only: ln(mean + 3 s.e.).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_z_high: Option<f64>,
}

/// A classifier manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierManifest {
    /// Always [`CLASSIFIER_FORMAT`].
    pub format: String,
    /// Always [`CLASSIFIER_VERSION`].
    pub version: u32,
    /// Visible units of every class model.
    pub n_visible: usize,
    /// The classes in ascending label order.
    pub classes: Vec<ClassEntry>,
}

impl ClassifierManifest {
    /// A manifest of the current format over `classes`.
    pub fn new(n_visible: usize, classes: Vec<ClassEntry>) -> Self {
        ClassifierManifest {
            format: CLASSIFIER_FORMAT.into(),
            version: CLASSIFIER_VERSION,
            n_visible,
            classes,
        }
    }

    /// The manifest as pretty-printed JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("plain data serialises");
        bytes.push(b'\n');
        bytes
    }
}

/// A classifier read from its manifest, with its class models in the manifest's order.
#[derive(Debug)]
pub struct Classifier {
    /// The manifest.
    pub manifest: ClassifierManifest,
    /// Class k's RBM.
    pub models: Vec<Rbm>,
}

fn invalid(msg: String) -> Error {
    Error::Format(format!("classifier manifest: {msg}"))
}

/// Parses a manifest's JSON and checks its fields (format, version, finite ln Z, priors in
/// (0, 1], distinct labels).
pub fn parse_manifest(bytes: &[u8]) -> Result<ClassifierManifest> {
    let m: ClassifierManifest =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    if m.format != CLASSIFIER_FORMAT || m.version != CLASSIFIER_VERSION {
        return Err(invalid(format!(
            "format {:?} version {}, expected {CLASSIFIER_FORMAT:?} version {CLASSIFIER_VERSION}",
            m.format, m.version
        )));
    }
    if m.classes.is_empty() {
        return Err(invalid("no classes".into()));
    }
    for (k, c) in m.classes.iter().enumerate() {
        if !c.log_z.is_finite() {
            return Err(invalid(format!("class {} has ln Z {}", c.label, c.log_z)));
        }
        if !(c.prior > 0.0 && c.prior <= 1.0) {
            return Err(invalid(format!(
                "class {} has prior {}, expected a number in (0, 1]",
                c.label, c.prior
            )));
        }
        if m.classes[..k].iter().any(|o| o.label == c.label) {
            return Err(invalid(format!("class {} appears twice", c.label)));
        }
    }
    Ok(m)
}

/// Reads the manifest at `path` and every class file it names (relative to its folder),
/// checking each file's SHA-256 and size against the manifest.
pub fn read_classifier(path: &Path) -> Result<Classifier> {
    let manifest = parse_manifest(&std::fs::read(path)?)?;
    let folder = path.parent().unwrap_or(Path::new(""));
    let mut models = Vec::with_capacity(manifest.classes.len());
    for c in &manifest.classes {
        let file = folder.join(&c.file);
        let bytes = std::fs::read(&file).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("class {}: reading {}: {e}", c.label, file.display()),
            )
        })?;
        let sum = sha256_hex(&bytes);
        if !sum.eq_ignore_ascii_case(&c.sha256) {
            return Err(invalid(format!(
                "class {}: {} has SHA-256 {sum}, the manifest says {}: the file was changed \
                 after the manifest was written",
                c.label,
                file.display(),
                c.sha256
            )));
        }
        let rbm = decode_rbm(&bytes)
            .map_err(|e| invalid(format!("class {}: {}: {e}", c.label, file.display())))?
            .rbm;
        if rbm.n_visible() != manifest.n_visible {
            return Err(invalid(format!(
                "class {}: {} has {} visible units, the manifest {}",
                c.label,
                file.display(),
                rbm.n_visible(),
                manifest.n_visible
            )));
        }
        models.push(rbm);
    }
    Ok(Classifier { manifest, models })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::safetensors::{RbmFile, encode_rbm};

    #[test]
    fn a_changed_class_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rbm = Rbm::new(2, 1, vec![0.5, -0.5], vec![0.0, 0.1], vec![0.2]).unwrap();
        let bytes = encode_rbm(&RbmFile::new(rbm)).unwrap();
        std::fs::write(dir.path().join("a.safetensors"), &bytes).unwrap();
        let entry = ClassEntry {
            label: 3,
            file: "a.safetensors".into(),
            sha256: sha256_hex(&bytes),
            examples: 1,
            prior: 1.0,
            log_z: 1.5,
            log_z_method: "exact".into(),
            log_z_low: None,
            log_z_high: None,
        };
        let path = dir.path().join("c.json");
        std::fs::write(&path, ClassifierManifest::new(2, vec![entry]).to_json()).unwrap();
        let c = read_classifier(&path).unwrap();
        assert_eq!(c.models.len(), 1);
        let mut changed = bytes.clone();
        *changed.last_mut().unwrap() ^= 1;
        std::fs::write(dir.path().join("a.safetensors"), &changed).unwrap();
        let e = read_classifier(&path).unwrap_err().to_string();
        assert!(e.contains("SHA-256") && e.contains("a.safetensors"), "{e}");
        assert!(parse_manifest(b"{\"format\": \"x\"}").is_err());
    }
}
