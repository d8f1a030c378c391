//! RBM model files in the `.safetensors` format (loads in Python with
//! `safetensors.numpy.load_file`).
//!
//! # Layout
//! | tensor | shape | meaning |
//! |---|---|---|
//! | `weights` | [n_visible, n_hidden] | W, row-major (entry (i, j) couples visible i and hidden j) |
//! | `visible_bias` | \[n_visible\] | b |
//! | `hidden_bias` | \[n_hidden\] | c |
//! | any other name | any | an extra tensor (optimizer state, persistent chains, ...) |
//!
//! with E(v, h) = -v^T W h - b^T v - c^T h over units in {0, 1}. Tensors are written as F64
//! (little-endian, as the format prescribes); the three parameter tensors are read from F32 or
//! F64, extra tensors from F32, F64 or any integer/bool dtype (converted to f64).
//!
//! The header's `__metadata__` (a string-to-string map) always holds `"format": "ebm-rbm"` and
//! `"version": "1"`, plus the caller's entries (structured settings go in as a JSON string).
//! When reading, a file without `format` is accepted (e.g. one written by hand in Python), but a
//! different `format` or `version` is refused.
//!
//! # Gaussian-Bernoulli RBMs
//! A [`GaussianRbm`] is stored the same way plus the tensor `visible_sigma` \[n_visible\] and
//! the metadata entry `"visible_units": "gaussian"` (a binary RBM has no such entry, or
//! `"binary"`). [`decode_rbm`] refuses a Gaussian file with a message saying so;
//! [`decode_gaussian_rbm`] reads one. A model trained on standardised data also holds
//! `data_mean` and `data_std` \[n_visible\]: the model is of (x - data_mean) / data_std.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::io::atomic::write_bytes_atomic;
use crate::model::{GaussianRbm, Rbm};

/// Value of the `format` metadata entry.
pub const FORMAT: &str = "ebm-rbm";
/// Value of the `version` metadata entry.
pub const VERSION: &str = "1";
/// The names of the three parameter tensors.
pub const PARAMETER_NAMES: [&str; 3] = ["weights", "visible_bias", "hidden_bias"];

/// The metadata key naming the kind of visible units.
pub const VISIBLE_UNITS_KEY: &str = "visible_units";
/// Its value for a Gaussian-Bernoulli RBM.
pub const GAUSSIAN_UNITS: &str = "gaussian";
/// The tensor holding sigma of a Gaussian-Bernoulli RBM.
pub const SIGMA_NAME: &str = "visible_sigma";
/// The tensors of the standardisation x -> (x - data_mean) / data_std of a model's data.
pub const STANDARDISATION_NAMES: [&str; 2] = ["data_mean", "data_std"];

/// A Gaussian-Bernoulli RBM with its metadata and extra tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianRbmFile {
    /// The model.
    pub model: GaussianRbm,
    /// String metadata (`format`, `version` and `visible_units` are added on writing).
    pub metadata: BTreeMap<String, String>,
    /// Other tensors by name (`data_mean` and `data_std` when the data was standardised).
    pub extra: BTreeMap<String, Tensor>,
}

