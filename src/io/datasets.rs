//! Binary datasets from and to files: `.txt`, `.csv`, `.npy` and IDX, each optionally gzipped.
//!
//! The format is chosen by the file name (after removing a final `.gz`, which means the bytes
//! are gzip-compressed):
//!
//! | name | format | values | default threshold |
//! |---|---|---|---|
//! | `*.txt` | one example per line, the characters `0` and `1`; spaces/tabs ignored, blank lines skipped | 0/1 only (anything else is an error) | none (not used) |
//! | `*.csv` | one example per line, numbers separated by commas; blank lines skipped | any finite number | 0.5 |
//! | `*.npy` | NumPy array, >= 2 dimensions (the first indexes examples, the rest are flattened row-major); bool, u8/u16/u32/u64, i8/i16/i32/i64, f32, f64; either byte order; C order (or Fortran order in 2-D) | any finite number | 0.5 (bool: false/true) |
//! | `*-ubyte`, `*.idx`, `*.idx3`, ... | IDX (the MNIST distribution format), >= 2 dimensions, flattened the same way; big-endian | any finite number | 128 |
//!
//! Binarization: a value `>= threshold` becomes 1, a smaller one 0, so 0/1 data passes
//! unchanged through the default 0.5, and MNIST grey levels (0-255) use 128. Every example must
//! have the same length, and a dataset must hold at least one example of at least one bit.
//!
//! Real-valued data (for models with real visible units) is read by [`read_real_dataset`]: the
//! same files, values kept as they are (no threshold).

use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::dataset::{Dataset, RealDataset};
use crate::error::{Error, Result};
use crate::io::atomic::write_atomic;

/// Default threshold for `.csv` and `.npy` values: 0.5, so that 0/1 data is kept as it is.
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// Default threshold for IDX files, whose data are usually 0-255 grey levels (MNIST).
pub const DEFAULT_IDX_THRESHOLD: f64 = 128.0;

/// A dataset file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    /// Lines of `0`/`1` characters.
    Txt,
    /// Comma-separated numbers.
    Csv,
    /// NumPy `.npy`.
    Npy,
    /// IDX (MNIST).
    Idx,
}

impl DatasetFormat {
    /// The threshold used when the caller gives none (`None` for `.txt`, which holds bits).
    pub fn default_threshold(self) -> Option<f64> {
        match self {
            DatasetFormat::Txt => None,
            DatasetFormat::Csv | DatasetFormat::Npy => Some(DEFAULT_THRESHOLD),
            DatasetFormat::Idx => Some(DEFAULT_IDX_THRESHOLD),
        }
    }
}

/// The dataset format of a path by its name, and whether it is gzip-compressed (`.gz`).
///
/// Returns `None` when the name is not that of a dataset file.
pub fn dataset_format(path: &Path) -> Option<(DatasetFormat, bool)> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let (stem, gz) = match name.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (name.as_str(), false),
    };
    let ext = stem.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let format = if stem.ends_with("-ubyte") || ext.starts_with("idx") {
        DatasetFormat::Idx
    } else {
        match ext {
            "txt" => DatasetFormat::Txt,
            "csv" => DatasetFormat::Csv,
            "npy" => DatasetFormat::Npy,
            _ => return None,
        }
    };
    Some((format, gz))
}

fn format_or_error(path: &Path) -> Result<(DatasetFormat, bool)> {
    dataset_format(path).ok_or_else(|| {
        Error::Format(format!(
            "{}: unknown dataset format; expected .txt, .csv, .npy or IDX (*-ubyte, *.idx), \
             optionally followed by .gz",
            path.display()
        ))
    })
}

/// The default cap on the decompressed size of a gzip-compressed dataset: 1 GiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Reads a dataset, choosing the format by the file name (see the module docs); a `.gz` file
/// may expand to at most [`DEFAULT_MAX_DECOMPRESSED_BYTES`].
///
/// `threshold` binarizes `.csv`, `.npy` and IDX values (`>= threshold` is 1); `None` uses the
/// format's default (0.5, or 128 for IDX). `.txt` files hold bits and ignore it.
pub fn read_dataset(path: &Path, threshold: Option<f64>) -> Result<Dataset> {
    read_dataset_capped(path, threshold, DEFAULT_MAX_DECOMPRESSED_BYTES)
}

