//! CSV and TSV records through the `csv` crate, streaming, one reused byte buffer.

use super::{Record, RecordSource, decode, input_error};
use crate::error::RunError;
use encoding_rs::Encoding;
use std::collections::VecDeque;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A delimited file with a header row.
pub struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<LineCounting<BufReader<Box<dyn Read + Send>>>>,
    headers: Vec<String>,
    buffer: csv::ByteRecord,
    lines: Arc<Mutex<LineIndex>>,
    /// The file is roster's own error file: undo its CSV-injection prefixes.
    own_output: bool,
}

/// Where the line breaks are in the bytes the csv reader has pulled but not yet parsed, so a
/// record's starting byte gives its true line: the csv crate's own line count skips blank
/// lines, and users count those.
#[derive(Default)]
struct LineIndex {
    pending: VecDeque<u64>,
    returns: VecDeque<u64>,
    passed: u64,
}

impl LineIndex {
    /// The 1-based line a record starting at byte `offset` begins on. The csv reader's record
    /// position includes the blank lines it skipped before the record, so those are passed
    /// over first. Offsets only move forward.
    fn line_at(&mut self, mut offset: u64) -> u64 {
        while self.returns.front().is_some_and(|&cr| cr < offset) {
            self.returns.pop_front();
        }
        self.pass_before(offset);
        loop {
            if self.pending.front() == Some(&offset) {
                offset += 1;
            } else if self.returns.front() == Some(&offset)
                && self.pending.front() == Some(&(offset + 1))
            {
                self.returns.pop_front();
                offset += 2;
            } else {
                break;
            }
            self.pass_before(offset);
        }
        self.passed + 1
    }

    fn pass_before(&mut self, offset: u64) {
        while self.pending.front().is_some_and(|&nl| nl < offset) {
            self.pending.pop_front();
            self.passed += 1;
        }
    }
}

