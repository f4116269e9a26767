#!/usr/bin/env python3
"""A model of the SQLite ledger's writes during an import, to weigh a change before building it.

It runs the statements an import runs (a claim of 64 new identities a transaction, then the
results of 512 a transaction) on a table of the ledger's columns, with the ledger's pragmas,
and prints rows/s. Python's sqlite3 adds its own cost per statement, so compare lines of one
run with each other, not with roster's own figures.

    python3 benches/ledger_order_model.py keyed seq       # today's ledger, rows in key order
    python3 benches/ledger_order_model.py keyed shuf      # today's ledger, rows shuffled
    python3 benches/ledger_order_model.py journal shuf 20000
        # claims and results appended to a journal in arrival order, folded into the keyed
        # table in key order every 20,000 settled rows (not built; issue 18's next step)
"""

import os
import random
import sqlite3
import sys
import tempfile
import time

ROWS = 200_000
CLAIMS_PER_COMMIT = 64
RESULTS_PER_COMMIT = 512
TARGET = "sandbox@http://127.0.0.1:18181"
COLUMNS = """state TEXT NOT NULL, remote_id TEXT, http_status INTEGER,
 attempts INTEGER NOT NULL DEFAULT 0, content_hash INTEGER, first_attempt_ms INTEGER,
 last_attempt_ms INTEGER, updated_ms INTEGER NOT NULL, source_file TEXT, source_row INTEGER,
 run_id INTEGER, errors TEXT, response_body TEXT, uncertain INTEGER NOT NULL DEFAULT 0,
 unconfirmed INTEGER NOT NULL DEFAULT 0, password_owed INTEGER NOT NULL DEFAULT 0"""
NAMES = """state, remote_id, http_status, attempts, content_hash, first_attempt_ms,
 last_attempt_ms, updated_ms, source_file, source_row, run_id, errors, response_body,
 uncertain, unconfirmed, password_owed"""


def main():
    layout, order = sys.argv[1], sys.argv[2]
    fold_every = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
    random.seed(1)
    identities = [f"person{i}@example.com" for i in range(ROWS)]
    if order == "shuf":
        random.shuffle(identities)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "model.sqlite")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=8192")
        conn.execute(
            f"CREATE TABLE entries (target TEXT NOT NULL, identity TEXT NOT NULL, {COLUMNS},"
            " PRIMARY KEY (target, identity)) STRICT, WITHOUT ROWID"
        )
        conn.execute(
            f"CREATE TABLE journal (seq INTEGER PRIMARY KEY, target TEXT NOT NULL,"
            f" identity TEXT NOT NULL, {COLUMNS}) STRICT"
        )
        table = "journal" if layout == "journal" else "entries"
        claim = (
            f"INSERT INTO {table} (target, identity, state, content_hash, updated_ms,"
            " source_file, source_row, run_id, uncertain)"
            " VALUES (?, ?, 'sending', ?, 1, 'people.csv', ?, 1, 0)"
        )
        if layout == "keyed":
            claim += " ON CONFLICT (target, identity) DO NOTHING"
        result = (
            f"UPDATE {table} SET state = 'created', remote_id = 'usr_1', http_status = 201,"
            " attempts = attempts + 1, first_attempt_ms = 1, last_attempt_ms = 1,"
            " updated_ms = 1 WHERE "
            + ("seq = ?" if layout == "journal" else "target = ? AND identity = ?")
        )
        fold = (
            f"INSERT INTO entries (target, identity, {NAMES})"
            f" SELECT target, identity, {NAMES} FROM journal WHERE state <> 'sending'"
            " ORDER BY target, identity ON CONFLICT (target, identity) DO UPDATE SET"
            " state = excluded.state, remote_id = excluded.remote_id"
        )
        started = time.time()
        unsettled, settled_since_fold = [], 0
        longest_fold = 0.0

        def record_results():
            nonlocal unsettled, settled_since_fold, longest_fold
            conn.execute("BEGIN IMMEDIATE")
            for identity, seq in unsettled:
                conn.execute(result, (seq,) if layout == "journal" else (TARGET, identity))
            settled_since_fold += len(unsettled)
            unsettled = []
            if layout == "journal" and settled_since_fold >= fold_every:
                fold_started = time.time()
                conn.execute(fold)
                conn.execute("DELETE FROM journal WHERE state <> 'sending'")
                settled_since_fold = 0
                conn.execute("COMMIT")
                # Claims wait behind a fold: its length is the longest stall of the senders.
                longest_fold = max(longest_fold, time.time() - fold_started)
            else:
                conn.execute("COMMIT")

        for first in range(0, ROWS, CLAIMS_PER_COMMIT):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(first, min(ROWS, first + CLAIMS_PER_COMMIT)):
                cursor = conn.execute(claim, (TARGET, identities[i], i, i + 2))
                unsettled.append((identities[i], cursor.lastrowid))
            conn.execute("COMMIT")
            if len(unsettled) >= RESULTS_PER_COMMIT:
                record_results()
        record_results()
        if layout == "journal":
            conn.execute(fold)
            conn.execute("DELETE FROM journal")
        elapsed = time.time() - started
        (kept,) = conn.execute("SELECT count(*) FROM entries WHERE state = 'created'").fetchone()
        assert kept == ROWS, f"{kept} of {ROWS} entries created"
        folding = f" every {fold_every:,} rows (longest fold {longest_fold * 1000:.0f} ms)"
        print(f"{layout} {order}{folding if layout == 'journal' else ''}: {ROWS / elapsed:,.0f} rows/s")


if __name__ == "__main__":
    main()
