//! Claims of identities new to the SQLite ledger, written as one row per claim batch.
//!
//! An identity the ledger has never seen is claimed by appending it to its batch's row in
//! `claims` (one BLOB of the batch's people), committed before any of them is sent, and its
//! entry is written once, when its result comes. A claim written as its own `sending` entry
//! cost a b-tree insert per row and its result an update of that row: two writes of the
//! keyed table per person, the ledger thread's main cost in a fast import.
//!
//! A batch whose people all have entries is deleted with the last of their results. One left
//! over (a run that crashed, or stopped with rows it never reported) is folded into
//! `entries`: each of its people without an entry gets exactly the `sending` entry the claim
//! stands for, so the next run treats them as it always treated an interrupted claim. Every
//! reader of `entries` folds first ([`super::unfolded::fold`]).

use rusqlite::{Connection, params};

/// A batch's people, encoded for the `claims` row: for each, the source row and the content
/// hash (`u64`, little-endian), whether the send is uncertain (one byte), the identity's
/// length (`u32`, little-endian) and its UTF-8 bytes.
#[derive(Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    people: usize,
}

impl Batch {
    /// Adds one person.
    pub(crate) fn push(&mut self, identity: &str, row: u64, content_hash: u64, uncertain: bool) {
        self.bytes.extend_from_slice(&row.to_le_bytes());
        self.bytes.extend_from_slice(&content_hash.to_le_bytes());
        self.bytes.push(u8::from(uncertain));
        let length = u32::try_from(identity.len()).expect("an identity under 4 GiB");
        self.bytes.extend_from_slice(&length.to_le_bytes());
        self.bytes.extend_from_slice(identity.as_bytes());
        self.people += 1;
    }

    /// How many people it holds.
    pub(crate) fn len(&self) -> usize {
        self.people
    }

    /// Writes the batch as `id` (in the caller's transaction).
    pub(crate) fn write(
        &self,
        conn: &Connection,
        id: i64,
        target: &str,
        run_id: i64,
        source_file: &str,
        claimed_ms: i64,
    ) -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO claims (id, target, run_id, source_file, claimed_ms, people)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            id,
            target,
            run_id,
            source_file,
            claimed_ms,
            self.bytes
        ])?;
        Ok(())
    }
}

/// One person of a batch, as decoded.
struct Claimed<'a> {
    identity: &'a str,
    row: u64,
    content_hash: u64,
    uncertain: bool,
}

/// The people of a batch's BLOB; an error for bytes no roster wrote.
fn decode(mut bytes: &[u8]) -> Result<Vec<Claimed<'_>>, &'static str> {
    let mut people = Vec::new();
    while !bytes.is_empty() {
        let (head, rest) = bytes.split_at_checked(21).ok_or("a person cut short")?;
        let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8"));
        let length = u32::from_le_bytes(head[17..21].try_into().expect("4")) as usize;
        let (identity, rest) = rest
            .split_at_checked(length)
            .ok_or("an identity cut short")?;
        people.push(Claimed {
            identity: std::str::from_utf8(identity).map_err(|_| "an identity not UTF-8")?,
            row: u64_at(0),
            content_hash: u64_at(8),
            uncertain: head[16] != 0,
        });
        bytes = rest;
    }
    Ok(people)
}

/// Folds every claim batch into `entries`, in the caller's transaction: each person without
/// an entry gets the `sending` entry its claim stands for (one with an entry already has its
/// result), and the batches are deleted. Returns the entries written. Readers fold them with
/// the results journal ([`super::unfolded::fold`]).
pub(crate) fn fold_in_transaction(conn: &Connection) -> rusqlite::Result<usize> {
    let mut batches = conn.prepare(
        "SELECT target, run_id, source_file, claimed_ms, people FROM claims ORDER BY id",
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO entries (target, identity, state, content_hash, updated_ms, source_file,
                              source_row, run_id, uncertain)
         VALUES (?1, ?2, 'sending', ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (target, identity) DO NOTHING",
    )?;
    let mut rows = batches.query([])?;
    let mut written = 0;
    while let Some(batch) = rows.next()? {
        let target: String = batch.get(0)?;
        let run_id: i64 = batch.get(1)?;
        let source_file: String = batch.get(2)?;
        let claimed_ms: i64 = batch.get(3)?;
        let bytes = batch.get_ref(4)?.as_blob()?;
        let people = decode(bytes).map_err(|why| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Blob,
                format!("a claim batch of the ledger is damaged: {why}").into(),
            )
        })?;
        for person in people {
            written += insert.execute(params![
                target,
                person.identity,
                person.content_hash as i64,
                claimed_ms,
                source_file,
                person.row as i64,
                run_id,
                person.uncertain,
            ])?;
        }
    }
    drop(rows);
    conn.execute("DELETE FROM claims", [])?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_to_the_people_it_was_given() {
        let mut batch = Batch::default();
        batch.push("ann@example.com", 2, u64::MAX, false);
        batch.push("björn@example.com", 3, 7, true);
        let people = decode(&batch.bytes).unwrap();
        assert_eq!(batch.len(), 2);
        let seen: Vec<_> = people
            .iter()
            .map(|p| (p.identity, p.row, p.content_hash, p.uncertain))
            .collect();
        assert_eq!(
            seen,
            [
                ("ann@example.com", 2, u64::MAX, false),
                ("björn@example.com", 3, 7, true)
            ]
        );
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_guess() {
        let mut batch = Batch::default();
        batch.push("ann@example.com", 2, 1, false);
        let cut = &batch.bytes[..batch.bytes.len() - 1];
        assert_eq!(decode(cut).err(), Some("an identity cut short"));
        assert_eq!(decode(&batch.bytes[..10]).err(), Some("a person cut short"));
    }
}
