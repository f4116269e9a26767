//! One regression test per bug of the trust issue (#14): each failed on 4094632.
//!
//! They run the real binary against a server on 127.0.0.1 (the sandbox, or a small hostile
//! server from `support::hostile`) and assert on what the server received, the ledger, the
//! outputs and the exit code.

#[macro_use]
mod support;

use roster_sandbox::SandboxConfig;
use std::process::Stdio;
use std::sync::Arc;
use support::hostile::{Hostile, Reply};
use support::{TestSandbox, WorkDir, people_csv};

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

sandbox_test!(
    item02_a_closed_pipe_ends_quietly_with_exit_0,
    SandboxConfig::default(),
    |server, work| {
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
);

// ---- helpers for the items below ----------------------------------------------------------

use roster_sandbox::{Profile, SandboxCredentials};

/// `roster import FILE --target PROFILE --base-url SANDBOX/PROFILE --rate 0 --json` plus
/// `extra`, with the sandbox's credentials in the environment.
fn vendor_import(
    work: &WorkDir,
    server: &TestSandbox,
    profile: Profile,
    file: &str,
    extra: &[&str],
) -> support::Run {
    let base = format!("{}/{}", server.url(), profile.name());
    let mut args = vec![
        "import",
        file,
        "--target",
        profile.name(),
        "--base-url",
        &base,
        "--rate",
        "0",
        "--json",
    ];
    args.extend_from_slice(extra);
    let env: Vec<(&str, String)> = SandboxCredentials::default()
        .env()
        .into_iter()
        .filter(|(k, _)| {
            !matches!(profile, Profile::Crayon | Profile::Nexway | Profile::Cradl)
                || *k != "ROSTER_TOKEN"
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    work.roster_with_env(&args, &env)
}

/// The password file's lines: (identity, password, status), header skipped.
fn password_lines(work: &WorkDir, name: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(work.path(name)).unwrap_or_default();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string(), r[2].to_string())
        })
        .collect()
}

/// Every `created` line of the password file holds the password the sandbox received for
/// that person; returns how many lines were `unconfirmed`.
fn assert_passwords_held(
    server: &TestSandbox,
    profile: Profile,
    lines: &[(String, String, String)],
) -> usize {
    let mut unconfirmed = 0;
    for (identity, password, status) in lines {
        match status.as_str() {
            "created" => assert!(
                server.sandbox.holds_password(profile, identity, password),
                "{identity}: the password file's password is not the one the server holds"
            ),
            "unconfirmed" => unconfirmed += 1,
            other => panic!("{identity}: unknown status `{other}`"),
        }
    }
    unconfirmed
}

/// A CSV of `n` people, `person{i}@example.com`, starting at `from`.
fn people_from(from: usize, n: usize) -> String {
    let mut text = String::from("First Name,Last Name,Email\n");
    for i in from..from + n {
        text.push_str(&format!("First{i},Last{i},person{i}@example.com\n"));
    }
    text
}

/// Sends SIGINT (or another signal) to a child.
fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

// ---- 3. Memory grows with refused rows (tests/memory.rs measures the peak) -----------------

// ---- 4. After an interrupt, people who already existed get passwords never set ------------

