//! Merge: copy the live records of sealed files into new files with hint files (unless
//! `Config::hint_files` is off), commit the swap
//! atomically, repoint the keydir, publish the new file set and delete the old files. Also the
//! policy that decides when the background thread merges and which files it takes.
//!
//! Commit protocol (crash-safe at every step; `docs/design.md` walks each crash point):
//! 1. write outputs as `*.data.tmp` + `*.hint.tmp` (no hint with `hint_files` off) and fsync
//!    them; then make everything the
//!    writer appended so far durable (what was left out relies on newer records);
//! 2. write the `MERGE` record (inputs, outputs) atomically: **the commit point**;
//! 3. rename outputs into place, fsync the directory;
//! 4. publish outputs, repoint keydir entries that still point at the copied records;
//! 5. unpublish inputs, delete them, fsync the directory, delete `MERGE`, fsync the directory.
//!
//! Before the commit point recovery deletes the `.tmp` files (the old set stands); after it,
//! recovery redoes steps 3 and 5 (the new set stands).

use std::io::{BufWriter, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::engine::Engine;
use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::fileset::{collect_retired, retire};
use crate::format::FileId;
use crate::format::commit::MergeCommit;
use crate::format::header::{FileHeader, FileKind, HEADER_LEN};
use crate::format::hint::{HintBuilder, HintEntry, HintFile};
use crate::format::record::{self, Record, RecordKind};
use crate::io;
use crate::io::layout::Layout;
use crate::io::vfs::{FileHandle, OpenMode, Vfs};
use crate::keydir::{FileUsage, Location, Usage};
use crate::options::MergePolicy;
use crate::segment::{Segment, Storage};
use crate::sync::{Arc, Mutex, Ordering, ProtocolBreak, broken};

/// What merges have done, kept under the merge lock.
#[derive(Debug, Default)]
pub(crate) struct MergeState {
    /// Why no further merge may start before reopen: a merge failed after its commit point
    /// (the directory holds a `MERGE` record that only recovery may finish), or the background
    /// merge thread panicked (a bug; what that merge left is recovery's to sort out).
    refused_until_reopen: Option<String>,
}

/// Merge figures for `stats()`, readable while a merge runs.
#[derive(Debug, Default)]
pub(crate) struct MergeCounters {
    figures: Mutex<MergeFigures>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct MergeFigures {
    pub runs: u64,
    pub reclaimed_bytes: u64,
    pub last: Option<SystemTime>,
    pub last_error: Option<String>,
    pub failures: u64,
}

impl MergeCounters {
    pub(crate) fn snapshot(&self) -> MergeFigures {
        self.figures.lock().clone()
    }

    fn record(&self, outcome: &Result<u64>) {
        match outcome {
            Ok(reclaimed) => {
                let mut figures = self.figures.lock();
                figures.runs += 1;
                figures.reclaimed_bytes += reclaimed;
                figures.last = Some(SystemTime::now());
                figures.last_error = None;
            }
            Err(e) => self.record_failure(e),
        }
    }

    /// Records a merge that failed, before or while it ran (a closed store is no failure).
    fn record_failure(&self, error: &Error) {
        if !matches!(error, Error::Closed) {
            let mut figures = self.figures.lock();
            figures.failures += 1;
            figures.last_error = Some(error.to_string());
        }
    }
}

/// Merges every sealed file (sealing the active file first if it holds records).
pub(crate) fn merge_all(engine: &Engine) -> Result<()> {
    let mut state = lock_for_merge(engine)?;
    refusing_after_panic(engine, &mut state, |state| {
        seal_active(engine).inspect_err(|e| engine.merge_counters.record_failure(e))?;
        let inputs = sealed_segments(engine, |_| true);
        let merged = merge_files(engine, state, &inputs);
        // Often the last references to the merged-away files: unmapped off this thread.
        retire(inputs);
        collect_retired();
        merged
    })
}

/// Runs `merge` under the merge lock. If it panics (a bug), merges are refused until reopen,
/// since it may have stopped at any step, past its commit point too, and only the next open
/// may sort out what it left; `stats()` says so, and the panic goes on to the caller.
fn refusing_after_panic(
    engine: &Engine,
    state: &mut MergeState,
    merge: impl FnOnce(&mut MergeState) -> Result<()>,
) -> Result<()> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| merge(state))) {
        Ok(merged) => merged,
        Err(panic) => {
            let reason = format!("a merge panicked ({})", panic_message(&*panic));
            engine
                .merge_counters
                .record_failure(&Error::MergeRefused(reason.clone()));
            state.refused_until_reopen = Some(reason);
            std::panic::resume_unwind(panic)
        }
    }
}

