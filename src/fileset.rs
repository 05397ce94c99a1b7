//! The published set of open data files, swapped as a whole through crossbeam-epoch.
//!
//! Readers pin, load the current set and read through it without taking any lock or touching any
//! shared counter. Writers of the set (rotation, merge, close) serialise on `publish_lock`, build
//! a new set, swap it in, and hand the old one to the epoch collector, which drops it only once
//! every thread pinned before the swap unpinned.
//!
//! The collector runs inside whichever thread pins next, usually a reader. Dropping the last
//! reference to a segment can be slow: it unmaps the file (a merge retires hundreds of MB of
//! mapped pages), and the last unmap of a file that merge deleted makes the kernel free its page
//! cache. A `get` right after a merge of 1M keys stalled for 47-52 ms on that (`cargo bench
//! --bench profile -- stall`). So a dropped set hands its segments to [`retire`], which drops
//! them on a thread of its own; merge hands over its inputs the same way.
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

impl Drop for FileSet {
    fn drop(&mut self) {
        if !self.segments.is_empty() {
            retire(std::mem::take(&mut self.segments));
        }
    }
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
        // SAFETY: `current` is never null while `&self` can be borrowed (set in `new`, only
        // ever swapped for another owned set; `Drop`, which takes it out, has `&mut self`), and
        // a set taken out of `current` is destroyed only through `defer_destroy`,
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

/// Advances the epoch far enough that the sets published away just now are destroyed (their
/// segments then go to [`retire`]), unless a thread is pinned meanwhile (a reader, or a
/// [`crate::Value`] kept alive). Without it they wait until the epoch advances: at a thread's
/// 128th pin, or a later publish (a rotation); on an idle store, never, so the files a merge
/// deleted kept their disk space while they stayed mapped. Not under loom, whose models it
/// would only slow.
pub(crate) fn collect_retired() {
    // A set retired in epoch `e` is destroyed once the global epoch reaches `e + 2`; each
    // `flush` tries to advance it once, and a fresh pin each time lets the next one go on.
    #[cfg(not(loom))]
    for _ in 0..2 {
        epoch::pin().flush();
    }
}

/// Drops `segments` on the process's retiring thread (named `bitcask-retire`), so that the
/// caller does not wait for the unmapping. Dropped here if that thread could not be started, or
/// in a forked child (which has the channel but not the thread). Under loom, always here.
pub(crate) fn retire(segments: Vec<Arc<Segment>>) {
    drop_elsewhere(Box::new(segments));
}

/// Starts the retiring thread if it is not running yet. Opening a store calls it, so that the
/// thread is not started from inside the epoch collector, which may run anywhere (even in a
/// thread's exit).
pub(crate) fn start_retiring() {
    let _ = retiring();
}

/// Something whose drop is slow, to be dropped on the retiring thread.
type Retired = Box<dyn Send>;

/// The retiring thread's queue, and the process that started the thread.
#[cfg(not(loom))]
fn retiring() -> Option<&'static (u32, std::sync::mpsc::Sender<Retired>)> {
    static RETIRING: std::sync::OnceLock<Option<(u32, std::sync::mpsc::Sender<Retired>)>> =
        std::sync::OnceLock::new();
    RETIRING
        .get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel::<Retired>();
            std::thread::Builder::new()
                .name("bitcask-retire".into())
                .spawn(move || receiver.into_iter().for_each(drop))
                .ok()
                .map(|_| (std::process::id(), sender))
        })
        .as_ref()
}

#[cfg(not(loom))]
fn drop_elsewhere(retired: Retired) {
    match retiring() {
        Some((pid, sender)) if *pid == std::process::id() => {
            // The thread never ends; should a send fail anyway, drop it here.
            if let Err(unsent) = sender.send(retired) {
                drop(unsent.0);
            }
        }
        _ => drop(retired),
    }
}

#[cfg(loom)]
fn retiring() {}

#[cfg(loom)]
fn drop_elsewhere(retired: Retired) {
    drop(retired);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Sends the name of the thread that drops it.
    struct Probe(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = self.0.send(name);
        }
    }

    /// Blocks the thread that drops it until `open` is sent to.
    struct Gate(std::sync::mpsc::Receiver<()>);

    impl Drop for Gate {
        fn drop(&mut self) {
            let _ = self.0.recv_timeout(std::time::Duration::from_secs(10));
        }
    }

    #[test]
    fn a_dropped_set_leaves_its_segments_to_the_retiring_thread() {
        use crate::io::mmap::Mapping;
        use crate::segment::Storage;

        let bytes: Arc<[u8]> = Arc::from(vec![7u8; 64]);
        let alive = Arc::downgrade(&bytes);
        let segment = Segment {
            id: 1,
            path: "1.data".into(),
            storage: Storage::Sealed(Mapping::Memory(bytes)),
        };
        let set = FileSet::new(vec![Arc::new(segment)]);
        // Hold the retiring thread, so that only it can have dropped the segment.
        let (open, gate) = std::sync::mpsc::channel();
        drop_elsewhere(Box::new(Gate(gate)));
        drop(set);
        assert!(alive.upgrade().is_some(), "dropped on the caller's thread");
        open.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive.upgrade().is_some() {
            assert!(std::time::Instant::now() < deadline, "never dropped");
            std::thread::yield_now();
        }
    }

    #[test]
    fn retired_things_are_dropped_on_the_retiring_thread() {
        let (sender, receiver) = std::sync::mpsc::channel();
        drop_elsewhere(Box::new(Probe(sender.clone())));
        drop_elsewhere(Box::new(Probe(sender)));
        for _ in 0..2 {
            let name = receiver
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("dropped");
            assert_eq!(name.as_deref(), Some("bitcask-retire"));
        }
    }
}
