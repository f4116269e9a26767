//! Command-line contract: bad input and usage give a clear message and exit code 2, and
//! `validate` never touches the network or the ledger.

#[macro_use]
mod support;

use support::WorkDir;

#[test]
fn a_missing_file_is_exit_2_with_its_name() {
    let work = WorkDir::new();
    let run = work.roster(&["import", "nope.csv"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("failed to read `nope.csv`"),
        "{}",
        run.context()
    );
}

#[test]
fn a_missing_required_column_names_the_closest_header() {
    let work = WorkDir::new();
    work.write("p.csv", "Email,First Name,Lastnme\na@x.io,A,B\n");
    let run = work.roster(&["validate", "p.csv"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("`last_name`") && run.stderr().contains("`Lastnme`"),
        "{}",
        run.context()
    );
}

#[test]
fn an_unknown_target_is_exit_2() {
    let work = WorkDir::new();
    work.write("p.csv", "Email,First Name,Last Name\na@x.io,A,B\n");
    let run = work.roster(&[
        "import",
        "p.csv",
        "--target",
        "nosuch",
        "--base-url",
        "http://127.0.0.1:9",
    ]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("invalid value 'nosuch'") && run.stderr().contains("cryptlex"),
        "the error names the targets there are: {}",
        run.context()
    );
}

#[test]
fn an_unknown_format_is_exit_2_with_a_hint() {
    let work = WorkDir::new();
    work.write("p.dat", "Email\n");
    let run = work.roster(&["validate", "p.dat"]);
    run.expect_code(2);
    assert!(run.stderr().contains("--format"), "{}", run.context());
}

#[test]
fn validate_reports_what_would_be_sent_and_writes_no_ledger() {
    let work = WorkDir::new();
    work.sample("people.csv");
    let run = work.roster(&["validate", "people.csv", "--json"]);
    run.expect_code(1);
    let summary = run.json();
    assert_eq!(summary["would_send"], 47, "{}", run.context());
    assert_eq!(summary["invalid"], 3);
    assert_eq!(summary["duplicates"], 1);
    assert_eq!(summary["requests"], 0);
    assert!(!work.path("roster-ledger.sqlite").exists());
    assert!(work.path("people.errors.csv").exists());
}

#[test]
fn dry_run_consults_the_ledger_without_changing_it() {
    let work = WorkDir::new();
    work.sample("people.csv");
    work.roster(&["import", "people.csv"]).expect_code(1);
    let before = std::fs::read(work.path("roster-ledger.sqlite")).unwrap();
    let run = work.roster(&["import", "people.csv", "--dry-run", "--json"]);
    let summary = run.json();
    assert_eq!(summary["skipped"], 46, "{}", run.context());
    assert_eq!(summary["requests"], 0);
    assert_eq!(
        std::fs::read(work.path("roster-ledger.sqlite")).unwrap(),
        before
    );
}

/// A dry run tells a row the API refused, unchanged since, from the same person fixed: it
/// compares what it would send with what was refused, as the import will.
#[test]
fn a_dry_run_knows_an_unchanged_api_refusal_from_a_fixed_row() {
    let work = WorkDir::new();
    work.sample("people.csv");
    work.roster(&["import", "people.csv"]).expect_code(1);
    let refused_by_api = |summary: &serde_json::Value| {
        let count = |key: &str| summary[key].as_u64().unwrap_or(0);
        (count("would_send"), count("still_refused"))
    };
    let run = work.roster(&["import", "people.csv", "--dry-run", "--json"]);
    // The three rows refused locally and the one the API refused (its first name too long).
    assert_eq!(refused_by_api(&run.json()), (0, 4), "{}", run.context());

    let fixed = work
        .read("people.csv")
        .replace(&"A".repeat(70), "Alexandra");
    work.write("people.csv", &fixed);
    let run = work.roster(&["import", "people.csv", "--dry-run", "--json"]);
    assert_eq!(refused_by_api(&run.json()), (1, 3), "{}", run.context());
}

/// A dry run reads the ledger and leaves nothing beside it: no `-wal` or `-shm` file that
/// the import before it had cleaned away.
#[test]
fn a_dry_run_leaves_no_file_beside_the_ledger() {
    let work = WorkDir::new();
    work.sample("people.csv");
    work.roster(&["import", "people.csv"]).expect_code(1);
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(work.path("."))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("roster-ledger"))
            .collect();
        names.sort();
        names
    };
    let before = files();
    let ledger = std::fs::read(work.path("roster-ledger.sqlite")).unwrap();
    let run = work.roster(&["import", "people.csv", "--dry-run"]);
    assert_eq!(files(), before, "{}", run.context());
    assert_eq!(
        std::fs::read(work.path("roster-ledger.sqlite")).unwrap(),
        ledger
    );
}