/// [`read_dataset`] with a cap on the decompressed size of a `.gz` file: one that would
/// expand to more than `max_decompressed_bytes` is refused with [`Error::TooLarge`] after
/// decompressing at most that many bytes (a small file can expand a thousandfold).
pub fn read_dataset_capped(
    path: &Path,
    threshold: Option<f64>,
    max_decompressed_bytes: u64,
) -> Result<Dataset> {
    let (format, gz) = format_or_error(path)?;
    let raw = std::fs::read(path)?;
    let bytes = if gz {
        gunzip(&raw, max_decompressed_bytes)?
    } else {
        raw
    };
    parse_dataset(&bytes, format, threshold)
}

/// Parses the (decompressed) bytes of a dataset file of the given format.
pub fn parse_dataset(
    bytes: &[u8],
    format: DatasetFormat,
    threshold: Option<f64>,
) -> Result<Dataset> {
    let threshold = match threshold {
        Some(t) if format == DatasetFormat::Txt => {
            return Err(Error::param(
                "--threshold",
                format!(
                    "{t} does not apply to a .txt dataset, which holds the bits 0/1 themselves \
                     (leave --threshold out)"
                ),
            ));
        }
        Some(t) if !t.is_finite() => {
            return Err(Error::param(
                "threshold",
                format!("must be a finite number, got {t}"),
            ));
        }
        Some(t) => t,
        None => format.default_threshold().unwrap_or(DEFAULT_THRESHOLD),
    };
    let data = match format {
        DatasetFormat::Txt => parse_txt(as_text(bytes)?)?,
        DatasetFormat::Csv => parse_csv(as_text(bytes)?, threshold)?,
        DatasetFormat::Npy => parse_npy(bytes, Reading::Threshold(threshold))?.bits(),
        DatasetFormat::Idx => parse_idx(bytes, Reading::Threshold(threshold))?.bits(),
    };
    if data.rows() == 0 || data.cols() == 0 {
        return Err(Error::Format(
            "the dataset is empty (no examples found)".into(),
        ));
    }
    Ok(data)
}

/// Reads a real-valued dataset (for models with real visible units): `.csv`, `.npy` (any
/// numeric dtype, e.g. f32 or f64) and IDX values are kept as they are, without a threshold;
/// a `.txt` file's bits become 0.0 and 1.0. NaN and infinite values are refused. A `.gz` file
/// may expand to at most `max_decompressed_bytes`.
pub fn read_real_dataset(path: &Path, max_decompressed_bytes: u64) -> Result<RealDataset> {
    let (format, gz) = format_or_error(path)?;
    let raw = std::fs::read(path)?;
    let bytes = if gz {
        gunzip(&raw, max_decompressed_bytes)?
    } else {
        raw
    };
    parse_real_dataset(&bytes, format)
}

/// Parses the (decompressed) bytes of a real-valued dataset (see [`read_real_dataset`]).
pub fn parse_real_dataset(bytes: &[u8], format: DatasetFormat) -> Result<RealDataset> {
    let data = match format {
        DatasetFormat::Txt => {
            let bits = parse_txt(as_text(bytes)?)?;
            RealDataset::new(
                bits.rows(),
                bits.cols(),
                bits.data().iter().map(|&b| b as f64).collect(),
            )?
        }
        DatasetFormat::Csv => parse_csv_real(as_text(bytes)?)?,
        DatasetFormat::Npy => parse_npy(bytes, Reading::Real)?.real(),
        DatasetFormat::Idx => parse_idx(bytes, Reading::Real)?.real(),
    };
    if data.rows() == 0 || data.cols() == 0 {
        return Err(Error::Format(
            "the dataset is empty (no examples found)".into(),
        ));
    }
    Ok(data)
}

/// How numeric values become a dataset: binarised at a threshold, or kept as real numbers.
#[derive(Debug, Clone, Copy)]
enum Reading {
    Threshold(f64),
    Real,
}

/// The result of a [`Reading`].
enum Values {
    Bits(Dataset),
    Real(RealDataset),
}

impl Values {
    fn bits(self) -> Dataset {
        match self {
            Values::Bits(d) => d,
            Values::Real(_) => unreachable!("read with a threshold"),
        }
    }
    fn real(self) -> RealDataset {
        match self {
            Values::Real(d) => d,
            Values::Bits(_) => unreachable!("read as real values"),
        }
    }
}

/// Binarises (or keeps, for [`Reading::Real`]) `values` as a rows x cols dataset.
fn collect_values(
    values: impl Iterator<Item = f64>,
    rows: usize,
    cols: usize,
    reading: Reading,
) -> Result<Values> {
    match reading {
        Reading::Threshold(t) => Ok(Values::Bits(binarize(values, rows, cols, t)?)),
        Reading::Real => {
            let data: Vec<f64> = values.collect();
            if let Some(k) = data.iter().position(|x| !x.is_finite()) {
                return Err(Error::Format(format!(
                    "example {}, value {}: {} is not a finite number",
                    k / cols + 1,
                    k % cols + 1,
                    data[k]
                )));
            }
            Ok(Values::Real(RealDataset::new(rows, cols, data)?))
        }
    }
}

