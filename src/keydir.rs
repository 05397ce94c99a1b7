//! The keydir: key -> location of the key's newest live record, plus the per-file live/dead byte
//! accounting that merge decisions and `stats()` read.
//!
//! Invariant: an entry only ever points at a complete record in a file that is (or is about to
//! be) published in the file set. The writer replaces entries unconditionally (its record is the
//! newest); merge replaces an entry only if it still points where merge copied from.

use std::collections::HashMap as StdHashMap;

use crate::format::FileId;
use crate::format::record::encoded_len;
use crate::sync::{KeyMap, Mutex, ProtocolBreak, Upserted, broken};

/// Where a key's newest record lives. Its seq is not kept (8 bytes a key): the writer knows it
/// while it appends, and recovery, the one place that compares seqs, reads what it needs (see
/// `recovery::order`). Offsets are 32-bit, which is why data files are at most 4 GiB
/// ([`crate::MAX_DATA_FILE_LIMIT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub file_id: FileId,
    /// Offset of the record's first byte in its file.
    pub offset: u32,
    pub value_len: u32,
}

impl Location {
    /// The location of a record at `offset`, if the offset is one the keydir can hold.
    pub(crate) fn new(file_id: FileId, offset: u64, value_len: usize) -> Option<Location> {
        Some(Location {
            file_id,
            offset: u32::try_from(offset).ok()?,
            value_len: u32::try_from(value_len).ok()?,
        })
    }

    /// Offset of the record's first byte in its file.
    pub(crate) fn start(&self) -> u64 {
        u64::from(self.offset)
    }

    /// Length of the whole record on disk.
    pub(crate) fn record_len(&self, key_len: usize) -> u64 {
        encoded_len(key_len, self.value_len as usize)
    }
}

/// Byte accounting for one data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileUsage {
    /// Bytes of its records and header (the active file is longer on disk: allocated ahead).
    pub total_bytes: u64,
    /// Bytes of records the keydir points at.
    pub live_bytes: u64,
    pub live_keys: u64,
    /// Bytes of tombstones (always dead, but only reclaimable once older files are merged).
    pub tombstone_bytes: u64,
    /// Smallest and largest seq of any record in the file (`u64::MAX`/0 when empty).
    pub min_seq: u64,
    pub max_seq: u64,
}

impl Default for FileUsage {
    fn default() -> Self {
        FileUsage::new(0)
    }
}

impl FileUsage {
    pub(crate) fn new(total_bytes: u64) -> Self {
        FileUsage {
            total_bytes,
            live_bytes: 0,
            live_keys: 0,
            tombstone_bytes: 0,
            min_seq: u64::MAX,
            max_seq: 0,
        }
    }

    pub(crate) fn dead_bytes(&self) -> u64 {
        // Saturating: live bytes come from records the keydir trusts, and must never turn an
        // accounting slip into a panic in `stats()`.
        self.total_bytes.saturating_sub(self.live_bytes)
    }

    /// Adds the seqs and tombstones another loader of the same file saw (recovery).
    pub(crate) fn absorb(&mut self, other: &FileUsage) {
        self.min_seq = self.min_seq.min(other.min_seq);
        self.max_seq = self.max_seq.max(other.max_seq);
        self.tombstone_bytes += other.tombstone_bytes;
    }

    pub(crate) fn saw_seq(&mut self, seq: u64) {
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
    }
}

/// Per-file accounting, keyed by file id (foldhash: it is looked up on every write).
pub(crate) type Usage = StdHashMap<FileId, FileUsage, foldhash::fast::RandomState>;

/// Copies of keys packed into one buffer (two allocations in all, instead of one per key), handed
/// out one owned key at a time.
#[derive(Debug, Default)]
pub(crate) struct KeyList {
    bytes: Vec<u8>,
    /// Length of each key, in order; a key is at most `MAX_KEY_LEN` (64 KiB) long.
    lens: Vec<u32>,
    /// Keys handed out so far, and where the next one starts in `bytes`.
    taken: usize,
    next_start: usize,
}

impl KeyList {
    fn with_capacity(keys: usize) -> Self {
        KeyList {
            lens: Vec::with_capacity(keys),
            ..KeyList::default()
        }
    }

    fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.lens.push(key.len() as u32);
    }
}

impl Iterator for KeyList {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let len = *self.lens.get(self.taken)? as usize;
        let key = self.bytes[self.next_start..self.next_start + len].to_vec();
        self.taken += 1;
        self.next_start += len;
        Some(key)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.lens.len() - self.taken;
        (left, Some(left))
    }
}