/// A reader that notes the offset of every `\n` passing through it.
struct LineCounting<R> {
    inner: R,
    offset: u64,
    lines: Arc<Mutex<LineIndex>>,
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        for (i, b) in buf[..n].iter().enumerate() {
            match b {
                b'\n' => lines.pending.push_back(self.offset + i as u64),
                b'\r' => lines.returns.push_back(self.offset + i as u64),
                _ => {}
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl CsvSource {
    /// Opens `path` and reads its header row. The encoding is detected unless given; the
    /// delimiter is taken from an Excel `sep=` first line, else sniffed among `, ; TAB |`,
    /// unless given.
    pub fn open(
        path: &Path,
        delimiter: Option<u8>,
        encoding: Option<&'static Encoding>,
    ) -> Result<CsvSource, RunError> {
        let mut decoded = decode::open(path, encoding)?.reader;
        // Look at the first decoded bytes for a `sep=` line and the delimiter, then read on
        // from the same place.
        let mut head = Vec::with_capacity(HEAD);
        (&mut decoded)
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .map_err(|e| input_error(path, e))?;
        let mut lines_before = 0;
        let mut declared = None;
        if let Some((sep, len)) = excel_separator_line(&head) {
            declared = Some(sep);
            lines_before = 1;
            head.drain(..len);
        }
        let delimiter = delimiter
            .or(declared)
            .unwrap_or_else(|| sniff_delimiter(&head));
        let joined: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(head).chain(decoded));
        let text = BufReader::with_capacity(256 * 1024, joined);
        let lines = Arc::new(Mutex::new(LineIndex {
            passed: lines_before,
            ..LineIndex::default()
        }));
        let reader = LineCounting {
            inner: text,
            offset: 0,
            lines: lines.clone(),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(true)
            .from_reader(reader);
        let raw = reader
            .byte_headers()
            .map_err(|e| input_error(path, e))?
            .clone();
        if raw.is_empty() || raw.iter().all(|h| h.is_empty()) {
            return Err(input_error(path, "the file is empty or has no header row"));
        }
        let mut headers = Vec::with_capacity(raw.len());
        for (i, h) in raw.iter().enumerate() {
            let text = std::str::from_utf8(h).map_err(|_| {
                input_error(
                    path,
                    format!("header {} is not valid UTF-8 (line 1)", i + 1),
                )
            })?;
            headers.push(text.trim().to_string());
        }
        let own_output = crate::report::META_COLUMNS
            .iter()
            .all(|m| headers.iter().any(|h| h == m));
        if own_output {
            for h in &mut headers {
                *h = crate::csv_safety::restore(h).to_string();
            }
        }
        // A trailing empty header is what a spreadsheet leaves after a trailing delimiter.
        while headers.len() > 1 && headers.last().is_some_and(|h| h.is_empty()) {
            headers.pop();
        }
        Ok(CsvSource {
            path: path.to_path_buf(),
            reader,
            headers,
            buffer: csv::ByteRecord::new(),
            lines,
            own_output,
        })
    }
}

impl RecordSource for CsvSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn read_record(&mut self, record: &mut Record) -> Result<bool, RunError> {
        loop {
            let more = self
                .reader
                .read_byte_record(&mut self.buffer)
                .map_err(|e| {
                    let at = e
                        .position()
                        .map(|p| format!(" (line {})", p.line()))
                        .unwrap_or_default();
                    input_error(&self.path, format!("{e}{at}"))
                })?;
            if !more {
                return Ok(false);
            }
            if self
                .buffer
                .iter()
                .all(|cell| cell.iter().all(|b| b.is_ascii_whitespace()))
            {
                continue; // blank record: an empty line or only delimiters
            }
            let start = self.buffer.position().map_or(0, |p| p.byte());
            record.row = self
                .lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .line_at(start);
            record.defect = None;
            record.cells.clear();
            let width = self.headers.len();
            let mut fields = self.buffer.len();
            // Cells beyond the header that are empty are a trailing delimiter, not data.
            while fields > width && self.buffer.get(fields - 1).is_some_and(|c| c.is_empty()) {
                fields -= 1;
            }
            for (i, cell) in self.buffer.iter().take(fields).enumerate() {
                match std::str::from_utf8(cell) {
                    Ok(text) if self.own_output => record
                        .cells
                        .push(crate::csv_safety::restore(text).to_string()),
                    Ok(text) => record.cells.push(text.to_string()),
                    Err(_) => {
                        let column = self.headers.get(i).map_or("?", String::as_str);
                        record.defect.get_or_insert_with(|| {
                            format!("column `{column}` is not valid UTF-8 text")
                        });
                        record
                            .cells
                            .push(String::from_utf8_lossy(cell).into_owned());
                    }
                }
            }
            if fields != width {
                record.defect = Some(format!(
                    "row has {fields} field{}, the header has {width}",
                    if fields == 1 { "" } else { "s" }
                ));
                record.cells.resize(width.max(fields), String::new());
            }
            return Ok(true);
        }
    }
}

/// How much decoded text is looked at for a `sep=` line and the delimiter.
const HEAD: usize = 64 * 1024;

/// Excel's `sep=;` first line: the delimiter it declares and the line's length in bytes.
fn excel_separator_line(head: &[u8]) -> Option<(u8, usize)> {
    if head.len() < 5 || !head[..4].eq_ignore_ascii_case(b"sep=") {
        return None;
    }
    let sep = head[4];
    let rest = &head[5..];
    let len = match rest {
        [b'\r', b'\n', ..] => 7,
        [b'\n', ..] | [b'\r', ..] => 6,
        [] => 5,
        _ => return None,
    };
    Some((sep, len))
}

/// The delimiter among `, ; TAB |` that splits the first lines most consistently (the same
/// non-zero count on every line, the most fields winning), counting outside quotes only.
fn sniff_delimiter(head: &[u8]) -> u8 {
    const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];
    let mut counts: Vec<[usize; 4]> = Vec::new();
    let mut current = [0usize; 4];
    let mut in_quotes = false;
    let mut blank = true;
    for &b in head {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => {
                if !blank {
                    counts.push(current);
                }
                current = [0; 4];
                blank = true;
                if counts.len() == 20 {
                    break;
                }
                continue;
            }
            _ if !in_quotes => {
                if let Some(i) = CANDIDATES.iter().position(|&c| c == b) {
                    current[i] += 1;
                }
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() || b == b'\t' {
            blank = false;
        }
    }
    if !blank && counts.len() < 20 {
        counts.push(current);
    }
    let Some(first) = counts.first() else {
        return b',';
    };
    let score = |i: usize| -> (bool, usize) {
        let consistent = first[i] > 0 && counts.iter().all(|c| c[i] == first[i]);
        (consistent, counts.iter().map(|c| c[i]).sum())
    };
    let best = (0..4)
        .max_by_key(|&i| (score(i), usize::MAX - i))
        .unwrap_or(0);
    if score(best).1 == 0 {
        b','
    } else {
        CANDIDATES[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::read_all;
    use std::io::Write;

    fn source(text: &[u8], delimiter: u8) -> (tempfile::NamedTempFile, CsvSource) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        let s = CsvSource::open(f.path(), Some(delimiter), None).unwrap();
        (f, s)
    }

    #[test]
    fn rows_are_the_line_each_record_starts_on() {
        let text = b"email,note\na@x.io,plain\nb@x.io,\"two\nlines\"\n\nc@x.io,\"x\r\ny\"\r\n\r\nd@x.io,z\n";
        let (_f, mut s) = source(text, b',');
        let rows: Vec<u64> = read_all(&mut s).unwrap().iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![2, 3, 6, 9]);
    }

    #[test]
    fn bom_is_skipped_and_headers_trimmed() {
        let (_f, s) = source(b"\xEF\xBB\xBFEmail , Name\r\na@x.io,A\r\n", b',');
        assert_eq!(s.headers(), ["Email", "Name"]);
    }

    #[test]
    fn ragged_rows_are_defects_not_errors() {
        let (_f, mut s) = source(b"a,b\n1,2\n1,2,3\n1\n", b',');
        let recs = read_all(&mut s).unwrap();
        assert_eq!(recs[0].defect, None);
        assert_eq!(
            recs[1].defect.as_deref(),
            Some("row has 3 fields, the header has 2")
        );
        assert_eq!(
            recs[2].defect.as_deref(),
            Some("row has 1 field, the header has 2")
        );
    }

    #[test]
    fn trailing_delimiters_and_blank_records_are_ignored() {
        let (_f, mut s) = source(b"a;b;\n1;2;\n;;\n3;4\n", b';');
        assert_eq!(s.headers(), ["a", "b"]);
        let recs = read_all(&mut s).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(recs.iter().all(|r| r.defect.is_none()));
    }

    #[test]
    fn bad_bytes_refuse_the_row_naming_the_column() {
        // A UTF-8 file (Zoë is UTF-8) with one Windows-1252 byte in one row.
        let (_f, mut s) = source(b"email,name\nz@x.io,Zo\xc3\xab\na@x.io,Ren\xe9\n", b',');
        let recs = read_all(&mut s).unwrap();
        assert_eq!(recs[0].defect, None);
        assert_eq!(
            recs[1].defect.as_deref(),
            Some("column `name` is not valid UTF-8 text")
        );
    }

    #[test]
    fn an_empty_file_is_a_run_error() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"").unwrap();
        assert!(CsvSource::open(f.path(), None, None).is_err());
    }

