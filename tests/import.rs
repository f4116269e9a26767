//! `roster import` end to end: the real binary against a sandbox on 127.0.0.1.

#[macro_use]
mod support;

use roster_sandbox::SandboxConfig;
use std::collections::BTreeMap;
use support::{TestSandbox, WorkDir, people_csv};

/// The sample file's refused rows: (row, status, errors).
const SAMPLE_REFUSALS: [(&str, &str, &str); 5] = [
    (
        "7",
        "invalid",
        "E-mail Address: `malformed.example.com` has no `@`",
    ),
    ("14", "invalid", "Last Name: is required"),
    ("22", "duplicate", "duplicate of row 2"),
    (
        "32",
        "400",
        "First Name: The field firstName must be a string with a maximum length of 64.",
    ),
    (
        "42",
        "invalid",
        "Role: `superuser` is not a known role (user, organization-admin)",
    ),
];

fn error_rows(text: &str) -> Vec<(String, String, String)> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (row, status, errors) = (at("_row"), at("_status"), at("_errors"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[row].to_string(),
                r[status].to_string(),
                r[errors].to_string(),
            )
        })
        .collect()
}

sandbox_test!(
    import_creates_exactly_the_valid_rows_and_a_rerun_sends_nothing,
    SandboxConfig::default(),
    |server, work| {
        work.sample("people.csv");
        let url = server.url();
        let args = WorkDir::import_args(&url, "people.csv", &["--json"]);

        let first = work.roster(&args);
        first.expect_code(1);
        let summary = first.json();
        assert_eq!(summary["rows"], 51, "{}", first.context());
        assert_eq!(summary["created"], 46);
        assert_eq!(summary["invalid"], 3);
        assert_eq!(summary["duplicates"], 1);
        assert_eq!(summary["rejected"], 1);
        assert_eq!(summary["requests"], 47);

        let users = server.sandbox.users();
        assert_eq!(users.len(), 46);
        let ledger = roster::ledger::entries(
            &work.path("roster-ledger.sqlite"),
            &format!("sandbox@{url}"),
        )
        .unwrap();
        let created: BTreeMap<String, Option<String>> = ledger
            .iter()
            .filter(|e| e.state == "created")
            .map(|e| (e.identity.clone(), e.remote_id.clone()))
            .collect();
        let on_server: BTreeMap<String, Option<String>> = users
            .iter()
            .map(|u| (u.email.clone(), Some(u.id.clone())))
            .collect();
        assert_eq!(
            created, on_server,
            "the ledger holds every created user with its remote id"
        );

        let before = server.sandbox.stats().requests;
        let second = work.roster(&args);
        // Every refusal is the same as yesterday's and the repeat is of a created person: the
        // error file lists them, but nothing new failed.
        second.expect_code(0);
        let summary = second.json();
        assert_eq!(summary["requests"], 0, "{}", second.context());
        assert_eq!(summary["skipped"], 46);
        assert_eq!(summary["rejected"], 0);
        assert_eq!(
            summary["still_refused"],
            4,
            "unchanged refused rows are reported again, not re-sent: {}",
            second.context()
        );
        assert_eq!(
            server.sandbox.stats().requests,
            before,
            "the server saw no request"
        );
    }
);

sandbox_test!(
    refused_rows_land_in_the_error_file_under_the_users_columns,
    SandboxConfig::default(),
    |server, work| {
        work.sample("people.csv");
        let url = server.url();
        work.import_to(&url, "people.csv", &[]).expect_code(1);
        let text = work.read("people.errors.csv");
        assert!(
            text.starts_with(
                "First Name,Last Name,E-mail Address,Mobile Phone,Role,_row,_status,_errors\n"
            ),
            "{text}"
        );
        let expected: Vec<(String, String, String)> = SAMPLE_REFUSALS
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(error_rows(&text), expected);
    }
);

sandbox_test!(
    a_400_is_not_retried_and_its_field_messages_reach_the_error_file,
    SandboxConfig::default(),
    |server, work| {
        let long = "A".repeat(70);
        work.write(
            "one.csv",
            &format!("Given Name,Surname,Work Email\n{long},Lee,long@example.com\n"),
        );
        let url = server.url();
        let run = work.import_to(&url, "one.csv", &["--json"]);
        run.expect_code(1);
        assert_eq!(run.json()["requests"], 1);
        assert_eq!(server.sandbox.attempts().get("long@example.com"), Some(&1));
        let rows = error_rows(&work.read("one.errors.csv"));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, "400");
        assert!(
            rows[0].2.starts_with("Given Name: The field firstName"),
            "{:?}",
            rows[0]
        );
    }
);

