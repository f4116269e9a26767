//! libphonenumber's per-region rules, compiled once per region into plain anchored regexes.
//!
//! The `phonenumber` crate keeps every pattern behind one `Mutex`-guarded cache of 100
//! compiled regexes, far fewer than the metadata holds, so under a file of mixed countries it
//! recompiles constantly and two threads queue on the lock (about 120k numbers/s, flat under
//! rayon). The metadata itself is the crate's; this module only compiles it differently: each
//! region's patterns on first use, kept for the life of the process and shared read-only.
//! The patterns asked of every number (validity, leading digits) are full DFAs, which match
//! from any thread with no cache: `regex::Regex` hands each search a cache from a pool, and
//! every thread but the first to use a regex takes the pool's slow path (~2.5 % of a
//! validation's CPU on two threads). All of a region's DFAs build in well under 2 ms.

use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};
use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::{Anchored, Input};
use std::collections::HashMap;
use std::sync::OnceLock;

/// One kind of number (fixed line, mobile…): the lengths it may have and its pattern.
struct Kind {
    /// Bit `n` set when a national number of `n` digits is possible; 0 means any length.
    lengths: u32,
    pattern: Matcher,
}

impl Kind {
    fn new(desc: &Descriptor) -> Kind {
        let lengths = desc
            .possible_length()
            .iter()
            .filter(|&&n| n < 32)
            .fold(0u32, |bits, &n| bits | 1 << n);
        Kind {
            lengths,
            pattern: Matcher::new(&format!("^(?:{})$", desc.national_number().as_str())),
        }
    }

    fn matches(&self, national: &str) -> bool {
        let length_ok =
            self.lengths == 0 || (national.len() < 32 && self.lengths & (1 << national.len()) != 0);
        length_ok && self.pattern.is_match(national)
    }
}

/// What it takes to read and validate numbers of one region.
pub(crate) struct Region {
    /// ISO 3166-1 alpha-2 code (or "001" for non-geographic numbers).
    pub id: &'static str,
    /// The country calling code.
    pub country_code: u16,
    general: Kind,
    /// Every number kind that makes a number valid, the common ones first.
    kinds: Vec<Kind>,
    /// Which national numbers belong to this region when several share a calling code.
    leading_digits: Option<Matcher>,
    /// The trunk prefix dialled before national numbers ("0", "1"…), anchored at the start.
    national_prefix: Option<Regex>,
    /// How a matched trunk prefix is rewritten (a few regions keep part of it).
    transform: Option<&'static str>,
    /// The trunk prefix as dialled ("0"), without the carrier codes the parsing rule allows.
    plain_prefix: Option<&'static str>,
    /// The prefix dialled to call abroad from this region ("011", "00"…), anchored.
    international_prefix: Option<Regex>,
}

impl Region {
    fn new(meta: &'static Metadata) -> Region {
        let d = meta.descriptors();
        let kinds = number_kinds(meta).map(Kind::new).collect();
        let prefix_pattern = meta
            .national_prefix_for_parsing()
            .map(|r| r.as_str().to_string())
            .or_else(|| meta.national_prefix().map(regex::escape));
        Region {
            id: meta.id(),
            country_code: meta.country_code(),
            general: Kind::new(d.general()),
            kinds,
            leading_digits: meta
                .leading_digits()
                .map(|r| Matcher::new(&format!("^(?:{})", r.as_str()))),
            national_prefix: prefix_pattern.map(|p| compile(&format!("^(?:{p})"))),
            transform: meta.national_prefix_transform_rule(),
            plain_prefix: meta.national_prefix().filter(|p| !p.is_empty()),
            international_prefix: meta
                .international_prefix()
                .map(|r| compile(&format!("^(?:{})", r.as_str()))),
        }
    }

