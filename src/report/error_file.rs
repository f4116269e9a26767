//! The error file: every refused row, ready to fix and feed back in.
//!
//! CSV (default): the input's own columns in their order and spelling (minus roster's `_`
//! columns from an earlier error file), then `_row`, `_status`, `_errors`; formula cells are
//! neutralised. JSONL (`--errors-format jsonl`): `{row, status, errors: [FieldError],
//! record: {column: value}}` per line. Secret columns are blanked unless asked otherwise.

use crate::error::RunError;
use crate::files::Privacy;
use crate::model::cells::neutralise;
use crate::model::{RowReport, join_errors};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::model::cells::META_COLUMNS;

/// Past this many rows the error file is left in completion order rather than sorted.
const MAX_SORTED_ROWS: u64 = 100_000;

/// Error file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ErrorFormat {
    /// The input's columns plus `_row`, `_status`, `_errors`.
    #[default]
    Csv,
    /// One JSON object per refused row.
    Jsonl,
}

enum Writer {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Jsonl(BufWriter<File>),
}

/// The error file of one run; nothing is created until the first refused row.
pub struct ErrorFile {
    path: PathBuf,
    format: ErrorFormat,
    headers: Vec<String>,
    keep: Vec<usize>,
    secret_columns: Vec<usize>,
    writer: Option<Writer>,
    rows_written: u64,
    last_row: u64,
    in_order: bool,
    privacy: Privacy,
}

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
            .filter(|&i| !META_COLUMNS.contains(&headers[i].as_str()))
            .collect();
        ErrorFile {
            path: path.to_path_buf(),
            format,
            headers: headers.to_vec(),
            keep,
            secret_columns,
            writer: None,
            rows_written: 0,
            last_row: 0,
            in_order: true,
            privacy: Privacy::Personal,
        }
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

    fn cell<'a>(&self, report: &'a RowReport, i: usize) -> &'a str {
        if self.secret_columns.contains(&i) {
            ""
        } else {
            report.cells.get(i).map_or("", String::as_str)
        }
    }

    fn open(&self) -> Result<Writer, RunError> {
        let file =
            crate::files::create(&self.path, self.privacy).map_err(|e| self.output_error(e))?;
        let file = BufWriter::new(file);
        Ok(match self.format {
            ErrorFormat::Csv => {
                let mut writer = csv::Writer::from_writer(file);
                let mut header: Vec<Cow<str>> = self
                    .keep
                    .iter()
                    .map(|&i| neutralise(&self.headers[i]))
                    .collect();
                header.extend(META_COLUMNS.map(Cow::Borrowed));
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

    /// Flushes the file, sorting it by row when it is small enough; returns its path if any
    /// row was written. A stale error file from an earlier run is removed when nothing was
    /// refused this time, so what is on disk always describes the last run.
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
        if !self.in_order && self.rows_written <= MAX_SORTED_ROWS {
            let sorted = match self.format {
                ErrorFormat::Csv => sort_csv(&self.path, self.privacy),
                ErrorFormat::Jsonl => sort_jsonl(&self.path, self.privacy),
            };
            sorted.map_err(|e| self.output_error(e))?;
        }
        Ok(Some(self.path))
    }
}

impl super::Sink for ErrorFile {
    /// A refused row is written, and a row sent without a cell `--drop-invalid` left out;
    /// any other is not this file's.
    fn add(&mut self, report: &RowReport, _summary: &super::Summary) -> Result<(), RunError> {
        match report.outcome.is_refused() || !report.warnings.is_empty() {
            true => self.write(report),
            false => Ok(()),
        }
    }
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

/// Rewrites a CSV error file in `_row` order.
fn sort_csv(path: &Path, privacy: Privacy) -> std::io::Result<()> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.byte_headers()?.clone();
    let row_col = headers.len() - META_COLUMNS.len();
    let mut records = reader.byte_records().collect::<Result<Vec<_>, _>>()?;
    let row_of = |r: &csv::ByteRecord| -> u64 {
        r.get(row_col)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0)
    };
    records.sort_by_key(row_of);
    let tmp = path.with_extension("sorting");
    {
        let mut writer = csv::Writer::from_writer(crate::files::create(&tmp, privacy)?);
        writer.write_byte_record(&headers)?;
        for r in &records {
            writer.write_byte_record(r)?;
        }
        writer.flush()?;
    }
    std::fs::rename(tmp, path)
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
    let tmp = path.with_extension("sorting");
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
    fn no_refusals_remove_a_stale_error_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        std::fs::write(&path, "old").unwrap();
        let file = ErrorFile::new(&path, ErrorFormat::Csv, &["Email".to_string()], Vec::new());
        assert_eq!(file.finish().unwrap(), None);
        assert!(!path.exists());
    }
}
