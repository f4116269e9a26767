//! Secrets stay where they belong (issue 21, items 1-5): no output is written through a
//! symbolic link, files that can hold a secret are private, credentials never ride in a URL,
//! and every secret roster knows is replaced by `***` wherever it would be printed or stored,
//! whatever key it is under and even when a server echoes it back.

#[macro_use]
mod support;

use roster_sandbox::SandboxConfig;
use support::WorkDir;
use support::hostile::{Hostile, Reply};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
sandbox_test!(
    item04_the_report_is_not_written_through_a_symbolic_link,
    SandboxConfig::default(),
    |server, work| {
        work.write("people.csv", &support::people_csv(3));
        work.write("victim.txt", "precious\n");
        std::os::unix::fs::symlink("victim.txt", work.path("report.html")).unwrap();
        let run = work.import_to(&server.url(), "people.csv", &["--report", "report.html"]);
        assert_ne!(run.code(), 0, "{}", run.context());
        assert_eq!(work.read("victim.txt"), "precious\n", "{}", run.context());
        assert!(
            run.stderr().contains("symbolic link"),
            "says why: {}",
            run.context()
        );
        assert_eq!(
            server.sandbox.users().len(),
            0,
            "nothing sent before the refusal"
        );
    }
);

#[cfg(unix)]
sandbox_test!(
    item04_a_ledger_export_is_not_written_through_a_symbolic_link,
    SandboxConfig::default(),
    |server, work| {
        work.write("people.csv", &support::people_csv(3));
        work.import_to(&server.url(), "people.csv", &[])
            .expect_code(0);
        work.write("victim.txt", "precious\n");
        std::os::unix::fs::symlink("victim.txt", work.path("out.csv")).unwrap();
        let run = work.roster(&["ledger", "export", "-o", "out.csv"]);
        assert_ne!(run.code(), 0, "{}", run.context());
        assert_eq!(work.read("victim.txt"), "precious\n", "{}", run.context());
    }
);

#[cfg(unix)]
#[test]
fn item04_an_error_file_that_keeps_passwords_is_private() {
    let work = WorkDir::new();
    work.write(
        "people.csv",
        "First Name,Last Name,Email,Password\nAnn,,ann@example.com,Secret-Pass-1\n",
    );
    let run = work.roster(&["validate", "people.csv", "--keep-secrets"]);
    run.expect_code(1);
    assert!(work.read("people.errors.csv").contains("Secret-Pass-1"));
    assert_eq!(
        mode(&work.path("people.errors.csv")),
        0o600,
        "{}",
        run.context()
    );
}

#[test]
fn item02_a_base_url_with_credentials_is_refused() {
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(2));
    let run = work.roster(&[
        "import",
        "people.csv",
        "--target",
        "sandbox",
        "--base-url",
        "http://admin:HUNTER2@127.0.0.1:9/",
    ]);
    run.expect_code(2);
    assert!(
        run.stderr()
            .contains("credentials belong in the environment"),
        "{}",
        run.context()
    );
    assert!(!run.stderr().contains("HUNTER2"), "{}", run.context());
    assert!(
        !work.path("roster-ledger.sqlite").exists(),
        "no ledger keyed by it"
    );
}

#[test]
fn item03_a_config_parse_error_does_not_echo_the_offending_value() {
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(2));
    work.write(
        "roster.toml",
        "target = \"sandbox\"\ntoken: \"SUPERSECRET-1234\"\n",
    );
    let run = work.roster(&["validate", "people.csv", "--config", "roster.toml"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("line 2"),
        "says where: {}",
        run.context()
    );
    assert!(!run.stderr().contains("SUPERSECRET"), "{}", run.context());
}

/// A generic profile that sends the password under a key that does not say so.
fn sneaky_profile(work: &WorkDir) {
    work.write(
        "profile.toml",
        r#"name = "sneaky"
path = "/users"
[body]
email = "{email}"
pwd = "{password}"
"#,
    );
}

#[test]
fn item03_show_requests_redacts_a_password_under_any_key() {
    let work = WorkDir::new();
    sneaky_profile(&work);
    work.write(
        "people.csv",
        "First Name,Last Name,Email,Password\nAnn,Lee,ann@example.com,Secret-Pass-1\n",
    );
    let run = work.roster(&[
        "import",
        "people.csv",
        "--target",
        "http",
        "--profile",
        "profile.toml",
        "--base-url",
        "http://127.0.0.1:9",
        "--dry-run",
        "--show-requests",
        "1",
    ]);
    assert!(
        run.stderr().contains("\"pwd\":\"***\""),
        "{}",
        run.context()
    );
    assert!(!run.stderr().contains("Secret-Pass-1"), "{}", run.context());
}

