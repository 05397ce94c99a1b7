//! The one import point for the synchronisation primitives the engine's protocol uses: locks,
//! condition variables, atomics, and the keydir's concurrent map.
//!
//! Normally these are parking_lot, std atomics and dashmap. Under `--cfg loom` (the models in
//! `loom-tests/`) they are loom's instrumented types behind the same interface, so loom explores
//! the interleavings of the engine's real code. `Arc` stays std's: reference counts are not
//! part of the protocol, and sets retired through crossbeam-epoch may outlive a loom execution.

pub(crate) use std::sync::Arc;

#[cfg(not(loom))]
use crate::format::FileId;
use crate::keydir::Location;
#[cfg(not(loom))]
use std::hash::BuildHasher;

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
#[cfg(loom)]
pub(crate) use loom_shim::{Condvar, Mutex, MutexGuard};

/// The keydir's storage: a concurrent map from byte-string keys to [`Location`]s. Every method is
/// atomic for its key; closures run while the key's shard is locked.
///
/// Hashing is foldhash with a per-process random seed: several times faster than SipHash on
/// short keys, and still keyed, so callers cannot aim keys at one bucket without knowing it.
///
/// A bucket is 32 bytes: a 24-byte [`StoredKey`] (keys up to 18 bytes inline, no pointer to
/// chase on lookup; longer ones on the heap), which also carries the value length in what would
/// otherwise be padding, and an 8-byte [`Place`] (file id, offset). A plain `(key, Location)`
/// pair would take 40, and hashbrown's tables hold about two buckets per key.
#[derive(Debug)]
pub(crate) struct KeyMap {
    #[cfg(not(loom))]
    inner: dashmap::DashMap<StoredKey, Place, foldhash::fast::RandomState>,
    #[cfg(loom)]
    inner: Mutex<std::collections::HashMap<Vec<u8>, Location>>,
}

/// What [`KeyMap::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upserted {
    Inserted,
    /// Replaced this location.
    Replaced(Location),
    /// Kept the present location.
    Kept,
}

/// Shards of the keydir map. More than dashmap's default (4 per core): threads that load hint
/// files in parallel at open, and the writer next to readers, rarely meet on one shard lock.
#[cfg(not(loom))]
const SHARDS: usize = 64;

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap::with_capacity(0)
    }
}

/// Keys up to this long are stored inside the bucket.
#[cfg(not(loom))]
const INLINE_KEY: usize = 18;

/// A key as the table stores it, with the value length of its location: the one part of a
/// location that stays the same when merge moves the record, and that fits in the bytes the
/// key's layout leaves free. Hashes and compares as its key bytes alone.
#[cfg(not(loom))]
#[derive(Debug, Clone)]
enum StoredKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY],
        value_len: u32,
    },
    Heap {
        bytes: Box<[u8]>,
        value_len: u32,
    },
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<StoredKey>() == 24);

/// The rest of a location: where the record is.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy)]
struct Place {
    file_id: FileId,
    offset: u32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Place>() == 8);

#[cfg(not(loom))]
impl StoredKey {
    fn new(key: &[u8], value_len: u32) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            StoredKey::Inline {
                len: key.len() as u8,
                bytes,
                value_len,
            }
        } else {
            StoredKey::Heap {
                bytes: key.into(),
                value_len,
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes, .. } => &bytes[..usize::from(*len)],
            StoredKey::Heap { bytes, .. } => bytes,
        }
    }

    fn value_len(&self) -> u32 {
        match self {
            StoredKey::Inline { value_len, .. } | StoredKey::Heap { value_len, .. } => *value_len,
        }
    }

    fn location(&self, place: Place) -> Location {
        Location {
            file_id: place.file_id,
            offset: place.offset,
            value_len: self.value_len(),
        }
    }
}

#[cfg(not(loom))]
impl std::hash::Hash for StoredKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes, so that lookups by `&[u8]` find the key.
        self.bytes().hash(state);
    }
}

#[cfg(not(loom))]
impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

#[cfg(not(loom))]
impl Eq for StoredKey {}

