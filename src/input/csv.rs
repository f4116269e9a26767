//! CSV and TSV records through the `csv` crate, streaming, one reused byte buffer.

use super::{InputError, Record, RecordSource, decode};
use encoding_rs::Encoding;
use std::collections::VecDeque;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A delimited file with a header row.
pub struct CsvSource {
    path: PathBuf,
    delimiter: u8,
    dialect: super::TextDialect,
    read: super::BytesRead,
    /// What is being read: the file, and on top of it any region a stray quote swallowed,
    /// read again as rows of its own before the file goes on.
    segments: Vec<Segment>,
    headers: Vec<String>,
    buffer: csv::ByteRecord,
    /// The file is roster's own error file: undo its CSV-injection prefixes.
    own_output: bool,
}

/// A csv reader and the line index of the bytes it reads.
struct Segment {
    reader: csv::Reader<LineCounting<BufReader<Box<dyn Read + Send>>>>,
    lines: Arc<Mutex<LineIndex>>,
}

/// Where the line breaks are in the bytes the csv reader has pulled but not yet parsed, so a
/// record's starting byte gives its true line: the csv crate's own line count skips blank
/// lines, and users count those. A break is `\n`, `\r\n` or a lone `\r` (old Mac files),
/// as an editor counts them. It also follows quoting, to catch a stray quote.
#[derive(Default)]
struct LineIndex {
    /// Breaks not yet passed, adjacent ones as one run.
    pending: VecDeque<Breaks>,
    /// Lines passed.
    passed: u64,
    /// A `\r` at the end of the last read: a break whose length the next byte decides.
    open_return: Option<u64>,
    /// The csv quoting state after the bytes read so far.
    state: QuoteState,
    /// The quoted field being followed: where its quote opened, and the bytes after it.
    quoted: Option<Quoted>,
    /// Stray quotes found (a quoted field that spans a line and then ends in garbage, or runs
    /// to the end of the input), in order.
    strays: VecDeque<Stray>,
}

/// A run of adjacent line breaks: a blank line, or a field of nothing but newlines, is one
/// entry however long it is (a 50 MB quoted field of newlines once cost 16 bytes a byte).
#[derive(Debug, Clone, Copy)]
struct Breaks {
    /// The first break's first byte.
    start: u64,
    /// The byte after the last break.
    end: u64,
    /// How many breaks.
    count: u64,
}

/// A quoted field being read.
struct Quoted {
    open: u64,
    bytes: Vec<u8>,
    /// It held a line break.
    multiline: bool,
    /// It closed, then more text followed in the same field: the quote was not a field's
    /// quoting, and the record goes on to its end.
    garbage: bool,
    overflow: bool,
}

/// A quote that swallowed lines: where it opened, and the bytes from after it to the end of
/// its record (empty when there were too many to keep).
struct Stray {
    open: u64,
    bytes: Vec<u8>,
}

/// Most bytes of one quoted field kept to recover from a stray quote.
const MAX_RETAINED: usize = 16 * 1024 * 1024;

/// RFC 4180 quoting as the csv crate reads it (a quote only opens at a field's start; `""`
/// inside quotes is one quote; text after a closing quote joins the field).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    #[default]
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

impl LineIndex {
    /// The 1-based line a record starting at byte `offset` begins on. The csv reader's record
    /// position includes the blank lines it skipped before the record (and may point inside a
    /// `\r\n`), so those are passed over first. Offsets only move forward.
    fn line_at(&mut self, mut offset: u64) -> u64 {
        loop {
            match self.pending.front() {
                Some(&Breaks { end, count, .. }) if end <= offset => {
                    self.pending.pop_front();
                    self.passed += count;
                }
                // The record starts at a break (a blank line, or the `\n` of a `\r\n`): it
                // starts after the run.
                Some(&Breaks { start, end, .. }) if start <= offset => offset = end,
                _ => break,
            }
        }
        self.passed + 1
    }

    /// The 1-based line byte `offset` is on (no breaks are passed). `offset` is never inside
    /// a run: runs hold only break bytes.
    fn line_of(&self, offset: u64) -> u64 {
        let before: u64 = self
            .pending
            .iter()
            .filter(|b| b.end <= offset)
            .map(|b| b.count)
            .sum();
        self.passed + before + 1
    }

