//! A simulated file system for crash and fault-injection tests (cargo feature `sim`).
//!
//! It keeps two versions of everything: what the running program sees, and what would survive a
//! power cut (file contents as of their last `sync`, directory entries as of their directory's
//! last `sync_dir`). [`SimFs::fail_at`] makes the N-th mutating operation (create, write, sync,
//! truncate, rename, remove, directory sync) cut the power, fail with an error, or write short;
//! [`SimFs::crash_image`] is what a machine rebooted after the cut would find.
//!
//! A failed `sync` behaves as Linux's `fsync` does after a failed write-back: the bytes it should
//! have written are dropped from write-back but stay readable ("lost" below), and a later
//! successful `sync` does not make them durable. Only writing them again does.
//!
//! With [`SimFs::with_append_maps`] it also maps active files for appending and allocates them
//! ahead (`fallocate`), as ext4 does, so that the writer's default path (records copied through
//! the map, or under `SyncPolicy::Always` `pwrite`n into the allocated file; the allocation; the
//! trim before sealing) meets the faults too. A mapped file's bytes
//! then live in a memfd, which the writer writes through its map without telling the simulation;
//! every operation on the file first reads them back ([`Inode::absorb`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Error, ErrorKind};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::io::lock::HeldByThisProcess;
use crate::io::mmap::{AppendMap, Mapping};
use crate::io::vfs::{EntryKind, FileHandle, LockGuard, OpenMode, Vfs, VfsFile};
use crate::sync::Arc;
// Not `crate::sync::Mutex`: the simulated disk is not part of the protocol the loom models check,
// and no lock of it is held across an instrumented operation.
use parking_lot::Mutex;

/// What goes wrong at the chosen operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The power fails: this and every later mutating operation fails with EIO, and only what
    /// was synced is in [`SimFs::crash_image`].
    PowerCut,
    /// This one operation fails with an error of this kind (say `StorageFull` for ENOSPC);
    /// later operations work.
    Error(ErrorKind),
    /// A write stores only the first half of its bytes, then fails with EIO; any other
    /// operation just fails with EIO. Later operations work.
    ShortWrite,
    /// This one operation panics (a bug in I/O code, say); later operations work. For tests
    /// that a panic leaves the store failed, not hung.
    Panic,
    /// A rename takes effect and then fails with EIO, as a network file system's retried rename
    /// can report; any other operation just fails with EIO. Later operations work.
    FailAfterRename,
}

/// An in-memory file system with power cuts; clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default, Clone)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
    ops: u64,
    /// Planned faults, by the operation they strike.
    faults: BTreeMap<u64, Fault>,
    powered_off: bool,
    locks: BTreeSet<PathBuf>,
    /// Map active files for appending, and allocate them ahead ([`SimFs::with_append_maps`]).
    append_maps: bool,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Byte ranges of `data` a failed sync dropped from write-back: readable, never made
    /// durable by a later sync, until written again.
    lost: Vec<Range<usize>>,
    /// Where the file's bytes live once it was mapped for appending: the writer changes them
    /// through its map, so `data` is only a copy, taken again by [`Inode::absorb`].
    memfd: Option<Arc<std::fs::File>>,
}

impl Inode {
    /// Takes the bytes the writer may have put through its map into `data`. Reading through a
    /// system call, not the map: the writer may be copying into it at this moment.
    /// Bytes that changed since the last look were written through the map, which dirties
    /// their pages again: a later sync writes them even where a failed one dropped them.
    fn absorb(&mut self) {
        let Some(memfd) = &self.memfd else {
            return;
        };
        let len = memfd.metadata().expect("memfd length").len() as usize;
        let mut now = vec![0; len];
        std::os::unix::fs::FileExt::read_exact_at(&**memfd, &mut now, 0)
            .expect("reading the memfd");
        let mut changed: Vec<Range<usize>> = Vec::new();
        for i in (0..len).filter(|&i| self.data.get(i) != Some(&now[i])) {
            match changed.last_mut() {
                Some(run) if run.end == i => run.end = i + 1,
                _ => changed.push(i..i + 1),
            }
        }
        self.data = now;
        for run in changed {
            self.rewrote(run);
        }
    }

    /// The bytes of a file that no name refers to any more are read back and its memfd closed
    /// (a map of it, if any, keeps its own reference to the pages).
    fn release(&mut self) {
        self.absorb();
        self.memfd = None;
    }

    /// Puts `data[range]` (just changed) into the memfd, if the file has one.
    fn store(&self, range: Range<usize>) {
        if let Some(memfd) = &self.memfd {
            let end = range.end.min(self.data.len());
            if range.start < end {
                std::os::unix::fs::FileExt::write_all_at(
                    &**memfd,
                    &self.data[range.start..end],
                    range.start as u64,
                )
                .expect("writing the memfd");
            }
        }
    }