#[test]
fn item04_an_interrupted_and_resumed_import_writes_only_passwords_the_server_holds() {
    let server = TestSandbox::start(SandboxConfig {
        delay: std::time::Duration::from_millis(15),
        ..Default::default()
    });
    // 100 people exist already; the file has them and 200 more.
    for i in 0..100 {
        server
            .sandbox
            .seed_user(Profile::Cryptlex, &format!("person{i}@example.com"));
    }
    let work = WorkDir::new();
    work.write("people.csv", &people_from(0, 300));
    let base = format!("{}/cryptlex", server.url());
    let args = [
        "import",
        "people.csv",
        "--target",
        "cryptlex",
        "--base-url",
        &base,
        "--rate",
        "0",
        "--concurrency",
        "4",
        "--generate-passwords",
        "pw.csv",
        "--json",
    ];
    let env = [("ROSTER_TOKEN", "sandbox-token")];
    let child = work
        .command(&args, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_for("40 requests", || server.sandbox.stats().requests >= 40);
    signal(&child, "INT");
    let first = child.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let resumed = work.roster_with_env(&args, &env);
    resumed.expect_code(0);
    let lines = password_lines(&work, "pw.csv");
    let seeded = |id: &str| {
        id.trim_start_matches("person")
            .split('@')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            < 100
    };
    assert!(
        lines.iter().all(|(id, _, _)| !seeded(id)),
        "no pre-existing person has a password line: {:?}",
        lines
            .iter()
            .filter(|(id, _, _)| seeded(id))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        assert_passwords_held(&server, Profile::Cryptlex, &lines),
        0,
        "after a SIGINT every outcome is known"
    );
    assert_eq!(lines.len(), 200, "one line per person created");
    let entries = roster::ledger::entries(
        &work.path("roster-ledger.sqlite"),
        &format!("cryptlex@{base}"),
    )
    .unwrap();
    let exists = entries.iter().filter(|e| e.state == "exists").count();
    assert_eq!(exists, 100, "pre-existing people are `exists`, not created");
}

sandbox_test!(
    item04_after_sigkill_the_resume_resends_the_same_password,
    SandboxConfig {
        delay: std::time::Duration::from_millis(10),
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_from(0, 400));
        let base = format!("{}/cryptlex", server.url());
        let args = [
            "import",
            "people.csv",
            "--target",
            "cryptlex",
            "--base-url",
            &base,
            "--rate",
            "0",
            "--concurrency",
            "8",
            "--generate-passwords",
            "pw.csv",
        ];
        let env = [("ROSTER_TOKEN", "sandbox-token")];
        let mut child = work
            .command(&args, &env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        support::wait_for("50 people created", || server.sandbox.stats().created >= 50);
        child.kill().unwrap(); // SIGKILL: requests in flight
        child.wait().unwrap();
        work.roster_with_env(&args, &env).expect_code(0);
        let lines = password_lines(&work, "pw.csv");
        assert_passwords_held(&server, Profile::Cryptlex, &lines);
        let mut identities: Vec<&str> = lines.iter().map(|(id, _, _)| id.as_str()).collect();
        identities.sort();
        identities.dedup();
        assert_eq!(identities.len(), 400, "every person created has a line");
        for (id, password, _) in &lines {
            assert!(
                server
                    .sandbox
                    .holds_password(Profile::Cryptlex, id, password),
                "{id}: every line, confirmed or not, is the password the server received"
            );
        }
    }
);

// ---- 5. A lost answer turns roster's own creation into "already existed" ----------------

/// A generic profile posting to the sandbox's `/users`, without idempotency keys.
fn generic_profile(work: &WorkDir, lookup: bool) -> std::path::PathBuf {
    let mut text = String::from(
        r#"name = "plain"
path = "/users"
required = ["first_name", "last_name", "password"]
[body]
email = "{email}"
firstName = "{first_name}"
lastName = "{last_name}"
password = "{password}"
"#,
    );
    if lookup {
        text.push_str(
            r#"[lookup]
path = "/users?email={email}"
id_pointer = "/0/id"
"#,
        );
    }
    work.write("profile.toml", &text)
}

#[test]
fn item05_a_lost_answer_then_exists_is_created_unconfirmed_with_its_password_kept() {
    for lookup in [false, true] {
        let server = TestSandbox::start(SandboxConfig {
            drop_first_answers: 1,
            ..Default::default()
        });
        let work = WorkDir::new();
        work.write("people.csv", &people_from(0, 5));
        let profile = generic_profile(&work, lookup);
        let run = work.roster(&[
            "import",
            "people.csv",
            "--target",
            "http",
            "--profile",
            profile.to_str().unwrap(),
            "--base-url",
            &server.url(),
            "--generate-passwords",
            "pw.csv",
            "--json",
        ]);
        run.expect_code(0);
        let json = run.json();
        assert_eq!(
            json["created_unconfirmed"],
            5,
            "lookup {lookup}: {}",
            run.context()
        );
        assert_eq!(
            json["exists"],
            0,
            "not `already existed`: {}",
            run.context()
        );
        let lines = password_lines(&work, "pw.csv");
        assert_eq!(lines.len(), 5, "every password is kept");
        for (id, password, status) in &lines {
            assert_eq!(status, "unconfirmed");
            assert!(
                server
                    .sandbox
                    .holds_password(Profile::Sandbox, id, password)
            );
        }
        let entries = entries_of(&work, &format!("http:plain@{}/users", server.url()));
        assert!(
            entries
                .iter()
                .all(|e| e.unconfirmed && e.state == "created")
        );
        if lookup {
            assert!(
                entries.iter().all(|e| e.remote_id.is_some()),
                "the profile's lookup gives the id: {entries:?}"
            );
        }
    }
}

fn entries_of(work: &WorkDir, key: &str) -> Vec<roster::ledger::Entry> {
    roster::ledger::entries(&work.path("roster-ledger.sqlite"), key).unwrap()
}

// ---- 6. A conflict on another person's data is reported as "already exists" -------------

sandbox_test!(
    item06_a_username_taken_by_another_person_is_a_refusal_under_its_column,
    SandboxConfig::default(),
    |server, work| {
        work.write(
            "people.csv",
            "First Name,Last Name,Email,Phone,Login\n\
         Ann,Lee,ann@example.com,+14155550100,alee\n\
         Al,Lee,al@example.com,+14155550101,alee\n",
        );
        // One at a time, so the second of the two is the one refused.
        let run = vendor_import(
            &work,
            &server,
            Profile::Cl2c,
            "people.csv",
            &["--concurrency", "1"],
        );
        run.expect_code(1);
        assert_eq!(run.json()["created"], 1, "{}", run.context());
        assert_eq!(run.json()["rejected"], 1, "{}", run.context());
        assert_eq!(run.json()["exists"], 0, "{}", run.context());
        let errors = work.read("people.errors.csv");
        let al = errors
            .lines()
            .find(|l| l.contains("al@example.com"))
            .unwrap();
        assert!(
            al.contains("Login: ") && al.contains("already taken"),
            "{al}"
        );

        // A DRF-style answer naming the username, and a bare 409 that a lookup settles.
        let server = Hostile::start(|seen| {
            let body = seen.json();
            match (seen.method.as_str(), body["email"].as_str()) {
                ("GET", _) => Reply::json(200, serde_json::json!([])), // nobody has this email
                (_, Some("ann@example.com")) => Reply::json(
                    400,
                    serde_json::json!({"username": ["A user with that username already exists."]}),
                ),
                _ => Reply::raw(409, &[], ""),
            }
        });
        let work = WorkDir::new();
        work.write(
        "people.csv",
        "First Name,Last Name,Email,Username\nAnn,Lee,ann@example.com,alee\nBo,Ray,bo@example.com,bray\n",
    );
        let run = work.import_to(&server.url(), "people.csv", &["--json"]);
        run.expect_code(1);
        let json = run.json();
        assert_eq!(json["rejected"], 2, "{}", run.context());
        assert_eq!(json["exists"], 0, "{}", run.context());
        let errors = work.read("people.errors.csv");
        assert!(
            errors.contains("Username: A user with that username already exists."),
            "{errors}"
        );
        assert!(
            errors.contains("conflict"),
            "the bare 409 is a conflict to check: {errors}"
        );
    }
);

// ---- 7. Outputs can destroy the ledger or the input ---------------------------------------

sandbox_test!(
    item07_no_output_may_be_the_input_the_ledger_or_another_output,
    SandboxConfig::default(),
    |server, work| {
        let input = people_csv(3);
        work.write("people.csv", &input);
        work.import_to(&server.url(), "people.csv", &[])
            .expect_code(0);
        let ledger = std::fs::read(work.path("roster-ledger.sqlite")).unwrap();
        for args in [
            vec!["ledger", "export", "-o", "roster-ledger.sqlite"],
            vec!["ledger", "export", "-o", "./roster-ledger.sqlite-wal"],
        ] {
            work.roster(&args).expect_code(2);
        }
        assert_eq!(
            std::fs::read(work.path("roster-ledger.sqlite")).unwrap(),
            ledger
        );
        for extra in [
            vec!["--report", "people.csv"],
            vec!["--errors", "roster-ledger.sqlite"],
            vec!["--report", "roster-ledger.sqlite"],
            vec!["--errors", "same.csv", "--report", "same.csv"],
            vec!["--generate-passwords", "people.csv"],
        ] {
            let run = work.import_to(&server.url(), "people.csv", &extra);
            run.expect_code(2);
            assert!(
                !work.path("same.csv").exists(),
                "nothing written: {}",
                run.context()
            );
        }
        assert_eq!(work.read("people.csv"), input);
        assert_eq!(
            std::fs::read(work.path("roster-ledger.sqlite")).unwrap(),
            ledger
        );
    }
);

sandbox_test!(
    item07_an_error_file_the_user_changed_is_never_overwritten,
    SandboxConfig::default(),
    |server, work| {
        work.write(
            "people.csv",
            "First Name,Last Name,Email\nAnn,,ann@example.com\nBo,Ray,bo@example.com\n",
        );
        work.import_to(&server.url(), "people.csv", &[])
            .expect_code(1);
        let edited = work.read("people.errors.csv").replace("Ann,,", "Ann,Lee,");
        work.write("people.errors.csv", &edited);
        // The original import again (the nightly job): the hand fix stays.
        let run = work.import_to(&server.url(), "people.csv", &[]);
        assert_eq!(work.read("people.errors.csv"), edited, "{}", run.context());
        assert!(run.stderr().contains("was changed"), "{}", run.context());
        assert!(
            work.path("people.errors.2.csv").exists(),
            "{}",
            run.context()
        );
        // Different inputs, different error files.
        work.write(
            "hr.tsv",
            "Email\tFirst Name\tLast Name\nx@example.com\tX\t\n",
        );
        work.write(
            "hr.jsonl",
            "{\"email\":\"y@example.com\",\"first_name\":\"Y\",\"last_name\":\"\"}\n",
        );
        work.import_to(&server.url(), "hr.tsv", &[]).expect_code(1);
        work.import_to(&server.url(), "hr.jsonl", &[])
            .expect_code(1);
        assert!(work.path("hr.errors.tsv").exists() && work.path("hr.jsonl.errors.csv").exists());
    }
);

// ---- 8. A damaged byte comes back as U+FFFD and is then created -------------------------

sandbox_test!(
    item08_damaged_text_is_refused_from_any_file,
    SandboxConfig::default(),
    |server, work| {
        let mut bytes = b"First Name,Last Name,Email\nZo\xc3\xab,Ray,zoe@example.com\n".to_vec();
        bytes.extend_from_slice(b"Ann,L\xe9chel,ann@example.com\n");
        std::fs::write(work.path("people.csv"), &bytes).unwrap();
        work.import_to(&server.url(), "people.csv", &[])
            .expect_code(1);
        // The error file holds the damaged cell as U+FFFD; fed back in, it is refused again.
        let errors = work.read("people.errors.csv");
        assert!(errors.contains("L\u{FFFD}chel"), "{errors}");
        // (A fresh ledger: with the first one, the same refused row is "still refused".)
        let run = work.import_to(
            &server.url(),
            "people.errors.csv",
            &["--json", "--ledger", "fresh.sqlite"],
        );
        run.expect_code(1);
        assert_eq!(run.json()["invalid"], 1, "{}", run.context());
        assert!(
            work.read("people.errors.errors.csv")
                .contains("encoding was damaged"),
            "{}",
            run.context()
        );
        assert!(
            server
                .sandbox
                .users()
                .iter()
                .all(|u| !u.last_name.contains('\u{FFFD}')),
            "nobody named L\u{FFFD}chel"
        );
    }
);

// ---- 9. A wrong base URL or a systematic refusal burns through the whole file ------------

#[test]
fn item09_a_wrong_url_or_the_same_refusal_for_every_row_stops_early_with_a_hint() {
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(300));
    let run = work.import_to("htp://127.0.0.1:1", "people.csv", &[]);
    run.expect_code(2);
    assert!(run.stderr().contains("htp"), "{}", run.context());

    let server = Hostile::start(|_| Reply::json(404, serde_json::json!({"message": "Not Found"})));
    let run = work.import_to(&server.url(), "people.csv", &["--json"]);
    run.expect_code(3);
    // The first 5 answers decide; requests already in flight (16 workers) still land.
    assert!(
        server.count("POST") <= 5 + 2 * 16,
        "{} requests",
        server.count("POST")
    );
    assert!(run.stderr().contains("--base-url"), "{}", run.context());
    assert_accounted(&run.json());

    let server = Hostile::start(|_| {
        Reply::json(
            400,
            serde_json::json!({"errors": {"password": ["is required"]}}),
        )
    });
    let run = work.import_to(&server.url(), "people.csv", &["--json"]);
    run.expect_code(3);
    assert!(
        server.count("POST") <= 20 + 2 * 16,
        "{} requests",
        server.count("POST")
    );
    assert!(run.stderr().contains("password"), "{}", run.context());

    let server = Hostile::start(|seen| match seen.json()["email"].as_str() {
        Some(e) if e.ends_with("1@example.com") => Reply::json(201, serde_json::json!({"id": e})),
        _ => Reply::json(
            400,
            serde_json::json!({"errors": {"lastName": ["too short"]}}),
        ),
    });
    let run = work.import_to(
        &server.url(),
        "people.csv",
        &["--json", "--max-errors", "5"],
    );
    run.expect_code(3);
    assert!(
        run.json()["rejected"].as_u64().unwrap() <= 5 + 2 * 16,
        "{}",
        run.context()
    );
    assert!(run.stderr().contains("--max-errors"), "{}", run.context());
}