/// The concurrent index from key to location.
#[derive(Debug, Default)]
pub(crate) struct Keydir {
    map: KeyMap,
    /// Lock order: a map shard first, then `usage`; never the other way round.
    usage: Mutex<Usage>,
}

impl Keydir {
    /// An empty keydir with room for about `keys` keys (recovery knows roughly how many).
    pub(crate) fn with_capacity(keys: usize) -> Self {
        Keydir {
            map: KeyMap::with_capacity(keys),
            usage: Mutex::default(),
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Location> {
        self.map.get(key)
    }

    /// Which of [`Keydir::shard_count`] shards `key` lives in (see `KeyMap::shard_of`).
    pub(crate) fn shard_of(&self, key: &[u8]) -> usize {
        self.map.shard_of(key)
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.map.shard_count()
    }

    /// Starts loading the keydir memory a lookup or update of `key` will touch (see
    /// [`KeyMap::prefetch`]).
    pub(crate) fn prefetch(&self, key: &[u8]) {
        self.map.prefetch(key);
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// A copy of every live key, taken shard by shard.
    pub(crate) fn keys(&self) -> KeyList {
        let mut keys = KeyList::with_capacity(self.map.len());
        self.map.for_each(|key, _| keys.push(key));
        keys
    }

    /// Starts accounting for a new or recovered file of `total_bytes`.
    pub(crate) fn track_file(&self, file_id: FileId, usage: FileUsage) {
        self.usage.lock().insert(file_id, usage);
    }

    /// Stops accounting for files that merge deleted.
    pub(crate) fn forget_files(&self, ids: &[FileId]) {
        let mut usage = self.usage.lock();
        for id in ids {
            usage.remove(id);
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        self.usage.lock().clone()
    }

    /// The writer appended a put of seq `seq` for `key` at `loc`; it is now the key's newest
    /// record.
    pub(crate) fn put(&self, key: &[u8], loc: Location, seq: u64) {
        let len = loc.record_len(key.len());
        self.map.insert_then(key, loc, |replaced| {
            let mut usage = self.usage.lock();
            appended(&mut usage, loc.file_id, len, seq, true);
            if let Some(old) = replaced {
                unlinked(&mut usage, old.file_id, old.record_len(key.len()));
            }
        });
    }

    /// The writer appended a tombstone of seq `seq` for `key` at `loc`.
    pub(crate) fn remove(&self, key: &[u8], loc: Location, seq: u64) {
        let len = loc.record_len(key.len());
        let removed = self.map.remove(key);
        let mut usage = self.usage.lock();
        appended(&mut usage, loc.file_id, len, seq, false);
        if let Some(old) = removed {
            unlinked(&mut usage, old.file_id, old.record_len(key.len()));
        }
    }

    /// Points `key` at `new` only if it still points at `expected` (merge's copy of a record);
    /// a concurrent write or remove of the key always wins.
    pub(crate) fn replace_if(&self, key: &[u8], expected: Location, new: Location) -> bool {
        self.map.repoint(key, new, |present| {
            if *present != expected && !broken(ProtocolBreak::UnconditionalRepoint) {
                return false;
            }
            let mut usage = self.usage.lock();
            unlinked(&mut usage, present.file_id, present.record_len(key.len()));
            linked(&mut usage, new.file_id, new.record_len(key.len()));
            true
        })
    }

    /// Recovery: makes `loc` the key's entry unless `replaces(present)` says the present entry
    /// is newer, and notes in `live` the bytes this links and unlinks.
    pub(crate) fn recover_put(
        &self,
        key: &[u8],
        loc: Location,
        replaces: impl FnOnce(&Location) -> bool,
        live: &mut LiveDeltas,
    ) {
        match self.map.upsert(key, loc, replaces) {
            Upserted::Inserted => live.link(key, &loc),
            Upserted::Replaced(old) => {
                live.unlink(key, &old);
                live.link(key, &loc);
            }
            Upserted::Kept => {}
        }
    }

    /// Recovery: drops the key's entry if `removes(present)` says the key's newest tombstone is
    /// newer than it.
    pub(crate) fn recover_tombstone(
        &self,
        key: &[u8],
        removes: impl FnOnce(&Location) -> bool,
        live: &mut LiveDeltas,
    ) {
        if let Some(old) = self.map.remove_if(key, removes) {
            live.unlink(key, &old);
        }
    }

    /// Recovery: sets every file's live bytes and keys from what loading linked and unlinked.
    pub(crate) fn set_live(&self, live: &LiveDeltas) {
        let mut usage = self.usage.lock();
        for file in usage.values_mut() {
            file.live_bytes = 0;
            file.live_keys = 0;
        }
        for (file_id, delta) in &live.files {
            if let Some(file) = usage.get_mut(file_id) {
                file.live_bytes = delta.bytes.try_into().unwrap_or(0);
                file.live_keys = delta.keys.try_into().unwrap_or(0);
            }
        }
        #[cfg(debug_assertions)]
        self.assert_live_matches_entries(&usage);
    }

    /// Debug builds (all tests) check the incremental accounting against a full recount.
    #[cfg(debug_assertions)]
    fn assert_live_matches_entries(&self, usage: &Usage) {
        let mut recount: StdHashMap<FileId, (u64, u64)> = StdHashMap::new();
        self.map.for_each(|key, loc| {
            let file = recount.entry(loc.file_id).or_default();
            file.0 += loc.record_len(key.len());
            file.1 += 1;
        });
        for (file_id, file) in usage {
            let counted = recount.get(file_id).copied().unwrap_or_default();
            assert_eq!(
                (file.live_bytes, file.live_keys),
                counted,
                "live accounting of file {file_id}"
            );
        }
    }
}

/// Live bytes and keys per file, as recovery links and unlinks entries (per loading thread,
/// then added up). Signed: one thread may unlink what another linked.
#[derive(Debug, Default)]
pub(crate) struct LiveDeltas {
    files: StdHashMap<FileId, LiveDelta, foldhash::fast::RandomState>,
}

#[derive(Debug, Default, Clone, Copy)]
struct LiveDelta {
    bytes: i64,
    keys: i64,
}

impl LiveDeltas {
    fn link(&mut self, key: &[u8], loc: &Location) {
        self.add(loc.file_id, loc.record_len(key.len()) as i64, 1);
    }

    fn unlink(&mut self, key: &[u8], loc: &Location) {
        self.add(loc.file_id, -(loc.record_len(key.len()) as i64), -1);
    }

    fn add(&mut self, file_id: FileId, bytes: i64, keys: i64) {
        let delta = self.files.entry(file_id).or_default();
        delta.bytes += bytes;
        delta.keys += keys;
    }

    /// Adds another thread's deltas.
    pub(crate) fn absorb(&mut self, other: &LiveDeltas) {
        for (&file_id, delta) in &other.files {
            self.add(file_id, delta.bytes, delta.keys);
        }
    }
}

fn appended(usage: &mut Usage, file_id: FileId, len: u64, seq: u64, live: bool) {
    let file = usage.entry(file_id).or_insert(FileUsage::new(0));
    file.total_bytes += len;
    file.saw_seq(seq);
    if live {
        file.live_bytes += len;
        file.live_keys += 1;
    } else {
        file.tombstone_bytes += len;
    }
}

fn linked(usage: &mut Usage, file_id: FileId, len: u64) {
    if let Some(file) = usage.get_mut(&file_id) {
        file.live_bytes += len;
        file.live_keys += 1;
    }
}

fn unlinked(usage: &mut Usage, file_id: FileId, len: u64) {
    if let Some(file) = usage.get_mut(&file_id) {
        // Every unlink pairs with a link of the same location; a drift is a bug (debug builds
        // stop), and must not wrap the figures that decide merges (release builds).
        debug_assert!(
            file.live_bytes >= len && file.live_keys >= 1,
            "{file_id}: {file:?}"
        );
        file.live_bytes = file.live_bytes.saturating_sub(len);
        file.live_keys = file.live_keys.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_list_hands_back_every_key_in_order_with_exact_sizes() {
        let keys: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), vec![7; 300], b"bc".to_vec()];
        let mut list = KeyList::with_capacity(1);
        for key in &keys {
            list.push(key);
        }
        for (taken, key) in keys.iter().enumerate() {
            assert_eq!(
                list.size_hint(),
                (keys.len() - taken, Some(keys.len() - taken))
            );
            assert_eq!(list.next().as_ref(), Some(key));
        }
        assert_eq!(list.size_hint(), (0, Some(0)));
        assert_eq!(list.next(), None);
        assert_eq!(KeyList::default().next(), None);
    }
}
