//! Properties of the normalisers: they never panic on any text, and normalising twice equals
//! normalising once.

use proptest::prelude::*;
use roster::values::{self, phone};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn clean_is_idempotent(s in any::<String>()) {
        let once = values::clean(&s);
        prop_assert_eq!(values::clean(&once), once);
    }

    #[test]
    fn email_never_panics_and_is_idempotent(s in any::<String>()) {
        if let Ok(once) = values::email(&s) {
            prop_assert_eq!(values::email(&once), Ok(once.clone()));
            prop_assert!(once.rsplit_once('@').unwrap().1.is_ascii(), "domain sent as ASCII: {}", once);
        }
    }

    #[test]
    fn plausible_emails_are_idempotent(local in "[A-Za-z0-9._%+-]{1,20}", domain in "[a-zA-Zäöü0-9-]{1,12}", tld in "[a-z]{2,6}") {
        let raw = format!(" {local}@{domain}.{tld}\u{a0}");
        if let Ok(once) = values::email(&raw) {
            prop_assert_eq!(values::email(&once), Ok(once.clone()));
            prop_assert!(once.is_ascii(), "{}", once);
        }
    }

    #[test]
    fn phone_never_panics_and_is_idempotent(s in any::<String>(), region in "(GB|US|DE|FR|IN|BR|JP)?") {
        let region = (!region.is_empty()).then_some(region.as_str());
        if let Ok(once) = phone::to_e164(&s, region) {
            prop_assert_eq!(phone::to_e164(&once, region), Ok(once.clone()));
            prop_assert!(is_e164(&once), "{}", once);
        }
    }

    #[test]
    fn plausible_phones_come_out_as_e164(s in "(\\+|00)?[0-9 ()./-]{4,24}", region in "(GB|US|DE|FR|IN|BR|JP)?") {
        let region = (!region.is_empty()).then_some(region.as_str());
        if let Ok(once) = phone::to_e164(&s, region) {
            prop_assert!(is_e164(&once), "{}", once);
            prop_assert_eq!(phone::to_e164(&once, None), Ok(once.clone()));
        }
    }

    #[test]
    fn numbers_with_real_country_codes_come_out_as_e164(s in "(\\+|00)(1|44|49|33|34|39|91|81) ?[0-9]{2,4}[ -]?[0-9]{3,4}[ -]?[0-9]{3,5}") {
        if let Ok(once) = phone::to_e164(&s, None) {
            prop_assert!(is_e164(&once), "{}", once);
            prop_assert_eq!(phone::to_e164(&once, Some("GB")), Ok(once.clone()));
        }
    }

    #[test]
    fn role_never_panics_and_is_idempotent(s in any::<String>()) {
        if let Ok(once) = values::role(&s) {
            prop_assert_eq!(values::role(&once), Ok(once.clone()));
        }
    }
}

/// `^\+[1-9]\d{1,14}$`
fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
}