#[cfg(not(loom))]
impl std::borrow::Borrow<[u8]> for StoredKey {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

#[cfg(not(loom))]
impl Place {
    fn of(loc: Location) -> Self {
        Place {
            file_id: loc.file_id,
            offset: loc.offset,
        }
    }
}

#[cfg(not(loom))]
fn split(key: &[u8], loc: Location) -> (StoredKey, Place) {
    (StoredKey::new(key, loc.value_len), Place::of(loc))
}

#[cfg(not(loom))]
impl KeyMap {
    /// An empty map with room for about `capacity` keys.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        KeyMap {
            inner: dashmap::DashMap::with_capacity_and_hasher_and_shard_amount(
                capacity,
                Default::default(),
                SHARDS,
            ),
        }
    }

    /// Inserts `loc`, or replaces the present location if `replace(present)` says so.
    pub(crate) fn upsert(
        &self,
        key: &[u8],
        loc: Location,
        replace: impl FnOnce(&Location) -> bool,
    ) -> Upserted {
        let (stored, place) = split(key, loc);
        match self.inner.entry(stored) {
            dashmap::Entry::Occupied(present) => {
                if replace(&present.key().location(*present.get())) {
                    let (old_key, old_place) = present.replace_entry(place);
                    Upserted::Replaced(old_key.location(old_place))
                } else {
                    Upserted::Kept
                }
            }
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(place);
                Upserted::Inserted
            }
        }
    }

    /// The key's location.
    ///
    /// This is dashmap's `get` written out over its shard (the `raw-api`), so that it can
    /// prefetch the key's home bucket while it probes ([`prefetch_home`]). It must hash and pick
    /// the shard exactly as dashmap's insert does (`BuildHasher::hash_one` of the key bytes, as
    /// `StoredKey` hashes; `determine_shard`); the tests below fail if a dashmap release changed
    /// either.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Location> {
        let hash = self.inner.hasher().hash_one(key);
        let shard = self.inner.shards()[self.inner.determine_shard(hash as usize)].read();
        prefetch_home(shard.data_end(), shard.buckets(), hash);
        shard
            .get(hash, |(stored, _)| stored.bytes() == key)
            .map(|(stored, place)| stored.location(*place.get()))
    }

    /// Starts bringing the table memory that a lookup of `key` will touch into the CPU cache,
    /// and returns at once: a writer calls it before it appends the record, so that the misses
    /// overlap the append instead of following it.
    pub(crate) fn prefetch(&self, key: &[u8]) {
        let hash = self.inner.hasher().hash_one(key);
        let shard = self.inner.shards()[self.inner.determine_shard(hash as usize)].read();
        prefetch_home(shard.data_end(), shard.buckets(), hash);
    }

    /// The shard (of [`KeyMap::shard_count`]) that holds `key`. Filling the map shard by shard
    /// keeps one shard's table in the CPU caches while it fills, instead of missing on every
    /// insert. (The `raw-api` feature is enabled for this and for `get`'s use of the shards.)
    pub(crate) fn shard_of(&self, key: &[u8]) -> usize {
        self.inner.determine_map(key)
    }

    pub(crate) fn shard_count(&self) -> usize {
        SHARDS
    }

    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        self.inner.contains_key(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    /// Calls `f` on every entry, shard by shard.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &Location)) {
        for entry in self.inner.iter() {
            f(entry.key().bytes(), &entry.key().location(*entry.value()));
        }
    }

    /// Moves the key's record to `new` if `moves(present)` says so, under the key's shard lock
    /// (merge's copy of a record). Returns whether it moved. The value length normally stays the
    /// same; it differs only where a hint file gave the old location a wrong one (reads still
    /// decode the record, whose header has the right one), and then the stored key is replaced
    /// too.
    pub(crate) fn repoint(
        &self,
        key: &[u8],
        new: Location,
        moves: impl FnOnce(&Location) -> bool,
    ) -> bool {
        let (stored, place) = split(key, new);
        let dashmap::Entry::Occupied(mut entry) = self.inner.entry(stored) else {
            return false;
        };
        let present = entry.key().location(*entry.get());
        if !moves(&present) {
            return false;
        }
        if present.value_len == new.value_len {
            entry.insert(place);
        } else {
            entry.replace_entry(place);
        }
        true
    }

    /// Sets the key's location and calls `then` with the location it replaces, both under the
    /// key's shard lock (one hash lookup whether or not the key was present).
    pub(crate) fn insert_then<R>(
        &self,
        key: &[u8],
        loc: Location,
        then: impl FnOnce(Option<Location>) -> R,
    ) -> R {
        let (stored, place) = split(key, loc);
        match self.inner.entry(stored) {
            dashmap::Entry::Occupied(mut present) => {
                let old = present.key().location(*present.get());
                // Before the entry changes: `replace_entry` gives up the shard lock.
                let result = then(Some(old));
                if old.value_len == loc.value_len {
                    present.insert(place);
                } else {
                    present.replace_entry(place);
                }
                result
            }
            dashmap::Entry::Vacant(vacant) => {
                let _locked = vacant.insert(place);
                then(None)
            }
        }
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Option<Location> {
        self.inner
            .remove(key)
            .map(|(stored, place)| stored.location(place))
    }

    /// Removes the key's location if `f(location)` says so, and returns it.
    pub(crate) fn remove_if(
        &self,
        key: &[u8],
        f: impl FnOnce(&Location) -> bool,
    ) -> Option<Location> {
        self.inner
            .remove_if(key, |stored, place| f(&stored.location(*place)))
            .map(|(stored, place)| stored.location(place))
    }
}