impl GaussianRbmFile {
    /// A file holding just `model`.
    pub fn new(model: GaussianRbm) -> Self {
        GaussianRbmFile {
            model,
            metadata: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The stored standardisation (data_mean, data_std), if any.
    pub fn standardisation(&self) -> Option<(&[f64], &[f64])> {
        let [m, s] = STANDARDISATION_NAMES;
        Some((&self.extra.get(m)?.data, &self.extra.get(s)?.data))
    }
}

/// The value of the `visible_units` metadata of the safetensors file `bytes`: `None` when the
/// header cannot be read or has no such entry.
pub fn visible_units(bytes: &[u8]) -> Option<String> {
    let (_, header) = SafeTensors::read_metadata(bytes).ok()?;
    header.metadata().as_ref()?.get(VISIBLE_UNITS_KEY).cloned()
}

/// The bytes of a Gaussian-Bernoulli RBM file (the RBM layout plus `visible_sigma` and
/// `visible_units = gaussian`).
pub fn encode_gaussian_rbm(file: &GaussianRbmFile) -> Result<Vec<u8>> {
    let m = &file.model;
    let rbm = Rbm::new(
        m.n_visible(),
        m.n_hidden(),
        m.weights().to_vec(),
        m.visible_bias().to_vec(),
        m.hidden_bias().to_vec(),
    )?;
    let mut inner = RbmFile::new(rbm);
    inner.metadata = file.metadata.clone();
    inner
        .metadata
        .insert(VISIBLE_UNITS_KEY.into(), GAUSSIAN_UNITS.into());
    inner.extra = file.extra.clone();
    if inner.extra.contains_key(SIGMA_NAME) {
        return Err(Error::param(
            "extra tensor",
            format!("the name `{SIGMA_NAME}` is reserved"),
        ));
    }
    inner.extra.insert(
        SIGMA_NAME.into(),
        Tensor {
            shape: vec![m.n_visible()],
            data: m.visible_sigma().to_vec(),
        },
    );
    encode_rbm(&inner)
}

/// Writes a Gaussian-Bernoulli RBM file, atomically.
pub fn write_gaussian_rbm(path: &Path, file: &GaussianRbmFile) -> Result<()> {
    write_bytes_atomic(path, &encode_gaussian_rbm(file)?)
}

/// Reads a Gaussian-Bernoulli RBM file.
pub fn read_gaussian_rbm(path: &Path) -> Result<GaussianRbmFile> {
    decode_gaussian_rbm(&std::fs::read(path)?)
}

/// Decodes a Gaussian-Bernoulli RBM file: an RBM file whose metadata says
/// `visible_units = gaussian`, with `visible_sigma` of shape \[n_visible\] (all > 0).
pub fn decode_gaussian_rbm(bytes: &[u8]) -> Result<GaussianRbmFile> {
    let units = visible_units(bytes);
    if units.as_deref() != Some(GAUSSIAN_UNITS) {
        return Err(Error::Format(format!(
            "not a Gaussian-Bernoulli RBM file: the metadata has {VISIBLE_UNITS_KEY} = {},              expected `{GAUSSIAN_UNITS}`",
            units.map_or("(none: binary units)".to_string(), |u| format!("`{u}`"))
        )));
    }
    let mut file = decode_any_rbm(bytes)?;
    let sigma = file.extra.remove(SIGMA_NAME).ok_or_else(|| {
        Error::Format(format!(
            "missing tensor `{SIGMA_NAME}` (a Gaussian-Bernoulli RBM file needs it beside              `weights`, `visible_bias` and `hidden_bias`)"
        ))
    })?;
    let nv = file.rbm.n_visible();
    if sigma.shape != [nv] {
        return Err(Error::Format(format!(
            "tensor `{SIGMA_NAME}` has shape {:?}; expected [{nv}] to match `weights`",
            sigma.shape
        )));
    }
    for name in STANDARDISATION_NAMES {
        if let Some(t) = file.extra.get(name)
            && t.shape != [nv]
        {
            return Err(Error::Format(format!(
                "tensor `{name}` has shape {:?}; expected [{nv}]",
                t.shape
            )));
        }
    }
    if let Some(t) = file.extra.get(STANDARDISATION_NAMES[1])
        && let Some(k) = t.data.iter().position(|s| *s <= 0.0)
    {
        return Err(Error::Format(format!(
            "tensor `data_std`: entry {k} is {}; expected > 0",
            t.data[k]
        )));
    }
    let rbm = &file.rbm;
    let model = GaussianRbm::new(
        nv,
        rbm.n_hidden(),
        rbm.weights().to_vec(),
        rbm.visible_bias().to_vec(),
        rbm.hidden_bias().to_vec(),
        sigma.data,
    )?;
    file.metadata.remove(VISIBLE_UNITS_KEY);
    Ok(GaussianRbmFile {
        model,
        metadata: file.metadata,
        extra: file.extra,
    })
}

/// A dense f64 tensor, row-major (C order).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The entries, row-major; `data.len()` is the product of `shape`.
    pub data: Vec<f64>,
}

/// An RBM with its metadata and any extra tensors stored beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct RbmFile {
    /// The model.
    pub rbm: Rbm,
    /// String metadata (`format` and `version` are added on writing).
    pub metadata: BTreeMap<String, String>,
    /// Other tensors by name (optimizer state, persistent chains for resuming, ...).
    pub extra: BTreeMap<String, Tensor>,
}

