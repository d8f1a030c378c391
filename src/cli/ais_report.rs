//! The AIS part of the reports of `evaluate`, `score`, `compose` and `partition`, in one place:
//! the JSON keys of ln Z's spread and of the AIS settings, the human text of the spread, and the
//! warning when the effective sample size of the weights is too small
//! ([`ebm::infer::ais::ess_threshold`]).

use serde::Serialize;

use super::output::eprint_line;
use ebm::infer::ais::{AisEstimate, ess_threshold};
use ebm::model::composite::{LogZ, LogZMethod};

/// Advice of the warning for commands that take `--ais-betas` and `--ais-runs`.
pub const RAISE_FLAGS: &str = "raise --ais-betas (the number of annealing steps)";

/// The AIS keys of a JSON report (flattened into it), every one absent when ln Z is not from
/// AIS:
///
/// * `log_z_low`, `log_z_high`: ln(mean ± 3 standard errors) of the importance weights
///   (`log_z_low` also absent when that interval reaches ln 0 = -inf);
/// * `ais_betas`, `ais_runs`: the settings, when AIS ran directly (not for a mixture, whose ln Z
///   comes from its parts' stored estimates);
/// * `ais_ess`: the effective sample size (sum w)^2 / sum w^2 of the weights, when known;
/// * `ais_unreliable`: true when the ESS is below max(10, runs / 10) (for a mixture: any
///   part's), false otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AisReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_high: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_betas: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_runs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_ess: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ais_unreliable: Option<bool>,
}

impl AisReport {
    /// The keys of `z`: none when it is exact.
    pub fn of_log_z(z: &LogZ) -> AisReport {
        if z.method != LogZMethod::Ais {
            return AisReport::default();
        }
        AisReport {
            log_z_low: z.low.is_finite().then_some(z.low),
            log_z_high: z.high.is_finite().then_some(z.high),
            ais_betas: z.ais.map(|a| a.0),
            ais_runs: z.ais.map(|a| a.1),
            ais_ess: z.ais_ess.filter(|e| e.is_finite()),
            ais_unreliable: Some(z.unreliable),
        }
    }

    /// The keys of an AIS estimate, none for `None` (an exact ln Z).
    pub fn of_estimate(est: Option<&AisEstimate>) -> AisReport {
        est.map_or_else(AisReport::default, |e| AisReport::of_log_z(&e.to_log_z()))
    }

    /// True when ln Z came from AIS.
    pub fn is_ais(&self) -> bool {
        self.ais_unreliable.is_some()
    }

    /// The spread as text with `digits` decimals, `ln(mean ± 3 s.e.) low .. high` (`-inf` for a
    /// low end at ln 0), followed by `, ESS e of r runs` when known; `None` without AIS.
    pub fn spread_text(&self, digits: usize) -> Option<String> {
        let high = self.log_z_high?;
        let low = self
            .log_z_low
            .map_or_else(|| "-inf".to_string(), |l| format!("{l:.digits$}"));
        let mut text = format!("ln(mean ± 3 s.e.) {low} .. {high:.digits$}");
        if let (Some(ess), Some(runs)) = (self.ais_ess, self.ais_runs) {
            text.push_str(&format!(", ESS {ess:.1} of {runs} runs"));
        }
        Some(text)
    }

    /// The warning for an estimate flagged unreliable (without the leading `warning: `), `None`
    /// otherwise; `advice` says which
    /// setting to raise when AIS ran here (a mixture's ln Z comes from its components' stored
    /// estimates: the advice is then to compose it again).
    pub fn warning(&self, advice: &str) -> Option<String> {
        if self.ais_unreliable != Some(true) {
            return None;
        }
        let consequence = "a few runs carry the whole estimate, so ln Z is probably too low and \
                           its ln(mean ± 3 s.e.) interval too narrow (it may miss the true ln Z)";
        Some(match (self.ais_ess, self.ais_runs) {
            (Some(ess), Some(runs)) => {
                let more_runs = if (runs as f64) < ess_threshold(runs) {
                    format!(", and use at least {} runs", ess_threshold(runs).ceil())
                } else {
                    String::new()
                };
                format!(
                    "the AIS effective sample size is {ess:.1} of {runs} runs, below \
                     {:.0}: {consequence}; {advice}{more_runs}",
                    ess_threshold(runs)
                )
            }
            _ => format!(
                "ln Z rests on an AIS estimate of a mixture component whose effective \
                 sample size is below max(10, runs / 10): {consequence}; compose the mixture \
                 again with a larger --ais-betas"
            ),
        })
    }

    /// Prints [`warning`](AisReport::warning) on stderr, in every mode (`--json` and `--quiet`
    /// too): the figures of such a run are not to be trusted.
    pub fn warn_if_unreliable(&self, advice: &str) {
        if let Some(w) = self.warning(advice) {
            eprint_line(&format!("warning: {w}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ais(ess: Option<f64>, runs: usize, unreliable: bool) -> LogZ {
        LogZ {
            value: 1.0,
            low: f64::NEG_INFINITY,
            high: 2.0,
            method: LogZMethod::Ais,
            ais: Some((5, runs)),
            ais_ess: ess,
            unreliable,
        }
    }

    #[test]
    fn keys_text_and_warning_follow_the_estimate() {
        let exact = AisReport::of_log_z(&LogZ::exact(3.0));
        assert_eq!(exact, AisReport::default());
        assert!(!exact.is_ais() && exact.spread_text(4).is_none());
        assert_eq!(serde_json::to_string(&exact).unwrap(), "{}");
        assert!(exact.warning(RAISE_FLAGS).is_none());

        let low = AisReport::of_log_z(&ais(Some(2.5), 100, true));
        let json = serde_json::to_value(&low).unwrap();
        assert!(json.get("log_z_low").is_none(), "{json}");
        assert_eq!(json["ais_ess"], 2.5);
        assert_eq!(json["ais_unreliable"], true);
        assert_eq!(
            low.spread_text(2).unwrap(),
            "ln(mean ± 3 s.e.) -inf .. 2.00, ESS 2.5 of 100 runs"
        );
        let w = low.warning(RAISE_FLAGS).unwrap();
        assert!(
            w.contains("2.5 of 100 runs, below 10") && w.contains("--ais-betas"),
            "{w}"
        );
        assert!(!w.contains("at least"), "{w}");
        // Fewer runs than the threshold: more runs are asked for too.
        let few = AisReport::of_log_z(&ais(Some(4.0), 4, true));
        assert!(
            few.warning(RAISE_FLAGS)
                .unwrap()
                .contains("at least 10 runs")
        );
        let fine = AisReport::of_log_z(&ais(Some(80.0), 100, false));
        assert_eq!(
            serde_json::to_value(&fine).unwrap()["ais_unreliable"],
            false
        );
        assert!(fine.warning(RAISE_FLAGS).is_none());
        // A mixture of flagged parts: no ESS of its own, still flagged.
        let mut mixture = ais(None, 0, true);
        mixture.ais = None;
        let m = AisReport::of_log_z(&mixture);
        let w = m.warning(RAISE_FLAGS).unwrap();
        assert!(w.contains("mixture component") && w.contains("compose the mixture again"));
    }
}
