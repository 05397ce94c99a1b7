//! The seam between the engine and the operating system: every file operation the engine makes
//! goes through [`Vfs`] and [`VfsFile`]. [`StdFs`] is the real file system; the simulated one
//! (`io::sim`, for tests) can cut the power or fail at any single operation.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, Sharing};
use crate::io::lock::{HeldByThisProcess, holder_note};
use crate::io::mmap::{AppendMap, Mapping, map_file};
use crate::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    Read,
    ReadWrite,
    /// Read-write, created if missing, truncated if present.
    CreateTruncate,
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Dir,
}

/// An open file.
pub(crate) type FileHandle = Arc<dyn VfsFile>;

/// A held directory lock; dropping it releases the lock.
pub(crate) type LockGuard = Box<dyn fmt::Debug + Send + Sync>;

/// File system operations.
pub(crate) trait Vfs: fmt::Debug + Send + Sync {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<FileHandle>;
    fn read_all(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    fn remove(&self, path: &Path) -> std::io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
    /// Paths of the entries of `dir`.
    fn list(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>>;
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()>;
    /// What `path` is, or `None` if nothing is there.
    fn entry(&self, path: &Path) -> std::io::Result<Option<EntryKind>>;
    /// Takes an exclusive lock on `path` without waiting; `ErrorKind::WouldBlock` if held.
    fn lock(&self, path: &Path) -> std::io::Result<LockGuard>;
    /// `dir` with every symbolic link resolved (it exists).
    fn canonical(&self, dir: &Path) -> std::io::Result<PathBuf> {
        Ok(dir.to_path_buf())
    }
    /// How the file at `path` is shared with other names, if it is: a symbolic link, or one of
    /// several hard links.
    fn shared(&self, _path: &Path) -> std::io::Result<Option<Sharing>> {
        Ok(None)
    }
    /// Fails if this process may not create and remove files in `dir` (permission, or a
    /// read-only file system).
    fn check_writable(&self, _dir: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens `path` if it is a regular file, and fails with `InvalidInput` otherwise: opening a
/// FIFO (or a device) that someone gave a store file's name would block, or worse. Checked
/// before the open (and again after, on what was opened). Not with `O_NONBLOCK` instead, which
/// would make an open that meets a file lease (a Samba oplock, say) fail rather than wait.
fn open_regular(options: &OpenOptions, path: &Path) -> std::io::Result<File> {
    let not_regular = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a directory, FIFO, socket or device has this name)",
        )
    };
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(not_regular()),
        // Missing (the open may create it), or unreadable: the open says why.
        _ => {}
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Operations on one open file. Reads and writes are positional, so handles can be shared.
pub(crate) trait VfsFile: fmt::Debug + Send + Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()>;
    /// Makes the file's data and length durable (fdatasync).
    fn sync(&self) -> std::io::Result<()>;
    fn len(&self) -> std::io::Result<u64>;
    fn set_len(&self, len: u64) -> std::io::Result<()>;
    /// Maps the whole file read-only. Only for sealed files (see `io::mmap`).
    fn map(&self, path: &Path) -> Result<Mapping>;
    /// Maps the active file for readers while it grows (see [`AppendMap`]); `None` where the
    /// file system cannot, and readers then use [`VfsFile::read_at`].
    fn map_appending(&self, _reserve: u64, _written: u64) -> Option<AppendMap> {
        None
    }
    /// Extends the file to at least `offset + len` bytes with blocks reserved (`fallocate`), so
    /// that writing them through a map cannot fail for want of space; an error where the file
    /// system cannot promise that. (On failure the file may still have grown part of the way.)
    fn allocate(&self, _offset: u64, _len: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl Vfs for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<FileHandle> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::CreateTruncate => {
                options.write(true).create(true).truncate(true);
            }
        }
        Ok(Arc::new(StdFile(open_regular(&options, path)?)))
    }

