//! Results of submissions, journaled as one row per commit and folded into `entries` in key
//! order.
//!
//! Each result used to be written into `entries` as it came. A file in no particular order
//! (most exports are sorted by anything but the identity) then put its results all over the
//! keyed b-tree: a commit of 512 results dirtied ~500 pages, and with the network stubbed a
//! shuffled 200,000-row import ran at ~36 k rows/s against ~168 k in key order
//! (`benches/import.rs`). Now a commit appends its results to `results` as one row (one
//! BLOB), durable before any of them is reported, as before. Every [`FOLD_ROWS`] results,
//! at the end of the run and before anything reads `entries`, the journal is folded: its
//! results sorted by key and each written into `entries` as it would have been written when
//! it came, so a fold visits each page of the b-tree once.
//!
//! A journal left over (a run that crashed) is folded like a claim batch, by the next run or
//! reader (`unfolded::fold`); a result's entry never depends on when it is folded.

use crate::model::{Outcome, Submission};
use rusqlite::{Connection, params};

/// Results journaled before the run folds them: the sort then needs ~10 MB (the batches'
/// bytes and a reference to each result), and a fold of this many shuffled results into a
/// ledger of 200,000 touches each leaf page about once.
pub(crate) const FOLD_ROWS: usize = 65_536;

/// Whether the file comes in the ledger's key order, judged from the identities claimed so
/// far, in file order. In key order a commit's results land on a few neighbouring pages of
/// the b-tree, and are best written at once (journaled, their fold would stall the senders
/// for nothing: 200,000 rows in key order into loopback nginx went from 50–57 k to 45–46 k
/// rows/s); in no order the journal's sorted fold writes each page once instead of once a
/// result.
#[derive(Default)]
pub(crate) struct KeyOrder {
    last: String,
    pairs: u64,
    ascending: u64,
}

impl KeyOrder {
    /// Claims seen before the order is judged (till then, key order is assumed).
    const SEEN_BEFORE_JUDGING: u64 = 1024;

    /// Notes the next identity claimed.
    pub(crate) fn note(&mut self, identity: &str) {
        if !self.last.is_empty() {
            self.pairs += 1;
            self.ascending += u64::from(identity >= self.last.as_str());
        }
        self.last.clear();
        self.last.push_str(identity);
    }

    /// Judged in no order already (for tests of the journal with a few people).
    #[cfg(test)]
    pub(crate) fn judged_shuffled() -> KeyOrder {
        KeyOrder {
            last: String::new(),
            pairs: Self::SEEN_BEFORE_JUDGING,
            ascending: 0,
        }
    }

    /// Whether at least nine in ten claimed identities came after the one before.
    pub(crate) fn in_key_order(&self) -> bool {
        self.pairs < Self::SEEN_BEFORE_JUDGING || self.ascending * 10 >= self.pairs * 9
    }
}

/// One result, as journaled: the columns of its entry that come from the submission.
#[derive(Debug, PartialEq)]
struct Recorded<'a> {
    identity: &'a str,
    state: &'a str,
    remote_id: Option<&'a str>,
    http_status: Option<i64>,
    attempts: i64,
    first_attempt_ms: Option<i64>,
    last_attempt_ms: Option<i64>,
    errors: Option<&'a str>,
    response_body: Option<&'a str>,
    uncertain: bool,
    unconfirmed: bool,
    password_owed: bool,
    content_hash: u64,
    source_row: u64,
}

/// Bits of a result's flags byte.
const UNCERTAIN: u8 = 1;
const UNCONFIRMED: u8 = 2;
const PASSWORD_OWED: u8 = 4;

/// A commit's results, encoded for its `results` row: for each, the content hash and source
/// row (`u64`), the flags (one byte), the attempts (`u32`), the HTTP status and the first and
/// last attempt's times (each a presence byte and an `i64`), then the identity, state,
/// remote id, errors (JSON) and response body (each a `u32` length, `u32::MAX` for none,
/// and UTF-8 bytes). Little-endian throughout.
#[derive(Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    results: usize,
}

