//! The grids calamine would build for an XLS workbook, read from its BIFF records before
//! calamine reads it (see [`super::guard`]).
//!
//! calamine parses every sheet the workbook lists when it opens the file: per listed sheet it
//! reserves the area the sheet's DIMENSIONS record declares, then builds a dense grid over the
//! cells' bounding box, and another over its formulas'. All three are counted here, for every
//! listing (a hostile file may list one sheet many times), from the same records calamine
//! reads.

use super::super::InputError;
use std::io::Read;
use std::path::Path;

/// BIFF record types (MS-XLS 2.3).
const BOF: u16 = 0x0809;
const EOF: u16 = 0x000A;
const BOUND_SHEET: u16 = 0x0085;
const DIMENSIONS: u16 = 0x0200;
const FORMULA: u16 = 0x0006;
const MUL_RK: u16 = 0x00BD;
/// The cell records calamine keeps (number, label, rich string, bool/error, RK, shared
/// string label).
const CELLS: [u16; 6] = [0x0203, 0x0204, 0x00D6, 0x0205, 0x027E, 0x00FD];

/// Refuses an XLS whose sheets would cost calamine more than `max_grid` cells.
pub(super) fn check_grids(path: &Path, max_grid: u64) -> Result<(), InputError> {
    let damaged = |e: std::io::Error| {
        InputError::shape(
            path,
            format!(
                "its compound-file structure cannot be read ({e}); is the file damaged? (hint: save it as XLSX or CSV)"
            ),
        )
    };
    let mut file = cfb::open(path).map_err(damaged)?;
    let name = ["/Workbook", "/Book"]
        .into_iter()
        .find(|n| file.is_stream(n));
    let Some(name) = name else {
        return Ok(()); // not a workbook: calamine says so
    };
    let mut stream = Vec::new();
    file.open_stream(name)
        .and_then(|mut s| s.read_to_end(&mut stream))
        .map_err(damaged)?;
    let mut sheets = Vec::new();
    for (typ, data) in Records::at(&stream, 0) {
        match typ {
            BOUND_SHEET if data.len() >= 4 => {
                let position = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                sheets.push(position as usize);
            }
            EOF => break,
            _ => {}
        }
    }
    let mut total = 0u64;
    let mut costs = std::collections::HashMap::new();
    for (index, position) in sheets.into_iter().enumerate() {
        let cost = *costs
            .entry(position)
            .or_insert_with(|| sheet_cost(&stream, position));
        total = total.saturating_add(cost);
        if total > max_grid {
            let sheet = format!("{}", index + 1);
            return Err(super::guard::over_grid(path, &sheet, total, max_grid));
        }
    }
    Ok(())
}

/// The cells calamine allocates for the sheet whose BOF is at `position`: the declared area
/// it reserves, plus the dense grids of its cells and of its formulas.
fn sheet_cost(stream: &[u8], position: usize) -> u64 {
    let mut declared = 0u64;
    let mut cells = BoundingBox::default();
    let mut formulas = BoundingBox::default();
    let mut seen_bof = false;
    let mut nested = 0usize;
    for (typ, data) in Records::at(stream, position) {
        if nested > 0 {
            match typ {
                BOF => nested += 1,
                EOF => nested -= 1,
                _ => {}
            }
            continue;
        }
        let at = |i: usize| u32::from(u16::from_le_bytes([data[i], data[i + 1]]));
        match typ {
            BOF if seen_bof => nested += 1,
            BOF => seen_bof = true,
            EOF => break,
            DIMENSIONS => declared = declared.saturating_add(declared_area(data)),
            FORMULA if data.len() >= 4 => {
                cells.add(at(0), at(2));
                formulas.add(at(0), at(2));
            }
            MUL_RK if data.len() >= 6 => {
                let (row, first) = (at(0), at(2));
                let count = (data.len() as u32 - 6) / 6;
                let last = at(data.len() - 2).max(first + count.saturating_sub(1));
                cells.add(row, first);
                cells.add(row, last);
            }
            t if CELLS.contains(&t) && data.len() >= 4 => cells.add(at(0), at(2)),
            _ => {}
        }
    }
    declared
        .saturating_add(cells.area())
        .saturating_add(formulas.area())
}

/// The area a DIMENSIONS record makes calamine reserve, computed as calamine computes it
/// (its subtractions wrap on a record whose last row is before its first).
fn declared_area(data: &[u8]) -> u64 {
    let u16_at = |i: usize| u32::from(u16::from_le_bytes([data[i], data[i + 1]]));
    let u32_at = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let (first_row, last_row, mut first_col, last_col) = match data.len() {
        10 => (u16_at(0), u16_at(2), u16_at(4), u16_at(6)),
        14 | 16 => (u32_at(0), u32_at(4), u16_at(8), u16_at(10)),
        _ => return 0, // calamine refuses the file
    };
    if first_col > 0xFF || last_col < first_col {
        first_col = 0;
    }
    let (end_row, end_col) = if last_row >= 1 && last_col >= 1 {
        (last_row - 1, last_col - 1)
    } else {
        (first_row, first_col)
    };
    let rows = u64::from(end_row.wrapping_sub(first_row).wrapping_add(1));
    let cols = u64::from(end_col.wrapping_sub(first_col).wrapping_add(1));
    rows.saturating_mul(cols)
}

/// The rows and columns cells span.
#[derive(Default)]
struct BoundingBox {
    span: Option<((u32, u32), (u32, u32))>,
}

impl BoundingBox {
    fn add(&mut self, row: u32, col: u32) {
        let ((r0, c0), (r1, c1)) = self.span.get_or_insert(((row, col), (row, col)));
        *r0 = (*r0).min(row);
        *c0 = (*c0).min(col);
        *r1 = (*r1).max(row);
        *c1 = (*c1).max(col);
    }

    fn area(&self) -> u64 {
        self.span.map_or(0, |((r0, c0), (r1, c1))| {
            u64::from(r1 - r0 + 1) * u64::from(c1 - c0 + 1)
        })
    }
}

/// BIFF records from an offset: (type, data), ending at the stream's end or at a record that
/// runs past it.
struct Records<'a> {
    stream: &'a [u8],
}

impl<'a> Records<'a> {
    fn at(stream: &'a [u8], position: usize) -> Records<'a> {
        Records {
            stream: stream.get(position..).unwrap_or_default(),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.stream.get(..4)?;
        let typ = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let data = self.stream.get(4..4 + len)?;
        self.stream = &self.stream[4 + len..];
        Some((typ, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_area_is_read_as_calamine_reads_it() {
        let mut biff8 = Vec::new();
        for v in [0u32, 65_536] {
            biff8.extend(v.to_le_bytes());
        }
        biff8.extend([0, 0, 0, 1, 0, 0]); // columns 0..256, reserved
        assert_eq!(declared_area(&biff8), 65_536 * 256);
        // Last row before the first: calamine's subtraction wraps.
        let mut wraps = Vec::new();
        for v in [10u32, 5] {
            wraps.extend(v.to_le_bytes());
        }
        wraps.extend([0, 0, 3, 0, 0, 0]);
        assert!(declared_area(&wraps) > 4_000_000_000);
    }

    #[test]
    fn records_stop_at_one_running_past_the_stream() {
        let stream = [0x09, 0x08, 2, 0, 1, 2, 0x0A, 0x00, 9, 0, 1];
        let records: Vec<_> = Records::at(&stream, 0).collect();
        assert_eq!(records, vec![(BOF, &[1u8, 2][..])]);
        assert_eq!(Records::at(&stream, 99).count(), 0);
    }
}
