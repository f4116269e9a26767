//! Fault injection: whatever the API and the machine do, running roster again finishes the
//! job, every valid person exists exactly once, and every row's outcome is in the ledger.
//! Each test is bounded in rows and time; together they stay well under three minutes.

#[macro_use]
mod support;

use roster::ledger::Entry;
use roster_sandbox::SandboxConfig;
use std::process::Child;
use std::time::{Duration, Instant};
use support::hostile::{Hostile, Reply};
use support::{TestSandbox, WorkDir, people_csv};

/// The ledger a test runs on: the default SQLite file, or a PostgreSQL database.
enum OnLedger {
    Sqlite,
    Postgres(String),
}

impl OnLedger {
    /// A fresh database on the PostgreSQL test server; `None` when there is none (the test
    /// is then skipped, saying so).
    fn postgres(name: &str) -> Option<OnLedger> {
        Some(OnLedger::Postgres(
            support::postgres::server()?.database(name),
        ))
    }

    fn args(&self) -> Vec<&str> {
        match self {
            OnLedger::Sqlite => Vec::new(),
            OnLedger::Postgres(url) => vec!["--ledger", url],
        }
    }

    fn env(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            OnLedger::Sqlite => Vec::new(),
            OnLedger::Postgres(_) => vec![("PGPASSWORD", support::postgres::PASSWORD)],
        }
    }

    fn entries(&self, work: &WorkDir, url: &str) -> Vec<Entry> {
        let key = format!("sandbox@{url}");
        match self {
            OnLedger::Sqlite => {
                roster::ledger::entries(&work.path("roster-ledger.sqlite"), &key).unwrap()
            }
            OnLedger::Postgres(ledger) => {
                let location = roster::ledger::postgres::PgLocation::parse_with(ledger, &|name| {
                    (name == "PGPASSWORD").then(|| support::postgres::PASSWORD.to_string())
                })
                .unwrap();
                roster::ledger::postgres::entries(&location, &key).unwrap()
            }
        }
    }
}

