//! Spreadsheets (XLSX, XLSM, XLSB, XLS, ODS) through calamine: the first worksheet, or the one
//! named by `--sheet`, its first non-empty row as the header.
//!
//! Cells are rendered as a person sees them in the spreadsheet, not as the file stores them: a
//! phone number kept as the number 14155550123 reads "14155550123" (never `1.4155550123E10`),
//! whole numbers have no `.0`, dates read as ISO dates. Row numbers are the spreadsheet's own
//! (header on row 1 when the sheet starts at A1).
//!
//! Only the cells a sheet holds are kept, within [`MAX_CELLS`] and [`MAX_TEXT`]: XLSX and
//! XLSB cells stream from the file, so a 5 KB file declaring one cell at `XFD1048576` costs
//! one cell. calamine builds XLS and ODS sheets whole, as dense grids, so [`guard`] first
//! measures what those grids would cost (and what every zip part really inflates to) and
//! refuses a file past [`MAX_GRID_CELLS`] or [`MAX_PART`] before anything is allocated.

mod biff;
mod guard;

use super::{InputError, Record, RecordSource};
use calamine::{Data, Reader, Xlsb, Xlsx, open_workbook, open_workbook_auto};
use std::path::Path;

/// Most non-empty cells read from one sheet: ~1 GB of people at most, whatever the sheet
/// declares. A sheet over it is a file error (convert it to CSV, which streams).
pub const MAX_CELLS: usize = 20_000_000;
/// Most text read from one sheet, in bytes.
pub const MAX_TEXT: usize = 512 * 1024 * 1024;
/// Columns a worksheet has (A to XFD): a header cell beyond is not a spreadsheet's.
pub const MAX_COLUMNS: u32 = 16_384;

/// Most bytes one part of a workbook (a sheet's XML, the shared strings) may declare
/// uncompressed: a 5 MB zip bomb declaring 1.5 GB is refused before it is inflated.
pub const MAX_PART: u64 = 1024 * 1024 * 1024;

/// Most grid cells calamine may build for an XLS or ODS workbook, summed over its sheets
/// (each ~56 bytes with its formula): ~280 MB, or 65,536 rows of 76 columns.
pub const MAX_GRID_CELLS: u64 = 5_000_000;

/// The longest cell a spreadsheet program writes (Excel's limit, in characters); a longer
/// one is its row's defect, and is not kept.
pub const MAX_CELL_CHARS: usize = 32_767;

/// One worksheet's non-empty cells (memory grows with what the sheet holds, never with the
/// area it declares or spans: one cell at `XFD1048576` is one cell).
pub struct SheetSource {
    /// Rows after the header, ascending: (row index, its cells by column, whether a cell
    /// was too long to keep).
    rows: std::vec::IntoIter<SheetRow>,
    /// Rows after the header in all: the sheet's progress is exact.
    total: usize,
    headers: Vec<String>,
}

struct SheetRow {
    index: u32,
    cells: Vec<(u32, String)>,
    oversized: Option<(u32, usize)>,
}

/// Gathers cells within the limits.
struct Cells {
    path: std::path::PathBuf,
    cells: Vec<(u32, u32, String)>,
    oversized: Vec<(u32, u32, usize)>,
    text: usize,
    /// [`MAX_CELLS`] and [`MAX_TEXT`] (smaller in tests).
    limits: (usize, usize),
}

impl Cells {
    fn push(&mut self, (row, col): (u32, u32), value: String) -> Result<(), InputError> {
        if value.is_empty() {
            return Ok(());
        }
        let chars = value.chars().count();
        if chars > MAX_CELL_CHARS {
            self.oversized.push((row, col, chars));
            return Ok(());
        }
        self.text += value.len();
        let (max_cells, max_text) = self.limits;
        if self.cells.len() >= max_cells || self.text > max_text {
            return Err(InputError::shape(
                &self.path,
                format!(
                    "the sheet holds more than {MAX_CELLS} cells or {} MB of text, more than roster reads from a spreadsheet (hint: save it as CSV, which is read as a stream)",
                    MAX_TEXT / (1024 * 1024)
                ),
            ));
        }
        self.cells.push((row, col, value));
        Ok(())
    }
}

