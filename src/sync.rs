//! The one import point for the synchronisation primitives the engine's protocol uses: locks,
//! condition variables, atomics, and the keydir's concurrent map.
//!
//! Normally these are parking_lot, std atomics and dashmap. Under `--cfg loom` (the models in
//! `loom-tests/`) they are loom's instrumented types behind the same interface, so loom explores
//! the interleavings of the engine's real code. `Arc` stays std's: reference counts are not
//! part of the protocol, and sets retired through crossbeam-epoch may outlive a loom execution.

pub(crate) use std::sync::Arc;

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
#[cfg(loom)]
pub(crate) use loom_shim::{Condvar, Mutex, MutexGuard};

/// A concurrent map from byte-string keys to small `Copy` values: the keydir's storage. Every
/// method is atomic for its key; closures run while the key's shard is locked.
///
/// Hashing is foldhash with a per-process random seed: several times faster than SipHash on
/// short keys, and still keyed, so callers cannot aim keys at one bucket without knowing it.
/// Keys up to 16 bytes are stored inline in the table (no allocation, no pointer to chase on
/// lookup); longer ones on the heap.
#[derive(Debug)]
pub(crate) struct KeyMap<V> {
    #[cfg(not(loom))]
    inner: dashmap::DashMap<KeyBuf, V, foldhash::fast::RandomState>,
    #[cfg(loom)]
    inner: Mutex<std::collections::HashMap<KeyBuf, V>>,
}

/// A key as the keydir stores it.
type KeyBuf = smallvec::SmallVec<[u8; 16]>;

/// What [`KeyMap::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upserted<V> {
    Inserted,
    /// Replaced this value.
    Replaced(V),
    /// Kept the present value.
    Kept,
}

/// Shards of the keydir map. More than dashmap's default (4 per core): threads that load hint
/// files in parallel at open, and the writer next to readers, rarely meet on one shard lock.
#[cfg(not(loom))]
const SHARDS: usize = 64;

impl<V: Copy> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap::with_capacity(0)
    }
}

#[cfg(not(loom))]
impl<V: Copy> KeyMap<V> {
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

    /// Inserts `value`, or replaces the present value if `replace(present)` says so.
    pub(crate) fn upsert(
        &self,
        key: &[u8],
        value: V,
        replace: impl FnOnce(&V) -> bool,
    ) -> Upserted<V> {
        match self.inner.entry(KeyBuf::from_slice(key)) {
            dashmap::Entry::Occupied(mut present) => {
                if replace(present.get()) {
                    Upserted::Replaced(present.insert(value))
                } else {
                    Upserted::Kept
                }
            }
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(value);
                Upserted::Inserted
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<V> {
        self.inner.get(key).map(|entry| *entry)
    }

    /// The shard (of [`KeyMap::shard_count`]) that holds `key`. Filling the map shard by shard
    /// keeps one shard's table in the CPU caches while it fills, instead of missing on every
    /// insert. (`determine_map` is the one thing the `raw-api` feature is enabled for.)
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
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &V)) {
        for entry in self.inner.iter() {
            f(entry.key(), entry.value());
        }
    }

    /// Runs `f` on the value of `key` if there is one.
    pub(crate) fn update<R>(&self, key: &[u8], f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.inner.get_mut(key).map(|mut entry| f(&mut entry))
    }

    /// Sets the key's value, then calls `then` with the value it replaced, still under the
    /// key's shard lock (one hash lookup whether or not the key was present).
    pub(crate) fn insert_then<R>(
        &self,
        key: &[u8],
        value: V,
        then: impl FnOnce(Option<V>) -> R,
    ) -> R {
        match self.inner.entry(KeyBuf::from_slice(key)) {
            dashmap::Entry::Occupied(mut present) => then(Some(present.insert(value))),
            dashmap::Entry::Vacant(vacant) => {
                let _locked = vacant.insert(value);
                then(None)
            }
        }
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Option<V> {
        self.inner.remove(key).map(|(_, value)| value)
    }

    /// Removes the key's value if `f(value)` says so, and returns it.
    pub(crate) fn remove_if(&self, key: &[u8], f: impl FnOnce(&V) -> bool) -> Option<V> {
        self.inner
            .remove_if(key, |_, value| f(value))
            .map(|(_, value)| value)
    }
}

#[cfg(loom)]
impl<V: Copy> KeyMap<V> {
    pub(crate) fn with_capacity(_capacity: usize) -> Self {
        KeyMap {
            inner: Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub(crate) fn upsert(
        &self,
        key: &[u8],
        value: V,
        replace: impl FnOnce(&V) -> bool,
    ) -> Upserted<V> {
        let mut map = self.inner.lock();
        match map.get_mut(key) {
            Some(present) if replace(present) => {
                Upserted::Replaced(std::mem::replace(present, value))
            }
            Some(_) => Upserted::Kept,
            None => {
                map.insert(KeyBuf::from_slice(key), value);
                Upserted::Inserted
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<V> {
        self.inner.lock().get(key).copied()
    }

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

    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &V)) {
        for (key, value) in self.inner.lock().iter() {
            f(key, value);
        }
    }

    pub(crate) fn update<R>(&self, key: &[u8], f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.inner.lock().get_mut(key).map(f)
    }

    pub(crate) fn insert_then<R>(
        &self,
        key: &[u8],
        value: V,
        then: impl FnOnce(Option<V>) -> R,
    ) -> R {
        let mut map = self.inner.lock();
        let old = map.insert(KeyBuf::from_slice(key), value);
        then(old)
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Option<V> {
        self.inner.lock().remove(key)
    }

    pub(crate) fn remove_if(&self, key: &[u8], f: impl FnOnce(&V) -> bool) -> Option<V> {
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
