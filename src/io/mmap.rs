//! Memory maps of sealed data files, and the zero-copy value that borrows from them.
//!
//! This module holds most of the crate's `unsafe` (the others: `fileset`'s epoch-protected
//! pointers, one CPU prefetch hint in `sync`, and registering the fork counter in `fork`).
//! Mapping a file is sound only while nobody changes the mapped bytes or shrinks the file (that
//! is SIGBUS, not an error). The engine keeps these invariants, argued in full in
//! `docs/design.md`:
//!
//! 1. A sealed file is never written, truncated or rewritten again. The active file, the one
//!    being appended to, is mapped through [`AppendMap`], which hands out only bytes below its
//!    `written` mark: the writer appends at and above that mark (through the map itself, see
//!    [`AppendWriter`], or with `pwrite`), and the active file is truncated only down to that
//!    mark (the writer's preallocation, when it seals the file or closes), so those bytes never
//!    change either.
//! 2. The directory is held under an exclusive lock (`io::lock`), so no other handle of this
//!    engine (in this or another process) writes files while we map them. Recovery truncates a
//!    torn tail only before it maps that file.
//! 3. Merge retires a mapped file by unlinking its name. On POSIX the inode and its pages live on
//!    until the last mapping is gone, and the unmap itself is deferred through crossbeam-epoch
//!    until no reader can still hold a slice of it.
//!
//! Outside processes that ignore the lock and modify the files are outside what any mmap-based
//! engine can defend against; bytes read are still checksummed, so such damage surfaces as
//! [`crate::Error::Corruption`] unless it truncates the file. Two limits of invariant 2, which
//! `docs/design.md` states: the lock is `flock`, which some network file systems (NFS) emulate
//! per process, so a second open in the same process is refused by the engine's own registry of the
//! `LOCK` files it holds (by device and inode) instead; and a child process created by `fork` shares the lock and the
//! maps, so a `Database` must not be used in a forked child (dropping it there leaks it instead
//! of closing it, and `close` refuses: `docs/design.md`, invariant 2).
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crossbeam_epoch::Guard;
use memmap2::{Mmap, MmapOptions, MmapRaw};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, Result};
use crate::io::vfs::VfsFile;
use crate::sync::Arc;
use crate::value::Value;

/// The bytes of a sealed file: a memory map, or (simulated file system) a copy in memory.
#[derive(Debug)]
pub(crate) enum Mapping {
    File(Mmap),
    #[cfg_attr(not(any(test, feature = "sim")), allow(dead_code))]
    Memory(Arc<[u8]>),
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Mapping::File(map) => map,
            Mapping::Memory(bytes) => bytes,
        }
    }
}

/// Maps a sealed data file or a hint file read-only; recovery also maps the newest writer file
/// to scan it, before it truncates or appends to it.
pub(crate) fn map_file(file: &File, path: &Path) -> Result<Mapping> {
    // SAFETY: the file is a sealed data file or a hint file: no one writes, truncates or
    // rewrites either while it is mapped (invariants 1-3 of this module; a hint file is written
    // to a temporary name, renamed into place and afterwards only deleted). Or it is the newest
    // writer file being recovered: the directory lock (invariant 2) keeps every other handle
    // out, and recovery drops this map before it truncates the file or anything appends to it.
    // (Open's rewrite after a failed fsync, `recovery::fsync_failure`, writes a file while a
    // closed handle of this process may still map it, but writes the bytes that are there, which
    // no map can tell from no write.)
    let map = unsafe { Mmap::map(file) };
    let context = match &map {
        // The usual cause is the per-process count of maps, not memory: every sealed file is one.
        Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => {
            "mapping (out of maps or address space: each sealed file is one map, counted against \
             vm.max_map_count; a small data_file_limit makes many)"
        }
        _ => "mapping",
    };
    Ok(Mapping::File(map.context(context, path)?))
}

/// A shared, writable map of the active file, reserved up to the file's size limit when the
/// file becomes active, so that readers can read it zero-copy while the writer appends, and the
/// writer can append without a system call.
///
/// Only the bytes below `written` are ever handed out. Invariant (module invariant 1): bytes
/// below `written` are complete records that are never written again, and the file is never
/// shorter than `written` while this map exists. The map may extend past the end of the file;
/// those pages are never touched (that would be SIGBUS), because every slice ends at or below
/// `written`, and the [`AppendWriter`] writes only below the length it allocated.
#[derive(Debug)]
pub(crate) struct AppendMap {
    map: MmapRaw,
    /// Length of the file's finished prefix. Only grows; set by the writer after each append.
    written: AtomicU64,
}