impl Batch {
    /// Adds the result of one submission; returns the state it records.
    pub(crate) fn push(&mut self, done: &Submission) -> &'static str {
        let errors = match done.errors.is_empty() {
            true => None,
            false => Some(serde_json::to_string(&done.errors).unwrap_or_default()),
        };
        // Unknown still: only an answer (or a row never sent) settles it.
        let uncertain = done.user.uncertain
            && matches!(done.outcome, Outcome::Failed { .. } | Outcome::NotProcessed);
        let state = done.outcome.state();
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let flags = flag(uncertain, UNCERTAIN)
            | flag(done.outcome == Outcome::CreatedUnconfirmed, UNCONFIRMED)
            | flag(done.password_owed, PASSWORD_OWED);
        let bytes = &mut self.bytes;
        bytes.extend_from_slice(&done.user.content_hash.to_le_bytes());
        bytes.extend_from_slice(&done.user.row.to_le_bytes());
        bytes.push(flags);
        bytes.extend_from_slice(&done.attempts.to_le_bytes());
        put_number(bytes, done.status.map(i64::from));
        put_number(bytes, done.first_attempt_ms);
        put_number(bytes, done.last_attempt_ms);
        put_text(bytes, Some(&done.user.identity));
        put_text(bytes, Some(state));
        put_text(bytes, done.remote_id.as_deref());
        put_text(bytes, errors.as_deref());
        put_text(bytes, done.response_body.as_deref());
        self.results += 1;
        state
    }

    /// How many results it holds.
    pub(crate) fn len(&self) -> usize {
        self.results
    }

    /// Writes the batch's results straight into `entries` (in the caller's transaction),
    /// sorted by key, as a fold would.
    pub(crate) fn write_entries(
        self,
        conn: &Connection,
        target: &str,
        run_id: i64,
        source_file: &str,
        recorded_ms: i64,
    ) -> rusqlite::Result<()> {
        let batch = Journaled {
            target: target.to_string(),
            run_id,
            source_file: source_file.to_string(),
            recorded_ms,
            bytes: self.bytes,
        };
        write_sorted(conn, std::slice::from_ref(&batch)).map(|_| ())
    }

    /// Appends the batch to the journal (in the caller's transaction).
    pub(crate) fn write(
        &self,
        conn: &Connection,
        target: &str,
        run_id: i64,
        source_file: &str,
        recorded_ms: i64,
    ) -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO results (target, run_id, source_file, recorded_ms, results)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            target,
            run_id,
            source_file,
            recorded_ms,
            self.bytes
        ])?;
        Ok(())
    }
}

fn put_number(bytes: &mut Vec<u8>, value: Option<i64>) {
    bytes.push(u8::from(value.is_some()));
    bytes.extend_from_slice(&value.unwrap_or(0).to_le_bytes());
}

fn put_text(bytes: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            let length = u32::try_from(text.len())
                .ok()
                .filter(|&l| l != u32::MAX)
                .expect("a text under 4 GiB");
            bytes.extend_from_slice(&length.to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
        None => bytes.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

/// Reads a batch's bytes; an error for bytes no roster wrote.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let (head, rest) = self.0.split_at_checked(n).ok_or("a result cut short")?;
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn number(&mut self) -> Result<Option<i64>, &'static str> {
        let present = self.take(1)?[0] != 0;
        let value = self.u64()? as i64;
        Ok(present.then_some(value))
    }

    fn text(&mut self) -> Result<Option<&'a str>, &'static str> {
        let length = self.u32()?;
        if length == u32::MAX {
            return Ok(None);
        }
        let bytes = self.take(length as usize)?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "a text not UTF-8")
    }
}

/// The results of a batch's BLOB.
#[cfg(test)]
fn decode(bytes: &[u8]) -> Result<Vec<Recorded<'_>>, &'static str> {
    let mut reader = Reader(bytes);
    let mut results = Vec::new();
    while !reader.0.is_empty() {
        results.push(decode_one(&mut reader)?);
    }
    Ok(results)
}

/// The next result of a batch's BLOB.
fn decode_one<'a>(reader: &mut Reader<'a>) -> Result<Recorded<'a>, &'static str> {
    let content_hash = reader.u64()?;
    let source_row = reader.u64()?;
    let flags = reader.take(1)?[0];
    let attempts = i64::from(reader.u32()?);
    let http_status = reader.number()?;
    let first_attempt_ms = reader.number()?;
    let last_attempt_ms = reader.number()?;
    let identity = reader.text()?.ok_or("a result without its identity")?;
    let state = reader.text()?.ok_or("a result without its state")?;
    Ok(Recorded {
        identity,
        state,
        remote_id: reader.text()?,
        http_status,
        attempts,
        first_attempt_ms,
        last_attempt_ms,
        errors: reader.text()?,
        response_body: reader.text()?,
        uncertain: flags & UNCERTAIN != 0,
        unconfirmed: flags & UNCONFIRMED != 0,
        password_owed: flags & PASSWORD_OWED != 0,
        content_hash,
        source_row,
    })
}