// ---- 10. Exit codes that cron can act on -------------------------------------------------

sandbox_test!(
    item10_a_harmless_repeat_and_yesterdays_refusals_do_not_fail_the_run,
    SandboxConfig::default(),
    |server, work| {
        work.write(
            "people.csv",
            "First Name,Last Name,Email\nAnn,Lee,ann@example.com\nAnn,Lee,ANN@example.com\n",
        );
        let run = work.import_to(&server.url(), "people.csv", &["--json"]);
        run.expect_code(0);
        assert_eq!(run.json()["duplicates"], 1);
        work.write(
            "people.csv",
            "First Name,Last Name,Email\nAnn,Lee,ann@example.com\nBo,,bo@example.com\n",
        );
        work.import_to(&server.url(), "people.csv", &[])
            .expect_code(1);
        let run = work.import_to(&server.url(), "people.csv", &["--json"]);
        run.expect_code(0);
        assert_eq!(run.json()["still_refused"], 1, "{}", run.context());
        assert!(run.stderr().contains("still refused"), "{}", run.context());
        let help = work.roster(&["import", "--help"]).stdout();
        for code in ["130", "70"] {
            assert!(help.contains(code), "--help lists exit code {code}");
        }
    }
);

// ---- 11. A refused row can never be re-sent after the cause is fixed outside the row ------

