//! File formats: everything that touches the file system lives here.

pub mod atomic;
pub mod classifier;
pub mod composite;

pub use atomic::{write_atomic, write_bytes_atomic};
pub use model::{LoadedModel, ModelKind, open_model, sniff_model};
pub mod datasets;
pub mod images;
pub mod labels;
pub mod model;
pub mod safetensors;
pub mod sha256;
pub mod uai;