    fn push_break(&mut self, start: u64, end: u64) {
        match self.pending.back_mut() {
            Some(last) if last.end == start => {
                last.end = end;
                last.count += 1;
            }
            _ => self.pending.push_back(Breaks {
                start,
                end,
                count: 1,
            }),
        }
    }

    /// Follows quoting over `buf`, which starts at byte `offset` of the input.
    fn follow_quotes(&mut self, buf: &[u8], offset: u64, delimiter: u8) {
        let mut i = 0;
        while i < buf.len() {
            // Inside an unquoted field only a terminator changes anything: skip to the next.
            if self.state == QuoteState::Unquoted && self.quoted.is_none() {
                match memchr::memchr3(delimiter, b'\n', b'\r', &buf[i..]) {
                    Some(skip) => i += skip,
                    None => return,
                }
            }
            let (at, b) = (i, buf[i]);
            i += 1;
            let line_break = b == b'\n' || b == b'\r';
            let terminator = b == delimiter || line_break;
            if let Some(q) = self.quoted.as_mut() {
                if q.bytes.len() < MAX_RETAINED {
                    q.bytes.push(b);
                } else {
                    q.overflow = true;
                }
            }
            self.state = match self.state {
                QuoteState::FieldStart if b == b'"' => {
                    self.quoted = Some(Quoted {
                        open: offset + at as u64,
                        bytes: Vec::new(),
                        multiline: false,
                        garbage: false,
                        overflow: false,
                    });
                    QuoteState::Quoted
                }
                QuoteState::FieldStart | QuoteState::Unquoted if terminator => {
                    self.field_ended(line_break);
                    QuoteState::FieldStart
                }
                QuoteState::FieldStart | QuoteState::Unquoted => QuoteState::Unquoted,
                QuoteState::Quoted if b == b'"' => QuoteState::QuoteInQuoted,
                QuoteState::Quoted => {
                    if line_break && let Some(q) = self.quoted.as_mut() {
                        q.multiline = true;
                    }
                    QuoteState::Quoted
                }
                QuoteState::QuoteInQuoted if b == b'"' => QuoteState::Quoted,
                QuoteState::QuoteInQuoted if terminator => {
                    self.field_ended(line_break);
                    QuoteState::FieldStart
                }
                QuoteState::QuoteInQuoted => {
                    if let Some(q) = self.quoted.as_mut() {
                        q.garbage = true;
                    }
                    QuoteState::Unquoted
                }
            };
        }
    }

    /// A field ended (at a delimiter, or at a line break that ends its record too).
    fn field_ended(&mut self, record_ended: bool) {
        let Some(q) = &self.quoted else {
            return;
        };
        let stray = q.multiline && q.garbage;
        if !stray {
            self.quoted = None;
        } else if record_ended {
            self.push_stray();
        }
        // A stray field that ended at a delimiter: its bytes are kept to the record's end.
    }

    fn push_stray(&mut self) {
        if let Some(q) = self.quoted.take() {
            let bytes = match q.overflow {
                true => Vec::new(),
                false => q.bytes,
            };
            self.strays.push_back(Stray {
                open: q.open,
                bytes,
            });
        }
    }

    /// The input ended: a quote still open (or a stray field not yet ended) swallowed it.
    fn end(&mut self) {
        if let Some(cr) = self.open_return.take() {
            self.push_break(cr, cr + 1);
        }
        let open = self.state == QuoteState::Quoted;
        let stray = self
            .quoted
            .as_ref()
            .is_some_and(|q| q.multiline && q.garbage);
        if open || stray {
            self.push_stray();
        }
        self.quoted = None;
        self.state = QuoteState::FieldStart;
    }
}

