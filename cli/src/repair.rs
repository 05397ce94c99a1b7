//! `repair`: salvages a damaged store by copying every valid record into a new store beside it.
//!
//! 1. Take the original's lock (refusing a store open elsewhere) and read its data files
//!    directly, walking past damage (see [`crate::salvage`]).
//! 2. Resolve the records newest-seq-wins per key, tombstones removing their key, exactly as
//!    open does; hint files are not needed (the data files hold everything).
//! 3. Write the survivors through the library into a new store (`<dir>.repaired` or `--out`),
//!    sync and close it.
//! 4. Only with `--in-place`, and only after step 3 completed: exchange the copy and `<dir>` in
//!    one step where the file system can (else two renames), move the original to
//!    `<dir>.damaged-<unix seconds>`, fsync the parent directory. The original is never deleted.
//!
//! Data files only: `*.tmp` files are either merge outputs that were never committed or
//! committed ones whose input files (holding the same records) are still present. Saved tails
//! (`*.data.cut-OFFSET`) are listed in the report but not copied: an open that cut them off
//! resumed the seqs below theirs, so later writes may carry the same seqs and nothing tells
//! which is newer. A person decides (`bitcask dump` shows them).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcask::CorruptionKind;
use bitcask::format::header::{FileHeader, FileKind};
use bitcask::format::record::{Record, RecordKind};

use crate::error::{CliError, CliResult};
use crate::files::{self, StoreFiles};
use crate::output::{counted, human_bytes, write_stdout};
use crate::progress::Progress;
use crate::salvage::{BadRange, Item, walk};
use crate::store;

/// Repairs the store in `dir` into `out` (default `<dir>.repaired`), then swaps it in if
/// `in_place`; prints the report to stdout.
pub fn run(dir: &Path, out: Option<&Path>, in_place: bool, quiet: bool) -> CliResult {
    store::require_dir(dir)?;
    let dir = std::fs::canonicalize(dir).map_err(CliError::io("resolving", dir))?;
    let lock = files::lock_store(&dir, files::MissingLock::Create)?;
    let out = match out {
        Some(out) => out.to_path_buf(),
        None => sibling(&dir, "repaired")?,
    };
    ensure_fresh(&out)?;
    let store_files = StoreFiles::list(&dir)?;
    let salvage = scan(&store_files, quiet)?;
    let kept = write_copy(&store_files, &salvage, &out, quiet)?;
    let mut report = salvage.report(&dir, &out, kept);
    if in_place && !salvage.unreadable.is_empty() {
        note_saved_tails(&mut report, &store_files, &dir);
        write_stdout(report.as_bytes())?;
        return Err(CliError::Refused(format!(
            "not swapped in: {} could not be read, so the copy at {} lacks their records (and \
             where one held a key's newest value or removal, an older value may have come back); \
             make them readable and repair again, or swap the copy in yourself",
            counted(salvage.unreadable.len() as u64, "data file"),
            out.display()
        )));
    }
    let original = if in_place {
        let backup = swap_in(&dir, &out)?;
        let _ = writeln!(
            report,
            "replaced  {} now holds the repaired store; the original was moved to {}",
            dir.display(),
            backup.display()
        );
        backup
    } else {
        let _ = writeln!(
            report,
            "original  left untouched at {}; run again with --in-place to swap the copy in",
            dir.display()
        );
        dir.clone()
    };
    note_saved_tails(&mut report, &store_files, &original);
    drop(lock);
    write_stdout(report.as_bytes())
}

/// Names each saved tail where it is now: in `original`, the store directory as it stands (or
/// where `--in-place` moved it).
fn note_saved_tails(report: &mut String, store_files: &StoreFiles, original: &Path) {
    for path in store_files.saved_tails.values() {
        let _ = writeln!(
            report,
            "saved     {} holds records an earlier open cut off; not copied (see `bitcask --dir \
             {} check`)",
            original
                .join(path.file_name().unwrap_or_default())
                .display(),
            original.display()
        );
    }
}

/// Where the newest record of a key was found.
#[derive(Debug, Clone, Copy)]
struct Winner {
    seq: u64,
    file_id: u32,
    offset: u64,
    put: bool,
}

/// Bytes that were skipped.
#[derive(Debug)]
struct Dropped {
    path: PathBuf,
    range: BadRange,
    torn_tail: bool,
}

