//! Fault injection: whatever the API and the machine do, running roster again finishes the
//! job, every valid person exists exactly once, and every row's outcome is in the ledger.
//! Each test is bounded in rows and time; together they stay well under three minutes.

mod common;

use common::{TestSandbox, WorkDir, people_csv};
use roster::ledger::Entry;
use roster::sandbox::SandboxConfig;
use std::process::Child;
use std::time::{Duration, Instant};

/// `roster import people.csv` into the sandbox at `url`, in the background, with `--json`.
fn spawn_import(work: &WorkDir, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Child {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    work.spawn_import(url, "people.csv", &args, env)
}

fn ledger(work: &WorkDir, url: &str) -> Vec<Entry> {
    roster::ledger::entries(
        &work.path("roster-ledger.sqlite"),
        &format!("sandbox@{url}"),
    )
    .unwrap()
}

/// Every one of `n` people exists once on the sandbox and is `created` or `exists` in the
/// ledger; nothing is left `sending` or `failed`.
fn assert_exactly_once(server: &TestSandbox, work: &WorkDir, url: &str, n: usize) {
    let users = server.sandbox.users();
    assert_eq!(users.len(), n, "every valid user exists");
    let creations = server.sandbox.creations();
    let doubled: Vec<_> = creations.iter().filter(|(_, c)| **c != 1).collect();
    assert!(doubled.is_empty(), "created more than once: {doubled:?}");
    let entries = ledger(work, url);
    assert_eq!(entries.len(), n, "every row is in the ledger");
    let unsettled: Vec<_> = entries
        .iter()
        .filter(|e| e.state != "created" && e.state != "exists")
        .collect();
    assert!(unsettled.is_empty(), "rows not settled: {unsettled:?}");
}

/// Runs imports until one finishes cleanly (at most `runs`), as a user re-running would.
fn import_until_done(work: &WorkDir, url: &str, extra: &[&str], runs: usize) {
    for _ in 0..runs {
        let output = spawn_import(work, url, extra, &[])
            .wait_with_output()
            .unwrap();
        if output.status.code() == Some(0) {
            return;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        // 5: failures left that a re-run will retry.
        assert_eq!(output.status.code(), Some(5), "{stderr}");
    }
    panic!("not done after {runs} runs");
}

#[test]
fn twenty_thousand_rows_through_5xx_429_resets_and_lost_answers_end_exactly_once() {
    let server = TestSandbox::start(SandboxConfig {
        fail_rate: 0.10,
        throttle_rate: 0.05,
        // A pause per random 429 would serialise the run; storms are tested below.
        retry_after_secs: 0,
        reset_rate: 0.02,
        drop_after_commit_rate: 0.02,
        // A resend that is not recognised shows as a second user instead of a 409.
        allow_duplicates: true,
        seed: 20,
        ..Default::default()
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(20_000));
    let url = server.url();
    import_until_done(
        &work,
        &url,
        &["--concurrency", "32", "--max-retries", "8"],
        3,
    );
    let stats = server.sandbox.stats();
    assert!(
        stats.dropped > 300 && stats.faults > 1_500 && stats.throttled > 700,
        "{stats:?}"
    );
    assert!(
        stats.replayed > 0,
        "lost answers were replayed by idempotency key: {stats:?}"
    );
    assert_exactly_once(&server, &work, &url, 20_000);
}

#[test]
fn killed_ten_times_mid_run_then_resumed_every_user_exists_exactly_once() {
    // 8,000 rows at 5 ms each over 16 connections is about 2.5 s of sending: ten kills at
    // 100-350 ms after each start land mid-run every time.
    let server = TestSandbox::start(SandboxConfig {
        delay: Duration::from_millis(5),
        drop_after_commit_rate: 0.01,
        allow_duplicates: true,
        ..Default::default()
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(8_000));
    let url = server.url();
    let mut rng = fastrand::Rng::with_seed(7);
    for kill in 0..10 {
        let mut child = spawn_import(&work, &url, &["--concurrency", "16"], &[]);
        std::thread::sleep(Duration::from_millis(rng.u64(100..350)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "run {kill} ended before its kill"
        );
        child.kill().unwrap(); // SIGKILL: no chance to flush anything
        child.wait().unwrap();
    }
    assert!(
        server.sandbox.users().len() < 8_000,
        "the kills interrupted the import"
    );
    import_until_done(&work, &url, &["--concurrency", "16"], 3);
    assert_exactly_once(&server, &work, &url, 8_000);
}

#[test]
fn revoked_credentials_stop_the_run_within_seconds_with_every_finished_row_recorded() {
    let server = TestSandbox::start(SandboxConfig {
        token: Some("right".into()),
        ..Default::default()
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(5_000));
    let url = server.url();
    let child = spawn_import(
        &work,
        &url,
        &["--rate", "400", "--concurrency", "8"],
        &[("ROSTER_TOKEN", "right")],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.sandbox.stats().created < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.sandbox.revoke_credentials();
    let revoked = Instant::now();
    let output = child.wait_with_output().unwrap();
    let took = revoked.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "stopped {took:?} after the revocation"
    );
    assert!(
        stderr.contains("ROSTER_TOKEN"),
        "names the credential: {stderr}"
    );
    let entries = ledger(&work, &url);
    let created = entries.iter().filter(|e| e.state == "created").count() as u64;
    assert_eq!(
        created,
        server.sandbox.stats().created,
        "every finished row recorded"
    );
    assert!(entries.iter().all(|e| e.state != "sending"));
}

#[test]
fn requests_in_flight_never_exceed_the_concurrency() {
    let server = TestSandbox::start(SandboxConfig {
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(300));
    let url = server.url();
    let output = spawn_import(&work, &url, &["--concurrency", "5"], &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let peak = server.sandbox.stats().peak_in_flight;
    assert!((2..=5).contains(&peak), "peak in flight {peak}");
}

#[test]
fn a_429_storm_pauses_the_whole_run_for_retry_after() {
    let server = TestSandbox::start(SandboxConfig {
        rate: 100.0,
        retry_after_secs: 1,
        ..Default::default()
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(400));
    let url = server.url();
    let output = spawn_import(&work, &url, &["--rate", "0", "--concurrency", "16"], &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let log = server.sandbox.request_log();
    let first_429 = log
        .iter()
        .find(|r| r.status == 429)
        .expect("the limit was hit")
        .at_ms;
    // Requests already in flight when the 429 left may still land just after it; then
    // nothing, from any worker, until Retry-After has passed.
    let quiet: Vec<_> = log
        .iter()
        .filter(|r| r.at_ms > first_429 + 150 && r.at_ms < first_429 + 950)
        .collect();
    assert!(quiet.is_empty(), "requests during the pause: {quiet:?}");
    assert_eq!(server.sandbox.users().len(), 400);
}

#[test]
fn a_target_that_keeps_failing_stops_the_run_instead_of_burning_the_file() {
    let server = TestSandbox::start(SandboxConfig {
        fail_rate: 1.0,
        ..Default::default()
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(3_000));
    let url = server.url();
    let output = spawn_import(&work, &url, &["--concurrency", "8"], &[])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "try again later: {stderr}");
    assert!(stderr.contains("keeps failing"), "{stderr}");
    let requests = server.sandbox.stats().requests;
    assert!(requests < 1_000, "stopped early, after {requests} requests");
    let entries = ledger(&work, &url);
    assert!(
        entries
            .iter()
            .all(|e| e.state == "failed" || e.state == "unsent"),
        "nothing left sending: {:?}",
        entries.iter().find(|e| e.state == "sending")
    );
}
