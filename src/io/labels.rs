//! Label files: one integer per line (a class, or 0/1 for normal/anomaly), in the order of the
//! dataset's rows. Surrounding spaces are ignored; a final newline is optional; blank lines
//! are refused (they would shift every later label). Errors give the 1-based line number.

use std::path::Path;

use crate::error::{Error, Result};

/// Parses the text of a label file: one non-negative integer per line.
pub fn parse_labels(text: &str) -> Result<Vec<u32>> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let body = body.strip_suffix('\r').unwrap_or(body);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split('\n')
        .enumerate()
        .map(|(k, line)| {
            let token = line.trim();
            token.parse::<u32>().map_err(|_| {
                Error::parse(
                    k + 1,
                    format!("expected one label (a whole number >= 0), got {token:?}"),
                )
            })
        })
        .collect()
}

/// Reads a label file (see the module docs).
pub fn read_labels(path: &Path) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path)?;
    let text =
        String::from_utf8(bytes).map_err(|e| Error::Format(format!("not a text file: {e}")))?;
    parse_labels(&text)
}

/// Checks that `labels` has one entry per example (`rows`).
pub fn check_label_count(labels: &[u32], rows: usize) -> Result<()> {
    if labels.len() != rows {
        return Err(Error::SizeMismatch(format!(
            "{} labels for {rows} examples: expected one label per line for each row of the data",
            labels.len()
        )));
    }
    Ok(())
}

/// Anomaly labels: 1 is an anomaly (`true`), 0 normal; any other value is refused with its
/// 1-based line number.
pub fn anomaly_labels(labels: &[u32]) -> Result<Vec<bool>> {
    labels
        .iter()
        .enumerate()
        .map(|(k, &l)| match l {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::parse(
                k + 1,
                format!("expected 0 (normal) or 1 (anomaly), got {other}"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_one_per_line_with_line_numbers_in_errors() {
        assert_eq!(parse_labels("0\n 3 \r\n12").unwrap(), vec![0, 3, 12]);
        assert_eq!(parse_labels("1\n").unwrap(), vec![1]);
        assert!(parse_labels("").unwrap().is_empty());
        let e = parse_labels("1\n\n2\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_labels("1\nx\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("\"x\""), "{e}");
        let e = anomaly_labels(&[0, 1, 2]).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("got 2"), "{e}");
        assert!(check_label_count(&[0, 1], 3).is_err());
    }
}
