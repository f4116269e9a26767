//! One regression test per bug of the trust issue (#14): each failed on 4094632.
//!
//! They run the real binary against a server on 127.0.0.1 (the sandbox, or a small hostile
//! server from `common::hostile`) and assert on what the server received, the ledger, the
//! outputs and the exit code.

mod common;

use common::hostile::{Hostile, Reply};
use common::{TestSandbox, WorkDir, people_csv};
use roster::sandbox::SandboxConfig;
use std::process::Stdio;

/// The ledger's entries for the sandbox target at `url`.
fn entries(work: &WorkDir, url: &str) -> Vec<roster::ledger::Entry> {
    roster::ledger::entries(
        &work.path("roster-ledger.sqlite"),
        &format!("sandbox@{url}"),
    )
    .unwrap()
}

/// Every row of the `--json` summary is accounted for by exactly one outcome.
fn assert_accounted(json: &serde_json::Value) {
    let rows = json["rows"].as_u64().unwrap();
    let outcomes = [
        "created",
        "created_unconfirmed",
        "exists",
        "skipped",
        "invalid",
        "duplicates",
        "rejected",
        "still_refused",
        "failed",
        "not_processed",
    ];
    let sum: u64 = outcomes
        .iter()
        .map(|k| json[*k].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(rows, sum, "rows read = the sum of all outcomes: {json}");
}

// ---- 1. A server's numbers panic the sender and the run exits 0 ---------------------------

#[test]
fn item01_a_retry_after_of_1e20_stops_the_run_with_try_again_later_not_a_panic() {
    let server = Hostile::start(|_| {
        Reply::json_with(
            429,
            &[("retry-after", "100000000000000000000")],
            serde_json::json!({"message": "slow down"}),
        )
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(5));
    let url = server.url();
    let run = work.import_to(&url, "people.csv", &["--json"]);
    run.expect_code(5);
    let stderr = run.stderr();
    assert!(!stderr.contains("panicked"), "{}", run.context());
    assert!(stderr.contains("Retry-After"), "{}", run.context());
    assert_accounted(&run.json());
    assert!(
        entries(&work, &url).iter().all(|e| e.state != "sending"),
        "nothing left sending{}",
        run.context()
    );
}

#[test]
fn item01_hostile_reset_headers_and_token_lifetimes_do_not_panic() {
    for (name, value) in [
        ("x-ratelimit-reset", "100000000000000000000"),
        ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("ratelimit", "limit=10, remaining=0, reset=1e300"),
        ("retry-after", "soon, maybe"),
    ] {
        let server =
            Hostile::start(move |_| Reply::json_with(429, &[(name, value)], serde_json::json!({})));
        let work = WorkDir::new();
        work.write("people.csv", &people_csv(2));
        let run = work.import_to(
            &server.url(),
            "people.csv",
            &["--json", "--max-retries", "1"],
        );
        assert!(
            !run.stderr().contains("panicked"),
            "{name}: {}",
            run.context()
        );
        assert!(
            [5].contains(&run.code()),
            "{name}: a documented code{}",
            run.context()
        );
        assert_accounted(&run.json());
    }
    // A token that says it lives 1e300 seconds.
    let server = Hostile::start(|seen| match seen.path.as_str() {
        "/iam/tokens" => Reply::json(
            200,
            serde_json::json!({"access_token": "t", "expires_in": 1e300, "token_type": "bearer"}),
        ),
        _ => Reply::json(201, serde_json::json!({"id": "u1"})),
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(2));
    let env = [
        ("ROSTER_REALM", "r"),
        ("ROSTER_CLIENT_ID", "c"),
        ("ROSTER_CLIENT_SECRET", "s"),
    ];
    let run = work.roster_with_env(
        &[
            "import",
            "people.csv",
            "--target",
            "nexway",
            "--base-url",
            &server.url(),
            "--generate-passwords",
            "pw.csv",
            "--json",
        ],
        &env,
    );
    assert!(!run.stderr().contains("panicked"), "{}", run.context());
    run.expect_code(0);
}

// ---- 2. A closed pipe is treated as a crash -----------------------------------------------

/// Runs the binary with its stdout a pipe whose reading end is already closed.
fn with_closed_stdout(work: &WorkDir, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    work.command(args, &[])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn item02_a_closed_pipe_ends_quietly_with_exit_0() {
    let server = TestSandbox::start(SandboxConfig::default());
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(50));
    work.import_to(&server.url(), "people.csv", &[])
        .expect_code(0);
    for args in [
        vec!["targets"],
        vec!["validate", "people.csv", "--json"],
        vec!["ledger", "export"],
        vec!["ledger", "stats"],
    ] {
        let out = with_closed_stdout(&work, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}