    fn read_all(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let mut file = open_regular(OpenOptions::new().read(true), path)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes)?;
        Ok(bytes)
    }

    fn canonical(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::canonicalize(dir)
    }

    fn shared(&self, path: &Path) -> std::io::Result<Option<Sharing>> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(if meta.file_type().is_symlink() {
            Some(Sharing::SymbolicLink)
        } else if meta.nlink() > 1 {
            Some(Sharing::HardLinks(meta.nlink()))
        } else {
            None
        })
    }

    fn check_writable(&self, dir: &Path) -> std::io::Result<()> {
        use rustix::fs::{Access, AtFlags, CWD};
        use rustix::io::Errno;
        // The effective ids, which are the ones that creating a file checks.
        let access = Access::WRITE_OK | Access::EXEC_OK;
        match rustix::fs::accessat(CWD, dir, access, AtFlags::EACCESS) {
            // No answer: `faccessat2` refused by an older container runtime's seccomp filter
            // (EPERM), or missing for a setuid process on a kernel before 5.8 (ENOSYS). The
            // first rotation will tell.
            Err(Errno::PERM | Errno::NOSYS) => Ok(()),
            other => other.map_err(std::io::Error::from),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn list(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }

    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn entry(&self, path: &Path) -> std::io::Result<Option<EntryKind>> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(Some(EntryKind::Dir)),
            Ok(_) => Ok(Some(EntryKind::File)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn lock(&self, path: &Path) -> std::io::Result<LockGuard> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let meta = file.metadata()?;
        let id = (meta.dev(), meta.ino());
        // Reserved first, so that no other open in this process gets past here meanwhile, and
        // the registry's mutex is not held across `try_lock` (a network call on NFS).
        if !held_locks().insert(id) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                HeldByThisProcess,
            ));
        }
        // flock locks belong to the open file description, so on a local file system a second
        // open in this same process conflicts too; the registry covers those that emulate
        // flock per process.
        let locked = match file.try_lock() {
            Ok(()) => {
                let taken_by = std::process::id();
                record_holder(&file, taken_by);
                return Ok(Box::new(HeldLock { file, id, taken_by }));
            }
            Err(TryLockError::WouldBlock) => std::io::ErrorKind::WouldBlock.into(),
            Err(TryLockError::Error(e)) => e,
        };
        held_locks().remove(&id);
        Err(locked)
    }
}

/// Writes the holder's note (process id and host) into its held `LOCK` file, for the error a
/// refused open reports (`io::lock`). Best effort: the note is never needed for exclusion.
fn record_holder(lock_file: &File, pid: u32) {
    if lock_file.set_len(0).is_ok() {
        let _ = lock_file.write_all_at(holder_note(pid).as_bytes(), 0);
    }
}

fn held_locks() -> std::sync::MutexGuard<'static, BTreeSet<(u64, u64)>> {
    HELD_LOCKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `LOCK` files this process holds, by device and inode. Some network file systems (NFS)
/// emulate `flock` with locks that belong to the process, so a second open of a store in the
/// same process would be granted the lock, and two writers would append to one file that both
/// map. This registry refuses that open on every file system.
static HELD_LOCKS: std::sync::Mutex<BTreeSet<(u64, u64)>> = std::sync::Mutex::new(BTreeSet::new());

/// An `flock` on a `LOCK` file, in [`HELD_LOCKS`] until dropped.
#[derive(Debug)]
struct HeldLock {
    file: File,
    id: (u64, u64),
    /// The process that took the lock.
    taken_by: u32,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // A child created by `fork` shares the lock (it belongs to the open file description):
        // unlocking there would release the parent's. Closing its descriptor does not.
        if std::process::id() != self.taken_by {
            return;
        }
        // The recorded id goes first, while the lock still keeps the next holder from writing
        // its own. Unlocked before it leaves the registry, so that a new open never finds the
        // file still locked after the registry let it in.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
        held_locks().remove(&self.id);
    }
}

impl VfsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn map(&self, path: &Path) -> Result<Mapping> {
        map_file(&self.0, path)
    }

    fn map_appending(&self, reserve: u64, written: u64) -> Option<AppendMap> {
        AppendMap::new(&self.0, reserve, written)
    }

    #[cfg(target_os = "linux")]
    fn allocate(&self, offset: u64, len: u64) -> std::io::Result<()> {
        use rustix::fs::{FallocateFlags, fallocate, fstatfs};
        // Where blocks that `fallocate` reserved are the ones a later write uses. Copy-on-write
        // file systems (btrfs, ZFS, bcachefs) allocate again on write, so a full disk would be
        // a SIGBUS in a write through the map there; they get `pwrite`.
        const RESERVES_IN_PLACE: [u64; 3] = [
            0xEF53,      // ext2, ext3, ext4
            0x5846_5342, // XFS (no reflink copies of an open store's files, see README)
            0x0102_1994, // tmpfs
        ];
        let kind = fstatfs(&self.0)?.f_type as u64;
        if !RESERVES_IN_PLACE.contains(&kind) {
            return Err(std::io::ErrorKind::Unsupported.into());
        }
        Ok(fallocate(&self.0, FallocateFlags::empty(), offset, len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock is refused while held, under any name of its file, and granted again once
    /// dropped (the registry forgets it).
    #[test]
    fn a_lock_is_refused_while_held_and_granted_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, link) = (dir.path().join("LOCK"), dir.path().join("LOCK-link"));
        let held = StdFs.lock(&path).unwrap();
        std::fs::hard_link(&path, &link).unwrap();
        for name in [&path, &link] {
            let refused = StdFs.lock(name).unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::WouldBlock);
        }
        drop(held);
        drop(StdFs.lock(&link).unwrap());
        drop(StdFs.lock(&path).unwrap());
    }

    /// A lock refused because someone else holds the flock leaves no reservation behind.
    #[test]
    fn a_lock_refused_by_flock_is_granted_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let other = File::create(&path).unwrap();
        other.try_lock().unwrap();
        let refused = StdFs.lock(&path).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::WouldBlock);
        drop(other);
        drop(StdFs.lock(&path).unwrap());
    }
}
