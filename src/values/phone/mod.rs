//! Phone numbers to E.164 (`+` country code and national number, digits only), validated
//! against libphonenumber's metadata for the number's region.
//!
//! Reading follows what people type: `+` or `00` (or the region's own international prefix,
//! such as `011` in the US) starts an international number; `+44 (0)20…` trunk notation is
//! understood; a national number is read in the row's region (its country column, or
//! `--region`), with or without its trunk prefix, or with the country code but no `+`; it is
//! valid when it is valid in any region of that region's calling code (a Canadian number in
//! a US file).
//! A number that is not valid for its region is refused with the text quoted as written.

mod rules;

use rules::Region;
use std::borrow::Cow;

/// The most digits an E.164 number (country code included) may have.
const MAX_DIGITS: usize = 15;

/// Loads the metadata every reading needs (the first reading otherwise does, ~0.1 s).
pub fn warm_up() {
    let _ = rules::is_known_region("US");
}

/// Whether `id` is an ISO 3166-1 alpha-2 region that phone numbers can be read in.
pub fn is_region(id: &str) -> bool {
    rules::is_known_region(id)
}

/// Normalises `raw` to E.164, reading a national number in `region` (ISO alpha-2, upper case).
/// The error is a message for the person who will fix the cell, quoting it as written.
pub fn to_e164(raw: &str, region: Option<&str>) -> Result<String, String> {
    let written = raw.trim();
    let (digits, plus) = digits_of(written)?;
    if digits.is_empty() {
        return Err(format!("`{written}` is not a phone number (no digits)"));
    }
    if plus {
        return international(&digits, written);
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return international(rest, written);
    }
    let Some(id) = region else {
        return Err(format!(
            "`{written}` has no country code: write it as +<country code>…, or give the row a \
             country (or the run a --region)"
        ));
    };
    let Some(home) = rules::region(id) else {
        return Err(format!(
            "`{written}`: `{id}` is not a region phone numbers can be read in"
        ));
    };
    national(&digits, home, written)
}

/// The digits of `text` and whether it starts with `+`. Spaces, dots, dashes, slashes and
/// parentheses are separators; a `(0)` after an international prefix is the trunk prefix
/// people write for callers at home, and is dropped.
fn digits_of(text: &str) -> Result<(String, bool), String> {
    let mut digits = String::with_capacity(text.len());
    let mut plus = false;
    let bytes = text.as_bytes();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => plus = true,
            '(' if bytes.get(i + 1..i + 3) == Some(b"0)")
                && (plus || digits.starts_with("00"))
                && !digits.is_empty() =>
            {
                chars.next();
                chars.next();
            }
            ' ' | '.' | '-' | '(' | ')' | '/' | '\u{2010}' | '\u{2011}' | '\u{2013}' => {}
            c if c.is_whitespace() => {}
            _ => {
                return Err(format!("`{text}` is not a phone number (unexpected `{c}`)"));
            }
        }
        if digits.len() > MAX_DIGITS + 4 {
            return Err(format!("`{text}` is not a phone number (too many digits)"));
        }
    }
    Ok((digits, plus))
}

/// An international number: calling code, then the national number.
fn international(digits: &str, written: &str) -> Result<String, String> {
    if digits.starts_with('0') {
        return Err(format!(
            "`{written}` is not a phone number (a country code cannot start with 0)"
        ));
    }
    // Calling codes are prefix-free, so the first of 1, 2 or 3 digits that is one is the one.
    for len in 1..=3.min(digits.len()) {
        let Ok(code) = digits[..len].parse::<u16>() else {
            continue;
        };
        let Some(regions) = rules::regions_for_code(code) else {
            continue;
        };
        let national = &digits[len..];
        return match valid_in_code(regions, national) {
            Some(national) => Ok(e164(code, &national)),
            None => Err(format!(
                "`{written}` is not a valid phone number for country code +{code}"
            )),
        };
    }
    Err(format!(
        "`{written}` does not start with a known country code"
    ))
}

