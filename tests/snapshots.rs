//! Snapshots of what people read: `--help`, the summary (text and JSON) and the error file.
//! A change to any of them shows up as a reviewed diff (`cargo insta review`), not as a
//! surprise to the scripts and people that read them. Volatile parts (elapsed time, rate,
//! the sandbox's port) are replaced by placeholders before comparing.

#[macro_use]
mod support;

use support::WorkDir;

/// `http://127.0.0.1:PORT` with the port replaced by a placeholder.
fn regex_port(text: &str) -> String {
    match text.find("127.0.0.1:") {
        Some(at) => {
            let rest = &text[at + "127.0.0.1:".len()..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            format!("{}127.0.0.1:[port]{}", &text[..at], &rest[digits..])
        }
        None => text.to_string(),
    }
}

/// The summary with its timing line made stable.
fn stable_summary(stderr: &str) -> String {
    let start = stderr.find("roster: summary").expect("a summary on stderr");
    stderr[start..]
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("elapsed") {
                "  elapsed             [elapsed]".to_string()
            } else if let Some(start) = line.strip_prefix("roster: summary of `import` started ") {
                // The start time and the in-process sandbox's port change every run.
                let place = start.split_once(" (").map_or("", |(_, rest)| rest);
                let place = regex_port(place);
                format!("roster: summary of `import` started [time] ({place}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_help() {
    let work = WorkDir::new();
    let run = work.roster(&["--help"]);
    run.expect_code(0);
    insta::assert_snapshot!(run.stdout());
}

#[test]
fn import_help() {
    let work = WorkDir::new();
    let run = work.roster(&["import", "--help"]);
    run.expect_code(0);
    insta::assert_snapshot!(run.stdout());
}

/// One import of the sample into the built-in sandbox, one request at a time so that the
/// order of the error file's lines is the order the answers came in.
fn sample_import(work: &WorkDir, extra: &[&str]) -> support::Run {
    work.sample("people.csv");
    let mut args = vec!["import", "people.csv", "--concurrency", "1"];
    args.extend_from_slice(extra);
    let run = work.roster(&args);
    run.expect_code(1);
    run
}

#[test]
fn summary_text_and_error_file() {
    let work = WorkDir::new();
    let run = sample_import(&work, &[]);
    insta::assert_snapshot!("summary_text", stable_summary(&run.stderr()));
    insta::assert_snapshot!("error_file", work.read("people.errors.csv"));
}

#[test]
fn summary_json() {
    let work = WorkDir::new();
    let run = sample_import(&work, &["--json"]);
    let mut summary = run.json();
    for volatile in ["elapsed_s", "rows_per_s"] {
        assert!(
            summary[volatile].as_f64().is_some_and(|v| v >= 0.0),
            "{volatile} is a number{}",
            run.context()
        );
        summary[volatile] = serde_json::json!("[volatile]");
    }
    for volatile in ["started_at", "finished_at"] {
        let at = summary[volatile].as_str().unwrap_or_default();
        assert!(
            at.ends_with('Z') && at.len() == "2026-12-01T15:34:48Z".len(),
            "{volatile} is an RFC 3339 time: {at}"
        );
        summary[volatile] = serde_json::json!("[time]");
    }
    let base = summary["base_url"].as_str().unwrap_or_default().to_string();
    summary["base_url"] = serde_json::json!(regex_port(&base));
    summary["version"] = serde_json::json!("[version]");
    insta::assert_snapshot!(serde_json::to_string_pretty(&summary).unwrap());
}

#[test]
fn validate_error_file() {
    let work = WorkDir::new();
    work.sample("people.csv");
    let run = work.roster(&["validate", "people.csv"]);
    run.expect_code(1);
    insta::assert_snapshot!(work.read("people.errors.csv"));
}
