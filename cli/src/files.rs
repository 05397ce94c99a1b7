//! Direct, read-only access to a store directory's files, for the commands that must work on a
//! store the library refuses to open (`check`, `repair`): listing, reading, headers, and the
//! store's lock.
//!
//! File names: `NNNNNNNNNN.data` (data file, id zero-padded to 10 digits), `NNNNNNNNNN.hint` (its
//! hint file), `LOCK`, `MERGE` (an interrupted merge's commit record), `FSYNC_FAILED` (a failed
//! fsync of the active file, for the next open), `*.tmp` (files not yet renamed into place:
//! `NNNNNNNNNN.data.tmp`, `NNNNNNNNNN.hint.tmp`, `MERGE.tmp`, `FSYNC_FAILED.tmp`) and
//! `NNNNNNNNNN.data.cut-OFFSET` or `….cut-OFFSET-N` (a saved tail: bytes an open cut off the newest
//! data file at OFFSET because valid records followed damage; no file header; `-N` for a later cut
//! at the same offset). Other names are not the store's and are left alone.

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::io::Read;
use std::path::{Path, PathBuf};

use bitcask::CorruptionKind;
use bitcask::format::commit::MergeCommit;
use bitcask::format::header::{FileHeader, FileKind, HEADER_LEN};

use crate::error::{CliError, CliResult};

/// The engine's files found in a store directory.
#[derive(Debug, Default)]
pub struct StoreFiles {
    /// Data files by id.
    pub data: BTreeMap<u32, PathBuf>,
    /// Hint files by id.
    pub hints: BTreeMap<u32, PathBuf>,
    /// The `MERGE` commit record, if present.
    pub merge_record: Option<PathBuf>,
    /// The `FSYNC_FAILED` record, if present.
    pub fsync_failure: Option<PathBuf>,
    /// Leftover temporary files.
    pub tmps: Vec<PathBuf>,
    /// Saved tails, by the data file and offset they were cut from, and their file name (two
    /// opens may have cut one file at one offset: `….cut-OFFSET` and `….cut-OFFSET-2`).
    pub saved_tails: BTreeMap<(u32, u64, PathBuf), PathBuf>,
}

impl StoreFiles {
    /// Lists the store files in `dir`.
    pub fn list(dir: &Path) -> CliResult<Self> {
        let mut found = StoreFiles::default();
        let entries = std::fs::read_dir(dir).map_err(CliError::io("listing", dir))?;
        for entry in entries {
            let path = entry.map_err(CliError::io("listing", dir))?.path();
            found.add(path);
        }
        found.tmps.sort();
        Ok(found)
    }

