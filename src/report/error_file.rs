//! The error file: every refused row, ready to fix and feed back in, in the input's own dialect.
//!
//! CSV (default): the input's own columns in their order and spelling (minus roster's `_`
//! columns from an earlier error file), then `_row`, `_status`, `_errors`; formula cells are
//! neutralised. It is written as the input was: its delimiter, line ending and `sep=` line,
//! and its encoding when every value fits (else UTF-8 with a BOM, so Excel reads it right).
//! XLSX (the default for a spreadsheet input): the same columns as text cells, which no
//! spreadsheet runs as formulas. JSONL (`--errors-format jsonl`): `{row, status, errors:
//! [FieldError], warnings, record: {column: value}}` per line. Secret columns are blanked
//! unless asked otherwise.
//!
//! CSV and XLSX rows are first written to a plain working CSV beside the file; at the end it
//! is sorted by row (when small enough) and rendered in the dialect, then replaces the file.

use crate::error::RunError;
use crate::files::Privacy;
use crate::input::TextDialect;
use crate::model::cells::{neutralise, restore};
use crate::model::{RowReport, join_errors};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::model::cells::META_COLUMNS;

/// Past this many rows a JSONL error file is left in completion order rather than sorted.
const MAX_SORTED_ROWS: u64 = 100_000;

/// Records sorted in memory at once; larger files are sorted in runs of this many, merged.
const SORT_RUN: usize = 100_000;

/// The most characters an XLSX cell holds (Excel's limit).
const XLSX_CELL_CHARS: usize = 32_767;

/// Error file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ErrorFormat {
    /// The input's columns plus `_row`, `_status`, `_errors`, in the input's CSV dialect.
    #[default]
    Csv,
    /// One JSON object per refused row.
    Jsonl,
    /// A workbook of text cells (the default for a spreadsheet input).
    Xlsx,
}

impl ErrorFormat {
    /// The format a path's extension names (`.xlsx`, `.jsonl`), else CSV.
    pub fn for_path(path: &Path) -> ErrorFormat {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext.to_ascii_lowercase().as_str() {
            "xlsx" => ErrorFormat::Xlsx,
            "jsonl" | "ndjson" => ErrorFormat::Jsonl,
            _ => ErrorFormat::Csv,
        }
    }
}

enum Writer {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Jsonl(BufWriter<File>),
}

/// The error file of one run; nothing is created until the first refused row.
pub struct ErrorFile {
    path: PathBuf,
    format: ErrorFormat,
    dialect: TextDialect,
    headers: Vec<String>,
    keep: Vec<usize>,
    secret_columns: Vec<usize>,
    writer: Option<Writer>,
    rows_written: u64,
    last_row: u64,
    in_order: bool,
    privacy: Privacy,
    /// `--results`: every row, each with the target's id for the person.
    every_row: bool,
}

/// The results file's column for the target's id, between `_status` and `_errors`.
pub const REMOTE_ID_COLUMN: &str = "_remote_id";

impl ErrorFile {
    /// An error file at `path` for an input with `headers`; cells of `secret_columns` are
    /// blanked.
    pub fn new(
        path: &Path,
        format: ErrorFormat,
        headers: &[String],
        secret_columns: Vec<usize>,
    ) -> ErrorFile {
        let keep: Vec<usize> = (0..headers.len())
            .filter(|&i| {
                let header = headers[i].as_str();
                !META_COLUMNS.contains(&header) && header != REMOTE_ID_COLUMN
            })
            .collect();
        ErrorFile {
            path: path.to_path_buf(),
            format,
            dialect: TextDialect::default(),
            headers: headers.to_vec(),
            keep,
            secret_columns,
            writer: None,
            rows_written: 0,
            last_row: 0,
            in_order: true,
            privacy: Privacy::Personal,
            every_row: false,
        }
    }

    /// The results file (`--results`): every row of the input in its order, with its
    /// outcome, the target's id and any message, in the same formats as the error file.
    pub fn results(
        path: &Path,
        format: ErrorFormat,
        headers: &[String],
        secret_columns: Vec<usize>,
    ) -> ErrorFile {
        ErrorFile {
            every_row: true,
            ..ErrorFile::new(path, format, headers, secret_columns)
        }
    }