#[test]
fn item11_a_row_is_resent_when_what_roster_would_send_changes() {
    let server = Hostile::start(|seen| match seen.json()["password"].as_str() {
        Some(_) => Reply::json(201, serde_json::json!({"id": "u"})),
        None => Reply::json(
            400,
            serde_json::json!({"errors": {"password": ["is required"]}}),
        ),
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(3));
    let run = work.import_to(&server.url(), "people.csv", &["--json"]);
    run.expect_code(1);
    assert_eq!(run.json()["rejected"], 3);
    let run = work.import_to(
        &server.url(),
        "people.csv",
        &["--json", "--generate-passwords", "pw.csv"],
    );
    run.expect_code(0);
    assert_eq!(run.json()["created"], 3, "{}", run.context());
    // --retry-rejected forces an unchanged refused row out again.
    let server = Hostile::start(|_| Reply::json(400, serde_json::json!({"message": "no"})));
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(2));
    work.import_to(&server.url(), "people.csv", &[])
        .expect_code(1);
    assert_eq!(server.count("POST"), 2);
    work.import_to(&server.url(), "people.csv", &[])
        .expect_code(0);
    assert_eq!(server.count("POST"), 2, "unchanged: not sent");
    work.import_to(&server.url(), "people.csv", &["--retry-rejected"])
        .expect_code(1);
    assert_eq!(server.count("POST"), 4, "--retry-rejected sends them");
}

