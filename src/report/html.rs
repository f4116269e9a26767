//! `--report report.html`: one self-contained page (no network assets) a person opens after a
//! migration: the totals, a chart of requests/s, 429s and refusals over time, refusals grouped
//! by column and message, and the refused rows.
//!
//! The chart is built from outcomes as they are recorded: a row's requests count in the second
//! its submission finished. The markup is well-formed XHTML-compatible HTML, so tests parse it.

use crate::model::{RowReport, join_errors};
use crate::report::Summary;
use std::collections::HashMap;
use std::fmt::Write;

/// Most refused rows listed in the page (the error file has them all).
const MAX_ROWS: usize = 1000;
/// Most distinct refusal groups kept.
const MAX_GROUPS: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Second {
    requests: u64,
    throttled: u64,
    refused: u64,
    finished: u64,
}

/// Gathers what the page shows while the run goes on; memory is bounded.
#[derive(Debug)]
pub struct ReportCollector {
    started: std::time::Instant,
    seconds: Vec<Second>,
    groups: HashMap<(String, String), u64>,
    rows: Vec<(u64, String, String)>,
}

impl Default for ReportCollector {
    fn default() -> Self {
        ReportCollector {
            started: std::time::Instant::now(),
            seconds: Vec::new(),
            groups: HashMap::new(),
            rows: Vec::new(),
        }
    }
}

impl super::Sink for ReportCollector {
    fn add(
        &mut self,
        report: &RowReport,
        _summary: &Summary,
    ) -> Result<(), crate::error::RunError> {
        let at = self.started.elapsed().as_secs();
        self.add_at(report, at);
        Ok(())
    }
}

impl ReportCollector {
    /// Adds one row's outcome, recorded `at_secs` seconds into the run.
    pub fn add_at(&mut self, report: &RowReport, at_secs: u64) {
        let at = at_secs as usize;
        if self.seconds.len() <= at {
            self.seconds.resize(at + 1, Second::default());
        }
        let second = &mut self.seconds[at];
        second.requests += u64::from(report.attempts);
        second.throttled += u64::from(report.throttled);
        second.finished += 1;
        if !report.outcome.is_refused() {
            return;
        }
        second.refused += 1;
        for error in &report.errors {
            let key = (error.column.clone(), pattern(&error.message));
            if self.groups.len() < MAX_GROUPS || self.groups.contains_key(&key) {
                *self.groups.entry(key).or_insert(0) += 1;
            }
        }
        if self.rows.len() < MAX_ROWS {
            self.rows.push((
                report.row,
                report.outcome.status_text(),
                join_errors(&report.errors),
            ));
        }
    }