    fn add(&mut self, path: PathBuf) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        if name == "MERGE" {
            self.merge_record = Some(path);
        } else if name == "FSYNC_FAILED" {
            self.fsync_failure = Some(path);
        } else if let Some(stem) = name.strip_suffix(".tmp") {
            // Only the names the engine writes before a rename; others are not its leftovers.
            let engine_tmp = matches!(stem, "MERGE" | "FSYNC_FAILED")
                || parse_id(stem, ".data")
                    .or_else(|| parse_id(stem, ".hint"))
                    .is_some();
            if engine_tmp {
                self.tmps.push(path);
            }
        } else if let Some((id, offset)) = saved_tail(name) {
            self.saved_tails.insert((id, offset, path.clone()), path);
        } else if let Some(id) = parse_id(name, ".data") {
            self.data.insert(id, path);
        } else if let Some(id) = parse_id(name, ".hint") {
            self.hints.insert(id, path);
        }
    }

    /// The `MERGE` record, decoded, or why it does not decode (open then refuses the store);
    /// `None` without one.
    pub fn merge_commit(&self) -> CliResult<Option<Result<MergeCommit, CorruptionKind>>> {
        let Some(path) = &self.merge_record else {
            return Ok(None);
        };
        Ok(Some(MergeCommit::decode(&read(path)?)))
    }

    /// Makes these the files open reads after it finishes the committed merge `commit`: its
    /// outputs (still `*.tmp`, or renamed) take the place of its inputs, which open deletes (an
    /// input may still hold a put whose removal the merge dropped).
    pub fn finish_merge_as_open_would(&mut self, commit: &MergeCommit) {
        for id in &commit.inputs {
            self.data.remove(id);
            self.hints.remove(id);
        }
        self.add_merge_outputs(commit);
    }

    /// Adds the outputs of the committed merge `commit` that are still named `*.tmp` to the
    /// data and hint files (renamed ones are listed already).
    pub fn add_merge_outputs(&mut self, commit: &MergeCommit) {
        let Some(dir) = self.merge_record.as_deref().and_then(Path::parent) else {
            return;
        };
        let dir = dir.to_path_buf();
        for &id in &commit.outputs {
            let data = dir.join(format!("{id:010}.data.tmp"));
            let hint = dir.join(format!("{id:010}.hint.tmp"));
            if self.take_tmp(&data) {
                self.data.insert(id, data);
            }
            if self.take_tmp(&hint) {
                self.hints.insert(id, hint);
            }
        }
    }

    /// Whether every input of `commit` is still here: open has not begun to delete them, so
    /// they hold every record the outputs do (and the removals the merge dropped).
    pub fn has_all_inputs(&self, commit: &MergeCommit) -> bool {
        commit.inputs.iter().all(|id| self.data.contains_key(id))
    }

    /// Removes `path` from the leftover temporary files; whether it was one.
    fn take_tmp(&mut self, path: &Path) -> bool {
        let before = self.tmps.len();
        self.tmps.retain(|tmp| tmp != path);
        self.tmps.len() < before
    }

    /// Total length of the data and hint files, for progress bars.
    pub fn total_bytes(&self) -> u64 {
        self.data
            .values()
            .chain(self.hints.values())
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// The id of the newest data file the writer appended to (header kind `Data`): the only file
    /// that may legitimately end in a torn record. Files whose header cannot be read or does not
    /// decode are skipped.
    pub fn tail_id(&self) -> Option<u32> {
        self.data.iter().rev().find_map(|(&id, path)| {
            matches!(read_header(path), Ok(Ok(header)) if header.kind == FileKind::Data)
                .then_some(id)
        })
    }
}

/// The data file id and offset a saved tail's name (`NNNNNNNNNN.data.cut-OFFSET`, or
/// `….cut-OFFSET-N` for a later cut of the same file at the same offset) says it was cut from.
pub fn saved_tail(name: &str) -> Option<(u32, u64)> {
    let (data_name, cut) = name.rsplit_once(".cut-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let offset = match cut.split_once('-') {
        Some((offset, n)) if digits(n) => offset,
        Some(_) => return None,
        None => cut,
    };
    let offset = offset.parse().ok().filter(|_| digits(offset))?;
    Some((parse_id(data_name, ".data")?, offset))
}

fn parse_id(name: &str, ext: &str) -> Option<u32> {
    let stem = name.strip_suffix(ext)?;
    if stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

/// Reads a whole file.
pub fn read(path: &Path) -> CliResult<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(CliError::io("reading", path))?;
    Ok(bytes)
}

/// Decodes the header of the file at `path`; the inner error says what is wrong with it.
pub fn read_header(path: &Path) -> CliResult<Result<FileHeader, CorruptionKind>> {
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    open_regular(path)
        .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut bytes))
        .map_err(CliError::io("reading", path))?;
    Ok(FileHeader::decode(&bytes))
}

/// Opens a store file for reading, refusing one that is not a regular file: reading a FIFO
/// that someone gave a store file's name would wait forever.
fn open_regular(path: &Path) -> std::io::Result<File> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a directory, FIFO, socket or device has this name)",
        ));
    }
    File::open(path)
}

/// Held while a command reads a store's files directly; see [`lock_store`].
#[derive(Debug)]
pub struct StoreLock {
    _file: Option<File>,
}

/// What [`lock_store`] does when the store has no `LOCK` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingLock {
    /// Go on without a lock: a store without a `LOCK` file is not open, and reading commands
    /// modify nothing (a store opened meanwhile can make the report stale, not wrong on disk).
    Proceed,
    /// Create it and take the lock, as the library does: for commands that change the store,
    /// so that no one opens it between our reading and our changing it. Where the directory
    /// cannot take a new file (a read-only mount, another user's store), go on without a lock:
    /// the library, which opens `LOCK` for writing, cannot open the store there either (not as
    /// this user).
    Create,
}

