//! Checks a workbook against roster's limits before calamine reads it, so that what a hostile
//! file *declares* or *inflates to* never decides how much memory the read takes.
//!
//! calamine streams the cells of XLSX and XLSB sheets (see [`super::SheetSource`]) but builds
//! XLS and ODS sheets whole, every sheet of the workbook at once, as dense grids spanning
//! the first to the last cell: two cells at `A1` and `IV65536` are 16.7 million cells, and
//! an XLS naming one such sheet a thousand times is a thousand grids. So before calamine
//! runs:
//! - every part of a zip workbook is inflated once through a fixed buffer, counting the bytes
//!   it really holds (a zip's declared sizes can lie) and the longest stretch without
//!   markup (so no cell or tag the XML parser buffers can be longer than [`Limits::max_run`]);
//! - an ODS's `content.xml` and an XLS's BIFF records are scanned for the grids calamine would
//!   build, and their cells summed over the workbook against [`Limits::max_grid`].
//!
//! The scans take time proportional to the file's real content, bounded by the limits.

use super::super::InputError;
use super::biff;
use quick_xml::events::{BytesStart, Event};
use std::io::Read;
use std::path::Path;

/// What a workbook may hold before roster refuses it as a file error.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Most bytes one part of a zip workbook may inflate to (or declare).
    pub max_part: u64,
    /// Most bytes all of a zip workbook's parts may inflate to together.
    pub max_total: u64,
    /// Longest stretch of an XML part without a `<`: bounds any one tag or cell text.
    pub max_run: u64,
    /// Most grid cells calamine may build for a dense (XLS, ODS) workbook, summed over its
    /// sheets.
    pub max_grid: u64,
}

/// The limits a run uses.
pub(super) const LIMITS: Limits = Limits {
    max_part: super::MAX_PART,
    max_total: 2 * super::MAX_PART,
    max_run: 1024 * 1024,
    max_grid: super::MAX_GRID_CELLS,
};

/// The first bytes of a zip archive (XLSX, XLSM, XLSB, ODS).
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// The first bytes of an OLE compound file (XLS).
const CFB_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Refuses `path` when reading it would cost more than `limits` allow. A file these checks
/// cannot open passes: calamine then says what is wrong with it.
pub(super) fn check(path: &Path, limits: Limits) -> Result<(), InputError> {
    let mut magic = [0u8; 8];
    let Ok(read) = std::fs::File::open(path).and_then(|mut f| f.read(&mut magic)) else {
        return Ok(());
    };
    let magic = &magic[..read];
    if magic.starts_with(ZIP_MAGIC) {
        check_zip(path, limits)
    } else if magic == CFB_MAGIC {
        biff::check_grids(path, limits.max_grid)
    } else {
        Ok(())
    }
}

/// Inflates every part once, within the limits, and scans an ODS's tables.
fn check_zip(path: &Path, limits: Limits) -> Result<(), InputError> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let Ok(mut archive) = zip::ZipArchive::new(std::io::BufReader::new(file)) else {
        return Ok(()); // damaged: calamine says how
    };
    let mut total = 0u64;
    for i in 0..archive.len() {
        let (name, declared) = match archive.by_index_raw(i) {
            Ok(part) => (part.name().unwrap_or_default().to_string(), part.size()),
            Err(_) => continue,
        };
        if declared > limits.max_part {
            return Err(InputError::shape(
                path,
                format!(
                    "its part `{name}` declares {} MB uncompressed, more than roster inflates ({} MB); a workbook of people is far smaller (hint: save it as CSV)",
                    declared / MB,
                    limits.max_part / MB
                ),
            ));
        }
        let Ok(part) = archive.by_index(i) else {
            continue; // encrypted or an unknown method: calamine refuses it
        };
        let is_xml = name.ends_with(".xml") || name.ends_with(".rels");
        let budget = limits.max_part.min(limits.max_total - total);
        let scan = scan_part(part, budget, is_xml.then_some(limits.max_run));
        total += scan.bytes;
        if scan.longest_run.is_some() {
            return Err(InputError::shape(
                path,
                format!(
                    "its part `{name}` holds more than {} KB without markup, longer than any cell or tag a spreadsheet program writes; is the file damaged?",
                    limits.max_run / 1024
                ),
            ));
        }
        if let Some(e) = scan.failed {
            return Err(InputError::shape(
                path,
                format!("its part `{name}` cannot be inflated ({e}); is the file damaged?"),
            ));
        }
        if scan.over {
            return Err(InputError::shape(
                path,
                format!(
                    "its part `{name}` inflates past {} MB (it declares {} MB), more than roster reads from a workbook; is the file damaged? (hint: save it as CSV)",
                    budget / MB,
                    declared / MB
                ),
            ));
        }
    }
    if archive.index_for_name("content.xml").is_some()
        && let Ok(content) = archive.by_name("content.xml")
    {
        check_ods_tables(path, content, limits.max_grid)?;
    }
    Ok(())
}