/// What reading the original found.
#[derive(Debug, Default)]
struct Salvage {
    winners: HashMap<Vec<u8>, Winner>,
    data_files: u64,
    records: u64,
    dropped: Vec<Dropped>,
    bad_headers: Vec<(PathBuf, CorruptionKind)>,
    /// Data files that could not be read, with the error.
    unreadable: Vec<(PathBuf, String)>,
}

impl Salvage {
    fn offer(&mut self, file_id: u32, offset: u64, record: &Record) {
        self.records += 1;
        let candidate = Winner {
            seq: record.seq,
            file_id,
            offset,
            put: record.kind == RecordKind::Put,
        };
        match self.winners.get_mut(record.key) {
            Some(current) if current.seq >= record.seq => {}
            Some(current) => *current = candidate,
            None => {
                self.winners.insert(record.key.to_vec(), candidate);
            }
        }
    }

    /// Offsets of the surviving puts, grouped by file, in file order.
    fn survivors(&self) -> BTreeMap<u32, Vec<u64>> {
        let mut by_file: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for winner in self.winners.values().filter(|w| w.put) {
            by_file
                .entry(winner.file_id)
                .or_default()
                .push(winner.offset);
        }
        for offsets in by_file.values_mut() {
            offsets.sort_unstable();
        }
        by_file
    }

    fn report(&self, dir: &Path, out: &Path, kept: u64) -> String {
        let mut text = format!("repair of {}\n", dir.display());
        let _ = writeln!(
            text,
            "read      {}, {}",
            counted(self.data_files, "data file"),
            counted(self.records, "valid record")
        );
        let _ = writeln!(
            text,
            "kept      {}, written to {}",
            counted(kept, "live key"),
            out.display()
        );
        let _ = writeln!(
            text,
            "dropped   {} superseded or deleted (older versions and tombstones: normal, not \
             data loss)",
            counted(self.records - kept, "record")
        );
        let damaged: Vec<&Dropped> = self.dropped.iter().filter(|d| !d.torn_tail).collect();
        let bytes: u64 = damaged.iter().map(|d| d.range.len()).sum();
        let _ = writeln!(
            text,
            "damaged   {}, {} unreadable{}",
            counted(damaged.len() as u64, "range"),
            human_bytes(bytes),
            if damaged.is_empty() {
                ""
            } else {
                " (records in them are lost):"
            }
        );
        for d in damaged {
            let _ = writeln!(text, "  {}", describe(d));
        }
        for d in self.dropped.iter().filter(|d| d.torn_tail) {
            let _ = writeln!(
                text,
                "torn tail {} (an interrupted write; open drops it too)",
                describe(d)
            );
        }
        for (path, error) in &self.unreadable {
            let _ = writeln!(
                text,
                "unread    {}: {error} (its records are lost; where it held a key's newest value \
                 or removal, an older value may have come back)",
                path.display()
            );
        }
        for (path, kind) in &self.bad_headers {
            let _ = writeln!(
                text,
                "header    {}: {kind} (its records were read anyway)",
                path.display()
            );
        }
        text
    }
}

fn describe(dropped: &Dropped) -> String {
    format!(
        "{} bytes {}..{}: {}",
        dropped.path.display(),
        dropped.range.start,
        dropped.range.end,
        dropped.range.kind
    )
}

/// Reads every data file, collecting the newest record per key and the bytes skipped.
fn scan(store_files: &StoreFiles, quiet: bool) -> CliResult<Salvage> {
    let tail = store_files.tail_id();
    let progress = Progress::bytes(store_files.total_bytes(), "reading", quiet);
    let mut salvage = Salvage::default();
    for (&id, path) in &store_files.data {
        let bytes = match files::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                // A bad sector in one file: salvage the others.
                salvage.unreadable.push((path.clone(), e.to_string()));
                continue;
            }
        };
        salvage.data_files += 1;
        match FileHeader::decode(&bytes) {
            Err(CorruptionKind::UnsupportedVersion(version)) => {
                return Err(CliError::Refused(format!(
                    "{} is in format version {version}, which this build does not read (a newer \
                     bitcask wrote it); a repair by this build would keep only what it can \
                     read, so repair the store with the bitcask that wrote it",
                    path.display()
                )));
            }
            Err(kind) => salvage.bad_headers.push((path.clone(), kind)),
            Ok(header) if header.kind == FileKind::Hint => {
                salvage
                    .bad_headers
                    .push((path.clone(), CorruptionKind::WrongFile));
            }
            Ok(_) => {}
        }
        let len = bytes.len() as u64;
        for item in walk(&bytes) {
            match item {
                Item::Record { offset, record } => salvage.offer(id, offset, &record),
                Item::Bad(range) => salvage.dropped.push(Dropped {
                    path: path.clone(),
                    range,
                    torn_tail: range.is_torn_tail(len, tail == Some(id)),
                }),
            }
        }
        progress.inc(len);
    }
    progress.finish();
    Ok(salvage)
}