/// Rotates the active file if it holds records, so that a merge of everything includes them.
fn seal_active(engine: &Engine) -> Result<()> {
    let mut writer = engine.lock_writer()?;
    if !writer.is_empty() {
        writer.rotate(engine)?;
    }
    Ok(())
}

/// The message a panic was raised with, where it is a string (as `panic!` makes it).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Merges the files the merge policy picks, if any file triggers it.
pub(crate) fn merge_by_policy(engine: &Engine) -> Result<()> {
    let mut state = lock_for_merge(engine)?;
    if !needs_merge(engine) {
        return Ok(());
    }
    let policy = engine.config.merge_policy;
    let limit = engine.config.data_file_limit;
    let usage = engine.keydir.usage();
    // A file that triggers is taken whatever the threshold says: with a trigger looser than
    // the threshold it would trigger again at every check and never be merged.
    let inputs = sealed_segments(engine, |id| {
        usage
            .get(&id)
            .is_some_and(|u| triggers(&policy, u) || chosen(&policy, limit, u))
    });
    refusing_after_panic(engine, &mut state, |state| {
        let merged = merge_files(engine, state, &inputs);
        retire(inputs);
        collect_retired();
        merged
    })
}

/// Whether any sealed file passes the policy's trigger.
pub(crate) fn needs_merge(engine: &Engine) -> bool {
    let policy = engine.config.merge_policy;
    let usage = engine.keydir.usage();
    !sealed_segments(engine, |id| {
        usage.get(&id).is_some_and(|u| triggers(&policy, u))
    })
    .is_empty()
}

/// Dead record bytes and fragmentation of a file; tombstones count only if `with_tombstones`.
fn reclaimable(usage: &FileUsage, with_tombstones: bool) -> (u64, f64) {
    let records = usage.total_bytes.saturating_sub(HEADER_LEN as u64);
    let mut dead = records.saturating_sub(usage.live_bytes);
    if !with_tombstones {
        dead = dead.saturating_sub(usage.tombstone_bytes);
    }
    let fragmentation = if records == 0 {
        0.0
    } else {
        dead as f64 / records as f64
    };
    (dead, fragmentation)
}

/// Tombstones are left out: a tombstone can only go once every older file went, so counting it
/// could make a file of kept tombstones trigger merge after merge.
fn triggers(policy: &MergePolicy, usage: &FileUsage) -> bool {
    let (dead, fragmentation) = reclaimable(usage, false);
    dead > 0 && (fragmentation >= policy.trigger_fragmentation || dead >= policy.trigger_dead_bytes)
}

/// Whether a merge takes a file: fragmented past the threshold, or small. "Small" is below
/// `small_file_bytes` and below half the data file limit: a file that rotation or a merge filled
/// is never small, or with a limit under `small_file_bytes` (10 MB, say) every file would be,
/// and each merge would rewrite the whole store.
fn chosen(policy: &MergePolicy, data_file_limit: u64, usage: &FileUsage) -> bool {
    let (dead, fragmentation) = reclaimable(usage, true);
    let fragmented = dead > 0
        && (fragmentation >= policy.threshold_fragmentation || dead >= policy.threshold_dead_bytes);
    fragmented || usage.total_bytes < policy.small_file_bytes.min(data_file_limit / 2)
}

/// Takes the merge lock, refusing (and recording why in the merge figures) while a merge that
/// failed after its commit waits for recovery, and while the writer is poisoned: a merge then
/// could not make the active file's records durable before its commit, and would copy every
/// input only to fail there.
fn lock_for_merge(engine: &Engine) -> Result<crate::sync::MutexGuard<'_, MergeState>> {
    // A forked child is refused before it waits for a lock a thread of its parent held.
    engine.origin.check()?;
    let state = engine.merge.lock();
    let refused = match &state.refused_until_reopen {
        Some(reason) => Err(Error::MergeRefused(reason.clone())),
        None => engine
            .check_open()
            .and_then(|()| engine.writer.lock().check_poisoned()),
    };
    refused.inspect_err(|e| engine.merge_counters.record_failure(e))?;
    Ok(state)
}

