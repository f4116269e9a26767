//! The results ledger in PostgreSQL, against a real server the tests start themselves
//! (`support::postgres`): the same answers as the SQLite ledger, one run per target across
//! hosts, a copy from SQLite that resumes where it was, and a password that appears nowhere.
//! The fault and SIGKILL suites run on it in `tests/faults.rs`.

#[macro_use]
mod support;

use roster_sandbox::SandboxConfig;
use std::time::Duration;
use support::postgres::{self, PASSWORD};
use support::{TestSandbox, WorkDir, people_csv};

const PG_ENV: [(&str, &str); 1] = [("PGPASSWORD", PASSWORD)];

/// The PostgreSQL test server, or `return` from the test when this machine has none.
macro_rules! pg_or_skip {
    () => {
        match postgres::server() {
            Some(server) => server,
            None => return,
        }
    };
}

fn import(work: &WorkDir, url: &str, ledger: &str, extra: &[&str]) -> support::Run {
    let mut args = WorkDir::import_args(url, "people.csv", &["--ledger", ledger, "--json"]);
    args.extend_from_slice(extra);
    work.roster_with_env(&args, &PG_ENV)
}

/// `roster ledger copy --from FROM --to TO`, with the server's password.
fn ledger_copy(work: &WorkDir, from: &str, to: &str) -> support::Run {
    work.roster_with_env(&["ledger", "copy", "--from", from, "--to", to], &PG_ENV)
}

fn entries(ledger: &str, url: &str) -> Vec<roster::ledger::Entry> {
    let location = roster::ledger::postgres::PgLocation::parse_with(ledger, &|name| {
        (name == "PGPASSWORD").then(|| PASSWORD.to_string())
    })
    .unwrap();
    roster::ledger::postgres::entries(&location, &format!("sandbox@{url}")).unwrap()
}

/// A file with every kind of row: valid, a repeat, one refused locally.
fn mixed_csv() -> String {
    let mut csv = people_csv(300);
    csv.push_str("First0,Last0,person0@example.com,+14155550000\nBad,Row,not-an-email,\n");
    csv
}

/// Import, re-import, dry run: each run's exit code and the counts of its `--json` summary.
fn three_runs(work: &WorkDir, url: &str, ledger: &[&str]) -> Vec<(i32, Vec<(String, u64)>)> {
    let mut seen = Vec::new();
    for extra in [&[][..], &[][..], &["--dry-run"][..]] {
        let mut args = WorkDir::import_args(url, "people.csv", &["--json"]);
        args.extend_from_slice(ledger);
        args.extend_from_slice(extra);
        let run = work.roster_with_env(&args, &PG_ENV);
        let json = run.json();
        let counts = json
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| v.is_u64() && !k.contains("elapsed"))
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        seen.push((run.code(), counts));
    }
    seen
}

