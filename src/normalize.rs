//! Turning raw cells into canonical values, or saying precisely why a value cannot be one.
//!
//! Every function here is idempotent: normalising a normalised value changes nothing.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Trims all Unicode whitespace (including NBSP) and puts the text in Unicode NFC.
/// Nothing inside the value is changed otherwise.
pub fn clean(raw: &str) -> String {
    let trimmed = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
    // A quoted cell may span lines ("Sales\nEMEA"): one space for each run of line breaks
    // and tabs, as the cell reads on one line.
    let folded;
    let trimmed = if trimmed.bytes().any(|b| matches!(b, b'\t' | b'\r' | b'\n')) {
        folded = fold_breaks(trimmed);
        folded.as_str()
    } else {
        trimmed
    };
    if trimmed.is_ascii() || is_nfc_quick(trimmed.chars()) == IsNormalized::Yes {
        trimmed.to_string()
    } else {
        trimmed.nfc().collect()
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
    let value = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
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
    value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        .map(|c| format!("holds a control character (U+{:04X}); remove it", c as u32))
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

/// How this run reads cells beyond the fixed rules: the default region for national phone
/// numbers and the user's own role synonyms.
#[derive(Debug, Clone, Default)]
pub struct Conventions {
    /// ISO alpha-2 region for phone numbers written without a country code, when the row has
    /// no country (`--region`).
    pub region: Option<String>,
    /// Role synonyms (folded as [`role_key`]) → the role they stand for, checked before the
    /// built-in table (`--role-synonym "Team Lead=user"`, the config's `[role_synonyms]`).
    role_synonyms: Vec<(String, String)>,
}

impl Conventions {
    /// Adds a synonym; later ones win.
    pub fn add_role_synonym(&mut self, synonym: &str, role: &str) {
        self.role_synonyms
            .insert(0, (role_key(synonym), role.trim().to_string()));
    }

    /// The role a cell stands for under the user's synonyms, or the cell itself.
    pub fn role<'a>(&'a self, raw: &'a str) -> &'a str {
        if self.role_synonyms.is_empty() {
            return raw;
        }
        let key = role_key(raw);
        self.role_synonyms
            .iter()
            .find(|(synonym, _)| *synonym == key)
            .map_or(raw, |(_, role)| role.as_str())
    }
}

/// A role as compared with synonyms: case, spaces, `-` and `_` do not matter.
pub fn role_key(raw: &str) -> String {
    clean(raw)
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Maps a role (or one of its common synonyms) to the canonical `user` or `organization-admin`;
/// anything else is refused, never guessed.
pub fn role(raw: &str) -> Result<String, String> {
    let value = clean(raw);
    let key = role_key(&value);
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
    fn roles_map_synonyms_and_refuse_others() {
        assert_eq!(role("Standard User").unwrap(), "user");
        assert_eq!(role("org_admin").unwrap(), "organization-admin");
        assert_eq!(role("Organisation-Admin").unwrap(), "organization-admin");
        assert!(role("superuser").is_err());
    }

    #[test]
    fn user_synonyms_come_before_the_built_in_table() {
        let mut conventions = Conventions::default();
        conventions.add_role_synonym("Team Lead", "organization-admin");
        conventions.add_role_synonym("admin", "user");
        assert_eq!(conventions.role(" team-lead "), "organization-admin");
        assert_eq!(role(conventions.role("ADMIN")).unwrap(), "user");
        assert_eq!(conventions.role("Member"), "Member");
    }

    #[test]
    fn normalising_twice_equals_once() {
        for raw in [" A@B.io ", "+1 415 555 0123", "00 33 1 23 45 67 89"] {
            if let Ok(once) = email(raw) {
                assert_eq!(email(&once).unwrap(), once);
            }
        }
        assert_eq!(clean(&clean(" x\u{a0}")), clean(" x\u{a0}"));
    }
}
