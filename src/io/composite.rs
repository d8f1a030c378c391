//! Composite model manifests: a small JSON file naming component model files (RBMs, UAI models
//! or other manifests), the operation that combines them, and what it needs (weights, stored
//! ln Z's, alpha, a temperature). See `docs/formats.md` for the format and
//! [`crate::model::composite`] for the models.
//!
//! ```json
//! {
//!   "ebm_composite": 1,
//!   "operation": "mixture",
//!   "components": [
//!     {"path": "bars.safetensors", "sha256": "9f2c...", "weight": 0.5,
//!      "log_z": {"value": 12.3, "method": "exact"}},
//!     {"path": "stripes.safetensors", "sha256": "41d0...", "weight": 0.5,
//!      "log_z": {"value": 80.1, "method": "ais", "low": 79.9, "high": 80.2,
//!                "ais_betas": 14500, "ais_runs": 100}}
//!   ],
//!   "temperature": 1.0
//! }
//! ```
//!
//! Component paths are relative to the manifest's folder (absolute paths are accepted too).
//! Each component's SHA-256 (FIPS 180-4, computed by [`crate::io::sha256`]) is checked on load, so a
//! component replaced after composing is refused instead of silently changing the model.
//! Manifests nest: a component may itself be a manifest. Recognition by content: the first
//! non-blank byte is `{` (and the JSON object has the key `ebm_composite`).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::model::{ModelKind, sniff_model};
use crate::io::safetensors::decode_rbm;
pub use crate::io::sha256::sha256_hex;
use crate::io::uai::{parse_uai, text_of};
use crate::model::composite::{Composite, LogZ, LogZMethod, MAX_DEPTH};

/// The manifest's version (the value of its `ebm_composite` key).
pub const MANIFEST_VERSION: u32 = 1;

/// The operations a manifest can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// F = sum_k F_k.
    Product,
    /// p = sum_k w_k p_k.
    Mixture,
    /// F = F_0 - alpha F_1.
    Negation,
}

/// A stored ln Z (JSON has no infinities: a `low` of -inf is written as null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredLogZ {
    /// The estimate.
    pub value: f64,
    /// `"exact"` or `"ais"`.
    pub method: String,
    /// Lower end of the AIS spread (null: the interval reaches 0, ln = -inf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    /// Upper end of the AIS spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// AIS annealing steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ais_betas: Option<usize>,
    /// AIS runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ais_runs: Option<usize>,
    /// Effective sample size of the AIS weights (absent in manifests written before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ais_ess: Option<f64>,
}

impl StoredLogZ {
    /// The stored form of `z`.
    pub fn of(z: &LogZ) -> StoredLogZ {
        let ais = z.method == LogZMethod::Ais;
        StoredLogZ {
            value: z.value,
            method: z.method.name().into(),
            low: if ais {
                z.low.is_finite().then_some(z.low)
            } else {
                None
            },
            high: ais.then_some(z.high),
            ais_betas: z.ais.map(|a| a.0),
            ais_runs: z.ais.map(|a| a.1),
            ais_ess: z.ais_ess,
        }
    }

    fn to_log_z(&self, key: &str) -> Result<LogZ> {
        let z = match self.method.as_str() {
            "exact" => {
                if self.low.is_some() || self.high.is_some() {
                    return Err(Error::Format(format!(
                        "{key}: an exact ln Z has no low/high"
                    )));
                }
                LogZ::exact(self.value)
            }
            "ais" if self.ais_ess.is_some_and(|e| e < 0.0) => {
                return Err(Error::Format(format!(
                    "{key}.ais_ess: expected an effective sample size of at least 0, got {}",
                    self.ais_ess.unwrap_or_default()
                )));
            }
            "ais" => LogZ {
                value: self.value,
                low: self.low.unwrap_or(f64::NEG_INFINITY),
                high: self.high.ok_or_else(|| {
                    Error::Format(format!("{key}: an AIS ln Z needs `high` (its spread)"))
                })?,
                method: LogZMethod::Ais,
                ais: self.ais_betas.zip(self.ais_runs),
                ais_ess: self.ais_ess,
                // Flagged as when it was estimated (the ESS and the runs are both stored).
                unreliable: self
                    .ais_ess
                    .zip(self.ais_runs)
                    .is_some_and(|(ess, runs)| ess < crate::infer::ais::ess_threshold(runs)),
            },
            other => {
                return Err(Error::Format(format!(
                    "{key}.method: expected \"exact\" or \"ais\", got {other:?}"
                )));
            }
        };
        z.validate(key).map_err(|e| Error::Format(e.to_string()))?;
        Ok(z)
    }
}