/// Takes the store's lock (an exclusive flock on `LOCK`, as the library does) so the files stand
/// still and no one opens the store while we read it; fails with [`CliError::Busy`] if it is
/// held. `missing` says what to do when there is no `LOCK` file.
pub fn lock_store(dir: &Path, missing: MissingLock) -> CliResult<StoreLock> {
    use std::io::ErrorKind::{NotFound, PermissionDenied, ReadOnlyFilesystem};
    let path = dir.join("LOCK");
    let file = match (open_for_locking(&path), missing) {
        (Ok(file), _) => file,
        (Err(e), MissingLock::Proceed) if e.kind() == NotFound => {
            return Ok(StoreLock { _file: None });
        }
        (Err(e), MissingLock::Create) if e.kind() == NotFound => {
            match File::options().append(true).create(true).open(&path) {
                Ok(file) => file,
                Err(e) if matches!(e.kind(), ReadOnlyFilesystem | PermissionDenied) => {
                    return Ok(StoreLock { _file: None });
                }
                Err(e) => return Err(CliError::io("creating", &path)(e)),
            }
        }
        (Err(e), _) => return Err(CliError::io("opening", &path)(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(StoreLock { _file: Some(file) }),
        Err(TryLockError::WouldBlock) => Err(CliError::Busy {
            dir: dir.to_path_buf(),
            // The library records its holder there (this tool records nothing, to leave the
            // store's files as they were).
            holder: bitcask::recorded_lock_holder(dir),
        }),
        Err(TryLockError::Error(e)) => Err(CliError::io("locking", &path)(e)),
    }
}

/// Opens `LOCK` for taking its lock: read-write where it can (on NFS, where `flock` is emulated
/// with POSIX locks, an exclusive lock needs a descriptor open for writing), else read-only (a
/// read-only mount, or a file this user may only read).
fn open_for_locking(path: &Path) -> std::io::Result<File> {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    match File::options().read(true).write(true).open(path) {
        Err(e) if matches!(e.kind(), ReadOnlyFilesystem | PermissionDenied) => File::open(path),
        opened => opened,
    }
}

/// Fails with a usage error if `path` (given with `flag`) lies inside the store `dir`: a file
/// written there could replace one of the store's, and open deletes every `*.tmp` in it.
pub fn refuse_inside_store(flag: &str, path: &Path, dir: &Path) -> CliResult {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(()); // no store yet: nothing of it to clobber
    };
    if resolved(path).starts_with(&dir) {
        return Err(CliError::Usage(format!(
            "{flag} {} lies inside the store {}; choose a path outside it",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// `path` with symlinks resolved as far as it exists (a file not created yet: its directory).
pub fn resolved(path: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(path) {
        return path;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|parent| parent.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

/// Fsyncs a directory so that renames in it survive a power cut.
pub fn sync_dir(dir: &Path) -> CliResult {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CliError::io("syncing directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repair's lock on a store that has no `LOCK` file still keeps the library out.
    #[test]
    fn a_created_lock_keeps_the_library_out_of_a_store_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        bitcask::Config::new(&store)
            .open()
            .unwrap()
            .close()
            .unwrap();
        std::fs::remove_file(store.join("LOCK")).unwrap();

        let lock = lock_store(&store, MissingLock::Create).unwrap();
        match bitcask::Config::new(&store).open() {
            Err(bitcask::Error::Locked { .. }) => {}
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("the library opened a store the CLI had locked"),
        }
        drop(lock);
        bitcask::Config::new(&store)
            .open()
            .unwrap()
            .close()
            .unwrap();
    }

    #[test]
    fn saved_tail_names_parse_with_and_without_a_count() {
        assert_eq!(saved_tail("0000000001.data.cut-43"), Some((1, 43)));
        assert_eq!(saved_tail("0000000001.data.cut-43-2"), Some((1, 43)));
        for name in [
            "0000000001.data.cut-43-",
            "0000000001.data.cut-x",
            "1.data.cut-43",
        ] {
            assert_eq!(saved_tail(name), None, "{name}");
        }
    }

    #[test]
    fn reading_commands_create_no_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = lock_store(dir.path(), MissingLock::Proceed).unwrap();
        assert!(!dir.path().join("LOCK").exists());
    }
}
