//! Shards of an enumeration: the record a `--shard K/N` run writes, and the merge of the N
//! records into ln Z with every check that the parts belong together.
//!
//! # Record format (JSON, one object)
//! `shard` ("K/N"), `shard_index` K, `shard_count` N, `log_sum` (ln of the part's sum; a part of
//! weight 0, or with no states, has log_sum = -inf, written as JSON `null`), `states` (states
//! summed), `method`, `model` (a description), `fingerprint` (of the model's bytes and the
//! method, [`fingerprint`]), `variables`, `seconds`. A merge needs exactly the parts 0..N-1 of
//! one run: the same fingerprint, method, variable count and N in every record.

use serde::{Deserialize, Serialize};

use super::exact::{Shard, merge_shards};
use crate::error::{Error, Result};

/// What one `--shard K/N` run records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// "K/N".
    pub shard: String,
    /// K, 0 <= K < N.
    pub shard_index: u64,
    /// N, >= 1.
    pub shard_count: u64,
    /// ln of the part's sum (-inf, as JSON null, for a part of weight 0 or no states).
    #[serde(
        serialize_with = "log_sum_to_json",
        deserialize_with = "log_sum_from_json"
    )]
    pub log_sum: f64,
    /// Number of states summed.
    pub states: u64,
    /// The method's name ("enumerate" or "rbm").
    pub method: String,
    /// What the model is (a file name or the lattice's flags).
    pub model: String,
    /// [`fingerprint`] of the model and the method.
    pub fingerprint: String,
    /// Number of variables of the model.
    pub variables: usize,
    /// Seconds the part took.
    pub seconds: f64,
}

/// -inf (a sum of zero weights) as JSON null; any other value as a number.
fn log_sum_to_json<S: serde::Serializer>(x: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if *x == f64::NEG_INFINITY {
        s.serialize_none()
    } else {
        s.serialize_some(x)
    }
}

/// JSON null as -inf (see [`log_sum_to_json`]).
fn log_sum_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

/// FNV-1a (64 bits) over the parts, each followed by a separator: a stable fingerprint tying
/// shards to their model and method (not a cryptographic hash).
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Checks the numbering K/N of a part: N >= 1 and 0 <= K < N (K counts from 0).
pub fn check_numbering(index: u64, count: u64) -> Result<Shard> {
    if count == 0 {
        return Err(Error::param(
            "shard",
            format!("{index}/0: N = 0 parts; N must be at least 1"),
        ));
    }
    if index >= count {
        return Err(Error::param(
            "shard",
            format!(
                "{index}/{count}: there is no part {index} of {count} (K counts from 0, so the \
                 parts are 0/{count} to {}/{count})",
                count - 1
            ),
        ));
    }
    Ok(Shard { index, count })
}

/// Parses "K/N" (as given to `--shard`), with [`check_numbering`].
pub fn parse_shard_spec(text: &str) -> Result<Shard> {
    let parsed = text
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?)));
    let Some((k, n)) = parsed else {
        return Err(Error::param(
            "shard",
            format!("expected K/N with integers 0 <= K < N, got {text:?}"),
        ));
    };
    check_numbering(k, n)
}

/// Parses one record (the JSON text of a `--shard` run) and checks it on its own: the numbering,
/// `shard` agreeing with `shard_index`/`shard_count`, and a log_sum that is a number or null.
/// `source` names the record (a file name) in errors.
pub fn parse_record(text: &str, source: &str) -> Result<ShardRecord> {
    let record: ShardRecord = serde_json::from_str(text.trim()).map_err(|e| {
        Error::Format(format!(
            "{source}: not the JSON of an `ebm partition --shard` run ({e})"
        ))
    })?;
    check_numbering(record.shard_index, record.shard_count)
        .map_err(|e| Error::Format(format!("{source}: {e}")))?;
    let spec = format!("{}/{}", record.shard_index, record.shard_count);
    if record.shard != spec {
        return Err(Error::Format(format!(
            "{source}: \"shard\" says {:?} but shard_index/shard_count say {spec}",
            record.shard
        )));
    }
    if record.log_sum.is_nan() || record.log_sum == f64::INFINITY {
        return Err(Error::Format(format!(
            "{source}: log_sum is {}, not a finite number or null",
            record.log_sum
        )));
    }
    Ok(record)
}

/// The merge of all the parts of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// ln Z: the log-sum of the parts' log-sums (-inf when every part has weight 0).
    pub log_z: f64,
    /// The method of the parts.
    pub method: String,
    /// Variables of the model.
    pub variables: usize,
    /// The model's description.
    pub model: String,
    /// The shared fingerprint.
    pub fingerprint: String,
    /// N.
    pub shards: u64,
    /// Total states summed.
    pub states: u64,
    /// Sum of the parts' seconds.
    pub seconds: f64,
}