impl AppendMap {
    /// Maps `reserve` bytes of the active `file` (open for writing), of which the first
    /// `written` are finished. `None` when the map cannot be made (no address space): readers
    /// then use `pread`, and the writer `pwrite`.
    pub(crate) fn new(file: &File, reserve: u64, written: u64) -> Option<Self> {
        let len = usize::try_from(reserve).ok()?;
        let map = MmapOptions::new().len(len).map_raw(file).ok()?;
        Some(AppendMap {
            map,
            written: AtomicU64::new(written),
        })
    }

    /// The finished bytes `start..start + len`, or `None` if any of them is not finished or
    /// lies beyond the reserved map (the caller then falls back to `pread`).
    pub(crate) fn get(&self, start: u64, len: usize) -> Option<&[u8]> {
        let end = start.checked_add(len as u64)?;
        if end > self.written.load(Ordering::Acquire) || end > self.map.len() as u64 {
            return None;
        }
        // SAFETY: `start..end` lies inside the map (checked above) and below `written`, so it is
        // within the file (no SIGBUS) and holds bytes the writer finished and will never write
        // again, and no one truncates the active file below `written` (struct invariant; for
        // the one case a reopen in this process can, bytes below the mark that no longer read
        // back as written, see `docs/design.md`, memory maps, invariant 2). The
        // Acquire load pairs with the Release in `advance`, so the appended bytes are visible.
        // The slice borrows `self`, which owns the map.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start as usize), len) })
    }
}

/// How far ahead of the records the writer allocates the active file at most, so that most
/// appends through the map need no system call at all. (A sixteenth of the map where that is
/// less, so a small file limit does not make every active file a full-size one.)
const ALLOCATION_STEP: u64 = 4 << 20;

/// Records up to this long are copied into the map; longer ones are `pwrite`n. A copy costs a
/// page fault (with the page zeroed) per new 4 KiB page, a `pwrite` one system call per record,
/// so past about half a page the system call is cheaper. Measured (criterion `write`, no sync):
/// through the map, 100 B records were 3.2x as fast, 1 KiB 1.15x, and 16 KiB 0.61x.
const MAP_COPY_MAX: usize = 2 << 10;

/// The writer's half of an [`AppendMap`]: the one handle that writes into it and moves its
/// `written` mark (there is one per map, and it takes `&mut self`, so writes never race).
///
/// Appending through the map puts the record into the page cache with a `memcpy`, where `pwrite`
/// would cost a system call (about 60% of an unsynced write, `docs/benchmarks.md`); what reaches
/// the page cache either way survives a crash of the process, and `fdatasync` on the file writes
/// back pages dirtied through a shared map too. The file is first extended with `fallocate`
/// (blocks reserved, so a full disk is an error there and never a SIGBUS on a page fault) in
/// steps of [`ALLOCATION_STEP`]; where that fails, or the file system does not reserve blocks
/// in place (`VfsFile::allocate` refuses copy-on-write file systems), the writer falls back to
/// `pwrite`. A crash leaves the allocated but unwritten tail as zeros, which recovery cuts like
/// a torn write (zeros never decode as a record). Under `SyncPolicy::Always` the writer only
/// [`reserve`](AppendWriter::reserve)s the bytes and `pwrite`s each record there: it is fsynced
/// at once, and a copy into a page that fsync just wrote back takes a page fault.
#[derive(Debug)]
pub(crate) struct AppendWriter {
    shared: Arc<AppendMap>,
    /// The file is at least this long: its length when mapped, or what `fallocate` made it.
    allocated: u64,
    /// The file system refused to allocate (`Unsupported`): not asked again for this file.
    cannot_allocate: bool,
}

impl AppendWriter {
    /// The writer's half of `map`, whose file is `file_len` bytes long.
    pub(crate) fn new(map: AppendMap, file_len: u64) -> Self {
        AppendWriter {
            shared: Arc::new(map),
            allocated: file_len,
            cannot_allocate: false,
        }
    }

    /// The readers' half.
    pub(crate) fn shared(&self) -> &Arc<AppendMap> {
        &self.shared
    }

    /// Copies `record` into the map at `at`, which must be the `written` mark, allocating the
    /// file further first if needed. Returns false, having written nothing, if the record is
    /// larger than [`MAP_COPY_MAX`] or does not fit the map, or the file cannot be allocated:
    /// the caller then uses `pwrite`.
    pub(crate) fn append(&mut self, file: &dyn VfsFile, at: u64, record: &[u8]) -> bool {
        if record.len() > MAP_COPY_MAX || !self.reserve(file, at, record.len()) {
            return false;
        }
        // SAFETY: `at..at + len` lies inside the map and inside the file, which is at least
        // `allocated` long (`reserve` checked both; only `trim` shortens the file, and it lowers
        // `allocated` to match), so no SIGBUS. No reader reads it: `AppendMap::get` hands out
        // only bytes below `written`, which is `at` (`reserve` checked). No other writer exists:
        // this is the map's one `AppendWriter`, borrowed mutably. The source is a separate buffer.
        unsafe {
            let to = self.shared.map.as_mut_ptr().add(at as usize);
            std::ptr::copy_nonoverlapping(record.as_ptr(), to, record.len());
        }
        true
    }

