//! `check`: verifies a store without opening it through the library, so it works on a store that
//! fails to open and modifies nothing.
//!
//! It verifies every data file's header and every record's CRC (walking past damage to report each
//! bad range), every hint file against its data file (it decodes, names the data file's id and
//! length, and each entry's seq, kind, key and value length equal the record at its offset), an
//! interrupted merge's `MERGE` record and a failed fsync's `FSYNC_FAILED` record, and that each
//! writer file starts at the seq after the last one of the writer file before it (else records
//! are missing from the end of that one, which open refuses). A bad range that
//! ends the newest writer file is a torn tail that open cuts off: a warning, not damage. The
//! store's lock is taken for the duration (a store open elsewhere is refused), and no file is
//! created or changed.

use std::path::{Path, PathBuf};

use bitcask::CorruptionKind;
use bitcask::format::commit::MergeCommit;
use bitcask::format::fsync_failure::FsyncFailure;
use bitcask::format::header::{FileHeader, FileKind, HEADER_LEN};
use bitcask::format::hint::{HintEntry, HintFile};
use bitcask::format::record::{Record, may_hold_records};
use bitcask::format::seq_ranges::{WriterFile, seq_gaps};

use crate::error::{CliError, CliResult};
use crate::files::{self, StoreFiles};
use crate::output::{counted, escape, human_bytes, write_stdout};
use crate::progress::Progress;
use crate::salvage::{BadRange, Item, walk, walk_saved_tail};
use crate::store;

/// Hint entries that do not match reported per hint file before the rest is summarised.
const MAX_ENTRY_REPORTS: usize = 10;

/// Checks the store in `dir`, prints the report to stdout, and fails with
/// [`CliError::Damaged`] if anything is damaged.
pub fn run(dir: &Path, quiet: bool) -> CliResult {
    store::require_store(dir)?;
    let _lock = files::lock_store(dir, files::MissingLock::Proceed)?;
    let mut store_files = StoreFiles::list(dir)?;
    let merge = store_files.merge_commit()?;
    if let Some(Ok(commit)) = &merge {
        store_files.finish_merge_as_open_would(commit);
    }
    let tail = store_files.tail_id();
    let progress = Progress::bytes(store_files.total_bytes(), "checking", quiet);
    let mut report = Report::default();
    let mut writers = Vec::new();
    let mut readable = std::collections::BTreeSet::new();
    for (&id, path) in &store_files.data {
        let Some(data) = read_or_report(path, &mut report) else {
            continue;
        };
        let judged = check_data_file(id, path, &data, tail == Some(id), &mut report);
        if judged && FileHeader::decode(&data).is_ok() {
            readable.insert(id);
        }
        if judged && let Some(writer) = writer_file(id, &data, tail == Some(id)) {
            writers.push(writer);
        }
        progress.inc(data.len() as u64);
        if judged
            && let Some(hint_path) = store_files.hints.get(&id)
            && let Some(hint) = read_or_report(hint_path, &mut report)
        {
            check_hint(id, hint_path, &hint, &data, &mut report);
            progress.inc(hint.len() as u64);
        }
    }
    check_seq_ranges(&store_files, &writers, &readable, &mut report);
    check_orphan_hints(&store_files, &mut report);
    check_merge_record(dir, &store_files, merge, &mut report);
    note_fsync_failure(&store_files, &mut report);
    note_saved_tails(&store_files, &mut report);
    note_tmps(&store_files, &mut report);
    progress.finish();
    // The verdict first: a reader that went away (`check | head`) must not hide damage.
    let printed = report.print(dir);
    report.verdict(dir)?;
    printed
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    /// Bytes the library cannot use: exit code 1.
    Damage,
    /// Expected after a crash; the next open deals with it.
    Warning,
    /// Worth knowing, harmless.
    Note,
    /// Written in a format version this build does not read (a newer bitcask wrote it): not
    /// judged, and neither opened nor repaired by this build.
    Newer,
}

#[derive(Debug)]
struct Finding {
    severity: Severity,
    path: PathBuf,
    offset: Option<u64>,
    message: String,
}

/// What the check found, in the order it found it.
#[derive(Debug, Default)]
struct Report {
    findings: Vec<Finding>,
    data_files: u64,
    hint_files: u64,
    records: u64,
    bytes: u64,
}

impl Report {
    fn add(&mut self, severity: Severity, path: &Path, offset: Option<u64>, message: String) {
        self.findings.push(Finding {
            severity,
            path: path.to_path_buf(),
            offset,
            message,
        });
    }