fn sealed_segments(engine: &Engine, wanted: impl Fn(FileId) -> bool) -> Vec<Arc<Segment>> {
    let guard = crossbeam_epoch::pin();
    let set = engine.files.load(&guard);
    set.segments()
        .iter()
        .filter(|s| s.is_sealed() && wanted(s.id))
        .cloned()
        .collect()
}

fn merge_files(engine: &Engine, state: &mut MergeState, inputs: &[Arc<Segment>]) -> Result<()> {
    if inputs.is_empty() {
        return Ok(());
    }
    let result = run(engine, inputs);
    if let Err(MergeError::AfterCommit(e)) = &result {
        state.refused_until_reopen = Some(format!(
            "an earlier merge failed after its commit point ({e}), and only the next open may \
             finish it"
        ));
    }
    let result = result.map_err(MergeError::into_inner);
    engine.merge_counters.record(&result);
    result.map(drop)
}

enum MergeError {
    BeforeCommit(Error),
    AfterCommit(Error),
}

impl MergeError {
    fn into_inner(self) -> Error {
        match self {
            MergeError::BeforeCommit(e) | MergeError::AfterCommit(e) => e,
        }
    }
}

/// Runs one merge; returns the bytes it reclaimed.
fn run(engine: &Engine, inputs: &[Arc<Segment>]) -> Result<u64, MergeError> {
    let input_ids: Vec<FileId> = inputs.iter().map(|s| s.id).collect();
    let usage = engine.keydir.usage();
    let input_bytes: u64 = input_ids
        .iter()
        .filter_map(|id| usage.get(id))
        .map(|u| u.total_bytes)
        .sum();
    let outputs = copy_live(engine, inputs, &usage).map_err(MergeError::BeforeCommit)?;
    let output_bytes: u64 = outputs.iter().map(|o| o.usage.total_bytes).sum();
    let commit = MergeCommit {
        inputs: input_ids.clone(),
        outputs: outputs.iter().map(|o| o.id).collect(),
    };
    make_newer_records_durable(engine, &commit)?;
    commit_record(engine, &commit)?;
    install(engine, &input_ids, outputs).map_err(MergeError::AfterCommit)?;
    Ok(input_bytes.saturating_sub(output_bytes))
}

/// Step 1, last part: the copy left out every record whose key the keydir pointed at a newer
/// one. That newer record may still be only in the page cache (the active file), and once the
/// inputs are gone a power cut would lose both: an older value, or none, would come back in
/// place of a synced one. So everything appended so far is made durable before the commit (one
/// fsync of the active file, shared with any writer waiting in the group commit).
fn make_newer_records_durable(engine: &Engine, commit: &MergeCommit) -> Result<(), MergeError> {
    if broken(ProtocolBreak::SkipPreCommitSync) {
        return Ok(());
    }
    engine.sync().map_err(|e| {
        remove_outputs(engine.fs(), &engine.layout, &commit.outputs);
        MergeError::BeforeCommit(e)
    })
}

/// Step 2: writes the `MERGE` record. Its rename into place is the commit point: once the
/// rename returned, the record may be durable, so a later failure (of the directory fsync) is
/// after the commit and the outputs must stay for recovery to install.
fn commit_record(engine: &Engine, commit: &MergeCommit) -> Result<(), MergeError> {
    let (fs, layout) = (engine.fs(), &engine.layout);
    let path = layout.commit_path();
    let tmp = io::tmp_path(&path);
    let renamed =
        io::write_synced(fs, &tmp, &commit.encode()).and_then(|_| io::rename(fs, &tmp, &path));
    if let Err(e) = renamed {
        // A rename can fail and still have happened (a network file system that retried it
        // reports the retry's error): if the record may be in place, so is the commit.
        if !matches!(io::exists(fs, &path), Ok(false)) {
            return Err(MergeError::AfterCommit(e));
        }
        remove_outputs(fs, layout, &commit.outputs);
        let _ = io::remove_if_exists(fs, &tmp);
        return Err(MergeError::BeforeCommit(e));
    }
    io::sync_dir(fs, layout.dir()).map_err(MergeError::AfterCommit)
}