impl RbmFile {
    /// A file holding just `rbm`, with no metadata of its own and no extra tensors.
    pub fn new(rbm: Rbm) -> Self {
        RbmFile {
            rbm,
            metadata: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// Reads an RBM `.safetensors` file (see the module docs for the layout).
pub fn read_rbm(path: &Path) -> Result<RbmFile> {
    decode_rbm(&std::fs::read(path)?)
}

/// Writes an RBM `.safetensors` file, atomically.
pub fn write_rbm(path: &Path, file: &RbmFile) -> Result<()> {
    let bytes = encode_rbm(file)?;
    write_bytes_atomic(path, &bytes)
}

/// The bytes of an RBM `.safetensors` file.
///
/// Errors when an extra tensor uses a reserved name, when its shape does not match its data,
/// or when it holds a NaN or infinite value.
pub fn encode_rbm(file: &RbmFile) -> Result<Vec<u8>> {
    let rbm = &file.rbm;
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        (
            "weights".into(),
            vec![rbm.n_visible(), rbm.n_hidden()],
            le_bytes(rbm.weights()),
        ),
        (
            "visible_bias".into(),
            vec![rbm.n_visible()],
            le_bytes(rbm.visible_bias()),
        ),
        (
            "hidden_bias".into(),
            vec![rbm.n_hidden()],
            le_bytes(rbm.hidden_bias()),
        ),
    ];
    for (name, tensor) in &file.extra {
        if PARAMETER_NAMES.contains(&name.as_str()) || name == "__metadata__" {
            return Err(Error::param(
                "extra tensor",
                format!("the name `{name}` is reserved"),
            ));
        }
        let count: usize = tensor.shape.iter().product();
        if count != tensor.data.len() {
            return Err(Error::SizeMismatch(format!(
                "extra tensor `{name}` has shape {:?} ({count} entries) but {} values",
                tensor.shape,
                tensor.data.len()
            )));
        }
        if let Some(k) = tensor.data.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidModel(format!(
                "extra tensor `{name}`: entry {k} is {} (not finite)",
                tensor.data[k]
            )));
        }
        owned.push((name.clone(), tensor.shape.clone(), le_bytes(&tensor.data)));
    }
    let mut metadata = file.metadata.clone();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("version".into(), VERSION.into());
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(serialize_f64(&owned, &metadata))
}

/// The bytes of a safetensors file holding F64 `tensors` (name, shape, little-endian data; sorted
/// by name, names unique) and `metadata`, with the same bytes for the same input.
///
/// Layout: the header's length n as a little-endian u64, the header (a JSON object: first
/// `__metadata__` with its keys in sorted order, then each tensor's `dtype`, `shape` and
/// `data_offsets` in name order), padded with spaces to a multiple of 8 bytes, then the tensors'
/// data back to back in the same order. (`safetensors::serialize` takes the metadata as a
/// `HashMap` and writes it in that map's random order, so equal models gave different bytes.)
fn serialize_f64(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let json = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut header = String::from("{\"__metadata__\":{");
    for (k, (key, value)) in metadata.iter().enumerate() {
        if k > 0 {
            header.push(',');
        }
        header.push_str(&format!("{}:{}", json(key), json(value)));
    }
    header.push('}');
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"F64\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json(name),
            dims.join(","),
            offset,
            offset + data.len()
        ));
        offset += data.len();
    }
    header.push('}');
    let mut header = header.into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for (_, _, data) in tensors {
        out.extend_from_slice(data);
    }
    out
}

