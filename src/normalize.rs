//! Turning raw cells into canonical values, or saying precisely why a value cannot be one.
//!
//! Every function here is idempotent: normalising a normalised value changes nothing.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Trims all Unicode whitespace (including NBSP) and puts the text in Unicode NFC.
/// Nothing inside the value is changed otherwise.
pub fn clean(raw: &str) -> String {
    let trimmed = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
    if trimmed.is_ascii() || is_nfc_quick(trimmed.chars()) == IsNormalized::Yes {
        trimmed.to_string()
    } else {
        trimmed.nfc().collect()
    }
}

/// Normalises an email address: trimmed and lower-cased, never otherwise repaired.
/// The error is a message for the person who will fix the cell.
pub fn email(raw: &str) -> Result<String, String> {
    let value = clean(raw).to_lowercase();
    check_email(&value)?;
    // Internationalised domains are sent as ASCII (punycode), which every API accepts.
    match value.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => {
            let ascii = idna::domain_to_ascii(domain).map_err(|_| {
                format!("`{value}`: domain `{domain}` is not a valid internationalised domain name")
            })?;
            Ok(format!("{local}@{ascii}"))
        }
        _ => Ok(value),
    }
}

fn check_email(value: &str) -> Result<(), String> {
    if value.starts_with("mailto:") {
        return Err(format!(
            "`{value}` has a `mailto:` prefix; give the address alone"
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!("`{value}` contains a space"));
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err(format!("`{value}` has no `@`"));
    };
    if local.contains('@') {
        return Err(format!("`{value}` has more than one `@`"));
    }
    if local.is_empty() {
        return Err(format!("`{value}` has nothing before the `@`"));
    }
    if local.len() > 64 {
        return Err(format!(
            "`{value}`: the part before `@` is longer than 64 characters"
        ));
    }
    if !local.is_ascii() {
        return Err(format!(
            "`{value}`: the part before `@` has non-ASCII characters"
        ));
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    if !local_ok {
        return Err(format!(
            "`{value}`: the part before `@` has a character not allowed there"
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(format!("`{value}`: misplaced `.` before the `@`"));
    }
    if domain.is_empty() {
        return Err(format!("`{value}` has no domain after the `@`"));
    }
    if !domain.contains('.') {
        return Err(format!("`{value}`: domain `{domain}` has no `.`"));
    }
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !ok {
            return Err(format!(
                "`{value}`: domain `{domain}` is not a valid domain name"
            ));
        }
    }
    let tld = domain.rsplit('.').next().unwrap_or_default();
    if tld.len() < 2 || tld.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{value}`: domain `{domain}` has no valid top-level domain"
        ));
    }
    if value.len() > 254 {
        return Err(format!("`{value}` is longer than 254 characters"));
    }
    Ok(())
}

/// Normalises a phone number to `+` and digits when it is international (`+` or `00`), or to
/// bare digits when national. Spaces, dots, dashes, slashes and parentheses are dropped.
pub fn phone(raw: &str) -> Result<String, String> {
    let value = clean(raw);
    let mut digits = String::with_capacity(value.len());
    let mut international = false;
    for (i, c) in value.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => international = true,
            ' ' | '.' | '-' | '(' | ')' | '/' | '\u{a0}' => {}
            _ => {
                return Err(format!(
                    "`{value}` is not a phone number (unexpected `{c}`)"
                ));
            }
        }
    }
    if !international && digits.starts_with("00") {
        digits.drain(..2);
        international = true;
    }
    if international && digits.starts_with('0') {
        return Err(format!(
            "`{value}` is not a phone number (country code cannot start with 0)"
        ));
    }
    if !(4..=15).contains(&digits.len()) {
        return Err(format!(
            "`{value}` is not a phone number ({} digits)",
            digits.len()
        ));
    }
    Ok(if international {
        format!("+{digits}")
    } else {
        digits
    })
}

/// Maps a role (or one of its common synonyms) to the canonical `user` or `organization-admin`;
/// anything else is refused, never guessed.
pub fn role(raw: &str) -> Result<String, String> {
    let value = clean(raw);
    let key: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    match key.as_str() {
        "user" | "standarduser" | "member" | "enduser" => Ok("user".to_string()),
        "organizationadmin" | "organisationadmin" | "orgadmin" | "admin" | "tenantadmin" => {
            Ok("organization-admin".to_string())
        }
        _ => Err(format!(
            "`{value}` is not a known role (user, organization-admin)"
        )),
    }
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

    #[test]
    fn emails_are_lowercased_and_never_repaired() {
        assert_eq!(
            email("  Ann.Lee@Example.COM ").unwrap(),
            "ann.lee@example.com"
        );
        for bad in [
            "ann lee@example.com",
            "ann.example.com",
            "mailto:ann@example.com",
            "ann@@example.com",
            "ann@example",
            "ann@-example.com",
            ".ann@example.com",
            "anné@example.com",
            "ann@example.c",
            "",
        ] {
            assert!(email(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn idn_domains_become_ascii() {
        assert!(
            email("jörg@bücher.de").is_err(),
            "a non-ASCII local part is refused"
        );
        assert_eq!(email("ann@bücher.de").unwrap(), "ann@xn--bcher-kva.de");
        assert_eq!(
            email("ann@xn--bcher-kva.de").unwrap(),
            "ann@xn--bcher-kva.de"
        );
    }

    #[test]
    fn email_messages_say_what_is_wrong() {
        assert_eq!(
            email("ann.example.com").unwrap_err(),
            "`ann.example.com` has no `@`"
        );
        assert!(email("ann @x.io").unwrap_err().contains("contains a space"));
    }

    #[test]
    fn phones_keep_digits_and_international_prefix() {
        assert_eq!(phone("+44 (20) 7946-0958").unwrap(), "+442079460958");
        assert_eq!(phone("0044 20 7946 0958").unwrap(), "+442079460958");
        assert_eq!(phone("(415) 555-0123").unwrap(), "4155550123");
        assert!(phone("call me").is_err());
        assert!(phone("12").is_err());
    }

    #[test]
    fn roles_map_synonyms_and_refuse_others() {
        assert_eq!(role("Standard User").unwrap(), "user");
        assert_eq!(role("org_admin").unwrap(), "organization-admin");
        assert_eq!(role("Organisation-Admin").unwrap(), "organization-admin");
        assert!(role("superuser").is_err());
    }

    #[test]
    fn normalising_twice_equals_once() {
        for raw in [" A@B.io ", "+1 415 555 0123", "00 33 1 23 45 67 89"] {
            if let Ok(once) = email(raw) {
                assert_eq!(email(&once).unwrap(), once);
            }
            if let Ok(once) = phone(raw) {
                assert_eq!(phone(&once).unwrap(), once);
            }
        }
        assert_eq!(clean(&clean(" x\u{a0}")), clean(" x\u{a0}"));
    }
}
