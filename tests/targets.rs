//! Every built-in target end to end over HTTP, against the sandbox's profile of that API:
//! success with the remote id in the ledger, a row refused locally without a request, a 400
//! whose messages reach the error file under the user's column, a duplicate recorded as
//! `exists`, token renewal after a 401, and wrong credentials stopping the run with exit 3.

#[macro_use]
mod support;

use roster_sandbox::{Profile, SandboxConfig, SandboxCredentials};
use support::{TestSandbox, WorkDir};

/// Ann and Bob are created; Cy's 65-character last name is refused by the API (400); Dee's
/// email is refused locally; Eve already exists on the server.
fn people() -> String {
    let long = "L".repeat(65);
    format!(
        "First Name,Last Name,Email,Phone,Role\n\
         Ann,Lee,ann@example.com,+14155550100,user\n\
         Bob,Ray,bob@example.com,+14155550101,user\n\
         Cy,{long},cy@example.com,+14155550102,user\n\
         Dee,Fox,not-an-email,,user\n\
         Eve,Gil,eve@example.com,+14155550104,user\n"
    )
}

/// The default sandbox credentials, minus the bearer token for targets that must fetch one.
fn credentials(profile: Profile) -> Vec<(&'static str, String)> {
    let all = SandboxCredentials::default().env();
    match profile {
        Profile::Crayon | Profile::Nexway | Profile::Cradl => all
            .into_iter()
            .filter(|(k, _)| *k != "ROSTER_TOKEN")
            .collect(),
        _ => all,
    }
}

/// The ledger key of the target at `base` (`profile@base`, with its account where it has one).
fn key_for(ledger: &std::path::Path, profile: Profile, base: &str) -> String {
    let prefix = format!("{}@{base}", profile.name());
    roster::ledger::target_keys(ledger)
        .unwrap()
        .into_iter()
        .find(|k| *k == prefix || k.starts_with(&format!("{prefix}#")))
        .unwrap_or(prefix)
}

struct Outcome {
    server: TestSandbox,
    work: WorkDir,
    run: support::Run,
    base: String,
}