    fn damaged(&self, path: &Path) -> bool {
        (self.findings.iter()).any(|f| f.severity == Severity::Damage && f.path == path)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    fn print(&self, dir: &Path) -> CliResult {
        let mut out = String::new();
        out.push_str(&format!(
            "checked {}: {} ({}, {}), {}\n",
            dir.display(),
            counted(self.data_files, "data file"),
            human_bytes(self.bytes),
            counted(self.records, "record"),
            counted(self.hint_files, "hint file")
        ));
        for f in &self.findings {
            let label = match f.severity {
                Severity::Damage => "DAMAGE ",
                Severity::Warning => "warning",
                Severity::Note => "note   ",
                Severity::Newer => "NEWER  ",
            };
            let at = f.offset.map(|o| format!(" @ {o}")).unwrap_or_default();
            out.push_str(&format!(
                "{label} {}{at}: {}\n",
                f.path.display(),
                f.message
            ));
        }
        let (damage, warnings) = (self.count(Severity::Damage), self.count(Severity::Warning));
        let verdict = if self.count(Severity::Newer) > 0 {
            "NOT CHECKED (newer format)"
        } else if damage == 0 {
            "OK"
        } else {
            "DAMAGED"
        };
        out.push_str(&format!(
            "result: {verdict} ({} damaged, {})\n",
            damage,
            counted(warnings as u64, "warning")
        ));
        write_stdout(out.as_bytes())
    }

    fn verdict(&self, dir: &Path) -> CliResult {
        let newer = self.count(Severity::Newer);
        if newer > 0 {
            return Err(CliError::Refused(format!(
                "{}: {} in a format version this build does not read (listed on stdout); a \
                 newer bitcask wrote them, so check the store with that version (this build \
                 neither opens nor repairs it)",
                dir.display(),
                counted(newer as u64, "data file")
            )));
        }
        match self.count(Severity::Damage) {
            0 => Ok(()),
            n => Err(CliError::Damaged(format!(
                "check found {} in {} (listed on stdout); `bitcask repair` copies every valid \
                 record into a new store",
                counted(n as u64, "damaged place"),
                dir.display()
            ))),
        }
    }
}

/// Checks one data file; returns false if it is in a newer format, whose records (and hint)
/// this build cannot judge.
fn check_data_file(id: u32, path: &Path, bytes: &[u8], is_tail: bool, report: &mut Report) -> bool {
    report.data_files += 1;
    report.bytes += bytes.len() as u64;
    if let Err(CorruptionKind::UnsupportedVersion(version)) = FileHeader::decode(bytes) {
        let message = format!(
            "format version {version}, which this build does not read; a newer bitcask wrote it"
        );
        report.add(Severity::Newer, path, None, message);
        return false;
    }
    check_header(id, path, bytes, report);
    let len = bytes.len() as u64;
    for item in walk(bytes) {
        match item {
            Item::Record { .. } => report.records += 1,
            Item::Bad(bad) if bad.is_torn_tail(len, is_tail) => report.add(
                Severity::Warning,
                path,
                Some(bad.start),
                torn_tail(&bad, &bytes[bad.start as usize..]),
            ),
            Item::Bad(bad) => report.add(
                Severity::Damage,
                path,
                Some(bad.start),
                describe(&bad, len, is_tail),
            ),
        }
    }
    true
}

/// The seq range of a writer file's valid records (of the newest one, those before a torn
/// tail, which open cuts off); `None` for a merged file or one whose header does not decode.
fn writer_file(id: u32, bytes: &[u8], is_tail: bool) -> Option<WriterFile> {
    if FileHeader::decode(bytes).ok()?.kind != FileKind::Data {
        return None;
    }
    let mut seqs: Option<(u64, u64)> = None;
    for item in walk(bytes) {
        match item {
            Item::Record { record, .. } => {
                let (min, max) = seqs.unwrap_or((record.seq, record.seq));
                seqs = Some((min.min(record.seq), max.max(record.seq)));
            }
            Item::Bad(_) if is_tail => break,
            Item::Bad(_) => {}
        }
    }
    Some(WriterFile { id, seqs })
}

/// Each sealed writer file that lost records from its end, which open refuses
/// (`bitcask::format::seq_ranges`). Files whose header does not decode count as missing (what
/// they are is unknown), and a file already reported as damaged is not reported again.
fn check_seq_ranges(
    store_files: &StoreFiles,
    writers: &[WriterFile],
    readable: &std::collections::BTreeSet<u32>,
    report: &mut Report,
) {
    for gap in seq_gaps(writers, |id| readable.contains(&id)) {
        let path = &store_files.data[&gap.earlier];
        if report.damaged(path) {
            continue;
        }
        let kind = CorruptionKind::RecordsMissingAtEnd {
            last: gap.last,
            later: gap.later,
            first: gap.first,
        };
        let message = format!("{kind}; open refuses the store");
        report.add(Severity::Damage, path, None, message);
    }
}

/// What open does with the torn tail `bad` of the newest writer file, whose bytes are `tail`.
fn torn_tail(bad: &BadRange, tail: &[u8]) -> String {
    // The test open applies before it cuts the tail.
    let cut = if may_hold_records(tail) {
        "the next open cuts it off and saves it beside the file, as it does where records may \
         lie behind the damage (none can be the writer's: no seq in it rises above the last \
         good record's)"
    } else {
        "the next open cuts it off"
    };
    format!(
        "torn tail: the last {} bytes do not form a record ({}); an interrupted write, {cut}",
        bad.len(),
        bad.kind
    )
}

fn check_header(id: u32, path: &Path, bytes: &[u8], report: &mut Report) {
    let problem = match FileHeader::decode(bytes) {
        Err(kind) => format!("file header: {kind}; open refuses this file"),
        Ok(h) if h.kind == FileKind::Hint => "file header says it is a hint file".to_string(),
        Ok(h) if h.file_id != id => format!(
            "file header names file id {}, not {id}; open refuses this file",
            h.file_id
        ),
        Ok(_) => return,
    };
    report.add(Severity::Damage, path, Some(0), problem);
}

fn describe(bad: &BadRange, file_len: u64, is_tail: bool) -> String {
    let resume = if bad.reaches_end(file_len) {
        "up to the end of the file".to_string()
    } else {
        format!("valid records resume at offset {}", bad.end)
    };
    let cut = if is_tail {
        "; this is the newest data file, so the next open cuts it off here (saving any valid \
         records after it beside the file as a saved tail)"
    } else {
        ""
    };
    format!(
        "bad record: {}; {} bytes unreadable, {resume}{}{cut}",
        bad.kind,
        bad.len(),
        bad.gave_up_note()
    )
}

fn check_hint(id: u32, path: &Path, bytes: &[u8], data: &[u8], report: &mut Report) {
    report.hint_files += 1;
    let mut damage = |message: String| report.add(Severity::Damage, path, None, message);
    let hint = match HintFile::decode(bytes) {
        Ok(hint) => hint,
        Err(kind) => {
            return damage(format!(
                "hint file does not decode: {kind} (open ignores it and scans the data file)"
            ));
        }
    };
    if hint.file_id != id {
        return damage(format!(
            "hint file belongs to data file {}, not {id}",
            hint.file_id
        ));
    }
    if hint.data_len != data.len() as u64 {
        return damage(format!(
            "hint file describes a data file of {} bytes, but the data file has {} bytes \
             (stale; open ignores it and scans the data file)",
            hint.data_len,
            data.len()
        ));
    }
    let mismatches: Vec<String> = hint
        .entries()
        .enumerate()
        .filter_map(|(index, entry)| entry_mismatch(&entry, data).map(|why| (index, entry, why)))
        .map(|(index, entry, why)| {
            format!(
                "hint entry {index} (key \"{}\", data offset {}) does not match the data file: {why}",
                escape(entry.key, true),
                entry.offset
            )
        })
        .collect();
    let extra = mismatches.len().saturating_sub(MAX_ENTRY_REPORTS);
    for message in mismatches.into_iter().take(MAX_ENTRY_REPORTS) {
        damage(message);
    }
    if extra > 0 {
        damage(format!("and {extra} more hint entries that do not match"));
    }
    // Open trusts a hint only if its records end where the data file does. (`decode` checked
    // that every record's end is a number, so `record_end` is `Ok`.)
    let end = hint
        .entries()
        .last()
        .map_or(Ok(HEADER_LEN as u64), |e| e.record_end());
    if let Ok(end) = end
        && end != data.len() as u64
    {
        damage(format!(
            "the hint's records end at byte {end}, but the data file at {} (open ignores the \
             hint and scans the data file)",
            data.len()
        ));
    } else if !hint.indexes(id, data.len() as u64) {
        damage(
            "the hint's records do not lie back to back in the data file, or one starts 4 GiB or \
             more into it (a version 1 hint whose entries overlap, leave a gap or point too far; \
             open ignores the hint and scans the data file)"
                .into(),
        );
    }
}

/// Why `entry` disagrees with the record at its offset in `data`, if it does.
fn entry_mismatch(entry: &HintEntry, data: &[u8]) -> Option<String> {
    let record_bytes = usize::try_from(entry.offset)
        .ok()
        .filter(|&offset| offset >= HEADER_LEN)
        .and_then(|offset| data.get(offset..));
    let Some(record_bytes) = record_bytes else {
        return Some("the offset is outside the data file's records".into());
    };
    let record = match Record::decode(record_bytes) {
        Ok(record) => record,
        Err(kind) => return Some(format!("no valid record there: {kind}")),
    };
    if record.seq != entry.seq {
        Some(format!(
            "seq {} in the hint, {} in the data",
            entry.seq, record.seq
        ))
    } else if record.kind != entry.kind {
        Some(format!(
            "{:?} in the hint, {:?} in the data",
            entry.kind, record.kind
        ))
    } else if record.key != entry.key {
        Some(format!(
            "the record holds key \"{}\"",
            escape(record.key, true)
        ))
    } else if record.value.len() != entry.value_len as usize {
        Some(format!(
            "value length {} in the hint, {} in the data",
            entry.value_len,
            record.value.len()
        ))
    } else {
        None
    }
}

fn check_orphan_hints(store_files: &StoreFiles, report: &mut Report) {
    for (id, path) in &store_files.hints {
        if !store_files.data.contains_key(id) {
            report.add(
                Severity::Warning,
                path,
                None,
                "hint file without its data file; open ignores it".into(),
            );
        }
    }
}

/// Reports the `MERGE` record (the files of a committed merge were checked as open will read
/// them: [`StoreFiles::finish_merge_as_open_would`]).
fn check_merge_record(
    dir: &Path,
    store_files: &StoreFiles,
    merge: Option<Result<MergeCommit, CorruptionKind>>,
    report: &mut Report,
) {
    let (Some(path), Some(merge)) = (&store_files.merge_record, merge) else {
        return;
    };
    let commit = match merge {
        Ok(commit) => commit,
        Err(kind) => {
            let message = format!("merge commit record does not decode: {kind}; open will fail");
            report.add(Severity::Damage, path, Some(0), message);
            return;
        }
    };
    report.add(
        Severity::Note,
        path,
        None,
        format!(
            "an interrupted merge of files {:?} into {:?} is committed; the next open finishes \
             it (its outputs were checked in place of its inputs, which open deletes)",
            commit.inputs, commit.outputs
        ),
    );
    let missing =
        |name: &str| !dir.join(name).exists() && !dir.join(format!("{name}.tmp")).exists();
    for id in &commit.outputs {
        let (data, hint) = (format!("{id:010}.data"), format!("{id:010}.hint"));
        if missing(&data) {
            let message = "output of the interrupted merge is missing; open will fail".into();
            report.add(Severity::Damage, &dir.join(data), None, message);
        } else if missing(&hint) {
            let message = "the hint file of this output of the interrupted merge is missing \
                           (deleted, or merged with hint_files(false)); open scans the data \
                           file instead"
                .into();
            report.add(Severity::Note, &dir.join(hint), None, message);
        }
    }
}

/// Reports a failed fsync's record: the records of the file it names past what an earlier fsync
/// made durable may be readable now and gone after a reboot; the next open writes them again.
fn note_fsync_failure(store_files: &StoreFiles, report: &mut Report) {
    let Some(path) = &store_files.fsync_failure else {
        return;
    };
    let Some(bytes) = read_or_report(path, report) else {
        return;
    };
    let message = match FsyncFailure::decode(&bytes) {
        Ok(failure) => format!(
            "an fsync of data file {:010} failed; an earlier one made its first {} bytes \
             durable, and the records after them may read back now without being on disk. The \
             next open writes them again and fsyncs them",
            failure.file_id, failure.durable_len
        ),
        Err(kind) => format!(
            "a failed fsync's record that does not decode ({kind}): a crash tore it, and took \
             the pages it warned of; the next open removes it"
        ),
    };
    report.add(Severity::Warning, path, None, message);
}

/// A file's bytes, or `None` after reporting as damage that it cannot be read (a bad sector):
/// the other files are still checked.
fn read_or_report(path: &Path, report: &mut Report) -> Option<Vec<u8>> {
    match files::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            report.add(Severity::Damage, path, None, format!("unreadable: {e}"));
            None
        }
    }
}

/// Saved tails hold records an earlier open cut off the newest data file: not in the store any
/// more, and not put back by `repair` (their seqs may be reused by later writes, so nothing says
/// whether they are older or newer than what the store holds). A person decides.
fn note_saved_tails(store_files: &StoreFiles, report: &mut Report) {
    for (&(id, offset, _), path) in &store_files.saved_tails {
        let Some(bytes) = read_or_report(path, report) else {
            continue;
        };
        let records = walk_saved_tail(&bytes)
            .filter(|item| matches!(item, Item::Record { .. }))
            .count() as u64;
        let message = format!(
            "saved tail: {} that an open cut off data file {id:010} at offset {offset} (valid \
             records followed damage); they are not in the store, and `repair` does not copy \
             them back. `bitcask dump` lists them; `bitcask put` re-adds what is still wanted",
            counted(records, "valid record")
        );
        report.add(Severity::Warning, path, None, message);
    }
}

fn note_tmps(store_files: &StoreFiles, report: &mut Report) {
    for path in &store_files.tmps {
        report.add(
            Severity::Note,
            path,
            None,
            "temporary file; the next open removes it".into(),
        );
    }
}