#[test]
fn an_import_on_postgres_answers_exactly_as_on_sqlite_and_a_rerun_sends_nothing() {
    let pg = pg_or_skip!();
    let ledger = pg.database("answers");
    let (on_sqlite, on_postgres) = (
        TestSandbox::start(SandboxConfig::default()),
        TestSandbox::start(SandboxConfig::default()),
    );
    let (work_sqlite, work) = (WorkDir::new(), WorkDir::new());
    work_sqlite.write("people.csv", &mixed_csv());
    work.write("people.csv", &mixed_csv());
    let sqlite = three_runs(&work_sqlite, &on_sqlite.url(), &[]);
    let url = on_postgres.url();
    let postgres = three_runs(&work, &url, &["--ledger", &ledger]);
    assert_eq!(
        postgres, sqlite,
        "the same exit codes and counts, run by run"
    );
    let created = |runs: &[(i32, Vec<(String, u64)>)], i: usize| {
        runs[i]
            .1
            .iter()
            .find(|(k, _)| k == "created")
            .map(|(_, v)| *v)
    };
    assert_eq!(created(&postgres, 0), Some(300));
    assert_eq!(created(&postgres, 1), Some(0));
    assert_eq!(
        on_postgres.sandbox.stats().requests,
        on_sqlite.sandbox.stats().requests,
        "the re-run and the dry run sent nothing"
    );
    // Entry by entry, the same record (remote ids aside: two servers numbered them).
    let e = entries(&ledger, &url);
    let key = format!("sandbox@{}", on_sqlite.url());
    let sqlite_entries = roster::ledger::entries(&work_sqlite.path("roster-ledger.sqlite"), &key);
    let strip = |e: &[roster::ledger::Entry]| -> Vec<_> {
        e.iter()
            .map(|e| {
                (
                    e.identity.clone(),
                    e.state.clone(),
                    e.http_status,
                    e.attempts,
                    e.source_row,
                    e.remote_id.is_some(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&e), strip(&sqlite_entries.unwrap()));
    assert_eq!(e.iter().filter(|e| e.state == "created").count(), 300);
    // The ledger's audit commands read it too.
    let export = work.roster_with_env(&["ledger", "export", "--ledger", &ledger], &PG_ENV);
    export.expect_code(0);
    let lines = export
        .stdout()
        .lines()
        .filter(|l| l.contains(",created,"))
        .count();
    assert_eq!(lines, 300, "{}", export.context());
    let stats = work.roster_with_env(&["ledger", "stats", "--ledger", &ledger], &PG_ENV);
    assert!(
        stats.stdout().contains("runs: 2"),
        "a dry run records no run: {}",
        stats.context()
    );
}

sandbox_test!(
    a_second_run_on_one_postgres_ledger_refuses_naming_the_holder_and_a_killed_holder_blocks_nothing,
    SandboxConfig {
        delay: Duration::from_millis(20),
        ..Default::default()
    },
    |server, work| {
        let pg = pg_or_skip!();
        let ledger = pg.database("lock");
        let url = server.url();
        work.write("people.csv", &people_csv(2_000));
        let args = WorkDir::import_args(
            &url,
            "people.csv",
            &["--ledger", &ledger, "--concurrency", "2"],
        );
        let mut holder = work
            .command(&args, &PG_ENV)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        support::wait_for("the first run to send", || {
            server.sandbox.stats().created >= 20
        });
        // Another host would meet the same lock: it is the server's, not a file's.
        let before = server.sandbox.stats().requests;
        let second = import(&work, &url, &ledger, &[]);
        second.expect_code(4);
        let reason = second.json()["reason"].as_str().unwrap_or("").to_string();
        assert!(
            reason.contains(&format!("pid {}", holder.id())) && reason.contains("since"),
            "names the holder: {reason}"
        );
        assert!(
            server.sandbox.stats().requests - before < 200,
            "the second run sent nothing (only the first's requests went on)"
        );
        holder.kill().unwrap(); // SIGKILL: the server drops the dead connection's lock
        holder.wait().unwrap();
        let next = import(&work, &url, &ledger, &["--concurrency", "16"]);
        next.expect_code(0);
        let creations = server.sandbox.creations();
        assert_eq!(server.sandbox.users().len(), 2_000);
        assert!(creations.values().all(|c| *c == 1), "nobody created twice");
        let e = entries(&ledger, &url);
        assert!(e.iter().all(|e| e.state == "created" || e.state == "exists"));
    }
);

sandbox_test!(
    a_ledger_copied_from_sqlite_to_postgres_resumes_with_no_request_for_what_is_done,
    SandboxConfig::default(),
    |server, work| {
        let pg = pg_or_skip!();
        let ledger = pg.database("copy");
        let url = server.url();
        work.write("people.csv", &people_csv(500));
        work.import_to(&url, "people.csv", &[]).expect_code(0);
        let copy = ledger_copy(&work, "roster-ledger.sqlite", &ledger);
        copy.expect_code(0);
        assert!(
            copy.stderr().contains("copied 500 people"),
            "{}",
            copy.context()
        );
        // Half the file is new: only those are sent.
        work.write("people.csv", &people_csv(750));
        let requests = server.sandbox.stats().requests;
        let resumed = import(&work, &url, &ledger, &[]);
        resumed.expect_code(0);
        assert_eq!(resumed.json()["skipped"], 500, "{}", resumed.context());
        assert_eq!(
            server.sandbox.stats().requests - requests,
            250,
            "no request for the 500 already done"
        );
        // A copy never merges: into a ledger that holds the target, it refuses.
        let again = ledger_copy(&work, "roster-ledger.sqlite", &ledger);
        again.expect_code(2);
        assert!(
            again.stderr().contains("already holds"),
            "{}",
            again.context()
        );
        // And back: the SQLite copy of the PostgreSQL ledger holds all 750, done.
        let back = ledger_copy(&work, &ledger, "back.sqlite");
        back.expect_code(0);
        let e =
            roster::ledger::entries(&work.path("back.sqlite"), &format!("sandbox@{url}")).unwrap();
        assert_eq!(e.len(), 750);
        assert!(e.iter().all(|e| e.state == "created"));
    }
);

sandbox_test!(
    the_postgres_password_appears_in_no_output_and_a_wrong_one_is_a_clear_refusal,
    SandboxConfig::default(),
    |server, work| {
        let pg = pg_or_skip!();
        let ledger = pg.database("secret");
        let url = server.url();
        work.write("people.csv", &people_csv(20));
        let run = work.roster_with_env(
            &WorkDir::import_args(
                &url,
                "people.csv",
                &[
                    "--ledger",
                    &ledger,
                    "--json",
                    "-v",
                    "--report",
                    "report.html",
                ],
            ),
            &PG_ENV,
        );
        run.expect_code(0);
        let mut seen = format!("{}{}", run.stdout(), run.stderr());
        seen.push_str(&work.read("report.html"));
        let export = work.roster_with_env(
            &["ledger", "export", "--ledger", &ledger, "--format", "jsonl"],
            &PG_ENV,
        );
        seen.push_str(&export.stdout());
        let mut client = pg.client(&postgres::database_of(&ledger));
        for row in client
            .query("SELECT summary FROM runs WHERE summary IS NOT NULL", &[])
            .unwrap()
        {
            seen.push_str(row.get::<_, &str>(0));
        }
        assert!(
            seen.contains("postgres://roster@127.0.0.1"),
            "the ledger is named"
        );
        assert!(!seen.contains(PASSWORD), "the password leaked: {seen}");

        // A wrong password: exit 2 (fix the credentials), no password printed, nothing sent.
        let requests = server.sandbox.stats().requests;
        let wrong = work.roster_with_env(
            &WorkDir::import_args(&url, "people.csv", &["--ledger", &ledger]),
            &[("PGPASSWORD", "not-the-Password-42")],
        );
        wrong.expect_code(2);
        assert!(
            wrong.stderr().contains("password authentication failed"),
            "{}",
            wrong.context()
        );
        assert!(!wrong.stderr().contains("not-the-Password-42"));
        assert_eq!(server.sandbox.stats().requests, requests);

        // A password in the URL is refused before anything connects, and not printed.
        let inline = ledger.replace("roster@", "roster:Inline-Pw-99@");
        let refused = work.roster(&WorkDir::import_args(
            &url,
            "people.csv",
            &["--ledger", &inline],
        ));
        refused.expect_code(2);
        assert!(
            refused.stderr().contains("PGPASSWORD"),
            "{}",
            refused.context()
        );
        assert!(!refused.stderr().contains("Inline-Pw-99"));
    }
);

sandbox_test!(
    the_ledger_lives_in_the_schema_the_url_names_and_a_newer_schema_is_refused,
    SandboxConfig::default(),
    |server, work| {
        let pg = pg_or_skip!();
        let ledger = pg.database("schema");
        let in_schema = format!("{ledger}&options=-csearch_path%3Dhr_roster");
        let url = server.url();
        work.write("people.csv", &people_csv(10));
        import(&work, &url, &in_schema, &[]).expect_code(0);
        let mut client = pg.client(&postgres::database_of(&ledger));
        let people: i64 = client
            .query_one("SELECT count(*) FROM hr_roster.entries", &[])
            .unwrap()
            .get(0);
        assert_eq!(people, 10, "the tables are in schema hr_roster");
        let public: Option<String> = client
            .query_one("SELECT to_regclass('public.entries')::text", &[])
            .unwrap()
            .get(0);
        assert_eq!(public, None, "nothing in public");

        client
            .batch_execute("UPDATE hr_roster.roster_schema SET version = 99")
            .unwrap();
        let newer = import(&work, &url, &in_schema, &[]);
        newer.expect_code(2);
        assert!(
            newer.stderr().contains("newer roster"),
            "{}",
            newer.context()
        );
    }
);

#[test]
fn an_unreachable_postgres_ledger_is_a_retry_later_with_nothing_sent() {
    let server = TestSandbox::start(SandboxConfig::default());
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(5));
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ledger = format!("postgres://roster@127.0.0.1:{port}/hr?sslmode=disable");
    let run = import(&work, &server.url(), &ledger, &[]);
    run.expect_code(5);
    assert!(run.json()["reason"].as_str().unwrap().contains(&ledger));
    assert_eq!(server.sandbox.stats().requests, 0);
}

#[test]
fn tls_to_the_ledger_is_verified_as_sslmode_says() {
    let pg = pg_or_skip!();
    let Some(root) = &pg.root_cert else {
        return;
    };
    let server = TestSandbox::start(SandboxConfig::default());
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(5));
    let url = server.url();
    // `tls_only` refuses a connection without TLS (the server's pg_hba.conf).
    let base = format!("postgres://roster@127.0.0.1:{}/tls_only", pg.port);
    let root = root.display().to_string();
    let run = |ledger: &str, env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.extend(PG_ENV);
        work.roster_with_env(
            &WorkDir::import_args(&url, "people.csv", &["--ledger", ledger, "--json"]),
            &env,
        )
    };
    let plain = run(&format!("{base}?sslmode=disable"), &[]);
    plain.expect_code(2);
    assert!(
        plain.stderr().contains("no encryption"),
        "{}",
        plain.context()
    );
    // verify-full: the chain to the root and the name (an IP address here).
    run(
        &format!("{base}?sslmode=verify-full"),
        &[("PGSSLROOTCERT", &root)],
    )
    .expect_code(0);
    // A root that did not sign the server's certificate: refused, nothing sent.
    let other = work.path("other.crt");
    std::fs::copy(
        pg.root_cert.as_ref().unwrap().with_file_name("server.crt"),
        &other,
    )
    .unwrap();
    let requests = server.sandbox.stats().requests;
    let wrong = run(
        &format!("{base}?sslmode=verify-ca&sslrootcert={}", other.display()),
        &[],
    );
    wrong.expect_code(2);
    assert!(
        wrong.stderr().contains("certificate"),
        "{}",
        wrong.context()
    );
    assert_eq!(server.sandbox.stats().requests, requests);
    // require: encrypted, the certificate unchecked (libpq's meaning); prefer, the default, too.
    run(&format!("{base}?sslmode=require"), &[]).expect_code(0);
    run(&base, &[]).expect_code(0);
}