    /// The trunk prefix as dialled, for tests that write numbers as people at home do.
    #[cfg(test)]
    pub fn national_prefix_for_test(&self) -> &'static str {
        self.plain_prefix.unwrap_or("")
    }

    /// Whether `national` is a valid number here (libphonenumber's `isValidNumber`: the
    /// general pattern and at least one number kind).
    pub fn is_valid(&self, national: &str) -> bool {
        self.general.matches(national) && self.kinds.iter().any(|k| k.matches(national))
    }

    /// Whether `national` looks like one of this region's numbers by its leading digits
    /// (regions sharing a calling code); `None` when the region has no such rule.
    pub fn claims(&self, national: &str) -> Option<bool> {
        self.leading_digits.as_ref().map(|r| r.is_match(national))
    }

    /// `national` without its trunk prefix, when it starts with one: first as the metadata's
    /// parsing rule reads it (which may also swallow a carrier code), then the bare prefix.
    pub fn strip_national_prefix(&self, national: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(caps) = self
            .national_prefix
            .as_ref()
            .and_then(|re| re.captures(national))
            && let Some(whole) = caps.get(0)
            && whole.end() > 0
        {
            let rest = &national[whole.end()..];
            match self.transform {
                // Some regions keep a captured part of the prefix ("$1" in libphonenumber's
                // syntax, which the regex crate shares).
                Some(rule) if caps.get(1).is_some() => {
                    let mut kept = String::new();
                    caps.expand(rule, &mut kept);
                    out.push(kept + rest);
                }
                _ => out.push(rest.to_string()),
            }
        }
        if let Some(prefix) = self.plain_prefix
            && let Some(rest) = national.strip_prefix(prefix)
            && !out.iter().any(|o| o == rest)
        {
            out.push(rest.to_string());
        }
        out
    }

    /// The digits after this region's international call prefix, when they start with it.
    pub fn after_international_prefix<'a>(&self, digits: &'a str) -> Option<&'a str> {
        let m = self.international_prefix.as_ref()?.find(digits)?;
        (m.end() > 0 && m.end() < digits.len()).then(|| &digits[m.end()..])
    }
}

/// The kinds of number a region has, in libphonenumber's own order of checks: fixed line and
/// mobile first, because nearly every real number is one of those and validity needs only
/// one match.
fn number_kinds(meta: &'static Metadata) -> impl Iterator<Item = &'static Descriptor> {
    let d = meta.descriptors();
    [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.voip(),
        d.personal_number(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
}

/// An anchored pattern compiled to a full DFA: whether a text matches, from any thread,
/// without a cache.
struct Matcher(dense::DFA<Vec<u32>>);

impl Matcher {
    fn new(pattern: &str) -> Matcher {
        // As `compile`: whitespace in the metadata is insignificant, and the texts are
        // ASCII digits, so Unicode classes would only cost states.
        let syntax = regex_automata::util::syntax::Config::new()
            .ignore_whitespace(true)
            .unicode(false)
            .utf8(false);
        let dfa = dense::Builder::new()
            .syntax(syntax)
            .configure(dense::Config::new().start_kind(StartKind::Anchored))
            .build(pattern)
            .unwrap_or_else(|e| panic!("libphonenumber pattern does not compile: {e}"));
        Matcher(dfa)
    }

    /// Whether `text` matches from its start (and to its end, where the pattern says `$`).
    fn is_match(&self, text: &str) -> bool {
        let input = Input::new(text).anchored(Anchored::Yes).earliest(true);
        // A DFA built without a size limit, searched without quit bytes, cannot fail.
        matches!(self.0.try_search_fwd(&input), Ok(Some(_)))
    }
}

fn compile(pattern: &str) -> Regex {
    // The metadata's patterns are written with insignificant whitespace; they only ever see
    // ASCII digits, so Unicode classes would only cost time.
    RegexBuilder::new(pattern)
        .ignore_whitespace(true)
        .unicode(false)
        .build()
        .unwrap_or_else(|e| panic!("libphonenumber pattern does not compile: {e}"))
}

/// Every region of the metadata, each compiled on first use.
struct Table {
    metas: Vec<&'static Metadata>,
    compiled: Vec<OnceLock<Region>>,
    /// Two-letter ids ("GB") by their letters, for a lookup per row without hashing.
    by_alpha2: Vec<Option<usize>>,
    /// The other ids ("001", the non-geographic numbers).
    by_other_id: HashMap<&'static str, usize>,
    /// Regions per calling code (index: the code, at most 999), the code's main country
    /// first.
    by_code: Vec<Vec<usize>>,
}

/// The slot of a two-letter upper-case id in [`Table::by_alpha2`].
fn alpha2_slot(id: &str) -> Option<usize> {
    match *id.as_bytes() {
        [a @ b'A'..=b'Z', b @ b'A'..=b'Z'] => {
            Some(usize::from(a - b'A') * 26 + usize::from(b - b'A'))
        }
        _ => None,
    }
}

impl Table {
    fn index_of(&self, id: &str) -> Option<usize> {
        match alpha2_slot(id) {
            Some(slot) => self.by_alpha2[slot],
            None => self.by_other_id.get(id).copied(),
        }
    }
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut metas: Vec<&'static Metadata> = DATABASE.iter().collect();
        metas.sort_by_key(|m| (m.country_code(), !m.is_main_country_for_code(), m.id()));
        let mut by_alpha2 = vec![None; 26 * 26];
        let mut by_other_id = HashMap::new();
        let mut by_code: Vec<Vec<usize>> = vec![Vec::new(); 1000];
        for (i, m) in metas.iter().enumerate() {
            match alpha2_slot(m.id()) {
                Some(slot) => by_alpha2[slot] = Some(i),
                None => {
                    by_other_id.insert(m.id(), i);
                }
            }
            if let Some(regions) = by_code.get_mut(usize::from(m.country_code())) {
                regions.push(i);
            }
        }
        let compiled = metas.iter().map(|_| OnceLock::new()).collect();
        Table {
            metas,
            compiled,
            by_alpha2,
            by_other_id,
            by_code,
        }
    })
}

fn region_at(index: usize) -> &'static Region {
    let t = table();
    t.compiled[index].get_or_init(|| Region::new(t.metas[index]))
}

