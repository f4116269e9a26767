//! Reading people files as a stream of records, each with the row number a person sees.
//!
//! Every format yields the same shape: a fixed header list and [`Record`]s whose cells line up
//! with it. A record that cannot be read properly (wrong field count, bad bytes, bad JSON) is
//! still yielded, with a `defect`, so it becomes a row error instead of stopping the run.

mod csv;
pub mod decode;
mod error;
mod jsonl;
mod sheet;
pub mod stdin;

pub use self::csv::CsvSource;
pub use self::error::InputError;
pub use self::jsonl::JsonlSource;
pub use self::sheet::SheetSource;

use std::io::{BufReader, Read};
use std::path::Path;

/// Supported input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// A spreadsheet workbook: XLSX, XLSM, XLSB, XLS or ODS.
    #[value(alias = "xls", alias = "ods")]
    #[serde(alias = "xls", alias = "ods")]
    Xlsx,
}

impl Format {
    /// Guesses the format from the file extension (`.csv`, `.tsv`/`.tab`, `.jsonl`/`.ndjson`,
    /// `.xlsx`/`.xlsm`/`.xlsb`/`.xls`/`.ods`).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "txt" => Some(Format::Csv),
            "tsv" | "tab" => Some(Format::Tsv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Some(Format::Xlsx),
            _ => None,
        }
    }
}

/// One input record: its cells (aligned with the source's headers) and where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The row number as the user sees it: the line the record starts on for CSV/TSV (header
    /// on line 1), the line for JSONL, the spreadsheet row for workbooks.
    pub row: u64,
    /// The cell values, one per header; missing cells are empty strings.
    pub cells: Vec<String>,
    /// Why the record could not be read properly, if it could not.
    pub defect: Option<String>,
}

/// How a file is written, so that the error file fed back to its user is written the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Delimited text (CSV, TSV).
    Text(TextDialect),
    /// A spreadsheet workbook.
    Spreadsheet,
    /// JSON lines.
    Jsonl,
}

/// The way a delimited text file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextDialect {
    /// The field delimiter.
    pub delimiter: u8,
    /// The text encoding.
    pub encoding: &'static encoding_rs::Encoding,
    /// It starts with a byte-order mark.
    pub bom: bool,
    /// Its lines end in CRLF.
    pub crlf: bool,
    /// It starts with Excel's `sep=X` line.
    pub sep_line: bool,
}

impl Default for TextDialect {
    /// Plain CSV: `,`, UTF-8 without a BOM, LF.
    fn default() -> Self {
        TextDialect {
            delimiter: b',',
            encoding: encoding_rs::UTF_8,
            bom: false,
            crlf: false,
            sep_line: false,
        }
    }
}

/// A stream of records with a fixed header list.
pub trait RecordSource: Send {
    /// The column headers, as written in the file.
    fn headers(&self) -> &[String];

    /// How the file is written.
    fn dialect(&self) -> Dialect;

    /// How much of the input has been read (0 to 1), where that can be told.
    fn fraction_read(&self) -> Option<f64> {
        None
    }

    /// Reads the next record into `record`; `Ok(false)` at the end of the input.
    /// Blank records are skipped. `Err` is for the file as a whole becoming unreadable.
    fn read_record(&mut self, record: &mut Record) -> Result<bool, InputError>;
}

/// How to read a file when its own bytes should not decide.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// The format (default: from the extension).
    pub format: Option<Format>,
    /// The text encoding (default: detected).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// The CSV delimiter (default: `sep=` line, else sniffed; TAB for TSV).
    pub delimiter: Option<u8>,
    /// The worksheet of a spreadsheet (default: the first).
    pub sheet: Option<String>,
}

/// Opens `path` as the given format (or the one its extension names).
pub fn open(path: &Path, format: Option<Format>) -> Result<Box<dyn RecordSource>, InputError> {
    open_with(
        path,
        &InputOptions {
            format,
            ..InputOptions::default()
        },
    )
}

/// Opens `path` with explicit options.
pub fn open_with(path: &Path, options: &InputOptions) -> Result<Box<dyn RecordSource>, InputError> {
    let format = options.format;
    let format = match format.or_else(|| Format::from_path(path)) {
        Some(f) => f,
        None => {
            return Err(InputError::Usage(format!(
                "cannot tell the format of `{}` from its extension (hint: --format csv|tsv|jsonl|xlsx)",
                path.display()
            )));
        }
    };
    match format {
        Format::Csv => Ok(Box::new(CsvSource::open(
            path,
            options.delimiter,
            options.encoding,
        )?)),
        Format::Tsv => {
            let delimiter = options.delimiter.or(Some(b'\t'));
            Ok(Box::new(CsvSource::open(
                path,
                delimiter,
                options.encoding,
            )?))
        }
        Format::Jsonl => Ok(Box::new(JsonlSource::open(path)?)),
        Format::Xlsx => Ok(Box::new(SheetSource::open(path, options.sheet.as_deref())?)),
    }
}

/// Opens a file for buffered reading with its UTF-8 byte-order mark, if any, skipped.
pub(crate) fn open_text(
    path: &Path,
) -> Result<(BufReader<Box<dyn Read + Send>>, BytesRead), InputError> {
    let decoded = decode::open(path, Some(encoding_rs::UTF_8))?;
    Ok((
        BufReader::with_capacity(256 * 1024, decoded.reader),
        decoded.read,
    ))
}

/// The bytes of a file read so far, against its size: a text input's progress.
#[derive(Debug, Clone, Default)]
pub struct BytesRead {
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    size: u64,
}

impl BytesRead {
    fn new(size: u64) -> BytesRead {
        BytesRead {
            read: Default::default(),
            size,
        }
    }

    fn counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.read.clone()
    }

    /// The share read, 0 to 1 (none for an empty or unsized file).
    pub fn fraction(&self) -> Option<f64> {
        let read = self.read.load(std::sync::atomic::Ordering::Relaxed);
        (self.size > 0).then(|| (read as f64 / self.size as f64).min(1.0))
    }
}

/// Reads all of a small source into memory; for tests and tools, not for the pipeline.
pub fn read_all(source: &mut dyn RecordSource) -> Result<Vec<Record>, InputError> {
    let mut out = Vec::new();
    let mut record = Record::default();
    while source.read_record(&mut record)? {
        out.push(record.clone());
    }
    Ok(out)
}
