//! UAI model files (`.uai`, the UAI inference-competition format) and their `.PR` answer files.
//!
//! # Grammar
//! A `.uai` file is a sequence of whitespace-separated tokens; line breaks carry no meaning
//! (they are only used to report the 1-based line of an offending token).
//!
//! ```text
//! MARKOV                     network type (BAYES is read the same way, see below)
//! N                          number of variables, indexed 0..N-1
//! c_0 ... c_{N-1}            cardinality of each variable (ebm supports only 2)
//! F                          number of factors
//! k v_1 ... v_k              F scopes: arity, then the variables (their order = table axis order)
//! T t_0 ... t_{T-1}          F tables, in scope order: T = 2^k entries, finite and >= 0
//! ```
//!
//! Table order: the FIRST scope variable is the most significant and the LAST changes fastest
//! (row-major); for a pair (i, j) the entries are phi(0,0) phi(0,1) phi(1,0) phi(1,1). A zero
//! entry is allowed (a hard constraint); an all-zero table is refused (Z would be 0). Tokens after
//! the last table are an error (they usually mean a wrong factor count).
//!
//! `BAYES` files are accepted and read exactly like `MARKOV` ones: their tables are conditional
//! probabilities, so the product of the tables is already normalised (Z = 1 without evidence).
//! Writing always produces `MARKOV`.
//!
//! # Answers (`.PR`)
//! The first token is `PR`; the answer is log10 Z (base 10, not e). A solver may write several
//! solutions, each after a `-BEGIN-` marker; the last one counts, and its last token is the value
//! (older files put a count `1` before it).

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::io::atomic::write_bytes_atomic;
use crate::model::{Factor, FactorGraph};

/// The largest factor arity read (a table of 2^30 entries is already 8 GiB).
pub const MAX_ARITY: usize = 30;

/// Whitespace-separated tokens with their 1-based line numbers.
struct Tokens<'a> {
    tokens: Vec<(usize, &'a str)>,
    pos: usize,
    /// Line reported when the file ends early: the last line that holds a token.
    end_line: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        let tokens: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .flat_map(|(i, line)| line.split_whitespace().map(move |t| (i + 1, t)))
            .collect();
        let end_line = tokens.last().map_or(1, |&(l, _)| l);
        Tokens {
            tokens,
            pos: 0,
            end_line,
        }
    }

    /// The next token, or an error saying the file ended while `what` was expected.
    fn next(&mut self, what: impl FnOnce() -> String) -> Result<(usize, &'a str)> {
        match self.tokens.get(self.pos) {
            Some(&tok) => {
                self.pos += 1;
                Ok(tok)
            }
            None if self.tokens.is_empty() => Err(Error::parse(
                1,
                format!("the file is empty: expected {}", what()),
            )),
            None => Err(Error::parse(
                self.end_line,
                format!("the file ends early: expected {}", what()),
            )),
        }
    }

    fn count(&mut self, what: impl Fn() -> String) -> Result<(usize, usize)> {
        let (line, tok) = self.next(&what)?;
        tok.parse::<usize>().map(|n| (line, n)).map_err(|_| {
            Error::parse(
                line,
                format!(
                    "expected {} (a non-negative integer), found `{tok}`",
                    what()
                ),
            )
        })
    }
}