/// A dry run before the first import keeps its (empty) ledger in memory: it answers exactly
/// as the dry run on a SQLite copy of a ledger that holds none of these people.
#[test]
fn a_dry_run_with_no_ledger_yet_answers_as_one_on_an_empty_ledger() {
    let work = WorkDir::new();
    work.sample("people.csv");
    let counts = |run: &support::Run| {
        let json = run.json();
        [
            "rows",
            "would_send",
            "invalid",
            "duplicates",
            "skipped",
            "still_refused",
            "requests",
        ]
        .map(|k| (k, json[k].clone()))
    };
    let first = work.roster(&["import", "people.csv", "--dry-run", "--json"]);
    assert!(
        !work.path("roster-ledger.sqlite").exists(),
        "a dry run creates no ledger"
    );
    let first_errors = work.read("people.errors.csv");
    // A ledger that exists, holding one person who is not in the file.
    work.write(
        "other.csv",
        "First Name,Last Name,Email\nOla,Nordmann,ola@elsewhere.example\n",
    );
    work.roster(&["import", "other.csv"]).expect_code(0);
    let second = work.roster(&["import", "people.csv", "--dry-run", "--json"]);
    assert_eq!(counts(&first), counts(&second), "{}", second.context());
    assert!(
        first.json()["duplicates"].as_u64().unwrap() > 0
            || first.json()["invalid"].as_u64().unwrap() > 0
    );
    assert_eq!(first_errors, work.read("people.errors.csv"));
}

#[test]
fn a_ragged_row_is_refused_not_fatal() {
    let work = WorkDir::new();
    work.write(
        "p.csv",
        "Email,First Name,Last Name\na@x.io,A,B\nb@x.io,B\nc@x.io,C,D\n",
    );
    let run = work.roster(&["validate", "p.csv", "--json"]);
    run.expect_code(1);
    assert_eq!(run.json()["invalid"], 1);
    assert!(
        work.read("p.errors.csv")
            .contains("row has 2 fields, the header has 3")
    );
}

#[test]
fn help_lists_the_commands_with_examples() {
    let work = WorkDir::new();
    let run = work.roster(&["import", "--help"]);
    run.expect_code(0);
    assert!(run.stdout().contains("Examples:") && run.stdout().contains("--concurrency"));
}

#[test]
fn ledger_export_and_stats_describe_every_identity() {
    let work = WorkDir::new();
    work.sample("people.csv");
    work.roster(&["import", "people.csv"]).expect_code(1);

    let run = work.roster(&["ledger", "export"]);
    run.expect_code(0);
    let stdout = run.stdout();
    let mut reader = csv::Reader::from_reader(stdout.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "target",
            "identity",
            "state",
            "remote_id",
            "http_status",
            "attempts",
            "first_attempt",
            "last_attempt",
            "source_file",
            "source_row",
            "errors",
            "sync_status",
            "last_sent",
            "history"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // 46 created + 1 rejected + 2 invalid rows that had a valid email + the row with no
    // valid email, known by a hash of its cells.
    assert_eq!(rows.len(), 50, "{}", run.context());
    assert_eq!(
        rows.iter().filter(|r| r[1].starts_with("~row:")).count(),
        1,
        "{}",
        run.context()
    );
    let created = rows.iter().filter(|r| &r[2] == "created").count();
    assert_eq!(created, 46);
    assert!(
        rows.iter()
            .filter(|r| &r[2] == "created")
            .all(|r| r[3].starts_with("usr_") && &r[4] == "201")
    );
    let rejected: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[2] == "rejected").collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(&rejected[0][9], "32");
    assert!(rejected[0][10].starts_with("First Name: The field firstName"));
    assert!(
        rejected[0][6].ends_with('Z'),
        "RFC 3339 time: {}",
        &rejected[0][6]
    );

    let run = work.roster(&[
        "ledger", "export", "--format", "jsonl", "--state", "rejected", "--target", "sandbox",
    ]);
    run.expect_code(0);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.context());
    assert_eq!(lines[0]["errors"][0]["column"], "First Name");
    assert_eq!(lines[0]["errors"][0]["source"], "remote");

    let run = work.roster(&["ledger", "stats"]);
    run.expect_code(0);
    let stats = run.stdout();
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("sandbox ") && l.contains("created") && l.contains(" 46 ")),
        "{stats}"
    );
    assert!(stats.contains("runs: 1"), "{stats}");
}

