//! Fuzzing every reader with arbitrary bytes (proptest: `cargo fuzz` needs a nightly compiler
//! this project does not install). Each property: the reader never panics, reads a bounded
//! number of records, and every record has the header's width. CI runs a few hundred cases
//! per reader; a longer run is `PROPTEST_CASES=20000 cargo test --release --test fuzz_readers`.

mod support;

use proptest::prelude::*;
use roster::input::{self, Format, Record};
use std::io::Write;

/// Reads the whole file at `path` as `format`; `Err` (a file error) is a fine answer, a panic
/// is not. Records are never narrower than the header (a CSV record may be wider: its extra
/// values are kept for the error file, and are the record's defect).
fn read_all(path: &std::path::Path, format: Format, size: usize) -> Result<(), TestCaseError> {
    let Ok(mut source) = input::open(path, Some(format)) else {
        return Ok(());
    };
    let width = source.headers().len();
    let mut record = Record::default();
    let mut records = 0usize;
    while let Ok(true) = source.read_record(&mut record) {
        records += 1;
        prop_assert!(records <= size + 1, "more records than bytes");
        prop_assert!(
            record.cells.len() >= width,
            "a record is never narrower than the header"
        );
        if record.cells.len() > width {
            prop_assert!(
                record.defect.is_some(),
                "extra values are the record's defect"
            );
        }
    }
    let peak_mb = peak_rss_mb();
    prop_assert!(
        peak_mb < 1024,
        "reading {} bytes peaked at {} MB",
        size,
        peak_mb
    );
    Ok(())
}

/// This process's peak resident size: no input of these sizes may cost a gigabyte.
fn peak_rss_mb() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_maxrss / 1024
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Bytes that look like a CSV often enough to reach the parser's corners: quotes, delimiters,
/// line breaks, a BOM, an Excel `sep=` line, invalid UTF-8.
fn csvish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b";".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"sep=;\n".to_vec()),
        Just(b"\xFF\xFE".to_vec()),
        Just(b"_row,_status,_errors".to_vec()),
        "[a-z@.]{1,6}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    proptest::collection::vec(piece, 0..64).prop_map(|p| p.concat())
}

fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"email\":".to_vec()),
        Just(b"\"a\":{\"b\":".to_vec()),
        Just(b"null".to_vec()),
        Just(b",".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\"x\"".to_vec()),
        Just(b"1e999".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    proptest::collection::vec(piece, 0..64).prop_map(|p| p.concat())
}