/// Merges the records of one run, each with a name for messages (a file). Refused (Format):
/// an empty list, records of different runs (fingerprint, method, variable count or N differ),
/// a part given twice, a missing part.
pub fn merge_records(records: &[(ShardRecord, String)]) -> Result<Merged> {
    let Some((first, first_name)) = records.first() else {
        return Err(Error::Format("no shard records to merge".into()));
    };
    let count = first.shard_count;
    for (r, name) in records {
        let differs = [
            ("fingerprint", r.fingerprint != first.fingerprint),
            ("method", r.method != first.method),
            ("variable count", r.variables != first.variables),
            ("number of parts N", r.shard_count != count),
        ];
        if let Some((what, _)) = differs.iter().find(|(_, d)| *d) {
            return Err(Error::Format(format!(
                "{name} (shard {}, {} by {}, {} variables, fingerprint {}) is from a different \
                 run than {first_name} (shard {}, {} by {}, {} variables, fingerprint {}): the \
                 {what} differs",
                r.shard,
                r.model,
                r.method,
                r.variables,
                r.fingerprint,
                first.shard,
                first.model,
                first.method,
                first.variables,
                first.fingerprint
            )));
        }
    }
    let mut order: Vec<&(ShardRecord, String)> = records.iter().collect();
    order.sort_by_key(|(r, _)| r.shard_index);
    for pair in order.windows(2) {
        if pair[0].0.shard_index == pair[1].0.shard_index {
            return Err(Error::Format(format!(
                "shard {} is given twice ({} and {})",
                pair[0].0.shard, pair[0].1, pair[1].1
            )));
        }
    }
    if order.len() as u64 != count {
        let missing: Vec<String> = (0..count)
            .filter(|k| {
                order
                    .binary_search_by_key(k, |(r, _)| r.shard_index)
                    .is_err()
            })
            .take(5)
            .map(|k| format!("{k}/{count}"))
            .collect();
        return Err(Error::Format(format!(
            "{} of {count} shards given; missing {}{}",
            order.len(),
            missing.join(", "),
            if count - order.len() as u64 > missing.len() as u64 {
                " and more"
            } else {
                ""
            }
        )));
    }
    let log_sums: Vec<f64> = order.iter().map(|(r, _)| r.log_sum).collect();
    Ok(Merged {
        log_z: merge_shards(&log_sums),
        method: first.method.clone(),
        variables: first.variables,
        model: first.model.clone(),
        fingerprint: first.fingerprint.clone(),
        shards: count,
        states: order.iter().map(|(r, _)| r.states).sum(),
        seconds: order.iter().map(|(r, _)| r.seconds).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(k: u64, n: u64, log_sum: f64) -> (ShardRecord, String) {
        (
            ShardRecord {
                shard: format!("{k}/{n}"),
                shard_index: k,
                shard_count: n,
                log_sum,
                states: 4,
                method: "enumerate".into(),
                model: "m.uai".into(),
                fingerprint: fingerprint(&[b"model", b"enumerate"]),
                variables: 4,
                seconds: 0.5,
            },
            format!("part{k}.json"),
        )
    }

    #[test]
    fn numbering_errors_name_the_problem() {
        let msg = parse_shard_spec("7/4").unwrap_err().to_string();
        assert!(msg.contains("7/4") && msg.contains("0/4 to 3/4"), "{msg}");
        let msg = parse_shard_spec("0/0").unwrap_err().to_string();
        assert!(msg.contains("N = 0"), "{msg}");
        assert!(parse_shard_spec("a/b").is_err());
        assert_eq!(
            parse_shard_spec(" 3 / 4").unwrap(),
            Shard::new(3, 4).unwrap()
        );
    }

    #[test]
    fn records_round_trip_with_null_for_minus_infinity() {
        let (r, _) = record(1, 2, f64::NEG_INFINITY);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"log_sum\":null"), "{text}");
        assert_eq!(parse_record(&text, "x").unwrap(), r);
        let bad = text.replace("\"shard_index\":1", "\"shard_index\":7");
        let msg = parse_record(&bad, "x.json").unwrap_err().to_string();
        assert!(msg.contains("x.json") && msg.contains("7/2"), "{msg}");
        let zero = text.replace("\"shard_count\":2", "\"shard_count\":0");
        assert!(
            parse_record(&zero, "x")
                .unwrap_err()
                .to_string()
                .contains("N = 0")
        );
        let mislabelled = text.replace("\"shard\":\"1/2\"", "\"shard\":\"0/2\"");
        assert!(parse_record(&mislabelled, "x").is_err());
    }

    #[test]
    fn merge_sums_the_parts_and_refuses_mixed_runs() {
        let parts = vec![record(1, 2, 2f64.ln()), record(0, 2, 3f64.ln())];
        let m = merge_records(&parts).unwrap();
        assert!((m.log_z - 5f64.ln()).abs() < 1e-15);
        assert_eq!((m.shards, m.states, m.seconds), (2, 8, 1.0));
        let mut other = parts.clone();
        other[1].0.method = "rbm".into();
        assert!(
            merge_records(&other)
                .unwrap_err()
                .to_string()
                .contains("method")
        );
        let mut other = parts.clone();
        other[1].0.variables = 5;
        let msg = merge_records(&other).unwrap_err().to_string();
        assert!(msg.contains("variable count"), "{msg}");
        let mut other = parts.clone();
        other[1].0.fingerprint = "0".into();
        assert!(
            merge_records(&other)
                .unwrap_err()
                .to_string()
                .contains("fingerprint")
        );
        let mut other = parts.clone();
        other[1] = record(0, 3, 0.0);
        assert!(merge_records(&other).unwrap_err().to_string().contains("N"));
        let twice = vec![record(0, 2, 0.0), record(0, 2, 0.0)];
        assert!(
            merge_records(&twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let msg = merge_records(&[record(1, 3, 0.0)]).unwrap_err().to_string();
        assert!(msg.contains("missing 0/3, 2/3"), "{msg}");
        assert!(merge_records(&[]).is_err());
    }
}
