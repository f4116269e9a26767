//! `roster sync` end to end over HTTP against the sandbox: joiners created, movers updated
//! field by field under their remote ids, leavers reported, deactivated or deleted, returners
//! reactivated; every safeguard holding the leaver step back; plan then apply.

#[macro_use]
mod support;

use roster_sandbox::{Profile, SandboxConfig, SandboxCredentials};
use std::collections::HashMap;
use support::{Run, TestSandbox, WorkDir};

/// `n` people: email, names, phone, role.
fn people(n: usize) -> Vec<[String; 5]> {
    (0..n)
        .map(|i| {
            [
                format!("p{i}@example.com"),
                format!("First{i}"),
                format!("Last{i}"),
                format!("+1415555{i:04}"),
                "user".to_string(),
            ]
        })
        .collect()
}

fn csv(rows: &[[String; 5]]) -> String {
    let mut text = String::from("Email,First Name,Last Name,Phone,Role\n");
    for r in rows {
        text.push_str(&r.join(","));
        text.push('\n');
    }
    text
}

/// The sandbox's credentials for `profile` (targets that fetch a token get no fixed one).
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

struct Setup {
    server: TestSandbox,
    work: WorkDir,
    profile: Profile,
}

impl Setup {
    fn new(profile: Profile) -> Setup {
        Setup::with(profile, SandboxConfig::default())
    }

    fn with(profile: Profile, config: SandboxConfig) -> Setup {
        Setup {
            server: TestSandbox::start(config),
            work: WorkDir::new(),
            profile,
        }
    }

    /// The arguments of `roster sync FILE` against this sandbox.
    fn args<'a>(&'a self, base: &'a str, file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "sync",
            file,
            "--target",
            self.profile.name(),
            "--base-url",
            base,
            "--rate",
            "0",
            "--json",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        args
    }

    /// `roster sync people.csv` (written from `text`) with `extra`, `--json --quiet`.
    fn sync(&self, text: &str, extra: &[&str]) -> Run {
        self.work.write("people.csv", text);
        self.sync_file("people.csv", extra)
    }

    fn sync_file(&self, file: &str, extra: &[&str]) -> Run {
        let base = format!("{}/{}", self.server.url(), self.profile.name());
        let args = self.args(&base, file, extra);
        let env = credentials(self.profile);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.work.roster_with_env(&args, &env)
    }

    /// Remote id and status per email.
    fn users(&self) -> HashMap<String, (String, Option<String>)> {
        self.server
            .sandbox
            .users_of(self.profile)
            .into_iter()
            .map(|u| (u.email.clone(), (u.id.clone(), u.status.clone())))
            .collect()
    }
}