/// One cell of a `.csv` dataset as a finite number; `l` and `c` are the 0-based line and column,
/// reported 1-based in the error.
fn parse_csv_cell(cell: &str, l: usize, c: usize) -> Result<f64> {
    let cell = cell.trim();
    let value: f64 = cell.parse().map_err(|_| {
        Error::parse(
            l + 1,
            format!(
                "column {}: `{cell}` is not a number (a .csv dataset holds numbers only, without a header row)",
                c + 1
            ),
        )
    })?;
    if !value.is_finite() {
        return Err(Error::parse(
            l + 1,
            format!("column {}: `{cell}` is not a finite number", c + 1),
        ));
    }
    Ok(value)
}

/// The rows of a `.csv` file as real numbers (every row the same length).
fn parse_csv_real(text: &str) -> Result<RealDataset> {
    let mut data = Vec::new();
    let mut shape: Option<(usize, usize)> = None;
    let mut rows = 0;
    for (l, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let start = data.len();
        for (c, cell) in line.split(',').enumerate() {
            let value = parse_csv_cell(cell, l, c)?;
            data.push(value);
        }
        let len = data.len() - start;
        match shape {
            None => shape = Some((len, l + 1)),
            Some((cols, first)) if cols != len => {
                return Err(Error::parse(
                    l + 1,
                    format!(
                        "this example has {len} values, but the one on line {first} has {cols} (every example must have the same length)"
                    ),
                ));
            }
            Some(_) => {}
        }
        rows += 1;
    }
    RealDataset::new(rows, shape.map_or(0, |(c, _)| c), data)
}

/// The decompressed bytes of a gzip stream of at most `cap` bytes.
fn gunzip(raw: &[u8], cap: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    MultiGzDecoder::new(raw)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| {
            Error::Format(format!(
                "the name ends in .gz but the content is not valid gzip ({e})"
            ))
        })?;
    if out.len() as u64 > cap {
        return Err(Error::TooLarge {
            method: "gzip decompression".into(),
            detail: format!(
                "the {} compressed bytes expand to more than the limit of {cap} bytes",
                raw.len()
            ),
        });
    }
    Ok(out)
}

fn as_text(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::parse(line, "not text (invalid UTF-8); is this a binary file?")
    })
}

/// Rows collected one at a time, checking that they all have the same length.
struct RowBuilder {
    cols: Option<(usize, usize)>,
    rows: usize,
    data: Vec<u8>,
}

impl RowBuilder {
    fn new() -> Self {
        RowBuilder {
            cols: None,
            rows: 0,
            data: Vec::new(),
        }
    }

    /// Ends the row that started at `start` (an index into `data`), read from `line`.
    fn end_row(&mut self, start: usize, line: usize) -> Result<()> {
        let len = self.data.len() - start;
        match self.cols {
            None => self.cols = Some((len, line)),
            Some((cols, first)) if cols != len => {
                return Err(Error::parse(
                    line,
                    format!(
                        "this example has {len} values, but the one on line {first} has {cols} (every example must have the same length)"
                    ),
                ));
            }
            Some(_) => {}
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(self) -> Result<Dataset> {
        let cols = self.cols.map_or(0, |(c, _)| c);
        Dataset::new(self.rows, cols, self.data)
    }
}

fn parse_txt(text: &str) -> Result<Dataset> {
    let mut rows = RowBuilder::new();
    for (l, line) in text.lines().enumerate() {
        let start = rows.data.len();
        for (c, ch) in line.chars().enumerate() {
            match ch {
                '0' => rows.data.push(0),
                '1' => rows.data.push(1),
                ' ' | '\t' | '\r' => {}
                other => {
                    return Err(Error::parse(
                        l + 1,
                        format!(
                            "column {}: `{other}` is not 0 or 1 (a .txt dataset holds one example per line written with 0 and 1)",
                            c + 1
                        ),
                    ));
                }
            }
        }
        if rows.data.len() > start {
            rows.end_row(start, l + 1)?;
        }
    }
    rows.finish()
}

fn parse_csv(text: &str, threshold: f64) -> Result<Dataset> {
    let mut rows = RowBuilder::new();
    for (l, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let start = rows.data.len();
        for (c, cell) in line.split(',').enumerate() {
            let value = parse_csv_cell(cell, l, c)?;
            rows.data.push((value >= threshold) as u8);
        }
        rows.end_row(start, l + 1)?;
    }
    rows.finish()
}

/// Binarizes `values` (an iterator of f64) into a rows x cols dataset, refusing NaN/inf.
fn binarize(
    values: impl Iterator<Item = f64>,
    rows: usize,
    cols: usize,
    threshold: f64,
) -> Result<Dataset> {
    let mut data = Vec::with_capacity(rows * cols);
    for (k, x) in values.enumerate() {
        if !x.is_finite() {
            return Err(Error::Format(format!(
                "example {}, value {}: {x} is not a finite number",
                k / cols + 1,
                k % cols + 1
            )));
        }
        data.push((x >= threshold) as u8);
    }
    Dataset::new(rows, cols, data)
}

fn fixed<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes
        .chunks_exact(N)
        .map(|c| c.try_into().expect("chunk of N bytes"))
}

/// Scalar types of `.npy` and IDX files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl Scalar {
    fn size(self) -> usize {
        match self {
            Scalar::Bool | Scalar::U8 | Scalar::I8 => 1,
            Scalar::U16 | Scalar::I16 => 2,
            Scalar::U32 | Scalar::I32 | Scalar::F32 => 4,
            Scalar::U64 | Scalar::I64 | Scalar::F64 => 8,
        }
    }