/// Steps 3-5: everything after the commit point.
fn install(engine: &Engine, input_ids: &[FileId], outputs: Vec<Finished>) -> Result<()> {
    let layout = &engine.layout;
    let fs = engine.fs();
    let ids: Vec<FileId> = outputs.iter().map(|o| o.id).collect();
    rename_outputs(fs, layout, &ids)?;
    let mut segments = Vec::new();
    for output in &outputs {
        let path = layout.data_path(output.id);
        let file = fs
            .open(&path, OpenMode::Read)
            .context("opening merged file", &path)?;
        let map = file.map(&path)?;
        segments.push(Arc::new(Segment {
            id: output.id,
            path,
            storage: Storage::Sealed(map),
        }));
    }
    // Accounted only once every output could be mapped, and the inputs forgotten as soon as no
    // entry points into them: `stats()` counts what the store is made of even if a step below
    // fails (the next open then finishes the merge).
    for output in &outputs {
        engine.keydir.track_file(output.id, output.usage);
    }
    swap_files(engine, input_ids, &outputs, segments);
    engine.keydir.forget_files(input_ids);
    for &id in input_ids {
        io::remove_if_exists(fs, &layout.data_path(id))?;
        io::remove_if_exists(fs, &layout.hint_path(id))?;
    }
    io::sync_dir(fs, layout.dir())?;
    io::remove_if_exists(fs, &layout.commit_path())?;
    io::sync_dir(fs, layout.dir())
}

/// Step 4 and the first half of 5, in the order readers rely on: publish outputs, repoint the
/// keydir, unpublish inputs. (Under loom, a broken twin may swap one pair of steps.)
fn swap_files(
    engine: &Engine,
    input_ids: &[FileId],
    outputs: &[Finished],
    segments: Vec<Arc<Segment>>,
) {
    let publish_outputs = || engine.files.publish(|set| set.with(segments));
    let repoint = || outputs.iter().for_each(|o| repoint_keydir(engine, o));
    let retire_inputs = || engine.files.publish(|set| set.without(input_ids));
    if broken(ProtocolBreak::PointBeforePublish) {
        repoint();
        publish_outputs();
        retire_inputs();
    } else if broken(ProtocolBreak::RetireBeforeRepoint) {
        publish_outputs();
        retire_inputs();
        repoint();
    } else {
        publish_outputs();
        repoint();
        // No keydir entry points into the inputs any more: readers that still do, retry.
        retire_inputs();
    }
}

/// Points every key whose record `output` copied at the copy, unless a write moved it since.
///
/// Both `expect`s are invariants of this merge: skipping an entry instead would leave its key
/// pointing into an input that is about to be retired. A panic here (a bug) leaves the outputs
/// and the inputs published and the keydir partly repointed, every entry at its record or at
/// that record's copy, so reads stay right; the next open finishes the committed merge.
fn repoint_keydir(engine: &Engine, output: &Finished) {
    let hint = HintFile::decode(&output.hint).expect("merge decodes the hint it built");
    for (entry, source) in hint.entries().zip(&output.sources) {
        let Some(old) = source else {
            continue; // a tombstone: no keydir entry
        };
        // Outputs start records below the data file limit, so the location always exists.
        let new = Location::new(output.id, entry.offset, entry.value_len as usize)
            .expect("a merge output's records start within the addressable offsets");
        engine.keydir.replace_if(entry.key, *old, new);
    }
}

/// Step 1: copies what must survive from `inputs` into synced temporary output files.
fn copy_live(engine: &Engine, inputs: &[Arc<Segment>], usage: &Usage) -> Result<Vec<Finished>> {
    let input_ids: Vec<FileId> = inputs.iter().map(|s| s.id).collect();
    // A tombstone must be kept while any surviving file may hold an older put of its key. (The
    // usage snapshot may miss files the writer created since; their seqs are all newer.)
    let oldest_surviving_seq = usage
        .iter()
        .filter(|(id, _)| !input_ids.contains(id))
        .map(|(_, usage)| usage.min_seq)
        .min()
        .unwrap_or(u64::MAX);
    let mut writer = OutputWriter {
        engine,
        current: None,
        finished: Vec::new(),
        created: Vec::new(),
    };
    let result = copy_inputs(engine, inputs, oldest_surviving_seq, &mut writer);
    let finished = result.and_then(|()| writer.finish());
    if finished.is_err() {
        writer.abandon();
    }
    finished
}