fn sync_field(run: &Run, key: &str) -> u64 {
    run.json()["sync"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no sync.{key}{}", run.context()))
}

#[test]
fn movers_are_updated_under_their_ids_leavers_deactivated_and_returners_reactivated() {
    let s = Setup::new(Profile::Sandbox);
    let mut rows = people(300);
    s.sync(&csv(&rows), &["--leavers", "deactivate"])
        .expect_code(0);
    let first = s.users();
    assert_eq!(first.len(), 300);
    // 20 movers: surname, given name, phone and role changes.
    for (i, row) in rows.iter_mut().enumerate().take(20) {
        match i % 4 {
            0 => row[2] = format!("Married{i}"),
            1 => row[1] = format!("Renamed{i}"),
            2 => row[3] = format!("+1415666{i:04}"),
            _ => row[4] = "admin".into(),
        }
    }
    // 10 leavers.
    let stayed: Vec<[String; 5]> = rows[..290].to_vec();
    let run = s.sync(
        &csv(&stayed),
        &["--leavers", "deactivate", "--report", "report.html"],
    );
    run.expect_code(0);
    let report = s.work.read("report.html");
    assert!(
        report.contains("<h2>Sync</h2>")
            && report.contains("<tr><th>updated</th><td class=\"n\">20</td></tr>")
            && report.contains("<tr><th>deactivated</th><td class=\"n\">10</td></tr>"),
        "{report}"
    );
    assert_eq!(sync_field(&run, "updated"), 20, "{}", run.context());
    assert_eq!(sync_field(&run, "deactivated"), 10, "{}", run.context());
    assert_eq!(sync_field(&run, "unchanged"), 270, "{}", run.context());
    let changes = s.server.sandbox.changes();
    assert_eq!(
        changes.len(),
        30,
        "exactly the movers and leavers: {changes:?}"
    );
    assert!(changes.values().all(|&n| n == 1), "{changes:?}");
    let after = s.users();
    for (email, (id, _)) in &first {
        assert_eq!(&after[email].0, id, "{email} keeps its remote id");
    }
    let user = |email: &str| {
        s.server
            .sandbox
            .users_of(Profile::Sandbox)
            .into_iter()
            .find(|u| u.email == email)
            .unwrap()
    };
    assert_eq!(user("p0@example.com").last_name, "Married0");
    assert_eq!(
        user("p0@example.com").first_name,
        "First0",
        "other fields untouched"
    );
    assert_eq!(user("p1@example.com").first_name, "Renamed1");
    assert_eq!(
        user("p2@example.com").phone.as_deref(),
        Some("+14156660002")
    );
    assert_eq!(user("p3@example.com").role, "organization-admin");
    for i in 290..300 {
        assert_eq!(
            after[&format!("p{i}@example.com")].1.as_deref(),
            Some("DISABLED")
        );
    }
    assert_eq!(after["p0@example.com"].1, None, "stayers are not disabled");

    // The same export again sends nothing.
    let before = s.server.sandbox.stats();
    let run = s.sync(&csv(&stayed), &["--leavers", "deactivate"]);
    run.expect_code(0);
    let again = s.server.sandbox.stats();
    assert_eq!(
        (again.requests, again.updated, again.deleted),
        (before.requests, before.updated, before.deleted),
        "{}",
        run.context()
    );
    assert_eq!(sync_field(&run, "updated"), 0);
    assert_eq!(
        sync_field(&run, "leavers"),
        0,
        "deactivated leavers are not leavers again"
    );

    // Five leavers come back: reactivated under their old ids.
    let returned: Vec<[String; 5]> = rows[..295].to_vec();
    let run = s.sync(&csv(&returned), &["--leavers", "deactivate"]);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "reactivated"), 5, "{}", run.context());
    let back = s.users();
    for i in 290..295 {
        let email = format!("p{i}@example.com");
        assert_eq!(back[&email].0, first[&email].0, "same id for {email}");
        assert_eq!(back[&email].1.as_deref(), Some("ENABLED"));
    }
    assert_eq!(back.len(), 300, "nobody created twice");

    // The ledger export shows the values last sent and each person's history.
    let run = s.work.roster(&["ledger", "export", "--format", "jsonl"]);
    run.expect_code(0);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let p0 = lines
        .iter()
        .find(|l| l["identity"] == "p0@example.com")
        .unwrap();
    assert_eq!(p0["last_sent"]["last_name"], "Married0", "{p0:#}");
    assert_eq!(p0["sync_status"], "active");
    assert_eq!(p0["history"][0]["action"], "update", "{p0:#}");
    assert_eq!(
        p0["history"][0]["changes"]["last_name"],
        serde_json::json!(["Last0", "Married0"]),
        "{p0:#}"
    );
    assert_eq!(p0["history"][0]["state"], "done");
    let p290 = lines
        .iter()
        .find(|l| l["identity"] == "p290@example.com")
        .unwrap();
    let actions: Vec<&str> = p290["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["deactivate", "reactivate"], "{p290:#}");
}

#[test]
fn leavers_are_only_reported_by_default_and_deleted_only_when_asked() {
    let s = Setup::new(Profile::Sandbox);
    let rows = people(40);
    s.sync(&csv(&rows), &[]).expect_code(0);
    let run = s.sync(&csv(&rows[..38]), &[]);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "leavers"), 2);
    assert_eq!(sync_field(&run, "deactivated"), 0);
    assert!(
        s.server.sandbox.changes().is_empty(),
        "report touches nobody"
    );
    let report = s.work.read("people.leavers.csv");
    assert!(
        report.contains("p38@example.com") && report.contains("p39@example.com"),
        "{report}"
    );
    assert!(report.contains("reported"), "{report}");
    let run = s.sync(&csv(&rows[..38]), &["--leavers", "delete"]);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "deleted"), 2, "{}", run.context());
    assert_eq!(s.users().len(), 38);
}