    /// The values of `bytes` as f64 (`big`: big-endian).
    fn values(self, bytes: &[u8], big: bool) -> Box<dyn Iterator<Item = f64> + '_> {
        macro_rules! conv {
            ($t:ty, $n:literal) => {
                Box::new(fixed::<$n>(bytes).map(move |b| {
                    (if big {
                        <$t>::from_be_bytes(b)
                    } else {
                        <$t>::from_le_bytes(b)
                    }) as f64
                }))
            };
        }
        match self {
            Scalar::Bool => Box::new(bytes.iter().map(|&b| (b != 0) as u8 as f64)),
            Scalar::U8 => Box::new(bytes.iter().map(|&b| b as f64)),
            Scalar::I8 => Box::new(bytes.iter().map(|&b| b as i8 as f64)),
            Scalar::U16 => conv!(u16, 2),
            Scalar::I16 => conv!(i16, 2),
            Scalar::U32 => conv!(u32, 4),
            Scalar::I32 => conv!(i32, 4),
            Scalar::U64 => conv!(u64, 8),
            Scalar::I64 => conv!(i64, 8),
            Scalar::F32 => conv!(f32, 4),
            Scalar::F64 => conv!(f64, 8),
        }
    }
}

/// Examples and bits per example for an array `shape`: the first axis indexes examples.
fn rows_cols(shape: &[usize], what: &str) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::Format(format!(
            "{what} has shape {shape:?}; expected at least 2 dimensions (examples x bits)"
        )));
    }
    let cols = shape[1..]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&c| c.checked_mul(shape[0]).is_some())
        .ok_or_else(|| Error::Format(format!("{what} has an impossible shape {shape:?}")))?;
    Ok((shape[0], cols))
}