impl SheetSource {
    /// Opens `path` and reads `sheet` (default: the first worksheet).
    pub fn open(path: &Path, sheet: Option<&str>) -> Result<SheetSource, InputError> {
        // calamine is a parser of hostile bytes too (fuzzing found an overflow in its cell
        // references): a panic in it is this file's error, not the run's end.
        std::panic::catch_unwind(|| Self::read(path, sheet)).unwrap_or_else(|panic| {
            let what = crate::model::panic_message(panic.as_ref());
            Err(InputError::shape(
                path,
                format!("the spreadsheet reader failed on this file ({what}); is it damaged?"),
            ))
        })
    }

    fn read(path: &Path, sheet: Option<&str>) -> Result<SheetSource, InputError> {
        guard::check(path, guard::LIMITS)?;
        let sheet_error = |source: calamine::Error| InputError::Sheet {
            path: path.to_path_buf(),
            source,
        };
        let mut cells = Cells {
            path: path.to_path_buf(),
            cells: Vec::new(),
            oversized: Vec::new(),
            text: 0,
            limits: (MAX_CELLS, MAX_TEXT),
        };
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        // XLSX and XLSB cells are streamed from the sheet: nothing is allocated for the area
        // the sheet declares or spans. (Their cell readers share no trait.)
        macro_rules! stream_cells {
            ($workbook:ty, $error:ty) => {{
                let mut workbook: $workbook =
                    open_workbook(path).map_err(|e: $error| sheet_error(e.into()))?;
                let name = choose_sheet(path, &workbook.sheet_names(), sheet)?;
                let mut reader = workbook
                    .worksheet_cells_reader(&name)
                    .map_err(|e| sheet_error(e.into()))?;
                while let Some(cell) = reader.next_cell().map_err(|e| sheet_error(e.into()))? {
                    let position = cell.get_position();
                    cells.push(position, render(&Data::from(cell.get_value().clone())))?;
                }
                name
            }};
        }
        let name;
        if matches!(extension.as_deref(), Some("xlsx" | "xlsm")) {
            name = stream_cells!(Xlsx<_>, calamine::XlsxError);
        } else if extension.as_deref() == Some("xlsb") {
            name = stream_cells!(Xlsb<_>, calamine::XlsbError);
        } else {
            let mut workbook = open_workbook_auto(path).map_err(sheet_error)?;
            name = choose_sheet(path, &workbook.sheet_names(), sheet)?;
            let range = workbook.worksheet_range(&name).map_err(sheet_error)?;
            let (top, left) = range.start().unwrap_or((0, 0));
            for (row, col, value) in range.used_cells() {
                cells.push((top + row as u32, left + col as u32), render(value))?;
            }
        }
        let Cells {
            cells: mut all,
            oversized,
            ..
        } = cells;
        all.sort_unstable_by_key(|&(row, col, _)| (row, col));
        let mut rows: Vec<SheetRow> = Vec::new();
        for (row, col, value) in all {
            match rows.last_mut() {
                Some(last) if last.index == row => last.cells.push((col, value)),
                _ => rows.push(SheetRow {
                    index: row,
                    cells: vec![(col, value)],
                    oversized: None,
                }),
            }
        }
        for (row, col, chars) in oversized {
            match rows.binary_search_by_key(&row, |r| r.index) {
                Ok(i) => rows[i].oversized = Some((col, chars)),
                Err(i) => rows.insert(
                    i,
                    SheetRow {
                        index: row,
                        cells: Vec::new(),
                        oversized: Some((col, chars)),
                    },
                ),
            }
        }
        rows.retain(|r| r.oversized.is_some() || r.cells.iter().any(|(_, v)| !v.trim().is_empty()));
        let mut rows = rows.into_iter();
        let header = rows
            .next()
            .ok_or_else(|| InputError::shape(path, format!("sheet `{name}` is empty")))?;
        if let Some((col, chars)) = header.oversized {
            return Err(InputError::shape(
                path,
                format!(
                    "the header cell in column {} holds {chars} characters, more than a spreadsheet cell can ({MAX_CELL_CHARS})",
                    col + 1
                ),
            ));
        }
        if let Some(&(col, _)) = header.cells.last()
            && col >= MAX_COLUMNS
        {
            return Err(InputError::shape(
                path,
                format!(
                    "its header row has a cell in column {}, beyond the last column a worksheet has ({MAX_COLUMNS}, XFD); is the file damaged?",
                    u64::from(col) + 1
                ),
            ));
        }
        let width = header.cells.last().map_or(0, |&(col, _)| col as usize + 1);
        let mut headers = vec![String::new(); width];
        for (col, value) in header.cells {
            headers[col as usize] = value;
        }
        while headers.last().is_some_and(|h| h.trim().is_empty()) {
            headers.pop();
        }
        Ok(SheetSource {
            total: rows.len(),
            rows,
            headers,
        })
    }
}