/// A reader that notes every line break passing through it, and follows quoting.
struct LineCounting<R> {
    inner: R,
    offset: u64,
    delimiter: u8,
    lines: Arc<Mutex<LineIndex>>,
    ended: bool,
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if n == 0 {
            if !self.ended {
                self.ended = true;
                lines.end();
            }
            return Ok(0);
        }
        // Only line breaks matter here: visit them alone. A `\r` is one break by itself
        // unless the byte after it is a `\n`.
        for i in memchr::memchr2_iter(b'\n', b'\r', &buf[..n]) {
            let at = self.offset + i as u64;
            if let Some(cr) = lines.open_return.take() {
                if cr + 1 == at && buf[i] == b'\n' {
                    lines.push_break(cr, at + 1);
                    continue;
                }
                lines.push_break(cr, cr + 1);
            }
            match buf[i] {
                b'\n' => lines.push_break(at, at + 1),
                _ => lines.open_return = Some(at),
            }
        }
        // A `\r` followed in this buffer by another byte (not a break, or it was visited).
        if let Some(cr) = lines.open_return
            && cr + 1 < self.offset + n as u64
        {
            lines.open_return = None;
            lines.push_break(cr, cr + 1);
        }
        lines.follow_quotes(&buf[..n], self.offset, self.delimiter);
        self.offset += n as u64;
        Ok(n)
    }
}

impl Segment {
    /// A segment reading `text`, counting lines from `lines_before`.
    fn new(
        text: Box<dyn Read + Send>,
        delimiter: u8,
        has_headers: bool,
        lines_before: u64,
    ) -> Self {
        let lines = Arc::new(Mutex::new(LineIndex {
            passed: lines_before,
            ..LineIndex::default()
        }));
        let counting = LineCounting {
            inner: BufReader::with_capacity(256 * 1024, text),
            offset: 0,
            delimiter,
            lines: lines.clone(),
            ended: false,
        };
        let reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(has_headers)
            .from_reader(counting);
        Segment { reader, lines }
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
    ) -> Result<CsvSource, InputError> {
        let decoded = decode::open(path, encoding)?;
        let (encoding, bom, read) = (decoded.encoding, decoded.bom, decoded.read);
        let mut decoded = decoded.reader;
        // Look at the first decoded bytes for a `sep=` line and the delimiter, then read on
        // from the same place.
        let mut head = Vec::with_capacity(HEAD);
        (&mut decoded)
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .map_err(|e| InputError::io(path, e))?;
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
        let dialect = super::TextDialect {
            delimiter,
            encoding,
            bom,
            crlf: first_break_is_crlf(&head),
            sep_line: declared.is_some(),
        };
        let joined: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(head).chain(decoded));
        let mut file = Segment::new(joined, delimiter, true, lines_before);
        let raw = file
            .reader
            .byte_headers()
            .map_err(|e| InputError::csv(path, e))?
            .clone();
        if raw.is_empty() || raw.iter().all(|h| h.is_empty()) {
            return Err(InputError::shape(
                path,
                "the file is empty or has no header row",
            ));
        }
        let mut headers = Vec::with_capacity(raw.len());
        for (i, h) in raw.iter().enumerate() {
            let text = std::str::from_utf8(h).map_err(|_| {
                InputError::shape(
                    path,
                    format!("header {} is not valid UTF-8 (line 1)", i + 1),
                )
            })?;
            headers.push(text.trim().to_string());
        }
        let own_output = crate::model::cells::META_COLUMNS
            .iter()
            .all(|m| headers.iter().any(|h| h == m));
        if own_output {
            for h in &mut headers {
                *h = crate::model::cells::restore(h).to_string();
            }
        }
        // A trailing empty header is what a spreadsheet leaves after a trailing delimiter.
        while headers.len() > 1 && headers.last().is_some_and(|h| h.is_empty()) {
            headers.pop();
        }
        Ok(CsvSource {
            path: path.to_path_buf(),
            delimiter,
            dialect,
            read,
            segments: vec![file],
            headers,
            buffer: csv::ByteRecord::new(),
            own_output,
        })
    }
}