/// Parses the text of a UAI `MARKOV` (or `BAYES`) file into a factor graph.
///
/// Errors are [`Error::Parse`] with the 1-based line of the offending token and what was
/// expected there: a truncated file, a cardinality other than 2, a scope index out of range or
/// repeated, a table whose entry count is not 2^arity, a negative, infinite or NaN entry, an
/// all-zero table, or tokens after the last table.
pub fn parse_uai(text: &str) -> Result<FactorGraph> {
    let mut tok = Tokens::new(text);
    let (line, kind) = tok.next(|| "the network type MARKOV".into())?;
    if !(kind.eq_ignore_ascii_case("MARKOV") || kind.eq_ignore_ascii_case("BAYES")) {
        return Err(Error::parse(
            line,
            format!("expected the network type MARKOV (or BAYES), found `{kind}`"),
        ));
    }
    let (_, n) = tok.count(|| "the number of variables".into())?;
    for i in 0..n {
        let (line, card) = tok.count(|| format!("the cardinality of variable {i} (of {n})"))?;
        if card != 2 {
            return Err(Error::parse(
                line,
                format!(
                    "variable {i} has cardinality {card}; only binary variables (cardinality 2) \
                     are supported"
                ),
            ));
        }
    }
    let (_, f) = tok.count(|| "the number of factors".into())?;
    let mut scopes: Vec<(usize, Vec<usize>)> = Vec::new();
    for fi in 0..f {
        let (line, k) = tok.count(|| format!("the arity of factor {fi} (of {f})"))?;
        if k > MAX_ARITY {
            return Err(Error::parse(
                line,
                format!("factor {fi} has arity {k}; at most {MAX_ARITY} is supported"),
            ));
        }
        let mut scope = Vec::with_capacity(k);
        for a in 0..k {
            let (vline, v) =
                tok.count(|| format!("variable {} of {k} in the scope of factor {fi}", a + 1))?;
            if v >= n {
                return Err(Error::parse(
                    vline,
                    format!(
                        "factor {fi} names variable {v}, but the model has {n} variables \
                         (indices 0..{})",
                        n.saturating_sub(1)
                    ),
                ));
            }
            if scope.contains(&v) {
                return Err(Error::parse(
                    vline,
                    format!("the scope of factor {fi} names variable {v} twice"),
                ));
            }
            scope.push(v);
        }
        scopes.push((line, scope));
    }
    let mut factors = Vec::with_capacity(scopes.len());
    for (fi, (_, scope)) in scopes.into_iter().enumerate() {
        let expected = 1usize << scope.len();
        let (line, t) = tok.count(|| {
            format!("the entry count of factor {fi}'s table ({expected} for scope {scope:?})")
        })?;
        if t != expected {
            return Err(Error::parse(
                line,
                format!(
                    "factor {fi}'s table declares {t} entries, but its scope {scope:?} of {} \
                     binary variables needs 2^{} = {expected}",
                    scope.len(),
                    scope.len()
                ),
            ));
        }
        // Reserve no more than the tokens left, so a truncated file cannot ask for 2^30 entries.
        let mut table = Vec::with_capacity(t.min(tok.tokens.len() - tok.pos));
        for e in 0..t {
            let (eline, s) =
                tok.next(|| format!("entry {} of {t} of factor {fi}'s table", e + 1))?;
            let value: f64 = s.parse().map_err(|_| {
                Error::parse(
                    eline,
                    format!(
                        "entry {} of factor {fi}'s table is `{s}`, not a number",
                        e + 1
                    ),
                )
            })?;
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::parse(
                    eline,
                    format!(
                        "entry {} of factor {fi}'s table is {s}; entries must be finite and >= 0",
                        e + 1
                    ),
                ));
            }
            table.push(value);
        }
        let factor = Factor::new(scope, table).map_err(|e| Error::parse(line, e.to_string()))?;
        factors.push(factor);
    }
    if let Some(&(line, extra)) = tok.tokens.get(tok.pos) {
        return Err(Error::parse(
            line,
            format!(
                "unexpected `{extra}` after the last table (the file declares {f} factors; is \
                 the factor count right?)"
            ),
        ));
    }
    FactorGraph::new(n, factors)
}

/// Reads a UAI file (see the module docs for the grammar).
pub fn read_uai(path: &Path) -> Result<FactorGraph> {
    parse_uai(&read_text(path)?)
}

/// Formats a factor graph as a UAI `MARKOV` file.
///
/// Every entry is printed with the shortest decimal that reads back to the same f64, so
/// [`parse_uai`] of the result gives back an identical graph.
pub fn format_uai(graph: &FactorGraph) -> String {
    let n = graph.num_vars();
    let mut out = String::with_capacity(64 + 2 * n + 32 * graph.factors().len());
    out.push_str("MARKOV\n");
    let _ = writeln!(out, "{n}");
    out.push_str(&vec!["2"; n].join(" "));
    out.push('\n');
    let _ = writeln!(out, "{}", graph.factors().len());
    for factor in graph.factors() {
        let _ = write!(out, "{}", factor.arity());
        for v in factor.scope() {
            let _ = write!(out, " {v}");
        }
        out.push('\n');
    }
    for factor in graph.factors() {
        let _ = write!(out, "\n{}\n", factor.table().len());
        for (k, &t) in factor.table().iter().enumerate() {
            if k > 0 {
                out.push(if k % 16 == 0 { '\n' } else { ' ' });
            }
            push_real(&mut out, t);
        }
        out.push('\n');
    }
    out
}

/// Writes a factor graph as a UAI `MARKOV` file, atomically.
pub fn write_uai(path: &Path, graph: &FactorGraph) -> Result<()> {
    write_bytes_atomic(path, format_uai(graph).as_bytes())
}

