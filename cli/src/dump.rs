//! `dump FILE`: the contents of one data file, hint file, saved tail, `MERGE` or `FSYNC_FAILED`
//! record, one line
//! per record, for debugging, written out as it goes. Damaged bytes are shown in place (with the
//! offset where records resume) and make the command exit with code 1. The file is only read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bitcask::CorruptionKind;
use bitcask::format::commit::MergeCommit;
use bitcask::format::fsync_failure::FsyncFailure;
use bitcask::format::header::{FileHeader, FileKind};
use bitcask::format::hint::HintFile;
use bitcask::format::record::{Record, RecordKind};

use crate::error::{CliError, CliResult};
use crate::files;
use crate::output::{StdoutText, counted, quoted, show_key};
use crate::salvage::{Item, Walk, walk, walk_saved_tail};

/// Bytes of a value shown before it is cut off with `...`.
const VALUE_PREVIEW: usize = 32;

/// Dumps `file` (resolved against `dir` when it does not exist as given) to stdout.
pub fn run(file: &Path, dir: Option<&Path>, hex: bool) -> CliResult {
    let path = resolve(file, dir);
    let bytes = files::read(&path)?;
    let mut out = StdoutText::default();
    let _ = writeln!(
        out,
        "file    {}\nlength  {} bytes",
        path.display(),
        bytes.len()
    );
    let saved_tail = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(files::saved_tail);
    let is_fsync_failure = path.file_name() == Some("FSYNC_FAILED".as_ref());
    let damaged = if let Some(cut) = saved_tail {
        dump_saved_tail(cut, &bytes, hex, &mut out)
    } else if is_fsync_failure {
        dump_fsync_failure(&bytes, &mut out)
    } else {
        dump_by_header(&path, &bytes, hex, &mut out)
    };
    // The verdict first: a reader that went away (`dump F | head`) must not hide damage.
    let finished = out.finish();
    if damaged {
        return Err(CliError::Damaged(format!(
            "{} holds bytes that do not decode (marked DAMAGED above)",
            path.display()
        )));
    }
    finished
}