/// Bytes needed for `rows x cols` values of `scalar`, or an error for an impossible shape.
fn byte_count(rows: usize, cols: usize, scalar: Scalar, shape: &[usize]) -> Result<usize> {
    rows.checked_mul(cols)
        .and_then(|n| n.checked_mul(scalar.size()))
        .ok_or_else(|| Error::Format(format!("the array shape {shape:?} is impossibly large")))
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

fn parse_npy(bytes: &[u8], reading: Reading) -> Result<Values> {
    if !bytes.starts_with(NPY_MAGIC) || bytes.len() < 10 {
        return Err(Error::Format(
            "not a .npy file (it does not start with \\x93NUMPY)".into(),
        ));
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(Error::Format(".npy header is truncated".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(Error::Format(format!(
                ".npy format version {v} is not supported (expected 1, 2 or 3)"
            )));
        }
    };
    let body_start = header_start + header_len;
    let header = bytes
        .get(header_start..body_start)
        .ok_or_else(|| Error::Format(".npy header is truncated".into()))?;
    let header =
        std::str::from_utf8(header).map_err(|_| Error::Format(".npy header is not text".into()))?;
    let fields = npy_header_fields(header)?;
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| Error::Format(format!(".npy header lacks `{key}`: {}", header.trim())))
    };
    let descr = field("descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = field("fortran_order")?;
    let shape_text = field("shape")?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>().map_err(|_| {
                Error::Format(format!(".npy shape {shape_text} is not a tuple of sizes"))
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    // `split_at_checked` refuses an index inside a multi-byte character (a crafted header).
    let (order, kind) = descr.split_at_checked(1).unwrap_or(("", descr));
    let big = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => {
            return Err(Error::Format(format!(
                ".npy dtype `{descr}` is not understood"
            )));
        }
    };
    let scalar = match kind {
        "b1" => Scalar::Bool,
        "u1" => Scalar::U8,
        "i1" => Scalar::I8,
        "u2" => Scalar::U16,
        "i2" => Scalar::I16,
        "u4" => Scalar::U32,
        "i4" => Scalar::I32,
        "u8" => Scalar::U64,
        "i8" => Scalar::I64,
        "f4" => Scalar::F32,
        "f8" => Scalar::F64,
        _ => {
            return Err(Error::Format(format!(
                ".npy dtype `{descr}` is not supported (expected bool, an integer, f32 or f64)"
            )));
        }
    };
    let (rows, cols) = rows_cols(&shape, "the .npy array")?;
    let need = byte_count(rows, cols, scalar, &shape)?;
    let body = &bytes[body_start..];
    if body.len() < need {
        return Err(Error::Format(format!(
            ".npy data is truncated: shape {shape:?} of `{descr}` needs {need} bytes, the file has {}",
            body.len()
        )));
    }
    if body.len() > need {
        return Err(Error::Format(format!(
            ".npy file has {} trailing bytes after the array (shape {shape:?} of `{descr}` is \
             {need} bytes): not a single array as numpy.save writes it",
            body.len() - need
        )));
    }
    // A bool array is already binary: false is 0 and true is 1 whatever the threshold.
    let reading = match reading {
        Reading::Threshold(_) if scalar == Scalar::Bool => Reading::Threshold(0.5),
        other => other,
    };
    match fortran {
        "False" => collect_values(scalar.values(body, big), rows, cols, reading),
        "True" => {
            // Column-major: element (r, c) sits at c * rows + r (flattening trailing axes of
            // a Fortran array in C order means reversing them; only 2-D is handled here).
            if shape.len() != 2 {
                return Err(Error::Format(
                    "Fortran-order .npy arrays of more than 2 dimensions are not supported \
                     (save with numpy.ascontiguousarray)"
                        .into(),
                ));
            }
            let column_major: Vec<f64> = scalar.values(body, big).collect();
            let values = (0..rows * cols).map(|k| column_major[(k % cols) * rows + k / cols]);
            collect_values(values, rows, cols, reading)
        }
        other => Err(Error::Format(format!(
            ".npy header has fortran_order {other}; expected True or False"
        ))),
    }
}

/// The keys of a `.npy` header, each with the raw text of its value, in file order.
///
/// The header is a Python dict literal, `{'descr': '<f8', 'fortran_order': False, 'shape':
/// (2, 3), }`, padded with spaces and ended by a newline. Exactly the keys `descr`,
/// `fortran_order` and `shape` are allowed, each once; anything else (another key, text after
/// the closing brace) is refused, since a reader that skipped it could misread the array.
fn npy_header_fields(header: &str) -> Result<Vec<(&str, &str)>> {
    const KEYS: [&str; 3] = ["descr", "fortran_order", "shape"];
    let bad = |what: String| Error::Format(format!(".npy header {what}: {}", header.trim()));
    let mut rest = header
        .trim_start()
        .strip_prefix('{')
        .ok_or_else(|| bad("does not start with `{`".into()))?;
    let mut fields: Vec<(&str, &str)> = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            if !after.trim().is_empty() {
                return Err(bad(format!("has text after its closing brace: {after:?}")));
            }
            return Ok(fields);
        }
        let quote = rest
            .chars()
            .next()
            .filter(|&c| c == '\'' || c == '"')
            .ok_or_else(|| bad("has a key that is not a quoted string".into()))?;
        let close = rest[1..]
            .find(quote)
            .ok_or_else(|| bad("has an unterminated key".into()))?;
        let key = &rest[1..1 + close];
        if !KEYS.contains(&key) {
            return Err(bad(format!(
                "has the unknown key `{key}` (expected only descr, fortran_order and shape)"
            )));
        }
        if fields.iter().any(|(k, _)| *k == key) {
            return Err(bad(format!("repeats the key `{key}`")));
        }
        rest = rest[close + 2..]
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(|| bad(format!("lacks `:` after `{key}`")))?
            .trim_start();
        let end = match rest.chars().next() {
            Some('(') => rest.find(')').map(|k| k + 1),
            Some(q @ ('\'' | '"')) => rest[1..].find(q).map(|k| k + 2),
            _ => rest.find([',', '}']),
        }
        .ok_or_else(|| bad(format!("has an unterminated value for `{key}`")))?;
        fields.push((key, rest[..end].trim()));
        rest = rest[end..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if !rest.trim_start().starts_with(['\'', '"', '}']) {
            return Err(bad(format!("has unexpected text after `{key}`")));
        }
    }
}

fn parse_idx(bytes: &[u8], reading: Reading) -> Result<Values> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::Format(
            "not an IDX file (the magic number must start with two zero bytes)".into(),
        ));
    }
    let scalar = match bytes[2] {
        0x08 => Scalar::U8,
        0x09 => Scalar::I8,
        0x0B => Scalar::I16,
        0x0C => Scalar::I32,
        0x0D => Scalar::F32,
        0x0E => Scalar::F64,
        t => {
            return Err(Error::Format(format!(
                "not an IDX file (unknown type code 0x{t:02X} in the magic number)"
            )));
        }
    };
    let ndims = bytes[3] as usize;
    let dims_end = 4 + 4 * ndims;
    let dims = bytes
        .get(4..dims_end)
        .ok_or_else(|| Error::Format("IDX header is truncated".into()))?;
    let shape: Vec<usize> = fixed::<4>(dims)
        .map(|b| u32::from_be_bytes(b) as usize)
        .collect();
    let (rows, cols) = rows_cols(&shape, "the IDX array (a label file has 1 dimension)")?;
    let need = byte_count(rows, cols, scalar, &shape)?;
    let body = &bytes[dims_end..];
    if body.len() != need {
        return Err(Error::Format(format!(
            "IDX data has {} bytes, but shape {shape:?} of {scalar:?} needs {need}{}",
            body.len(),
            if body.len() < need {
                " (truncated file?)"
            } else {
                ""
            }
        )));
    }
    collect_values(scalar.values(body, true), rows, cols, reading)
}