/// One component of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    /// The component's file, relative to the manifest's folder (or absolute).
    pub path: String,
    /// SHA-256 of the file's bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// Mixture weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The component's ln Z (required in a mixture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_z: Option<StoredLogZ>,
}

/// A composite manifest as written in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The format version, [`MANIFEST_VERSION`]; also the key that marks the file as a manifest.
    pub ebm_composite: u32,
    /// How the components combine.
    pub operation: Operation,
    /// The components, in order (for a negation: the base, then the negated model).
    pub components: Vec<ComponentEntry>,
    /// Negation exponent alpha > 0 (negation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Temperature T > 0 applied to the result (p^(1/T)); absent means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

/// The bytes of a manifest (pretty JSON, a trailing newline).
pub fn encode_manifest(manifest: &Manifest) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::Format(format!("composite manifest: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads the composite model of the manifest at `path` (components checked and loaded).
pub fn read_composite(path: &Path) -> Result<Composite> {
    decode_composite(&std::fs::read(path)?, path)
}

/// The composite model of manifest `bytes` read from `path` (used to resolve relative
/// component paths and to name the file in errors).
pub fn decode_composite(bytes: &[u8], path: &Path) -> Result<Composite> {
    decode_at_depth(bytes, path, 0)
}

fn decode_at_depth(bytes: &[u8], path: &Path, depth: usize) -> Result<Composite> {
    let shown = path.display();
    if depth > MAX_DEPTH {
        return Err(Error::Format(format!(
            "{shown}: manifests nested more than {MAX_DEPTH} deep"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Format(format!("{shown}: not valid JSON: {e}")))?;
    if value.get("ebm_composite").is_none() {
        return Err(Error::Format(format!(
            "{shown}: a JSON file without the key \"ebm_composite\": not a composite manifest"
        )));
    }
    let manifest: Manifest = serde_json::from_value(value)
        .map_err(|e| Error::Format(format!("{shown}: composite manifest: {e}")))?;
    if manifest.ebm_composite != MANIFEST_VERSION {
        return Err(Error::Format(format!(
            "{shown}: key ebm_composite: version {} is not supported (expected {MANIFEST_VERSION})",
            manifest.ebm_composite
        )));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut parts = Vec::with_capacity(manifest.components.len());
    for (k, entry) in manifest.components.iter().enumerate() {
        parts.push(load_component(entry, k, dir, path, depth)?);
    }
    let key = |k: usize, field: &str| format!("{shown}: components[{k}].{field}");
    let op = manifest.operation;
    for (k, entry) in manifest.components.iter().enumerate() {
        if op != Operation::Mixture && (entry.weight.is_some() || entry.log_z.is_some()) {
            return Err(Error::Format(format!(
                "{}: weight and log_z belong to mixtures, not to a {op:?} (remove them)",
                key(k, "weight")
            )));
        }
    }
    if op != Operation::Negation && manifest.alpha.is_some() {
        return Err(Error::Format(format!(
            "{shown}: key alpha applies to negations only"
        )));
    }
    let model = match op {
        Operation::Product => Composite::product(parts),
        Operation::Mixture => {
            let mut weights = Vec::new();
            let mut log_z = Vec::new();
            for (k, entry) in manifest.components.iter().enumerate() {
                weights.push(entry.weight.ok_or_else(|| {
                    Error::Format(format!(
                        "{}: missing (a mixture needs one weight per component)",
                        key(k, "weight")
                    ))
                })?);
                let stored = entry.log_z.as_ref().ok_or_else(|| {
                    Error::Format(format!(
                        "{}: missing (a mixture needs each component's ln Z)",
                        key(k, "log_z")
                    ))
                })?;
                log_z.push(stored.to_log_z(&key(k, "log_z"))?);
            }
            Composite::mixture(parts, &weights, log_z)
        }
        Operation::Negation => {
            if parts.len() != 2 {
                return Err(Error::Format(format!(
                    "{shown}: key components: a negation has exactly 2 components (the base, \
                     then the negated model), got {}",
                    parts.len()
                )));
            }
            let alpha = manifest.alpha.ok_or_else(|| {
                Error::Format(format!(
                    "{shown}: key alpha: missing (a negation needs alpha)"
                ))
            })?;
            let negated = parts.pop().expect("2 parts");
            let base = parts.pop().expect("2 parts");
            Composite::negation(base, negated, alpha)
        }
    }
    .map_err(|e| Error::Format(format!("{shown}: {e}")))?;
    match manifest.temperature {
        None => Ok(model),
        Some(t) => Composite::tempered(model, t)
            .map_err(|e| Error::Format(format!("{shown}: key temperature: {e}"))),
    }
}

fn load_component(
    entry: &ComponentEntry,
    k: usize,
    dir: &Path,
    manifest: &Path,
    depth: usize,
) -> Result<Composite> {
    let shown = manifest.display();
    let full = dir.join(&entry.path);
    let bytes = std::fs::read(&full).map_err(|e| {
        Error::Format(format!(
            "{shown}: components[{k}].path: cannot read {}: {e}",
            full.display()
        ))
    })?;
    let digest = sha256_hex(&bytes);
    if !digest.eq_ignore_ascii_case(&entry.sha256) {
        return Err(Error::Format(format!(
            "{shown}: components[{k}].sha256: {} has SHA-256 {digest}, the manifest records {}; \
             the file changed after it was composed (compose again)",
            full.display(),
            entry.sha256
        )));
    }
    let context =
        |e: Error| Error::Format(format!("{shown}: components[{k}] {}: {e}", full.display()));
    match sniff_model(&bytes[..bytes.len().min(16)]) {
        Some(ModelKind::Rbm) => Ok(Composite::Rbm(decode_rbm(&bytes).map_err(context)?.rbm)),
        Some(ModelKind::Uai) => Ok(Composite::Factors(
            parse_uai(&text_of(bytes).map_err(context)?).map_err(context)?,
        )),
        Some(ModelKind::Composite) => decode_at_depth(&bytes, &full, depth + 1),
        None => Err(Error::Format(format!(
            "{shown}: components[{k}].path: {} is not a model file (RBM, UAI or manifest)",
            full.display()
        ))),
    }
}

/// `target` relative to the folder `from` (both resolved to absolute, canonical paths when they
/// exist), as written in a manifest: `../models/a.safetensors`. Falls back to the absolute
/// target when no relative path exists (another drive on Windows).
pub fn relative_path(from: &Path, target: &Path) -> Result<PathBuf> {
    let from = from.canonicalize()?;
    let target = target.canonicalize()?;
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = target.components().collect();
    if a.first() != b.first() {
        return Ok(target);
    }
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c.as_os_str());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_out_of_the_manifest_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("m")).unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c/a.bin"), b"").unwrap();
        let rel = relative_path(&dir.path().join("m"), &dir.path().join("c/a.bin")).unwrap();
        assert_eq!(rel, Path::new("../c/a.bin"));
    }
}