#[test]
fn throttling_and_server_errors_are_retried_and_nothing_is_lost() {
    let config = SandboxConfig {
        rate: 40.0,
        retry_after_secs: 1,
        fail_rate: 0.2,
        seed: 7,
        ..Default::default()
    };
    let server = TestSandbox::start(config);
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(120));
    let url = server.url();
    let run = work.import_to(
        &url,
        "people.csv",
        &["--concurrency", "8", "--max-retries", "12", "--json"],
    );
    run.expect_code(0);
    let summary = run.json();
    assert_eq!(summary["created"], 120, "{}", run.context());
    assert!(
        summary["throttled"].as_u64().unwrap() > 0,
        "the sandbox throttled some{}",
        run.context()
    );
    assert!(summary["retries"].as_u64().unwrap() > 0);
    let stats = server.sandbox.stats();
    assert_eq!(stats.created, 120);
    assert_eq!(
        summary["requests"].as_u64().unwrap(),
        stats.requests,
        "every attempt is counted"
    );
    assert_eq!(server.sandbox.users().len(), 120);
}

sandbox_test!(
    first_attempts_failing_with_503_are_retried_once_each,
    SandboxConfig {
        fail_first: 1,
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(40));
        let url = server.url();
        let run = work.import_to(&url, "people.csv", &["--json"]);
        run.expect_code(0);
        let summary = run.json();
        assert_eq!(
            (summary["created"].as_u64(), summary["requests"].as_u64()),
            (Some(40), Some(80))
        );
        assert!(server.sandbox.attempts().values().all(|&n| n == 2));
    }
);

sandbox_test!(
    retries_exhausted_leave_the_row_failed_and_resendable,
    SandboxConfig {
        fail_first: 3,
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(3));
        let url = server.url();
        let args = WorkDir::import_args(&url, "people.csv", &["--max-retries", "1", "--json"]);
        let run = work.roster(&args);
        run.expect_code(5);
        assert_eq!(run.json()["failed"], 3);
        let rows = error_rows(&work.read("people.errors.csv"));
        assert!(
            rows.iter()
                .all(|(_, status, errors)| status == "503" && errors.contains("next run")),
            "{rows:?}"
        );
        // Attempts 1-2 failed; the next run's attempt 3 fails, its retry (attempt 4) succeeds.
        let run = work.roster(&args);
        run.expect_code(0);
        assert_eq!(run.json()["created"], 3);
        assert!(
            !work.path("people.errors.csv").exists(),
            "a clean run removes the stale error file"
        );
    }
);

sandbox_test!(
    fifty_thousand_rows_go_through_without_loss_or_doubling,
    SandboxConfig::default(),
    |server, work| {
        work.write("big.csv", &people_csv(50_000));
        let url = server.url();
        let run = work.import_to(&url, "big.csv", &["--concurrency", "32", "--json"]);
        run.expect_code(0);
        let summary = run.json();
        assert_eq!(summary["rows"], 50_000);
        assert_eq!(summary["created"], 50_000, "{}", run.context());
        let stats = server.sandbox.stats();
        assert_eq!(
            (stats.requests, stats.created, stats.conflicts),
            (50_000, 50_000, 0)
        );
        assert!(
            stats.peak_in_flight <= 32,
            "peak in flight {}",
            stats.peak_in_flight
        );
        let ledger = roster::ledger::entries(
            &work.path("roster-ledger.sqlite"),
            &format!("sandbox@{url}"),
        )
        .unwrap();
        assert_eq!(ledger.len(), 50_000);
        assert!(
            ledger
                .iter()
                .all(|e| e.state == "created" && e.attempts == 1)
        );
    }
);

sandbox_test!(
    jsonl_rows_are_line_numbers_and_give_the_same_refusals,
    SandboxConfig::default(),
    |server, work| {
        work.sample("people.jsonl");
        let url = server.url();
        let run = work.import_to(&url, "people.jsonl", &["--json"]);
        run.expect_code(1);
        assert_eq!(run.json()["created"], 46);
        let rows: Vec<(String, String)> = error_rows(&work.read("people.jsonl.errors.csv"))
            .into_iter()
            .map(|(row, status, _)| (row, status))
            .collect();
        let expected: Vec<(String, String)> = SAMPLE_REFUSALS
            .iter()
            .map(|(row, status, _)| {
                (
                    (row.parse::<u64>().unwrap() - 1).to_string(),
                    status.to_string(),
                )
            })
            .collect();
        assert_eq!(rows, expected, "JSONL rows are lines (no header line)");
    }
);

