-- The results ledger (SQLite). PRAGMA user_version holds the schema's version: 5.
-- STRICT tables: a value of the wrong type is refused, not stored.
-- The CHECKs compare rather than use `IN (...)`: SQLite evaluates an IN list of three or
-- more through a temporary b-tree opened and closed for every row written (version 2's
-- checks were most of a claim's cost).

CREATE TABLE IF NOT EXISTS entries (
    target           TEXT    NOT NULL,
    identity         TEXT    NOT NULL,
    -- sending: claimed by a run that has not recorded its end; unsent: claimed, then
    -- released unsent when the run stopped.
    state            TEXT    NOT NULL CHECK (state = 'sending' OR state = 'created'
                                             OR state = 'exists' OR state = 'rejected'
                                             OR state = 'failed' OR state = 'invalid'
                                             OR state = 'unsent'),
    remote_id        TEXT,
    http_status      INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    content_hash     INTEGER,
    first_attempt_ms INTEGER,
    last_attempt_ms  INTEGER,
    updated_ms       INTEGER NOT NULL,
    source_file      TEXT,
    source_row       INTEGER,
    run_id           INTEGER,
    errors           TEXT,
    response_body    TEXT,
    -- A create may have reached the target without roster learning its outcome.
    uncertain        INTEGER NOT NULL DEFAULT 0 CHECK (uncertain = 0 OR uncertain = 1),
    -- Recorded created after the target said it exists: probably roster's, not certainly.
    unconfirmed      INTEGER NOT NULL DEFAULT 0 CHECK (unconfirmed = 0 OR unconfirmed = 1),
    -- The generated password's line could not be written: the next run writes it.
    password_owed    INTEGER NOT NULL DEFAULT 0 CHECK (password_owed = 0 OR password_owed = 1),
    PRIMARY KEY (target, identity)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT    NOT NULL,
    source_file TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    summary     TEXT
) STRICT;

-- What roster wrote of each output (the error file), so it never overwrites a changed one.
CREATE TABLE IF NOT EXISTS outputs (
    path        TEXT    PRIMARY KEY,
    length      INTEGER NOT NULL,
    hash        INTEGER NOT NULL,
    written_ms  INTEGER NOT NULL
) STRICT;

-- Claims of identities new to the ledger, a row per claim batch (src/ledger/claims.rs): the
-- batch's people in one BLOB, committed before any of them is sent. A person's entry is
-- written when its result comes; a batch is deleted with the last of its people's results,
-- and one left by a run that crashed is folded into `entries` as `sending` before any read.
CREATE TABLE IF NOT EXISTS claims (
    id          INTEGER PRIMARY KEY,
    target      TEXT    NOT NULL,
    run_id      INTEGER NOT NULL,
    source_file TEXT    NOT NULL,
    claimed_ms  INTEGER NOT NULL,
    people      BLOB    NOT NULL
) STRICT;

-- Results of submissions, a row per commit (src/ledger/results.rs): the commit's results in
-- one BLOB, durable before any of them is reported, folded into `entries` in key order every
-- 65,536 results, at the end of the run, and (one a crashed run left) before any read.
CREATE TABLE IF NOT EXISTS results (
    id          INTEGER PRIMARY KEY,
    target      TEXT    NOT NULL,
    run_id      INTEGER NOT NULL,
    source_file TEXT    NOT NULL,
    recorded_ms INTEGER NOT NULL,
    results     BLOB    NOT NULL
) STRICT;