fn import(profile: Profile, config: SandboxConfig, csv: &str, extra: &[&str]) -> Outcome {
    let server = TestSandbox::start(config);
    server.sandbox.seed_user(profile, "eve@example.com");
    let work = WorkDir::new();
    let input = work.write("people.csv", csv);
    let base = format!("{}/{}", server.url(), profile.name());
    let mut args = vec![
        "import",
        input.to_str().unwrap(),
        "--target",
        profile.name(),
        "--base-url",
        &base,
        "--rate",
        "0",
        "--json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let env = credentials(profile);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = work.roster_with_env(&args, &env);
    Outcome {
        server,
        work,
        run,
        base,
    }
}

fn check_standard_run(profile: Profile, extra: &[&str]) -> Outcome {
    // Cradl has one `name`: its refusal is attributed to the first-name column.
    let refused_column = match profile {
        Profile::Cradl => "First Name: ",
        _ => "Last Name: ",
    };
    let out = import(profile, SandboxConfig::default(), &people(), extra);
    let run = &out.run;
    run.expect_code(1);
    let summary = run.json();
    assert_eq!(summary["created"], 2, "{}", run.context());
    assert_eq!(summary["exists"], 1, "{}", run.context());
    assert_eq!(summary["rejected"], 1, "{}", run.context());
    assert_eq!(summary["invalid"], 1, "{}", run.context());
    // The locally refused row cost no request: Ann, Bob, Cy and Eve only.
    let stats = out.server.sandbox.stats();
    assert_eq!(stats.requests, 4, "{stats:?}{}", run.context());

    // The remote id the API gave is in the ledger.
    let users = out.server.sandbox.users_of(profile);
    let ann = users.iter().find(|u| u.email == "ann@example.com").unwrap();
    let key = key_for(&out.work.path("roster-ledger.sqlite"), profile, &out.base);
    let entries = roster::ledger::entries(&out.work.path("roster-ledger.sqlite"), &key).unwrap();
    let entry = |id: &str| entries.iter().find(|e| e.identity == id).unwrap();
    assert_eq!(entry("ann@example.com").state, "created");
    assert_eq!(
        entry("ann@example.com").remote_id.as_deref(),
        Some(ann.id.as_str())
    );
    assert_eq!(entry("eve@example.com").state, "exists");
    assert_eq!(entry("cy@example.com").state, "rejected");

    // The API's message for Cy lands under the user's own column.
    let errors = out.work.read("people.errors.csv");
    let cy = errors
        .lines()
        .find(|l| l.contains("cy@example.com"))
        .unwrap_or_else(|| panic!("no error line for cy:\n{errors}"));
    assert!(cy.contains(refused_column), "{cy}");
    assert!(cy.contains(",400,"), "{cy}");
    let dee = errors.lines().find(|l| l.contains("not-an-email")).unwrap();
    assert!(dee.contains("invalid"), "{dee}");
    out
}

#[test]
fn cryptlex_creates_with_generated_passwords_kept_out_of_every_output() {
    let out = check_standard_run(
        Profile::Cryptlex,
        &["--generate-passwords", "passwords.txt"],
    );
    let users = out.server.sandbox.users_of(Profile::Cryptlex);
    assert!(
        users
            .iter()
            .filter(|u| u.email != "eve@example.com")
            .all(|u| u.has_password)
    );
    let file = out.work.path("passwords.txt");
    let lines = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines[0], "identity,password,status");
    let lines = &lines[1..];
    assert_eq!(lines.len(), 2, "one line per created user: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("ann@example.com,")));
    assert!(lines.iter().all(|l| l.ends_with(",created")), "{lines:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let password = lines[0].split(',').nth(1).unwrap();
    let ledger = std::fs::read(out.work.path("roster-ledger.sqlite")).unwrap();
    let needle = password.as_bytes();
    assert!(!ledger.windows(needle.len()).any(|w| w == needle));
    assert!(!out.work.read("people.errors.csv").contains(password));
    assert!(!out.run.stderr().contains(password));
}

#[test]
fn cryptlex_without_a_password_column_asks_for_generated_passwords() {
    let out = import(Profile::Cryptlex, SandboxConfig::default(), &people(), &[]);
    out.run.expect_code(2);
    assert!(
        out.run.stderr().contains("--generate-passwords"),
        "{}",
        out.run.context()
    );
    assert_eq!(out.server.sandbox.stats().requests, 0);
}

#[test]
fn crayon_fetches_a_token_and_sets_passwords_in_a_second_call() {
    let out = check_standard_run(Profile::Crayon, &["--generate-passwords", "pw.txt"]);
    let stats = out.server.sandbox.stats();
    assert_eq!(stats.tokens_issued, 1, "one token shared by every worker");
    assert_eq!(stats.passwords_set, 2);
    let users = out.server.sandbox.users_of(Profile::Crayon);
    assert!(
        users
            .iter()
            .filter(|u| u.email != "eve@example.com")
            .all(|u| u.has_password)
    );
}

#[test]
fn cl2c_sends_tenant_and_api_key_headers() {
    check_standard_run(Profile::Cl2c, &[]);
}

#[test]
fn nexway_fetches_a_token_from_iam_tokens() {
    let out = check_standard_run(Profile::Nexway, &["--generate-passwords", "pw.csv"]);
    assert_eq!(out.server.sandbox.stats().tokens_issued, 1);
    let users = out.server.sandbox.users_of(Profile::Nexway);
    assert!(
        users
            .iter()
            .filter(|u| u.email != "eve@example.com")
            .all(|u| u.status.as_deref() == Some("ENABLED"))
    );
}

#[test]
fn cradl_uses_client_credentials() {
    check_standard_run(Profile::Cradl, &[]);
}

#[test]
fn scim_posts_core_users() {
    check_standard_run(Profile::Scim, &[]);
}

#[test]
fn an_expired_token_is_renewed_once_and_no_row_is_lost_or_doubled() {
    for profile in [Profile::Crayon, Profile::Nexway, Profile::Cradl] {
        let config = SandboxConfig {
            token_uses: Some(5),
            ..SandboxConfig::default()
        };
        // Nexway's page requires a password.
        let out = import(
            profile,
            config,
            &support::people_csv(20),
            &["--concurrency", "2", "--generate-passwords", "pw.csv"],
        );
        out.run.expect_code(0);
        let summary = out.run.json();
        assert_eq!(summary["created"], 20, "{profile:?}{}", out.run.context());
        let stats = out.server.sandbox.stats();
        assert!(stats.tokens_issued >= 2, "{profile:?}: {stats:?}");
        assert_eq!(out.server.sandbox.users_of(profile).len(), 21); // 20 + the seeded Eve
        let attempts = out.server.sandbox.attempts();
        assert!(
            attempts
                .iter()
                .filter(|(email, _)| email.starts_with("person"))
                .all(|(_, n)| *n >= 1),
        );
    }
}

#[test]
fn wrong_credentials_stop_the_run_with_exit_3_and_name_the_variable() {
    for (profile, var) in [
        (Profile::Cryptlex, "ROSTER_TOKEN"),
        (Profile::Crayon, "ROSTER_CLIENT_SECRET"),
        (Profile::Cl2c, "ROSTER_API_KEY"),
        (Profile::Nexway, "ROSTER_CLIENT_SECRET"),
        (Profile::Cradl, "ROSTER_CLIENT_SECRET"),
        (Profile::Scim, "ROSTER_TOKEN"),
    ] {
        let server = TestSandbox::start(SandboxConfig::default());
        let work = WorkDir::new();
        let input = work.write("people.csv", &support::people_csv(50));
        let base = format!("{}/{}", server.url(), profile.name());
        let mut env = credentials(profile);
        for (k, v) in env.iter_mut() {
            if *k == var {
                *v = "wrong".into();
            }
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = work.roster_with_env(
            &[
                "import",
                input.to_str().unwrap(),
                "--target",
                profile.name(),
                "--base-url",
                &base,
                "--generate-passwords",
                "pw.txt",
                "--quiet",
            ],
            &env,
        );
        run.expect_code(3);
        let stderr = run.stderr();
        assert!(stderr.contains(profile.name()), "{}", run.context());
        assert!(stderr.contains(var), "{}", run.context());
        assert!(!stderr.contains("sandbox-secret") && !stderr.contains("wrong"));
        let stats = server.sandbox.stats();
        assert_eq!(stats.created, 0);
        assert!(stats.requests <= 16, "no hammering: {stats:?}");
    }
}

sandbox_test!(
    missing_credentials_are_a_usage_error_naming_the_variables,
    SandboxConfig::default(),
    |server, work| {
        let input = work.write("people.csv", &support::people_csv(3));
        let base = format!("{}/cl2c", server.url());
        let run = work.roster(&[
            "import",
            input.to_str().unwrap(),
            "--target",
            "cl2c",
            "--base-url",
            &base,
        ]);
        run.expect_code(2);
        assert!(
            run.stderr().contains("ROSTER_TENANT and ROSTER_API_KEY"),
            "{}",
            run.context()
        );
        assert_eq!(server.sandbox.stats().requests, 0);
    }
);

#[test]
fn cradl_quota_exhaustion_stops_sending() {
    let config = SandboxConfig {
        quota: Some(3),
        ..SandboxConfig::default()
    };
    // Eve is seeded, so two more users fit.
    let out = import(
        Profile::Cradl,
        config,
        &support::people_csv(10),
        &["--concurrency", "1"],
    );
    out.run.expect_code(3);
    assert!(out.run.stderr().contains("quota"), "{}", out.run.context());
    let stats = out.server.sandbox.stats();
    assert_eq!(stats.created, 3);
    assert!(stats.requests <= 4, "{stats:?}");
}

#[test]
fn cradl_roles_must_be_role_ids_and_are_checked_before_sending() {
    let csv = "Email,Name,Role\n\
               a@example.com,Ann Lee,cradl:role:reviewer\n\
               b@example.com,Bob Ray,Org Admin\n";
    let out = import(Profile::Cradl, SandboxConfig::default(), csv, &[]);
    out.run.expect_code(1);
    let summary = out.run.json();
    assert_eq!(summary["created"], 1, "{}", out.run.context());
    assert_eq!(summary["invalid"], 1);
    assert_eq!(out.server.sandbox.stats().requests, 1);
    assert!(out.work.read("people.errors.csv").contains("Cradl role id"));
}

#[test]
fn the_targets_listing_names_every_target_and_its_variables() {
    let work = WorkDir::new();
    let run = work.roster(&["targets"]);
    run.expect_code(0);
    for name in [
        "cryptlex",
        "crayon",
        "cl2c",
        "nexway",
        "cradl",
        "scim",
        "ROSTER_API_KEY",
    ] {
        assert!(run.stdout().contains(name), "{name}{}", run.context());
    }
}

sandbox_test!(
    a_generic_http_profile_reaches_the_sandbox_with_headers_from_the_environment,
    SandboxConfig {
        token: Some("right".into()),
        ..SandboxConfig::default()
    },
    |server, work| {
        let input = work.write("people.csv", &people());
        let profile = work.sample("http-profile.toml");
        let url = server.url();
        let args = [
            "import",
            input.to_str().unwrap(),
            "--target",
            "http",
            "--profile",
            profile.to_str().unwrap(),
            "--base-url",
            &url,
            "--json",
            "--quiet",
        ];
        // Without the variable its header names, nothing is sent.
        let run = work.roster(&args);
        run.expect_code(2);
        assert!(run.stderr().contains("ROSTER_TOKEN"), "{}", run.context());
        assert_eq!(server.sandbox.stats().requests, 0);

        let run = work.roster_with_env(&args, &[("ROSTER_TOKEN", "right")]);
        run.expect_code(1);
        let summary = run.json();
        assert_eq!(summary["created"], 3, "{}", run.context()); // Ann, Bob, Eve
        assert_eq!(summary["rejected"], 1, "{}", run.context()); // Cy's long last name
        let ann = server
            .sandbox
            .users()
            .into_iter()
            .find(|u| u.email == "ann@example.com")
            .unwrap();
        let key = format!("http:sandbox-by-profile@{url}/users");
        let entries = roster::ledger::entries(&work.path("roster-ledger.sqlite"), &key).unwrap();
        let entry = entries
            .iter()
            .find(|e| e.identity == "ann@example.com")
            .unwrap();
        assert_eq!(entry.remote_id.as_deref(), Some(ann.id.as_str()));
        assert!(work.read("people.errors.csv").contains("Last Name: "));
    }
);

#[test]
fn cryptlex_answers_lost_after_creation_are_looked_up_and_recorded_as_created() {
    // Cryptlex has no idempotency key: a resend after a lost answer meets "already exists",
    // and `GET /v3/users?email=` shows it was ours.
    let mut csv = String::from("First Name,Last Name,Email\n");
    for i in 0..200 {
        csv.push_str(&format!("First{i},Last{i},person{i}@example.com\n"));
    }
    let config = SandboxConfig {
        drop_after_commit_rate: 0.25,
        seed: 3,
        ..Default::default()
    };
    let out = import(
        Profile::Cryptlex,
        config,
        &csv,
        &["--generate-passwords", "passwords.txt"],
    );
    out.run.expect_code(0);
    let stats = out.server.sandbox.stats();
    assert!(
        stats.dropped > 20 && stats.conflicts >= stats.dropped,
        "{stats:?}"
    );
    let key = format!("cryptlex@{}", out.base);
    let entries = roster::ledger::entries(&out.work.path("roster-ledger.sqlite"), &key).unwrap();
    let users = out.server.sandbox.users_of(Profile::Cryptlex);
    assert_eq!(entries.len(), 200);
    for entry in &entries {
        let user = users.iter().find(|u| u.email == entry.identity).unwrap();
        assert_eq!(entry.state, "created", "{entry:?}");
        assert_eq!(
            entry.remote_id.as_deref(),
            Some(user.id.as_str()),
            "{entry:?}"
        );
    }
}

#[test]
fn crayon_resumes_at_the_password_step_without_creating_again() {
    let csv = "First Name,Last Name,Email,Password\n\
               Ann,Lee,ann@example.com,short\n\
               Bob,Ray,bob@example.com,long-enough-1\n";
    let out = import(Profile::Crayon, SandboxConfig::default(), csv, &[]);
    out.run.expect_code(1);
    let ledger_path = out.work.path("roster-ledger.sqlite");
    let key = key_for(&ledger_path, Profile::Crayon, &out.base);
    let entries = roster::ledger::entries(&ledger_path, &key).unwrap();
    let ann = entries
        .iter()
        .find(|e| e.identity == "ann@example.com")
        .unwrap();
    assert_eq!(
        ann.state, "rejected",
        "created, then the password was refused"
    );
    let ann_id = ann.remote_id.clone().expect("the remote id is kept");
    let creates_before = out.server.sandbox.stats().requests;

    // Ann's password fixed in the file: the next run only sets it.
    out.work.write(
        "people.csv",
        &csv.replace("ann@example.com,short", "ann@example.com,long-enough-2"),
    );
    let env = credentials(Profile::Crayon);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = out.work.roster_with_env(
        &[
            "import",
            "people.csv",
            "--target",
            "crayon",
            "--base-url",
            &out.base,
            "--json",
        ],
        &env,
    );
    run.expect_code(0);
    let stats = out.server.sandbox.stats();
    assert_eq!(
        stats.requests, creates_before,
        "no second create: {stats:?}"
    );
    assert_eq!((stats.passwords_set, stats.conflicts), (2, 0), "{stats:?}");
    let entries = roster::ledger::entries(&ledger_path, &key).unwrap();
    let ann = entries
        .iter()
        .find(|e| e.identity == "ann@example.com")
        .unwrap();
    assert_eq!(
        (ann.state.as_str(), ann.remote_id.as_deref()),
        ("created", Some(ann_id.as_str()))
    );
    let users = out.server.sandbox.users_of(Profile::Crayon);
    assert!(
        users
            .iter()
            .filter(|u| u.email != "eve@example.com")
            .all(|u| u.has_password)
    );
}

/// One registry: every built-in target appears in `roster targets` and in `--help`, every
/// target with a fake names a sandbox profile that exists, and every sandbox profile fakes a
/// target roster has.
#[test]
fn the_registry_roster_targets_help_and_the_sandbox_agree() {
    let work = WorkDir::new();
    let listing = work.roster(&["targets"]);
    listing.expect_code(0);
    let help = work.roster(&["import", "--help"]);
    help.expect_code(0);
    for def in roster::targets::TARGETS {
        let info = &def.info;
        assert!(
            listing.stdout().lines().any(|l| l.starts_with(info.name)),
            "`roster targets` lists {}: {}",
            info.name,
            listing.stdout()
        );
        assert!(
            help.stdout().contains(info.name),
            "--help names {}",
            info.name
        );
        if let Some(profile) = info.sandbox {
            let parsed = Profile::parse(profile)
                .unwrap_or_else(|| panic!("{} names sandbox profile {profile}", info.name));
            assert_eq!(parsed.name(), profile);
        }
    }
    for profile in Profile::ALL {
        assert!(
            roster::targets::TARGETS
                .iter()
                .any(|d| d.info.sandbox == Some(profile.name())),
            "sandbox profile {} fakes a built-in target",
            profile.name()
        );
    }
}

#[test]
fn the_pages_required_fields_are_checked_before_sending() {
    // cl2c calls its phone "essential": a row without one costs no request.
    let out = import(
        Profile::Cl2c,
        SandboxConfig::default(),
        "First Name,Last Name,Email,Phone\nAnn,Lee,ann@example.com,\nBo,Ray,bo@example.com,+14155550100\n",
        &[],
    );
    out.run.expect_code(1);
    let summary = out.run.json();
    assert_eq!(summary["invalid"], 1, "{}", out.run.context());
    assert_eq!(summary["created"], 1, "{}", out.run.context());
    assert_eq!(
        out.server.sandbox.stats().requests,
        1,
        "one request, for Bo"
    );
    // Nexway marks the password as not optional: no password column stops before sending.
    let out = import(Profile::Nexway, SandboxConfig::default(), &people(), &[]);
    out.run.expect_code(2);
    assert!(
        out.run.stderr().contains("--generate-passwords"),
        "{}",
        out.run.context()
    );
    assert_eq!(
        out.server.sandbox.users_of(Profile::Nexway).len(),
        1,
        "only the seeded Eve"
    );
}

/// The rows `roster validate` refuses for `target`, by their `_row` number.
fn refused_rows(work: &WorkDir, file: &str, target: &str) -> Vec<u64> {
    let run = work.roster(&[
        "validate",
        file,
        "--target",
        target,
        "--region",
        "US",
        "--generate-passwords",
        "pw.csv",
        "--errors",
        "refused.csv",
    ]);
    assert!([0, 1].contains(&run.code()), "{target}{}", run.context());
    assert!(
        !work.path("pw.csv").exists(),
        "validate writes no password file"
    );
    let mut rows = Vec::new();
    if let Ok(text) = std::fs::read_to_string(work.path("refused.csv")) {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let at = headers.iter().position(|h| h == "_row").unwrap();
        for record in reader.records() {
            rows.push(record.unwrap()[at].parse().unwrap());
        }
        let _ = std::fs::remove_file(work.path("refused.csv"));
    }
    rows
}

#[test]
fn each_target_refuses_exactly_what_it_would_refuse() {
    // Issue 16 items 1, 3 and 10: a column the target never receives refuses no row; the
    // page's required fields are required; a one-word full name only where a last name is.
    let work = WorkDir::new();
    work.write(
        "people.csv",
        "First Name,Last Name,Email,Phone,Role\n\
         Ann,Lee,ann@example.com,+14155550100,user\n\
         Bo,Ray,bo@example.com,call reception,user\n\
         Cy,Fox,cy@example.com,(416) 555-0101,superuser\n\
         Dee,Gil,dee@example.com,,user\n",
    );
    work.write(
        "names.csv",
        "Full Name,Email,Phone\nAnn Lee,ann@example.com,+14155550100\nCher,cher@example.com,+14155550101\n",
    );
    // target, refused rows of people.csv, refused rows of names.csv
    let table: [(&str, &[u64], &[u64]); 7] = [
        ("sandbox", &[3, 4], &[3]),
        ("cryptlex", &[4], &[3]),
        ("crayon", &[3, 4], &[3]),
        ("cl2c", &[3, 5], &[3]),
        ("nexway", &[], &[3]),
        ("cradl", &[4], &[]),
        ("scim", &[3], &[]),
    ];
    for (target, people, names) in table {
        assert_eq!(
            refused_rows(&work, "people.csv", target),
            people,
            "{target}: people.csv"
        );
        assert_eq!(
            refused_rows(&work, "names.csv", target),
            names,
            "{target}: names.csv"
        );
    }
}

#[test]
fn a_complete_grant_is_used_even_beside_a_roster_token() {
    // Issue 16 item 7: a stale ROSTER_TOKEN left in the environment must not win over the
    // grant's credentials, whose tokens renew themselves.
    for profile in [Profile::Crayon, Profile::Cradl, Profile::Nexway] {
        let server = TestSandbox::start(SandboxConfig::default());
        let work = WorkDir::new();
        work.write("people.csv", &support::people_csv(3));
        let base = format!("{}/{}", server.url(), profile.name());
        let mut env = credentials(profile);
        env.push(("ROSTER_TOKEN", "stale-token-from-last-week".into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = work.roster_with_env(
            &[
                "import",
                "people.csv",
                "--target",
                profile.name(),
                "--base-url",
                &base,
                "--generate-passwords",
                "pw.csv",
                "--json",
                "--quiet",
            ],
            &env,
        );
        run.expect_code(0);
        assert_eq!(run.json()["created"], 3, "{profile:?}{}", run.context());
        assert!(
            server.sandbox.stats().tokens_issued >= 1,
            "{profile:?}: the grant was used"
        );
    }
}

#[test]
fn validate_says_which_mapped_columns_the_target_does_not_check() {
    let work = WorkDir::new();
    work.write(
        "people.csv",
        "First Name,Last Name,Email,Mobile Phone\nAnn,Lee,ann@example.com,call reception\n",
    );
    let run = work.roster(&[
        "validate",
        "people.csv",
        "--target",
        "cryptlex",
        "--set",
        "role=user",
        "--generate-passwords",
        "pw.csv",
    ]);
    run.expect_code(0);
    assert!(
        run.stderr()
            .contains("does not receive (or takes as free text) `Mobile Phone` (phone)"),
        "{}",
        run.context()
    );
    let run = work.roster(&["validate", "people.csv", "--target", "crayon"]);
    run.expect_code(1);
    assert!(
        !run.stderr().contains("does not receive"),
        "{}",
        run.context()
    );
}

#[test]
fn a_dry_run_checks_the_credentials_the_import_would_need() {
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(2));
    let args = [
        "import",
        "people.csv",
        "--target",
        "cryptlex",
        "--dry-run",
        "--generate-passwords",
        "pw.csv",
        "--set",
        "role=user",
    ];
    let run = work.roster(&args);
    run.expect_code(2);
    assert!(run.stderr().contains("ROSTER_TOKEN"), "{}", run.context());
    let run = work.roster_with_env(&args, &[("ROSTER_TOKEN", "t0k")]);
    run.expect_code(0);
}

#[test]
fn drop_invalid_sends_the_person_without_the_bad_cell_and_warns_in_the_error_file() {
    let csv = "First Name,Last Name,Email,Mobile\n\
               Ann,Lee,ann@example.com,call reception\n\
               Bob,Ray,bob@example.com,+14155550101\n\
               Cy,L\u{FFFD}chel,cy@example.com,nope\n";
    // By default a malformed optional phone refuses the row: never silently dropped.
    let out = import(Profile::Scim, SandboxConfig::default(), csv, &[]);
    out.run.expect_code(1);
    assert_eq!(out.run.json()["created"], 1, "{}", out.run.context());
    assert_eq!(out.run.json()["invalid"], 2, "{}", out.run.context());

    let out = import(
        Profile::Scim,
        SandboxConfig::default(),
        csv,
        &["--drop-invalid", "phone"],
    );
    // Cy's last name is also damaged, which is not the dropped field's problem: still refused,
    // with both of his problems listed so he is fixed in one go.
    out.run.expect_code(1);
    let summary = out.run.json();
    assert_eq!(summary["created"], 2, "{}", out.run.context());
    assert_eq!(summary["invalid"], 1, "{}", out.run.context());
    assert_eq!(summary["sent_without_invalid"], 1, "{}", out.run.context());
    let users = out.server.sandbox.users_of(Profile::Scim);
    let ann = users.iter().find(|u| u.email == "ann@example.com").unwrap();
    assert_eq!(ann.phone, None, "Ann was sent without the phone");
    let bob = users.iter().find(|u| u.email == "bob@example.com").unwrap();
    assert_eq!(bob.phone.as_deref(), Some("+14155550101"));
    let errors = out.work.read("people.errors.csv");
    let ann_line = errors.lines().find(|l| l.contains("ann@")).unwrap();
    assert!(
        ann_line.contains(",created,warning: Mobile: `call reception`"),
        "{errors}"
    );
    let cy_line = errors.lines().find(|l| l.contains("cy@")).unwrap();
    assert!(cy_line.contains(",invalid,"), "{errors}");
    assert!(cy_line.contains("Mobile: `nope`"), "{errors}");
    assert!(!cy_line.contains("warning"), "{errors}");
}

#[test]
fn drop_invalid_refuses_the_identity_and_fields_the_target_requires() {
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(2));
    for (target, field, says) in [
        ("cl2c", "phone", "requires phone"),
        ("scim", "email", "the email is who the person is"),
        ("scim", "nickname", "is not a field"),
    ] {
        let run = work.roster(&[
            "validate",
            "people.csv",
            "--target",
            target,
            "--drop-invalid",
            field,
        ]);
        run.expect_code(2);
        assert!(run.stderr().contains(says), "{}", run.context());
    }
}

#[test]
fn validate_takes_the_token_url_and_checks_it_as_the_import_would() {
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(2));
    let run = work.roster(&[
        "validate",
        "people.csv",
        "--target",
        "nexway",
        "--set",
        "password=Str0ng!pass",
        "--token-url",
        "https://iam.example.com/iam/tokens",
    ]);
    run.expect_code(0);
    for (url, says) in [
        (
            "http://id:S3CRET@iam.example.com/t",
            "credentials belong in the environment",
        ),
        (
            "ftp://iam.example.com/t?client_secret=S3CRET",
            "not a scheme",
        ),
    ] {
        for command in ["validate", "import"] {
            let run = work.roster(&[
                command,
                "people.csv",
                "--target",
                "nexway",
                "--token-url",
                url,
            ]);
            run.expect_code(2);
            assert!(run.stderr().contains(says), "{}", run.context());
            assert!(!run.stderr().contains("S3CRET"), "{}", run.context());
        }
    }
}

#[test]
fn refusals_name_the_credential_this_run_actually_used() {
    let server = TestSandbox::start(SandboxConfig::default());
    let work = WorkDir::new();
    let input = work.write("people.csv", &support::people_csv(5));
    let input = input.to_str().unwrap();
    // Cradl with a complete grant and a ROSTER_TOKEN: the grant is used, so a refusal names
    // the grant's variables, not the token nobody used.
    let base = format!("{}/cradl", server.url());
    let mut env = SandboxCredentials::default().env();
    for (k, v) in env.iter_mut() {
        if *k == "ROSTER_CLIENT_SECRET" {
            *v = "wrong".into();
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = ["import", input, "--target", "cradl", "--base-url", &base];
    let run = work.roster_with_env(&args, &env);
    run.expect_code(3);
    assert!(
        run.stderr().contains("ROSTER_CLIENT_SECRET"),
        "{}",
        run.context()
    );
    assert!(!run.stderr().contains("ROSTER_TOKEN"), "{}", run.context());

    // A credential renamed by the config's [env] is named as the user set it.
    work.write("roster.toml", "[env]\ntoken = \"CRYPTLEX_PAT\"\n");
    let base = format!("{}/cryptlex", server.url());
    let args = [
        "import",
        input,
        "--config",
        "roster.toml",
        "--target",
        "cryptlex",
        "--base-url",
        &base,
        "--generate-passwords",
        "pw.csv",
        "--set",
        "role=user",
    ];
    let run = work.roster(&args);
    run.expect_code(2);
    assert!(
        run.stderr()
            .contains("needs CRYPTLEX_PAT in the environment"),
        "{}",
        run.context()
    );
    let run = work.roster_with_env(&args, &[("CRYPTLEX_PAT", "wrong")]);
    run.expect_code(3);
    assert!(
        run.stderr().contains("check CRYPTLEX_PAT"),
        "{}",
        run.context()
    );
    assert!(!run.stderr().contains("ROSTER_TOKEN"), "{}", run.context());
}

#[test]
fn json_names_the_target_the_times_and_why_a_run_was_aborted() {
    let server = TestSandbox::start(SandboxConfig::default());
    let work = WorkDir::new();
    let input = work.write("people.csv", &support::people_csv(5));
    let base = format!("{}/scim", server.url());
    let args = [
        "import",
        input.to_str().unwrap(),
        "--target",
        "scim",
        "--base-url",
        &base,
        "--json",
        "--quiet",
    ];
    let run = work.roster_with_env(&args, &[("ROSTER_TOKEN", "wrong")]);
    run.expect_code(3);
    let json = run.json();
    assert_eq!(json["outcome"], "aborted", "{}", run.context());
    assert_eq!(json["exit_code"], 3, "{}", run.context());
    assert_eq!(json["target"], "scim", "{}", run.context());
    assert_eq!(json["base_url"], base.as_str(), "{}", run.context());
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("check ROSTER_TOKEN"),
        "{}",
        run.context()
    );
    let started = json["started_at"].as_str().unwrap();
    let finished = json["finished_at"].as_str().unwrap();
    assert!(started <= finished, "{started} then {finished}");
    // The text summary heads with the same facts, for a cron log.
    let run = work.roster_with_env(&args[..6], &[("ROSTER_TOKEN", "wrong")]);
    let headline = run
        .stderr()
        .lines()
        .find(|l| l.starts_with("roster: summary of `import` started "))
        .map(str::to_string);
    let headline = headline.unwrap_or_else(|| panic!("no headline{}", run.context()));
    assert!(
        headline.contains(&format!("target scim at {base}")),
        "{headline}"
    );
}