#[test]
fn the_default_run_uses_the_in_process_sandbox_and_reruns_send_nothing() {
    let work = WorkDir::new();
    work.sample("people.csv");
    let first = work.roster(&["import", "people.csv", "--json"]);
    first.expect_code(1);
    assert!(
        first.stderr().contains("in-process sandbox"),
        "{}",
        first.context()
    );
    assert!(first.stderr().contains("nothing leaves this machine"));
    assert_eq!(first.json()["created"], 46);
    let second = work.roster(&["import", "people.csv", "--json"]);
    assert_eq!(second.json()["requests"], 0, "{}", second.context());
    assert!(
        second.stderr().contains("nothing to send"),
        "{}",
        second.context()
    );
}

#[test]
fn an_error_file_fed_back_in_is_read_with_no_flags() {
    let work = WorkDir::new();
    work.sample("people.csv");
    work.roster(&["import", "people.csv"]).expect_code(1);
    // Fix two rows in the error file (the missing last name, the malformed email) and feed
    // it back.
    let fixed = work
        .read("people.errors.csv")
        .replace("Missing,,", "Missing,Person,")
        .replace("malformed.example.com", "malformed@example.com");
    work.write("fixed.csv", &fixed);
    let run = work.roster(&["import", "fixed.csv", "--json"]);
    // The two rows left as they were are refused as before: not a new failure.
    run.expect_code(0);
    let summary = run.json();
    assert_eq!(summary["created"], 2, "{}", run.context());
    assert_eq!(
        summary["skipped"], 1,
        "the duplicate row's identity was already created"
    );
    assert_eq!(
        summary["still_refused"], 2,
        "the unchanged 400 row and the unknown role are refused again without a request"
    );
    assert_eq!(summary["invalid"], 0);
    assert_eq!(summary["requests"], 2, "nothing is sent twice");
    let rows = error_rows(&work.read("fixed.errors.csv"));
    let statuses: Vec<&str> = rows.iter().map(|(_, status, _)| status.as_str()).collect();
    assert_eq!(statuses, ["400", "invalid"]);
}

sandbox_test!(
    refused_credentials_abort_with_exit_3_naming_the_variable,
    SandboxConfig {
        token: Some("right".into()),
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(500));
        let url = server.url();
        let args = WorkDir::import_args(&url, "people.csv", &["--concurrency", "4", "--json"]);

        let run = work.roster_with_env(&args, &[("ROSTER_TOKEN", "wrong")]);
        run.expect_code(3);
        let stderr = run.stderr();
        assert!(
            stderr.contains("target `sandbox`") && stderr.contains("ROSTER_TOKEN"),
            "{}",
            run.context()
        );
        assert!(
            !stderr.contains("wrong"),
            "the secret never reaches the output"
        );
        let requests = server.sandbox.stats().requests;
        assert!(
            requests <= 8,
            "stopped instead of hammering the API: {requests} requests"
        );
        assert_eq!(run.json()["created"], 0);

        // The right token finishes the job; nothing was lost to the aborted run.
        let run = work.roster_with_env(&args, &[("ROSTER_TOKEN", "right")]);
        run.expect_code(0);
        assert_eq!(run.json()["created"], 500, "{}", run.context());
        assert_eq!(server.sandbox.users().len(), 500);
    }
);

sandbox_test!(
    sigterm_finishes_requests_in_flight_records_them_and_exits_130,
    SandboxConfig {
        delay: std::time::Duration::from_millis(20),
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(5_000));
        let url = server.url();
        let child = work.spawn_import(&url, "people.csv", &["--concurrency", "8", "--json"], &[]);
        // Wait (bounded) until requests are flowing, then ask it to stop.
        support::wait_for("50 people created", || server.sandbox.stats().created >= 50);
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(130), "{stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let created = summary["created"].as_u64().unwrap();
        assert!(created < 5_000, "it stopped early");

        // Every user the server created is recorded as created; nothing is left `sending`.
        let ledger = roster::ledger::entries(
            &work.path("roster-ledger.sqlite"),
            &format!("sandbox@{url}"),
        )
        .unwrap();
        let recorded = ledger.iter().filter(|e| e.state == "created").count() as u64;
        assert_eq!(recorded, server.sandbox.stats().created);
        assert_eq!(recorded, created);
        assert!(ledger.iter().all(|e| e.state != "sending"));

        // The next run finishes the job without sending anyone twice.
        let run = work.import_to(&url, "people.csv", &["--concurrency", "32", "--json"]);
        run.expect_code(0);
        assert_eq!(run.json()["created"].as_u64().unwrap(), 5_000 - created);
        let stats = server.sandbox.stats();
        assert_eq!((stats.created, stats.conflicts), (5_000, 0));
    }
);