    /// A CSV error file is written in `dialect`: the input's delimiter, line ending, `sep=`
    /// line and (where every value fits) encoding.
    pub fn in_dialect(mut self, dialect: TextDialect) -> ErrorFile {
        self.dialect = dialect;
        self
    }

    /// The file keeps secret cells (`--keep-secrets` with a password column): it is
    /// created owner-only.
    pub fn holding_secrets(mut self, secrets: bool) -> ErrorFile {
        if secrets {
            self.privacy = Privacy::Secret;
        }
        self
    }

    fn output_error(&self, e: impl Into<std::io::Error>) -> RunError {
        RunError::Output {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Where rows go during the run: the file itself for JSONL, else a plain working CSV.
    fn working_path(&self) -> PathBuf {
        match self.format {
            ErrorFormat::Jsonl => self.path.clone(),
            _ => sibling(&self.path, "partial"),
        }
    }

    fn cell<'a>(&self, report: &'a RowReport, i: usize) -> &'a str {
        if self.secret_columns.contains(&i) {
            ""
        } else {
            report.cells.get(i).map_or("", String::as_str)
        }
    }

    fn open(&self) -> Result<Writer, RunError> {
        let file = crate::files::create(&self.working_path(), self.privacy)
            .map_err(|e| self.output_error(e))?;
        let file = BufWriter::new(file);
        Ok(match self.format {
            ErrorFormat::Csv | ErrorFormat::Xlsx => {
                let mut writer = csv::Writer::from_writer(file);
                let mut header: Vec<Cow<str>> = self
                    .keep
                    .iter()
                    .map(|&i| neutralise(&self.headers[i]))
                    .collect();
                header.extend(META_COLUMNS.map(Cow::Borrowed));
                if self.every_row {
                    header.insert(header.len() - 1, Cow::Borrowed(REMOTE_ID_COLUMN));
                }
                writer
                    .write_record(header.iter().map(|c| c.as_bytes()))
                    .map_err(|e| self.output_error(e))?;
                Writer::Csv(Box::new(writer))
            }
            ErrorFormat::Jsonl => Writer::Jsonl(file),
        })
    }

    /// Appends one refused row.
    pub fn write(&mut self, report: &RowReport) -> Result<(), RunError> {
        if self.writer.is_none() {
            self.writer = Some(self.open()?);
        }
        let written = match self.writer.as_ref().expect("opened above") {
            Writer::Csv(_) => {
                let mut record: Vec<Cow<str>> = self
                    .keep
                    .iter()
                    .map(|&i| neutralise(self.cell(report, i)))
                    .collect();
                let errors = error_text(report);
                record.push(Cow::Owned(report.row.to_string()));
                record.push(Cow::Owned(report.outcome.status_text()));
                if self.every_row {
                    let id = report.remote_id.as_deref().unwrap_or("");
                    record.push(Cow::Owned(neutralise(id).into_owned()));
                }
                record.push(Cow::Owned(neutralise(&errors).into_owned()));
                let Some(Writer::Csv(w)) = self.writer.as_mut() else {
                    unreachable!()
                };
                w.write_record(record.iter().map(|c| c.as_bytes()))
                    .map_err(std::io::Error::from)
            }
            Writer::Jsonl(_) => {
                let record: serde_json::Map<String, serde_json::Value> = self
                    .keep
                    .iter()
                    .map(|&i| (self.headers[i].clone(), self.cell(report, i).into()))
                    .collect();
                let line = serde_json::json!({
                    "row": report.row,
                    "status": report.outcome.status_text(),
                    "errors": report.errors,
                    "warnings": report.warnings,
                    "remote_id": report.remote_id,
                    "record": record,
                });
                let Some(Writer::Jsonl(w)) = self.writer.as_mut() else {
                    unreachable!()
                };
                serde_json::to_writer(&mut *w, &line)
                    .map_err(std::io::Error::from)
                    .and_then(|_| w.write_all(b"\n"))
            }
        };
        written.map_err(|e| self.output_error(e))?;
        self.in_order &= report.row >= self.last_row;
        self.last_row = report.row;
        self.rows_written += 1;
        Ok(())
    }