/// `file` as given if it exists, else relative to the store directory (so `--dir DB dump
/// 0000000001.data` works from anywhere).
fn resolve(file: &Path, dir: Option<&Path>) -> PathBuf {
    match dir {
        Some(dir) if !file.exists() && file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

/// Dumps a file by what its header says it is; returns whether anything was damaged.
fn dump_by_header(path: &Path, bytes: &[u8], hex: bool, out: &mut StdoutText) -> bool {
    match FileHeader::decode(bytes) {
        Ok(header) if header.kind == FileKind::Hint => dump_hint(bytes, hex, out),
        Ok(header) => dump_data(Some(header), bytes, hex, out),
        Err(CorruptionKind::BadMagic) if MergeCommit::decode(bytes).is_ok() => {
            dump_commit(bytes, out)
        }
        Err(CorruptionKind::BadMagic) if FsyncFailure::decode(bytes).is_ok() => {
            dump_fsync_failure(bytes, out)
        }
        Err(_) if path.extension().is_some_and(|ext| ext == "hint") => dump_hint(bytes, hex, out),
        Err(kind) => {
            let _ = writeln!(
                out,
                "header  DAMAGED: {kind}; records follow as far as they decode"
            );
            dump_data(None, bytes, hex, out);
            true
        }
    }
}

/// Prints a data file's records; returns whether anything was damaged.
fn dump_data(header: Option<FileHeader>, bytes: &[u8], hex: bool, out: &mut StdoutText) -> bool {
    if let Some(header) = header {
        let kind = match header.kind {
            FileKind::Merged => "merged data (written by a merge)",
            _ => "data (appended by the writer)",
        };
        let _ = writeln!(
            out,
            "header  {kind}, file id {}, format version {}",
            header.file_id, header.version
        );
    }
    dump_records(walk(bytes), 0, bytes.len() as u64, hex, out)
}

/// Prints the records of a saved tail (no header), at their offsets in the data file they were
/// cut from; returns whether anything was damaged.
fn dump_saved_tail(cut: (u32, u64), bytes: &[u8], hex: bool, out: &mut StdoutText) -> bool {
    let (id, at) = cut;
    let _ = writeln!(
        out,
        "saved   bytes an open cut off data file {id:010} at offset {at} (valid records followed \
         damage); they are not in the store. Offsets below are in that data file"
    );
    let len = bytes.len() as u64;
    let base = if at.checked_add(len).is_some() {
        at
    } else {
        // Only a renamed file: no data file reaches 2^64 bytes.
        let _ = writeln!(
            out,
            "note    offset {at} in its name leaves no room for its {len} bytes; offsets below \
             are within this file"
        );
        0
    };
    dump_records(walk_saved_tail(bytes), base, len, hex, out)
}

/// Prints walked records at `base` + their offset; returns whether anything was damaged.
fn dump_records(items: Walk, base: u64, len: u64, hex: bool, out: &mut StdoutText) -> bool {
    let _ = writeln!(
        out,
        "{:>10}  {:>8}  {:<9}  KEY = VALUE",
        "OFFSET", "SEQ", "KIND"
    );
    let (mut records, mut bad_ranges) = (0u64, 0u64);
    for item in items {
        if out.failed() {
            break;
        }
        match item {
            Item::Record { offset, record } => {
                records += 1;
                let _ = writeln!(out, "{}", record_line(base + offset, &record, hex));
            }
            Item::Bad(bad) => {
                bad_ranges += 1;
                let resume = if bad.reaches_end(len) {
                    "to the end of the file".to_string()
                } else {
                    format!("next record at offset {}", base + bad.end)
                };
                let _ = writeln!(
                    out,
                    "{:>10}  DAMAGED: {}; {} skipped, {resume}{}",
                    base + bad.start,
                    bad.kind,
                    counted(bad.len(), "byte"),
                    bad.gave_up_note()
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "total   {}, {}",
        counted(records, "record"),
        counted(bad_ranges, "damaged range")
    );
    bad_ranges > 0
}

fn record_line(offset: u64, record: &Record, hex: bool) -> String {
    let key = key_text(record.key, hex);
    match record.kind {
        RecordKind::Put => format!(
            "{offset:>10}  {:>8}  {:<9}  {key} = {}",
            record.seq,
            "put",
            preview(record.value)
        ),
        RecordKind::Tombstone => {
            format!("{offset:>10}  {:>8}  {:<9}  {key}", record.seq, "tombstone")
        }
    }
}

fn key_text(key: &[u8], hex: bool) -> String {
    if hex {
        show_key(key, true)
    } else {
        quoted(key)
    }
}

/// The value's length and its first bytes, quoted and escaped.
fn preview(value: &[u8]) -> String {
    let shown = &value[..value.len().min(VALUE_PREVIEW)];
    let more = if shown.len() < value.len() { "..." } else { "" };
    format!(
        "({}) {}{more}",
        counted(value.len() as u64, "byte"),
        quoted(shown)
    )
}

/// Prints a hint file's entries; returns whether it was damaged.
fn dump_hint(bytes: &[u8], hex: bool, out: &mut StdoutText) -> bool {
    let hint = match HintFile::decode(bytes) {
        Ok(hint) => hint,
        Err(kind) => {
            let _ = writeln!(
                out,
                "header  hint file\nDAMAGED: the hint file does not decode: {kind}"
            );
            return true;
        }
    };
    let _ = writeln!(
        out,
        "header  hint for data file {}, which had {} bytes when the hint was written; format \
         version {}",
        hint.file_id,
        hint.data_len,
        hint.version()
    );
    let _ = writeln!(
        out,
        "{:>10}  {:>8}  {:<9}  {:>9}  KEY",
        "OFFSET", "SEQ", "KIND", "VALUE LEN"
    );
    let mut entries = 0u64;
    for entry in hint.entries() {
        if out.failed() {
            break;
        }
        entries += 1;
        let kind = match entry.kind {
            RecordKind::Put => "put",
            RecordKind::Tombstone => "tombstone",
        };
        let _ = writeln!(
            out,
            "{:>10}  {:>8}  {kind:<9}  {:>9}  {}",
            entry.offset,
            entry.seq,
            entry.value_len,
            key_text(entry.key, hex)
        );
    }
    let noun = if entries == 1 { "entry" } else { "entries" };
    let _ = writeln!(out, "total   {entries} {noun}");
    false
}

/// Prints a failed fsync's record. One that does not decode is not damage: a crash tore it
/// (its fsync is allowed to fail), and open removes it.
fn dump_fsync_failure(bytes: &[u8], out: &mut StdoutText) -> bool {
    match FsyncFailure::decode(bytes) {
        Ok(failure) => {
            let _ = writeln!(out, "header  fsync failure record (a failed fsync)");
            let _ = writeln!(out, "file    {:010}.data", failure.file_id);
            let _ = writeln!(
                out,
                "durable {} bytes (the next open writes the rest again before it reads the file)",
                failure.durable_len
            );
        }
        Err(kind) => {
            let _ = writeln!(
                out,
                "header  fsync failure record that does not decode ({kind}): a crash tore it; \
                 the next open removes it"
            );
        }
    }
    false
}

/// Prints a merge commit record; it decoded, so nothing is damaged.
fn dump_commit(bytes: &[u8], out: &mut StdoutText) -> bool {
    if let Ok(commit) = MergeCommit::decode(bytes) {
        let _ = writeln!(out, "header  merge commit record (an interrupted merge)");
        let _ = writeln!(
            out,
            "inputs  {:?} (deleted when the merge is finished)",
            commit.inputs
        );
        let _ = writeln!(out, "outputs {:?}", commit.outputs);
    }
    false
}