/// Prefetches the two cache lines where a lookup of `hash` starts in a hashbrown table of
/// `buckets` buckets that end at `data_end`: the group of control bytes at the home position,
/// and the home bucket.
///
/// hashbrown reads the control bytes first and the bucket only once they matched; in a table
/// larger than the CPU caches those are two cache misses, one after the other. A key usually sits
/// in its home bucket or close to it, so prefetching both lines overlaps the two misses (measured:
/// `docs/benchmarks.md`, fourth round).
/// The table is only 16-byte aligned, so a group or a bucket sometimes straddles two lines;
/// prefetching the second line as well measured no faster. If a prefetch misses (the key probed
/// further, or a future hashbrown lays its table out differently) the lookup is as before, only
/// slower. The layout this assumes is hashbrown 0.14's: the probe starts at
/// `hash & (buckets - 1)`, control byte `i` is at `data_end + i`, and bucket `i` ends `i`
/// buckets below `data_end`.
#[cfg(not(loom))]
fn prefetch_home<T>(data_end: std::ptr::NonNull<T>, buckets: usize, hash: u64) {
    let home = hash as usize & (buckets - 1);
    let data_end = data_end.as_ptr();
    prefetch(data_end.cast::<u8>().wrapping_add(home));
    prefetch(data_end.wrapping_sub(home + 1));
}

/// Asks the CPU to bring the cache line at `address` closer; never reads it architecturally.
#[cfg(all(not(loom), target_arch = "x86_64"))]
#[allow(unsafe_code)]
fn prefetch<T>(address: *const T) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is a hint. It does not access memory as far as the program can tell:
    // it cannot fault, and an address outside any allocation (such as the bucket "before" an
    // empty table's static control bytes) is simply ignored. SSE, which the intrinsic needs, is part of every
    // x86_64 CPU.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>()) }
}

#[cfg(all(not(loom), not(target_arch = "x86_64")))]
fn prefetch<T>(_address: *const T) {}