sandbox_test!(
    formula_cells_are_neutralised_in_the_error_file_and_restored_when_fed_back,
    SandboxConfig::default(),
    |server, work| {
        work.write(
        "p.csv",
        "Email,First Name,Last Name,Phone,Role\nann@example.com,Ann,-Lee,+44 20 7946 0958,=1+1\n",
    );
        let url = server.url();
        work.import_to(&url, "p.csv", &["--json"]).expect_code(1);
        let text = work.read("p.errors.csv");
        assert!(
            // The phone is only digits and spaces: it can call nothing, and keeps no `'`.
            text.contains("ann@example.com,Ann,'-Lee,+44 20 7946 0958,'=1+1,2,invalid,"),
            "{text}"
        );

        // Fix the role in a spreadsheet-like edit and feed the error file straight back in.
        work.write("fixed.csv", &text.replace("'=1+1", "user"));
        let run = work.import_to(&url, "fixed.csv", &["--json"]);
        run.expect_code(0);
        let users = server.sandbox.users();
        assert_eq!(users.len(), 1, "{}", run.context());
        assert_eq!(
            users[0].last_name, "-Lee",
            "the prefix is undone on the way back in"
        );
        assert_eq!(users[0].phone.as_deref(), Some("+442079460958"));
    }
);

sandbox_test!(
    the_html_report_is_self_contained_and_shows_totals_chart_groups_and_rows,
    SandboxConfig {
        fail_first: 1,
        ..Default::default()
    },
    |server, work| {
        work.sample("people.csv");
        let url = server.url();
        let run = work.import_to(&url, "people.csv", &["--report", "report.html"]);
        run.expect_code(1);
        let html = work.read("report.html");
        assert!(
            !html.contains("src=") && !html.contains("href=") && !html.contains("@import"),
            "no external assets"
        );
        assert!(!html.contains("<script"), "no scripts needed");
        // Well-formed: parse it as XML (after the HTML doctype).
        let body = html.trim_start_matches("<!DOCTYPE html>\n");
        let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}\n{html}"));
        let by_id = |id: &str| {
            doc.descendants()
                .find(|n| n.attribute("id") == Some(id))
                .unwrap_or_else(|| panic!("#{id}"))
        };
        let cell_after = |table: roxmltree::Node, label: &str| -> String {
            let row = table
                .descendants()
                .find(|n| {
                    n.has_tag_name("tr")
                        && n.first_element_child().and_then(|c| c.text()) == Some(label)
                })
                .unwrap();
            row.last_element_child()
                .unwrap()
                .text()
                .unwrap()
                .to_string()
        };
        let totals = by_id("totals");
        assert_eq!(cell_after(totals, "created"), "46");
        assert_eq!(
            cell_after(totals, "requests sent"),
            "93",
            "46 created twice (first attempt 503) + the 400 once"
        );
        let chart = by_id("chart");
        // Lines for a run of a few seconds, bars for a shorter one: either way one mark of
        // each of the three series per point.
        let marks = |tag: &str| chart.descendants().filter(|n| n.has_tag_name(tag)).count();
        assert!(
            marks("polyline") == 3 || (marks("rect") > 0 && marks("rect") % 3 == 0),
            "{html}"
        );
        // The banner says how it went; the run's facts say when, against what, with what.
        let banner = by_id("banner").text().unwrap_or_default().to_string();
        assert!(
            banner.starts_with("Created 46 of 51 rows;") && banner.contains("refused"),
            "{banner}"
        );
        let run_table = by_id("run");
        let started = cell_after(run_table, "started");
        assert!(
            started.ends_with('Z') && started.starts_with("20"),
            "{started}"
        );
        assert_eq!(cell_after(run_table, "target"), "sandbox");
        assert_eq!(
            cell_after(run_table, "roster version"),
            env!("CARGO_PKG_VERSION")
        );
        assert!(cell_after(run_table, "endpoint").starts_with(&url));
        let groups = by_id("groups");
        let group_rows: Vec<Vec<String>> = groups
            .descendants()
            .filter(|n| n.has_tag_name("tr"))
            .skip(1)
            .map(|tr| {
                tr.children()
                    .filter(|c| c.is_element())
                    .map(|c| c.text().unwrap_or("").to_string())
                    .collect()
            })
            .collect();
        assert!(
            group_rows.contains(&vec![
                "E-mail Address".to_string(),
                "`…` has no `@`".to_string(),
                "1".to_string()
            ]),
            "{group_rows:?}"
        );
        assert!(group_rows.contains(&vec![
            "Last Name".to_string(),
            "is required".to_string(),
            "1".to_string()
        ]));
        let rows = by_id("rows");
        let listed: Vec<String> = rows
            .descendants()
            .filter(|n| n.has_tag_name("tr"))
            .skip(1)
            .map(|tr| {
                tr.first_element_child()
                    .unwrap()
                    .text()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(listed, ["7", "14", "22", "32", "42"]);
        // Refused rows carry the person's email and name.
        let row22: Vec<String> = rows
            .descendants()
            .filter(|n| n.has_tag_name("tr"))
            .find(|tr| tr.first_element_child().and_then(|c| c.text()) == Some("22"))
            .unwrap()
            .children()
            .filter(|c| c.is_element())
            .map(|c| c.text().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            row22[2..4],
            ["ANN.LEE0@Example.com", "Ann Lee"],
            "{row22:?}"
        );
        // Every in-file duplicate is one group, however many rows it repeats.
        assert!(
            group_rows
                .iter()
                .any(|g| g[1] == "duplicate of an earlier row in the file"),
            "{group_rows:?}"
        );
    }
);

sandbox_test!(
    the_config_file_can_name_the_variable_a_credential_is_read_from,
    SandboxConfig {
        token: Some("right".into()),
        ..Default::default()
    },
    |server, work| {
        work.write("people.csv", &people_csv(3));
        let url = server.url();
        work.write(
            "roster.toml",
            &format!(
                "target = \"sandbox\"\nbase_url = \"{url}\"\n[env]\ntoken = \"HR_SYNC_TOKEN\"\n"
            ),
        );
        let run = work.roster_with_env(
            &["import", "people.csv", "--json"],
            &[("HR_SYNC_TOKEN", "right")],
        );
        run.expect_code(0);
        assert_eq!(run.json()["created"], 3);
    }
);

#[test]
fn windows_1252_utf16_and_utf8_bom_exports_give_the_same_users() {
    let utf8_bom = "\u{feff}Email,First Name,Last Name\r\njurgen@example.de,Jürgen,Müller\r\nzoe@example.fr,Zoë,Lefèvre\r\n";
    let cp1252: Vec<u8> = b"sep=;\r\nE-mail Address;Given Name;Surname;\r\njurgen@example.de;J\xFCrgen;M\xFCller;\r\nzoe@example.fr;Zo\xEB;Lef\xE8vre;\r\n".to_vec();
    let utf16: Vec<u8> = utf8_bom
        .replace(',', "\t")
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut seen = Vec::new();
    for (name, bytes) in [
        ("bom.csv", utf8_bom.as_bytes().to_vec()),
        ("excel.csv", cp1252),
        ("utf16.txt", utf16),
    ] {
        let server = TestSandbox::start(SandboxConfig::default());
        let work = WorkDir::new();
        std::fs::write(work.path(name), bytes).unwrap();
        let url = server.url();
        let run = work.import_to(&url, name, &["--json"]);
        run.expect_code(0);
        let users: Vec<(String, String, String)> = server
            .sandbox
            .users()
            .into_iter()
            .map(|u| (u.email, u.first_name, u.last_name))
            .collect();
        seen.push(users);
    }
    assert_eq!(seen[0].len(), 2);
    assert_eq!(
        seen[0][0],
        (
            "jurgen@example.de".to_string(),
            "Jürgen".to_string(),
            "Müller".to_string()
        )
    );
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}

sandbox_test!(
    results_lists_every_row_in_input_order_with_its_outcome_and_remote_id,
    SandboxConfig::default(),
    |server, work| {
        work.sample("people.csv");
        let url = server.url();
        let args = ["--concurrency", "8", "--results", "results.csv", "--json"];
        let run = work.import_to(&url, "people.csv", &args);
        run.expect_code(1);
        let summary = run.json();
        assert_eq!(summary["results_file"], "results.csv", "{}", run.context());
        let read = |work: &WorkDir| {
            let mut reader = csv::Reader::from_path(work.path("results.csv")).unwrap();
            let headers = reader.headers().unwrap().clone();
            let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
            let (row, status, id, email) = (
                at("_row"),
                at("_status"),
                at("_remote_id"),
                at("E-mail Address"),
            );
            reader
                .records()
                .map(|r| {
                    let r = r.unwrap();
                    let row: u64 = r[row].parse().unwrap();
                    (
                        row,
                        r[status].to_string(),
                        r[id].to_string(),
                        r[email].to_string(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let rows = read(&work);
        assert_eq!(rows.len() as u64, summary["rows"].as_u64().unwrap());
        assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "input order");
        let stored = server.sandbox.users();
        for (row, status, id, email) in &rows {
            if status == "created" {
                let user = stored
                    .iter()
                    .find(|u| u.email == email.to_lowercase())
                    .unwrap_or_else(|| panic!("row {row}: {email} not on the server"));
                assert_eq!(id, &user.id, "row {row}");
            } else {
                assert!(id.is_empty(), "row {row} {status}: no id");
            }
        }
        assert_eq!(
            rows.iter().filter(|r| r.1 == "created").count() as u64,
            summary["created"].as_u64().unwrap()
        );

        // A re-run lists the same people as already done, with the ids of the first run.
        let first = rows.clone();
        work.import_to(&url, "people.csv", &args);
        let again = read(&work);
        for ((row, status, id, _), (_, status_again, id_again, _)) in first.iter().zip(&again) {
            if status == "created" {
                assert_eq!(status_again, "skipped", "row {row}");
                assert_eq!(id_again, id, "row {row}");
            }
        }
    }
);

#[test]
fn a_validation_report_says_it_was_one() {
    let work = WorkDir::new();
    work.sample("people.csv");
    let run = work.roster(&["validate", "people.csv", "--report", "v.html"]);
    run.expect_code(1);
    let html = work.read("v.html");
    assert!(
        html.contains("<title>roster validation: people.csv</title>"),
        "{html}"
    );
    assert!(
        html.contains("A validation only: nothing was sent. 47 of 51 rows would be sent"),
        "{html}"
    );
    assert!(
        !html.contains(">created<"),
        "a validation creates no one: {html}"
    );
}

/// The benchmarks' stubbed network (`Delivery::Answered`) is the import with nothing sent:
/// every row is claimed and recorded in the real ledger as answered, and a later run of the
/// same file against the server finds them all done.
#[test]
fn an_import_answered_in_place_records_every_row_and_sends_nothing() {
    use std::sync::Arc;
    use support::hostile::{Hostile, Reply};
    fn created(user: roster::model::Person) -> roster::model::Submission {
        roster::model::Submission {
            outcome: roster::model::Outcome::Created,
            remote_id: Some(format!("id-{}", user.row)),
            status: Some(201),
            attempts: 1,
            ..roster::model::Submission::new(user)
        }
    }
    let server = Hostile::start(|_| Reply::json(201, serde_json::json!({"id": "sent"})));
    let work = WorkDir::new();
    let input = work.write("people.csv", &people_csv(300));
    let ledger = work.path("roster-ledger.sqlite");
    let settings = roster::pipeline::ImportSettings::new(
        input,
        roster::ledger::LedgerLocation::Sqlite(ledger.clone()),
        work.path("errors.csv"),
        roster::pipeline::RunMode::Send,
    );
    let target = Arc::new(
        roster::targets::build(&roster::targets::TargetSpec {
            name: "sandbox".into(),
            base_url: Some(server.url()),
            ..Default::default()
        })
        .unwrap(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime
        .block_on(roster::pipeline::run_delivering(
            &settings,
            target,
            Arc::new(roster::model::Stop::default()),
            roster::pipeline::Delivery::Answered(created),
        ))
        .unwrap();
    assert_eq!(result.summary.created, 300, "{:?}", result.summary);
    assert_eq!(server.count("POST"), 0, "nothing went over the network");
    let entries = roster::ledger::entries(&ledger, &format!("sandbox@{}", server.url())).unwrap();
    assert_eq!(entries.len(), 300);
    assert!(
        entries.iter().all(|e| e.state == "created"
            && e.remote_id
                .as_deref()
                .is_some_and(|id| id.starts_with("id-"))),
        "every entry is the answer given in place"
    );
    let rerun = work.import_to(&server.url(), "people.csv", &["--json"]);
    rerun.expect_code(0);
    assert_eq!(rerun.json()["skipped"], 300, "{}", rerun.context());
    assert_eq!(server.count("POST"), 0, "the re-run finds every row done");
}