    /// Makes the memfd as long as `data`.
    fn store_len(&self) {
        if let Some(memfd) = &self.memfd {
            memfd
                .set_len(self.data.len() as u64)
                .expect("sizing the memfd");
        }
    }

    /// An independent copy of what the program sees now, without a memfd (for images).
    fn snapshot(&mut self) -> Inode {
        self.absorb();
        Inode {
            data: self.data.clone(),
            durable: self.durable.clone(),
            lost: self.lost.clone(),
            memfd: None,
        }
    }

    /// A failed sync: every byte not yet durable is dropped from write-back.
    fn drop_unsynced(&mut self) {
        self.absorb();
        let differs = |i: usize| self.durable.get(i) != Some(&self.data[i]);
        let mut start = None;
        for i in 0..=self.data.len() {
            match (start, i < self.data.len() && differs(i)) {
                (None, true) => start = Some(i),
                (Some(from), false) => {
                    self.lost.push(from..i);
                    start = None;
                }
                _ => {}
            }
        }
    }

    /// A successful sync: `data` becomes durable, except the bytes a failed sync dropped.
    fn sync(&mut self) {
        self.absorb();
        let mut durable = self.data.clone();
        for range in &self.lost {
            for i in range.start..range.end.min(durable.len()) {
                durable[i] = self.durable.get(i).copied().unwrap_or(0);
            }
        }
        self.durable = durable;
    }

    /// Bytes `written` are dirty again: the next sync writes them.
    fn rewrote(&mut self, written: Range<usize>) {
        self.lost = std::mem::take(&mut self.lost)
            .into_iter()
            .flat_map(|lost| {
                let before = lost.start..lost.end.min(written.start);
                let after = lost.start.max(written.end)..lost.end;
                [before, after]
            })
            .filter(|range| !range.is_empty())
            .collect();
    }
}

fn eio(what: &str) -> Error {
    Error::other(format!("simulated I/O error: {what}"))
}

impl State {
    /// Counts one mutating operation and applies the planned fault if this is its turn.
    fn step(&mut self) -> std::io::Result<Option<Fault>> {
        if self.powered_off {
            return Err(eio("the power is off"));
        }
        self.ops += 1;
        match self.faults.remove(&self.ops) {
            Some(fault) => match fault {
                Fault::PowerCut => {
                    self.powered_off = true;
                    Err(eio("power cut"))
                }
                Fault::Error(kind) => Err(Error::new(kind, format!("simulated fault: {kind}"))),
                Fault::ShortWrite | Fault::FailAfterRename => Ok(Some(fault)),
                Fault::Panic => panic!("simulated panic at operation {}", self.ops),
            },
            None => Ok(None),
        }
    }

    /// A step for an operation that cannot be short or fail after the fact: such a fault is a
    /// plain error.
    fn plain_step(&mut self) -> std::io::Result<()> {
        match self.step()? {
            Some(_) => Err(eio("fault")),
            None => Ok(()),
        }
    }

    /// A new file system with `inodes` under `names`, this one's directories and durable names,
    /// and nothing else: no locks held, no fault planned, no operations counted.
    fn image(&self, inodes: Vec<Inode>, names: BTreeMap<PathBuf, usize>) -> SimFs {
        let image = State {
            inodes,
            names,
            durable_names: self.durable_names.clone(),
            dirs: self.dirs.clone(),
            append_maps: self.append_maps,
            ..State::default()
        };
        SimFs {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// Closes `inode`'s memfd once no current name refers to it.
    fn release_if_unnamed(&mut self, inode: usize) {
        if !self.names.values().any(|&named| named == inode) {
            self.inodes[inode].release();
        }
    }

    fn inode_of(&self, path: &Path) -> std::io::Result<usize> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| ErrorKind::NotFound.into())
    }
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Self {
        SimFs::default()
    }

    /// An empty file system that maps active files for appending and allocates them ahead, as
    /// ext4 does (see the module documentation): the engine's default write path.
    pub fn with_append_maps() -> Self {
        let fs = SimFs::default();
        fs.state.lock().append_maps = true;
        fs
    }

    /// Makes mutating operation number `op` (counting from the first one this file system ever
    /// saw, see [`ops`](SimFs::ops)) suffer `fault`, instead of any fault planned before.
    pub fn fail_at(&self, op: u64, fault: Fault) {
        let mut state = self.state.lock();
        state.faults.clear();
        state.faults.insert(op, fault);
    }

    /// Plans `fault` at operation `op` too, keeping the faults planned before (for a second
    /// failure right after the first).
    pub fn also_fail_at(&self, op: u64, fault: Fault) {
        self.state.lock().faults.insert(op, fault);
    }