    /// Flushes the file, sorting it by row when it is small enough and rendering it in its
    /// dialect; returns its path if any row was written. A stale error file from an earlier
    /// run is removed when nothing was refused this time, so what is on disk always
    /// describes the last run.
    pub fn finish(mut self) -> Result<Option<PathBuf>, RunError> {
        let Some(writer) = self.writer.take() else {
            if self.path.exists() {
                std::fs::remove_file(&self.path).map_err(|e| self.output_error(e))?;
            }
            return Ok(None);
        };
        let flushed = match writer {
            Writer::Csv(mut w) => w.flush(),
            Writer::Jsonl(mut w) => w.flush(),
        };
        flushed.map_err(|e| self.output_error(e))?;
        let working = self.working_path();
        let sorted = match self.format {
            _ if self.in_order => Ok(()),
            ErrorFormat::Csv | ErrorFormat::Xlsx => sort_csv(&working, self.privacy),
            ErrorFormat::Jsonl if self.rows_written <= MAX_SORTED_ROWS => {
                sort_jsonl(&working, self.privacy)
            }
            ErrorFormat::Jsonl => Ok(()),
        };
        sorted.map_err(|e| self.output_error(e))?;
        let rendered = match self.format {
            ErrorFormat::Jsonl => Ok(()),
            ErrorFormat::Csv => render_csv(&working, &self.path, self.dialect, self.privacy),
            ErrorFormat::Xlsx => render_xlsx(&working, &self.path, self.privacy),
        };
        rendered.map_err(|e| self.output_error(e))?;
        if working != self.path {
            std::fs::remove_file(&working).map_err(|e| self.output_error(e))?;
        }
        Ok(Some(self.path))
    }
}

impl super::Sink for ErrorFile {
    /// A refused row is written, and a row sent without a cell `--drop-invalid` left out;
    /// any other is not this file's.
    fn add(&mut self, report: &RowReport, _summary: &super::Summary) -> Result<(), RunError> {
        match self.every_row || report.outcome.is_refused() || !report.warnings.is_empty() {
            true => self.write(report),
            false => Ok(()),
        }
    }
}

/// `path` with `.suffix` added to its name (`e.csv` → `e.csv.partial`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

/// The `_errors` cell: the errors, then each left-out cell as `warning: column: message`.
fn error_text(report: &RowReport) -> String {
    let mut text = join_errors(&report.errors);
    for warning in &report.warnings {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str("warning: ");
        text.push_str(&join_errors(std::slice::from_ref(warning)));
    }
    text
}

