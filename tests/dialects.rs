//! The same eight people as each kind of export writes them (`tests/fixtures/dialects/`,
//! made by its `make.py`): every format must create the same normalised users and refuse the
//! same rows, at the row numbers the user sees in that file.

#[macro_use]
mod support;

use roster_sandbox::SandboxConfig;
use std::path::Path;
use support::{TestSandbox, WorkDir};

/// (email, first, last, phone, role) as the sandbox stored them.
type Stored = (String, String, String, Option<String>, String);

fn expected_users() -> Vec<Stored> {
    let user = |e: &str, f: &str, l: &str, p: &str, r: &str| {
        (e.into(), f.into(), l.into(), Some(p.to_string()), r.into())
    };
    let mut users = vec![
        user(
            "jurgen@example.de",
            "Jürgen",
            "Müller",
            "+49301234567",
            "user",
        ),
        user(
            "zoe@example.fr",
            "Zoë",
            "Lefèvre",
            "+33123456789",
            "organization-admin",
        ),
        user(
            "sean@example.co.uk",
            "Seán",
            "O'Brien Jr.",
            "+442079460958",
            "user",
        ),
        user("ana@example.es", "Ana", "García", "+34612345678", "user"),
        user("li.wei@example.com", "Li", "Wei", "+14155550123", "user"),
    ];
    users.sort();
    users
}

/// Imports `file` and returns what was created and the refused rows as (row, errors).
fn import(file: &str) -> (Vec<Stored>, Vec<(String, String)>) {
    let server = TestSandbox::start(SandboxConfig::default());
    let work = WorkDir::new();
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dialects")
        .join(file);
    std::fs::copy(from, work.path(file)).unwrap();
    let url = server.url();
    let run = work.import_to(
        &url,
        file,
        &["--set", "role=user", "--errors", "errors.csv", "--json"],
    );
    run.expect_code(1);
    let mut users: Vec<Stored> = server
        .sandbox
        .users()
        .into_iter()
        .map(|u| (u.email, u.first_name, u.last_name, u.phone, u.role))
        .collect();
    users.sort();
    let text = work.read("errors.csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (row, errors) = (at("_row"), at("_errors"));
    let refused = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[row].to_string(), r[errors].to_string())
        })
        .collect();
    (users, refused)
}

fn check(file: &str, refused_rows: [&str; 3]) {
    let (users, refused) = import(file);
    assert_eq!(users, expected_users(), "{file}");
    let rows: Vec<&str> = refused.iter().map(|(row, _)| row.as_str()).collect();
    assert_eq!(rows, refused_rows, "{file}: {refused:?}");
    assert!(
        refused[0]
            .1
            .contains("`mailto:bad@example.com` has a `mailto:` prefix"),
        "{file}: {refused:?}"
    );
    assert!(
        refused[1]
            .1
            .contains("`12345` is not a valid phone number for US"),
        "{file}: {refused:?}"
    );
    assert!(
        refused[2].1.contains("`superuser` is not a known role"),
        "{file}: {refused:?}"
    );
}

#[test]
fn utf8_with_bom_and_crlf() {
    // Zoë's department spans lines 3-4, so the rows after it are one line further down.
    check("bom_crlf.csv", ["5", "7", "9"]);
}

#[test]
fn windows_1252_with_sep_line_and_trailing_column() {
    check("excel_1252.csv", ["6", "8", "10"]);
}

#[test]
fn utf16_unicode_text() {
    check("unicode_text.txt", ["5", "7", "9"]);
}

#[test]
fn tsv_with_a_full_name_column() {
    check("full_name.tsv", ["5", "7", "9"]);
}

#[test]
fn jsonl_with_camel_case_keys_and_null_or_absent_values() {
    check("people.jsonl", ["3", "5", "7"]);
}

#[test]
fn xlsx_with_numeric_phone_cells() {
    check("people.xlsx", ["4", "6", "8"]);
}

#[test]
fn a_named_sheet_is_read_and_a_missing_one_is_a_clear_error() {
    let work = WorkDir::new();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dialects/people.xlsx");
    std::fs::copy(from, work.path("people.xlsx")).unwrap();
    let run = work.roster(&["validate", "people.xlsx", "--sheet", "Payroll"]);
    run.expect_code(2);
    assert!(
        run.stderr()
            .contains("no sheet named `Payroll` (sheets: People, Notes)"),
        "{}",
        run.context()
    );
    let run = work.roster(&[
        "validate",
        "people.xlsx",
        "--sheet",
        "people",
        "--set",
        "role=user",
        "--json",
    ]);
    run.expect_code(1);
    assert_eq!(run.json()["would_send"], 5, "{}", run.context());
}
