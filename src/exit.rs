//! The exit codes roster ends with: a contract with scripts (cron, CI).
//!
//! Each tells what to do next:
//!
//! | code | meaning | what to do |
//! |---|---|---|
//! | 0 | done: every row created, present or skipped (also: stdout was closed) | nothing |
//! | 1 | rows were refused in this run | fix the error file, feed it back in |
//! | 2 | bad usage, config or unreadable input | fix the command or the file |
//! | 3 | run aborted: credentials refused, a systematic refusal, a quota | a human looks |
//! | 4 | the ledger is held by another run | skip this time |
//! | 5 | failures left that a re-run will retry (target down, wait too long, breaker, disk) | run again later |
//! | 70 | internal error: roster lost track of rows (a bug) | report it |
//! | 130 | interrupted (Ctrl-C / SIGTERM) | run again to resume |

/// Exit code: every row created, already present or skipped.
pub const EXIT_OK: i32 = 0;
/// Exit code: rows were refused in this run (error file written).
pub const EXIT_ROWS_REFUSED: i32 = 1;
/// Exit code: bad usage, configuration or unreadable input.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: run aborted (credentials refused, systematic refusal, quota exhausted).
pub const EXIT_ABORTED: i32 = 3;
/// Exit code: the ledger is held by another run.
pub const EXIT_LOCKED: i32 = 4;
/// Exit code: failures left that a re-run will retry.
pub const EXIT_RETRY_LATER: i32 = 5;
/// Exit code: an internal error (BSD `EX_SOFTWARE`): rows unaccounted for, a panic.
pub const EXIT_INTERNAL: i32 = 70;
/// Exit code: interrupted by a signal (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;
