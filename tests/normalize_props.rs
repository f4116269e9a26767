//! Properties of the normalisers: they never panic on any text, and normalising twice equals
//! normalising once.

use proptest::prelude::*;
use roster::normalize;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn clean_is_idempotent(s in any::<String>()) {
        let once = normalize::clean(&s);
        prop_assert_eq!(normalize::clean(&once), once);
    }

    #[test]
    fn email_never_panics_and_is_idempotent(s in any::<String>()) {
        if let Ok(once) = normalize::email(&s) {
            prop_assert_eq!(normalize::email(&once), Ok(once.clone()));
            prop_assert!(once.rsplit_once('@').unwrap().1.is_ascii(), "domain sent as ASCII: {}", once);
        }
    }

    #[test]
    fn plausible_emails_are_idempotent(local in "[A-Za-z0-9._%+-]{1,20}", domain in "[a-zA-Zäöü0-9-]{1,12}", tld in "[a-z]{2,6}") {
        let raw = format!(" {local}@{domain}.{tld}\u{a0}");
        if let Ok(once) = normalize::email(&raw) {
            prop_assert_eq!(normalize::email(&once), Ok(once.clone()));
            prop_assert!(once.is_ascii(), "{}", once);
        }
    }

    #[test]
    fn phone_never_panics_and_is_idempotent(s in any::<String>()) {
        if let Ok(once) = normalize::phone(&s) {
            prop_assert_eq!(normalize::phone(&once), Ok(once.clone()));
            prop_assert!(once.trim_start_matches('+').chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn plausible_phones_are_idempotent(s in "(\\+|00)?[0-9 ()./-]{4,24}") {
        if let Ok(once) = normalize::phone(&s) {
            prop_assert_eq!(normalize::phone(&once), Ok(once.clone()));
        }
    }

    #[test]
    fn role_never_panics_and_is_idempotent(s in any::<String>()) {
        if let Ok(once) = normalize::role(&s) {
            prop_assert_eq!(normalize::role(&once), Ok(once.clone()));
        }
    }
}