    /// Mutating operations so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Whether a [`Fault::PowerCut`] has happened.
    pub fn is_powered_off(&self) -> bool {
        self.state.lock().powered_off
    }

    /// What a machine rebooted now would find: synced contents under durable names.
    pub fn crash_image(&self) -> SimFs {
        let state = self.state.lock();
        let inodes = state
            .inodes
            .iter()
            .map(|inode| Inode {
                data: inode.durable.clone(),
                durable: inode.durable.clone(),
                ..Inode::default()
            })
            .collect();
        state.image(inodes, state.durable_names.clone())
    }

    /// What a new process would find if this one were killed now (kill -9): every write so far
    /// under the current names, since the page cache outlives the process; no locks held.
    pub fn kill_image(&self) -> SimFs {
        let mut state = self.state.lock();
        let inodes = state.inodes.iter_mut().map(Inode::snapshot).collect();
        state.image(inodes, state.names.clone())
    }

    /// The synced contents of the file now named `path`, if there is one.
    pub fn synced_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let inode = *state.names.get(path)?;
        Some(state.inodes[inode].durable.clone())
    }

    /// The kernel evicts every page a failed sync dropped: those bytes read as what is durable
    /// again (zeros past the durable length).
    pub fn evict_dropped_pages(&self) {
        for inode in &mut self.state.lock().inodes {
            inode.absorb();
            for range in std::mem::take(&mut inode.lost) {
                for i in range.start..range.end.min(inode.data.len()) {
                    inode.data[i] = inode.durable.get(i).copied().unwrap_or(0);
                }
                inode.store(range);
            }
        }
    }

    /// Creates or replaces the file `path` with `bytes`, durable at once, as a test plants a
    /// file. Counts no operation.
    pub fn put_file(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.state.lock();
        let inode = Inode {
            data: bytes.to_vec(),
            durable: bytes.to_vec(),
            ..Inode::default()
        };
        state.inodes.push(inode);
        let id = state.inodes.len() - 1;
        state.names.insert(path.to_path_buf(), id);
        state.durable_names.insert(path.to_path_buf(), id);
    }

    /// Names and current contents of the files in `dir`.
    pub fn files(&self, dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut state = self.state.lock();
        let state = &mut *state;
        (state.names.iter())
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, &inode)| (path.clone(), state.inodes[inode].snapshot().data))
            .collect()
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<FileHandle> {
        let mut state = self.state.lock();
        let inode = if mode == OpenMode::CreateTruncate {
            state.plain_step()?;
            match state.names.get(path) {
                Some(&inode) => {
                    let file = &mut state.inodes[inode];
                    file.data.clear();
                    file.lost.clear();
                    file.store_len();
                    inode
                }
                None => {
                    state.inodes.push(Inode::default());
                    let inode = state.inodes.len() - 1;
                    state.names.insert(path.to_path_buf(), inode);
                    inode
                }
            }
        } else {
            state.inode_of(path)?
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            inode,
            writable: mode != OpenMode::Read,
        }))
    }

    fn read_all(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let mut state = self.state.lock();
        let inode = state.inode_of(path)?;
        Ok(state.inodes[inode].snapshot().data)
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut state = self.state.lock();
        let inode = state.inode_of(from)?;
        let fault = state.step()?;
        if fault.is_some_and(|f| f != Fault::FailAfterRename) {
            return Err(eio("fault"));
        }
        state.names.remove(from);
        if let Some(replaced) = state.names.insert(to.to_path_buf(), inode) {
            state.release_if_unnamed(replaced);
        }
        match fault {
            Some(_) => Err(eio("simulated failure after the rename took effect")),
            None => Ok(()),
        }
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut state = self.state.lock();
        let inode = state.inode_of(path)?;
        state.plain_step()?;
        state.names.remove(path);
        state.release_if_unnamed(inode);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut state = self.state.lock();
        state.plain_step()?;
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        state.durable_names.retain(|path, _| !in_dir(path));
        let current: Vec<_> = state
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, &inode)| (path.clone(), inode))
            .collect();
        state.durable_names.extend(current);
        Ok(())
    }

    fn list(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let state = self.state.lock();
        if !state.dirs.contains(dir) {
            return Err(ErrorKind::NotFound.into());
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        let mut state = self.state.lock();
        state.plain_step()?;
        // Simplification: directories are durable as soon as they exist.
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn entry(&self, path: &Path) -> std::io::Result<Option<EntryKind>> {
        let state = self.state.lock();
        Ok(if state.dirs.contains(path) {
            Some(EntryKind::Dir)
        } else if state.names.contains_key(path) {
            Some(EntryKind::File)
        } else {
            None
        })
    }

    fn lock(&self, path: &Path) -> std::io::Result<LockGuard> {
        let mut state = self.state.lock();
        if !state.locks.insert(path.to_path_buf()) {
            return Err(std::io::Error::new(
                ErrorKind::WouldBlock,
                HeldByThisProcess,
            ));
        }
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.state.lock().locks.remove(&self.path);
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    inode: usize,
    /// Opened for writing: a write or cut through a read-only handle fails, as EBADF would.
    writable: bool,
}

impl SimFile {
    fn check_writable(&self) -> std::io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(std::io::Error::other(
                "simulated EBADF: the file was opened read-only",
            ))
        }
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut state = self.fs.state.lock();
        state.inodes[self.inode].absorb();
        let data = &state.inodes[self.inode].data;
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| data.get(start..start.checked_add(buf.len())?))
            .ok_or(ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.check_writable()?;
        let mut state = self.fs.state.lock();
        let short = match state.step()? {
            None => false,
            Some(Fault::ShortWrite) => true,
            Some(_) => return Err(eio("fault")),
        };
        let written = if short { &buf[..buf.len() / 2] } else { buf };
        let inode = &mut state.inodes[self.inode];
        inode.absorb();
        let start = offset as usize;
        if inode.data.len() < start + written.len() {
            inode.data.resize(start + written.len(), 0);
        }
        inode.data[start..start + written.len()].copy_from_slice(written);
        inode.store(start..start + written.len());
        inode.rewrote(start..start + written.len());
        if short {
            Err(eio("short write"))
        } else {
            Ok(())
        }
    }

    fn sync(&self) -> std::io::Result<()> {
        let mut state = self.fs.state.lock();
        if let Err(e) = state.plain_step() {
            if !state.powered_off {
                state.inodes[self.inode].drop_unsynced();
            }
            return Err(e);
        }
        state.inodes[self.inode].sync();
        Ok(())
    }

    fn len(&self) -> std::io::Result<u64> {
        let mut state = self.fs.state.lock();
        state.inodes[self.inode].absorb();
        Ok(state.inodes[self.inode].data.len() as u64)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check_writable()?;
        let mut state = self.fs.state.lock();
        state.plain_step()?;
        let inode = &mut state.inodes[self.inode];
        inode.absorb();
        inode.data.resize(len as usize, 0);
        inode.store_len();
        // Cut pages leave the page cache; bytes past the end are zeros from now on.
        inode.rewrote(len as usize..usize::MAX);
        Ok(())
    }

    fn map(&self, _path: &Path) -> Result<Mapping> {
        let mut state = self.fs.state.lock();
        state.inodes[self.inode].absorb();
        Ok(Mapping::Memory(Arc::from(
            state.inodes[self.inode].data.as_slice(),
        )))
    }

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    fn map_appending(&self, reserve: u64, written: u64) -> Option<AppendMap> {
        let mut state = self.fs.state.lock();
        if !state.append_maps || !self.writable {
            return None;
        }
        let inode = &mut state.inodes[self.inode];
        inode.absorb();
        if inode.memfd.is_none() {
            // Without one (out of descriptors, say) the writer uses `pwrite`, as it does where
            // a real file cannot be mapped.
            let flags = rustix::fs::MemfdFlags::CLOEXEC;
            let fd = rustix::fs::memfd_create("bitcask-sim", flags).ok()?;
            inode.memfd = Some(Arc::new(std::fs::File::from(fd)));
            inode.store_len();
            inode.store(0..inode.data.len());
        }
        AppendMap::new(inode.memfd.as_ref()?, reserve, written)
    }

    fn allocate(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.check_writable()?;
        let mut state = self.fs.state.lock();
        if !state.append_maps
            || cfg!(not(any(
                target_os = "linux",
                target_os = "android",
                target_os = "freebsd"
            )))
        {
            return Err(ErrorKind::Unsupported.into());
        }
        // A short write here is an allocation that failed after growing the file part of the
        // way, as `fallocate` may.
        let short = match state.step()? {
            None => false,
            Some(Fault::ShortWrite) => true,
            Some(_) => return Err(eio("fault")),
        };
        let inode = &mut state.inodes[self.inode];
        inode.absorb();
        let end = usize::try_from(offset + len).map_err(|_| ErrorKind::InvalidInput)?;
        let end = if short {
            offset as usize + len as usize / 2
        } else {
            end
        };
        if inode.data.len() < end {
            let from = inode.data.len();
            inode.data.resize(end, 0);
            inode.store_len();
            inode.rewrote(from..end);
        }
        if short {
            Err(eio("allocation failed part of the way"))
        } else {
            Ok(())
        }
    }
}
