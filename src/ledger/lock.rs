//! One run per ledger: an advisory lock on `<ledger>.lock`, so overlapping cron runs cannot
//! double-send. The kernel drops the lock when its holder exits, however it exits, so a lock
//! file left by a killed run is simply taken over.

use crate::error::RunError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The held lock; released on drop.
#[derive(Debug)]
pub struct LedgerLock {
    _file: File,
    path: PathBuf,
}

impl LedgerLock {
    /// Where the lock for `ledger` lives.
    pub fn path_for(ledger: &Path) -> PathBuf {
        let mut name = ledger.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock for `ledger`, or says which process holds it.
    pub fn acquire(ledger: &Path) -> Result<LedgerLock, RunError> {
        let path = Self::path_for(ledger);
        let err = |message: String| RunError::Ledger {
            path: ledger.to_path_buf(),
            message,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                err(format!(
                    "cannot open its lock file `{}`: {e}",
                    path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("pid {holder}")
                };
                return Err(err(format!(
                    "is locked by another roster run ({who}) (hint: wait for it to finish; overlapping runs would double-send)"
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(err(format!("cannot lock `{}`: {e}", path.display())));
            }
        }
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|_| file.flush());
        written.map_err(|e| err(format!("cannot write its lock file: {e}")))?;
        Ok(LedgerLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("l.sqlite");
        let first = LedgerLock::acquire(&ledger).unwrap();
        let refused = LedgerLock::acquire(&ledger).unwrap_err().to_string();
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
        std::fs::write(LedgerLock::path_for(&ledger), "999999\n").unwrap();
        let lock = LedgerLock::acquire(&ledger).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }
}