impl RecordSource for CsvSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn dialect(&self) -> super::Dialect {
        super::Dialect::Text(self.dialect)
    }

    fn fraction_read(&self) -> Option<f64> {
        self.read.fraction()
    }

    fn read_record(&mut self, record: &mut Record) -> Result<bool, InputError> {
        loop {
            let Some(segment) = self.segments.last_mut() else {
                return Ok(false);
            };
            let more = segment
                .reader
                .read_byte_record(&mut self.buffer)
                .map_err(|e| InputError::csv(&self.path, e))?;
            if !more {
                // A swallowed region is done: the file (or the region under it) goes on.
                if self.segments.len() == 1 {
                    return Ok(false);
                }
                self.segments.pop();
                continue;
            }
            if self
                .buffer
                .iter()
                .all(|cell| cell.iter().all(|b| b.is_ascii_whitespace()))
            {
                continue; // blank record: an empty line or only delimiters
            }
            let start = self.buffer.position().map_or(0, |p| p.byte());
            let end = segment.reader.position().byte();
            let (row, stray) = {
                let mut lines = segment.lines.lock().unwrap_or_else(|p| p.into_inner());
                let row = lines.line_at(start);
                // A stray quote opened in this record and swallowed the lines after it.
                let stray = match lines.strays.front() {
                    Some(stray) if stray.open >= start && stray.open < end.max(start + 1) => {
                        let quote_line = lines.line_of(stray.open);
                        lines.strays.pop_front().map(|s| (quote_line, s.bytes))
                    }
                    _ => None,
                };
                (row, stray)
            };
            record.row = row;
            if let Some((quote_line, bytes)) = stray {
                self.recover_stray_quote(record, quote_line, bytes);
                return Ok(true);
            }
            record.defect = None;
            record.cells.clear();
            let width = self.headers.len();
            let mut fields = self.buffer.len();
            // Cells beyond the header that are empty are a trailing delimiter, not data.
            while fields > width && self.buffer.get(fields - 1).is_some_and(|c| c.is_empty()) {
                fields -= 1;
            }
            // One allocation for the row's cells, not growth from empty (the record was
            // handed on with its vector last time).
            record.cells.reserve_exact(fields);
            for (i, cell) in self.buffer.iter().take(fields).enumerate() {
                match std::str::from_utf8(cell) {
                    Ok(text) if self.own_output => record
                        .cells
                        .push(crate::model::cells::restore(text).to_string()),
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

impl CsvSource {
    /// A stray quote in the record in `self.buffer` made its field swallow the lines after it
    /// (to a later quote, or the end of the file). The field is cut at the end of its line
    /// (the rest of that line read as the record's remaining fields), the row is refused
    /// naming the quote, and the swallowed lines are read again as rows of their own,
    /// numbered as an editor shows them.
    fn recover_stray_quote(&mut self, record: &mut Record, quote_line: u64, bytes: Vec<u8>) {
        let column_index = self.field_holding(&bytes);
        let column = self
            .headers
            .get(column_index)
            .map_or("?".to_string(), Clone::clone);
        record.cells.clear();
        for cell in self.buffer.iter().take(column_index) {
            record
                .cells
                .push(String::from_utf8_lossy(cell).into_owned());
        }
        // The bytes after the quote, to its record's end: the quote's line first.
        let cut = bytes
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(bytes.len());
        let (first_line, mut rest) = bytes.split_at(cut);
        // The rest of the quote's line: its cells, as if the quote were not there.
        let mut line_reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .quoting(false)
            .has_headers(false)
            .flexible(true)
            .from_reader(first_line);
        let mut cells = csv::ByteRecord::new();
        if line_reader.read_byte_record(&mut cells).unwrap_or(false) {
            record.cells.extend(
                cells
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned()),
            );
        } else {
            record.cells.push(String::new());
        }
        let width = self.headers.len().max(record.cells.len());
        record.cells.resize(width, String::new());
        record.defect = Some(format!(
            "a quote opened in column `{column}` on line {quote_line} is not closed where its \
             cell ends: the cell was read to the end of its line, the lines after it as rows of \
             their own (fix the quote)"
        ));
        // Skip the line break that ends the quote's line, then read the swallowed lines.
        if rest.starts_with(b"\r\n") {
            rest = &rest[2..];
        } else if !rest.is_empty() {
            rest = &rest[1..];
        }
        if !rest.is_empty() {
            let region: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(rest.to_vec()));
            self.segments
                .push(Segment::new(region, self.delimiter, false, quote_line));
        }
    }

    /// Which field of the record in `self.buffer` holds the stray quote's bytes: the last one
    /// that starts like them.
    fn field_holding(&self, bytes: &[u8]) -> usize {
        let head: Vec<u8> = bytes
            .iter()
            .take_while(|&&b| b != b'\n' && b != b'\r' && b != b'"')
            .copied()
            .collect();
        (0..self.buffer.len())
            .rev()
            .find(|&i| {
                self.buffer
                    .get(i)
                    .is_some_and(|cell| cell.starts_with(&head))
            })
            .unwrap_or(self.buffer.len().saturating_sub(1))
    }
}

/// How much decoded text is looked at for a `sep=` line and the delimiter.
const HEAD: usize = 64 * 1024;

/// Excel's `sep=;` first line: the delimiter it declares and the line's length in bytes.
/// The file's lines end in CRLF when its first line break (outside quotes) is one.
fn first_break_is_crlf(head: &[u8]) -> bool {
    let mut in_quotes = false;
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\r' if !in_quotes => return head.get(i + 1) == Some(&b'\n'),
            b'\n' if !in_quotes => return false,
            _ => {}
        }
    }
    false
}

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

    /// The breaks and strays a buffer's bytes leave behind do not depend on how reads split
    /// it: each byte read alone (the byte-by-byte rule) and reads of any size agree.
    #[test]
    fn line_breaks_and_quotes_are_followed_alike_whatever_the_read_sizes() {
        struct Dribble<'a>(&'a [u8], fastrand::Rng);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.usize(1..=9).min(self.0.len()).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let follow = |text: &[u8], seed: Option<u64>| {
            let lines = Arc::new(Mutex::new(LineIndex::default()));
            let mut reader = LineCounting {
                inner: Dribble(text, fastrand::Rng::with_seed(seed.unwrap_or(0))),
                offset: 0,
                delimiter: b',',
                lines: lines.clone(),
                ended: false,
            };
            let mut out = Vec::new();
            let mut buf = [0u8; 64];
            let size = if seed.is_some() { 64 } else { 1 };
            while reader.read(&mut buf[..size]).unwrap() > 0 {}
            let index = lines.lock().unwrap();
            for offset in 0..=text.len() as u64 {
                out.push(index.line_of(offset));
            }
            let strays: Vec<u64> = index.strays.iter().map(|s| s.open).collect();
            (out, strays, index.state)
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let pieces: [&[u8]; 8] = [b"a", b",", b"\r", b"\n", b"\"", b"xy", b"\r\n", b"\"\""];
        for seed in 0..300 {
            let text: Vec<u8> = (0..rng.usize(0..40))
                .flat_map(|_| pieces[rng.usize(..pieces.len())].to_vec())
                .collect();
            assert_eq!(
                follow(&text, None),
                follow(&text, Some(seed)),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }
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
    fn lone_carriage_returns_end_lines_as_an_editor_counts_them() {
        let (_f, mut s) = source(b"email,name\ra@x.io,A\r\rb@x.io,\"B\rC\"\rc@x.io,C\r", b',');
        let rows: Vec<u64> = read_all(&mut s).unwrap().iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![2, 4, 6]);
    }

    #[test]
    fn an_unterminated_quote_refuses_its_row_and_the_rows_after_it_are_read() {
        let text = b"email,name,phone\na@x.io,Ann,1\nb@x.io,\"Bo,2\nc@x.io,Cy,3\n\nd@x.io,\"Dee\"\"s\",4\n";
        let (_f, mut s) = source(text, b',');
        let recs = read_all(&mut s).unwrap();
        let rows: Vec<u64> = recs.iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![2, 3, 4, 6], "{recs:?}");
        assert!(
            recs[1].defect.as_deref().unwrap().contains("not closed"),
            "{recs:?}"
        );
        assert_eq!(recs[1].cells, ["b@x.io", "Bo", "2"]);
        assert_eq!(recs[2].cells, ["c@x.io", "Cy", "3"]);
        assert_eq!(recs[2].defect, None);
        assert_eq!(
            recs[3].cells,
            ["d@x.io", "Dee\"s", "4"],
            "quotes after it read as usual"
        );
        // The same stray quote with nothing after it: it runs to the end of the file.
        let (_f, mut s) = source(b"email,name\na@x.io,\"Ann\nb@x.io,Bo\n", b',');
        let recs = read_all(&mut s).unwrap();
        let rows: Vec<u64> = recs.iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![2, 3], "{recs:?}");
        assert!(
            recs[0].defect.is_some() && recs[1].defect.is_none(),
            "{recs:?}"
        );
        // A closed multi-line quote is no such thing.
        let (_f, mut s) = source(b"email,note\na@x.io,\"x\ny\"\nb@x.io,z\n", b',');
        let recs = read_all(&mut s).unwrap();
        assert!(recs.iter().all(|r| r.defect.is_none()), "{recs:?}");
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