/// Writes the surviving pairs into a new store at `out`, synced and closed; returns their count.
fn write_copy(
    store_files: &StoreFiles,
    salvage: &Salvage,
    out: &Path,
    quiet: bool,
) -> CliResult<u64> {
    let survivors = salvage.survivors();
    let total: u64 = survivors.values().map(|o| o.len() as u64).sum();
    let db = store::open_or_create(out)?;
    let progress = Progress::items(total, "copying", quiet);
    for (id, offsets) in &survivors {
        let path = &store_files.data[id];
        let bytes = files::read(path)?;
        for &offset in offsets {
            let record = Record::decode(&bytes[offset as usize..]).map_err(|kind| {
                CliError::Refused(format!(
                    "{} changed while it was being repaired (offset {offset}: {kind}); nothing \
                     was replaced, remove {} and retry",
                    path.display(),
                    out.display()
                ))
            })?;
            db.write(record.key, record.value)
                .map_err(CliError::store("writing the repaired store"))?;
            progress.inc(1);
        }
    }
    db.sync()
        .map_err(CliError::store("syncing the repaired store"))?;
    store::close(&db)?;
    files::sync_dir(out)?;
    progress.finish();
    Ok(total)
}

/// `dir` with `.suffix` appended to its last component.
fn sibling(dir: &Path, suffix: &str) -> CliResult<PathBuf> {
    let name = dir.file_name().ok_or_else(|| {
        CliError::Usage(format!(
            "cannot place a copy beside {}; pass --out DIR",
            dir.display()
        ))
    })?;
    let mut name = name.to_os_string();
    name.push(format!(".{suffix}"));
    Ok(dir.with_file_name(name))
}

/// Fails unless `out` is missing or an empty directory.
fn ensure_fresh(out: &Path) -> CliResult {
    let fresh = match std::fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        // A file (not a directory) is "not fresh" below; anything else is its own problem.
        Err(e) if e.kind() != std::io::ErrorKind::NotADirectory => {
            return Err(CliError::io("inspecting", out)(e));
        }
        Err(_) => false,
        Ok(mut entries) => entries.next().is_none(),
    };
    if fresh {
        return Ok(());
    }
    Err(CliError::Refused(format!(
        "{} already exists; remove it or choose another place with --out DIR",
        out.display()
    )))
}

/// Whether `a` and `b` were swapped in one step (`renameat2` with `RENAME_EXCHANGE`; Linux, on
/// file systems that support it).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> bool {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> bool {
    false
}

/// Moves the original aside and the repaired copy into its place; returns the original's new
/// path. Where the two directories can be exchanged in one step, `dir` is never missing;
/// otherwise it takes two renames, and if the second fails the original is moved back.
fn swap_in(dir: &Path, out: &Path) -> CliResult<PathBuf> {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let backup = sibling(dir, &format!("damaged-{seconds}"))?;
    if backup.exists() {
        return Err(CliError::Refused(format!(
            "{} already exists; the repaired copy is complete at {}, retry in a second",
            backup.display(),
            out.display()
        )));
    }
    if exchange(out, dir) {
        // `dir` holds the copy now and `out` the original, and `dir` never went missing: a
        // process opening it meanwhile found one store or the other, never a new empty one.
        std::fs::rename(out, &backup).map_err(|source| CliError::Io {
            doing: "moving the damaged store (swapped out of the way) aside from".into(),
            target: out.display().to_string(),
            source,
        })?;
        for parent in [parent_of(dir), parent_of(out)] {
            files::sync_dir(&parent)?;
        }
        return Ok(backup);
    }
    std::fs::rename(dir, &backup).map_err(CliError::io("moving the damaged store aside:", dir))?;
    if let Err(source) = std::fs::rename(out, dir) {
        let restored = std::fs::rename(&backup, dir).is_ok();
        let original = if restored { dir } else { &backup };
        return Err(CliError::Io {
            doing: format!(
                "moving the repaired copy into place (the original is at {}):",
                original.display()
            ),
            target: out.display().to_string(),
            source,
        });
    }
    for parent in [parent_of(dir), parent_of(out)] {
        files::sync_dir(&parent)?;
    }
    Ok(backup)
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