/// One journal row, as read.
struct Journaled {
    target: String,
    run_id: i64,
    source_file: String,
    recorded_ms: i64,
    bytes: Vec<u8>,
}

/// Folds every journaled result into `entries`, in the caller's transaction, sorted by key,
/// and empties the journal. Returns the results written.
///
/// A result is written as it was when it came: a person without an entry (claimed in a
/// batch) gets its first, with the columns its claim would have left; an entry (claimed
/// again, or folded from its batch meanwhile) takes the result's columns and keeps the
/// claim's.
pub(crate) fn fold_in_transaction(conn: &Connection) -> rusqlite::Result<usize> {
    let journal: Vec<Journaled> = {
        let mut statement = conn.prepare(
            "SELECT target, run_id, source_file, recorded_ms, results FROM results ORDER BY id",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(Journaled {
                target: r.get(0)?,
                run_id: r.get(1)?,
                source_file: r.get(2)?,
                recorded_ms: r.get(3)?,
                bytes: r.get(4)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let written = write_sorted(conn, &journal)?;
    if !journal.is_empty() {
        conn.execute("DELETE FROM results", [])?;
    }
    Ok(written)
}

/// Writes the results of `journal`'s batches into `entries`, sorted by key (a stable sort:
/// two results of one identity are written in the order they came). Returns how many.
fn write_sorted(conn: &Connection, journal: &[Journaled]) -> rusqlite::Result<usize> {
    let damaged = |why: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            4,
            rusqlite::types::Type::Blob,
            format!("a result batch of the ledger is damaged: {why}").into(),
        )
    };
    // Sorted as (batch, where in its bytes, identity): 24 bytes a result, where the decoded
    // results would take ~170 (a fold of 65,536 shuffled results peaked ~36 MB above the
    // run's usual RSS with them).
    let mut order: Vec<(u32, u32, &str)> = Vec::new();
    for (index, batch) in journal.iter().enumerate() {
        let mut reader = Reader(&batch.bytes);
        while !reader.0.is_empty() {
            let at = batch.bytes.len() - reader.0.len();
            let result = decode_one(&mut reader).map_err(damaged)?;
            order.push((index as u32, at as u32, result.identity));
        }
    }
    order.sort_by(|(a, _, ia), (b, _, ib)| {
        (&journal[*a as usize].target, ia).cmp(&(&journal[*b as usize].target, ib))
    });
    let mut upsert = conn.prepare_cached(
        "INSERT INTO entries (target, identity, state, remote_id, http_status, attempts,
                              first_attempt_ms, last_attempt_ms, updated_ms, errors,
                              response_body, uncertain, unconfirmed, password_owed,
                              content_hash, source_file, source_row, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT (target, identity) DO UPDATE SET state = excluded.state,
            remote_id = COALESCE(excluded.remote_id, entries.remote_id),
            http_status = COALESCE(excluded.http_status, entries.http_status),
            attempts = entries.attempts + excluded.attempts,
            first_attempt_ms = COALESCE(entries.first_attempt_ms, excluded.first_attempt_ms),
            last_attempt_ms = COALESCE(excluded.last_attempt_ms, entries.last_attempt_ms),
            updated_ms = excluded.updated_ms, errors = excluded.errors,
            response_body = excluded.response_body, uncertain = excluded.uncertain,
            unconfirmed = excluded.unconfirmed, password_owed = excluded.password_owed",
    )?;
    for &(index, at, _) in &order {
        let batch = &journal[index as usize];
        let result = decode_one(&mut Reader(&batch.bytes[at as usize..])).map_err(damaged)?;
        // Every parameter is bound for every result: none is left from the last one.
        upsert.raw_bind_parameter(1, &batch.target)?;
        upsert.raw_bind_parameter(2, result.identity)?;
        upsert.raw_bind_parameter(3, result.state)?;
        upsert.raw_bind_parameter(4, result.remote_id)?;
        upsert.raw_bind_parameter(5, result.http_status)?;
        upsert.raw_bind_parameter(6, result.attempts)?;
        upsert.raw_bind_parameter(7, result.first_attempt_ms)?;
        upsert.raw_bind_parameter(8, result.last_attempt_ms)?;
        upsert.raw_bind_parameter(9, batch.recorded_ms)?;
        upsert.raw_bind_parameter(10, result.errors)?;
        upsert.raw_bind_parameter(11, result.response_body)?;
        upsert.raw_bind_parameter(12, result.uncertain)?;
        upsert.raw_bind_parameter(13, result.unconfirmed)?;
        upsert.raw_bind_parameter(14, result.password_owed)?;
        upsert.raw_bind_parameter(15, result.content_hash as i64)?;
        upsert.raw_bind_parameter(16, &batch.source_file)?;
        upsert.raw_bind_parameter(17, result.source_row as i64)?;
        upsert.raw_bind_parameter(18, batch.run_id)?;
        upsert.raw_execute()?;
    }
    Ok(order.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::sqlite::tests::user;
    use crate::model::{ErrorCode, FieldError};

    fn submission(identity: &str, outcome: Outcome) -> Submission {
        let mut user = user(7, identity, u64::MAX);
        user.uncertain = true;
        Submission {
            outcome,
            ..Submission::new(user)
        }
    }

    #[test]
    fn a_batch_decodes_to_the_results_it_was_given() {
        let mut batch = Batch::default();
        let mut refused = submission("björn@example.com", Outcome::Failed { status: Some(503) });
        refused.status = Some(503);
        refused.attempts = 3;
        refused.first_attempt_ms = Some(-1);
        refused.last_attempt_ms = Some(i64::MAX);
        refused.errors = vec![FieldError::local(None, "Email", ErrorCode::Format, "taken")];
        refused.response_body = Some(String::new());
        let mut created = submission("ann@example.com", Outcome::CreatedUnconfirmed);
        created.remote_id = Some("r-1".into());
        created.password_owed = true;
        assert_eq!(batch.push(&refused), "failed");
        assert_eq!(batch.push(&created), "created");
        assert_eq!(batch.len(), 2);
        let results = decode(&batch.bytes).unwrap();
        let errors = serde_json::to_string(&refused.errors).unwrap();
        assert_eq!(
            results,
            [
                Recorded {
                    identity: "björn@example.com",
                    state: "failed",
                    remote_id: None,
                    http_status: Some(503),
                    attempts: 3,
                    first_attempt_ms: Some(-1),
                    last_attempt_ms: Some(i64::MAX),
                    errors: Some(&errors),
                    response_body: Some(""),
                    uncertain: true,
                    unconfirmed: false,
                    password_owed: false,
                    content_hash: u64::MAX,
                    source_row: 7,
                },
                Recorded {
                    identity: "ann@example.com",
                    state: "created",
                    remote_id: Some("r-1"),
                    http_status: None,
                    attempts: 0,
                    first_attempt_ms: None,
                    last_attempt_ms: None,
                    errors: None,
                    response_body: None,
                    // Answered: no longer uncertain.
                    uncertain: false,
                    unconfirmed: true,
                    password_owed: true,
                    content_hash: u64::MAX,
                    source_row: 7,
                },
            ]
        );
    }

    #[test]
    fn a_file_is_in_key_order_when_nine_in_ten_identities_ascend() {
        let mut sorted = KeyOrder::default();
        let mut shuffled = KeyOrder::default();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..2000 {
            // person1@, person2@ … person10@: a descent where the digits grow, rarely.
            sorted.note(&format!("person{i}@example.com"));
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            shuffled.note(&format!("person{}@example.com", rng % 100_000));
            if i < 1000 {
                assert!(shuffled.in_key_order(), "not judged before 1,024 claims");
            }
        }
        assert!(sorted.in_key_order());
        assert!(!shuffled.in_key_order());
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_guess() {
        let mut batch = Batch::default();
        batch.push(&submission("ann@example.com", Outcome::Created));
        let cut = &batch.bytes[..batch.bytes.len() - 1];
        assert_eq!(decode(cut).err(), Some("a result cut short"));
        assert_eq!(decode(&batch.bytes[..10]).err(), Some("a result cut short"));
    }
}