    /// Makes sure the `len` bytes at `at`, which must be the `written` mark, lie inside the map
    /// and inside the file, allocating the file further first if needed. False if they do not
    /// fit the map or the file cannot be allocated (a `pwrite` there then extends the file).
    ///
    /// The writer calls this before a `pwrite` of a record it will fsync at once: a `pwrite`
    /// inside the allocated file leaves the file's length alone, so `fdatasync` has no new
    /// length to commit (a block's first write still converts it from allocated to written).
    pub(crate) fn reserve(&mut self, file: &dyn VfsFile, at: u64, len: usize) -> bool {
        let Some(end) = at.checked_add(len as u64) else {
            return false;
        };
        let written = self.shared.written.load(Ordering::Relaxed);
        if at != written || end > self.shared.map.len() as u64 {
            return false;
        }
        end <= self.allocated || self.allocate(file, end)
    }

    /// Extends the file to at least `end` (a step ahead, within the map). A file system that
    /// does not allocate in place is asked once per file; other failures (a full disk) are
    /// tried again at the next append.
    fn allocate(&mut self, file: &dyn VfsFile, end: u64) -> bool {
        if self.cannot_allocate {
            return false;
        }
        let map_len = self.shared.map.len() as u64;
        let step = ALLOCATION_STEP.min(map_len / 16);
        let target = end.max(self.allocated + step).min(map_len);
        match file.allocate(self.allocated, target - self.allocated) {
            Ok(()) => {
                self.allocated = target;
                true
            }
            Err(e) => {
                self.cannot_allocate = e.kind() == std::io::ErrorKind::Unsupported;
                false
            }
        }
    }

    /// The writer finished appending up to `written`: those bytes are immutable from now on.
    pub(crate) fn advance(&mut self, written: u64) {
        self.allocated = self.allocated.max(written);
        self.shared.written.store(written, Ordering::Release);
    }

    /// Cuts the file back to its finished bytes if it is longer (before the file is sealed or
    /// closed). Asks the file its length rather than trusting `allocated`: an `fallocate` that
    /// failed (a full disk) may have grown the file part of the way.
    pub(crate) fn trim(&mut self, file: &dyn VfsFile) -> std::io::Result<()> {
        let written = self.shared.written.load(Ordering::Relaxed);
        // Lowered first: if `set_len` fails part way, appends allocate again.
        self.allocated = written;
        if file.len()? > written {
            file.set_len(written)?;
        }
        Ok(())
    }
}

/// A value borrowed from a mapping, kept alive by the epoch pin it carries.
///
/// Holding one keeps this thread's epoch pinned, which delays the unmap of files retired by
/// merge; drop values promptly.
pub(crate) struct MappedBytes {
    ptr: *const u8,
    len: usize,
    _guard: Guard,
}