#[test]
fn a_damaged_export_deactivates_nobody_and_says_why() {
    let s = Setup::new(Profile::Sandbox);
    let rows = people(300);
    s.sync(&csv(&rows), &["--leavers", "deactivate"])
        .expect_code(0);
    let full = csv(&rows);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a third of the rows",
            csv(&rows[..100]),
            "fewer than the last sync",
        ),
        (
            "header only",
            "Email,First Name,Last Name,Phone,Role\n".into(),
            "no data rows",
        ),
        (
            "another header set",
            full.replacen("Role", "Job Role", 1),
            "header set changed",
        ),
        (
            "cut mid-record",
            {
                let cut = full.len() - 20;
                full[..cut].to_string()
            },
            "cut short",
        ),
    ];
    for (what, text, says) in cases {
        // Each safeguard on its own: the leaver limit itself allows everyone, but for the
        // truncated export, whose row count is judged against the default limit.
        let limit = if what == "a third of the rows" {
            "15"
        } else {
            "100%"
        };
        let run = s.sync(&text, &["--leavers", "deactivate", "--max-leavers", limit]);
        assert_eq!(run.code(), 6, "{what}{}", run.context());
        assert!(run.stderr().contains(says), "{what}: {}", run.context());
        assert!(
            run.json()["sync"]["held"]
                .as_array()
                .is_some_and(|h| !h.is_empty()),
            "{what}{}",
            run.context()
        );
        assert!(
            s.server.sandbox.changes().is_empty(),
            "{what}: nobody deactivated"
        );
    }
    // An empty file is refused as input: nobody is touched either.
    let run = s.sync("", &["--leavers", "deactivate"]);
    assert_ne!(run.code(), 0, "{}", run.context());
    assert!(s.server.sandbox.changes().is_empty());
    // More leavers than the limit.
    let run = s.sync(&csv(&rows[..280]), &["--leavers", "deactivate"]);
    assert_eq!(run.code(), 6, "{}", run.context());
    assert!(
        run.stderr().contains("more than the limit of 15"),
        "{}",
        run.context()
    );
    assert!(s.server.sandbox.changes().is_empty());
}

#[test]
fn a_person_absent_once_is_pending_and_absent_twice_a_leaver() {
    let s = Setup::new(Profile::Sandbox);
    let rows = people(30);
    s.sync(&csv(&rows), &[]).expect_code(0);
    let args = ["--leavers", "deactivate", "--leaver-after", "2"];
    let run = s.sync(&csv(&rows[..29]), &args);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "pending_leavers"), 1, "{}", run.context());
    assert_eq!(sync_field(&run, "deactivated"), 0);
    assert!(s.server.sandbox.changes().is_empty());
    let run = s.sync(&csv(&rows[..29]), &args);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "deactivated"), 1, "{}", run.context());
    assert_eq!(s.users()["p29@example.com"].1.as_deref(), Some("DISABLED"));
}