const MB: u64 = 1024 * 1024;

/// What inflating one part found.
struct PartScan {
    /// Bytes read (at most the budget, plus one buffer).
    bytes: u64,
    /// The part holds more than the budget.
    over: bool,
    /// A stretch without `<` longer than allowed, when the part is XML.
    longest_run: Option<u64>,
    /// Why inflating it failed (a damaged stream, or more bytes than it declares).
    failed: Option<std::io::Error>,
}

/// Reads `part` through a fixed buffer, stopping past `budget` bytes or at the first
/// stretch of more than `max_run` bytes without a `<`, or at a read error (the zip crate
/// also refuses to inflate more than a part declares).
fn scan_part(mut part: impl Read, budget: u64, max_run: Option<u64>) -> PartScan {
    let mut buf = vec![0u8; 64 * 1024];
    let mut scan = PartScan {
        bytes: 0,
        over: false,
        longest_run: None,
        failed: None,
    };
    let mut run = 0u64;
    loop {
        let n = match part.read(&mut buf) {
            Ok(0) => return scan,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                scan.failed = Some(e);
                return scan;
            }
        };
        scan.bytes += n as u64;
        if scan.bytes > budget {
            scan.over = true;
            return scan;
        }
        if let Some(max_run) = max_run {
            for chunk in buf[..n].split_inclusive(|&b| b == b'<') {
                run += chunk.len() as u64;
                if run > max_run {
                    scan.longest_run = Some(run);
                    return scan;
                }
                if chunk.last() == Some(&b'<') {
                    run = 0;
                }
            }
        }
    }
}

/// Sums the grid cells calamine builds for every table of an ODS `content.xml`: per table,
/// the cells it keeps while reading (each row up to its last non-empty cell, repeats
/// expanded) and the dense grid from the first to the last non-empty cell (row repeats
/// expanded). Refuses past `max_grid`, before calamine allocates any of it.
fn check_ods_tables(path: &Path, content: impl Read, max_grid: u64) -> Result<(), InputError> {
    let mut reader = quick_xml::Reader::from_reader(std::io::BufReader::new(content));
    let config = reader.config_mut();
    config.check_end_names = false;
    config.check_comments = false;
    let mut buf = Vec::new();
    let mut skip = Vec::new();
    let mut table: Option<(String, OdsTable)> = None;
    let mut grid = 0u64;
    let damaged = |e: quick_xml::Error| {
        InputError::shape(
            path,
            format!("its content.xml is not well-formed XML ({e}); is the file damaged?"),
        )
    };
    loop {
        let event = reader.read_event_into(&mut buf).map_err(damaged)?;
        let is_start = matches!(event, Event::Start(_));
        match event {
            // calamine reads a table until its end tag, and never stops at the file's end.
            Event::Eof => match table {
                Some((name, _)) => {
                    return Err(InputError::shape(
                        path,
                        format!("its content.xml ends inside table `{name}`; is the file damaged?"),
                    ));
                }
                None => break,
            },
            Event::Start(e) if e.name().into_inner() == "table:table" => {
                let name = attribute(&e, "table:name").unwrap_or_default();
                table = Some((name, OdsTable::default()));
            }
            Event::End(e) if e.name().into_inner() == "table:table" => {
                if let Some((name, t)) = table.take() {
                    grid = grid.saturating_add(t.cost());
                    if grid > max_grid {
                        return Err(over_grid(path, &name, grid, max_grid));
                    }
                }
            }
            Event::Start(e) | Event::Empty(e) if e.name().into_inner() == "table:table-row" => {
                if let Some((_, t)) = table.as_mut() {
                    t.end_row();
                    t.row_repeats = repeats(&e, "table:number-rows-repeated");
                }
            }
            Event::End(e) if e.name().into_inner() == "table:table-row" => {
                if let Some((_, t)) = table.as_mut() {
                    t.end_row();
                }
            }
            Event::Start(e) | Event::Empty(e)
                if matches!(
                    e.name().into_inner(),
                    "table:table-cell" | "table:covered-table-cell"
                ) =>
            {
                let Some((name, t)) = table.as_mut() else {
                    continue;
                };
                let columns = repeats(&e, "table:number-columns-repeated");
                let valued = attribute(&e, "office:value-type").is_some()
                    || attribute(&e, "table:formula").is_some();
                let has_text = if is_start {
                    let end = e.name().into_inner().to_string();
                    cell_has_text(&mut reader, &end, &mut skip).map_err(|why| {
                        InputError::shape(
                            path,
                            format!(
                                "its content.xml cannot be read safely: {why}; is the file damaged?"
                            ),
                        )
                    })?
                } else {
                    false
                };
                t.cell(columns, valued || has_text);
                if t.cost() > max_grid.saturating_sub(grid) {
                    let name = name.clone();
                    return Err(over_grid(path, &name, grid + t.cost(), max_grid));
                }
            }
            _ => {}
        }
        buf.clear();
    }
    Ok(())
}

