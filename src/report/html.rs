//! `--report report.html`: one self-contained page (no network assets) a person keeps after a
//! migration: an outcome banner, when and against what the run went (target, base URL,
//! ledger, version, the settings that shaped it), the totals, a chart of requests/s, 429s and
//! refusals over time, refusals grouped by column and message (every in-file duplicate as
//! one group), and the refused rows with their email and name.
//!
//! The chart is built from outcomes as they are recorded: a row's requests count in the second
//! its submission finished. The markup is well-formed XHTML-compatible HTML, so tests parse it.

use crate::model::{ErrorCode, RowReport, join_errors};
use crate::report::Summary;
use std::collections::HashMap;
use std::fmt::Write;
use std::time::SystemTime;

/// Most refused rows listed in the page (the error file has them all).
const MAX_ROWS: usize = 1000;
/// Most distinct refusal groups kept.
const MAX_GROUPS: usize = 10_000;
/// Most points a chart line has: a long run is drawn in buckets of several seconds.
const MAX_POINTS: usize = 240;

#[derive(Debug, Clone, Copy, Default)]
struct Second {
    requests: u64,
    throttled: u64,
    refused: u64,
    finished: u64,
}

/// The columns of the user's file a refused row is shown by.
#[derive(Debug, Clone, Default)]
pub struct RowColumns {
    /// The email column.
    pub email: Option<usize>,
    /// The name columns (first and last, or full name), in order.
    pub names: Vec<usize>,
}

/// What the page says about the run besides its rows.
#[derive(Debug, Clone)]
pub struct ReportMeta {
    /// The input as the user named it.
    pub input: String,
    /// The target's name.
    pub target: String,
    /// Where it sent (none for a validation).
    pub base_url: Option<String>,
    /// The ledger, as the summary names it.
    pub ledger: String,
    /// `import`, `dry run` or `validation`.
    pub mode: &'static str,
    /// When the run started.
    pub started_at: SystemTime,
    /// Attempts per second (0: no limit).
    pub rate: f64,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Why the run stopped early: its label and message.
    pub stopped: Option<(String, String)>,
}

/// A refused row as the page lists it.
#[derive(Debug)]
struct ListedRow {
    row: u64,
    status: String,
    email: String,
    name: String,
    errors: String,
}

/// Gathers what the page shows while the run goes on; memory is bounded.
#[derive(Debug)]
pub struct ReportCollector {
    started: std::time::Instant,
    seconds: Vec<Second>,
    groups: HashMap<(String, String), u64>,
    rows: Vec<ListedRow>,
    columns: RowColumns,
}