#[test]
fn an_applied_plan_does_what_it_said_and_a_changed_file_is_refused() {
    let s = Setup::new(Profile::Sandbox);
    let mut rows = people(50);
    s.sync(&csv(&rows), &[]).expect_code(0);
    rows[0][2] = "Newname".into();
    rows.push([
        "new@example.com".into(),
        "New".into(),
        "Person".into(),
        "+14155559999".into(),
        "user".into(),
    ]);
    let text = csv(&rows[1..]);
    let plan_args = [
        "--dry-run",
        "--plan",
        "plan.json",
        "--leavers",
        "deactivate",
    ];
    let mut changed_text = csv(&rows);
    changed_text = changed_text.replacen("p1@example.com,First1", "p1@example.com,Other", 1);
    // Plan: p0 is a leaver now (absent), p1.. unchanged, new@ created.
    s.sync(&text, &plan_args).expect_code(0);
    let plan: serde_json::Value = serde_json::from_str(&s.work.read("plan.json")).unwrap();
    let actions = plan["actions"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = actions
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["identity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("create", "new@example.com"), ("leaver", "p0@example.com")],
        "{plan:#}"
    );
    assert!(
        s.server.sandbox.changes().is_empty(),
        "a dry run sends nothing"
    );
    assert_eq!(s.users().len(), 50);
    // The file changes: the plan is refused.
    s.work.write("people.csv", &changed_text);
    let run = s.sync_file(
        "people.csv",
        &["--apply", "plan.json", "--leavers", "deactivate"],
    );
    run.expect_code(2);
    assert!(
        run.stderr().contains("the input file changed"),
        "{}",
        run.context()
    );
    assert!(s.server.sandbox.changes().is_empty());
    // Back as planned: applied exactly.
    let run = s.sync(&text, &["--apply", "plan.json", "--leavers", "deactivate"]);
    run.expect_code(0);
    assert_eq!(run.json()["created"], 1, "{}", run.context());
    assert_eq!(sync_field(&run, "deactivated"), 1);
    assert_eq!(sync_field(&run, "updated"), 0);
    let changes = s.server.sandbox.changes();
    assert_eq!(changes.keys().collect::<Vec<_>>(), ["p0@example.com"]);
    // Applied once: the ledger moved on, so the same plan is refused now.
    let run = s.sync(&text, &["--apply", "plan.json", "--leavers", "deactivate"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("the ledger changed"),
        "{}",
        run.context()
    );
}

#[test]
fn plans_are_readable_as_csv_and_html_with_each_change_before_and_after() {
    let s = Setup::new(Profile::Sandbox);
    let mut rows = people(5);
    s.sync(&csv(&rows), &[]).expect_code(0);
    rows[2][2] = "Wed".into();
    for plan in ["plan.csv", "plan.html"] {
        s.sync(&csv(&rows), &["--dry-run", "--plan", plan])
            .expect_code(0);
        let text = s.work.read(plan);
        assert!(text.contains("p2@example.com"), "{text}");
        assert!(text.contains("Last2") && text.contains("Wed"), "{text}");
        assert!(text.contains("last_name"), "{text}");
    }
}

#[test]
fn nexway_updates_keep_status_and_roles_and_a_deactivation_keeps_the_rest() {
    let s = Setup::new(Profile::Nexway);
    let mut rows = people(30);
    let roles = [
        "--target-option",
        "roles=buyer",
        "--generate-passwords",
        "pw.txt",
    ];
    s.sync(&csv(&rows), &roles).expect_code(0);
    rows[0][2] = "Changed".into();
    let mut args = roles.to_vec();
    args.extend(["--leavers", "deactivate"]);
    let run = s.sync(&csv(&rows[..29]), &args);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "updated"), 1, "{}", run.context());
    assert_eq!(sync_field(&run, "deactivated"), 1, "{}", run.context());
    let users = s.server.sandbox.users_of(Profile::Nexway);
    let user = |email: &str| users.iter().find(|u| u.email == email).unwrap();
    let moved = user("p0@example.com");
    assert_eq!(moved.last_name, "Changed");
    assert_eq!(moved.status.as_deref(), Some("ENABLED"), "status kept");
    assert_eq!(
        moved.resource["roles"],
        serde_json::json!([{"name": "buyer"}]),
        "roles kept"
    );
    let left = user("p29@example.com");
    assert_eq!(left.status.as_deref(), Some("DISABLED"));
    assert_eq!(
        left.resource["roles"],
        serde_json::json!([{"name": "buyer"}])
    );
    assert_eq!(
        left.last_name, "Last29",
        "a deactivation changes nothing else"
    );
}

#[test]
fn scim_updates_with_patch_operations_and_deactivates_with_active_false() {
    let s = Setup::new(Profile::Scim);
    let mut rows = people(20);
    s.sync(&csv(&rows), &[]).expect_code(0);
    rows[3][1] = "Patched".into();
    let run = s.sync(&csv(&rows[..19]), &["--leavers", "deactivate"]);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "updated"), 1, "{}", run.context());
    let users = s.server.sandbox.users_of(Profile::Scim);
    let user = |email: &str| users.iter().find(|u| u.email == email).unwrap();
    assert_eq!(user("p3@example.com").first_name, "Patched");
    assert_eq!(user("p3@example.com").resource["active"], true);
    assert_eq!(user("p19@example.com").resource["active"], false);
    assert_eq!(user("p19@example.com").status.as_deref(), Some("DISABLED"));
}

