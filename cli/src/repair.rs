//! `repair`: salvages a damaged store by copying every valid record into a new store beside it.
//!
//! 1. Refuse a directory without data files (a mistyped `--dir`) and an `--out` inside the
//!    store; take the original's lock (refusing a store open elsewhere; creating `LOCK` if it
//!    is missing).
//! 2. Where a `MERGE` record that decodes names a merge that committed: while all its inputs
//!    remain, read them and its outputs (`*.data.tmp` or already renamed) alike, each a spare
//!    for the other's damage; once open has begun deleting inputs, read the outputs instead of
//!    what is left of them, as open does ([`choose_merge_files`]).
//! 3. Read each data file directly: a sealed file whose hint open would trust, where the hint
//!    says its records are (a damaged record's entry still gives its key, seq and kind); any
//!    other file by walking past damage (see [`crate::salvage`]).
//! 4. Resolve the records newest-seq-wins per key, tombstones removing their key, as open does.
//!    A key whose newest record is a damaged put named by a hint is left out, not given an
//!    older value, and the report names it.
//! 5. Write the survivors through the library into a new store (`<dir>.repaired` or `--out`),
//!    sync and close it.
//! 6. Only with `--in-place`, and only after step 5 completed: rename the copy to
//!    `<dir>.damaged-<unix seconds>` and exchange it with `<dir>` in one step where the file
//!    system can (else move the original to that name and the copy into place, two renames),
//!    then fsync the parent directories. The original is never deleted.
//!
//! Where no hint names a damaged record, its key is unknown: if it held the key's newest value
//! or removal, an older value comes back (the report says so). Uncommitted `*.tmp` files are
//! not read. Saved tails (`*.data.cut-OFFSET`, `….cut-OFFSET-N`) are listed in the report but not copied: an open
//! that cut them off resumed the seqs below theirs, so later writes may carry the same seqs and
//! nothing tells which is newer. A person decides (`bitcask dump` shows them).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcask::CorruptionKind;
use bitcask::format::header::{FileHeader, FileKind};
use bitcask::format::hint::{HintEntry, HintFile};
use bitcask::format::record::{Record, RecordKind};

use crate::access;
use crate::error::{CliError, CliResult};
use crate::files::{self, StoreFiles};
use crate::output::{counted, encode_hex, human_bytes, quoted, write_stdout};
use crate::progress::Progress;
use crate::salvage::{BadRange, Item, walk};
use crate::store;