/// The valid national number among the regions of one calling code, as libphonenumber picks
/// the region: by leading digits where a region has them, else by validity. A trunk prefix
/// written after the country code ("+44 020…") is dropped when the number needs it dropped.
fn valid_in_code(
    regions: impl Iterator<Item = &'static Region> + Clone,
    national: &str,
) -> Option<Cow<'_, str>> {
    let belongs = |candidate: &str| {
        regions
            .clone()
            .any(|r| r.claims(candidate) != Some(false) && r.is_valid(candidate))
    };
    if belongs(national) {
        return Some(Cow::Borrowed(national));
    }
    let main = regions.clone().next()?;
    main.strip_national_prefix(national)
        .into_iter()
        .find(|stripped| belongs(stripped))
        .map(Cow::Owned)
}

/// A number without `+` or `00`, read in its region `home`.
fn national(digits: &str, home: &Region, written: &str) -> Result<String, String> {
    // With the trunk prefix ("020…", "1 415…") first: that is how numbers are written at home.
    for stripped in home.strip_national_prefix(digits) {
        if home.is_valid(&stripped) {
            return Ok(e164(home.country_code, &stripped));
        }
    }
    if home.is_valid(digits) {
        return Ok(e164(home.country_code, digits));
    }
    // Valid elsewhere in the region's calling code, as libphonenumber reads a national
    // number: a Canadian `(416) …` in a US file is a +1 number like any other, and so are
    // Guernsey's in a GB file, Kazakhstan's in a Russian one.
    if let Some(mates) = rules::regions_for_code(home.country_code) {
        let candidates = home
            .strip_national_prefix(digits)
            .into_iter()
            .chain([digits.to_string()]);
        for candidate in candidates {
            let valid = mates
                .clone()
                .any(|r| r.claims(&candidate) != Some(false) && r.is_valid(&candidate));
            if valid {
                return Ok(e164(home.country_code, &candidate));
            }
        }
    }
    // Dialled from the region to abroad ("011 44…" in the US).
    if let Some(rest) = home.after_international_prefix(digits)
        && let Ok(number) = international(rest, written)
    {
        return Ok(number);
    }
    // The country code written without `+` ("44 20 7946 0958", or a spreadsheet cell that
    // dropped the `+`).
    let code = home.country_code.to_string();
    if let Some(rest) = digits.strip_prefix(code.as_str())
        && let Some(regions) = rules::regions_for_code(home.country_code)
        && let Some(national) = valid_in_code(regions, rest)
    {
        return Ok(e164(home.country_code, &national));
    }
    Err(format!(
        "`{written}` is not a valid phone number for {}",
        home.id
    ))
}