fn copy_inputs(
    engine: &Engine,
    inputs: &[Arc<Segment>],
    oldest_surviving_seq: u64,
    writer: &mut OutputWriter,
) -> Result<()> {
    for segment in inputs {
        let bytes = segment.mapped().unwrap_or_default();
        for (offset, decoded) in record::scan(bytes, HEADER_LEN) {
            if engine.closing.load(Ordering::Relaxed) {
                return Err(Error::Closed);
            }
            let rec = decoded.map_err(|kind| Error::corruption(&segment.path, offset, kind))?;
            let raw = &bytes[offset as usize..][..rec.encoded_len() as usize];
            match rec.kind {
                RecordKind::Put => {
                    let current = engine.keydir.get(rec.key);
                    if current.is_some_and(|loc| loc.file_id == segment.id && loc.start() == offset)
                    {
                        writer.copy(&rec, raw, current)?;
                    }
                }
                RecordKind::Tombstone => {
                    // A live key's newer put shadows every older one (and is made durable before
                    // the commit, see `make_newer_records_durable`).
                    if !engine.keydir.contains(rec.key) && rec.seq > oldest_surviving_seq {
                        writer.copy(&rec, raw, None)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Appends to a file through the file system seam, for `BufWriter`.
struct Appender {
    file: FileHandle,
    offset: u64,
}

impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One output file being written.
struct Output {
    id: FileId,
    file: BufWriter<Appender>,
    len: u64,
    hint: HintBuilder,
    usage: FileUsage,
    /// For each hint entry, in order: where the record was copied from if the keydir pointed
    /// there (`None` for tombstones).
    sources: Vec<Option<Location>>,
}

/// An output file that is complete and synced.
struct Finished {
    id: FileId,
    hint: Vec<u8>,
    usage: FileUsage,
    sources: Vec<Option<Location>>,
}

struct OutputWriter<'a> {
    engine: &'a Engine,
    current: Option<Output>,
    finished: Vec<Finished>,
    /// Every output whose files may exist, from before its data file is created: an output
    /// that fails while it starts or is sealed is neither `current` nor `finished`.
    created: Vec<FileId>,
}

impl OutputWriter<'_> {
    fn copy(&mut self, rec: &Record, raw: &[u8], source: Option<Location>) -> Result<()> {
        let limit = self.engine.config.data_file_limit;
        if let Some(out) = &self.current
            && out.len > HEADER_LEN as u64
            && out.len + raw.len() as u64 > limit
        {
            self.seal_current()?;
        }
        if self.current.is_none() {
            self.current = Some(self.start()?);
        }
        let Some(out) = self.current.as_mut() else {
            unreachable!("an output was just started");
        };
        let path = tmp_data_path(&self.engine.layout, out.id);
        out.file
            .write_all(raw)
            .context("writing merged file", &path)?;
        out.hint.push(&HintEntry::of(rec, out.len));
        out.sources.push(source);
        out.usage.total_bytes += raw.len() as u64;
        if rec.kind == RecordKind::Tombstone {
            out.usage.tombstone_bytes += raw.len() as u64;
        }
        out.usage.saw_seq(rec.seq);
        out.len += raw.len() as u64;
        Ok(())
    }

    fn start(&mut self) -> Result<Output> {
        let id = self.engine.file_ids.take()?;
        self.created.push(id);
        let path = tmp_data_path(&self.engine.layout, id);
        let file = self
            .engine
            .fs()
            .open(&path, OpenMode::CreateTruncate)
            .context("creating merged file", &path)?;
        // Not in 2 MiB-aligned writes, which let the page cache hold huge folios and map the
        // sealed file with huge pages: reads gained nothing measurable in the comparison, and
        // merges on a VM that reports free memory to its host got 30% slower (docs/benchmarks.md,
        // fifth round).
        let mut file = BufWriter::with_capacity(1 << 20, Appender { file, offset: 0 });
        let header = FileHeader::new(FileKind::Merged, id);
        file.write_all(&header.encode())
            .context("writing merged file", &path)?;
        Ok(Output {
            id,
            file,
            len: HEADER_LEN as u64,
            hint: HintBuilder::new(id),
            usage: FileUsage::new(HEADER_LEN as u64),
            sources: Vec::new(),
        })
    }

    /// Flushes and fsyncs the current output and its hint file (unless `Config::hint_files` is
    /// off).
    fn seal_current(&mut self) -> Result<()> {
        let Some(out) = self.current.take() else {
            return Ok(());
        };
        let layout = &self.engine.layout;
        let fs = self.engine.fs();
        let path = tmp_data_path(layout, out.id);
        let appender = out
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .context("flushing merged file", &path)?;
        appender.file.sync().context("syncing merged file", &path)?;
        // Built either way: the swap repoints the keydir from it.
        let hint = out.hint.finish(out.len);
        if self.engine.config.hint_files {
            io::write_synced(fs, &io::tmp_path(&layout.hint_path(out.id)), &hint)?;
        }
        self.finished.push(Finished {
            id: out.id,
            hint,
            usage: out.usage,
            sources: out.sources,
        });
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Finished>> {
        self.seal_current()?;
        io::sync_dir(self.engine.fs(), self.engine.layout.dir())?;
        Ok(std::mem::take(&mut self.finished))
    }

    /// Best-effort removal of everything written so far (recovery removes leftovers anyway).
    fn abandon(&mut self) {
        // The current output's handle is closed before its files are removed.
        self.current = None;
        remove_outputs(self.engine.fs(), &self.engine.layout, &self.created);
    }
}

fn tmp_data_path(layout: &Layout, id: FileId) -> PathBuf {
    io::tmp_path(&layout.data_path(id))
}

fn remove_outputs(fs: &dyn Vfs, layout: &Layout, ids: &[FileId]) {
    for &id in ids {
        let _ = io::remove_if_exists(fs, &tmp_data_path(layout, id));
        let _ = io::remove_if_exists(fs, &io::tmp_path(&layout.hint_path(id)));
    }
}

/// Renames committed outputs into place (skipping any a previous attempt already renamed). An
/// output's data file must exist under one name or the other; its hint file need not (merge
/// wrote it, but someone may have deleted hint files as a cache they could rebuild): open then
/// scans the data file.
fn rename_outputs(fs: &dyn Vfs, layout: &Layout, ids: &[FileId]) -> Result<()> {
    for &id in ids {
        let data = layout.data_path(id);
        if !rename_if_pending(fs, &data)? {
            return Err(Error::corruption(
                data,
                0,
                CorruptionKind::MissingMergeOutput,
            ));
        }
        rename_if_pending(fs, &layout.hint_path(id))?;
    }
    io::sync_dir(fs, layout.dir())
}

/// Renames `path`'s `.tmp` into place if there is one; returns whether `path` exists now.
fn rename_if_pending(fs: &dyn Vfs, path: &Path) -> Result<bool> {
    let tmp = io::tmp_path(path);
    if io::exists(fs, &tmp)? {
        io::rename(fs, &tmp, path)?;
        Ok(true)
    } else {
        io::exists(fs, path)
    }
}

/// Recovery: finishes a merge that crashed after its commit point (steps 3 and 5). Without a
/// `MERGE` record there is nothing to do; leftover `.tmp` files are removed by the caller.
pub(crate) fn finish_interrupted(fs: &dyn Vfs, layout: &Layout) -> Result<()> {
    let path = layout.commit_path();
    let Some(bytes) = io::read_if_exists(fs, &path, "reading merge record")? else {
        return Ok(());
    };
    let commit = MergeCommit::decode(&bytes).map_err(|kind| Error::corruption(&path, 0, kind))?;
    rename_outputs(fs, layout, &commit.outputs)?;
    for &id in &commit.inputs {
        io::remove_if_exists(fs, &layout.data_path(id))?;
        io::remove_if_exists(fs, &layout.hint_path(id))?;
    }
    io::sync_dir(fs, layout.dir())?;
    io::remove_if_exists(fs, &path)?;
    io::sync_dir(fs, layout.dir())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A file that rotation or a merge filled is not "small", however small the limit: with a
    /// 10 MB limit (under the default `small_file_bytes` of 10 MiB), a full file without dead
    /// bytes stays out of a merge, and a file under half the limit goes in.
    #[test]
    fn a_full_file_is_never_small() {
        let policy = MergePolicy::default();
        let unfragmented = |total: u64| FileUsage {
            live_bytes: total - HEADER_LEN as u64,
            ..FileUsage::new(total)
        };
        let limit = 10_000_000;
        assert!(!chosen(&policy, limit, &unfragmented(9_990_000)));
        assert!(chosen(&policy, limit, &unfragmented(4_000_000)));
        let default_limit = crate::options::DEFAULT_DATA_FILE_LIMIT;
        assert!(chosen(&policy, default_limit, &unfragmented(9_990_000)));
        assert!(!chosen(&policy, default_limit, &unfragmented(20_000_000)));
    }
}