#[test]
fn ledger_export_without_a_ledger_is_exit_2() {
    let work = WorkDir::new();
    let run = work.roster(&["ledger", "export"]);
    run.expect_code(2);
    assert!(run.stderr().contains("no ledger"), "{}", run.context());
}

#[test]
fn targets_lists_each_target_with_its_variables() {
    let work = WorkDir::new();
    let run = work.roster(&["targets"]);
    run.expect_code(0);
    assert!(run.stdout().contains("sandbox") && run.stdout().contains("ROSTER_TOKEN"));
}

#[test]
fn passwords_are_blanked_in_the_error_file_unless_kept() {
    let work = WorkDir::new();
    work.write(
        "p.csv",
        "Email,First Name,Last Name,Password\nbad-email,A,B,hunter2\n",
    );
    work.roster(&["validate", "p.csv"]).expect_code(1);
    let text = work.read("p.errors.csv");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("bad-email,A,B,,"), "{text}");
    work.roster(&["validate", "p.csv", "--keep-secrets"])
        .expect_code(1);
    assert!(work.read("p.errors.csv").contains("hunter2"));
}

#[test]
fn errors_format_jsonl_writes_one_object_per_refused_row() {
    let work = WorkDir::new();
    work.sample("people.csv");
    work.roster(&["validate", "people.csv", "--errors-format", "jsonl"])
        .expect_code(1);
    let text = work.read("people.errors.jsonl");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows: Vec<u64> = lines.iter().map(|l| l["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [7, 14, 22, 42]);
    assert_eq!(lines[0]["status"], "invalid");
    assert_eq!(lines[0]["errors"][0]["column"], "E-mail Address");
    assert_eq!(lines[0]["errors"][0]["code"], "format");
    assert_eq!(
        lines[0]["record"]["E-mail Address"],
        "malformed.example.com"
    );
}

#[test]
fn show_requests_prints_bodies_with_secrets_redacted() {
    let work = WorkDir::new();
    work.write(
        "p.csv",
        "Email,First Name,Last Name,Password\na@example.com,A,B,hunter2\nb@example.com,C,D,pw\n",
    );
    let run = work.roster(&["validate", "p.csv", "--show-requests", "1"]);
    run.expect_code(0);
    let stderr = run.stderr();
    assert!(stderr.contains(r#""password":"***""#), "{}", run.context());
    assert!(!stderr.contains("hunter2"));
    assert_eq!(stderr.matches("POST ").count(), 1);
}

#[test]
fn a_config_file_sets_defaults_and_flags_override_it() {
    let work = WorkDir::new();
    work.write("p.csv", "Mail,First Name,Last Name\na@example.com,A,B\n");
    work.write(
        "roster.toml",
        "errors = \"refused.csv\"\n[map]\nemail = \"Mail\"\n[set]\nrole = \"nope\"\n",
    );
    // The config maps Mail to email and gives role a default that is not a role.
    work.roster(&["validate", "p.csv"]).expect_code(1);
    assert!(
        work.read("refused.csv")
            .contains("role: `nope` is not a known role")
    );
    // A flag overrides the config's default.
    work.roster(&["validate", "p.csv", "--set", "role=user"])
        .expect_code(0);
}

#[test]
fn an_unknown_config_key_suggests_the_closest() {
    let work = WorkDir::new();
    work.write("p.csv", "Email,First Name,Last Name\na@example.com,A,B\n");
    work.write("roster.toml", "concurency = 4\n");
    let run = work.roster(&["validate", "p.csv"]);
    run.expect_code(2);
    assert!(
        run.stderr()
            .contains("unknown key `concurency` (did you mean `concurrency`?)"),
        "{}",
        run.context()
    );
}

#[test]
fn a_ledger_in_use_by_another_run_is_exit_4_naming_its_pid() {
    let work = WorkDir::new();
    work.sample("people.csv");
    let held =
        roster::ledger::lock::LedgerLock::acquire(&work.path("roster-ledger.sqlite")).unwrap();
    let run = work.roster(&["import", "people.csv"]);
    run.expect_code(4);
    let expected = format!("held by another roster run (pid {}", std::process::id());
    assert!(run.stderr().contains(&expected), "{}", run.context());
    drop(held);
    work.roster(&["import", "people.csv"]).expect_code(1);
}

#[test]
fn quiet_prints_only_the_summary_and_errors() {
    let work = WorkDir::new();
    work.sample("people.csv");
    let run = work.roster(&["import", "people.csv", "--quiet"]);
    run.expect_code(1);
    let stderr = run.stderr();
    assert!(stderr.starts_with("roster: summary"), "{}", run.context());
    assert!(!stderr.contains("in-process sandbox"));
}

#[test]
fn every_command_help_has_an_example() {
    let work = WorkDir::new();
    for command in [
        &["import", "--help"][..],
        &["validate", "--help"],
        &["sandbox", "--help"],
        &["targets", "--help"],
        &["ledger", "export", "--help"],
        &["ledger", "stats", "--help"],
    ] {
        let run = work.roster(command);
        run.expect_code(0);
        assert!(run.stdout().contains("Example"), "{}", run.context());
    }
}

#[test]
fn encoding_and_delimiter_flags_override_detection() {
    let work = WorkDir::new();
    std::fs::write(
        work.path("p.csv"),
        b"Email|First Name|Last Name\na@x.io|Ren\xE9|B\n",
    )
    .unwrap();
    let run = work.roster(&[
        "validate",
        "p.csv",
        "--delimiter",
        "|",
        "--encoding",
        "latin1",
        "--show-requests",
        "1",
    ]);
    run.expect_code(0);
    assert!(
        run.stderr().contains(r#""firstName":"René""#),
        "{}",
        run.context()
    );
    let bad = work.roster(&["validate", "p.csv", "--encoding", "klingon"]);
    bad.expect_code(2);
}

/// Operators' logs: `--log-format json` gives one JSON event per line, the run's start and
/// end with its target and totals; `-v` adds a line per attempt; no person's data is logged.
#[test]
fn logs_are_structured_events_without_personal_data() {
    let work = WorkDir::new();
    work.write("p.csv", &support::people_csv(5));
    let run = work.roster(&["import", "p.csv", "--log-format", "json", "-v", "--quiet"]);
    run.expect_code(0);
    let events: Vec<serde_json::Value> = run
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let named = |message: &str| {
        events
            .iter()
            .filter(|e| e["fields"]["message"] == message)
            .collect::<Vec<_>>()
    };
    let started = named("run started");
    assert_eq!(started.len(), 1, "{}", run.context());
    assert_eq!(started[0]["fields"]["target"], "sandbox");
    let finished = named("run finished");
    assert_eq!(finished.len(), 1, "{}", run.context());
    assert_eq!(finished[0]["fields"]["created"], 5);
    let attempts = named("attempt");
    assert_eq!(
        attempts.len(),
        5,
        "one debug line per attempt: {}",
        run.context()
    );
    assert_eq!(attempts[0]["level"], "DEBUG");
    assert_eq!(attempts[0]["fields"]["status"], 201);
    assert!(
        !run.stderr().contains("@example.com"),
        "no email in the logs: {}",
        run.context()
    );
}

#[test]
fn a_dash_reads_standard_input_with_the_format_from_the_flag_or_its_bytes() {
    let work = WorkDir::new();
    let csv = "Email,First Name,Last Name\nann@example.com,Ann,Lee\nnot-an-email,Bob,Ray\n";
    let run = work.roster_with_stdin(&["validate", "-", "--json"], &[], csv.as_bytes());
    run.expect_code(1);
    assert_eq!(run.json()["would_send"], 1, "{}", run.context());
    assert_eq!(run.json()["invalid"], 1, "{}", run.context());
    let errors = work.read("stdin.errors.csv");
    assert!(
        errors.contains("not-an-email,Bob,Ray,3,invalid"),
        "{errors}"
    );

    let jsonl = "{\"email\":\"ann@example.com\",\"first_name\":\"Ann\",\"last_name\":\"Lee\"}\n";
    let run = work.roster_with_stdin(&["validate", "-", "--json"], &[], jsonl.as_bytes());
    run.expect_code(0);
    assert_eq!(run.json()["would_send"], 1, "{}", run.context());

    let xlsx = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dialects/people.xlsx"),
    )
    .unwrap();
    let run = work.roster_with_stdin(&["validate", "-", "--json", "--region", "US"], &[], &xlsx);
    assert_eq!(run.json()["rows"], 8, "{}", run.context());

    let tsv = "Email\tFirst Name\tLast Name\nann@example.com\tAnn\tLee\n";
    let args = ["validate", "-", "--json", "--format", "tsv"];
    let run = work.roster_with_stdin(&args, &[], tsv.as_bytes());
    run.expect_code(0);
    assert_eq!(run.json()["would_send"], 1, "{}", run.context());
}

sandbox_test!(
    an_import_from_standard_input_creates_and_resumes_by_identity,
    roster_sandbox::SandboxConfig::default(),
    |server, work| {
        let people = support::people_csv(20);
        let url = server.url();
        let args = WorkDir::import_args(&url, "-", &["--json", "--quiet"]);
        let run = work.roster_with_stdin(&args, &[], people.as_bytes());
        run.expect_code(0);
        assert_eq!(run.json()["created"], 20, "{}", run.context());
        let run = work.roster_with_stdin(&args, &[], people.as_bytes());
        run.expect_code(0);
        assert_eq!(run.json()["skipped"], 20, "{}", run.context());
        assert_eq!(server.sandbox.stats().created, 20);
    }
);

#[test]
fn completions_are_generated_for_every_shell() {
    let work = WorkDir::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = work.roster(&["completions", shell]);
        run.expect_code(0);
        let script = run.stdout();
        assert!(script.contains("import"), "{shell}: {}", run.context());
        assert!(
            script.contains("drop-invalid"),
            "{shell}: {}",
            run.context()
        );
    }
    // The bash script is valid bash.
    let script = work.write(
        "roster.bash",
        &work.roster(&["completions", "bash"]).stdout(),
    );
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(checked.success(), "bash -n refuses the completion script");
    let run = work.roster(&["completions", "tcsh"]);
    run.expect_code(2);
}

#[test]
fn man_pages_are_generated_for_roster_and_each_command() {
    let work = WorkDir::new();
    let run = work.roster(&["man"]);
    run.expect_code(0);
    let page = run.stdout();
    assert!(page.contains(".TH roster 1"), "{page}");
    assert!(page.contains("import"), "{page}");
    for (path, title, flag) in [
        (&["man", "import"][..], ".TH roster-import 1", "concurrency"),
        (
            &["man", "validate"][..],
            ".TH roster-validate 1",
            "print\\-mapping",
        ),
        (
            &["man", "ledger", "export"][..],
            ".TH roster-ledger-export 1",
            "state",
        ),
    ] {
        let run = work.roster(path);
        run.expect_code(0);
        let page = run.stdout();
        assert!(page.contains(title), "{path:?}: {page}");
        assert!(page.contains(flag), "{path:?}: {page}");
        assert!(page.contains(env!("CARGO_PKG_VERSION")), "{path:?}: {page}");
    }
    let run = work.roster(&["man", "nope"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("commands: import"),
        "{}",
        run.context()
    );
}

#[test]
fn import_help_shows_every_default() {
    let work = WorkDir::new();
    let help = work.roster(&["import", "--help"]).stdout();
    for (flag, default) in [
        ("--concurrency", "[default: adaptive, up to 64]"),
        ("--max-retries", "[default: 5]"),
        ("--timeout", "[default: 30]"),
        ("--ledger", "[default: roster-ledger.sqlite]"),
        ("--burst", "[default: the target's"),
        ("--errors-format", "[default: the extension of --errors"),
        ("--max-wait", "[default: 5m]"),
        ("--rate", "default: the target's"),
    ] {
        let start = help
            .find(&format!("      {flag} "))
            .unwrap_or_else(|| panic!("{flag}"));
        let block = &help[start..];
        let end = block[1..].find("\n      -").map_or(block.len(), |e| e + 1);
        let block = block[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(block.contains(default), "{flag}: {block}");
    }
}

#[test]
fn json_is_printed_on_a_fatal_error_too() {
    let work = WorkDir::new();
    let run = work.roster(&["import", "missing.csv", "--json", "--target", "sandbox"]);
    run.expect_code(2);
    let json = run.json();
    assert_eq!(json["outcome"], "error", "{}", run.context());
    assert_eq!(json["exit_code"], 2, "{}", run.context());
    assert_eq!(json["command"], "import", "{}", run.context());
    assert!(
        json["reason"].as_str().unwrap().contains("missing.csv"),
        "{}",
        run.context()
    );
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        json.get("rows").is_none(),
        "no totals for a run that never started"
    );
}

#[test]
fn a_template_for_every_target_validates_with_nothing_refused() {
    let work = WorkDir::new();
    let profile = work.sample("http-profile.toml");
    let profile = profile.to_str().unwrap();
    for target in roster::targets::names() {
        let mut pick = vec!["--target", target];
        if target == "http" {
            pick.extend(["--profile", profile]);
        }
        let csv = format!("{target}.csv");
        let xlsx = format!("{target}.xlsx");
        let mut args = vec!["template", "-o", csv.as_str()];
        args.extend(&pick);
        work.roster(&args).expect_code(0);
        let mut args = vec!["template", "-o", xlsx.as_str()];
        args.extend(&pick);
        work.roster(&args).expect_code(0);
        let header = work.read(&csv).lines().next().unwrap().to_string();
        assert!(
            header.starts_with("Email [Required],"),
            "{target}: {header}"
        );
        for file in [&csv, &xlsx] {
            let mut args = vec!["validate", file.as_str(), "--json"];
            args.extend(&pick);
            let run = work.roster(&args);
            run.expect_code(0);
            assert_eq!(
                run.json()["would_send"],
                1,
                "{target} {file}{}",
                run.context()
            );
            assert_eq!(run.json()["invalid"], 0, "{target} {file}{}", run.context());
        }
    }
    // The pages' required fields are marked: cl2c's phone, Nexway's and Cryptlex's password.
    let header = |target: &str| {
        let run = work.roster(&["template", "--target", target]);
        run.expect_code(0);
        run.stdout().lines().next().unwrap().to_string()
    };
    assert!(header("cl2c").contains("Phone [Required]"));
    assert!(header("nexway").contains("Password [Required]"));
    assert!(header("cryptlex").contains("Password [Required]"));
    assert!(
        !header("cryptlex").contains("Phone"),
        "Cryptlex takes no phone"
    );
}

#[test]
fn an_xlsx_template_has_pick_lists_and_a_sheet_about_its_columns() {
    let work = WorkDir::new();
    work.roster(&["template", "--target", "cryptlex", "-o", "t.xlsx"])
        .expect_code(0);
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(work.path("t.xlsx")).unwrap()).unwrap();
    let mut part = |name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let workbook = part("xl/workbook.xml");
    assert!(workbook.contains("name=\"People\"") && workbook.contains("name=\"About\""));
    let people = part("xl/worksheets/sheet1.xml");
    assert!(
        people.contains("<dataValidation type=\"list\"")
            && people.contains("\"user,organization-admin\""),
        "{people}"
    );
    let run = work.roster(&["template", "--format", "xlsx"]);
    run.expect_code(2);
    assert!(run.stderr().contains("-o FILE.xlsx"), "{}", run.context());
}

#[test]
fn output_off_a_terminal_carries_no_ansi_codes() {
    let work = WorkDir::new();
    work.sample("people.csv");
    for args in [
        &["validate", "people.csv", "-v"][..],
        &["import", "people.csv", "-vv", "--dry-run"][..],
    ] {
        let run = work.roster(args);
        assert!(!run.stderr().is_empty(), "{}", run.context());
        assert!(!run.stderr().contains('\x1b'), "{}", run.context());
    }
}