fn e164(code: u16, national: &str) -> String {
    // Built by hand rather than with `format!`: this runs for every phone of a file.
    let mut number = String::with_capacity(4 + national.len());
    number.push('+');
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut rest = code;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    number.extend(digits[at..].iter().map(|&d| char::from(d)));
    number.push_str(national);
    number
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_codes_of_one_two_and_three_digits_are_written_whole() {
        assert_eq!(e164(1, "4155552671"), "+14155552671");
        assert_eq!(e164(44, "2079460958"), "+442079460958");
        assert_eq!(e164(353, "12345678"), "+35312345678");
        // Read through the lookups by calling code and by region id.
        assert_eq!(to_e164("+353 1 234 5678", None).unwrap(), "+35312345678");
        assert_eq!(to_e164("01 234 5678", Some("IE")).unwrap(), "+35312345678");
        assert!(to_e164("01 234 5678", Some("ZZ")).is_err());
        assert!(
            to_e164("01 234 5678", Some("ie")).is_err(),
            "ids are upper case"
        );
    }

    #[test]
    fn international_numbers_in_every_common_spelling() {
        for raw in [
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "0044 20 7946 0958",
            "+44 020 7946 0958",
            "+44-20-7946-0958",
        ] {
            assert_eq!(to_e164(raw, None).unwrap(), "+442079460958", "{raw}");
        }
        assert_eq!(to_e164("+1 (415) 555-2671", None).unwrap(), "+14155552671");
    }

    #[test]
    fn national_numbers_read_in_their_region() {
        assert_eq!(
            to_e164("020 7946 0958", Some("GB")).unwrap(),
            "+442079460958"
        );
        assert_eq!(
            to_e164("(415) 555-2671", Some("US")).unwrap(),
            "+14155552671"
        );
        assert_eq!(
            to_e164("1 415 555 2671", Some("US")).unwrap(),
            "+14155552671"
        );
        assert_eq!(to_e164("14155552671", Some("US")).unwrap(), "+14155552671");
        assert_eq!(to_e164("030 1234567", Some("DE")).unwrap(), "+49301234567");
        assert_eq!(
            to_e164("011 44 20 7946 0958", Some("US")).unwrap(),
            "+442079460958"
        );
        assert_eq!(
            to_e164("442079460958", Some("GB")).unwrap(),
            "+442079460958"
        );
        // Italy keeps its leading zero in the international form.
        assert_eq!(
            to_e164("02 1234 5678", Some("IT")).unwrap(),
            "+390212345678"
        );
    }

    #[test]
    fn invalid_numbers_are_refused_quoting_the_cell() {
        let err = to_e164("020 7946", Some("GB")).unwrap_err();
        assert!(err.contains("`020 7946`") && err.contains("GB"), "{err}");
        assert!(
            to_e164("4155552671", None)
                .unwrap_err()
                .contains("no country code")
        );
        assert!(to_e164("call me", Some("US")).is_err());
        assert!(to_e164("+999 123", None).is_err());
        assert!(to_e164("+0 123", None).is_err());
    }

    /// libphonenumber's own valid example numbers (fixed line and mobile): (region, the
    /// national example, its E.164 form).
    fn valid_examples() -> Vec<(&'static phonenumber::metadata::Metadata, String, String)> {
        let mut out = Vec::new();
        for meta in phonenumber::metadata::DATABASE.iter() {
            let d = meta.descriptors();
            for desc in [d.fixed_line(), d.mobile()].into_iter().flatten() {
                let Some(example) = desc.example() else {
                    continue;
                };
                let want = format!("+{}{example}", meta.country_code());
                let parsed = phonenumber::parse(None, &want).unwrap();
                if phonenumber::is_valid(&parsed) {
                    out.push((meta, example.to_string(), want));
                }
            }
        }
        out
    }

    #[test]
    fn every_example_number_of_every_region_reads_back() {
        // Each must be valid written internationally, and must come back the same written
        // nationally in its region.
        let examples = valid_examples();
        for (meta, example, want) in &examples {
            assert_eq!(
                to_e164(want, None).as_deref(),
                Ok(want.as_str()),
                "{}",
                meta.id()
            );
            if meta.id() != "001" {
                let prefix = meta.national_prefix().unwrap_or("");
                let written = format!("{prefix}{example}");
                assert_eq!(
                    to_e164(&written, Some(meta.id())).as_deref(),
                    Ok(want.as_str()),
                    "{} national {written}",
                    meta.id()
                );
            }
        }
        assert!(
            examples.len() > 400,
            "only {} examples checked",
            examples.len()
        );
    }

    #[test]
    fn a_national_number_is_valid_anywhere_in_its_regions_calling_code() {
        // In a US file, Canadian and Jamaican numbers of the +1 zone (issue 16's examples).
        for (raw, want) in [
            ("(416) 555-0101", "+14165550101"),
            ("604-555-0102", "+16045550102"),
            ("(876) 555-0103", "+18765550103"),
        ] {
            assert_eq!(to_e164(raw, Some("US")).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn every_example_number_reads_in_every_region_of_its_calling_code() {
        // libphonenumber's example numbers, written nationally (with the trunk prefix of the
        // region the file is in) in each other region sharing the calling code: +1, +7, +44
        // with GG/JE/IM, +61, +262, +590, +599...
        let mut checked = 0;
        for (meta, example, want) in valid_examples() {
            let Some(mates) = rules::regions_for_code(meta.country_code()) else {
                continue;
            };
            for home in mates.filter(|m| m.id != meta.id()) {
                let written = format!("{}{example}", home.national_prefix_for_test());
                assert_eq!(
                    to_e164(&written, Some(home.id)).as_deref(),
                    Ok(want.as_str()),
                    "{}'s example {written} read in {}",
                    meta.id(),
                    home.id
                );
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} shared-code examples checked");
    }

    #[test]
    fn output_is_idempotent() {
        let once = to_e164("0044 (0)20 7946 0958", None).unwrap();
        assert_eq!(to_e164(&once, Some("US")).unwrap(), once);
    }
}