// ---- 12. Counts that agree -----------------------------------------------------------------

sandbox_test!(
    item12_an_interrupted_run_counts_what_it_never_processed_and_every_output_agrees,
    SandboxConfig {
        delay: std::time::Duration::from_millis(10),
        ..Default::default()
    },
    |server, work| {
        let mut csv = people_csv(3_000);
        csv.push_str("Bad,,bad@example.com,\n");
        work.write("people.csv", &csv);
        let child = work.spawn_import(
            &server.url(),
            "people.csv",
            &["--json", "--concurrency", "4"],
            &[],
        );
        support::wait_for("30 people created", || server.sandbox.stats().created >= 30);
        signal(&child, "INT");
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["rows"], 3_001, "the unread rows are counted: {json}");
        assert_accounted(&json);
        assert!(json["not_processed"].as_u64().unwrap() > 2_000, "{json}");
        assert_eq!(
            json["failed"], 0,
            "never-sent rows are not failures: {json}"
        );
        let in_file = std::fs::read_to_string(work.path("people.errors.csv"))
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0) as u64;
        let counted: u64 = [
            "invalid",
            "duplicates",
            "rejected",
            "still_refused",
            "failed",
        ]
        .iter()
        .map(|k| json[*k].as_u64().unwrap())
        .sum();
        assert_eq!(
            in_file, counted,
            "the error file holds what the summary counts"
        );
        assert_eq!(
            json["created"].as_u64().unwrap(),
            server.sandbox.stats().created
        );
    }
);