sandbox_test!(
    a_sync_on_postgres_updates_deactivates_and_applies_its_plan_as_on_sqlite,
    SandboxConfig::default(),
    |server, work| {
        let pg = pg_or_skip!();
        let ledger = pg.database("sync");
        let url = server.url();
        let sync = |extra: &[&str]| {
            let mut args = vec![
                "sync",
                "people.csv",
                "--target",
                "sandbox",
                "--base-url",
                &url,
                "--ledger",
                &ledger,
                "--json",
                "--quiet",
            ];
            args.extend_from_slice(extra);
            work.roster_with_env(&args, &PG_ENV)
        };
        let full = people_csv(50);
        work.write("people.csv", &full);
        sync(&[]).expect_code(0);
        // Three movers, two leavers.
        let mut lines: Vec<String> = full.lines().map(str::to_string).collect();
        for line in lines.iter_mut().skip(1).take(3) {
            *line = line.replacen("Last", "Moved", 1);
        }
        lines.truncate(49);
        work.write("people.csv", &(lines.join("\n") + "\n"));
        // Plan, then apply exactly that.
        sync(&[
            "--dry-run",
            "--plan",
            "plan.json",
            "--leavers",
            "deactivate",
        ])
        .expect_code(0);
        let run = sync(&["--apply", "plan.json", "--leavers", "deactivate"]);
        run.expect_code(0);
        let summary = run.json();
        assert_eq!(summary["sync"]["updated"], 3, "{}", run.context());
        assert_eq!(summary["sync"]["deactivated"], 2, "{}", run.context());
        let changes = server.sandbox.changes();
        assert_eq!(changes.len(), 5, "{changes:?}");
        let users = server.sandbox.users();
        let person0 = users
            .iter()
            .find(|u| u.email == "person0@example.com")
            .unwrap();
        assert_eq!(person0.last_name, "Moved0");
        // The same export again sends nothing; the plan is spent.
        let run = sync(&["--leavers", "deactivate"]);
        run.expect_code(0);
        assert_eq!(run.json()["sync"]["changes_sent"], 0, "{}", run.context());
        assert_eq!(server.sandbox.changes().len(), 5);
        let run = sync(&["--apply", "plan.json", "--leavers", "deactivate"]);
        run.expect_code(2);
        assert!(
            run.stderr().contains("the ledger changed"),
            "{}",
            run.context()
        );
    }
);
