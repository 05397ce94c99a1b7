//! Everything that touches the file system: file names, atomic file creation, directory syncs,
//! the directory lock, and the memory maps (the crate's only `unsafe`, in [`mmap`]).

pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod mmap;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Fsyncs a directory so that creations, renames and deletions in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context("syncing directory", dir)
}

/// The temporary name a file is written under before it is renamed into place.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` so that the file is either absent or complete after any crash:
/// write a temporary file, fsync it, rename it into place, fsync the directory.
pub(crate) fn write_file_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    write_synced(&tmp, bytes)?;
    rename(&tmp, path)?;
    sync_dir(dir)
}

/// Creates `path` (replacing a stale file of that name), writes `bytes` and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).context("creating", path)?;
    file.write_all(bytes).context("writing", path)?;
    file.sync_all().context("syncing", path)
}

/// Creates a data file holding `header`, atomically as [`write_file_atomically`] does, and
/// returns a handle open for appending and positional reads.
pub(crate) fn create_data_file(dir: &Path, path: &Path, header: &[u8]) -> Result<File> {
    let tmp = tmp_path(path);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .context("creating data file", &tmp)?;
    file.write_all(header).context("writing header of", &tmp)?;
    file.sync_all().context("syncing", &tmp)?;
    rename(&tmp, path)?;
    sync_dir(dir)?;
    Ok(file)
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).context("renaming", from)
}

/// Removes a file; a file that is already gone is not an error (recovery repeats deletions).
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.context("removing", path),
    }
}
