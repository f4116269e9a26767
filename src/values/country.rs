//! Country names as people write them ("United Kingdom", "UK", "Deutschland", "USA") to ISO
//! 3166-1 alpha-2 codes, for reading national phone numbers.
//!
//! English names, official names, alpha-2/alpha-3 codes and common aliases come from `celes`;
//! the table here adds what HR exports from non-English offices and everyday usage write.

use std::str::FromStr;
use unicode_normalization::UnicodeNormalization;

/// Names `celes` does not know, as folded keys (see [`fold`]) → alpha-2.
const EXTRA: &[(&str, &str)] = &[
    ("uk", "GB"),
    ("greatbritain", "GB"),
    ("britain", "GB"),
    ("england", "GB"),
    ("scotland", "GB"),
    ("wales", "GB"),
    ("northernireland", "GB"),
    ("unitedkingdom", "GB"),
    ("us", "US"),
    ("usa", "US"),
    ("unitedstates", "US"),
    ("unitedstatesofamerica", "US"),
    ("america", "US"),
    ("deutschland", "DE"),
    ("bundesrepublikdeutschland", "DE"),
    ("osterreich", "AT"),
    ("schweiz", "CH"),
    ("suisse", "CH"),
    ("svizzera", "CH"),
    ("espana", "ES"),
    ("italia", "IT"),
    ("nederland", "NL"),
    ("holland", "NL"),
    ("belgie", "BE"),
    ("belgique", "BE"),
    ("polska", "PL"),
    ("sverige", "SE"),
    ("norge", "NO"),
    ("danmark", "DK"),
    ("suomi", "FI"),
    ("eire", "IE"),
    ("portugal", "PT"),
    ("brasil", "BR"),
    ("mexico", "MX"),
    ("ceskarepublika", "CZ"),
    ("cesko", "CZ"),
    ("czechrepublic", "CZ"),
    ("magyarorszag", "HU"),
    ("ellada", "GR"),
    ("turkiye", "TR"),
    ("turkey", "TR"),
    ("russia", "RU"),
    ("southkorea", "KR"),
    ("korea", "KR"),
    ("northkorea", "KP"),
    ("vietnam", "VN"),
    ("uae", "AE"),
    ("unitedarabemirates", "AE"),
    ("hongkong", "HK"),
    ("taiwan", "TW"),
    ("iran", "IR"),
    ("bolivia", "BO"),
    ("venezuela", "VE"),
    ("tanzania", "TZ"),
    ("moldova", "MD"),
    ("laos", "LA"),
    ("syria", "SY"),
    ("ivorycoast", "CI"),
    ("cotedivoire", "CI"),
    ("nippon", "JP"),
    ("中国", "CN"),
    ("日本", "JP"),
];

/// The ISO alpha-2 code for a country as written, or `None` when it is not one.
pub fn alpha2(written: &str) -> Option<&'static str> {
    let key = fold(written);
    if key.is_empty() {
        return None;
    }
    if let Some((_, code)) = EXTRA.iter().find(|(name, _)| *name == key) {
        return Some(code);
    }
    celes::Country::from_str(&key)
        .or_else(|_| celes::Country::from_alias(&key))
        .ok()
        .map(|c| c.alpha2)
}

/// The region phone numbers are read in for a country as written (its alpha-2 code, when
/// libphonenumber has numbers for it).
pub fn phone_region(written: &str) -> Option<&'static str> {
    alpha2(written).filter(|id| crate::values::phone::is_region(id))
}

/// Lower case, diacritics dropped, only letters and digits kept: "España" → "espana",
/// "U.S.A." → "usa", "Côte d'Ivoire" → "cotedivoire".
fn fold(written: &str) -> String {
    if written.is_ascii() {
        return written
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
    }
    written
        .nfd()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_codes_and_native_spellings() {
        for (written, code) in [
            ("United Kingdom", "GB"),
            ("UK", "GB"),
            ("U.K.", "GB"),
            ("GB", "GB"),
            ("GBR", "GB"),
            ("Deutschland", "DE"),
            ("Germany", "DE"),
            ("España", "ES"),
            ("Spain", "ES"),
            ("USA", "US"),
            ("United States", "US"),
            ("us", "US"),
            ("France", "FR"),
            ("fr", "FR"),
            ("India", "IN"),
            ("Österreich", "AT"),
            ("Côte d'Ivoire", "CI"),
            ("the Netherlands", "NL"),
        ] {
            assert_eq!(alpha2(written), Some(code), "{written}");
        }
    }

    #[test]
    fn unknown_names_are_none() {
        for written in ["Narnia", "", "  ", "Remote"] {
            assert_eq!(alpha2(written), None, "{written}");
        }
    }
}