/// Reads a cell's content up to its end tag: whether it holds any text. Refuses (with the
/// reason) what would cost calamine unbounded time or memory: a cell the file ends inside (an
/// unterminated annotation made calamine loop forever), and `text:s` spaces past what a cell
/// holds (calamine pushes each one: `text:c="4000000000"` is 4 GB).
fn cell_has_text<R: std::io::BufRead>(
    reader: &mut quick_xml::Reader<R>,
    end: &str,
    buf: &mut Vec<u8>,
) -> Result<bool, String> {
    let mut depth = 0usize;
    let mut text = false;
    let mut spaces = 0u64;
    loop {
        buf.clear();
        let event = reader.read_event_into(buf).map_err(|e| e.to_string())?;
        if let Event::Start(e) | Event::Empty(e) = &event
            && e.name().into_inner() == "text:s"
        {
            spaces = spaces.saturating_add(repeats(e, "text:c"));
            if spaces > super::MAX_CELL_CHARS as u64 {
                return Err(format!(
                    "a cell asks for {spaces} repeated spaces, more than a spreadsheet cell holds ({})",
                    super::MAX_CELL_CHARS
                ));
            }
        }
        match event {
            Event::Eof => return Err("the file ends inside a cell".into()),
            Event::Start(e) if e.name().into_inner() == end => depth += 1,
            Event::End(e) if e.name().into_inner() == end => {
                if depth == 0 {
                    return Ok(text);
                }
                depth -= 1;
            }
            Event::Text(t) if !t.trim_ascii().is_empty() => text = true,
            Event::CData(_) | Event::GeneralRef(_) => text = true,
            Event::Empty(e) if e.name().into_inner().starts_with("text:") => text = true,
            _ => {}
        }
    }
}

/// An attribute's raw value, when the element has it.
fn attribute(e: &BytesStart, name: &str) -> Option<String> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.into_inner() == name)
        .map(|a| a.value.into_owned())
}

/// A repeat count (1 when absent or unreadable, as calamine reads none then).
fn repeats(e: &BytesStart, name: &str) -> u64 {
    attribute(e, name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1)
}

/// Rows and columns an ODS table (as calamine caps them).
const ODS_MAX_ROWS: u64 = 1_048_576;
const ODS_MAX_COLUMNS: u64 = 16_384;

/// The grid one ODS table costs calamine, gathered row by row.
#[derive(Default)]
struct OdsTable {
    /// Rows read so far, repeats expanded (capped as calamine caps them).
    rows: u64,
    /// Repeats of the row being read.
    row_repeats: u64,
    /// Columns of the row being read, repeats expanded, and the end of its last non-empty
    /// cell.
    row_columns: u64,
    row_used: u64,
    /// Cells calamine keeps while reading: each row up to its last non-empty cell.
    kept: u64,
    /// First and last rows (exclusive) holding a non-empty cell, and the widest row's end.
    first_used_row: Option<u64>,
    end_used_row: u64,
    widest: u64,
}

impl OdsTable {
    fn cell(&mut self, columns: u64, non_empty: bool) {
        let columns = columns.min(ODS_MAX_COLUMNS - self.row_columns.min(ODS_MAX_COLUMNS));
        self.row_columns += columns;
        if non_empty {
            self.row_used = self.row_columns;
        }
    }

    /// Closes the row being read (if any).
    fn end_row(&mut self) {
        if self.row_repeats == 0 {
            return;
        }
        let repeats = self.row_repeats.min(ODS_MAX_ROWS.saturating_sub(self.rows));
        if self.row_used > 0 {
            self.kept += self.row_used;
            self.first_used_row.get_or_insert(self.rows);
            self.end_used_row = self.rows + repeats;
            self.widest = self.widest.max(self.row_used);
        }
        self.rows += repeats;
        self.row_repeats = 0;
        self.row_columns = 0;
        self.row_used = 0;
    }