/// The tensor names of a safetensors header that occur more than once (the `safetensors` crate
/// keeps the last silently, or fails with an unrelated offset error). Empty when the header
/// cannot be read; the crate's own parser then reports that.
fn duplicated_names(bytes: &[u8]) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> std::result::Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(k) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return Vec::new();
    };
    let Some(header) = usize::try_from(len)
        .ok()
        .and_then(|n| bytes.get(8..n.checked_add(8)?))
    else {
        return Vec::new();
    };
    let Ok(Keys(mut keys)) = serde_json::from_slice::<Keys>(header) else {
        return Vec::new();
    };
    keys.sort_unstable();
    let mut dups: Vec<String> = keys
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].clone())
        .collect();
    dups.dedup();
    dups
}

/// Decodes the bytes of an RBM `.safetensors` file with binary visible units; a
/// Gaussian-Bernoulli RBM file is refused with a message naming it.
pub fn decode_rbm(bytes: &[u8]) -> Result<RbmFile> {
    match visible_units(bytes).as_deref() {
        None | Some("binary") => decode_any_rbm(bytes),
        Some(GAUSSIAN_UNITS) => Err(Error::Format(format!(
            "this is a Gaussian-Bernoulli RBM (metadata {VISIBLE_UNITS_KEY} =              {GAUSSIAN_UNITS}: real-valued visible units); this operation needs an RBM with              binary visible units"
        ))),
        Some(other) => Err(Error::Format(format!(
            "the metadata says {VISIBLE_UNITS_KEY} = `{other}`; expected `binary` or              `{GAUSSIAN_UNITS}`"
        ))),
    }
}

/// Decodes the RBM layout whatever the visible units.
fn decode_any_rbm(bytes: &[u8]) -> Result<RbmFile> {
    if let Some(name) = duplicated_names(bytes).first() {
        return Err(Error::Format(format!(
            "the tensor name `{name}` occurs more than once in the header (each name must be \
             unique)"
        )));
    }
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Format(format!("not a valid safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Format(format!("not a valid safetensors file ({e})")))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if let Some(format) = metadata.get("format").filter(|f| *f != FORMAT) {
        return Err(Error::Format(format!(
            "the metadata says format `{format}`; expected `{FORMAT}` (an ebm RBM file)"
        )));
    }
    if let Some(version) = metadata.get("version").filter(|v| *v != VERSION) {
        return Err(Error::Format(format!(
            "RBM file version `{version}` is not supported (this build reads version {VERSION})"
        )));
    }
    let param = |name: &str| -> Result<TensorView<'_>> {
        st.tensor(name).map_err(|_| {
            let mut present: Vec<&str> = st.names();
            present.sort_unstable();
            Error::Format(format!(
                "missing tensor `{name}` (an RBM file needs `weights`, `visible_bias` and \
                 `hidden_bias`; this file has {present:?})"
            ))
        })
    };
    let weights = param("weights")?;
    let visible = param("visible_bias")?;
    let hidden = param("hidden_bias")?;
    let (nv, nh) = match weights.shape() {
        &[nv, nh] => (nv, nh),
        other => {
            return Err(Error::Format(format!(
                "tensor `weights` has shape {other:?}; expected 2 dimensions [n_visible, n_hidden]"
            )));
        }
    };
    for (name, view, want) in [("visible_bias", &visible, nv), ("hidden_bias", &hidden, nh)] {
        if view.shape() != [want] {
            return Err(Error::Format(format!(
                "tensor `{name}` has shape {:?}; expected [{want}] to match `weights` [{nv}, {nh}]",
                view.shape()
            )));
        }
    }
    let rbm = Rbm::new(
        nv,
        nh,
        float_values("weights", &weights)?,
        float_values("visible_bias", &visible)?,
        float_values("hidden_bias", &hidden)?,
    )?;
    let mut extra = BTreeMap::new();
    for (name, view) in st.iter() {
        if PARAMETER_NAMES.contains(&name) {
            continue;
        }
        let data = any_values(name, &view)?;
        if let Some(k) = data.iter().position(|x| !x.is_finite()) {
            return Err(Error::Format(format!(
                "tensor `{name}`: entry {k} is {} (not finite)",
                data[k]
            )));
        }
        extra.insert(
            name.to_string(),
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(RbmFile {
        rbm,
        metadata,
        extra,
    })
}

fn le_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The values of an F32 or F64 tensor as f64.
fn float_values(name: &str, view: &TensorView<'_>) -> Result<Vec<f64>> {
    match view.dtype() {
        Dtype::F64 => Ok(decode::<8>(view.data(), f64::from_le_bytes)),
        Dtype::F32 => Ok(decode::<4>(view.data(), |b| f32::from_le_bytes(b) as f64)),
        other => Err(Error::Format(format!(
            "tensor `{name}` has dtype {other:?}; expected F32 or F64"
        ))),
    }
}

/// The values of a float, integer or bool tensor as f64 (64-bit integers beyond 2^53 round).
fn any_values(name: &str, view: &TensorView<'_>) -> Result<Vec<f64>> {
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F64 | Dtype::F32 => return float_values(name, view),
        Dtype::BOOL | Dtype::U8 => d.iter().map(|&b| b as f64).collect(),
        Dtype::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
        Dtype::U16 => decode::<2>(d, |b| u16::from_le_bytes(b) as f64),
        Dtype::I16 => decode::<2>(d, |b| i16::from_le_bytes(b) as f64),
        Dtype::U32 => decode::<4>(d, |b| u32::from_le_bytes(b) as f64),
        Dtype::I32 => decode::<4>(d, |b| i32::from_le_bytes(b) as f64),
        Dtype::U64 => decode::<8>(d, |b| u64::from_le_bytes(b) as f64),
        Dtype::I64 => decode::<8>(d, |b| i64::from_le_bytes(b) as f64),
        other => {
            return Err(Error::Format(format!(
                "tensor `{name}` has dtype {other:?}; expected a float (F32, F64), integer or \
                 bool tensor"
            )));
        }
    })
}

