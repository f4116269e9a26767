//! Generated passwords for `--generate-passwords`, and the file they are handed over in.
//!
//! A generated password is *derived*, not drawn afresh each run: HMAC-SHA256 of the target's
//! ledger key and the person's identity under a 256-bit key from the operating system's
//! CSPRNG, kept in a file only its owner can read beside the ledger (`<ledger>.key`). So the
//! password a create carried can always be recomputed: a resend after a lost answer, a
//! SIGINT or a SIGKILL carries the *same* password (and so the same `Idempotency-Key` body),
//! and a password line lost to a full disk is written by the next run. Nothing per row has
//! to reach the disk before its request leaves; the key does, once, before anything is sent.
//!
//! The password file they are handed over in is [`crate::report::PasswordFile`].

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Characters a generated password is drawn from: no look-alikes (`0O1lI`), and symbols that
/// survive CSV, shells and form encoding without quoting trouble.
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"!#%+-.:=?@^_~";

/// Length of a generated password (about 120 bits of entropy).
pub const LENGTH: usize = 20;

/// Bytes of a password key.
const KEY_BYTES: usize = 32;

/// A password from `bytes`, or `None` when they do not give one that meets the policy (at
/// least one lower-case letter, upper-case letter, digit and symbol, a letter first: a cell
/// starting with `=`, `+`, `-` or `@` is a formula to Excel).
fn password_from(bytes: &[u8]) -> Option<String> {
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % all.len();
    let password: String = bytes
        .iter()
        .filter(|&&b| (b as usize) < limit)
        .map(|&b| all[b as usize % all.len()] as char)
        .take(LENGTH)
        .collect();
    let has = |set: &[u8]| password.bytes().any(|b| set.contains(&b));
    let letter_first = password
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic());
    (password.len() == LENGTH
        && letter_first
        && has(LOWER)
        && has(UPPER)
        && has(DIGITS)
        && has(SYMBOLS))
    .then_some(password)
}

/// A new random password, not derived (for tools and tests).
pub fn generate() -> String {
    loop {
        let mut bytes = [0u8; LENGTH * 2];
        getrandom::fill(&mut bytes).expect("the operating system's random source works");
        if let Some(password) = password_from(&bytes) {
            return password;
        }
    }
}

/// Why the password key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("password key `{path}`: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds something else than a key.
    #[error(
        "password key `{path}` is damaged (it must hold 64 hex digits); move it away only if no earlier run left people unconfirmed"
    )]
    Damaged {
        /// The key file.
        path: PathBuf,
    },
}

/// The key generated passwords are derived from; its bytes never print.
pub struct PasswordKey {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for PasswordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordKey(***)")
    }
}

impl PasswordKey {
    /// A key that lives only in memory (validation and dry runs: nothing is sent).
    pub fn ephemeral() -> PasswordKey {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).expect("the operating system's random source works");
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> PasswordKey {
        PasswordKey {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes),
        }
    }

    /// Where the key of the ledger at `ledger` lives: beside a SQLite file; for a PostgreSQL
    /// ledger, `roster-ledger.key` in the working directory.
    pub fn path_for_ledger(ledger: &crate::ledger::LedgerLocation) -> PathBuf {
        match ledger {
            crate::ledger::LedgerLocation::Sqlite(path) => Self::path_for(path),
            // A key in the shared database would let every reader of the ledger derive the
            // passwords: it stays a file where the job runs.
            crate::ledger::LedgerLocation::Postgres(_) => PathBuf::from("roster-ledger.key"),
        }
    }

    /// Where the key for the SQLite ledger at `ledger` lives: `<ledger>.key`.
    pub fn path_for(ledger: &Path) -> PathBuf {
        let mut name = ledger.as_os_str().to_owned();
        name.push(".key");
        PathBuf::from(name)
    }

    /// Reads the key at `path`, or creates it (mode 0600, synced to disk with its directory
    /// entry before this returns, so no password derived from it can be lost).
    pub fn load_or_create(path: &Path) -> Result<PasswordKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(crate::files::NOFOLLOW);
        }
        match options.open(path) {
            Ok(mut file) => {
                let mut bytes = [0u8; KEY_BYTES];
                getrandom::fill(&mut bytes).expect("the operating system's random source works");
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                file.write_all(hex.as_bytes()).map_err(io)?;
                file.write_all(b"\n").map_err(io)?;
                file.sync_all().map_err(io)?;
                sync_parent(path).map_err(io)?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut text = String::new();
                let mut options = OpenOptions::new();
                options.read(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.custom_flags(crate::files::NOFOLLOW);
                }
                options
                    .open(path)
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .map_err(io)?;
                let hex = text.trim();
                let bytes: Option<Vec<u8>> = (hex.len() == KEY_BYTES * 2)
                    .then(|| {
                        (0..KEY_BYTES)
                            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                            .collect()
                    })
                    .flatten();
                match bytes {
                    Some(bytes) => Ok(Self::from_bytes(&bytes)),
                    None => Err(KeyError::Damaged {
                        path: path.to_path_buf(),
                    }),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The password of `identity` at the target whose ledger key is `scope`: the same for the
    /// same key, scope and identity, every time.
    pub fn derive(&self, scope: &str, identity: &str) -> String {
        for counter in 0u32.. {
            let mut context = ring::hmac::Context::with_key(&self.key);
            context.update(b"roster generated password v1\0");
            context.update(scope.as_bytes());
            context.update(b"\0");
            context.update(identity.as_bytes());
            context.update(b"\0");
            context.update(&counter.to_le_bytes());
            // Two blocks give enough bytes for the rejection sampling.
            let first = context.sign();
            let mut again = ring::hmac::Context::with_key(&self.key);
            again.update(first.as_ref());
            let second = again.sign();
            let bytes = [first.as_ref(), second.as_ref()].concat();
            if let Some(password) = password_from(&bytes) {
                return password;
            }
        }
        unreachable!("a counter finds a password long before it wraps")
    }
}

/// Syncs the directory holding `path`, so a new file's name is on disk too.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_mixed_and_different() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), LENGTH);
        assert_ne!(a, b);
        assert!(a.bytes().any(|c| c.is_ascii_digit()));
        assert!(a.bytes().any(|c| SYMBOLS.contains(&c)));
    }

    #[test]
    fn derived_passwords_are_stable_per_key_scope_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite.key");
        let key = PasswordKey::load_or_create(&path).unwrap();
        let a = key.derive("t@x", "a@x.io");
        assert_eq!(a.len(), LENGTH);
        assert!(a.bytes().next().unwrap().is_ascii_alphabetic());
        for set in [LOWER, UPPER, DIGITS, SYMBOLS] {
            assert!(a.bytes().any(|b| set.contains(&b)), "{a}");
        }
        assert_eq!(a, key.derive("t@x", "a@x.io"), "the same every time");
        assert_ne!(a, key.derive("t@x", "b@x.io"));
        assert_ne!(a, key.derive("u@x", "a@x.io"));
        let again = PasswordKey::load_or_create(&path).unwrap();
        assert_eq!(a, again.derive("t@x", "a@x.io"), "the key file keeps it");
        assert_ne!(a, PasswordKey::ephemeral().derive("t@x", "a@x.io"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            PasswordKey::load_or_create(&path),
            Err(KeyError::Damaged { .. })
        ));
    }
}