impl MappedBytes {
    /// Wraps `ptr..ptr+len` together with the guard that keeps their mapping alive.
    ///
    /// # Safety
    /// The bytes must have been borrowed for a lifetime tied to a borrow of `guard`, so that
    /// they stay valid for as long as `guard` stays pinned.
    unsafe fn new(guard: Guard, ptr: *const u8, len: usize) -> Self {
        MappedBytes {
            ptr,
            len,
            _guard: guard,
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: per `new`'s contract the mapping outlives `self._guard`, which lives as long as
        // `self`; the bytes are a sealed file's, or the active file's below its `written` mark,
        // and neither ever changes nor is truncated away (module invariant 1; invariant 2 of
        // `docs/design.md`'s memory maps states the one exception, a reopen in this process
        // after bytes below the mark stopped reading back as written).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Pins the epoch, lets `find` look a value up under that pin, and turns a borrowed result into a
/// [`Value`] that carries the pin with it.
///
/// `find` must work for every guard lifetime `'g`, so the bytes it borrows can only come from
/// data reached through the guard (a loaded file set) or from `'static` data: both stay valid
/// for as long as the guard is pinned, wherever the guard is moved.
pub(crate) fn pinned_value<F>(find: F) -> Result<Option<Value>>
where
    F: for<'g> FnOnce(&'g Guard) -> Result<Option<Cow<'g, [u8]>>>,
{
    let guard = crossbeam_epoch::pin();
    let (ptr, len) = match find(&guard)? {
        None => return Ok(None),
        Some(Cow::Owned(bytes)) => return Ok(Some(Value::owned(bytes))),
        Some(Cow::Borrowed(bytes)) => (bytes.as_ptr(), bytes.len()),
    };
    // SAFETY: `bytes` was borrowed for a lifetime tied to `&guard` (see above), and the guard
    // moves into the value together with the pointer.
    Ok(Some(Value::mapped(unsafe {
        MappedBytes::new(guard, ptr, len)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::vfs::{OpenMode, StdFs, Vfs};

    /// A writer half over a new file of `len` zero bytes, mapped with room for 1 MiB.
    fn writer_over(path: &Path, len: u64) -> (crate::io::vfs::FileHandle, AppendWriter) {
        let file = StdFs.open(path, OpenMode::CreateTruncate).unwrap();
        file.set_len(len).unwrap();
        let map = file.map_appending(1 << 20, len).unwrap();
        (file, AppendWriter::new(map, len))
    }

    #[test]
    fn appends_are_readable_below_the_mark_only_and_trim_cuts_back_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let (file, mut writer) = writer_over(&dir.path().join("a"), 20);
        assert!(!writer.append(&*file, 21, b"not at the mark"));
        // Refused (false) where the file system does not reserve blocks in place (`allocate`):
        // the writer then uses `pwrite`, and there is no map write to check.
        if writer.append(&*file, 20, b"record") {
            assert_eq!(writer.shared().get(20, 6), None, "not finished yet");
            writer.advance(26);
            assert_eq!(writer.shared().get(20, 6), Some(&b"record"[..]));
        }
        assert!(
            !writer.append(&*file, 26, &[0; MAP_COPY_MAX + 1]),
            "large: pwrite"
        );
        writer.trim(&*file).unwrap();
        let written = writer.shared().written.load(Ordering::Relaxed);
        assert_eq!(file.len().unwrap(), written);
    }

    #[test]
    fn reserve_takes_only_the_mark_and_allocates_a_step_ahead_within_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut writer) = writer_over(&dir.path().join("a"), 20);
        let file = Allocations::default();
        assert!(!writer.reserve(&file, 21, 6), "not at the mark");
        assert!(!writer.reserve(&file, 20, 1 << 20), "past the map");
        assert!(writer.reserve(&file, 20, 6));
        // A sixteenth of the 1 MiB map ahead, then nothing until the record passes it.
        let step = (1 << 20) / 16;
        assert!(writer.reserve(&file, 20, step as usize));
        assert_eq!(*file.asked.lock(), [(20, step)]);
        assert!(writer.reserve(&file, 20, step as usize + 1));
        assert_eq!(file.asked.lock()[1], (20 + step, step));
    }

    /// A file that records what it was asked to allocate, and refuses (as a copy-on-write file
    /// system does) if `refuse`.
    #[derive(Debug, Default)]
    struct Allocations {
        refuse: bool,
        asked: parking_lot::Mutex<Vec<(u64, u64)>>,
    }

    impl VfsFile for Allocations {
        fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<()> {
            unreachable!()
        }
        fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
            unreachable!()
        }
        fn sync(&self) -> std::io::Result<()> {
            unreachable!()
        }
        fn len(&self) -> std::io::Result<u64> {
            unreachable!()
        }
        fn set_len(&self, _: u64) -> std::io::Result<()> {
            unreachable!()
        }
        fn map(&self, _: &Path) -> Result<Mapping> {
            unreachable!()
        }
        fn allocate(&self, offset: u64, len: u64) -> std::io::Result<()> {
            self.asked.lock().push((offset, len));
            if self.refuse {
                return Err(std::io::ErrorKind::Unsupported.into());
            }
            Ok(())
        }
    }

    /// On btrfs, say, every append would otherwise ask (and `fstatfs`) again.
    #[test]
    fn a_file_system_that_cannot_allocate_is_asked_once_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut writer) = writer_over(&dir.path().join("a"), 20);
        let refusing = Allocations {
            refuse: true,
            ..Allocations::default()
        };
        assert!(!writer.reserve(&refusing, 20, 6));
        assert!(!writer.append(&refusing, 20, b"record"));
        assert_eq!(refusing.asked.lock().len(), 1);
    }

    /// An `fallocate` that fails part way (a full disk) may leave the file longer than the
    /// writer knows; `trim` still cuts it back, so a sealed file never ends in zeros.
    #[test]
    fn trim_cuts_a_file_longer_than_the_writer_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let (file, mut writer) = writer_over(&dir.path().join("a"), 20);
        file.set_len(4096).unwrap(); // grown behind the writer's back
        writer.trim(&*file).unwrap();
        assert_eq!(file.len().unwrap(), 20);
    }
}