#[test]
fn a_target_without_deactivation_reports_its_leavers_instead() {
    let s = Setup::new(Profile::Cryptlex);
    let rows = people(20);
    let pw = ["--generate-passwords", "pw.txt"];
    s.sync(&csv(&rows), &pw).expect_code(0);
    let mut args = pw.to_vec();
    args.extend(["--leavers", "deactivate"]);
    let run = s.sync(&csv(&rows[..19]), &args);
    run.expect_code(0);
    assert!(
        run.stderr().contains("cannot deactivate") && run.stderr().contains("reported instead"),
        "{}",
        run.context()
    );
    assert_eq!(sync_field(&run, "deactivated"), 0);
    assert!(s.server.sandbox.changes().is_empty());
    assert!(
        s.work
            .read("people.leavers.csv")
            .contains("p19@example.com")
    );
}

#[test]
fn sync_refuses_bad_leaver_flags_with_usage_errors() {
    let s = Setup::new(Profile::Sandbox);
    let text = csv(&people(2));
    for (args, says) in [
        (vec!["--max-leavers", "lots"], "--max-leavers"),
        (vec!["--max-leavers", "120%"], "--max-leavers"),
        (vec!["--plan", "plan.json"], "--dry-run"),
        (
            vec!["--dry-run", "--plan", "plan.txt"],
            ".json, .csv or .html",
        ),
    ] {
        let run = s.sync(&text, &args);
        run.expect_code(2);
        assert!(run.stderr().contains(says), "{}", run.context());
    }
}

