//! File formats: everything that touches the file system lives here.

pub mod atomic;

pub use atomic::{write_atomic, write_bytes_atomic};
pub mod datasets;
pub mod images;
pub mod safetensors;
pub mod uai;