// ---- 13. Two names for one ledger bypass its lock -------------------------------------------

#[cfg(unix)]
sandbox_test!(
    item13_a_symbolic_or_hard_link_to_the_ledger_meets_its_lock,
    SandboxConfig {
        delay: std::time::Duration::from_millis(20),
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(400));
        let url = server.url();
        let mut child = work.spawn_import(&url, "people.csv", &["--concurrency", "2"], &[]);
        support::wait_for("5 people created", || server.sandbox.stats().created >= 5);
        std::os::unix::fs::symlink(work.path("roster-ledger.sqlite"), work.path("soft.sqlite"))
            .unwrap();
        std::fs::hard_link(work.path("roster-ledger.sqlite"), work.path("hard.sqlite")).unwrap();
        for name in ["soft.sqlite", "hard.sqlite"] {
            let run = work.import_to(&url, "people.csv", &["--ledger", name]);
            run.expect_code(4);
            assert!(
                run.stderr().contains("held by another roster run"),
                "{}",
                run.context()
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let creations = server.sandbox.creations();
        assert!(creations.values().all(|n| *n == 1));
    }
);

// ---- 14. A second tenant gets nothing ---------------------------------------------------------

#[test]
fn item14_the_account_written_to_is_part_of_the_ledger_key() {
    let server = Hostile::start(|seen| {
        Reply::json(
            200,
            serde_json::json!({"id": seen.json()["email"], "tenant": seen.header("tenant")}),
        )
    });
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(3));
    let args = [
        "import",
        "people.csv",
        "--target",
        "cl2c",
        "--base-url",
        &server.url(),
        "--json",
    ];
    for tenant in ["acme", "beta"] {
        let run =
            work.roster_with_env(&args, &[("ROSTER_TENANT", tenant), ("ROSTER_API_KEY", "k")]);
        run.expect_code(0);
        assert_eq!(
            run.json()["created"],
            3,
            "tenant {tenant}: {}",
            run.context()
        );
    }
    let beta: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.header("tenant") == Some("beta"))
        .collect();
    assert_eq!(beta.len(), 3, "the second tenant got its people");
    let run = work.roster_with_env(&args, &[("ROSTER_TENANT", "beta"), ("ROSTER_API_KEY", "k")]);
    assert_eq!(run.json()["skipped"], 3, "each tenant's ledger is its own");
    let export = work.roster(&["ledger", "export"]).stdout();
    assert!(
        !export.contains("acme") && !export.contains("beta"),
        "the tenant itself is never stored"
    );
}

// ---- 15. Rows dropped or merged by the readers --------------------------------------------

sandbox_test!(
    item15_every_record_is_accounted_for_and_numbered_as_an_editor_shows_it,
    SandboxConfig::default(),
    |server, work| {
        let mut jsonl = Vec::new();
        jsonl.extend_from_slice(
            b"{\"email\":\"a@example.com\",\"first_name\":\"A\",\"last_name\":\"A\"}\n",
        );
        jsonl.extend_from_slice(
            b"{\"email\":\"b@example.com\",\"first_name\":\"B\xff\",\"last_name\":\"B\"}\n",
        );
        jsonl.extend_from_slice(
            b"{\"email\":\"c@example.com\",\"first_name\":\"C\",\"last_name\":\"C\"}\n",
        );
        jsonl.extend_from_slice(
            b"{\"email\":\"d@example.com\",\"first_name\":\"D\",\"last_name\":\"D\"}\n",
        );
        std::fs::write(work.path("p.jsonl"), jsonl).unwrap();
        let run = work.import_to(&server.url(), "p.jsonl", &["--json"]);
        assert_eq!(run.json()["rows"], 4, "{}", run.context());
        assert_eq!(run.json()["created"], 3, "{}", run.context());
        assert!(work.read("p.jsonl.errors.csv").contains(",2,invalid,"));

        work.write(
        "quote.csv",
        "First Name,Last Name,Email\nAnn,Lee,ann@example.com\nBo,\"Ray,bo@example.com\nCy,Fox,cy@example.com\nDee,Gil,dee@example.com\n",
    );
        let run = work.import_to(&server.url(), "quote.csv", &["--json"]);
        assert_eq!(run.json()["rows"], 4, "{}", run.context());
        assert_eq!(
            run.json()["created"],
            3,
            "the rows after the quote are not swallowed: {}",
            run.context()
        );
        let errors = work.read("quote.errors.csv");
        assert!(
            errors.contains(",3,invalid,") && errors.contains("quote"),
            "{errors}"
        );

        work.write(
            "cr.csv",
            "First Name,Last Name,Email\rEd,Ng,ed@example.com\rFi,,fi@example.com\r",
        );
        work.import_to(&server.url(), "cr.csv", &[]).expect_code(1);
        assert!(
            work.read("cr.errors.csv").contains(",3,invalid,"),
            "{}",
            work.read("cr.errors.csv")
        );

        let utf16: Vec<u8> = "First Name,Last Name,Email\r\nGus,Ott,gus@example.com\r\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        std::fs::write(work.path("u16.csv"), utf16).unwrap();
        let run = work.import_to(&server.url(), "u16.csv", &["--json"]);
        run.expect_code(0);
        assert_eq!(
            run.json()["created"],
            1,
            "UTF-16 without a BOM is read: {}",
            run.context()
        );
    }
);

