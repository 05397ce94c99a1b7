//! Everything that touches the file system: the [`vfs::Vfs`] seam and its real implementation,
//! file names, atomic file creation, directory syncs, the directory lock, and the memory maps
//! (in [`mmap`], which holds most of the crate's `unsafe`).

pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod mmap;
#[cfg(any(test, feature = "sim"))]
pub(crate) mod sim;
pub(crate) mod vfs;

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use vfs::{FileHandle, OpenMode, Vfs};

/// Fsyncs a directory so that creations, renames and deletions in it survive a power cut.
pub(crate) fn sync_dir(fs: &dyn Vfs, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).context("syncing directory", dir)
}

/// The temporary name a file is written under before it is renamed into place.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Creates `path` (replacing a stale file of that name), writes `bytes` and fsyncs it. If the
/// write or the fsync fails, removes the file again (best effort), so a failed attempt leaves
/// nothing behind on a full disk.
pub(crate) fn write_synced(fs: &dyn Vfs, path: &Path, bytes: &[u8]) -> Result<FileHandle> {
    let file = fs
        .open(path, OpenMode::CreateTruncate)
        .context("creating", path)?;
    let written = file
        .write_at(bytes, 0)
        .context("writing", path)
        .and_then(|()| file.sync().context("syncing", path));
    if let Err(e) = written {
        drop(file);
        let _ = remove_if_exists(fs, path);
        return Err(e);
    }
    Ok(file)
}

/// Creates a data file holding `header` so that it is either absent or complete after any
/// crash (temporary name, fsync, rename, directory fsync), and returns a handle open for
/// appending and positional reads. A failure before the rename removes the temporary file.
pub(crate) fn create_data_file(
    fs: &dyn Vfs,
    dir: &Path,
    path: &Path,
    header: &[u8],
) -> Result<FileHandle> {
    let tmp = tmp_path(path);
    let file = write_synced(fs, &tmp, header)?;
    if let Err(e) = rename(fs, &tmp, path) {
        drop(file);
        let _ = remove_if_exists(fs, &tmp);
        return Err(e);
    }
    sync_dir(fs, dir)?;
    Ok(file)
}

pub(crate) fn rename(fs: &dyn Vfs, from: &Path, to: &Path) -> Result<()> {
    fs.rename(from, to).context("renaming", from)
}

/// Removes a file; a file that is already gone is not an error (recovery repeats deletions).
pub(crate) fn remove_if_exists(fs: &dyn Vfs, path: &Path) -> Result<()> {
    match fs.remove(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.context("removing", path),
    }
}

/// The bytes of `path`, or `None` if there is no such file (other errors are errors).
pub(crate) fn read_if_exists(
    fs: &dyn Vfs,
    path: &Path,
    context: &'static str,
) -> Result<Option<Vec<u8>>> {
    match fs.read_all(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(context, path),
    }
}

/// Whether `path` exists (errors other than "not found" are errors).
pub(crate) fn exists(fs: &dyn Vfs, path: &Path) -> Result<bool> {
    Ok(fs.entry(path).context("inspecting", path)?.is_some())
}