/// Rewrites a CSV file in `_row` order with flat memory: runs of at most [`SORT_RUN`]
/// records are sorted in memory and, when there is more than one, merged from disk.
fn sort_csv(path: &Path, privacy: Privacy) -> std::io::Result<()> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.byte_headers()?.clone();
    let row_col = headers.iter().position(|h| h == b"_row").unwrap_or(0);
    let row_of = |r: &csv::ByteRecord| -> u64 {
        r.get(row_col)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0)
    };
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut records = reader.byte_records();
    let mut last: Vec<csv::ByteRecord> = Vec::new();
    loop {
        let mut run = records
            .by_ref()
            .take(SORT_RUN)
            .collect::<Result<Vec<_>, _>>()?;
        run.sort_by_key(row_of);
        let full = run.len() == SORT_RUN;
        if runs.is_empty() && !full {
            last = run;
            break;
        }
        if run.is_empty() {
            break;
        }
        let run_path = sibling(path, &format!("run{}", runs.len()));
        let mut writer = csv::Writer::from_writer(crate::files::create(&run_path, privacy)?);
        for r in &run {
            writer.write_byte_record(r)?;
        }
        writer.flush()?;
        runs.push(run_path);
        if !full {
            break;
        }
    }
    let tmp = sibling(path, "sorting");
    {
        let mut writer = csv::Writer::from_writer(crate::files::create(&tmp, privacy)?);
        writer.write_byte_record(&headers)?;
        if runs.is_empty() {
            for r in &last {
                writer.write_byte_record(r)?;
            }
        } else {
            let mut readers = runs
                .iter()
                .map(|p| {
                    csv::ReaderBuilder::new()
                        .has_headers(false)
                        .from_path(p)
                        .map(|r| r.into_byte_records())
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut heads: Vec<Option<csv::ByteRecord>> = Vec::with_capacity(readers.len());
            let mut heap = BinaryHeap::new();
            for (i, reader) in readers.iter_mut().enumerate() {
                let head = reader.next().transpose()?;
                if let Some(r) = &head {
                    heap.push(Reverse((row_of(r), i)));
                }
                heads.push(head);
            }
            while let Some(Reverse((_, i))) = heap.pop() {
                let record = heads[i].take().expect("a queued run has a head");
                writer.write_byte_record(&record)?;
                heads[i] = readers[i].next().transpose()?;
                if let Some(r) = &heads[i] {
                    heap.push(Reverse((row_of(r), i)));
                }
            }
        }
        writer.flush()?;
    }
    for run in runs {
        std::fs::remove_file(run)?;
    }
    std::fs::rename(tmp, path)
}

/// Renders the working CSV at `path` in `dialect`: the input's encoding when every value
/// fits it (UTF-16 always does: Excel's "Unicode text" comes back as such), else UTF-8 with
/// a byte-order mark.
fn render_csv(
    working: &Path,
    path: &Path,
    dialect: TextDialect,
    privacy: Privacy,
) -> std::io::Result<()> {
    use encoding_rs::UTF_8;
    let tmp = sibling(path, "rendering");
    let fitted =
        dialect.encoding != UTF_8 && write_csv(working, &tmp, dialect, dialect.encoding, privacy)?;
    if !fitted {
        write_csv(working, &tmp, dialect, UTF_8, privacy)?;
    }
    std::fs::rename(tmp, path)
}

/// Writes the working CSV's records to `out` in `dialect` and `encoding`; returns false when
/// a value `encoding` cannot hold was met (the file is then written again in UTF-8).
fn write_csv(
    working: &Path,
    out: &Path,
    dialect: TextDialect,
    encoding: &'static encoding_rs::Encoding,
    privacy: Privacy,
) -> std::io::Result<bool> {
    let mut file = BufWriter::new(crate::files::create(out, privacy)?);
    // A BOM where the input had one, or where the input's encoding could not be kept: the
    // BOM is how Excel knows the file is UTF-8.
    // UTF-16 always has one: it is how anything tells its byte order.
    match encoding {
        e if e == encoding_rs::UTF_8 && (dialect.bom || dialect.encoding != e) => {
            file.write_all(b"\xEF\xBB\xBF")?
        }
        e if e == encoding_rs::UTF_16LE => file.write_all(b"\xFF\xFE")?,
        e if e == encoding_rs::UTF_16BE => file.write_all(b"\xFE\xFF")?,
        _ => {}
    }
    let mut encoded = Encoded {
        inner: file,
        encoding,
        pending: Vec::new(),
        unmappable: false,
    };
    if dialect.sep_line {
        let ending = if dialect.crlf { "\r\n" } else { "\n" };
        write!(encoded, "sep={}{ending}", dialect.delimiter as char)?;
    }
    let terminator = match dialect.crlf {
        true => csv::Terminator::CRLF,
        false => csv::Terminator::Any(b'\n'),
    };
    let mut writer = csv::WriterBuilder::new()
        .delimiter(dialect.delimiter)
        .terminator(terminator)
        .from_writer(encoded);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(working)?;
    for record in reader.byte_records() {
        writer.write_byte_record(&record?)?;
    }
    writer.flush()?;
    let mut encoded = writer.into_inner().map_err(|e| e.into_error())?;
    encoded.inner.flush()?;
    Ok(!encoded.unmappable)
}

/// UTF-8 written through it reaches `inner` in `encoding`; a character `encoding` cannot
/// hold is noted in `unmappable` (the caller then writes UTF-8 instead).
struct Encoded<W: Write> {
    inner: W,
    encoding: &'static encoding_rs::Encoding,
    /// Bytes of a character split between two writes.
    pending: Vec<u8>,
    unmappable: bool,
}

impl<W: Write> Write for Encoded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.encoding == encoding_rs::UTF_8 {
            return self.inner.write_all(buf).map(|_| buf.len());
        }
        self.pending.extend_from_slice(buf);
        let whole = match std::str::from_utf8(&self.pending) {
            Ok(text) => text.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = std::str::from_utf8(&self.pending[..whole]).expect("checked above");
        // encoding_rs encodes into UTF-16 as UTF-8 (the Encoding Standard has no UTF-16
        // encoder), so its code units are written here.
        if self.encoding == encoding_rs::UTF_16LE || self.encoding == encoding_rs::UTF_16BE {
            let little = self.encoding == encoding_rs::UTF_16LE;
            let mut bytes = Vec::with_capacity(text.len() * 2);
            for unit in text.encode_utf16() {
                let pair = if little {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                };
                bytes.extend_from_slice(&pair);
            }
            self.inner.write_all(&bytes)?;
        } else {
            let (bytes, _, unmappable) = self.encoding.encode(text);
            self.unmappable |= unmappable;
            self.inner.write_all(&bytes)?;
        }
        self.pending.drain(..whole);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Renders the working CSV at `path` as a workbook of text cells: a bold header row frozen
/// in place, the `_errors` column wide and wrapped, roster's formula prefixes undone (a text
/// cell is never a formula).
fn render_xlsx(working: &Path, path: &Path, privacy: Privacy) -> std::io::Result<()> {
    use rust_xlsxwriter::{Color, Format, Workbook};
    let xlsx = |e: rust_xlsxwriter::XlsxError| std::io::Error::other(e.to_string());
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(working)?;
    let mut workbook = Workbook::new();
    let sheet = workbook
        .add_worksheet_with_constant_memory()
        .map_err(xlsx)?;
    sheet.set_name("Refused rows").map_err(xlsx)?;
    let header = Format::new()
        .set_bold()
        .set_background_color(Color::RGB(0xDDEBF7));
    let wrapped = Format::new().set_text_wrap();
    let mut errors_column = None;
    for (r, record) in reader.records().enumerate() {
        let record = record?;
        let row = u32::try_from(r).map_err(std::io::Error::other)?;
        if r == 0 {
            let column = record.len().saturating_sub(1) as u16;
            errors_column = Some(column);
            sheet.set_column_width(column, 80).map_err(xlsx)?;
            sheet.set_freeze_panes(1, 0).map_err(xlsx)?;
        }
        for (c, cell) in record.iter().enumerate() {
            let column = u16::try_from(c).map_err(std::io::Error::other)?;
            let text = clip(restore(cell), XLSX_CELL_CHARS);
            let written = match (r, Some(column) == errors_column) {
                (0, _) => sheet.write_string_with_format(row, column, text, &header),
                (_, true) => sheet.write_string_with_format(row, column, text, &wrapped),
                _ => sheet.write_string(row, column, text),
            };
            written.map_err(xlsx)?;
        }
    }
    let tmp = sibling(path, "rendering");
    let file = crate::files::create(&tmp, privacy)?;
    workbook.save_to_writer(file).map_err(xlsx)?;
    std::fs::rename(tmp, path)
}

/// At most `max` characters of `text`.
fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Rewrites a JSONL error file in `row` order.
fn sort_jsonl(path: &Path, privacy: Privacy) -> std::io::Result<()> {
    let lines: Vec<String> = BufReader::new(File::open(path)?)
        .lines()
        .collect::<Result<_, _>>()?;
    let mut keyed: Vec<(u64, String)> = lines
        .into_iter()
        .map(|l| {
            let row = serde_json::from_str::<serde_json::Value>(&l)
                .ok()
                .and_then(|v| v["row"].as_u64());
            (row.unwrap_or(0), l)
        })
        .collect();
    keyed.sort_by_key(|(row, _)| *row);
    let tmp = sibling(path, "sorting");
    {
        let mut out = BufWriter::new(crate::files::create(&tmp, privacy)?);
        for (_, line) in &keyed {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;
    use crate::model::{ErrorCode, FieldError};

    fn report(row: u64, outcome: Outcome, cells: &[&str]) -> RowReport {
        let errors = vec![FieldError::local(None, "Email", ErrorCode::Format, "bad")];
        RowReport::local(
            row,
            outcome,
            errors,
            cells.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn headers() -> Vec<String> {
        ["Email", "Password", "_row", "_status", "_errors"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn csv_keeps_columns_drops_old_meta_blanks_secrets_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        let mut file = ErrorFile::new(&path, ErrorFormat::Csv, &headers(), vec![1]);
        file.write(&report(
            5,
            Outcome::Rejected { status: 400 },
            &["b@x", "pw", "9", "x", "y"],
        ))
        .unwrap();
        file.write(&report(3, Outcome::Invalid, &["a@x", "pw", "8", "x", "y"]))
            .unwrap();
        assert_eq!(file.finish().unwrap(), Some(path.clone()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "Email,Password,_row,_status,_errors\na@x,,3,invalid,Email: bad\nb@x,,5,400,Email: bad\n"
        );
    }

    #[test]
    fn jsonl_lines_carry_row_status_errors_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut file = ErrorFile::new(&path, ErrorFormat::Jsonl, &headers(), vec![1]);
        file.write(&report(
            7,
            Outcome::Duplicate {
                of: 4,
                first: crate::model::FirstRow::Refused,
            },
            &["a@x", "pw", "", "", ""],
        ))
        .unwrap();
        file.write(&report(4, Outcome::Invalid, &["b@x", "pw", "", "", ""]))
            .unwrap();
        file.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["row"], 4);
        assert_eq!(lines[1]["status"], "duplicate");
        assert_eq!(lines[1]["errors"][0]["column"], "Email");
        assert_eq!(lines[1]["errors"][0]["source"], "local");
        assert_eq!(
            lines[1]["record"],
            serde_json::json!({"Email": "a@x", "Password": ""})
        );
    }

    #[test]
    fn a_value_the_inputs_encoding_cannot_hold_makes_the_file_utf8_with_a_bom() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        let dialect = TextDialect {
            delimiter: b';',
            encoding: encoding_rs::WINDOWS_1252,
            crlf: true,
            ..TextDialect::default()
        };
        let mut file =
            ErrorFile::new(&path, ErrorFormat::Csv, &headers(), vec![]).in_dialect(dialect);
        file.write(&report(2, Outcome::Invalid, &["Müller", "", "", "", ""]))
            .unwrap();
        file.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes,
            b"Email;Password;_row;_status;_errors\r\nM\xFCller;;2;invalid;Email: bad\r\n"
        );
        assert!(
            !dir.path().join("e.csv.partial").exists(),
            "working file removed"
        );

        let mut file =
            ErrorFile::new(&path, ErrorFormat::Csv, &headers(), vec![]).in_dialect(dialect);
        file.write(&report(2, Outcome::Invalid, &["Łukasz", "", "", "", ""]))
            .unwrap();
        file.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("\u{FEFF}Email;Password;"), "{text:?}");
        assert!(text.contains("Łukasz;;2;invalid"), "{text:?}");
    }

    #[test]
    fn an_xlsx_error_file_holds_text_cells_that_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.xlsx");
        let mut file = ErrorFile::new(&path, ErrorFormat::Xlsx, &headers(), vec![1]);
        file.write(&report(
            3,
            Outcome::Invalid,
            &["=HYPERLINK(\"http://x\")", "pw", "", "", ""],
        ))
        .unwrap();
        file.write(&report(
            2,
            Outcome::Invalid,
            &["+14155550100", "pw", "", "", ""],
        ))
        .unwrap();
        file.finish().unwrap();
        let mut source = crate::input::open(&path, None).unwrap();
        assert_eq!(
            source.headers(),
            ["Email", "Password", "_row", "_status", "_errors"]
        );
        let rows = crate::input::read_all(source.as_mut()).unwrap();
        let cells: Vec<Vec<String>> = rows.into_iter().map(|r| r.cells).collect();
        assert_eq!(
            cells[0][..3],
            ["+14155550100", "", "2"],
            "sorted, secret blanked"
        );
        assert_eq!(cells[1][0], "=HYPERLINK(\"http://x\")", "kept as text");
    }

    #[test]
    fn a_file_larger_than_one_sorting_run_is_merged_into_row_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let rows = SORT_RUN * 2 + 7;
        let mut text = String::from("Email,_row,_status,_errors\n");
        // Interleaved descending runs, the way late answers arrive out of order.
        for i in (0..rows).rev() {
            let row = if i % 2 == 0 { i } else { rows * 2 - i };
            text.push_str(&format!("p{row}@x.io,{row},invalid,bad\n"));
        }
        std::fs::write(&path, text).unwrap();
        sort_csv(&path, Privacy::Personal).unwrap();
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let got: Vec<u64> = reader
            .records()
            .map(|r| r.unwrap()[1].parse().unwrap())
            .collect();
        assert_eq!(got.len(), rows);
        assert!(got.windows(2).all(|w| w[0] <= w[1]), "sorted");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "the runs are removed");
    }

    #[test]
    fn no_refusals_remove_a_stale_error_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        std::fs::write(&path, "old").unwrap();
        let file = ErrorFile::new(&path, ErrorFormat::Csv, &["Email".to_string()], Vec::new());
        assert_eq!(file.finish().unwrap(), None);
        assert!(!path.exists());
    }
}