/// The sheet named `wanted` (exactly, else ignoring case), or the first.
fn choose_sheet(path: &Path, names: &[String], wanted: Option<&str>) -> Result<String, InputError> {
    match wanted {
        Some(wanted) => names
            .iter()
            .find(|n| n.as_str() == wanted)
            .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(wanted)))
            .cloned()
            .ok_or_else(|| {
                InputError::Usage(format!(
                    "`{}` has no sheet named `{wanted}` (sheets: {})",
                    path.display(),
                    names.join(", ")
                ))
            }),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| InputError::shape(path, "the workbook has no worksheets")),
    }
}

impl RecordSource for SheetSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn dialect(&self) -> super::Dialect {
        super::Dialect::Spreadsheet
    }

    fn fraction_read(&self) -> Option<f64> {
        let done = self.total - self.rows.len();
        (self.total > 0).then(|| done as f64 / self.total as f64)
    }

    fn read_record(&mut self, record: &mut Record) -> Result<bool, InputError> {
        let width = self.headers.len();
        let Some(row) = self.rows.next() else {
            return Ok(false);
        };
        record.row = u64::from(row.index) + 1;
        record.defect = None;
        record.cells.clear();
        record.cells.resize(width, String::new());
        let mut extra = 0;
        for (col, value) in row.cells {
            match record.cells.get_mut(col as usize) {
                Some(cell) => *cell = value,
                None if !value.trim().is_empty() => extra += 1,
                None => {}
            }
        }
        if extra > 0 {
            record.defect = Some(format!("{extra} value(s) beyond the last headed column"));
        }
        if let Some((col, chars)) = row.oversized {
            let column = self
                .headers
                .get(col as usize)
                .map_or_else(|| format!("column {}", col + 1), |h| format!("`{h}`"));
            record.defect = Some(format!(
                "the cell in {column} holds {chars} characters, more than a spreadsheet cell can ({MAX_CELL_CHARS}); it was not read"
            ));
        }
        Ok(true)
    }
}

/// A cell as the spreadsheet shows it.
fn render(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => render_number(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Data::DateTime(dt) if dt.is_datetime() => render_date(dt.as_f64()),
        Data::DateTime(dt) => render_number(dt.as_f64()),
        Data::Error(e) => e.to_string(),
    }
}

/// Whole numbers without a fraction or exponent (phone numbers, employee ids); others in
/// their shortest exact form.
fn render_number(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e17 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// An Excel serial date (1900 date system) as ISO 8601: `2024-03-01`, with `THH:MM:SS` when
/// it has a time of day.
fn render_date(serial: f64) -> String {
    // Serial 25569 is 1970-01-01; Excel's phantom 1900-02-29 only shifts dates before March
    // 1900, which no people file holds.
    let total_secs = ((serial - 25569.0) * 86_400.0).round() as i64;
    let days = total_secs.div_euclid(86_400);
    let secs = total_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if secs == 0 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        let (h, min, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_see_them() {
        assert_eq!(render(&Data::Float(14155550123.0)), "14155550123");
        assert_eq!(render(&Data::Float(447700900123.0)), "447700900123");
        assert_eq!(render(&Data::Int(42)), "42");
        assert_eq!(render(&Data::Float(2.5)), "2.5");
        assert_eq!(render(&Data::Bool(true)), "TRUE");
    }

    #[test]
    fn a_sheet_over_the_limits_is_a_file_error_and_an_oversized_cell_is_set_aside() {
        let mut cells = Cells {
            path: "bomb.xlsx".into(),
            cells: Vec::new(),
            oversized: Vec::new(),
            text: 0,
            limits: (3, 1024),
        };
        for col in 0..3 {
            cells.push((0, col), "x".into()).unwrap();
        }
        cells.push((1, 0), "y".repeat(MAX_CELL_CHARS + 1)).unwrap();
        assert_eq!(cells.oversized, vec![(1, 0, MAX_CELL_CHARS + 1)]);
        let e = cells.push((2, 0), "z".into()).unwrap_err();
        assert!(e.to_string().contains("save it as CSV"), "{e}");
    }

    #[test]
    fn serial_dates_become_iso_dates() {
        assert_eq!(render_date(45352.0), "2024-03-01");
        assert_eq!(render_date(25569.5), "1970-01-01T12:00:00");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