    fn sniffed(text: &[u8]) -> (Vec<String>, Vec<Record>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        let mut s = CsvSource::open(f.path(), None, None).unwrap();
        let headers = s.headers().to_vec();
        (headers, read_all(&mut s).unwrap())
    }

    #[test]
    fn delimiters_are_sniffed() {
        for (text, expected) in [
            (&b"a;b;c\n1;2,5;3\n"[..], vec!["a", "b", "c"]),
            (b"a\tb\n1\t2\n", vec!["a", "b"]),
            (b"a|b\n\"x|y\"|2\n", vec!["a", "b"]),
            (b"a,b\n\"1;2\",3\n", vec!["a", "b"]),
            (b"email\na@x.io\n", vec!["email"]),
        ] {
            assert_eq!(
                sniffed(text).0,
                expected,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn an_excel_sep_line_is_honoured_and_counted_as_a_line() {
        let (headers, records) = sniffed(b"sep=;\r\nEmail;Name\r\na@x.io;A,B\r\n");
        assert_eq!(headers, ["Email", "Name"]);
        assert_eq!(records[0].cells, ["a@x.io", "A,B"]);
        assert_eq!(
            records[0].row, 3,
            "the sep line is line 1, the header line 2"
        );
    }

    #[test]
    fn windows_1252_with_semicolons_and_a_trailing_column() {
        let (headers, records) =
            sniffed(b"E-Mail;Vorname;Nachname;\r\nj@x.de;J\xFCrgen;M\xFCller;\r\n");
        assert_eq!(headers, ["E-Mail", "Vorname", "Nachname"]);
        assert_eq!(records[0].cells, ["j@x.de", "Jürgen", "Müller"]);
        assert_eq!(records[0].defect, None);
    }

    #[test]
    fn utf16_with_bom_is_read() {
        let text: Vec<u8> = "\u{feff}Email,Name\r\na@x.io,Zoë\r\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        let (headers, records) = sniffed(&text);
        assert_eq!(headers, ["Email", "Name"]);
        assert_eq!((records[0].row, records[0].cells[1].as_str()), (2, "Zoë"));
    }
}