    /// Cells kept while reading plus the dense grid, including the row being read.
    fn cost(&self) -> u64 {
        let pending = self.row_used;
        let end = if pending > 0 {
            self.rows + self.row_repeats.max(1)
        } else {
            self.end_used_row
        };
        let first = self.first_used_row.unwrap_or(self.rows);
        let widest = self.widest.max(pending);
        let span = end.saturating_sub(first);
        (self.kept + pending).saturating_add(span.saturating_mul(widest))
    }
}

/// The refusal of a workbook whose grids are too large.
pub(super) fn over_grid(path: &Path, sheet: &str, cells: u64, max_grid: u64) -> InputError {
    InputError::shape(
        path,
        format!(
            "its sheets span more than {max_grid} cells (at least {cells}, counting up to sheet `{sheet}`): XLS and ODS sheets are read whole, so roster reads no larger ones (hint: save it as CSV or XLSX, which are read as streams)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip of one part, `size` bytes of `<`, at `path`.
    fn zip_of(path: &Path, size: usize) {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        zip.start_file(
            "xl/worksheets/sheet1.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(&vec![b'<'; size]).unwrap();
        zip.finish().unwrap();
    }

    fn limits(max_part: u64) -> Limits {
        Limits {
            max_part,
            max_total: 2 * max_part,
            ..LIMITS
        }
    }

    #[test]
    fn a_part_declaring_more_than_the_limit_is_refused_before_inflating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.xlsx");
        zip_of(&path, 4 << 20);
        assert!(
            std::fs::metadata(&path).unwrap().len() < 64 * 1024,
            "it compresses"
        );
        let e = check_zip(&path, limits(1 << 20)).unwrap_err().to_string();
        assert!(
            e.contains("sheet1.xml") && e.contains("declares 4 MB"),
            "{e}"
        );
        assert!(check_zip(&path, limits(8 << 20)).is_ok());
    }

    #[test]
    fn a_part_inflating_past_what_it_declares_is_refused_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liar.xlsx");
        zip_of(&path, 4 << 20);
        // Declare 1,000 bytes uncompressed, in the local header and the central directory.
        let mut bytes = std::fs::read(&path).unwrap();
        for (signature, offset) in [(b"PK\x03\x04", 22), (b"PK\x01\x02", 24)] {
            let at = bytes.windows(4).position(|w| w == signature).unwrap() + offset;
            bytes[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
        }
        std::fs::write(&path, bytes).unwrap();
        // The zip crate stops at the declared size; the file is refused as damaged.
        let e = check_zip(&path, limits(1 << 20)).unwrap_err().to_string();
        assert!(
            e.contains("sheet1.xml` cannot be inflated") && e.contains("declared"),
            "{e}"
        );
    }

    #[test]
    fn a_stretch_without_markup_past_the_limit_is_found_across_buffers() {
        let mut xml = b"<a>".to_vec();
        xml.extend(std::iter::repeat_n(b'x', 200_000));
        xml.extend(b"</a>");
        let scan = scan_part(&xml[..], u64::MAX, Some(100_000));
        assert!(scan.longest_run.is_some_and(|r| r > 100_000));
        let scan = scan_part(&xml[..], u64::MAX, Some(300_000));
        assert_eq!((scan.longest_run, scan.over), (None, false));
        assert!(scan.failed.is_none());
        assert_eq!(scan.bytes, xml.len() as u64);
    }

    #[test]
    fn a_part_inflating_past_its_budget_stops_there() {
        let data = vec![b'<'; 1 << 20];
        let scan = scan_part(&data[..], 100_000, Some(10));
        assert!(scan.over && scan.bytes <= 100_000 + 64 * 1024);
    }

    #[test]
    fn an_ods_table_costs_its_kept_cells_and_its_dense_span() {
        // A header row of 3, a million empty rows, a last row with its 5th cell used.
        let mut t = OdsTable {
            row_repeats: 1,
            ..OdsTable::default()
        };
        t.cell(3, true);
        t.cell(100, false);
        t.end_row();
        t.row_repeats = 1_000_000;
        t.cell(16_384, false);
        t.end_row();
        t.row_repeats = 1;
        t.cell(4, false);
        t.cell(1, true);
        t.end_row();
        assert_eq!(t.cost(), 3 + 5 + 1_000_002 * 5);
    }
}
