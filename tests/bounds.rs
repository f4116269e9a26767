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

/// An ODS workbook whose `content.xml` holds `tables` (raw `table:table` XML).
fn ods(path: &std::path::Path, tables: &str) {
    support::workbooks::ods(path, tables.as_bytes());
}

fn ods_text(text: &str) -> String {
    format!(
        r#"<table:table-cell office:value-type="string"><text:p>{text}</text:p></table:table-cell>"#
    )
}

const ODS_HEADER: &str = r#"<table:table-row><table:table-cell office:value-type="string"><text:p>First Name</text:p></table:table-cell><table:table-cell office:value-type="string"><text:p>Last Name</text:p></table:table-cell><table:table-cell office:value-type="string"><text:p>Email</text:p></table:table-cell></table:table-row>"#;

/// What a spreadsheet program writes is read, its trailing repeats (LibreOffice fills the
/// sheet's remaining area with them) costing nothing.
#[test]
fn item07_an_ods_as_libreoffice_writes_it_is_read() {
    let work = WorkDir::new();
    let table = format!(
        r#"<table:table table:name="People">{ODS_HEADER}<table:table-row>{}{}{}<table:table-cell table:number-columns-repeated="16381"/></table:table-row><table:table-row table:number-rows-repeated="1048574"><table:table-cell table:number-columns-repeated="16384"/></table:table-row></table:table>"#,
        ods_text("Ann"),
        ods_text("Lee"),
        ods_text("ann@example.com"),
    );
    ods(&work.path("people.ods"), &table);
    let run = work.roster(&["validate", "people.ods", "--set", "role=user", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["would_send"], 1, "{}", run.context());
}

/// calamine builds an ODS sheet whole, repeats expanded: 400 rows of one value repeated
/// across 16,384 columns were 6.5 million cells (and formulas) in memory before any check.
#[test]
fn item07_an_ods_whose_repeats_span_millions_of_cells_is_refused_before_it_is_read() {
    let work = WorkDir::new();
    let wide = r#"<table:table-row table:number-rows-repeated="400"><table:table-cell office:value-type="float" office:value="1" table:number-columns-repeated="16384"/></table:table-row>"#;
    ods(
        &work.path("people.ods"),
        &format!(r#"<table:table table:name="People">{ODS_HEADER}{wide}</table:table>"#),
    );
    assert!(std::fs::metadata(work.path("people.ods")).unwrap().len() < 8 * 1024);
    expect_refused_for_its_span(&work, "people.ods");
}

/// An XLS of one sheet of `cells`, listed `listings` times.
fn xls(path: &std::path::Path, cells: &[(u16, u16, XlsCell)], listings: usize) {
    let records: Vec<(u16, Vec<u8>)> = cells
        .iter()
        .map(|(row, col, value)| {
            let mut data = support::workbooks::xls_cell(*row, *col);
            match value {
                XlsCell::Text(text) => {
                    data.extend((text.len() as u16).to_le_bytes());
                    data.push(0);
                    data.extend(text.as_bytes());
                    (0x0204, data)
                }
                XlsCell::Number(n) => {
                    data.extend(n.to_le_bytes());
                    (0x0203, data)
                }
            }
        })
        .collect();
    support::workbooks::xls(path, &records, listings);
}

enum XlsCell {
    Text(&'static str),
    Number(f64),
}

fn xls_people() -> Vec<(u16, u16, XlsCell)> {
    use XlsCell::{Number, Text};
    vec![
        (0, 0, Text("First Name")),
        (0, 1, Text("Last Name")),
        (0, 2, Text("Email")),
        (0, 3, Text("Employee Id")),
        (1, 0, Text("Ann")),
        (1, 1, Text("Lee")),
        (1, 2, Text("ann@example.com")),
        (1, 3, Number(1042.0)),
    ]
}

#[test]
fn item07_an_xls_of_people_is_read() {
    let work = WorkDir::new();
    xls(&work.path("people.xls"), &xls_people(), 1);
    let run = work.roster(&["validate", "people.xls", "--set", "role=user", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["would_send"], 1, "{}", run.context());
}

/// Validates `file`, which must be refused (exit 2) as spanning too many cells.
fn expect_refused_for_its_span(work: &WorkDir, file: &str) {
    let run = work.roster(&["validate", file, "--set", "role=user"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("span more than 5000000 cells"),
        "{}",
        run.context()
    );
}

/// calamine builds every listed XLS sheet whole when it opens the file: one cell at
/// `IV65536` made a 16.7-million-cell grid (~1 GB with its copy).
#[test]
fn item07_an_xls_sheet_spanning_its_whole_grid_is_refused_before_it_is_read() {
    let work = WorkDir::new();
    let mut cells = xls_people();
    cells.push((65_535, 255, XlsCell::Number(1.0)));
    xls(&work.path("people.xls"), &cells, 1);
    expect_refused_for_its_span(&work, "people.xls");
}

/// A sheet of modest span listed many times is built once per listing.
#[test]
fn item07_an_xls_listing_one_sheet_many_times_is_refused_by_the_sum_of_its_listings() {
    let work = WorkDir::new();
    let mut cells = xls_people();
    cells.push((299, 255, XlsCell::Number(1.0)));
    xls(&work.path("people.xls"), &cells, 1);
    let run = work.roster(&["validate", "people.xls", "--set", "role=user"]);
    run.expect_code(1); // 76,800 cells: read (its far cell is a row's defect)
    xls(&work.path("people.xls"), &cells, 100);
    expect_refused_for_its_span(&work, "people.xls");
}

/// A cell of megabytes is no spreadsheet program's: the XML parser once buffered it whole
/// (an 800 MB cell cost 2.5 GB) before its length was checked.
#[test]
fn item07_an_xlsx_cell_of_megabytes_is_refused_before_it_is_read() {
    let work = WorkDir::new();
    let rows = format!(
        r#"{HEADER}<row r="2">{}{}{}</row>"#,
        cell("A2", &"x".repeat(3 << 20)),
        cell("B2", "Lee"),
        cell("C2", "ann@example.com"),
    );
    xlsx(&work.path("people.xlsx"), "A1:C2", &rows);
    let run = work.roster(&["validate", "people.xlsx", "--set", "role=user"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("more than 1024 KB without markup"),
        "{}",
        run.context()
    );
}

/// Found by fuzzing: calamine reads an ODS table until its end tag and never stops at the
/// file's end (an unterminated table hung the run), and pushes every `text:s` space one by
/// one (`text:c="2000000000"` was 2 GB for one cell). Both are refused before calamine reads.
#[test]
fn item07_an_ods_that_would_hang_or_balloon_the_reader_is_refused() {
    let work = WorkDir::new();
    for (table, why) in [
        (
            format!(r#"<table:table table:name="People">{ODS_HEADER}"#),
            "ends inside",
        ),
        (
            format!(
                r#"<table:table table:name="People">{ODS_HEADER}<table:table-row><table:table-cell office:value-type="string"><text:p>A<text:s text:c="2000000000"/></text:p></table:table-cell></table:table-row></table:table>"#
            ),
            "2000000000 repeated spaces",
        ),
    ] {
        ods(&work.path("people.ods"), &table);
        let run = work.roster(&["validate", "people.ods", "--set", "role=user"]);
        run.expect_code(2);
        assert!(run.stderr().contains(why), "{}", run.context());
    }
}