fn decode<const N: usize>(bytes: &[u8], convert: impl Fn([u8; N]) -> f64) -> Vec<f64> {
    bytes
        .chunks_exact(N)
        .map(|c| convert(c.try_into().expect("chunk of N bytes")))
        .collect()
}

/// Bytes of a safetensors file from `(name, dtype, shape, little-endian data)` entries, for
/// tests that need files ebm would not write (other dtypes, missing tensors).
#[doc(hidden)]
pub fn encode_raw(
    tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (*name, v))
                .map_err(|e| Error::Format(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, metadata).map_err(|e| Error::Format(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_rbm() -> Rbm {
        let w: Vec<f64> = (0..12).map(|k| (k as f64 - 5.5) / 3.0).collect();
        Rbm::new(
            4,
            3,
            w,
            vec![0.1, -0.2, 1e-300, 7.5],
            vec![-1.0, 0.0, 1.0 / 3.0],
        )
        .unwrap()
    }

    #[test]
    fn round_trip_keeps_parameters_metadata_and_extras() {
        let mut file = RbmFile::new(small_rbm());
        file.metadata
            .insert("settings".into(), r#"{"epochs": 3}"#.into());
        file.extra.insert(
            "chains".into(),
            Tensor {
                shape: vec![2, 4],
                data: vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0],
            },
        );
        file.extra.insert(
            "step".into(),
            Tensor {
                shape: vec![],
                data: vec![17.0],
            },
        );
        let back = decode_rbm(&encode_rbm(&file).unwrap()).unwrap();
        assert_eq!(back.rbm, file.rbm);
        assert_eq!(back.extra, file.extra);
        assert_eq!(back.metadata["format"], "ebm-rbm");
        assert_eq!(back.metadata["version"], "1");
        assert_eq!(back.metadata["settings"], r#"{"epochs": 3}"#);
        assert_eq!(back.metadata.len(), 3);
    }

    #[test]
    fn f32_parameters_are_read() {
        let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let bytes = encode_raw(
            &[
                ("weights", Dtype::F32, vec![2, 1], f32_bytes(&[0.5, -1.25])),
                ("visible_bias", Dtype::F32, vec![2], f32_bytes(&[0.0, 2.0])),
                ("hidden_bias", Dtype::F32, vec![1], f32_bytes(&[-0.75])),
                ("count", Dtype::I64, vec![1], 5i64.to_le_bytes().to_vec()),
            ],
            None,
        )
        .unwrap();
        let file = decode_rbm(&bytes).unwrap();
        assert_eq!(file.rbm.weights(), &[0.5, -1.25]);
        assert_eq!(file.rbm.visible_bias(), &[0.0, 2.0]);
        assert_eq!(file.rbm.hidden_bias(), &[-0.75]);
        assert_eq!(file.extra["count"].data, vec![5.0]);
        assert!(file.metadata.is_empty());
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let f64_bytes = |v: &[f64]| le_bytes(v);
        let msg = |bytes: &[u8]| decode_rbm(bytes).unwrap_err().to_string();
        // Missing tensor: named.
        let missing = encode_raw(
            &[
                ("weights", Dtype::F64, vec![1, 1], f64_bytes(&[1.0])),
                ("visible_bias", Dtype::F64, vec![1], f64_bytes(&[1.0])),
            ],
            None,
        )
        .unwrap();
        assert!(msg(&missing).contains("missing tensor `hidden_bias`"));
        // Wrong shape.
        let shape = encode_raw(
            &[
                ("weights", Dtype::F64, vec![2, 1], f64_bytes(&[1.0, 2.0])),
                ("visible_bias", Dtype::F64, vec![1], f64_bytes(&[1.0])),
                ("hidden_bias", Dtype::F64, vec![1], f64_bytes(&[1.0])),
            ],
            None,
        )
        .unwrap();
        assert!(msg(&shape).contains("`visible_bias` has shape [1]; expected [2]"));
        // Wrong dtype.
        let dtype = encode_raw(
            &[
                (
                    "weights",
                    Dtype::I32,
                    vec![1, 1],
                    1i32.to_le_bytes().to_vec(),
                ),
                ("visible_bias", Dtype::F64, vec![1], f64_bytes(&[1.0])),
                ("hidden_bias", Dtype::F64, vec![1], f64_bytes(&[1.0])),
            ],
            None,
        )
        .unwrap();
        assert!(msg(&dtype).contains("dtype I32; expected F32 or F64"));
        // NaN parameter.
        let nan = encode_raw(
            &[
                ("weights", Dtype::F64, vec![1, 1], f64_bytes(&[f64::NAN])),
                ("visible_bias", Dtype::F64, vec![1], f64_bytes(&[1.0])),
                ("hidden_bias", Dtype::F64, vec![1], f64_bytes(&[1.0])),
            ],
            None,
        )
        .unwrap();
        assert!(msg(&nan).contains("weights[0] = NaN"));
        // Another format's file.
        let mut other = HashMap::new();
        other.insert("format".to_string(), "pt".to_string());
        let foreign = encode_raw(
            &[("weights", Dtype::F64, vec![1, 1], f64_bytes(&[1.0]))],
            Some(other),
        )
        .unwrap();
        assert!(msg(&foreign).contains("format `pt`"));
        // Not safetensors at all.
        assert!(msg(b"hello, this is text").contains("not a valid safetensors file"));
        assert!(msg(b"").contains("not a valid safetensors file"));
    }

    #[test]
    fn the_same_file_always_encodes_to_the_same_bytes() {
        let mut file = RbmFile::new(small_rbm());
        for (k, v) in [
            ("training", "{}"),
            ("epochs_done", "3"),
            ("a", "1"),
            ("z", "2"),
        ] {
            file.metadata.insert(k.into(), v.into());
        }
        file.extra.insert(
            "velocity".into(),
            Tensor {
                shape: vec![2],
                data: vec![0.5, -0.5],
            },
        );
        // Each encoding used to build a fresh HashMap (own random order) for the metadata.
        let first = encode_rbm(&file).unwrap();
        for _ in 0..20 {
            assert_eq!(encode_rbm(&file).unwrap(), first);
        }
        let back = decode_rbm(&first).unwrap();
        assert_eq!((back.rbm, back.extra), (file.rbm, file.extra));
        // The header starts with the sorted metadata, and its length is a multiple of 8.
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
        assert!(
            header.starts_with(
                r#"{"__metadata__":{"a":"1","epochs_done":"3","format":"ebm-rbm","training":"{}","version":"1","z":"2"}"#
            ),
            "{header}"
        );
    }

    #[test]
    fn gaussian_files_round_trip_and_are_refused_where_binary_is_needed() {
        let model = GaussianRbm::new(
            2,
            1,
            vec![0.5, -1.5],
            vec![0.25, 0.0],
            vec![-0.5],
            vec![0.75, 2.0],
        )
        .unwrap();
        let mut file = GaussianRbmFile::new(model);
        file.metadata.insert("objective".into(), "sm".into());
        file.extra.insert(
            "data_mean".into(),
            Tensor {
                shape: vec![2],
                data: vec![0.1, 0.2],
            },
        );
        file.extra.insert(
            "data_std".into(),
            Tensor {
                shape: vec![2],
                data: vec![1.5, 0.5],
            },
        );
        let bytes = encode_gaussian_rbm(&file).unwrap();
        let back = decode_gaussian_rbm(&bytes).unwrap();
        assert_eq!(back.model, file.model);
        assert_eq!(back.extra, file.extra);
        assert_eq!(back.metadata["objective"], "sm");
        assert_eq!(
            back.standardisation(),
            Some((&[0.1, 0.2][..], &[1.5, 0.5][..]))
        );
        let msg = decode_rbm(&bytes).unwrap_err().to_string();
        assert!(msg.contains("Gaussian-Bernoulli RBM"), "{msg}");
        assert!(msg.contains("binary visible units"), "{msg}");
        // A binary file is not a Gaussian one, and a Gaussian one needs its sigma.
        let binary = encode_rbm(&RbmFile::new(small_rbm())).unwrap();
        let msg = decode_gaussian_rbm(&binary).unwrap_err().to_string();
        assert!(msg.contains("not a Gaussian-Bernoulli RBM file"), "{msg}");
        let mut no_sigma = RbmFile::new(small_rbm());
        no_sigma
            .metadata
            .insert(VISIBLE_UNITS_KEY.into(), GAUSSIAN_UNITS.into());
        let msg = decode_gaussian_rbm(&encode_rbm(&no_sigma).unwrap())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing tensor `visible_sigma`"), "{msg}");
        no_sigma.extra.insert(
            SIGMA_NAME.into(),
            Tensor {
                shape: vec![4],
                data: vec![1.0, 0.0, 1.0, 1.0],
            },
        );
        let msg = decode_gaussian_rbm(&encode_rbm(&no_sigma).unwrap())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("visible_sigma[1] = 0"), "{msg}");
    }

    #[test]
    fn a_duplicated_tensor_name_is_named() {
        let header = r#"{"weights":{"dtype":"F64","shape":[1,1],"data_offsets":[0,8]},"visible_bias":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},"hidden_bias":{"dtype":"F64","shape":[1],"data_offsets":[16,24]},"visible_bias":{"dtype":"F64","shape":[1],"data_offsets":[24,32]}}"#;
        let mut header = header.as_bytes().to_vec();
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.extend(le_bytes(&[1.0, 2.0, 3.0, 4.0]));
        let msg = decode_rbm(&bytes).unwrap_err().to_string();
        assert!(
            msg.contains("`visible_bias` occurs more than once"),
            "{msg}"
        );
    }

    #[test]
    fn writing_refuses_reserved_names_and_bad_extras() {
        let mut file = RbmFile::new(small_rbm());
        file.extra.insert(
            "weights".into(),
            Tensor {
                shape: vec![1],
                data: vec![0.0],
            },
        );
        assert!(encode_rbm(&file).is_err());
        file.extra.clear();
        file.extra.insert(
            "bad".into(),
            Tensor {
                shape: vec![3],
                data: vec![0.0],
            },
        );
        assert!(encode_rbm(&file).is_err());
        file.extra.insert(
            "bad".into(),
            Tensor {
                shape: vec![1],
                data: vec![f64::INFINITY],
            },
        );
        assert!(encode_rbm(&file).is_err());
    }
}
