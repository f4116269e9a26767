//! Redaction by value: every secret roster knows (credentials, tokens, password cells,
//! generated passwords) is replaced by `***` wherever it would be printed or stored, under
//! whatever key it travels and in whatever a server echoes back.

use std::borrow::Cow;

/// Shorter values are not redacted: `***` in place of every `abc` would garble messages
/// without protecting anything a guess would not find.
pub const MIN_SECRET_LEN: usize = 4;

/// The secret values to replace, each also in the spellings a server may echo it in (JSON
/// string escapes, form encoding).
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.needles.len())
    }
}

impl Redactor {
    /// A redactor for `secrets` (values shorter than [`MIN_SECRET_LEN`] are left out).
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Redactor {
        let mut redactor = Redactor::default();
        for secret in secrets {
            redactor.add(secret.as_ref());
        }
        redactor
    }

    /// Adds `secret`, in its echoed spellings too.
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for spelling in [secret.to_string(), json, form] {
            if !self.needles.contains(&spelling) {
                self.needles.push(spelling);
            }
        }
        // Longest first, so that a secret containing another is replaced whole.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// This redactor with `secret` added.
    pub fn with(&self, secret: Option<&str>) -> Redactor {
        let mut more = self.clone();
        if let Some(secret) = secret {
            more.add(secret);
        }
        more
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), "***"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_in_every_spelling_and_short_values_left() {
        let r = Redactor::new(["pa\"ss word", "abc"]);
        assert_eq!(r.scrub("x pa\"ss word y"), "x *** y");
        assert_eq!(r.scrub(r#"{"pwd":"pa\"ss word"}"#), r#"{"pwd":"***"}"#);
        assert_eq!(r.scrub("pwd=pa%22ss+word&x=1"), "pwd=***&x=1");
        assert_eq!(r.scrub("abc"), "abc");
        assert!(matches!(r.scrub("nothing here"), Cow::Borrowed(_)));
        assert!(!format!("{r:?}").contains("pa"), "Debug shows no value");
    }
}
