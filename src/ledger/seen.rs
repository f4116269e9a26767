//! The done rows met in this run, by identity hash → row, so a later repeat of one is caught
//! as a duplicate without writing anything back to the ledger.
//!
//! An idle re-run of a million done rows keeps a million of these, so the set is built for
//! size: 12 bytes an entry (a `u64` key kept as two `u32`s keeps the entry 4-aligned), and
//! 256 shards, so growing means rehashing one small shard at a time rather than holding the
//! old and the new copy of one big table (a plain `HashMap<u64, u32>` peaked at ~48 MB for
//! a million rows; this stays under 30 MB).

use super::sqlite::State;
use crate::model::{FirstRow, Person, RowReport};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

const SHARDS: usize = 256;

/// Identity hash → the first row (of this run) that carried it.
pub type SeenRows = SeenMap<u32>;

/// A plain map keyed by identity hashes, which are not hashed again.
pub(crate) type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// The hash an identity is known by in this run's memory.
pub(crate) fn identity_hash(identity: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(identity.as_bytes())
}

/// Identity hash → a small value, kept compact (see the module's notes).
pub struct SeenMap<V> {
    shards: Vec<HashMap<Key, V, BuildHasherDefault<KeyHasher>>>,
    /// The room each shard takes on its first entry.
    per_shard: usize,
}

impl<V> Default for SeenMap<V> {
    fn default() -> Self {
        SeenMap::with_capacity(0)
    }
}

impl SeenRows {
    /// `user` back with its identity's hash if it repeats no earlier row of this run; else
    /// its duplicate report is pushed into `reports` and `None` returned. The earlier row is
    /// the one that claimed the identity in this run (`claimed_here`: its source row and the
    /// entry's state now), else a row of this run that found it already done.
    pub(crate) fn unless_repeat(
        &self,
        user: Person,
        claimed_here: Option<(u64, State)>,
        reports: &mut Vec<RowReport>,
    ) -> Option<(Person, u64)> {
        let identity_hash = identity_hash(&user.identity);
        let first_this_run = match claimed_here {
            Some((row, state)) => Some((
                row,
                match state {
                    State::Created | State::Exists => FirstRow::Done,
                    State::Sending => FirstRow::Pending,
                    _ => FirstRow::Refused,
                },
            )),
            None => self
                .get(identity_hash)
                .map(|row| (u64::from(row), FirstRow::Done)),
        };
        match first_this_run {
            Some((first, first_state)) => {
                reports.push(RowReport::duplicate(
                    user.row,
                    user.cells,
                    first,
                    first_state,
                ));
                None
            }
            None => Some((user, identity_hash)),
        }
    }
}

impl<V> SeenMap<V> {
    /// A map with room for about `entries` before any shard grows. Growing one of a million
    /// entries allocates each shard's table anew several times over, each on fresh pages the
    /// kernel zeroes: a tenth of a validation's time when the map started empty. Each shard
    /// takes its room on its first entry, on the thread that fills the map: taken up front,
    /// the room (27 MB for a million rows) was zeroed before the run read its first row.
    pub fn with_capacity(entries: usize) -> Self {
        SeenMap {
            shards: (0..SHARDS).map(|_| HashMap::default()).collect(),
            per_shard: entries.div_ceil(SHARDS),
        }
    }

    /// The shard `hash` goes to, given its room if this is its first entry.
    fn shard_for_insert(
        &mut self,
        hash: u64,
    ) -> &mut HashMap<Key, V, BuildHasherDefault<KeyHasher>> {
        let shard = &mut self.shards[shard(hash)];
        if shard.capacity() == 0 {
            shard.reserve(self.per_shard);
        }
        shard
    }
}

impl<V: Copy> SeenMap<V> {
    /// The value recorded for `hash`.
    pub fn get(&self, hash: u64) -> Option<V> {
        self.shards[shard(hash)].get(&Key::of(hash)).copied()
    }

    /// Records `value` for `hash` (the first value recorded is kept).
    pub fn insert(&mut self, hash: u64, value: V) {
        self.shard_for_insert(hash)
            .entry(Key::of(hash))
            .or_insert(value);
    }

    /// Stores `decide(what was there)` for `hash`, in one look-up, and returns what was there.
    pub fn update(&mut self, hash: u64, decide: impl FnOnce(Option<V>) -> V) -> Option<V> {
        use std::collections::hash_map::Entry;
        match self.shard_for_insert(hash).entry(Key::of(hash)) {
            Entry::Occupied(mut slot) => {
                let before = *slot.get();
                slot.insert(decide(Some(before)));
                Some(before)
            }
            Entry::Vacant(slot) => {
                slot.insert(decide(None));
                None
            }
        }
    }

    /// Records `value` for `hash`, replacing what was there.
    pub fn set(&mut self, hash: u64, value: V) {
        self.shard_for_insert(hash).insert(Key::of(hash), value);
    }
}

fn shard(hash: u64) -> usize {
    (hash >> 56) as usize
}

/// An identity hash as two halves: 4-aligned, so an entry with its `u32` row is 12 bytes.
#[derive(PartialEq, Eq)]
struct Key([u32; 2]);

impl Key {
    fn of(hash: u64) -> Key {
        Key([hash as u32, (hash >> 32) as u32])
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.0[0]) | (u64::from(self.0[1]) << 32));
    }
}

/// The keys are already uniform hashes (xxh3): hashing them again is wasted work. They are
/// rotated so the top 8 bits, which chose the shard and so are the same for a whole shard,
/// are not the ones the table takes its tags or bucket from.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Key` is hashed here, through `write_u64`; anything else still gets a hash.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash.rotate_right(8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_row_for_each_hash() {
        let mut seen = SeenRows::default();
        for i in 0..10_000u64 {
            let hash = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
            seen.insert(hash, i as u32 + 2);
            seen.insert(hash, 99);
        }
        for i in 0..10_000u64 {
            let hash = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
            assert_eq!(seen.get(hash), Some(i as u32 + 2));
        }
        assert_eq!(seen.get(12345), None);
    }
}
