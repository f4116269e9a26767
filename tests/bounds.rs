//! Hostile files cost bounded time and memory (issue 21, item 7): limits are checked before
//! allocating, a row over a limit is a row error and the rest of the file goes on.

#[macro_use]
mod support;

use std::io::Write;
use support::WorkDir;

/// An XLSX workbook of one sheet whose `sheetData` is `rows` (raw XML), as a hostile tool
/// could write it.
fn xlsx(path: &std::path::Path, dimension: &str, rows: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default();
    let parts = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_string(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_string(),
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="People" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_string(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_string(),
        ),
        (
            "xl/worksheets/sheet1.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>{rows}</sheetData></worksheet>"#
            ),
        ),
    ];
    for (name, text) in parts {
        zip.start_file(name, opts).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

fn cell(at: &str, text: &str) -> String {
    format!(r#"<c r="{at}" t="inlineStr"><is><t>{text}</t></is></c>"#)
}

const HEADER: &str = r#"<row r="1"><c r="A1" t="inlineStr"><is><t>First Name</t></is></c><c r="B1" t="inlineStr"><is><t>Last Name</t></is></c><c r="C1" t="inlineStr"><is><t>Email</t></is></c></row>"#;

#[test]
fn item07_a_sheet_spanning_xfd1048576_costs_the_cells_it_holds() {
    let work = WorkDir::new();
    let rows = format!(
        r#"{HEADER}<row r="2">{}{}{}</row><row r="1048576">{}</row>"#,
        cell("A2", "Ann"),
        cell("B2", "Lee"),
        cell("C2", "ann@example.com"),
        cell("XFD1048576", "far away"),
    );
    xlsx(&work.path("people.xlsx"), "A1:XFD1048576", &rows);
    let run = validate_with_a_csv_error_file(&work);
    run.expect_code(1);
    assert_eq!(run.json()["rows"], 2, "{}", run.context());
    assert_eq!(run.json()["would_send"], 1, "{}", run.context());
    let errors = work.read("people.xlsx.errors.csv");
    assert!(
        errors.contains("1048576"),
        "the far cell's row is refused by number: {errors}"
    );
    assert!(errors.contains("beyond the last headed column"), "{errors}");
}

#[test]
fn item07_a_cell_longer_than_a_spreadsheet_allows_is_its_rows_defect() {
    let work = WorkDir::new();
    let long = "x".repeat(40_000);
    let rows = format!(
        r#"{HEADER}<row r="2">{}{}{}</row><row r="3">{}{}{}</row>"#,
        cell("A2", &long),
        cell("B2", "Lee"),
        cell("C2", "ann@example.com"),
        cell("A3", "Bo"),
        cell("B3", "Ray"),
        cell("C3", "bo@example.com"),
    );
    xlsx(&work.path("people.xlsx"), "A1:C3", &rows);
    let run = validate_with_a_csv_error_file(&work);
    run.expect_code(1);
    assert_eq!(
        run.json()["would_send"],
        1,
        "the other row goes on: {}",
        run.context()
    );
    let errors = work.read("people.xlsx.errors.csv");
    assert!(errors.contains("40000 characters"), "{errors}");
    assert!(
        !errors.contains(&long),
        "the oversized cell is not copied into the error file"
    );
}

/// Issue 21 item 8: a signal ends a `Retry-After` pause at once (the first Ctrl-C used to
/// wait the pause out: 588 s).
#[test]
fn item08_a_signal_ends_a_retry_after_pause_at_once() {
    use support::hostile::{Hostile, Reply};
    let server = Hostile::start(|_| {
        Reply::raw(
            429,
            &[("retry-after", "120"), ("content-type", "application/json")],
            "{}",
        )
    });
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(5));
    let child = work.spawn_import(&server.url(), "people.csv", &["--json"], &[]);
    support::wait_for("the first 429", || server.count("POST") >= 1);
    let started = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the 120 s pause was not waited out: {:?}",
        started.elapsed()
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["created"], 0);
    assert_eq!(summary["rows"], 5, "every row accounted for: {summary}");
}

/// Issue 21 item 11: numbers on the command line are range-checked (they once panicked).
#[test]
fn item11_out_of_range_numbers_are_usage_errors() {
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(2));
    for (flag, value) in [
        ("--rate", "1e-300"),
        ("--timeout", "1e300"),
        ("--max-wait", "1e300"),
        ("--concurrency", "0"),
        ("--rate", "NaN"),
    ] {
        let run = work.roster(&["import", "people.csv", flag, value]);
        run.expect_code(2);
        assert!(
            run.stderr().contains(&format!("invalid value '{value}'")),
            "{}",
            run.context()
        );
        assert!(!run.stderr().contains("panicked"), "{}", run.context());
    }
}

/// Found by fuzzing (release build, 7 GB): a header cell past the last column a worksheet
/// has made the header that wide.
#[test]
fn item07_a_header_cell_beyond_column_xfd_is_a_file_error() {
    let work = WorkDir::new();
    let rows = format!(
        r#"<row r="1">{}{}</row><row r="2">{}</row>"#,
        cell("A1", "Email"),
        cell("AAAAA1", "far"),
        cell("A2", "ann@example.com"),
    );
    xlsx(&work.path("people.xlsx"), "A1:AAAAA2", &rows);
    let run = work.roster(&["validate", "people.xlsx"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("beyond the last column"),
        "{}",
        run.context()
    );
}

/// Issue 16 item 9: a row whose retries run out keeps the server's last message.
#[test]
fn retries_exhausted_on_5xx_keep_the_servers_last_message() {
    use support::hostile::{Hostile, Reply};
    let server = Hostile::start(|_| {
        Reply::json(
            503,
            serde_json::json!({"message": "the directory database is down"}),
        )
    });
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(1));
    let run = work.import_to(&server.url(), "people.csv", &["--max-retries", "1"]);
    run.expect_code(5);
    let export = work.roster(&["ledger", "export", "--format", "jsonl"]);
    assert!(
        export.stdout().contains("the directory database is down"),
        "{}",
        export.context()
    );
}

/// Validates `people.xlsx` with its error file as CSV (`people.xlsx.errors.csv`), to read.
fn validate_with_a_csv_error_file(work: &WorkDir) -> support::Run {
    work.roster(&[
        "validate",
        "people.xlsx",
        "--set",
        "role=user",
        "--json",
        "--errors-format",
        "csv",
    ])
}
