-- The results ledger (PostgreSQL): the SQLite ledger's tables (../schema.sql), with
-- PostgreSQL's types. `roster_schema` holds the schema's version: 1.

CREATE TABLE IF NOT EXISTS entries (
    target           TEXT     NOT NULL,
    identity         TEXT     NOT NULL,
    state            TEXT     NOT NULL CHECK (state IN ('sending', 'created', 'exists',
                                                       'rejected', 'failed', 'invalid', 'unsent')),
    remote_id        TEXT,
    http_status      INTEGER,
    attempts         INTEGER  NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    content_hash     BIGINT,
    first_attempt_ms BIGINT,
    last_attempt_ms  BIGINT,
    updated_ms       BIGINT   NOT NULL,
    source_file      TEXT,
    source_row       BIGINT,
    run_id           BIGINT,
    errors           TEXT,
    response_body    TEXT,
    uncertain        BOOLEAN  NOT NULL DEFAULT FALSE,
    unconfirmed      BOOLEAN  NOT NULL DEFAULT FALSE,
    password_owed    BOOLEAN  NOT NULL DEFAULT FALSE,
    -- Identity first: a batch's lookups and updates probe it per identity. Keyed (target,
    -- identity), the planner may scan a whole target's entries per batch instead.
    PRIMARY KEY (identity, target)
-- Room in each page for the result that follows every claim: the update stays in its page
-- (a HOT update, no new index entry).
) WITH (fillfactor = 70);

-- One row per run; `host`, `pid` and `backend_pid` name the holder of a target's lock.
CREATE TABLE IF NOT EXISTS runs (
    id          BIGSERIAL PRIMARY KEY,
    target      TEXT    NOT NULL,
    source_file TEXT    NOT NULL,
    host        TEXT    NOT NULL DEFAULT '',
    pid         BIGINT  NOT NULL,
    backend_pid INTEGER,
    started_ms  BIGINT  NOT NULL,
    finished_ms BIGINT,
    summary     TEXT
);

CREATE TABLE IF NOT EXISTS outputs (
    path        TEXT    PRIMARY KEY,
    length      BIGINT  NOT NULL,
    hash        BIGINT  NOT NULL,
    written_ms  BIGINT  NOT NULL
);
