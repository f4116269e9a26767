//! One run per ledger, whatever name reaches it.
//!
//! The lock is an advisory `flock` on the ledger file itself, so a symbolic link, a hard link
//! or a relative path to the same file all meet the same lock (the lock belongs to the file's
//! inode, not to a name). The kernel drops it when its holder exits, however it exits, so a
//! killed run never blocks the next. Beside the canonical ledger, `<ledger>.lock` names the
//! holder (pid, host, start time) for the message a second run prints; it is never followed
//! through a symbolic link.
//!
//! `flock` locks are independent of the POSIX locks SQLite takes on the same file, but closing
//! *any* descriptor of a file drops a process's POSIX locks on it: the lock is therefore kept
//! by the [`super::SqliteLedger`] it guards and released only after its connection closes.

use super::LedgerError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The held lock; released on drop.
#[derive(Debug)]
pub struct LedgerLock {
    _ledger: File,
    path: PathBuf,
}

/// The ledger's canonical path: symbolic links resolved (the file itself may not exist yet).
pub fn canonical(ledger: &Path) -> PathBuf {
    if let Ok(path) = ledger.canonicalize() {
        return path;
    }
    let parent = match ledger.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), ledger.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => ledger.to_path_buf(),
    }
}

impl LedgerLock {
    /// Where the holder's details for `ledger` live.
    pub fn path_for(ledger: &Path) -> PathBuf {
        let mut name = canonical(ledger).into_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock for `ledger` (creating the ledger file if it is new), or says which
    /// run holds it.
    pub fn acquire(ledger: &Path) -> Result<LedgerLock, LedgerError> {
        let err = |what: String, source| LedgerError::Io {
            path: ledger.to_path_buf(),
            what,
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(ledger)
            .map_err(|e| err("cannot open it".into(), e))?;
        let path = Self::path_for(ledger);
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&path);
                let who = match holder.trim() {
                    "" => "another process".to_string(),
                    text => text.to_string(),
                };
                return Err(LedgerError::Held {
                    path: ledger.to_path_buf(),
                    holder: who,
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(err("cannot lock it".into(), e));
            }
        }
        write_holder(&path).map_err(|e| {
            err(
                format!("cannot write its lock file `{}`", path.display()),
                e,
            )
        })?;
        Ok(LedgerLock {
            _ledger: file,
            path,
        })
    }

    /// The file naming the holder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn nofollow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(crate::files::NOFOLLOW);
    }
    options
}

fn read_holder(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = nofollow(OpenOptions::new().read(true)).open(path) {
        let _ = Read::by_ref(&mut file).take(512).read_to_string(&mut text);
    }
    text
}

/// Writes `pid N on HOST since TIME` into the holder file (replacing a symbolic link's
/// target is refused: the file is opened without following one).
fn write_holder(path: &Path) -> std::io::Result<()> {
    let mut file =
        nofollow(OpenOptions::new().write(true).create(true).truncate(true)).open(path)?;
    let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    writeln!(
        file,
        "{}",
        holder_text(std::process::id(), &hostname(), &since.to_string())
    )?;
    file.flush()
}

/// This machine's name ("" when it cannot be read).
pub fn hostname() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    host.trim().to_string()
}

/// `pid N on HOST since TIME`: who holds a ledger, as a second run is told.
pub fn holder_text(pid: u32, host: &str, since: &str) -> String {
    let host = match host {
        "" => String::new(),
        h => format!(" on {h}"),
    };
    format!("pid {pid}{host} since {since}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("l.sqlite");
        let first = LedgerLock::acquire(&ledger).unwrap();
        let refused = LedgerLock::acquire(&ledger).unwrap_err();
        assert_eq!(refused.exit_code(), 4);
        let refused = refused.to_string();
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(first);
        LedgerLock::acquire(&ledger).expect("free again once released");
    }

    #[test]
    fn a_stale_lock_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("l.sqlite");
        std::fs::write(LedgerLock::path_for(&ledger), "pid 999999\n").unwrap();
        let lock = LedgerLock::acquire(&ledger).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert!(
            text.starts_with(&format!("pid {}", std::process::id())),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_and_hard_links_meet_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("l.sqlite");
        let held = LedgerLock::acquire(&ledger).unwrap();
        let soft = dir.path().join("soft.sqlite");
        std::os::unix::fs::symlink(&ledger, &soft).unwrap();
        let hard = dir.path().join("hard.sqlite");
        std::fs::hard_link(&ledger, &hard).unwrap();
        for other in [&soft, &hard] {
            let refused = LedgerLock::acquire(other).unwrap_err();
            assert_eq!(refused.exit_code(), 4, "{}: {refused}", other.display());
        }
        drop(held);
        LedgerLock::acquire(&hard).expect("free once released");
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_at_the_lock_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("l.sqlite");
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, LedgerLock::path_for(&ledger)).unwrap();
        assert!(LedgerLock::acquire(&ledger).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }
}