// ---- 16. A row's outcome overwritten by a later row ----------------------------------------

#[test]
fn item16_a_later_repeat_never_changes_an_earlier_rows_ledger_state() {
    // a@: the first answer is lost, the retry gets 500; then a@ again, with no last name.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let server = {
        let answered = answered.clone();
        Hostile::start(
            move |_| match answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Reply::Close,
                _ => Reply::json(500, serde_json::json!({"message": "boom"})),
            },
        )
    };
    let work = WorkDir::new();
    work.write(
        "people.csv",
        "First Name,Last Name,Email\nAnn,Lee,a@example.com\nAnn,,a@example.com\n",
    );
    let url = server.url();
    work.import_to(
        &url,
        "people.csv",
        &["--max-retries", "1", "--concurrency", "1"],
    );
    let entry = &entries(&work, &url)[0];
    assert_eq!(entry.state, "failed", "{entry:?}");
    assert!(entry.uncertain, "its create may have landed: {entry:?}");
}

// ---- 17. Multi-step creates lose their second step -------------------------------------------

sandbox_test!(
    item17_an_uncertain_crayon_create_answered_duplicate_still_sets_the_password,
    SandboxConfig {
        drop_first_answers: 1,
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_from(0, 5));
        let run = vendor_import(
            &work,
            &server,
            Profile::Crayon,
            "people.csv",
            &["--generate-passwords", "pw.csv"],
        );
        run.expect_code(0);
        assert_eq!(server.sandbox.stats().passwords_set, 5, "{}", run.context());
        let lines = password_lines(&work, "pw.csv");
        assert_eq!(lines.len(), 5);
        for (id, password, status) in &lines {
            assert_eq!(
                status, "created",
                "the password step succeeded, so it is confirmed"
            );
            assert!(server.sandbox.holds_password(Profile::Crayon, id, password));
        }
    }
);

// ---- 18. The idempotency key and generated passwords disagree -------------------------------

sandbox_test!(
    item18_a_resend_carries_the_same_password_so_its_idempotency_key_holds,
    SandboxConfig {
        drop_first_answers: 1,
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(20));
        let url = server.url();
        let args = [
            "--generate-passwords",
            "pw.csv",
            "--max-retries",
            "0",
            "--json",
        ];
        let first = work.import_to(&url, "people.csv", &args);
        assert_eq!(first.json()["failed"], 20, "{}", first.context());
        let second = work.import_to(&url, "people.csv", &args);
        second.expect_code(0);
        let json = second.json();
        assert_eq!(json["rejected"], 0, "{}", second.context());
        assert_eq!(
            json["created"],
            20,
            "replayed under the same key: {}",
            second.context()
        );
        assert!(server.sandbox.stats().replayed >= 20);
        let lines = password_lines(&work, "pw.csv");
        assert_eq!(assert_passwords_held(&server, Profile::Sandbox, &lines), 0);
    }
);

// ---- 19. A ledger write error hangs the run forever --------------------------------------

#[cfg(unix)]
#[test]
fn item19_a_full_disk_stops_the_run_within_seconds_with_try_again_later() {
    use std::os::unix::process::CommandExt;
    let server = TestSandbox::start(SandboxConfig::default());
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(30_000));
    let mut command = work.command(
        &WorkDir::import_args(&server.url(), "people.csv", &["--json"]),
        &[],
    );
    // Files of the run may grow to 1 MB: the ledger fills it, as a full disk would.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            Ok(())
        });
    }
    let started = std::time::Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = started + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the run hung on a full disk");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("ledger"), "{stderr}");
    assert!(server.sandbox.users().len() < 30_000, "it stopped sending");
}