#[test]
fn killed_mid_sync_then_resumed_every_change_is_made_exactly_once() {
    let s = Setup::with(
        Profile::Sandbox,
        SandboxConfig {
            delay: std::time::Duration::from_millis(40),
            ..SandboxConfig::default()
        },
    );
    let mut rows = people(300);
    s.sync(&csv(&rows), &[]).expect_code(0);
    for row in rows.iter_mut().take(100) {
        row[2] = format!("{}-moved", row[2]);
    }
    s.work.write("people.csv", &csv(&rows[..290]));
    let extra = ["--leavers", "deactivate", "--max-leavers", "10"];
    let base = format!("{}/sandbox", s.server.url());
    let mut child = s
        .work
        .command(&s.args(&base, "people.csv", &extra), &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_for("20 people changed before the kill", || {
        s.server.sandbox.changes().len() >= 20
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync ended before its kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let changed = s.server.sandbox.changes().len();
    assert!(
        changed < 110,
        "the kill interrupted the changes ({changed})"
    );
    let run = s.sync_file("people.csv", &extra);
    run.expect_code(0);
    let changes = s.server.sandbox.changes();
    assert_eq!(changes.len(), 110, "{changes:?}{}", run.context());
    assert!(
        changes.values().all(|&n| n == 1),
        "each exactly once: {changes:?}"
    );
    // The ledger is complete: one more sync finds nothing to do, and no claim is left open.
    let run = s.sync_file("people.csv", &extra);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "updated"), 0, "{}", run.context());
    assert_eq!(sync_field(&run, "leavers"), 0, "{}", run.context());
    let conn = rusqlite::Connection::open(s.work.path("roster-ledger.sqlite")).unwrap();
    let open: i64 = conn
        .query_row(
            "SELECT count(*) FROM sync_changes WHERE state = 'claimed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, 0);
    let done: i64 = conn
        .query_row(
            "SELECT count(*) FROM sync_changes WHERE state = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(done >= 110, "every change's outcome is recorded ({done})");
}

#[test]
fn crayon_and_cradl_updates_go_to_their_documented_endpoints() {
    for profile in [Profile::Crayon, Profile::Cradl] {
        let s = Setup::new(profile);
        let mut rows = people(10);
        s.sync(&csv(&rows), &[]).expect_code(0);
        let ids: HashMap<String, String> = s
            .server
            .sandbox
            .users_of(profile)
            .into_iter()
            .map(|u| (u.email, u.id))
            .collect();
        rows[4][2] = "Moved".into();
        let run = s.sync(&csv(&rows), &[]);
        run.expect_code(0);
        assert_eq!(
            sync_field(&run, "updated"),
            1,
            "{profile:?}{}",
            run.context()
        );
        let users = s.server.sandbox.users_of(profile);
        let moved = users.iter().find(|u| u.email == "p4@example.com").unwrap();
        assert_eq!(moved.last_name, "Moved", "{profile:?}");
        assert_eq!(moved.first_name, "First4", "{profile:?}");
        assert_eq!(moved.id, ids["p4@example.com"], "{profile:?}");
        assert_eq!(s.server.sandbox.changes().len(), 1, "{profile:?}");
    }
}

#[test]
fn a_person_found_existing_is_brought_in_line_with_the_file_under_the_id_looked_up() {
    for profile in [Profile::Sandbox, Profile::Nexway] {
        let s = Setup::new(profile);
        s.server.sandbox.seed_user(profile, "p1@example.com");
        let rows = people(3);
        let pw = ["--generate-passwords", "pw.txt"];
        let run = s.sync(&csv(&rows), &pw);
        run.expect_code(0);
        assert_eq!(run.json()["exists"], 1, "{profile:?}{}", run.context());
        // Its values as the target holds them are unknown: the next sync sends every field.
        let run = s.sync(&csv(&rows), &pw);
        run.expect_code(0);
        assert_eq!(
            sync_field(&run, "updated"),
            1,
            "{profile:?}{}",
            run.context()
        );
        let users = s.server.sandbox.users_of(profile);
        let p1 = users.iter().find(|u| u.email == "p1@example.com").unwrap();
        assert_eq!(
            (p1.first_name.as_str(), p1.last_name.as_str()),
            ("First1", "Last1"),
            "{profile:?}"
        );
        let run = s.sync(&csv(&rows), &pw);
        assert_eq!(
            sync_field(&run, "updated"),
            0,
            "{profile:?}: then it is known{}",
            run.context()
        );
    }
}

#[test]
fn import_update_sends_changes_of_a_delta_file_and_makes_nobody_a_leaver() {
    let s = Setup::new(Profile::Sandbox);
    let mut rows = people(10);
    s.sync(&csv(&rows), &[]).expect_code(0);
    rows[7][1] = "Seven".into();
    s.work.write("delta.csv", &csv(&rows[7..8]));
    let base = format!("{}/sandbox", s.server.url());
    let run = s.work.roster(&[
        "import",
        "delta.csv",
        "--target",
        "sandbox",
        "--base-url",
        &base,
        "--update",
        "--json",
    ]);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "updated"), 1, "{}", run.context());
    assert_eq!(sync_field(&run, "leavers"), 0, "{}", run.context());
    assert_eq!(s.server.sandbox.changes().len(), 1);
    assert!(!s.work.path("delta.leavers.csv").exists());
    // Plain import stays create-only: a change is not sent.
    rows[8][1] = "Eight".into();
    s.work.write("delta.csv", &csv(&rows[8..9]));
    let run = s.work.roster(&[
        "import",
        "delta.csv",
        "--target",
        "sandbox",
        "--base-url",
        &base,
        "--json",
    ]);
    run.expect_code(0);
    assert_eq!(s.server.sandbox.changes().len(), 1, "{}", run.context());
    // And the delta file did not become the next sync's baseline: the full export syncs
    // without its row count looking damaged.
    let run = s.sync(&csv(&rows), &["--leavers", "deactivate"]);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "updated"), 1, "{}", run.context());
}

#[test]
fn a_scim_server_without_patch_gets_a_put_that_keeps_active() {
    let s = Setup::with(
        Profile::Scim,
        SandboxConfig {
            no_patch: true,
            ..SandboxConfig::default()
        },
    );
    let mut rows = people(20);
    s.sync(&csv(&rows), &[]).expect_code(0);
    rows[3][1] = "Put".into();
    let run = s.sync(&csv(&rows[..19]), &["--leavers", "deactivate"]);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "updated"), 1, "{}", run.context());
    assert_eq!(sync_field(&run, "deactivated"), 1, "{}", run.context());
    let users = s.server.sandbox.users_of(Profile::Scim);
    let user = |email: &str| users.iter().find(|u| u.email == email).unwrap();
    assert_eq!(user("p3@example.com").first_name, "Put");
    assert_eq!(
        user("p3@example.com").resource["active"],
        true,
        "active kept"
    );
    assert_eq!(
        user("p3@example.com").resource["name"]["familyName"],
        "Last3"
    );
    assert_eq!(user("p19@example.com").resource["active"], false);
    assert_eq!(user("p19@example.com").last_name, "Last19");
}

