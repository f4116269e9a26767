//! When refusals say the run is pointless to go on with.

use super::Summary;
use crate::model::{Outcome, RowReport};

/// Thresholds past which refusals stop the run (`--max-errors`, `--max-error-rate`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StopRules {
    /// Stop once more rows than this are refused in this run.
    pub max_errors: Option<u64>,
    /// Stop once more than this share of the rows finished (at least 100) are refused.
    pub max_error_rate: Option<f64>,
}

/// Rows answered 404/405 at the start of a run that mean the endpoint is wrong.
const WRONG_ENDPOINT_ROWS: u64 = 5;
/// Rows refused the same way at the start of a run that mean the cause is not in the rows.
const SYSTEMATIC_ROWS: u64 = 20;
/// Rows finished before `--max-error-rate` is judged.
const RATE_SAMPLE: u64 = 100;

/// Watches outcomes for a run that is pointless to go on with: the endpoint answering 404 or
/// 405 to the first rows sent (a wrong `--base-url`), every one of the first rows sent
/// refused for the same field (a missing column, a missing flag), or the user's own limits.
#[derive(Debug)]
pub struct EarlyStop {
    rules: StopRules,
    /// The create endpoint, for the hint.
    endpoint: String,
    /// Rows sent so far, while every one was refused the same way.
    same: u64,
    /// The shape of that refusal: status and the fields refused.
    signature: Option<(u16, Vec<Option<crate::model::Field>>)>,
    /// A row sent got another answer: the start-of-run rules no longer apply.
    varied: bool,
}

impl EarlyStop {
    /// Watches a run sending to `endpoint` under `rules`.
    pub fn new(endpoint: &str, rules: StopRules) -> EarlyStop {
        EarlyStop {
            rules,
            endpoint: endpoint.to_string(),
            same: 0,
            signature: None,
            varied: false,
        }
    }

    /// Takes one row's outcome (after `summary` counted it); a message when the run should
    /// stop.
    pub fn observe(&mut self, report: &RowReport, summary: &Summary) -> Option<String> {
        if let Some(max) = self.rules.max_errors
            && summary.refused_this_run() > max
        {
            return Some(format!(
                "more than {max} rows were refused in this run (--max-errors {max}); the error file says why"
            ));
        }
        if let Some(rate) = self.rules.max_error_rate {
            let finished = summary.accounted();
            let refused = summary.refused_this_run();
            if finished >= RATE_SAMPLE && refused as f64 > rate * finished as f64 {
                return Some(format!(
                    "{refused} of {finished} rows were refused, more than --max-error-rate {rate}"
                ));
            }
        }
        if self.varied || report.attempts == 0 {
            return None;
        }
        // A refusal, or a "success" that is not one (a web page where the API should be).
        let status = match report.outcome {
            Outcome::Rejected { status } => status,
            Outcome::Failed {
                status: Some(status @ 200..=399),
            } if report
                .errors
                .first()
                .is_some_and(|e| e.code == crate::model::ErrorCode::Unexpected) =>
            {
                status
            }
            _ => {
                self.varied = true;
                return None;
            }
        };
        let mut fields: Vec<Option<crate::model::Field>> =
            report.errors.iter().map(|e| e.field).collect();
        fields.sort();
        fields.dedup();
        let signature = (status, fields);
        match &self.signature {
            None => self.signature = Some(signature),
            Some(first) if *first == signature => {}
            Some(_) => {
                self.varied = true;
                return None;
            }
        }
        self.same += 1;
        if matches!(status, 200..=399 | 404 | 405) && self.same >= WRONG_ENDPOINT_ROWS {
            let what = match status {
                200..=299 => "not with what the target documents",
                300..=399 => "with a redirect",
                _ => "as not there",
            };
            return Some(format!(
                "the first {} rows sent were all answered HTTP {status} by `{}`, {what} (hint: \
                 check --base-url and the target)",
                self.same,
                crate::http::redact_query(&self.endpoint)
            ));
        }
        if self.same >= SYSTEMATIC_ROWS {
            let first = report.errors.first();
            let column = first.map_or("", |e| e.column.as_str());
            let message = first.map_or("", |e| e.message.as_str());
            let hint = match first.and_then(|e| e.field) {
                Some(crate::model::Field::Password) => {
                    "add a password column, or pass --generate-passwords FILE".to_string()
                }
                Some(field) => format!(
                    "check the `{column}` column, or give it with --map {}=COLUMN or --set {}=VALUE",
                    field.name(),
                    field.name()
                ),
                None => "the cause is not in the rows: check the target's settings".to_string(),
            };
            let what = match column {
                "" => format!("HTTP {status}: {message}"),
                column => format!("`{column}`: {message}"),
            };
            return Some(format!(
                "the first {} rows sent were all refused the same way ({what}) (hint: {hint})",
                self.same
            ));
        }
        None
    }
}
