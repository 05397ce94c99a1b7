//! The published set of open data files, swapped as a whole through crossbeam-epoch.
//!
//! Readers pin, load the current set and read through it without taking any lock or touching any
//! shared counter. Writers of the set (rotation, merge, close) serialise on `publish_lock`, build
//! a new set, swap it in, and hand the old one to the epoch collector, which drops it (and so
//! unmaps the files no newer set holds) only once every thread pinned before the swap unpinned.
#![allow(unsafe_code)]

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};

use crate::format::FileId;
use crate::segment::Segment;
use crate::sync::{Arc, Mutex, Ordering};

/// An immutable snapshot of the open data files, sorted by id.
#[derive(Debug, Default, Clone)]
pub(crate) struct FileSet {
    segments: Vec<Arc<Segment>>,
}

impl FileSet {
    pub(crate) fn new(mut segments: Vec<Arc<Segment>>) -> Self {
        segments.sort_by_key(|s| s.id);
        FileSet { segments }
    }

    pub(crate) fn get(&self, id: FileId) -> Option<&Segment> {
        self.segments
            .binary_search_by_key(&id, |s| s.id)
            .ok()
            .map(|i| &*self.segments[i])
    }

    pub(crate) fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    /// This set with `added` in it, replacing any segment of the same id.
    pub(crate) fn with(&self, added: impl IntoIterator<Item = Arc<Segment>>) -> FileSet {
        let mut segments = self.segments.clone();
        for segment in added {
            segments.retain(|s| s.id != segment.id);
            segments.push(segment);
        }
        FileSet::new(segments)
    }

    /// This set without the segments whose ids are in `removed`.
    pub(crate) fn without(&self, removed: &[FileId]) -> FileSet {
        let mut segments = self.segments.clone();
        segments.retain(|s| !removed.contains(&s.id));
        FileSet { segments }
    }
}

/// The cell readers load the current [`FileSet`] from.
#[derive(Debug)]
pub(crate) struct Files {
    current: Atomic<FileSet>,
    publish_lock: Mutex<()>,
}

impl Files {
    pub(crate) fn new(set: FileSet) -> Self {
        Files {
            current: Atomic::new(set),
            publish_lock: Mutex::new(()),
        }
    }

    /// The current set, valid for as long as `guard` stays pinned.
    pub(crate) fn load<'g>(&self, guard: &'g Guard) -> &'g FileSet {
        let shared = self.current.load(Ordering::Acquire, guard);
        // SAFETY: `current` is never null (set in `new`, only ever swapped for another owned
        // set), and a set taken out of `current` is destroyed only through `defer_destroy`,
        // i.e. after every guard pinned before the swap, including `guard`, is dropped.
        unsafe { shared.deref() }
    }

    /// Replaces the current set with `change(current)`.
    pub(crate) fn publish(&self, change: impl FnOnce(&FileSet) -> FileSet) {
        let _serialised = self.publish_lock.lock();
        let guard = epoch::pin();
        let next = change(self.load(&guard));
        let old = self
            .current
            .swap(Owned::new(next), Ordering::AcqRel, &guard);
        // SAFETY: `old` was unlinked by the swap above, so no thread can load it again; threads
        // that loaded it before are pinned, and the collector waits for them.
        unsafe { guard.defer_destroy(old) };
        guard.flush();
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let guard = epoch::pin();
        let current = self
            .current
            .swap(epoch::Shared::null(), Ordering::AcqRel, &guard);
        // SAFETY: `&mut self` proves no thread can load `current` any more. Values handed out by
        // `Database::get` may still borrow from its maps, but each holds a pinned guard, so the
        // deferred destruction waits for them.
        unsafe { guard.defer_destroy(current) };
        guard.flush();
    }
}
