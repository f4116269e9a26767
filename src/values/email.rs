//! Email addresses: trimmed and lower-cased, checked strictly, never repaired; international
//! domains sent as ASCII.

use super::clean;

/// Normalises an email address: trimmed and lower-cased, never otherwise repaired.
/// The error is a message for the person who will fix the cell.
pub fn email(raw: &str) -> Result<String, String> {
    let mut value = clean(raw);
    // Lower-cased in place where it can be (ASCII, nearly every address): one allocation.
    if value.is_ascii() {
        value.make_ascii_lowercase();
    } else {
        value = value.to_lowercase();
    }
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

/// What the part before `@` may hold besides ASCII letters and digits (RFC 5322 atext, and dots).
const LOCAL_SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~.-";

fn check_email(value: &str) -> Result<(), String> {
    if plainly_valid(value.as_bytes()) {
        return Ok(());
    }
    explain(value)
}

/// The common case in one pass: an ASCII address that every rule of [`explain`] accepts.
/// Anything else (a problem, a punycode label to decode) goes to [`explain`], which finds the
/// same verdict with its message; this only ever says yes where it would.
fn plainly_valid(value: &[u8]) -> bool {
    let Some(at) = value.iter().rposition(|&b| b == b'@') else {
        return false;
    };
    let (local, domain) = (&value[..at], &value[at + 1..]);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        // (`mailto:` needs no rule of its own here: `:` is not allowed.)
        && local[0] != b'.'
        && local[local.len() - 1] != b'.'
        && local.windows(2).all(|w| w != b"..")
        && local
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(&b));
    if !local_ok || value.len() > 254 || domain.is_empty() {
        return false;
    }
    let mut labels = 0;
    for label in domain.split(|&b| b == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label[0] != b'-'
            && label[label.len() - 1] != b'-'
            && !label.starts_with(b"xn--")
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return false;
        }
        labels += 1;
    }
    let tld = domain.rsplit(|&b| b == b'.').next().unwrap_or_default();
    labels >= 2 && tld.len() >= 2 && !tld.iter().all(u8::is_ascii_digit)
}

/// Every rule, in order, with the message for the first one `value` breaks.
fn explain(value: &str) -> Result<(), String> {
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
        .all(|b| b.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(&b));
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
    for label in domain.split('.') {
        lookalike(value, label)?;
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

/// Refuses a domain label that mixes scripts (UTS #39 single-script, with the augmented
/// sets that let Japanese mix Han and kana): `exаmple` with a Cyrillic `а` looks like
/// `example` and is someone else's domain. A punycode label is judged by what it decodes to.
fn lookalike(value: &str, label: &str) -> Result<(), String> {
    use unicode_security::MixedScript;
    use unicode_security::mixed_script::AugmentedScriptSet;
    let decoded;
    let label = match label.strip_prefix("xn--") {
        Some(_) => {
            let (unicode, result) = idna::domain_to_unicode(label);
            if result.is_err() {
                return Ok(()); // not valid punycode: the IDNA conversion refuses it
            }
            decoded = unicode;
            decoded.as_str()
        }
        None => label,
    };
    if label.is_ascii() || label.is_single_script() {
        return Ok(());
    }
    let mut scripts: Vec<String> = Vec::new();
    for c in label.chars() {
        let set = AugmentedScriptSet::for_char(c);
        let name = set.to_string();
        if !set.is_all() && !scripts.contains(&name) {
            scripts.push(name);
        }
    }
    Err(format!(
        "`{value}`: the domain label `{label}` mixes scripts ({}), as lookalike addresses do; type the domain in one script",
        scripts.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_check_accepts_only_what_every_rule_accepts() {
        // Addresses built from the characters each rule is about, so near misses are common.
        let pieces = [
            "a",
            "Z",
            "0",
            ".",
            "..",
            "-",
            "@",
            "@@",
            "xn--",
            "mailto:",
            " ",
            "_",
            "+",
            "é",
            "com",
            "io",
            "9",
            "a-b",
            ":",
            "x".repeat(64).leak(),
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut accepted = 0;
        for _ in 0..200_000 {
            let mut value = String::new();
            for _ in 0..rng.usize(1..9) {
                value.push_str(pieces[rng.usize(..pieces.len())]);
            }
            if rng.bool() {
                value = format!(
                    "{value}@{}.{}",
                    pieces[rng.usize(..pieces.len())],
                    pieces[rng.usize(..pieces.len())]
                );
            }
            let value = value.to_lowercase();
            if plainly_valid(value.as_bytes()) {
                accepted += 1;
                assert_eq!(explain(&value), Ok(()), "{value:?}");
            }
        }
        assert!(
            accepted > 500,
            "only {accepted} accepted: the test proves little"
        );
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
    fn lookalike_domains_mixing_scripts_are_refused() {
        // `exаmple.com` with a Cyrillic `а`, as typed and as punycode.
        for lookalike in ["ann@ex\u{430}mple.com", "ann@xn--exmple-4nf.com"] {
            let e = email(lookalike).unwrap_err();
            assert!(e.contains("mixes scripts"), "{lookalike}: {e}");
            assert!(e.contains("Cyrillic") && e.contains("Latin"), "{e}");
        }
        // One script per label is a real international domain.
        assert_eq!(
            email("ann@\u{43f}\u{440}\u{438}\u{43c}\u{435}\u{440}.\u{440}\u{444}").unwrap(),
            "ann@xn--e1afmkfd.xn--p1ai"
        );
        assert!(
            email("ann@\u{6771}\u{4eac}\u{30c6}\u{30b9}\u{30c8}.jp").is_ok(),
            "Japanese mixes Han and Katakana"
        );
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
}