/// Writes a dataset, choosing the format by the file name: `.txt`, `.csv` (0/1 values), `.npy`
/// (`|u1`, shape [rows, cols]) or IDX (u8 0/255, 2 dimensions), each gzip-compressed when the name
/// ends in `.gz`. Atomic.
pub fn write_dataset(path: &Path, data: &Dataset) -> Result<()> {
    format_or_error(path)?;
    write_atomic(path, |w| write_dataset_to(w, path, data))
}

/// Writes `data` to `w` in the format that the name of `path` asks for (as [`write_dataset`],
/// gzip-compressed when the name ends in `.gz`); `path` only chooses the format.
pub fn write_dataset_to(w: &mut dyn Write, path: &Path, data: &Dataset) -> Result<()> {
    let (format, gz) = format_or_error(path)?;
    let bytes = encode_dataset(data, format);
    if gz {
        let mut enc = GzEncoder::new(w, Compression::default());
        enc.write_all(&bytes)?;
        enc.finish()?;
    } else {
        w.write_all(&bytes)?;
    }
    Ok(())
}

/// Writes a dataset as `.txt` (one line of `0`/`1` characters per example), atomically; the
/// name must end in `.txt` or `.txt.gz` (gzip-compressed).
pub fn write_dataset_txt(path: &Path, data: &Dataset) -> Result<()> {
    match dataset_format(path) {
        Some((DatasetFormat::Txt, _)) => write_dataset(path, data),
        _ => Err(Error::param(
            "output dataset",
            format!("{}: the name must end in .txt or .txt.gz", path.display()),
        )),
    }
}