#[test]
fn a_generic_profile_syncs_through_its_update_deactivate_and_delete_sections() {
    let s = Setup::new(Profile::Sandbox);
    let profile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/http-profile.toml"),
    )
    .unwrap();
    s.work.write("profile.toml", &profile);
    let base = format!("{}/sandbox", s.server.url());
    let token = [("ROSTER_TOKEN", "unused")];
    let run = |file: &str, extra: &[&str]| {
        let mut args = vec![
            "sync",
            file,
            "--target",
            "http",
            "--profile",
            "profile.toml",
            "--base-url",
            &base,
            "--json",
        ];
        args.extend_from_slice(extra);
        s.work.roster_with_env(&args, &token)
    };
    let mut rows = people(20);
    s.work.write("people.csv", &csv(&rows));
    run("people.csv", &[]).expect_code(0);
    rows[0][2] = "Generic".into();
    s.work.write("people.csv", &csv(&rows[..19]));
    let out = run("people.csv", &["--leavers", "deactivate"]);
    out.expect_code(0);
    assert_eq!(sync_field(&out, "updated"), 1, "{}", out.context());
    assert_eq!(sync_field(&out, "deactivated"), 1, "{}", out.context());
    let users = s.users();
    assert_eq!(users["p19@example.com"].1.as_deref(), Some("DISABLED"));
    let p0 = s
        .server
        .sandbox
        .users_of(Profile::Sandbox)
        .into_iter()
        .find(|u| u.email == "p0@example.com")
        .unwrap();
    assert_eq!(p0.last_name, "Generic");
    s.work.write("people.csv", &csv(&rows[..18]));
    let out = run("people.csv", &["--leavers", "delete"]);
    out.expect_code(0);
    assert_eq!(sync_field(&out, "deleted"), 1, "{}", out.context());
    assert!(!s.users().contains_key("p18@example.com"));
}

#[test]
fn cl2c_says_it_cannot_update_others_and_skips_their_changes_without_failing() {
    let s = Setup::new(Profile::Cl2c);
    let text = |surname: &str| {
        let mut t = String::from("Email,First Name,Last Name,Username,Phone\n");
        for i in 0..5 {
            let last = if i == 1 {
                surname.to_string()
            } else {
                format!("Last{i}")
            };
            t.push_str(&format!(
                "p{i}@example.com,First{i},{last},user{i},+1415555{i:04}\n"
            ));
        }
        t
    };
    s.sync(&text("Last1"), &[]).expect_code(0);
    let run = s.sync(&text("Changed"), &[]);
    run.expect_code(0);
    assert_eq!(sync_field(&run, "updated"), 0, "{}", run.context());
    assert!(
        run.stderr()
            .contains("only the signed-in user's own profile"),
        "{}",
        run.context()
    );
    assert!(s.server.sandbox.changes().is_empty());
}