/// Reads a `.PR` answer file and returns its value: log10 Z (base 10), refused unless
/// ln Z = log10 Z * ln 10 is a finite number.
///
/// The first token must be `PR`; when the file holds several solutions separated by `-BEGIN-`,
/// the last one counts, and the value is the last token of that solution.
pub fn read_pr(path: &Path) -> Result<f64> {
    parse_pr(&read_text(path)?)
}

/// Parses the text of a `.PR` answer file: log10 Z (see [`read_pr`]).
pub fn parse_pr(text: &str) -> Result<f64> {
    let mut tok = Tokens::new(text);
    let (line, head) = tok
        .next(|| "`PR`".into())
        .map_err(|_| Error::parse(1, "the file is empty: expected `PR` and a value"))?;
    if head != "PR" {
        return Err(Error::parse(
            line,
            format!("expected `PR` (a partition-function answer), found `{head}`"),
        ));
    }
    let rest = &tok.tokens[tok.pos..];
    let start = rest
        .iter()
        .rposition(|&(_, t)| t == "-BEGIN-")
        .map_or(0, |k| k + 1);
    let &(line, value) = rest[start..].last().ok_or_else(|| {
        Error::parse(
            tok.end_line,
            "the file ends early: expected the value log10 Z",
        )
    })?;
    let z: f64 = value.parse().map_err(|_| {
        Error::parse(
            line,
            format!("expected the value log10 Z (a number), found `{value}`"),
        )
    })?;
    // ln Z = log10 Z * ln 10 must be a finite number too.
    if !(z * std::f64::consts::LN_10).is_finite() {
        return Err(Error::parse(
            line,
            format!(
                "log10 Z = {value} is not a usable answer (expected a number whose ln Z = \
                 log10 Z * ln 10 is finite)"
            ),
        ));
    }
    Ok(z)
}

/// Parses the text of a UAI evidence file (`.evid`) into (variable, value) pairs, unchecked
/// against a model (see `infer::evidence::Evidence::new`).
///
/// The 2014 convention is `k v_1 x_1 ... v_k x_k` (k = 0: no evidence); older (2008/2010) files
/// put a sample count first, `1 k v_1 x_1 ...`. The two are told apart by the number of tokens
/// (2k + 1 is odd, 2k + 2 even), so there is no ambiguity; files with several samples are refused.
pub fn parse_evidence(text: &str) -> Result<Vec<(usize, u64)>> {
    let tok = Tokens::new(text);
    let t = &tok.tokens;
    let number = |i: usize| -> Result<u64> {
        let (line, s) = t[i];
        s.parse::<u64>().map_err(|_| {
            Error::parse(
                line,
                format!(
                    "expected a non-negative integer (a count, variable or value), found `{s}`"
                ),
            )
        })
    };
    if t.is_empty() {
        return Err(Error::parse(
            1,
            "the file is empty: expected the number of observed variables k, then k pairs",
        ));
    }
    let first = number(0)?;
    let start = if (t.len() as u64).checked_sub(1) == first.checked_mul(2) {
        1
    } else if t.len() >= 2 && (t.len() as u64 - 2) == number(1)?.saturating_mul(2) {
        if first != 1 {
            return Err(Error::parse(
                t[0].0,
                format!("{first} evidence samples: only one sample per file is supported"),
            ));
        }
        2
    } else {
        return Err(Error::parse(
            tok.end_line,
            format!(
                "{} tokens do not make `k` then k variable/value pairs (2k + 1 tokens; k = \
                 {first} needs {}) nor the older `1 k` then k pairs (2k + 2 tokens)",
                t.len(),
                first.saturating_mul(2).saturating_add(1)
            ),
        ));
    };
    let mut pairs = Vec::with_capacity((t.len() - start) / 2);
    for i in (start..t.len()).step_by(2) {
        let var = number(i)?;
        let value = number(i + 1)?;
        pairs.push((usize::try_from(var).unwrap_or(usize::MAX), value));
    }
    Ok(pairs)
}

/// Reads an evidence file (see [`parse_evidence`]).
pub fn read_evidence(path: &Path) -> Result<Vec<(usize, u64)>> {
    parse_evidence(&read_text(path)?)
}

/// Formats a `.PR` answer: `PR`, then log10 Z (shortest round-trip decimal). Refuses a
/// non-finite value.
pub fn format_pr(log10_z: f64) -> Result<String> {
    if !log10_z.is_finite() {
        return Err(Error::param(
            "log10 Z",
            format!("{log10_z} cannot be written as a .PR answer"),
        ));
    }
    Ok(format!("PR\n{log10_z}\n"))
}

