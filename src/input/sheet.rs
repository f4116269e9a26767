//! Spreadsheets (XLSX, XLSM, XLSB, XLS, ODS) through calamine: the first worksheet, or the one
//! named by `--sheet`, its first non-empty row as the header.
//!
//! Cells are rendered as a person sees them in the spreadsheet, not as the file stores them: a
//! phone number kept as the number 14155550123 reads "14155550123" (never `1.4155550123E10`),
//! whole numbers have no `.0`, dates read as ISO dates. Row numbers are the spreadsheet's own
//! (header on row 1 when the sheet starts at A1).

use super::{InputError, Record, RecordSource};
use calamine::{Data, Range, Reader, open_workbook_auto};
use std::path::Path;

/// One worksheet, held in memory as calamine reads it (a sheet has at most 1,048,576 rows).
pub struct SheetSource {
    range: Range<Data>,
    headers: Vec<String>,
    /// Spreadsheet row number (1-based) of the range's first row.
    first_row: u64,
    /// Index within the range of the next row to read.
    next: usize,
}

impl SheetSource {
    /// Opens `path` and reads `sheet` (default: the first worksheet).
    pub fn open(path: &Path, sheet: Option<&str>) -> Result<SheetSource, InputError> {
        let mut workbook = open_workbook_auto(path).map_err(|source| InputError::Sheet {
            path: path.to_path_buf(),
            source,
        })?;
        let names = workbook.sheet_names();
        let name = match sheet {
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
                })?,
            None => names
                .first()
                .cloned()
                .ok_or_else(|| InputError::shape(path, "the workbook has no worksheets"))?,
        };
        let range = workbook
            .worksheet_range(&name)
            .map_err(|e| InputError::Sheet {
                path: path.to_path_buf(),
                source: e,
            })?;
        let first_row = range.start().map_or(0, |(row, _)| u64::from(row)) + 1;
        let mut source = SheetSource {
            range,
            headers: Vec::new(),
            first_row,
            next: 0,
        };
        let header_row = (0..source.range.height())
            .find(|&i| !source.row_is_blank(i))
            .ok_or_else(|| InputError::shape(path, format!("sheet `{name}` is empty")))?;
        let mut headers: Vec<String> = source
            .range
            .rows()
            .nth(header_row)
            .unwrap_or_default()
            .iter()
            .map(render)
            .collect();
        while headers.last().is_some_and(|h| h.trim().is_empty()) {
            headers.pop();
        }
        source.headers = headers;
        source.next = header_row + 1;
        Ok(source)
    }

    fn row_is_blank(&self, index: usize) -> bool {
        self.range
            .rows()
            .nth(index)
            .is_none_or(|row| row.iter().all(|c| render(c).trim().is_empty()))
    }
}

impl RecordSource for SheetSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn read_record(&mut self, record: &mut Record) -> Result<bool, InputError> {
        let width = self.headers.len();
        let (_, columns) = self.range.get_size();
        while self.next < self.range.height() {
            let index = self.next;
            self.next += 1;
            let cells: Vec<String> = (0..columns)
                .map(|col| self.range.get((index, col)).map(render).unwrap_or_default())
                .collect();
            if cells.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            record.row = self.first_row + index as u64;
            record.defect = None;
            let extra = cells
                .iter()
                .skip(width)
                .filter(|c| !c.trim().is_empty())
                .count();
            if extra > 0 {
                record.defect = Some(format!("{extra} value(s) beyond the last headed column"));
            }
            record.cells = cells;
            record.cells.resize(width, String::new());
            return Ok(true);
        }
        Ok(false)
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
    fn serial_dates_become_iso_dates() {
        assert_eq!(render_date(45352.0), "2024-03-01");
        assert_eq!(render_date(25569.5), "1970-01-01T12:00:00");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
