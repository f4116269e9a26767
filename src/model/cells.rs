//! CSV injection (OWASP): a cell that starts with `=`, `+`, `-`, `@`, tab or CR is a formula
//! to a spreadsheet. Every CSV roster writes prefixes such cells with `'`; reading roster's own
//! file back removes that prefix again, so a round trip changes nothing. A number as people
//! write phones (`+44 20 7946 0958`, `-1`) is left alone: made only of digits, spaces and
//! `()+-./`, it can call nothing, and Excel would show the `'` literally.

use std::borrow::Cow;

/// Roster's own columns in an error file: the row, its status and its messages (a file that
/// has them is roster's own output, read back for a re-run).
pub const META_COLUMNS: [&str; 3] = ["_row", "_status", "_errors"];

fn is_trigger(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// The cell as written to a CSV for people: formula triggers get a leading `'`.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if (cell.starts_with(is_trigger) && !is_number_like(cell)) || is_restorable(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `+`/`-` and then only digits, spaces and `()+-./`, with a digit: a phone or a number,
/// never a formula that can reach anything.
fn is_number_like(cell: &str) -> bool {
    cell.starts_with(['+', '-'])
        && cell.chars().any(|c| c.is_ascii_digit())
        && cell
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '(' | ')' | '+' | '-' | '.' | '/'))
}

/// Undoes [`neutralise`] for a cell read from roster's own output.
pub fn restore(cell: &str) -> &str {
    if is_restorable(cell) {
        &cell[1..]
    } else {
        cell
    }
}

/// `'` followed by a trigger (or by another such prefix, so that a value that itself began
/// with `'=` survives the round trip too).
fn is_restorable(cell: &str) -> bool {
    let mut chars = cell.chars();
    chars.next() == Some('\'') && chars.as_str().starts_with(|c| is_trigger(c) || c == '\'') && {
        let rest = chars.as_str().trim_start_matches('\'');
        rest.starts_with(is_trigger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_prefixed_and_restored() {
        for cell in [
            "=SUM(A1)",
            "+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0",
            "+",
            "@admin",
            "\tx",
            "\rx",
            "'=x",
            "''+1",
        ] {
            let written = neutralise(cell);
            assert!(written.starts_with('\''), "{cell:?}");
            assert_eq!(restore(&written), cell, "{cell:?}");
        }
    }

    #[test]
    fn ordinary_cells_are_untouched() {
        for cell in [
            "Ann",
            "ann@example.com",
            "O'Brien",
            "'quoted'",
            "",
            "4155550123",
            "+44 20 7946 0958",
            "+1 (415) 555-0100",
            "-1",
        ] {
            assert_eq!(neutralise(cell), cell);
            assert_eq!(restore(cell), cell);
        }
    }
}
