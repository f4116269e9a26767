//! What a cron log needs to tell one night's run from the next: when it ran, against what,
//! how it ended. Heads the text summary, and is the `--json` object (printed on a fatal
//! error too, with no totals).

use super::Summary;
use serde::Serialize;
use std::time::SystemTime;

/// A run's identity: when it started, the command, the target and where it sends.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// `import`, `import --dry-run` or `validate`.
    pub command: &'static str,
    /// When the command started.
    pub started_at: SystemTime,
    /// The target's name, once known.
    pub target: Option<String>,
    /// Where it sends (none for a validation), query redacted.
    pub base_url: Option<String>,
}

impl RunContext {
    /// A run of `command` starting now.
    pub fn start(command: &'static str) -> RunContext {
        RunContext {
            command,
            started_at: SystemTime::now(),
            target: None,
            base_url: None,
        }
    }

    /// The summary's first line: start time, command, target and base URL.
    pub fn headline(&self) -> String {
        let target = self.target.as_deref().unwrap_or("?");
        let place = match &self.base_url {
            Some(url) => format!("target {target} at {url}"),
            None => format!("target {target}, nothing sent"),
        };
        format!(
            "roster: summary of `{}` started {} ({place})\n",
            self.command,
            rfc3339(self.started_at)
        )
    }

    /// The `--json` object: this context, the outcome, and the totals when there are any.
    pub fn json(&self, outcome: &Outcome, summary: Option<&Summary>) -> String {
        let record = Record {
            version: env!("CARGO_PKG_VERSION"),
            command: self.command,
            target: self.target.as_deref(),
            base_url: self.base_url.as_deref(),
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(SystemTime::now()),
            outcome: outcome.word,
            reason: outcome.reason.as_deref(),
            exit_code: outcome.exit_code,
            summary,
        };
        serde_json::to_string(&record).unwrap_or_default()
    }
}

/// How a run ended, in `--json`'s words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `done` (exit 0), `refused` (rows refused: exit 1), `incomplete` (rows a re-run will
    /// retry: exit 5), `aborted`, `stopped` (try again later), `interrupted`, `internal error`,
    /// or `error` (the run could not start: usage, config, input).
    pub word: &'static str,
    /// Why, for anything but `done` and `refused`.
    pub reason: Option<String>,
    /// The process's exit code.
    pub exit_code: i32,
}

#[derive(Serialize)]
struct Record<'a> {
    version: &'static str,
    command: &'static str,
    target: Option<&'a str>,
    base_url: Option<&'a str>,
    started_at: String,
    finished_at: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    exit_code: i32,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    summary: Option<&'a Summary>,
}

/// UTC to the second, e.g. `2026-12-01T15:34:48Z`.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_names_the_run_and_how_it_ended() {
        let mut context = RunContext::start("import");
        context.target = Some("scim".into());
        context.base_url = Some("https://idp.example.com/scim/v2".into());
        let outcome = Outcome {
            word: "aborted",
            reason: Some("credentials refused".into()),
            exit_code: 3,
        };
        let summary = Summary {
            rows: 3,
            ..Summary::default()
        };
        let value: serde_json::Value =
            serde_json::from_str(&context.json(&outcome, Some(&summary))).unwrap();
        assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(value["target"], "scim");
        assert_eq!(value["base_url"], "https://idp.example.com/scim/v2");
        assert_eq!(value["outcome"], "aborted");
        assert_eq!(value["reason"], "credentials refused");
        assert_eq!(value["exit_code"], 3);
        assert_eq!(value["rows"], 3);
        let started = value["started_at"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(started).is_ok(), "{started}");
        assert!(started.ends_with('Z'), "{started}");
        assert!(
            context
                .headline()
                .contains("target scim at https://idp.example.com")
        );
    }
}