/// Writes a `.PR` answer file atomically (see [`format_pr`]).
pub fn write_pr(path: &Path, log10_z: f64) -> Result<()> {
    write_bytes_atomic(path, format_pr(log10_z)?.as_bytes())
}

/// Formats a `.MAR` answer (UAI marginals): `MAR`, then on one line N and, per variable, its
/// cardinality 2 and P(x_i = 0) P(x_i = 1). Refuses a value outside [0, 1] or NaN.
pub fn format_mar(marginals: &[f64]) -> Result<String> {
    if let Some(i) = marginals.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::param(
            "marginals",
            format!("P(x_{i} = 1) = {} is not a probability", marginals[i]),
        ));
    }
    let mut out = format!("MAR\n{}", marginals.len());
    for &p in marginals {
        let _ = write!(out, " 2 {} {}", 1.0 - p, p);
    }
    out.push('\n');
    Ok(out)
}

/// Writes a `.MAR` answer file atomically (see [`format_mar`]).
pub fn write_mar(path: &Path, marginals: &[f64]) -> Result<()> {
    write_bytes_atomic(path, format_mar(marginals)?.as_bytes())
}

/// Reads a whole file as UTF-8 text.
fn read_text(path: &Path) -> Result<String> {
    text_of(std::fs::read(path)?)
}