/// `roster import people.csv` into the sandbox at `url`, in the background, with `--json`.
fn spawn_import(work: &WorkDir, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Child {
    spawn_import_on(&OnLedger::Sqlite, work, url, extra, env)
}

fn spawn_import_on(
    on: &OnLedger,
    work: &WorkDir,
    url: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let mut args = vec!["--json"];
    args.extend(on.args());
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.extend(on.env());
    work.spawn_import(url, "people.csv", &args, &env)
}

fn ledger(work: &WorkDir, url: &str) -> Vec<Entry> {
    OnLedger::Sqlite.entries(work, url)
}

/// Every one of `n` people exists once on the sandbox and is `created` or `exists` in the
/// ledger; nothing is left `sending` or `failed`.
fn assert_exactly_once(on: &OnLedger, server: &TestSandbox, work: &WorkDir, url: &str, n: usize) {
    let users = server.sandbox.users();
    assert_eq!(users.len(), n, "every valid user exists");
    let creations = server.sandbox.creations();
    let doubled: Vec<_> = creations.iter().filter(|(_, c)| **c != 1).collect();
    assert!(doubled.is_empty(), "created more than once: {doubled:?}");
    let entries = on.entries(work, url);
    assert_eq!(entries.len(), n, "every row is in the ledger");
    let unsettled: Vec<_> = entries
        .iter()
        .filter(|e| e.state != "created" && e.state != "exists")
        .collect();
    assert!(unsettled.is_empty(), "rows not settled: {unsettled:?}");
}

/// Every line of the password file holds the password the sandbox received for that person
/// (whether the line says `created` or `unconfirmed`: with derived passwords, a resend
/// carries the same one), and every person created has a line.
fn assert_password_file_true(server: &TestSandbox, work: &WorkDir, n: usize) {
    let text = std::fs::read_to_string(work.path("pw.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut people = std::collections::BTreeSet::new();
    for record in reader.records() {
        let record = record.unwrap();
        assert!(
            server
                .sandbox
                .holds_password(roster_sandbox::Profile::Sandbox, &record[0], &record[1]),
            "{}: the password file's password is not the one the server holds",
            &record[0]
        );
        people.insert(record[0].to_string());
    }
    assert_eq!(people.len(), n, "one person per line, every person created");
}

/// Runs imports until one finishes cleanly (at most `runs`), as a user re-running would.
fn import_until_done(on: &OnLedger, work: &WorkDir, url: &str, extra: &[&str], runs: usize) {
    for _ in 0..runs {
        let output = spawn_import_on(on, work, url, extra, &[])
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
    through_faults_exactly_once(OnLedger::Sqlite);
}

#[test]
fn on_postgres_twenty_thousand_rows_through_faults_end_exactly_once() {
    if let Some(on) = OnLedger::postgres("faults") {
        through_faults_exactly_once(on);
    }
}

fn through_faults_exactly_once(on: OnLedger) {
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
        &on,
        &work,
        &url,
        &[
            "--concurrency",
            "32",
            "--max-retries",
            "8",
            "--generate-passwords",
            "pw.csv",
        ],
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
    assert_exactly_once(&on, &server, &work, &url, 20_000);
    assert_password_file_true(&server, &work, 20_000);
}

#[test]
fn killed_ten_times_mid_run_then_resumed_every_user_exists_exactly_once() {
    killed_then_resumed_exactly_once(OnLedger::Sqlite);
}

#[test]
fn on_postgres_killed_ten_times_mid_run_then_resumed_every_user_exists_exactly_once() {
    if let Some(on) = OnLedger::postgres("killed") {
        killed_then_resumed_exactly_once(on);
    }
}

fn killed_then_resumed_exactly_once(on: OnLedger) {
    // 8,000 rows over ten runs: each run is killed once the server has seen between 50 and
    // 400 more people created, so every kill lands mid-run whatever the machine's speed.
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
    let args = ["--concurrency", "16", "--generate-passwords", "pw.csv"];
    for kill in 0..10 {
        let target = server.sandbox.users().len() + rng.usize(50..400);
        let mut child = spawn_import_on(&on, &work, &url, &args, &[]);
        support::wait_for("people created before the kill", || {
            server.sandbox.users().len() >= target
        });
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
    import_until_done(&on, &work, &url, &args, 3);
    assert_exactly_once(&on, &server, &work, &url, 8_000);
    assert_password_file_true(&server, &work, 8_000);
}

sandbox_test!(
    revoked_credentials_stop_the_run_within_seconds_with_every_finished_row_recorded,
    SandboxConfig {
        token: Some("right".into()),
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(5_000));
        let url = server.url();
        let child = spawn_import(
            &work,
            &url,
            &["--rate", "400", "--concurrency", "8"],
            &[("ROSTER_TOKEN", "right")],
        );
        support::wait_for("200 people created", || {
            server.sandbox.stats().created >= 200
        });
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
);

sandbox_test!(
    requests_in_flight_never_exceed_the_concurrency,
    SandboxConfig {
        delay: Duration::from_millis(20),
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(300));
        let url = server.url();
        let output = spawn_import(&work, &url, &["--concurrency", "5"], &[])
            .wait_with_output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0));
        let peak = server.sandbox.stats().peak_in_flight;
        assert!((2..=5).contains(&peak), "peak in flight {peak}");
    }
);

sandbox_test!(
    a_429_storm_pauses_the_whole_run_for_retry_after,
    SandboxConfig {
        rate: 100.0,
        retry_after_secs: 1,
        ..Default::default()
    },
    |server, work| {
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
);

sandbox_test!(
    a_target_that_keeps_failing_stops_the_run_instead_of_burning_the_file,
    SandboxConfig {
        fail_rate: 1.0,
        ..Default::default()
    },
    |server, work| {
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
);

/// Every row of the `--json` summary has exactly one outcome.
fn assert_accounted(json: &serde_json::Value) {
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
    assert_eq!(
        json["rows"].as_u64(),
        Some(sum),
        "rows = the sum of outcomes: {json}"
    );
}

/// The fault suite: servers that answer what no API documents. Each run ends with a
/// documented exit code, every row has one outcome, and nothing is left `sending`.
#[test]
fn hostile_answers_end_with_a_documented_code_and_every_row_accounted_for() {
    let elsewhere = Hostile::start(|_| Reply::json(201, serde_json::json!({"id": "stolen"})));
    let other_host = elsewhere.url().replace("127.0.0.1", "localhost");
    type Handler = Box<dyn Fn(&support::hostile::Seen) -> Reply + Send + Sync>;
    let cases: Vec<(&str, Handler, i32)> = vec![
        (
            "a 201 with no id",
            Box::new(|_| Reply::json(201, serde_json::json!({"ok": true}))),
            3,
        ),
        (
            "a 200 with an empty body",
            Box::new(|_| Reply::raw(200, &[], "")),
            3,
        ),
        (
            "a 200 web page",
            Box::new(|_| Reply::raw(200, &[("content-type", "text/html")], "<html>hi</html>")),
            3,
        ),
        (
            "a 400 with a 10 MB body",
            Box::new(|_| {
                let message = "x".repeat(10 << 20);
                Reply::json(400, serde_json::json!({"errors": {"lastName": [message]}}))
            }),
            1,
        ),
        (
            "an endless body",
            Box::new(|_| Reply::EndlessBody { status: 200 }),
            3,
        ),
        ("a hang past --timeout", Box::new(|_| Reply::Hang), 5),
        (
            "a close after the headers",
            Box::new(|_| Reply::CloseAfterHeaders { status: 201 }),
            5,
        ),
        (
            "a redirect to another host",
            Box::new(move |_| {
                Reply::raw(
                    307,
                    &[("location", &format!("{other_host}/users?token=s3cret"))],
                    "",
                )
            }),
            3,
        ),
    ];
    for (what, handler, code) in cases {
        let server = Hostile::start(handler);
        let work = WorkDir::new();
        work.write("people.csv", &people_csv(12));
        let url = server.url();
        let started = Instant::now();
        // A short timeout where the server hangs; elsewhere room for a 10 MB answer.
        let timeout = if what.contains("hang") { "1" } else { "10" };
        let run = work.import_to(
            &url,
            "people.csv",
            &[
                "--json",
                "--max-retries",
                "1",
                "--timeout",
                timeout,
                "--concurrency",
                "4",
            ],
        );
        assert_eq!(run.code(), code, "{what}: exit code{}", run.context());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: took {:?}",
            started.elapsed()
        );
        assert!(
            !run.stderr().contains("panicked"),
            "{what}{}",
            run.context()
        );
        assert_accounted(&run.json());
        let entries = ledger(&work, &url);
        assert!(
            entries.iter().all(|e| e.state != "sending"),
            "{what}: nothing left sending: {entries:?}"
        );
        let errors = std::fs::read(work.path("people.errors.csv")).unwrap_or_default();
        assert!(
            errors.len() < 200_000,
            "{what}: error file of {} bytes",
            errors.len()
        );
        assert!(
            !String::from_utf8_lossy(&errors).contains("s3cret"),
            "{what}: a redirect's query is not repeated"
        );
    }
    assert_eq!(elsewhere.count("POST"), 0, "nothing followed the redirect");
}

sandbox_test!(
    an_untuned_run_against_a_server_at_capacity_backs_off_and_says_why,
    SandboxConfig {
        // Four workers, 10 ms a create: beyond four in flight, requests queue and some
        // answer 500 after their user was created (as Redmine's "database is locked").
        capacity: 4,
        delay: Duration::from_millis(10),
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(800));
        let url = server.url();
        // No --rate, no --concurrency: the limit starts at 8, above the server's four.
        let output = spawn_import(&work, &url, &["--rate", "0"], &[])
            .wait_with_output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{stdout}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let concurrency = &json["concurrency"];
        assert_eq!(concurrency["ceiling"], 64, "{json}");
        assert!(concurrency["lowered"].as_u64().unwrap() >= 1, "{json}");
        assert!(concurrency["lowest"].as_u64().unwrap() < 8, "{json}");
        let why = concurrency["why"].as_str().unwrap_or("");
        assert!(why.contains("5xx") || why.contains("latency"), "{json}");
        assert!(
            server.sandbox.stats().failed_after_commit > 0,
            "the server did fail after commits"
        );
        // Those 500s came after the commit: every person exists once all the same.
        assert_eq!(server.sandbox.users().len(), 800);
        assert!(server.sandbox.creations().values().all(|c| *c == 1));
    }
);