/// The region with ISO code `id` ("GB"), if the metadata has it.
pub(crate) fn region(id: &str) -> Option<&'static Region> {
    table().index_of(id).map(region_at)
}

/// The regions sharing calling code `code`, the main country first.
pub(crate) fn regions_for_code(code: u16) -> Option<impl Iterator<Item = &'static Region> + Clone> {
    let indexes = table().by_code.get(usize::from(code))?;
    (!indexes.is_empty()).then(|| indexes.iter().map(|&i| region_at(i)))
}

/// Whether `id` is a region the metadata knows (cheap: nothing is compiled).
pub(crate) fn is_known_region(id: &str) -> bool {
    table().index_of(id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digit strings of every length a national number has, many starting like real ones
    /// (each region's example numbers with digits changed), so most patterns see matches
    /// and near misses alike.
    fn candidates(meta: &Metadata, rng: &mut fastrand::Rng) -> Vec<String> {
        let d = meta.descriptors();
        let examples: Vec<String> = [d.fixed_line(), d.mobile(), d.toll_free(), d.voip()]
            .into_iter()
            .flatten()
            .filter_map(|k| k.example().map(str::to_string))
            .collect();
        let mut out = Vec::new();
        for example in &examples {
            out.push(example.clone());
            for _ in 0..20 {
                let mut digits: Vec<u8> = example.bytes().collect();
                let at = rng.usize(..digits.len());
                digits[at] = b'0' + rng.u8(..10);
                if rng.bool() {
                    digits.truncate(rng.usize(..=digits.len()));
                }
                out.push(String::from_utf8(digits).unwrap());
            }
        }
        for _ in 0..40 {
            let len = rng.usize(..=17);
            out.push((0..len).map(|_| char::from(b'0' + rng.u8(..10))).collect());
        }
        out
    }

    #[test]
    fn every_dfa_answers_as_the_regex_of_the_same_pattern() {
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut asked, mut matched) = (0, 0);
        for meta in DATABASE.iter() {
            let mut patterns: Vec<String> = std::iter::once(meta.descriptors().general())
                .chain(number_kinds(meta))
                .map(|k| format!("^(?:{})$", k.national_number().as_str()))
                .collect();
            patterns.extend(
                meta.leading_digits()
                    .map(|r| format!("^(?:{})", r.as_str())),
            );
            let texts = candidates(meta, &mut rng);
            for pattern in &patterns {
                let (dfa, regex) = (Matcher::new(pattern), compile(pattern));
                for text in &texts {
                    let expected = regex.is_match(text);
                    asked += 1;
                    matched += usize::from(expected);
                    assert_eq!(
                        dfa.is_match(text),
                        expected,
                        "{} `{pattern}` on {text:?}",
                        meta.id()
                    );
                }
            }
        }
        // Both answers are common, so agreeing means something.
        assert!(matched * 10 > asked, "{matched} of {asked}");
        assert!(matched * 10 < asked * 9, "{matched} of {asked}");
    }
}