#[test]
fn a_second_sync_on_the_same_ledger_waits_its_turn_with_exit_4() {
    let s = Setup::with(
        Profile::Sandbox,
        SandboxConfig {
            delay: std::time::Duration::from_millis(40),
            ..SandboxConfig::default()
        },
    );
    s.work.write("people.csv", &csv(&people(300)));
    let base = format!("{}/sandbox", s.server.url());
    let mut first = s
        .work
        .command(&s.args(&base, "people.csv", &[]), &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_for("the first sync creating", || {
        s.server.sandbox.stats().created >= 10
    });
    let second = s.sync_file("people.csv", &[]);
    assert_eq!(second.code(), 4, "{}", second.context());
    assert!(first.wait().unwrap().success());
}

/// `DELETE {base}/sandbox/users/{id}` straight to the sandbox: someone deletes a user there.
fn delete_at_target(server: &TestSandbox, id: &str) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.sandbox.addr()).unwrap();
    write!(
        stream,
        "DELETE /sandbox/users/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

#[test]
fn a_person_deleted_at_the_target_by_someone_else_is_created_again() {
    let s = Setup::new(Profile::Sandbox);
    let mut rows = people(5);
    s.sync(&csv(&rows), &[]).expect_code(0);
    let id = s.users()["p2@example.com"].0.clone();
    delete_at_target(&s.server, &id);
    rows[2][1] = "Again".into();
    let run = s.sync(&csv(&rows), &[]);
    assert!(
        run.stderr().contains("no longer at the target"),
        "{}",
        run.context()
    );
    let run = s.sync(&csv(&rows), &[]);
    run.expect_code(0);
    assert_eq!(run.json()["created"], 1, "{}", run.context());
    let users = s.server.sandbox.users_of(Profile::Sandbox);
    let p2 = users.iter().find(|u| u.email == "p2@example.com").unwrap();
    assert_eq!(p2.first_name, "Again");
    assert_ne!(p2.id, id);
}

#[test]
fn a_ledger_copy_refuses_to_drop_a_targets_sync_records() {
    let s = Setup::new(Profile::Sandbox);
    s.sync(&csv(&people(3)), &[]).expect_code(0);
    let run = s.work.roster(&[
        "ledger",
        "copy",
        "--from",
        "roster-ledger.sqlite",
        "--to",
        "copy.sqlite",
    ]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("`roster sync` records for 3 people"),
        "{}",
        run.context()
    );
}

#[test]
fn a_plan_or_leavers_file_never_overwrites_the_ledger_or_another_output() {
    let s = Setup::new(Profile::Sandbox);
    let text = csv(&people(3));
    s.sync(&text, &[]).expect_code(0);
    let ledger = std::fs::read(s.work.path("roster-ledger.sqlite")).unwrap();
    let run = s.sync(&text, &["--dry-run", "--plan", "roster-ledger.sqlite"]);
    run.expect_code(2);
    assert_eq!(
        std::fs::read(s.work.path("roster-ledger.sqlite")).unwrap(),
        ledger
    );
    // The plan's extension is checked first; a JSON plan onto the error file is refused too.
    let run = s.sync(
        &text,
        &["--dry-run", "--plan", "out.json", "--errors", "out.json"],
    );
    run.expect_code(2);
    assert!(run.stderr().contains("same file"), "{}", run.context());
    // A ledger named like the leavers file is not overwritten by it.
    let run = s.sync(&text, &["--ledger", "people.leavers.csv"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("the leavers file"),
        "{}",
        run.context()
    );
}

#[test]
fn credentials_refused_mid_sync_stop_it_with_exit_3_and_no_change_is_counted_as_made() {
    let s = Setup::with(
        Profile::Sandbox,
        SandboxConfig {
            token: Some("right".into()),
            ..SandboxConfig::default()
        },
    );
    let base = format!("{}/sandbox", s.server.url());
    let run = |text: &str| {
        s.work.write("people.csv", text);
        let args = s.args(&base, "people.csv", &[]);
        s.work.roster_with_env(&args, &[("ROSTER_TOKEN", "right")])
    };
    let mut rows = people(5);
    run(&csv(&rows)).expect_code(0);
    s.server.sandbox.revoke_credentials();
    // A mover only: the change itself meets the refusal.
    rows[0][2] = "Moved".into();
    let out = run(&csv(&rows));
    out.expect_code(3);
    assert!(s.server.sandbox.changes().is_empty());
    // A mover and a joiner: the create step stops first, and the summary says nothing changed.
    rows.push([
        "new@example.com".into(),
        "New".into(),
        "Person".into(),
        "+14155559999".into(),
        "user".into(),
    ]);
    let out = run(&csv(&rows));
    out.expect_code(3);
    let summary = out.json();
    assert_eq!(summary["sync"]["updated"], 0, "{}", out.context());
    assert!(
        summary["sync"]["notes"][0]
            .as_str()
            .unwrap_or("")
            .contains("stopped early"),
        "{}",
        out.context()
    );
    assert!(s.server.sandbox.changes().is_empty());
}