#[cfg(loom)]
impl KeyMap {
    pub(crate) fn with_capacity(_capacity: usize) -> Self {
        KeyMap {
            inner: Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub(crate) fn upsert(
        &self,
        key: &[u8],
        loc: Location,
        replace: impl FnOnce(&Location) -> bool,
    ) -> Upserted {
        let mut map = self.inner.lock();
        match map.get_mut(key) {
            Some(present) if replace(present) => {
                Upserted::Replaced(std::mem::replace(present, loc))
            }
            Some(_) => Upserted::Kept,
            None => {
                map.insert(key.to_vec(), loc);
                Upserted::Inserted
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Location> {
        self.inner.lock().get(key).copied()
    }

    pub(crate) fn prefetch(&self, _key: &[u8]) {}

    pub(crate) fn shard_of(&self, _key: &[u8]) -> usize {
        0
    }

    pub(crate) fn shard_count(&self) -> usize {
        1
    }

    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        self.inner.lock().contains_key(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &Location)) {
        for (key, loc) in self.inner.lock().iter() {
            f(key, loc);
        }
    }

    pub(crate) fn repoint(
        &self,
        key: &[u8],
        new: Location,
        moves: impl FnOnce(&Location) -> bool,
    ) -> bool {
        let mut map = self.inner.lock();
        match map.get_mut(key) {
            Some(present) if moves(present) => {
                *present = new;
                true
            }
            None if broken(ProtocolBreak::RepointRevivesRemoved) => {
                map.insert(key.to_vec(), new);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn insert_then<R>(
        &self,
        key: &[u8],
        loc: Location,
        then: impl FnOnce(Option<Location>) -> R,
    ) -> R {
        let mut map = self.inner.lock();
        let old = map.insert(key.to_vec(), loc);
        then(old)
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Option<Location> {
        self.inner.lock().remove(key)
    }

    pub(crate) fn remove_if(
        &self,
        key: &[u8],
        f: impl FnOnce(&Location) -> bool,
    ) -> Option<Location> {
        let mut map = self.inner.lock();
        if map.get(key).is_some_and(f) {
            map.remove(key)
        } else {
            None
        }
    }
}

/// Deliberate breaks of the protocol, one per loom model, so each model's broken twin can show
/// that the model is able to fail. Only `--cfg loom` builds can switch one on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[cfg_attr(
    not(loom),
    expect(dead_code, reason = "`None` is only set by the loom models")
)]
pub enum ProtocolBreak {
    /// Nothing is broken.
    None = 0,
    /// Merge unpublishes its inputs before repointing the keydir at its outputs.
    RetireBeforeRepoint = 1,
    /// Merge repoints the keydir before publishing its outputs.
    PointBeforePublish = 2,
    /// Merge repoints an entry even if a concurrent write replaced it.
    UnconditionalRepoint = 3,
    /// A group-commit follower returns while a leader's fsync runs, without waiting for it.
    FollowerSkipsWait = 4,
    /// A `remove` of a key that is already absent returns without waiting for the remove that
    /// made it absent to be durable.
    NoopRemoveSkipsWait = 5,
    /// A group-commit follower that polled until the running fsync finished returns as if that
    /// fsync had covered its record.
    PolledFsyncCountsAsOwn = 6,
    /// The fsync gate lets an fsync through after `close`'s, so a writer that appended just
    /// before `close` fsyncs after it returned.
    FsyncAfterClose = 7,
    /// The fsync gate forgets a failed fsync, so a later fsync of the file may return Ok for
    /// records the failure dropped.
    GateForgetsFailure = 8,
    /// Merge's repoint of a key that a concurrent remove took out of the keydir puts it back.
    /// (Only in the loom build's keydir, which the models run; the dashmap one returns early
    /// the same way.)
    RepointRevivesRemoved = 9,
    /// Merge commits without first making the active file durable, though it left out records
    /// whose newer versions are there.
    SkipPreCommitSync = 10,
    /// `close` unpublishes the files before it marks the store closed, so a reader can find its
    /// entry's file gone while the store still looks open.
    UnpublishBeforeClosed = 11,
}

#[cfg(loom)]
static PROTOCOL_BREAK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Switches a protocol break on for the loom models (`ProtocolBreak::None` to switch it off).
#[cfg(loom)]
pub fn set_protocol_break(protocol_break: ProtocolBreak) {
    PROTOCOL_BREAK.store(protocol_break as u8, std::sync::atomic::Ordering::SeqCst);
}

/// Whether `protocol_break` is switched on; always false outside loom builds.
#[inline(always)]
pub(crate) fn broken(protocol_break: ProtocolBreak) -> bool {
    #[cfg(loom)]
    {
        PROTOCOL_BREAK.load(std::sync::atomic::Ordering::SeqCst) == protocol_break as u8
    }
    #[cfg(not(loom))]
    {
        let _ = protocol_break;
        false
    }
}

/// parking_lot's lock interface over loom's instrumented `Mutex` and `Condvar`.
#[cfg(loom)]
mod loom_shim {
    use std::fmt;
    use std::ops::{Deref, DerefMut};
    use std::time::{Duration, Instant};

    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a Mutex<T>,
        guard: Option<loom::sync::MutexGuard<'a, T>>,
    }

    #[derive(Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                mutex: self,
                guard: Some(self.0.lock().expect("loom mutex poisoned")),
            }
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    impl<T> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Mutex { .. }")
        }
    }

    impl<T> MutexGuard<'_, T> {
        /// Unlocks for the duration of `f`, then locks again.
        pub(crate) fn unlocked<R>(this: &mut Self, f: impl FnOnce() -> R) -> R {
            this.guard = None;
            let result = f();
            this.guard = Some(this.mutex.0.lock().expect("loom mutex poisoned"));
            result
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.guard.as_ref().expect("guard is held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_mut().expect("guard is held")
        }
    }

    impl Condvar {
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.guard.take().expect("guard is held");
            guard.guard = Some(self.0.wait(inner).expect("loom mutex poisoned"));
        }

        /// Loom has no time: a timed wait is an untimed one (the models never rely on timeouts).
        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, _timeout: Duration) {
            self.wait(guard);
        }

        pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, _deadline: Instant) {
            self.wait(guard);
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    impl fmt::Debug for Condvar {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Condvar { .. }")
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn loc(n: u32) -> Location {
        Location {
            file_id: n % 7,
            offset: n,
            value_len: n % 300,
        }
    }

    /// Keys of every length around the inline limit, short ones colliding in their prefixes.
    fn key_of(n: u32) -> Vec<u8> {
        let len = (n % 40) as usize;
        (0..len).map(|i| (n >> (i % 4)) as u8).collect()
    }

    #[test]
    fn get_finds_every_key_as_the_table_grows_and_nothing_else() {
        let map = KeyMap::default();
        let mut model = HashMap::new();
        for n in 0..20_000 {
            let key = key_of(n);
            map.insert_then(&key, loc(n), |_| ());
            model.insert(key, loc(n));
        }
        for (key, expected) in &model {
            assert_eq!(map.get(key), Some(*expected), "key {key:?}");
        }
        assert_eq!(map.len(), model.len());
        for n in 20_000..21_000 {
            let key = [key_of(n), b"absent".to_vec()].concat();
            assert_eq!(map.get(&key), None);
        }
    }

    /// A repoint that moves a key to a record of another value length (where a hint gave the old
    /// location a wrong one) stores the new length too, short and long keys alike.
    #[test]
    fn a_repoint_to_another_value_length_stores_it() {
        let map = KeyMap::default();
        for key in [&b"short"[..], &[7u8; 40]] {
            let old = Location {
                file_id: 1,
                offset: 20,
                value_len: 3,
            };
            map.insert_then(key, old, |_| ());
            let new = Location {
                file_id: 2,
                offset: 64,
                value_len: 5,
            };
            assert!(map.repoint(key, new, |present| *present == old));
            assert_eq!(map.get(key), Some(new));
            assert!(!map.repoint(key, old, |present| *present == old));
            assert_eq!(map.get(key), Some(new));
        }
    }

    proptest! {
        /// `get` (hand-written over dashmap's shards) agrees with a `HashMap` through inserts,
        /// replacements that change the value length, and removals.
        #[test]
        fn get_agrees_with_a_hash_map(ops in prop::collection::vec((0u32..64, 0u32..1000, 0u8..3), 1..300)) {
            let map = KeyMap::default();
            let mut model = HashMap::new();
            for (k, n, op) in ops {
                let key = key_of(k * 37);
                match op {
                    0 | 1 => {
                        map.insert_then(&key, loc(n), |_| ());
                        model.insert(key.clone(), loc(n));
                    }
                    _ => {
                        prop_assert_eq!(map.remove(&key), model.remove(&key));
                    }
                }
                prop_assert_eq!(map.get(&key), model.get(&key).copied());
            }
            for k in 0..64 {
                let key = key_of(k * 37);
                prop_assert_eq!(map.get(&key), model.get(&key).copied());
            }
        }
    }
}