sandbox_test!(
    item19_a_password_file_on_a_full_disk_stops_the_run_and_the_next_run_writes_what_it_owes,
    SandboxConfig::default(),
    |server, work| {
        work.write("people.csv", &people_from(0, 20));
        let base = format!("{}/cryptlex", server.url());
        let args = |pw: &str| {
            vec![
                "import".to_string(),
                "people.csv".into(),
                "--target".into(),
                "cryptlex".into(),
                "--base-url".into(),
                base.clone(),
                "--rate".into(),
                "0".into(),
                "--generate-passwords".into(),
                pw.to_string(),
            ]
        };
        let env = [("ROSTER_TOKEN", "sandbox-token")];
        let full = args("/dev/full");
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let run = work.roster_with_env(&full, &env);
        run.expect_code(5);
        assert!(run.stderr().contains("password file"), "{}", run.context());
        let created = server.sandbox.users_of(Profile::Cryptlex).len();
        assert!(created > 0);
        let again = args("pw.csv");
        let again: Vec<&str> = again.iter().map(String::as_str).collect();
        work.roster_with_env(&again, &env).expect_code(0);
        let lines = password_lines(&work, "pw.csv");
        assert_eq!(lines.len(), 20, "the lines owed are written, then the rest");
        assert_passwords_held(&server, Profile::Cryptlex, &lines);
    }
);

// ---- 1. (cont.) A panic while sending becomes that row's outcome, never a lost row ---------

/// The sandbox's API, except that reading the answer for `boom@example.com` panics.
struct PanicsOnBoom(roster::targets::sandbox::SandboxApi);

impl roster::targets::Api for PanicsOnBoom {
    fn ledger_key(&self) -> &str {
        self.0.ledger_key()
    }
    fn endpoint(&self) -> &str {
        self.0.endpoint()
    }
    fn auth(&self) -> &roster::auth::Authenticator {
        self.0.auth()
    }
    fn default_rate(&self) -> f64 {
        0.0
    }
    fn classify(
        &self,
        status: u16,
        headers: &http::header::HeaderMap,
        body: &[u8],
    ) -> roster::targets::Verdict {
        if String::from_utf8_lossy(body).contains("boom@example.com") {
            panic!("a bug reading this answer");
        }
        self.0.classify(status, headers, body)
    }
}

sandbox_test!(
    item01_a_panic_while_sending_becomes_that_rows_failed_outcome,
    SandboxConfig::default(),
    |server, work| {
        let mut csv = people_csv(30);
        csv.push_str("Boom,Boom,boom@example.com,\n");
        let input = work.write("people.csv", &csv);
        let spec = roster::targets::TargetSpec {
            name: "sandbox".into(),
            base_url: Some(server.url()),
            ..Default::default()
        };
        let target = Arc::new(roster::targets::Target {
            info: &roster::targets::sandbox::DEF.info,
            schema: Arc::new(roster::targets::sandbox::SandboxSchema::new()),
            api: Some(Arc::new(PanicsOnBoom(
                roster::targets::sandbox::SandboxApi::new(&spec),
            ))),
        });
        let mut settings = roster::pipeline::ImportSettings::new(
            input,
            roster::ledger::LedgerLocation::Sqlite(work.path("roster-ledger.sqlite")),
            work.path("errors.csv"),
            roster::pipeline::RunMode::Send,
        );
        settings.submit = roster::submit::SubmitSettings {
            concurrency: 1,
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime
            .block_on(roster::pipeline::run(
                &settings,
                target,
                Arc::new(roster::model::Stop::default()),
            ))
            .unwrap();
        let summary = &result.summary;
        assert_eq!(
            summary.accounted(),
            summary.rows,
            "no row lost: {summary:?}"
        );
        assert_eq!(summary.failed, 1, "{summary:?}");
        assert!(
            matches!(result.stopped, Some(roster::model::StopReason::Internal(_))),
            "the run stops as an internal error (exit 70): {:?}",
            result.stopped
        );
        let boom = roster::ledger::entries(
            &work.path("roster-ledger.sqlite"),
            &format!("sandbox@{}", server.url()),
        )
        .unwrap()
        .into_iter()
        .find(|e| e.identity == "boom@example.com")
        .unwrap();
        assert_eq!(boom.state, "failed", "{boom:?}");
        assert!(boom.uncertain, "its request had left: {boom:?}");
        assert!(work.read("errors.csv").contains("internal error"));
    }
);