impl Default for ReportCollector {
    fn default() -> Self {
        ReportCollector::new(RowColumns::default())
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
    /// A collector that shows refused rows by the cells of `columns`.
    pub fn new(columns: RowColumns) -> ReportCollector {
        ReportCollector {
            started: std::time::Instant::now(),
            seconds: Vec::new(),
            groups: HashMap::new(),
            rows: Vec::new(),
            columns,
        }
    }

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
            // Every repeat of an earlier row is one kind of refusal, whichever row it repeats.
            let key = match error.code {
                ErrorCode::Duplicate => (
                    "(identity)".to_string(),
                    "duplicate of an earlier row in the file".to_string(),
                ),
                _ => (error.column.clone(), pattern(&error.message)),
            };
            if self.groups.len() < MAX_GROUPS || self.groups.contains_key(&key) {
                *self.groups.entry(key).or_insert(0) += 1;
            }
        }
        if self.rows.len() < MAX_ROWS {
            let cell = |i: usize| report.cells.get(i).map_or("", String::as_str);
            let name: Vec<&str> = self
                .columns
                .names
                .iter()
                .map(|&i| cell(i).trim())
                .filter(|n| !n.is_empty())
                .collect();
            self.rows.push(ListedRow {
                row: report.row,
                status: report.outcome.status_text(),
                email: self.columns.email.map_or("", cell).trim().to_string(),
                name: name.join(" "),
                errors: join_errors(&report.errors),
            });
        }
    }

    /// Renders the page.
    pub fn render(mut self, summary: &Summary, meta: &ReportMeta) -> String {
        self.rows.sort_by_key(|r| r.row);
        let mut groups: Vec<((String, String), u64)> = self.groups.into_iter().collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut html = String::with_capacity(64 * 1024);
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>roster {}: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
            esc(meta.mode),
            esc(&meta.input)
        );
        let _ = write!(
            html,
            "<h1>roster {} report</h1>\n<p class=\"meta\">{} → target <b>{}</b></p>\n",
            esc(meta.mode),
            esc(&meta.input),
            esc(&meta.target)
        );
        banner(&mut html, summary, meta);
        run_facts(&mut html, summary, meta);
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
            html.push_str("<table id=\"rows\">\n<thead><tr><th class=\"n\">row</th><th>status</th><th>email</th><th>name</th><th>errors</th></tr></thead>\n<tbody>\n");
            for r in &self.rows {
                let _ = writeln!(
                    html,
                    "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    r.row,
                    esc(&r.status),
                    esc(&r.email),
                    esc(&r.name),
                    esc(&r.errors)
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
td{overflow-wrap:anywhere}#rows td:nth-child(2),#rows td:nth-child(3){overflow-wrap:normal;white-space:nowrap}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;overflow-wrap:normal}#totals,#run{width:auto}\
#banner{padding:.8em 1em;border-radius:6px;font-size:1.15em;margin:1em 0}\
.ok{background:#dcfce7;border:1px solid #16a34a}.warn{background:#fef9c3;border:1px solid #ca8a04}\
.bad{background:#fee2e2;border:1px solid #dc2626}.info{background:#e0f2fe;border:1px solid #0284c7}\
.legend span{margin-right:1.5em}.req{color:#2563eb}.thr{color:#ea580c}.ref{color:#dc2626}";

/// The outcome in one sentence, coloured by how it went.
fn banner(html: &mut String, s: &Summary, meta: &ReportMeta) {
    let refused = s.in_error_file() - s.failed;
    let (class, text) = match (&meta.stopped, s.would_send) {
        (Some((label, message)), _) => (
            "bad",
            format!(
                "Stopped ({label}): {message}. Created {} of {} rows; {refused} refused, {} failed, {} not processed.",
                s.created_all(),
                s.rows,
                s.failed,
                s.not_processed
            ),
        ),
        (None, Some(would)) => (
            "info",
            format!(
                "A {} only: nothing was sent. {would} of {} rows would be sent; {refused} refused.",
                meta.mode, s.rows
            ),
        ),
        (None, None) => {
            let class = match (refused, s.failed + s.not_processed) {
                (0, 0) => "ok",
                (_, 0) => "warn",
                _ => "bad",
            };
            (
                class,
                format!(
                    "Created {} of {} rows; {} already existed, {} already done; {refused} refused, {} failed.",
                    s.created_all(),
                    s.rows,
                    s.exists,
                    s.skipped,
                    s.failed
                ),
            )
        }
    };
    let _ = writeln!(
        html,
        "<p id=\"banner\" class=\"{class}\">{}</p>",
        esc(&text)
    );
}

/// When, against what and how the run went.
fn run_facts(html: &mut String, s: &Summary, meta: &ReportMeta) {
    html.push_str("<h2>The run</h2>\n<table id=\"run\">\n<tbody>\n");
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(html, "<tr><th>{label}</th><td>{}</td></tr>", esc(value));
    };
    line("started", &super::run_record::rfc3339(meta.started_at));
    line("duration", &format!("{:.1} s", s.elapsed_s));
    line("command", meta.mode);
    line("input", &meta.input);
    line("target", &meta.target);
    line(
        "endpoint",
        meta.base_url.as_deref().unwrap_or("(none: nothing sent)"),
    );
    line("ledger", &meta.ledger);
    line("roster version", env!("CARGO_PKG_VERSION"));
    // A validation sends nothing: no pace to report.
    if meta.base_url.is_some() {
        let rate = match meta.rate {
            r if r > 0.0 => format!("{r}/s"),
            _ => "no limit".to_string(),
        };
        line("rate", &rate);
        line("concurrency", &meta.concurrency.to_string());
    }
    html.push_str("</tbody>\n</table>\n");
}

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
    if let Some(would) = s.would_send {
        line("would be sent", would.to_string());
    } else {
        line("created", s.created.to_string());
        line("already existed", s.exists.to_string());
    }
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

const SERIES: [Series; 3] = [
    ("requests", "#2563eb", |s| s.requests),
    ("throttled", "#ea580c", |s| s.throttled),
    ("refused", "#dc2626", |s| s.refused),
];

/// An inline SVG chart of requests, 429s and refusals per second: lines over time for a run
/// of a few seconds or more (a long run in buckets of several seconds, each the bucket's
/// average per second), side-by-side bars for a run too short to draw a line through.
fn chart(html: &mut String, seconds: &[Second]) {
    const W: f64 = 800.0;
    const H: f64 = 220.0;
    const PAD: f64 = 44.0;
    html.push_str("<h2>Over time (per second)</h2>\n");
    let bucket = seconds.len().div_ceil(MAX_POINTS).max(1);
    let points: Vec<[f64; 3]> = seconds
        .chunks(bucket)
        .map(|chunk| {
            let per_s = |f: fn(&Second) -> u64| {
                chunk.iter().map(f).sum::<u64>() as f64 / chunk.len() as f64
            };
            [per_s(SERIES[0].2), per_s(SERIES[1].2), per_s(SERIES[2].2)]
        })
        .collect();
    let peak = points
        .iter()
        .flat_map(|p| p.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0);
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / peak;
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
        "<text x=\"4\" y=\"{}\" font-size=\"11\">{}/s</text><text x=\"4\" y=\"{}\" font-size=\"11\">0</text>",
        PAD + 4.0,
        round(peak),
        H - PAD
    );
    let _ = writeln!(
        html,
        "<text x=\"{PAD}\" y=\"{}\" font-size=\"11\">0</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        H - PAD + 16.0,
        W - PAD,
        H - PAD + 16.0,
        clock(seconds.len())
    );
    if points.len() < 3 {
        // Too short for a line: one group of bars per second.
        let slot = (W - 2.0 * PAD) / points.len().max(1) as f64;
        let bar = slot / 4.0;
        for (i, p) in points.iter().enumerate() {
            for (k, (name, colour, _)) in SERIES.iter().enumerate() {
                let x = PAD + slot * i as f64 + bar * (k as f64 + 0.5);
                let _ = writeln!(
                    html,
                    "<rect class=\"{name}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>",
                    y(p[k]),
                    H - PAD - y(p[k])
                );
            }
        }
    } else {
        let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (points.len() - 1) as f64;
        for (k, (name, colour, _)) in SERIES.iter().enumerate() {
            let mut line = String::new();
            for (i, p) in points.iter().enumerate() {
                let _ = write!(line, "{:.1},{:.1} ", x(i), y(p[k]));
            }
            let _ = writeln!(
                html,
                "<polyline class=\"{name}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                line.trim_end()
            );
        }
    }
    let per = match bucket {
        1 => String::new(),
        b => format!(" (each point: the average of {b} s)"),
    };
    let _ = writeln!(
        html,
        "</svg>\n<p class=\"legend\"><span class=\"req\">━ requests/s</span><span class=\"thr\">━ 429s/s</span><span class=\"ref\">━ refused rows/s</span>{}</p>",
        esc(&per)
    );
}

/// `9.5`, `120`.
fn round(v: f64) -> String {
    match v < 10.0 {
        true => format!("{:.1}", v),
        false => format!("{:.0}", v),
    }
}

/// A run's length on the time axis: `42 s`, `12 min`, `3 h 5 min`.
fn clock(secs: usize) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// A message with the user's value (its first quoted part) replaced by `…`, so refusals of
/// one kind group together and stay readable: "`ann.example.com` has no `@`" → "`…` has no `@`".
fn pattern(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    let mut elided = false;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if !elided
                && (c == '`' || c == '\'' && !out.ends_with(|p: char| p.is_alphanumeric())) =>
            {
                out.push(c);
                out.push('…');
                quote = Some(c);
                elided = true;
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
pub fn esc(text: &str) -> String {
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
        assert_eq!(pattern("`ann.example.com` has no `@`"), "`…` has no `@`");
        assert_eq!(
            pattern("`superuser` is not a known role (user, organization-admin)"),
            "`…` is not a known role (user, organization-admin)"
        );
        assert_eq!(
            pattern("'x' is not a valid email address."),
            "'…' is not a valid email address."
        );
        assert_eq!(pattern("O'Brien's name"), "O'Brien's name");
        assert_eq!(pattern("is required"), "is required");
    }

    #[test]
    fn a_long_run_is_charted_in_buckets_and_a_short_one_in_bars() {
        let mut long = String::new();
        let second = Second {
            requests: 10,
            ..Second::default()
        };
        chart(&mut long, &vec![second; 3600]);
        let points = long
            .split("points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .unwrap();
        assert_eq!(points.split(' ').count(), 240, "{long}");
        assert!(long.contains("each point: the average of 15 s"), "{long}");
        assert!(long.contains(">60 min<"), "{long}");
        assert!(long.contains(">10/s<"), "the scale is per second: {long}");
        let mut short = String::new();
        chart(&mut short, &[second]);
        assert!(!short.contains("<polyline") && short.matches("<rect").count() == 3);
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