/// The uncompressed bytes of `data` in `format`.
pub fn encode_dataset(data: &Dataset, format: DatasetFormat) -> Vec<u8> {
    let (rows, cols) = (data.rows(), data.cols());
    match format {
        DatasetFormat::Txt | DatasetFormat::Csv => {
            let sep: &[u8] = if format == DatasetFormat::Csv {
                b","
            } else {
                b""
            };
            let mut out = Vec::with_capacity(rows * (cols * (1 + sep.len()) + 1));
            for row in data.iter_rows() {
                for (k, &bit) in row.iter().enumerate() {
                    if k > 0 {
                        out.extend_from_slice(sep);
                    }
                    out.push(b'0' + bit);
                }
                out.push(b'\n');
            }
            out
        }
        DatasetFormat::Npy => {
            let mut header =
                format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
            // Pad so that magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
            while (10 + header.len() + 1) % 64 != 0 {
                header.push(' ');
            }
            header.push('\n');
            let mut out = Vec::with_capacity(10 + header.len() + rows * cols);
            out.extend_from_slice(NPY_MAGIC);
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data.data());
            out
        }
        DatasetFormat::Idx => {
            let mut out = vec![0, 0, 0x08, 2];
            out.extend_from_slice(&(rows as u32).to_be_bytes());
            out.extend_from_slice(&(cols as u32).to_be_bytes());
            // 1 is written as 255 (MNIST's white), so the default IDX threshold 128 reads it back.
            out.extend(data.data().iter().map(|&b| b * 255));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(bytes: &[u8], format: DatasetFormat) -> String {
        parse_dataset(bytes, format, None).unwrap_err().to_string()
    }

    #[test]
    fn formats_are_chosen_by_name() {
        let f = |s: &str| dataset_format(Path::new(s));
        assert_eq!(f("a/b.txt"), Some((DatasetFormat::Txt, false)));
        assert_eq!(f("b.TXT.gz"), Some((DatasetFormat::Txt, true)));
        assert_eq!(f("x.csv.gz"), Some((DatasetFormat::Csv, true)));
        assert_eq!(f("x.npy"), Some((DatasetFormat::Npy, false)));
        assert_eq!(
            f("train-images-idx3-ubyte.gz"),
            Some((DatasetFormat::Idx, true))
        );
        assert_eq!(
            f("t10k-images.idx3-ubyte"),
            Some((DatasetFormat::Idx, false))
        );
        assert_eq!(f("x.idx"), Some((DatasetFormat::Idx, false)));
        assert_eq!(f("x.png"), None);
        assert_eq!(f("txt"), None);
    }

    #[test]
    fn txt_ignores_spaces_and_blank_lines() {
        let d = parse_dataset(b"0 1 1\n\n1\t0 0\r\n  \n011", DatasetFormat::Txt, None).unwrap();
        assert_eq!((d.rows(), d.cols()), (3, 3));
        assert_eq!(d.data(), &[0, 1, 1, 1, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn txt_errors_name_line_and_column() {
        let msg = parse_err(b"0101\n01x1\n", DatasetFormat::Txt);
        assert!(
            msg.contains("line 2") && msg.contains("column 3") && msg.contains("`x`"),
            "{msg}"
        );
        let msg = parse_err(b"0101\n\n011\n", DatasetFormat::Txt);
        assert!(
            msg.contains("line 3") && msg.contains("has 3 values") && msg.contains("line 1 has 4"),
            "{msg}"
        );
        assert!(parse_err(b"", DatasetFormat::Txt).contains("empty"));
        assert!(parse_err(b" \n\n", DatasetFormat::Txt).contains("empty"));
    }

    #[test]
    fn csv_binarizes_at_the_threshold() {
        let text = b"0, 0.5, 0.49\n1,200,-3\n";
        let d = parse_dataset(text, DatasetFormat::Csv, None).unwrap();
        assert_eq!(d.data(), &[0, 1, 0, 1, 1, 0]);
        let d = parse_dataset(text, DatasetFormat::Csv, Some(128.0)).unwrap();
        assert_eq!(d.data(), &[0, 0, 0, 0, 1, 0]);
        let msg = parse_err(b"1,2\n3,four\n", DatasetFormat::Csv);
        assert!(
            msg.contains("line 2") && msg.contains("column 2") && msg.contains("`four`"),
            "{msg}"
        );
        let msg = parse_err(b"1,2\n3,NaN\n", DatasetFormat::Csv);
        assert!(msg.contains("line 2") && msg.contains("finite"), "{msg}");
        assert!(parse_err(b"1,2\n3\n", DatasetFormat::Csv).contains("line 2"));
        assert!(parse_dataset(b"1\n", DatasetFormat::Csv, Some(f64::NAN)).is_err());
    }

    /// A .npy file as NumPy writes it (version 1 header).
    fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = NPY_MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn npy_dtypes_orders_and_shapes() {
        let f8: Vec<u8> = [0.1f64, 0.9, 0.5, -1.0, 2.0, 0.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let d = parse_dataset(&npy("<f8", false, "(2, 3)", &f8), DatasetFormat::Npy, None).unwrap();
        assert_eq!(d.data(), &[0, 1, 1, 0, 1, 0]);
        // The same numbers in Fortran order describe the transposed layout.
        let d = parse_dataset(&npy("<f8", true, "(3, 2)", &f8), DatasetFormat::Npy, None).unwrap();
        assert_eq!(d.data(), &[0, 0, 1, 1, 1, 0]);
        let f4: Vec<u8> = [1.0f32, 0.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let d = parse_dataset(&npy(">f4", false, "(1, 2)", &f4), DatasetFormat::Npy, None).unwrap();
        assert_eq!(d.data(), &[1, 0]);
        let d = parse_dataset(
            &npy("|b1", false, "(2, 1, 2)", &[1, 0, 0, 1]),
            DatasetFormat::Npy,
            None,
        )
        .unwrap();
        assert_eq!((d.rows(), d.cols(), d.data()), (2, 2, &[1u8, 0, 0, 1][..]));
        let d = parse_dataset(
            &npy("|u1", false, "(1, 3)", &[0, 127, 200]),
            DatasetFormat::Npy,
            Some(128.0),
        )
        .unwrap();
        assert_eq!(d.data(), &[0, 0, 1]);
        let i8s: Vec<u8> = [0i64, 1, 1, 0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let d =
            parse_dataset(&npy("<i8", false, "(2, 2)", &i8s), DatasetFormat::Npy, None).unwrap();
        assert_eq!(d.data(), &[0, 1, 1, 0]);
        // Errors: 1-D, truncated, unsupported dtype, not npy, NaN.
        assert!(
            parse_err(&npy("|u1", false, "(3,)", &[0, 1, 1]), DatasetFormat::Npy)
                .contains("2 dimensions")
        );
        assert!(
            parse_err(&npy("|u1", false, "(2, 3)", &[0, 1, 1]), DatasetFormat::Npy)
                .contains("truncated")
        );
        assert!(
            parse_err(&npy("<c16", false, "(1, 1)", &[0; 16]), DatasetFormat::Npy)
                .contains("not supported")
        );
        assert!(parse_err(b"PK\x03\x04 a zip file", DatasetFormat::Npy).contains("not a .npy"));
        // Strict: trailing bytes after the array, unknown or repeated keys, text after `}`.
        let msg = parse_err(&npy("|u1", false, "(1, 2)", &[0, 1, 9]), DatasetFormat::Npy);
        assert!(msg.contains("1 trailing bytes"), "{msg}");
        let with_header = |h: &str| {
            let mut out = NPY_MAGIC.to_vec();
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(&[0, 1]);
            parse_dataset(&out, DatasetFormat::Npy, None).map(|d| d.data().to_vec())
        };
        let ok = "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2), }  \n";
        assert_eq!(with_header(ok).unwrap(), [0, 1]);
        let ok = "{\"shape\": (1, 2), \"descr\": \"|u1\", \"fortran_order\": False}\n";
        assert_eq!(with_header(ok).unwrap(), [0, 1]);
        for (header, needle) in [
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2), 'offset': 1}\n",
                "unknown key `offset`",
            ),
            (
                "{'descr': '|u1', 'descr': '<f8', 'fortran_order': False, 'shape': (1, 2)}\n",
                "repeats the key `descr`",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2)} x\n",
                "after its closing brace",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2) (3,)}\n",
                "unexpected text",
            ),
            (
                "{'descr': '|u1', 'shape': (1, 2)}\n",
                "lacks `fortran_order`",
            ),
        ] {
            let msg = with_header(header).unwrap_err().to_string();
            assert!(msg.contains(needle), "{header}: {msg}");
        }
        let nan: Vec<u8> = f64::NAN.to_le_bytes().to_vec();
        assert!(
            parse_err(&npy("<f8", false, "(1, 1)", &nan), DatasetFormat::Npy).contains("finite")
        );
    }

    #[test]
    fn idx_files_are_checked_and_flattened() {
        let mut idx = vec![0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
        idx.extend_from_slice(&[0, 255, 128, 127, 1, 2, 250, 3]);
        let d = parse_dataset(&idx, DatasetFormat::Idx, None).unwrap();
        assert_eq!((d.rows(), d.cols()), (2, 4));
        assert_eq!(d.data(), &[0, 1, 1, 0, 0, 0, 1, 0]);
        assert!(parse_err(&idx[..idx.len() - 1], DatasetFormat::Idx).contains("truncated"));
        assert!(parse_err(b"\x01\x02\x08\x01", DatasetFormat::Idx).contains("not an IDX"));
        let huge = [
            0, 0, 0x0E, 3, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 2,
        ];
        assert!(parse_err(&huge, DatasetFormat::Idx).contains("impossibl"));
        let labels = [0, 0, 8, 1, 0, 0, 0, 2, 5, 7];
        assert!(parse_err(&labels, DatasetFormat::Idx).contains("label"));
    }

    #[test]
    fn every_format_round_trips_through_its_encoder() {
        let d = Dataset::new(3, 5, vec![0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]).unwrap();
        for format in [
            DatasetFormat::Txt,
            DatasetFormat::Csv,
            DatasetFormat::Npy,
            DatasetFormat::Idx,
        ] {
            let bytes = encode_dataset(&d, format);
            let back = parse_dataset(&bytes, format, None).unwrap();
            assert_eq!(back, d, "{format:?}");
        }
    }
}