#[test]
fn item03_a_server_that_echoes_the_request_stores_no_password_and_no_credential() {
    let server = Hostile::start(|seen| {
        let echoed = String::from_utf8_lossy(&seen.body).into_owned();
        let token = seen.header("authorization").unwrap_or("").to_string();
        Reply::json(
            400,
            serde_json::json!({"message": format!("bad request {echoed} with {token}")}),
        )
    });
    let work = WorkDir::new();
    work.write(
        "profile.toml",
        r#"name = "echo"
path = "/users"
[headers]
Authorization = "Bearer ${ECHO_TOKEN}"
[body]
email = "{email}"
pwd = "{password}"
"#,
    );
    work.write(
        "people.csv",
        "First Name,Last Name,Email,Password\nAnn,Lee,ann@example.com,Secret-Pass-1\n",
    );
    let run = work.roster_with_env(
        &[
            "import",
            "people.csv",
            "--target",
            "http",
            "--profile",
            "profile.toml",
            "--base-url",
            &server.url(),
            "--report",
            "report.html",
        ],
        &[("ECHO_TOKEN", "tok-VERY-SECRET-99")],
    );
    run.expect_code(1);
    assert_eq!(server.count("POST"), 1, "{}", run.context());
    let errors = work.read("people.errors.csv");
    assert!(
        errors.contains("***"),
        "the echo is kept, starred: {errors}"
    );
    let export = work.roster(&["ledger", "export", "--format", "jsonl"]);
    let report = work.read("report.html");
    // The ledger's raw bytes too (the kept answer body is not exported), WAL included.
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(work.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("roster-ledger.sqlite") {
            raw.extend(std::fs::read(path).unwrap());
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    for (what, text) in [
        ("ledger file", raw.as_str()),
        ("error file", errors.as_str()),
        ("ledger", &export.stdout()),
        ("report", &report),
        ("stderr", &run.stderr()),
    ] {
        assert!(
            !text.contains("Secret-Pass-1"),
            "password in the {what}: {text}"
        );
        assert!(
            !text.contains("tok-VERY-SECRET-99"),
            "token in the {what}: {text}"
        );
    }
}

#[test]
fn item03_a_token_endpoint_that_echoes_the_grant_prints_no_secret() {
    let server = Hostile::start(|seen| {
        let echoed = String::from_utf8_lossy(&seen.body).into_owned();
        Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": format!("refused {echoed}")}),
        )
    });
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(2));
    let run = work.roster_with_env(
        &[
            "import",
            "people.csv",
            "--target",
            "crayon",
            "--base-url",
            &server.url(),
        ],
        &[
            ("ROSTER_CLIENT_ID", "client-1"),
            ("ROSTER_CLIENT_SECRET", "client-SECRET-77"),
            ("ROSTER_USERNAME", "api-user"),
            ("ROSTER_PASSWORD", "user-PASSWORD-88"),
        ],
    );
    assert_eq!(run.code(), 3, "{}", run.context());
    assert!(run.stderr().contains("refused"), "{}", run.context());
    assert!(
        server.seen().iter().all(|s| !s.path.contains("users/")),
        "no person sent"
    );
    for secret in ["client-SECRET-77", "user-PASSWORD-88"] {
        assert!(
            !run.stderr().contains(secret),
            "{secret}: {}",
            run.context()
        );
    }
}

sandbox_test!(
    item05_the_password_file_neutralises_formulas_like_every_csv_roster_writes,
    SandboxConfig::default(),
    |server, work| {
        work.write(
            "people.csv",
            "First Name,Last Name,Email\nAnn,Lee,=cmd|x@example.com\nBo,Ray,+bo@example.com\n",
        );
        let run = work.import_to(
            &server.url(),
            "people.csv",
            &["--generate-passwords", "pw.csv"],
        );
        run.expect_code(0);
        let lines = work.read("pw.csv");
        assert!(lines.contains("\n'=cmd|x@example.com,"), "{lines}");
        assert!(lines.contains("\n'+bo@example.com,"), "{lines}");
        assert_eq!(
            server.sandbox.users().len(),
            2,
            "the people are created as they are"
        );
    }
);
