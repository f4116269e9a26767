//! Text as a cell holds it: trimmed of all Unicode whitespace, in NFC, line breaks folded;
//! damaged text (a byte that was not text, a control character) refused; account statuses.

use std::borrow::Cow;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Trims all Unicode whitespace (including NBSP) and puts the text in Unicode NFC.
/// Nothing inside the value is changed otherwise.
pub fn clean(raw: &str) -> String {
    cleaned(raw).into_owned()
}

/// [`clean`], borrowing `raw` where cleaning changes nothing but the ends (most cells).
pub fn cleaned(raw: &str) -> Cow<'_, str> {
    let trimmed = trim(raw);
    // A quoted cell may span lines ("Sales\nEMEA"): one space for each run of line breaks
    // and tabs, as the cell reads on one line.
    if trimmed.bytes().any(|b| matches!(b, b'\t' | b'\r' | b'\n')) {
        return Cow::Owned(in_nfc(&fold_breaks(trimmed)).into_owned());
    }
    in_nfc(trimmed)
}

fn in_nfc(text: &str) -> Cow<'_, str> {
    if text.is_ascii() || is_nfc_quick(text.chars()) == IsNormalized::Yes {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfc().collect())
    }
}

/// `raw` without leading and trailing whitespace or byte-order marks. ASCII spaces are
/// trimmed byte by byte (the cells of most files end in one or none); the Unicode rule runs
/// only when what is left starts or ends outside ASCII.
fn trim(raw: &str) -> &str {
    // `char::is_whitespace` within ASCII (which `u8::is_ascii_whitespace` differs from on
    // the vertical tab).
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
    let bytes = raw.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    let inner = &raw[start..end];
    match (inner.as_bytes().first(), inner.as_bytes().last()) {
        (Some(&first), Some(&last)) if first >= 0x80 || last >= 0x80 => {
            inner.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}')
        }
        _ => inner,
    }
}

/// Replaces each run of tabs and line breaks with one space.
fn fold_breaks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_break = false;
    for c in text.chars() {
        if matches!(c, '\t' | '\r' | '\n') {
            if !in_break {
                out.push(' ');
            }
            in_break = true;
        } else {
            out.push(c);
            in_break = false;
        }
    }
    out
}

/// Why `raw` cannot be trusted as text, if it cannot: a U+FFFD replacement character (the
/// file's encoding was damaged: a byte that was not text in its encoding) or a C0/C1 control
/// character (NUL, escape, U+0085 from a misread Windows-1252 file). Tabs and line breaks are
/// layout, not damage: [`clean`] folds them into spaces.
pub fn damage(raw: &str) -> Option<String> {
    let value = trim(raw);
    // Most cells are ASCII: one pass over the bytes finds a control character, and no
    // replacement character or direction control can be there.
    if value.is_ascii() {
        return value
            .bytes()
            .find(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7F)
            .map(|b| format!("holds a control character (U+{b:04X}); remove it"));
    }
    if let Some(at) = value.find('\u{FFFD}') {
        let near: String = value[..at]
            .chars()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Some(match near.is_empty() {
            true => "the file's encoding was damaged here: the cell starts with a byte that is not text (U+FFFD); fix the cell or give --encoding".into(),
            false => format!(
                "the file's encoding was damaged near `{near}`: a byte there is not text (U+FFFD); fix the cell or give --encoding"
            ),
        });
    }
    if let Some(c) = value.chars().find(|&c| is_direction_control(c)) {
        return Some(format!(
            "holds an invisible text-direction control (U+{:04X}), which makes text show other than it is; remove it",
            c as u32
        ));
    }
    value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        .map(|c| format!("holds a control character (U+{:04X}); remove it", c as u32))
}

/// The Unicode bidirectional formatting characters (UAX #9: embeddings, overrides,
/// isolates, marks): invisible, they reorder what a screen shows (the "Trojan Source"
/// trick). Right-to-left text needs none of them.
pub fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// An account status as `active` or `inactive`: "Active", "Enabled", "Yes", "True", "1" (and
/// their opposites, "Suspended", "Blocked") in any case; anything else is refused.
pub fn status(raw: &str) -> Result<String, String> {
    let value = clean(raw);
    let key: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    match key.as_str() {
        "active" | "enabled" | "enable" | "yes" | "y" | "true" | "1" => Ok("active".into()),
        "inactive" | "disabled" | "disable" | "no" | "n" | "false" | "0" | "suspended"
        | "blocked" | "deactivated" => Ok("inactive".into()),
        _ => Err(format!(
            "`{value}` is not a known status (active/enabled/yes or inactive/disabled/no)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_fast_paths_agree_with_the_unicode_rules() {
        fn slow_trim(s: &str) -> &str {
            s.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}')
        }
        let slow_control = |s: &str| {
            slow_trim(s)
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        };
        let pieces = [
            " ", "\t", "\u{0B}", "\u{0C}", "\r\n", "\u{FEFF}", "\u{00A0}", "\u{2003}", "a", "é",
            "\u{0}", "\u{7F}", "\u{85}", "Ann", "",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let cell = format!("{a}{b}{c}");
                    assert_eq!(trim(&cell), slow_trim(&cell), "{cell:?}");
                    assert_eq!(damage(&cell).is_some(), slow_control(&cell), "{cell:?}");
                }
            }
        }
    }

    #[test]
    fn text_direction_controls_are_damage() {
        for c in ['\u{202E}', '\u{2066}', '\u{200F}', '\u{061C}'] {
            let e = damage(&format!("Ann{c}Lee")).unwrap_or_default();
            assert!(e.contains("text-direction"), "U+{:04X}: {e}", c as u32);
        }
        assert_eq!(
            damage("\u{5d3}\u{5d5}\u{5d3}"),
            None,
            "right-to-left text itself is fine"
        );
    }

    #[test]
    fn damaged_text_is_named_and_clean_text_passes() {
        assert!(damage("L\u{FFFD}chel").unwrap().contains("near `L`"));
        assert!(damage("\u{FFFD}x").unwrap().contains("starts with"));
        assert!(damage("Ann\u{0}").unwrap().contains("U+0000"));
        assert_eq!(damage("Sales\r\nEMEA"), None, "a multi-line cell is layout");
        assert_eq!(clean(" Sales\r\nEMEA\t1 "), "Sales EMEA 1");
        assert!(damage("\u{1b}[31mred").unwrap().contains("U+001B"));
        assert!(damage("Jo\u{85}e").unwrap().contains("U+0085"), "C1 too");
        assert_eq!(damage("  Zoë Ünal\t"), None);
        assert_eq!(damage("李小龍"), None);
    }

    #[test]
    fn statuses_have_two_values() {
        for (raw, want) in [
            ("Active", "active"),
            (" ENABLED ", "active"),
            ("TRUE", "active"),
            ("Disabled", "inactive"),
            ("no", "inactive"),
            ("Suspended", "inactive"),
        ] {
            assert_eq!(status(raw).unwrap(), want, "{raw}");
        }
        assert!(status("maybe").is_err());
    }

    #[test]
    fn clean_trims_unicode_space_and_composes() {
        assert_eq!(clean("\u{a0} Zoë \t"), "Zoë");
        assert_eq!(clean("Zoe\u{308}"), "Zo\u{eb}");
        assert_eq!(clean("O'Brien Jr."), "O'Brien Jr.");
    }
}