    /// Renders the page.
    pub fn render(mut self, summary: &Summary, target: &str, input: &str) -> String {
        self.rows.sort_by_key(|(row, _, _)| *row);
        let mut groups: Vec<((String, String), u64)> = self.groups.into_iter().collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut html = String::with_capacity(64 * 1024);
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>roster import report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
            esc(input)
        );
        let _ = write!(
            html,
            "<h1>roster import report</h1>\n<p class=\"meta\">{} → target <b>{}</b></p>\n",
            esc(input),
            esc(target)
        );
        totals(&mut html, summary);
        chart(&mut html, &self.seconds);
        html.push_str("<h2>Refusals by column and message</h2>\n");
        if groups.is_empty() {
            html.push_str("<p>No row was refused.</p>\n");
        } else {
            html.push_str("<table id=\"groups\">\n<thead><tr><th>column</th><th>message</th><th class=\"n\">rows</th></tr></thead>\n<tbody>\n");
            for ((column, message), count) in &groups {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td class=\"n\">{count}</td></tr>",
                    esc(column),
                    esc(message)
                );
            }
            html.push_str("</tbody>\n</table>\n");
        }
        html.push_str("<h2>Refused rows</h2>\n");
        if self.rows.is_empty() {
            html.push_str("<p>None.</p>\n");
        } else {
            if summary.in_error_file() as usize > self.rows.len() {
                let _ = writeln!(
                    html,
                    "<p>The first {} of {} refused rows; the error file has them all.</p>",
                    self.rows.len(),
                    summary.in_error_file()
                );
            }
            html.push_str("<table id=\"rows\">\n<thead><tr><th class=\"n\">row</th><th>status</th><th>errors</th></tr></thead>\n<tbody>\n");
            for (row, status, errors) in &self.rows {
                let _ = writeln!(
                    html,
                    "<tr><td class=\"n\">{row}</td><td>{}</td><td>{}</td></tr>",
                    esc(status),
                    esc(errors)
                );
            }
            html.push_str("</tbody>\n</table>\n");
        }
        html.push_str("</body>\n</html>\n");
        html
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em}.meta{color:#555}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}#totals{width:auto}\
.legend span{margin-right:1.5em}.req{color:#2563eb}.thr{color:#ea580c}.ref{color:#dc2626}";

fn totals(html: &mut String, s: &Summary) {
    html.push_str("<h2>Totals</h2>\n<table id=\"totals\">\n<tbody>\n");
    let mut line = |label: &str, value: String| {
        let _ = writeln!(
            html,
            "<tr><th>{label}</th><td class=\"n\">{}</td></tr>",
            esc(&value)
        );
    };
    line("rows read", s.rows.to_string());
    line("created", s.created.to_string());
    line("already existed", s.exists.to_string());
    line("already done (ledger)", s.skipped.to_string());
    line("refused locally", (s.invalid + s.duplicates).to_string());
    line("refused by the API", s.rejected.to_string());
    line("failed", s.failed.to_string());
    line("requests sent", s.requests.to_string());
    line("retries", s.retries.to_string());
    line("429 responses", s.throttled.to_string());
    line("elapsed", format!("{:.2} s", s.elapsed_s));
    line("rows per second", format!("{:.0}", s.rows_per_s));
    html.push_str("</tbody>\n</table>\n");
}

/// A chart line: its class, colour and the value it plots.
type Series = (&'static str, &'static str, fn(&Second) -> u64);

/// An inline SVG line chart of requests, 429s and refusals per second.
fn chart(html: &mut String, seconds: &[Second]) {
    const W: f64 = 800.0;
    const H: f64 = 220.0;
    const PAD: f64 = 40.0;
    html.push_str("<h2>Over time (per second)</h2>\n");
    let peak = seconds
        .iter()
        .map(|s| s.requests.max(s.throttled).max(s.refused))
        .max()
        .unwrap_or(0)
        .max(1);
    let n = seconds.len().max(2);
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n - 1) as f64;
    let y = |v: u64| H - PAD - (H - 2.0 * PAD) * v as f64 / peak as f64;
    let _ = writeln!(
        html,
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"requests, 429s and refusals per second\">"
    );
    let _ = writeln!(
        html,
        "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#999\"/>",
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
    let _ = writeln!(
        html,
        "<text x=\"4\" y=\"{}\" font-size=\"11\">{peak}</text><text x=\"4\" y=\"{}\" font-size=\"11\">0</text>",
        PAD + 4.0,
        H - PAD
    );
    let _ = writeln!(
        html,
        "<text x=\"{PAD}\" y=\"{}\" font-size=\"11\">0 s</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{} s</text>",
        H - PAD + 16.0,
        W - PAD,
        H - PAD + 16.0,
        seconds.len()
    );
    let series: [Series; 3] = [
        ("requests", "#2563eb", |s| s.requests),
        ("throttled", "#ea580c", |s| s.throttled),
        ("refused", "#dc2626", |s| s.refused),
    ];
    for (name, colour, value) in series {
        let mut points = String::new();
        let values: Vec<u64> = if seconds.len() == 1 {
            vec![value(&seconds[0]); 2]
        } else {
            seconds.iter().map(value).collect()
        };
        for (i, v) in values.iter().enumerate() {
            let _ = write!(points, "{:.1},{:.1} ", x(i), y(*v));
        }
        let _ = writeln!(
            html,
            "<polyline class=\"{name}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.trim_end()
        );
    }
    html.push_str("</svg>\n<p class=\"legend\"><span class=\"req\">━ requests/s</span><span class=\"thr\">━ 429s/s</span><span class=\"ref\">━ refused rows/s</span></p>\n");
}

/// A message with its quoted values replaced by `…`, so refusals of one kind group together.
fn pattern(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '`' || c == '\'' && !out.ends_with(|p: char| p.is_alphanumeric()) => {
                out.push(c);
                out.push('…');
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    if quote.is_some() {
        return message.to_string();
    }
    out
}

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            // Shown, not obeyed: an override in a refused cell must not reorder the report.
            c if crate::values::is_direction_control(c) => {
                out.push_str(&format!("[U+{:04X}]", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_grouped_away() {
        assert_eq!(pattern("`ann.example.com` has no `@`"), "`…` has no `…`");
        assert_eq!(
            pattern("'x' is not a valid email address."),
            "'…' is not a valid email address."
        );
        assert_eq!(pattern("O'Brien's name"), "O'Brien's name");
        assert_eq!(pattern("is required"), "is required");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("Ann\u{202E}Lee"), "Ann[U+202E]Lee");
    }
}