/// A zip holding a workbook whose sheet XML is `sheet` (the rest well-formed), so the cells
/// reader, not the zip reader, meets the hostile bytes.
fn xlsx_with_sheet(path: &std::path::Path, sheet: &[u8]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    let parts: [(&str, &[u8]); 4] = [
        (
            "[Content_Types].xml",
            br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            br#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
        ),
        (
            "xl/workbook.xml",
            br#"<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        (
            "xl/_rels/workbook.xml.rels",
            br#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
    ];
    for (name, bytes) in parts {
        zip.start_file(name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.start_file("xl/worksheets/sheet1.xml", opts).unwrap();
    zip.write_all(sheet).unwrap();
    zip.finish().unwrap();
}

fn sheetish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"<row>".to_vec()),
        Just(b"</row>".to_vec()),
        Just(b"<row r=\"1048576\">".to_vec()),
        Just(b"<c r=\"XFD1048576\" t=\"inlineStr\"><is><t>x</t></is></c>".to_vec()),
        Just(b"<c r=\"A1\" t=\"inlineStr\"><is><t>Email</t></is></c>".to_vec()),
        Just(b"<c t=\"s\"><v>99</v></c>".to_vec()),
        Just(b"<c><v>1e308</v></c>".to_vec()),
        Just(b"<c r=\"ZZZZZZ9999999999\"><v>1</v></c>".to_vec()),
        Just(b"<dimension ref=\"A1:XFD1048576\"/>".to_vec()),
        Just(b"&amp;&#0;".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    proptest::collection::vec(piece, 0..48).prop_map(|p| {
        let mut xml = b"<?xml version=\"1.0\"?><worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData>".to_vec();
        xml.extend(p.concat());
        xml.extend(b"</sheetData></worksheet>");
        xml
    })
}

/// Tables whose repeats reach calamine's caps (a million rows, 16,384 columns).
fn odsish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"<table:table table:name=\"S\">".to_vec()),
        Just(b"</table:table>".to_vec()),
        Just(b"<table:table-row>".to_vec()),
        Just(b"<table:table-row table:number-rows-repeated=\"1048576\">".to_vec()),
        Just(b"</table:table-row>".to_vec()),
        Just(b"<table:table-cell office:value-type=\"string\"><text:p>Email</text:p></table:table-cell>".to_vec()),
        Just(b"<table:table-cell office:value-type=\"float\" office:value=\"1\" table:number-columns-repeated=\"16384\"/>".to_vec()),
        Just(b"<table:table-cell table:number-columns-repeated=\"16384\"/>".to_vec()),
        Just(b"<table:covered-table-cell table:number-columns-repeated=\"99999999999\"/>".to_vec()),
        Just(b"<text:p>x</text:p>".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

/// An XLS of one sheet whose records are `records` (type, row, column, payload length):
/// cells anywhere, dimensions of any size, listed `listings` times.
fn xls_with_records(path: &std::path::Path, records: &[(u16, u16, u16, u8)], listings: u8) {
    let records: Vec<(u16, Vec<u8>)> = records
        .iter()
        .map(|&(typ, row, col, len)| {
            let mut data = support::workbooks::xls_cell(row, col);
            data.resize(6 + usize::from(len), 0x41);
            (typ, data)
        })
        .collect();
    support::workbooks::xls(path, &records, usize::from(listings));
}

fn xlsish() -> impl Strategy<Value = Vec<(u16, u16, u16, u8)>> {
    let typ = prop_oneof![
        Just(0x0203u16),
        Just(0x0204),
        Just(0x027E),
        Just(0x00BD),
        Just(0x0006),
        Just(0x0200),
        Just(0x00FD),
        Just(0x0809),
        Just(0x000A),
        any::<u16>(),
    ];
    let edge = prop_oneof![Just(0u16), Just(255), Just(65_535), any::<u16>()];
    proptest::collection::vec((typ, edge.clone(), edge, 0u8..24), 0..24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_csv_reader_never_panics(bytes in csvish()) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "f.csv", &bytes);
        read_all(&path, Format::Csv, bytes.len())?;
    }

    #[test]
    fn the_csv_reader_never_panics_on_raw_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "f.csv", &bytes);
        read_all(&path, Format::Csv, bytes.len())?;
    }

    #[test]
    fn the_jsonl_reader_never_panics(bytes in jsonish()) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "f.jsonl", &bytes);
        read_all(&path, Format::Jsonl, bytes.len())?;
    }

    #[test]
    fn the_spreadsheet_reader_never_panics(sheet in sheetish()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.xlsx");
        xlsx_with_sheet(&path, &sheet);
        read_all(&path, Format::Xlsx, sheet.len())?;
    }

    #[test]
    fn the_spreadsheet_reader_never_panics_on_raw_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "f.xlsx", &bytes);
        read_all(&path, Format::Xlsx, bytes.len())?;
    }

    #[test]
    fn the_ods_reader_never_panics_and_stays_bounded(body in odsish()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ods");
        support::workbooks::ods(&path, &body);
        read_all(&path, Format::Xlsx, body.len())?;
    }

    #[test]
    fn the_xls_reader_never_panics_and_stays_bounded(records in xlsish(), listings in 0u8..8) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.xls");
        xls_with_records(&path, &records, listings);
        read_all(&path, Format::Xlsx, records.len() * 32)?;
    }

    #[test]
    fn the_error_body_parser_never_panics_and_stays_bounded(bytes in jsonish()) {
        let errors = roster::http::problem::parse(&bytes);
        prop_assert!(errors.len() <= roster::http::problem::MAX_ERRORS);
        for e in &errors {
            prop_assert!(e.message.chars().count() <= roster::http::problem::MAX_MESSAGE + 40);
        }
    }
}
