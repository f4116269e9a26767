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
    (users, refused_rows(&work.path("errors.csv")))
}

/// The (row, errors) of an error file, read as roster reads any input: with no flags.
fn refused_rows(path: &Path) -> Vec<(String, String)> {
    let mut source = roster::input::open(path, None).unwrap();
    let headers = source.headers().to_vec();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (row, errors) = (at("_row"), at("_errors"));
    roster::input::read_all(source.as_mut())
        .unwrap()
        .into_iter()
        .map(|r| (r.cells[row].clone(), r.cells[errors].clone()))
        .collect()
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

/// Validates `file` (copied from the fixtures, or written by the test) with no `--errors`,
/// and returns the default error file's path and bytes.
fn error_file_of(work: &WorkDir, file: &str, expected: &str) -> (std::path::PathBuf, Vec<u8>) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dialects")
        .join(file);
    if fixture.exists() {
        std::fs::copy(fixture, work.path(file)).unwrap();
    }
    let run = work.roster(&["validate", file, "--set", "role=user", "--region", "US"]);
    run.expect_code(1);
    let path = work.path(expected);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{expected}: {e}{}", run.context()));
    (path, bytes)
}

/// Feeding the error file back in with no flags refuses the same rows again.
fn reads_back_the_same(work: &WorkDir, path: &Path, rows: usize) {
    let refused = refused_rows(path);
    assert_eq!(refused.len(), rows, "{}: {refused:?}", path.display());
    let name = path.file_name().unwrap().to_str().unwrap();
    let run = work.roster(&[
        "validate",
        name,
        "--set",
        "role=user",
        "--region",
        "US",
        "--json",
        "--errors",
        "again.csv",
    ]);
    run.expect_code(1);
    assert_eq!(run.json()["invalid"], rows as u64, "{}", run.context());
}

#[test]
fn the_error_file_is_written_in_the_inputs_dialect_and_reads_back_with_no_flags() {
    let work = WorkDir::new();

    // UTF-8 with a BOM and CRLF: the same.
    let (path, bytes) = error_file_of(&work, "bom_crlf.csv", "bom_crlf.errors.csv");
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBFEmail,First Name,"),
        "{bytes:?}"
    );
    assert!(bytes.windows(2).filter(|w| w == b"\r\n").count() >= 4);
    assert!(
        !bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "only CRLF"
    );
    reads_back_the_same(&work, &path, 3);

    // European Excel: `sep=;`, `;`, CRLF, Windows-1252 (Müller stays one byte, 0xFC).
    let mut excel = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dialects/excel_1252.csv"),
    )
    .unwrap();
    excel.extend_from_slice(b"not-an-email;J\xFCrgen;M\xFCller;;;user;;\r\n");
    std::fs::write(work.path("europe.csv"), &excel).unwrap();
    let (path, bytes) = error_file_of(&work, "europe.csv", "europe.errors.csv");
    assert!(
        bytes.starts_with(b"sep=;\r\nE-mail Address;Given Name;"),
        "{bytes:?}"
    );
    assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8");
    assert!(
        bytes.windows(20).any(|w| w == b"not-an-email;J\xFCrgen;"),
        "Windows-1252, `;`: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    reads_back_the_same(&work, &path, 4);

    // Excel's UTF-16 "Unicode text" (tab-separated) comes back as such, named `.txt`.
    let (path, bytes) = error_file_of(&work, "unicode_text.txt", "unicode_text.errors.txt");
    assert!(
        bytes.starts_with(b"\xFF\xFEE\x00"),
        "UTF-16 LE with its BOM: {bytes:?}"
    );
    assert!(bytes.windows(2).any(|w| w == b"\t\x00"), "tabs");
    reads_back_the_same(&work, &path, 3);

    // TSV: a TSV error file, named so.
    let (path, bytes) = error_file_of(&work, "full_name.tsv", "full_name.errors.tsv");
    assert!(bytes.contains(&b'\t') && !bytes.starts_with(b"\xEF\xBB\xBF"));
    reads_back_the_same(&work, &path, 3);

    // A workbook gets a workbook of text cells back: phones as typed, no `'`, no formula.
    let (path, bytes) = error_file_of(&work, "people.xlsx", "people.errors.xlsx");
    assert!(bytes.starts_with(b"PK\x03\x04"), "a zip archive");
    reads_back_the_same(&work, &path, 3);
    let mut source = roster::input::open(&path, None).unwrap();
    let records = roster::input::read_all(source.as_mut()).unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.cells.iter().all(|c| !c.starts_with('\''))),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.cells.iter().any(|c| c == "+14155550100")),
        "{records:?}"
    );
}
