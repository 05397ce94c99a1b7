//! What a failed fsync of the active file leaves for the next open, and what open does with it.
//!
//! Linux reports a failed write-back to one fsync only, marks the pages clean and keeps them
//! readable until they are evicted. A reopen in the same boot would read the records in them as
//! if they were on disk, append after them, and sync through a new descriptor, which returns Ok.
//! A later eviction or power cut turns those bytes back into what the disk holds (zeros, say),
//! and recovery then cuts the file there, taking the records synced after the reopen with it; a
//! tombstone among them would also have hidden a key that then comes back.
//!
//! So the fsync gate (`GroupCommit::fsync_active`) writes the failure down ([`record`]:
//! `FSYNC_FAILED`, the file and the length an earlier fsync made durable) before any later fsync
//! can pass, and so does open when its own fsync of the newest writer file fails
//! ([`sync_tail`]: a write-back error nobody has seen yet is reported to the first fsync of any
//! descriptor). Open, before it loads the file, writes the bytes past that length again, as they
//! read now, and fsyncs them ([`apply`]). What the file reads is then what the disk holds: the
//! dropped pages' bytes if they were still cached (nothing is lost), the disk's own where they
//! were evicted (recovery then cuts a torn tail there, as after a power cut). The record needs
//! to outlive only the pages it warns of, which go with the boot: its own fsync and the
//! directory's are tried but may fail, and one that a crash tore is removed unread. Writing the
//! same bytes again is harmless, so a record naming any length, or a stale one, changes nothing
//! where no page was dropped.
//!
//! Not covered: a process that dies between the failed fsync and the record's rename, and a
//! record that cannot be written (the error then says so).

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::format::FileId;
use crate::format::fsync_failure::FsyncFailure;
use crate::format::header::HEADER_LEN;
use crate::io;
use crate::io::layout::Layout;
use crate::io::vfs::{FileHandle, OpenMode, Vfs};

/// Write-back works in pages: a partly written page is written whole.
const PAGE: usize = 4096;

/// How much [`write_again`] reads and writes at a time.
const REWRITE_CHUNK: usize = 1 << 20;

/// Writes `failure` down as `FSYNC_FAILED` (temporary name, rename), for the next open. Its
/// fsync and the directory's are tried, and their failure is not an error (see the module doc).
/// If the write or the rename fails, the temporary file is removed again (best effort).
fn record(fs: &dyn Vfs, layout: &Layout, failure: FsyncFailure) -> Result<()> {
    let path = layout.fsync_failure_path();
    let tmp = io::tmp_path(&path);
    let file = fs
        .open(&tmp, OpenMode::CreateTruncate)
        .context("creating", &tmp)?;
    let renamed = file
        .write_at(&failure.encode(), 0)
        .context("writing", &tmp)
        .and_then(|()| {
            let _ = file.sync();
            io::rename(fs, &tmp, &path)
        });
    if let Err(e) = renamed {
        drop(file);
        let _ = io::remove_if_exists(fs, &tmp);
        return Err(e);
    }
    let _ = fs.sync_dir(layout.dir());
    Ok(())
}

/// Writes `failure` down after the fsync that failed with `failed`; returns the error to report,
/// which also says if the record could not be written.
pub(crate) fn record_failure(
    fs: &dyn Vfs,
    layout: &Layout,
    failure: FsyncFailure,
    failed: std::io::Error,
) -> std::io::Error {
    match record(fs, layout, failure) {
        Ok(()) => failed,
        Err(e) => std::io::Error::new(
            failed.kind(),
            format!(
                "{failed}; writing that down for the next open failed too ({e}), so a reopen \
                 before a reboot may take records that are not on disk for durable ones"
            ),
        ),
    }
}

/// Open's fsync of the newest writer file `id` (what a previous process appended may be only in
/// the page cache); a failure is written down as the gate's are, with nothing known durable
/// past the header.
pub(super) fn sync_tail(
    fs: &dyn Vfs,
    layout: &Layout,
    file: &FileHandle,
    id: FileId,
    path: &Path,
) -> Result<()> {
    file.sync()
        .map_err(|failed| {
            let failure = FsyncFailure {
                file_id: id,
                durable_len: HEADER_LEN as u64,
            };
            record_failure(fs, layout, failure, failed)
        })
        .context("syncing", path)
}

/// If a failure record exists: makes the bytes of the file it names past its durable length
/// durable as they read now ([`write_again`]), then removes the record. Runs before open loads
/// any data file; if it fails, the record stays for the next open.
pub(super) fn apply(fs: &dyn Vfs, layout: &Layout) -> Result<()> {
    let path = layout.fsync_failure_path();
    let Some(bytes) = io::read_if_exists(fs, &path, "reading")? else {
        return Ok(());
    };
    // One that does not decode was torn by a crash, which also took the pages it warned of.
    if let Ok(failure) = FsyncFailure::decode(&bytes) {
        write_again(fs, layout, failure)?;
    }
    io::remove_if_exists(fs, &path)?;
    io::sync_dir(fs, layout.dir())
}

/// Writes the named file's bytes past `durable_len` again, as they read now, up to the page
/// holding its last non-zero byte (past it lie the zeros the active file was allocated ahead
/// with), and fsyncs the file. The bytes written are the ones that are there, so a map of the
/// file that a closed handle still holds sees no change. Read and written a chunk at a time with
/// `pread`/`pwrite`; the file is not mapped meanwhile.
fn write_again(fs: &dyn Vfs, layout: &Layout, failure: FsyncFailure) -> Result<()> {
    let path = layout.data_path(failure.file_id);
    if !io::exists(fs, &path)? {
        return Ok(());
    }
    let file = fs
        .open(&path, OpenMode::ReadWrite)
        .context("opening data file", &path)?;
    let len = file.len().context("inspecting", &path)?;
    let start = failure.durable_len.min(len);
    let end = end_of_data(&file, start, len).context("reading", &path)?;
    let mut chunk = vec![0; REWRITE_CHUNK.min((end - start) as usize)];
    let mut offset = start;
    while offset < end {
        let bytes = &mut chunk[..REWRITE_CHUNK.min((end - offset) as usize)];
        file.read_at(bytes, offset).context("reading", &path)?;
        file.write_at(bytes, offset)
            .context("writing again what a failed fsync left unsynced in", &path)?;
        offset += bytes.len() as u64;
    }
    file.sync().context("syncing", &path)
}

/// The end of the page (within the file's `start..len`) that holds its last non-zero byte, or
/// `start` if there is none; searched backwards a chunk at a time.
fn end_of_data(file: &FileHandle, start: u64, len: u64) -> std::io::Result<u64> {
    let mut chunk = vec![0; REWRITE_CHUNK];
    let mut end = len;
    while end > start {
        let from = end.saturating_sub(REWRITE_CHUNK as u64).max(start);
        let bytes = &mut chunk[..(end - from) as usize];
        file.read_at(bytes, from)?;
        if let Some(at) = bytes.iter().rposition(|&byte| byte != 0) {
            return Ok((from + at as u64 + 1)
                .next_multiple_of(PAGE as u64)
                .min(len));
        }
        end = from;
    }
    Ok(start)
}