/// Repairs the store in `dir` into `out` (default `<dir>.repaired`), then swaps it in if
/// `in_place`; prints the report to stdout.
pub fn run(dir: &Path, out: Option<&Path>, in_place: bool, hex: bool, quiet: bool) -> CliResult {
    store::require_store(dir)?;
    let dir = std::fs::canonicalize(dir).map_err(CliError::io("resolving", dir))?;
    let out = match out {
        Some(out) => out.to_path_buf(),
        None => sibling(&dir, "repaired")?,
    };
    files::refuse_inside_store("--out", &out, &dir)?;
    ensure_fresh(&out)?;
    // Resolved now, as the user named it: the copy's files are later reached without following
    // a link (`access`), and `--in-place` must move the directory, not a link to it.
    let out = files::resolved(&out);
    let lock = files::lock_store(&dir, files::MissingLock::Create)?;
    let mut store_files = StoreFiles::list(&dir)?;
    let merge_note = choose_merge_files(&mut store_files)?;
    let salvage = scan(&store_files, quiet)?;
    let kept = write_copy(&store_files, &salvage, &out, quiet)?;
    // The file the program last wrote (or, in a store of merged files only, the newest one).
    let newest_id = store_files
        .tail_id()
        .or(store_files.data.keys().max().copied());
    let newest_data = newest_id.map(|id| store_files.data[&id].clone());
    let access = access::match_original(&dir, newest_data.as_deref(), &out)?;
    let mut report = salvage.report(&dir, &out, kept, hex);
    report.push_str(&access.report());
    report.push_str(&merge_note.report);
    let lacking = lacking_files(&salvage, &merge_note);
    if in_place && let Some(lacking) = lacking {
        note_saved_tails(&mut report, &store_files, &dir);
        // The refusal is the outcome, whether or not the report reached its reader.
        let _ = write_stdout(report.as_bytes());
        return Err(CliError::Refused(format!(
            "not swapped in: {lacking}, so the copy at {} lacks their records (and where one \
             held a key's newest value or removal, an older value may have come back); restore \
             them and repair again, or swap the copy in yourself",
            out.display()
        )));
    }
    if in_place && !access.blocking.is_empty() {
        let _ = write_stdout(report.as_bytes());
        return Err(CliError::Refused(format!(
            "not swapped in: the files of the copy at {} could not all be given the store's \
             permissions and owner (listed on stdout), so the program that opens the store \
             might not be able to; run repair as the store's owner or as root, or swap the copy \
             in yourself",
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

/// Takes the files to read when a `MERGE` record names an unfinished merge; returns the
/// report's line about it. While every input is still here, both inputs and outputs are read:
/// the outputs copy records of the inputs (same seqs), so each is a spare for the other's
/// damage, and the inputs keep the removals the merge dropped. Once open has begun deleting
/// inputs, the outputs are read instead of what is left of them, as open would.
fn choose_merge_files(store_files: &mut StoreFiles) -> CliResult<MergeNote> {
    let path = store_files.merge_record.clone().unwrap_or_default();
    let commit = match store_files.merge_commit()? {
        None => return Ok(MergeNote::default()),
        Some(Err(kind)) => {
            return Ok(MergeNote::report(format!(
                "merge     {}: {kind} (open refuses the store while it is there); the data \
                 files were read as they are, uncommitted outputs (`*.tmp`) not\n",
                path.display()
            )));
        }
        Some(Ok(commit)) => commit,
    };
    if store_files.has_all_inputs(&commit) {
        store_files.add_merge_outputs(&commit);
        return Ok(MergeNote::report(format!(
            "merge     {} records a merge that committed but was not finished; its {} are \
             all still here and were read along with its outputs (copies of their records)\n",
            path.display(),
            counted(commit.inputs.len() as u64, "input")
        )));
    }
    store_files.finish_merge_as_open_would(&commit);
    let missing: Vec<String> = commit
        .outputs
        .iter()
        .filter(|id| !store_files.data.contains_key(id))
        .map(|id| format!("{id:010}.data"))
        .collect();
    let mut line = format!(
        "merge     {} records a merge that committed, and open had begun deleting its inputs: \
         read its {} instead, as open does\n",
        path.display(),
        counted(commit.outputs.len() as u64, "output")
    );
    if !missing.is_empty() {
        line.push_str(&format!(
            "          missing outputs (their records are lost): {}\n",
            missing.join(", ")
        ));
    }
    Ok(MergeNote {
        report: line,
        missing_outputs: missing.len(),
    })
}

/// What [`choose_merge_files`] found: its report lines, and how many outputs of a committed merge
/// are missing (their records are lost, and older ones may stand in for them).
#[derive(Debug, Default)]
struct MergeNote {
    report: String,
    missing_outputs: usize,
}

impl MergeNote {
    fn report(report: String) -> Self {
        MergeNote {
            report,
            missing_outputs: 0,
        }
    }
}

/// Why the copy may lack records the store had (files that could not be read, or a committed
/// merge's missing outputs), if it may: `--in-place` then refuses to swap it in.
fn lacking_files(salvage: &Salvage, merge: &MergeNote) -> Option<String> {
    let mut lacking = Vec::new();
    if !salvage.unreadable.is_empty() {
        let files = counted(salvage.unreadable.len() as u64, "data file");
        lacking.push(format!("{files} could not be read"));
    }
    if !salvage.foreign.is_empty() {
        let files = counted(salvage.foreign.len() as u64, "data file");
        lacking.push(format!(
            "{files} with another file id in the header went unread"
        ));
    }
    if merge.missing_outputs > 0 {
        let files = counted(merge.missing_outputs as u64, "output");
        lacking.push(format!("a committed merge lost {files}"));
    }
    (!lacking.is_empty()).then(|| lacking.join(" and "))
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

/// What the newest record of a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Newest {
    Put,
    Tombstone,
    /// A put whose record is damaged, known from the data file's hint: its value is lost, and
    /// the key's older values must not take its place.
    LostPut,
}

/// Lost keys the report names one by one.
const LOST_KEYS_LISTED: usize = 20;

/// Where the newest record of a key was found.
#[derive(Debug, Clone, Copy)]
struct Winner {
    seq: u64,
    file_id: u32,
    offset: u64,
    newest: Newest,
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
    /// Damaged records whose key, seq and kind a hint file supplied.
    hinted_damaged: u64,
    dropped: Vec<Dropped>,
    bad_headers: Vec<(PathBuf, CorruptionKind)>,
    /// Data files that could not be read, with the error.
    unreadable: Vec<(PathBuf, String)>,
    /// Data files whose header names another file id than their name, with that id: not read.
    foreign: Vec<(PathBuf, u32)>,
}

impl Salvage {
    fn offer_record(&mut self, file_id: u32, offset: u64, record: &Record) {
        self.records += 1;
        let newest = match record.kind {
            RecordKind::Put => Newest::Put,
            RecordKind::Tombstone => Newest::Tombstone,
        };
        self.offer(record.key, record.seq, file_id, offset, newest);
    }

    /// Keeps the candidate if it is newer than what `key` has. A tie is one record found twice
    /// (in a merge's input and its output): the first stays, unless it is a lost put and the
    /// candidate is a readable copy.
    fn offer(&mut self, key: &[u8], seq: u64, file_id: u32, offset: u64, newest: Newest) {
        let candidate = Winner {
            seq,
            file_id,
            offset,
            newest,
        };
        match self.winners.get_mut(key) {
            Some(current) if current.seq > seq => {}
            Some(current) if current.seq == seq && current.newest != Newest::LostPut => {}
            Some(current) => *current = candidate,
            None => {
                self.winners.insert(key.to_vec(), candidate);
            }
        }
    }

    /// Reads a data file's records through damage, resynchronising after each bad range.
    fn read_by_walk(&mut self, id: u32, path: &Path, bytes: &[u8], is_tail: bool) {
        let len = bytes.len() as u64;
        for item in walk(bytes) {
            match item {
                Item::Record { offset, record } => self.offer_record(id, offset, &record),
                Item::Bad(range) => self.dropped.push(Dropped {
                    path: path.to_path_buf(),
                    range,
                    torn_tail: range.is_torn_tail(len, is_tail),
                }),
            }
        }
    }

    /// Reads a data file's records where its hint says they are, as open does. A damaged
    /// record's entry still says which key it held, how new it was and whether it was a put: a
    /// removal stays a removal, and a lost value is not replaced by an older one.
    fn read_by_hint(&mut self, id: u32, path: &Path, bytes: &[u8], hint: &HintFile) {
        for entry in hint.entries() {
            let (start, end) = (entry.offset, entry.record_end().unwrap_or(u64::MAX));
            let record = bytes
                .get(start as usize..end as usize)
                .ok_or(CorruptionKind::Truncated)
                .and_then(Record::decode)
                .and_then(|record| match HintEntry::of(&record, start) == entry {
                    true => Ok(record),
                    false => Err(CorruptionKind::KeyMismatch),
                });
            match record {
                Ok(record) => self.offer_record(id, start, &record),
                Err(kind) => {
                    self.hinted_damaged += 1;
                    let newest = match entry.kind {
                        RecordKind::Put => Newest::LostPut,
                        RecordKind::Tombstone => Newest::Tombstone,
                    };
                    self.offer(entry.key, entry.seq, id, start, newest);
                    self.dropped.push(Dropped {
                        path: path.to_path_buf(),
                        range: BadRange {
                            start,
                            end,
                            kind,
                            gave_up: false,
                        },
                        torn_tail: false,
                    });
                }
            }
        }
    }

    /// Keys whose newest record is a damaged put, sorted.
    fn lost_keys(&self) -> Vec<(&[u8], &Winner)> {
        let mut lost: Vec<_> = self
            .winners
            .iter()
            .filter(|(_, w)| w.newest == Newest::LostPut)
            .map(|(key, w)| (key.as_slice(), w))
            .collect();
        lost.sort_unstable_by_key(|(key, _)| *key);
        lost
    }

    /// Offsets of the surviving puts, grouped by file, in file order.
    fn survivors(&self) -> BTreeMap<u32, Vec<u64>> {
        let mut by_file: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for winner in self.winners.values().filter(|w| w.newest == Newest::Put) {
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

    /// The report's lines; keys are shown in hex with `hex`, else quoted and escaped.
    fn report(&self, dir: &Path, out: &Path, kept: u64, hex: bool) -> String {
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
                " (records in them are lost; where one held a key's newest value or removal \
                 and no hint file names it, an older value may have come back):"
            }
        );
        for d in damaged {
            let _ = writeln!(text, "  {}", describe(d));
        }
        if self.hinted_damaged > 0 {
            let _ = writeln!(
                text,
                "hints     {} named by their data files' hint files: removals among them \
                 were kept",
                counted(self.hinted_damaged, "damaged record")
            );
        }
        let lost = self.lost_keys();
        if !lost.is_empty() {
            let _ = writeln!(
                text,
                "lost      {} whose newest value was in a damaged record (left out: no older \
                 value was put in its place):",
                counted(lost.len() as u64, "key")
            );
            for (key, winner) in lost.iter().take(LOST_KEYS_LISTED) {
                let _ = writeln!(
                    text,
                    "  {} (seq {}, data file {:010}, offset {})",
                    if hex { encode_hex(key) } else { quoted(key) },
                    winner.seq,
                    winner.file_id,
                    winner.offset
                );
            }
            if lost.len() > LOST_KEYS_LISTED {
                let _ = writeln!(text, "  and {} more", lost.len() - LOST_KEYS_LISTED);
            }
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
        for (path, named) in &self.foreign {
            let _ = writeln!(
                text,
                "foreign   {}: its header names file id {named}, so it is another file under \
                 this name (open refuses the store while it is there); not read. If it belongs \
                 to this store, rename it to {named:010}.data and repair again",
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
        "{} bytes {}..{}: {}{}",
        dropped.path.display(),
        dropped.range.start,
        dropped.range.end,
        dropped.range.kind,
        dropped.range.gave_up_note()
    )
}

/// Reads every data file, collecting the newest record per key and the bytes skipped. A sealed
/// file with a hint that open would trust is read where the hint says its records are.
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
            Ok(header) if header.file_id != id => {
                // Another file under this name (copied from elsewhere, or misnamed): its seqs
                // are not this store's, and would win or lose against ours at random.
                salvage.foreign.push((path.clone(), header.file_id));
                salvage.data_files -= 1; // listed as foreign, not as read
                progress.inc(bytes.len() as u64);
                continue;
            }
            Ok(_) => {}
        }
        let is_tail = tail == Some(id);
        let hint_bytes = (!is_tail)
            .then(|| store_files.hints.get(&id))
            .flatten()
            .and_then(|hint_path| files::read(hint_path).ok());
        let hint = hint_bytes
            .as_deref()
            .and_then(|hint| HintFile::decode(hint).ok())
            .filter(|hint| hint.indexes(id, bytes.len() as u64));
        match hint {
            Some(hint) => salvage.read_by_hint(id, path, &bytes, &hint),
            None => salvage.read_by_walk(id, path, &bytes, is_tail),
        }
        progress.inc(bytes.len() as u64);
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
            let at = bytes.get(offset as usize..).unwrap_or_default();
            let record = Record::decode(at).map_err(|kind| {
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
/// path. Where the two directories can be exchanged in one step, `dir` is never missing and the
/// original never holds any name but `dir` and its backup name; otherwise it takes two renames,
/// and if the second fails the original is moved back.
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
    // The copy takes the backup's name first, so that the exchange leaves the original under
    // its final name in the same step. (A crash between the two leaves the original at `dir`
    // and the copy under the backup's name: misnamed, but no original under a name that invites
    // deleting it, as `out` would.)
    // If the copy cannot take a name beside the original (it is on another file system, say),
    // it cannot take the original's either: stop before the original is moved at all.
    std::fs::rename(out, &backup).map_err(|source| CliError::Io {
        doing: format!(
            "moving the repaired copy next to the store, to swap it in (nothing was swapped; \
             the copy is complete, copy or move it to {} yourself):",
            dir.display()
        ),
        target: out.display().to_string(),
        source,
    })?;
    if exchange(&backup, dir) {
        sync_parents(dir, out).map_err(|e| swapped_but(e, dir, &backup))?;
        return Ok(backup);
    }
    std::fs::rename(&backup, out)
        .map_err(CliError::io("moving the repaired copy back from", &backup))?;
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
    sync_parents(dir, out).map_err(|e| swapped_but(e, dir, &backup))?;
    Ok(backup)
}

/// An error after the swap was done (syncing the directories): it says so, and where the
/// original is now, so that nobody takes the original for leftovers.
fn swapped_but(error: CliError, dir: &Path, backup: &Path) -> CliError {
    match error {
        CliError::Io {
            doing,
            target,
            source,
        } => CliError::Io {
            doing: format!(
                "the swap was done ({} holds the repaired store, the original is at {}), but a \
                 power cut may still undo it: {doing}",
                dir.display(),
                backup.display()
            ),
            target,
            source,
        },
        other => other,
    }
}

/// Fsyncs the directories holding `dir` and `out`, so that the renames survive a power cut.
fn sync_parents(dir: &Path, out: &Path) -> CliResult {
    for parent in [parent_of(dir), parent_of(out)] {
        files::sync_dir(&parent)?;
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory fsync failing after the swap must not read as a refused swap: the message
    /// says the swap was done and where the original is, so nobody deletes it as leftovers.
    #[test]
    fn an_error_after_the_swap_says_where_the_original_is() {
        let failed_sync = CliError::io("syncing directory", Path::new("/srv"))(
            std::io::Error::from(std::io::ErrorKind::Other),
        );
        let error = swapped_but(
            failed_sync,
            Path::new("/srv/db"),
            Path::new("/srv/db.damaged-7"),
        );
        let message = error.to_string();
        assert!(
            message.contains("the swap was done (/srv/db holds the repaired store, the original is at /srv/db.damaged-7)")
                && message.contains("syncing directory /srv failed"),
            "{message}"
        );
        assert_eq!(error.exit_code(), crate::error::EXIT_STORE);
    }
}