/// The bytes of a text file as a `String`, or an error at the first byte that is not UTF-8.
pub(crate) fn text_of(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        Error::Format(format!(
            "not a text file (invalid UTF-8 at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Appends the shortest decimal that parses back to `x`: plain notation for ordinary
/// magnitudes, scientific otherwise (both exact round trips).
fn push_real(out: &mut String, x: f64) {
    if x == 0.0 || (1e-4..1e15).contains(&x.abs()) {
        let _ = write!(out, "{x}");
    } else {
        let _ = write!(out, "{x:e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str =
        "MARKOV\n3\n2 2 2\n3\n1 0\n2 2 0\n2\t1 2\n\n2\n 1.0 3.0\n\n4\n2 0.5\n1.5 4\n4 1 2 3 0.25\n";

    fn line_of(err: Error) -> (usize, String) {
        match err {
            Error::Parse { line, msg } => (line, msg),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn reads_scopes_and_tables_in_file_order() {
        let g = parse_uai(SMALL).unwrap();
        assert_eq!(g.num_vars(), 3);
        assert_eq!(g.factors().len(), 3);
        assert_eq!(g.factors()[1].scope(), &[2, 0]);
        assert_eq!(g.factors()[1].table(), &[2.0, 0.5, 1.5, 4.0]);
        assert_eq!(g.factors()[2].table(), &[1.0, 2.0, 3.0, 0.25]);
        // x = (1, 0, 1): phi0(1) = 3, phi1(x2 = 1, x0 = 1) = 4, phi2(x1 = 0, x2 = 1) = 2.
        assert!((g.log_weight_bits(&[1, 0, 1]) - 24f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn write_then_read_is_exact() {
        let g = parse_uai(SMALL).unwrap();
        assert_eq!(parse_uai(&format_uai(&g)).unwrap(), g);
        // Awkward magnitudes and a 5-ary table (32 entries, wrapped over lines).
        let table: Vec<f64> = (0..32)
            .map(|k| match k % 4 {
                0 => 0.0,
                1 => 1e-300 * (k as f64 + 0.1),
                2 => 1.0 / 3.0 + k as f64,
                _ => 7.25e250 / (k as f64),
            })
            .collect();
        let big = FactorGraph::new(
            6,
            vec![
                Factor::new(vec![5, 1, 3, 0, 2], table).unwrap(),
                Factor::new(vec![4], vec![0.1, 0.2]).unwrap(),
                Factor::new(vec![], vec![2.5]).unwrap(),
            ],
        )
        .unwrap();
        let text = format_uai(&big);
        assert_eq!(parse_uai(&text).unwrap(), big, "{text}");
    }

    #[test]
    fn bayes_files_read_like_markov() {
        let bayes = SMALL.replacen("MARKOV", "BAYES", 1);
        assert_eq!(parse_uai(&bayes).unwrap(), parse_uai(SMALL).unwrap());
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases: [(&str, usize, &str); 11] = [
            ("", 1, "empty"),
            ("MARKOFF\n1\n2\n0\n", 1, "MARKOV"),
            ("MARKOV\n2\n2 3\n0\n", 3, "only binary"),
            ("MARKOV\n2\n2 2\n1\n2 0 2\n4\n1 1 1 1\n", 5, "variable 2"),
            ("MARKOV\n2\n2 2\n1\n2 1 1\n4\n1 1 1 1\n", 5, "twice"),
            ("MARKOV\n2\n2 2\n1\n2 0 1\n3\n1 1 1\n", 6, "needs 2^2 = 4"),
            ("MARKOV\n2\n2 2\n1\n2 0 1\n4\n1 1\n", 7, "ends early"),
            ("MARKOV\n2\n2 2\n1\n1 0\n2\n1 -1\n", 7, ">= 0"),
            ("MARKOV\n2\n2 2\n1\n1 0\n2\nNaN 1\n", 7, ">= 0"),
            ("MARKOV\n2\n2 2\n1\n1 0\n2\n0 0\n", 6, "all zeros"),
            (
                "MARKOV\n2\n2 2\n1\n1 0\n2\n1 1\n7\n",
                8,
                "after the last table",
            ),
        ];
        for (text, want_line, want_msg) in cases {
            let (line, msg) = line_of(parse_uai(text).unwrap_err());
            assert_eq!(line, want_line, "{text:?}: {msg}");
            assert!(msg.contains(want_msg), "{text:?}: {msg}");
        }
        let (_, msg) = line_of(parse_uai("MARKOV\n2\n2 2\n1\n2 0 1\n4\n1 x 1 1\n").unwrap_err());
        assert!(msg.contains("`x`") && msg.contains("entry 2"), "{msg}");
    }

    #[test]
    fn evidence_reads_both_conventions() {
        let want = vec![(3, 1), (0, 0)];
        assert_eq!(parse_evidence("2 3 1 0 0\n").unwrap(), want);
        assert_eq!(parse_evidence("1\n2 3 1 0 0\n").unwrap(), want);
        assert_eq!(parse_evidence("0\n").unwrap(), vec![]);
        assert_eq!(parse_evidence("1 0").unwrap(), vec![]);
        // The older form with one pair: `1 1 v x` (4 tokens) vs 2014 `1 v x` (3 tokens).
        assert_eq!(parse_evidence("1 1 5 1").unwrap(), vec![(5, 1)]);
        assert_eq!(parse_evidence("1 5 1").unwrap(), vec![(5, 1)]);
        let (line, msg) = line_of(parse_evidence("2 3 1 0").unwrap_err());
        assert_eq!(line, 1);
        assert!(msg.contains("4 tokens"), "{msg}");
        assert!(
            line_of(parse_evidence("2 2 3 1 0 0").unwrap_err())
                .1
                .contains("samples")
        );
        assert!(
            line_of(parse_evidence("1 x 1").unwrap_err())
                .1
                .contains("`x`")
        );
        assert!(parse_evidence("").is_err());
    }

    #[test]
    fn pr_and_mar_answers_are_written_in_the_competition_format() {
        let pr = format_pr(-2.25).unwrap();
        assert_eq!(pr, "PR\n-2.25\n");
        assert_eq!(parse_pr(&pr).unwrap(), -2.25);
        assert!(format_pr(f64::NAN).is_err());
        assert_eq!(
            format_mar(&[0.25, 1.0]).unwrap(),
            "MAR\n2 2 0.75 0.25 2 0 1\n"
        );
        assert!(format_mar(&[f64::NAN]).is_err());
    }

    #[test]
    fn pr_answers_take_the_last_solution() {
        assert_eq!(parse_pr("PR\n58.5307\n").unwrap(), 58.5307);
        assert_eq!(
            parse_pr("PR\n-BEGIN-\n1\n-3.5\n-BEGIN-\n1 -2.25\n").unwrap(),
            -2.25
        );
        assert!(parse_pr("MAR\n1.0\n").is_err());
        assert!(parse_pr("PR\n").is_err());
        assert!(parse_pr("PR\nabc\n").is_err());
        assert!(parse_pr("").is_err());
        // ln Z = log10 Z * ln 10 would overflow.
        let (_, msg) = line_of(parse_pr("PR\n1e308\n").unwrap_err());
        assert!(msg.contains("1e308"), "{msg}");
        assert!(parse_pr("PR\n-1e308\n").is_err());
        assert!(parse_pr("PR\n-inf\n").is_err());
        assert_eq!(parse_pr("PR\n1e300\n").unwrap(), 1e300);
    }
}
