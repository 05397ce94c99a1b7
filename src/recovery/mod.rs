//! Opening a store: resolve and lock the directory, finish or undo an interrupted merge, delete
//! the engine's leftover temporary files, act on a failed fsync's record ([`fsync_failure`]),
//! load every data file (from its hint file when a valid one exists, else by scanning), cut a
//! torn tail off the newest writer file, and rebuild the keydir so that the newest seq wins
//! whatever the file order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::background::Signal;
use crate::engine::Engine;
use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::fileset::{FileSet, Files};
use crate::fork::Origin;
use crate::format::DecodeResult;
use crate::format::FileId;
use crate::format::header::{FileHeader, FileKind, HEADER_LEN};
use crate::format::hint::{HintFile, min_hint_entry_len};
use crate::format::record::{self, RecordKind};
use crate::format::seq_ranges::find_seq_gap;
use crate::group_commit::GroupCommit;
use crate::io::layout::{FileIds, Layout};
use crate::io::lock::DirLock;
use crate::io::mmap::Mapping;
use crate::io::vfs::{EntryKind, FileHandle, OpenMode, Vfs};
use crate::keydir::{FileUsage, Keydir, LiveDeltas, Location};
use crate::options::Config;
use crate::segment::{Segment, Storage};
use crate::sync::{Arc, AtomicBool, Mutex};
use crate::writer::Writer;
use crate::{io, merge};

pub(crate) mod fsync_failure;
mod hints;
mod order;
mod sharded;

use order::{Bytes, RecordOrder, Stamped};
use sharded::ShardedLoad;

/// A data file found on disk, its header checked.
pub(super) struct FoundFile {
    id: FileId,
    path: PathBuf,
    kind: FileKind,
    file: FileHandle,
    len: u64,
}

/// What loading the files learned beyond the keydir itself.
#[derive(Default)]
pub(super) struct Loaded {
    /// Newest tombstone per key; applied after every put is known.
    tombstones: HashMap<Vec<u8>, Stamped>,
    max_seq: u64,
    /// Live bytes and keys per file, as entries were linked and unlinked.
    live: LiveDeltas,
}

impl Loaded {
    /// Adds what another loader of the same store learned.
    fn absorb(&mut self, other: Loaded) {
        self.max_seq = self.max_seq.max(other.max_seq);
        self.live.absorb(&other.live);
        for (key, tombstone) in other.tombstones {
            note_tombstone(&mut self.tombstones, key, tombstone);
        }
    }
}

/// Opens the store described by `config`.
pub(crate) fn open(mut config: Config) -> Result<Engine> {
    config.validate()?;
    // Absolute, so that a later change of the working directory cannot send new files elsewhere.
    config.dir = std::path::absolute(&config.dir).context("resolving", &config.dir)?;
    crate::fileset::start_retiring();
    let fs = &*config.fs;
    prepare_dir(fs, &config.dir)?;
    // Resolved once: a symbolic link to the directory that is later pointed elsewhere must not
    // send this handle's new files (or merge's deletions) into a directory it has not locked.
    config.dir = fs
        .canonical(&config.dir)
        .context("resolving the store directory", &config.dir)?;
    // Rotation and merge create files in the directory: a store that could not would open,
    // take writes into its newest file, and fail only when that file filled up.
    fs.check_writable(&config.dir)
        .context("checking that files can be created in", &config.dir)?;
    let layout = Layout::new(config.dir.clone());
    let dir_lock = DirLock::acquire(fs, layout.dir(), &layout.lock_path())?;
    refuse_newer_formats(fs, &layout)?;
    refuse_shared_files(fs, &layout)?;
    merge::finish_interrupted(fs, &layout)?;
    let listing = layout.list(fs)?;
    for tmp in &listing.tmps {
        io::remove_if_exists(fs, tmp)?;
    }
    fsync_failure::apply(fs, &layout)?;
    // A previous handle may have created a file whose directory fsync then failed; whatever
    // is adopted below must have a durable name before anything is acknowledged into it.
    io::sync_dir(fs, layout.dir())?;
    // Headers first, one file open at a time (a store may hold more files than the process
    // may open; sealed files need no descriptor once mapped).
    let kinds = listing
        .data
        .iter()
        .map(|&id| open_data_file(fs, &layout, id, OpenMode::Read).map(|file| (id, file.kind)))
        .collect::<Result<Vec<_>>>()?;
    let file_ids = FileIds::after(listing.data.iter().chain(&listing.hints).max().copied());
    // Only the newest file the writer appended to can end in a torn record.
    let tail_id = kinds
        .iter()
        .filter(|(_, kind)| *kind == FileKind::Data)
        .map(|(id, _)| *id)
        .max();

    let mut hints = CheckedHints::map(fs, &layout, &listing.hints);
    let keydir = Keydir::with_capacity(hints.keys);
    let mut loaded = Loaded::default();
    let mut order = RecordOrder::default();
    let mut segments = Vec::new();
    let mut reusable_tail = None;
    for &(id, _) in &kinds {
        // Only the tail is written (cut, synced, appended to); sealed files may be read-only.
        let mode = if Some(id) == tail_id {
            OpenMode::ReadWrite
        } else {
            OpenMode::Read
        };
        let file = open_data_file(fs, &layout, id, mode)?;
        if Some(id) == tail_id {
            let tail = recover_tail(fs, &layout, file, &keydir, &mut order, &mut loaded)?;
            // An empty tail is reused whatever the limit: with a limit no longer than a file
            // header, every open would otherwise leave one more empty file behind.
            if tail.len < config.data_file_limit || tail.len <= HEADER_LEN as u64 {
                reusable_tail = Some(tail);
                continue;
            }
            segments.push(seal(tail)?);
        } else {
            let hint = hints.maps.remove(&id);
            let sealed = recover_sealed(file, hint, &keydir, &mut order, &mut loaded)?;
            segments.push(sealed);
        }
    }
    refuse_cut_writer_files(&layout, &listing.data, &order, &keydir)?;
    for (key, tombstone) in &loaded.tombstones {
        let removes = |present: &Location| order.is_newer(key, *tombstone, present);
        keydir.recover_tombstone(key, removes, &mut loaded.live);
    }
    keydir.set_live(&loaded.live);

    let active = match reusable_tail {
        Some(tail) => tail,
        None => create_active(fs, &layout, &file_ids, &keydir)?,
    };
    let writer = Writer::new(
        active.file,
        active.id,
        active.len,
        config.data_file_limit,
        loaded.max_seq + 1,
    );
    let engine = Engine {
        layout,
        config,
        keydir,
        files: Files::new(FileSet::default()),
        writer: Mutex::new(writer),
        // Every record found is durable: sealed files were synced before they were sealed, and
        // the tail was synced above.
        commits: GroupCommit::durable_up_to(loaded.max_seq, active.id, active.len),
        file_ids,
        closing: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        merge: Mutex::new(merge::MergeState::default()),
        merge_counters: merge::MergeCounters::default(),
        background: Signal::default(),
        dir_lock: Mutex::new(Some(dir_lock)),
        origin: Origin::here(),
    };
    segments.push(engine.writer.lock().segment(&engine));
    engine.files.publish(|_| FileSet::new(segments));
    Ok(engine)
}

/// Refuses a store with a sealed writer file that lost records from its end
/// ([`crate::format::seq_ranges`]): open would otherwise serve the older values of the keys
/// those records wrote, and bring back the keys they removed.
fn refuse_cut_writer_files(
    layout: &Layout,
    data_files: &BTreeSet<FileId>,
    order: &RecordOrder,
    keydir: &Keydir,
) -> Result<()> {
    let writers = order.writer_files();
    let Some(gap) = find_seq_gap(&writers, |id| data_files.contains(&id)) else {
        return Ok(());
    };
    let end = keydir
        .usage()
        .get(&gap.earlier)
        .map_or(0, |u| u.total_bytes);
    Err(Error::corruption(
        layout.data_path(gap.earlier),
        end,
        CorruptionKind::RecordsMissingAtEnd {
            last: gap.last,
            later: gap.later,
            first: gap.first,
        },
    ))
}

/// The hint files whose checksum matches, mapped, and roughly how many keys they describe, so
/// the keydir is sized once instead of growing step by step. A count is taken only where the
/// checksum matches (a damaged one could ask for a table many times too large before the hint
/// was found damaged and ignored), and capped by what the file's size can hold. Only an
/// estimate: the entries are validated when they are loaded, without checksumming again.
struct CheckedHints {
    keys: usize,
    maps: BTreeMap<FileId, Mapping>,
}

impl CheckedHints {
    fn map(fs: &dyn Vfs, layout: &Layout, hints: &BTreeSet<FileId>) -> Self {
        // Mapped: hint files are written once, renamed into place and never changed, only
        // deleted. One missing or unreadable is as good as absent.
        let checked = |id: FileId| -> Option<(FileId, u64, Mapping)> {
            let path = layout.hint_path(id);
            let bytes = fs.open(&path, OpenMode::Read).ok()?.map(&path).ok()?;
            let shortest_entry = min_hint_entry_len(FileHeader::decode(&bytes).ok()?.version);
            let count = HintFile::checked_entry_count(&bytes).ok()?;
            Some((
                id,
                count.min(bytes.len() as u64 / shortest_entry as u64),
                bytes,
            ))
        };
        let mut keys = 0u64;
        let mut maps = BTreeMap::new();
        for (id, count, bytes) in hints.iter().filter_map(|&id| checked(id)) {
            keys = keys.saturating_add(count);
            maps.insert(id, bytes);
        }
        CheckedHints {
            keys: usize::try_from(keys).unwrap_or(usize::MAX),
            maps,
        }
    }
}

fn prepare_dir(fs: &dyn Vfs, dir: &Path) -> Result<()> {
    let entry = fs
        .entry(dir)
        .map_err(|e| match file_among_ancestors(fs, dir) {
            // `base_dir` lies under a file (`file/store`): name the file.
            Some(file) if e.kind() == std::io::ErrorKind::NotADirectory => {
                Error::NotADirectory(file)
            }
            _ => Error::Io {
                context: "inspecting store directory",
                path: dir.to_path_buf(),
                source: e,
            },
        })?;
    match entry {
        Some(EntryKind::Dir) => Ok(()),
        Some(EntryKind::File) => Err(Error::NotADirectory(dir.to_path_buf())),
        None => {
            // Each directory created gets its name in its parent: all of them are made durable,
            // outermost first.
            let mut created = Vec::new();
            for ancestor in dir.ancestors() {
                if fs
                    .entry(ancestor)
                    .context("inspecting", ancestor)?
                    .is_some()
                {
                    break;
                }
                created.push(ancestor);
            }
            fs.create_dir_all(dir)
                .context("creating store directory", dir)?;
            for new_dir in created.iter().rev() {
                if let Some(parent) = new_dir.parent() {
                    io::sync_dir(fs, parent)?;
                }
            }
            Ok(())
        }
    }
}

/// The first of `dir`'s ancestors that is a file, if one is.
fn file_among_ancestors(fs: &dyn Vfs, dir: &Path) -> Option<PathBuf> {
    let mut ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    ancestors.reverse();
    ancestors
        .into_iter()
        .find(|ancestor| matches!(fs.entry(ancestor), Ok(Some(EntryKind::File))))
        .map(Path::to_path_buf)
}

/// Fails with [`Error::UnsupportedFormat`] if a data file's header, or a merge output's not
/// yet renamed into place, names a format version this build does not read, before open
/// finishes a merge or deletes temporary files: a store a newer build wrote is left as it was.
/// (The header's layout up to its checksum is the same in every version; `docs/format.md`.)
/// Other damage to a header, and a file that cannot be read, are reported later, as before.
fn refuse_newer_formats(fs: &dyn Vfs, layout: &Layout) -> Result<()> {
    let listing = layout.list(fs)?;
    let data = listing.data.iter().map(|&id| layout.data_path(id));
    let merge_outputs = listing
        .tmps
        .iter()
        .filter(|path| path.to_string_lossy().ends_with(".data.tmp"))
        .cloned();
    for path in data.chain(merge_outputs) {
        if let Some(Err(CorruptionKind::UnsupportedVersion(version))) = peek_header(fs, &path) {
            return Err(Error::UnsupportedFormat { path, version });
        }
    }
    Ok(())
}

/// The decoded header of the file at `path`, or `None` if it cannot be opened or read (the
/// checks that open it for good report that).
fn peek_header(fs: &dyn Vfs, path: &Path) -> Option<Result<FileHeader, CorruptionKind>> {
    let file = fs.open(path, OpenMode::Read).ok()?;
    let mut header = [0; HEADER_LEN];
    file.read_at(&mut header, 0).ok()?;
    Some(FileHeader::decode(&header))
}

/// Fails with [`Error::SharedFile`] if the newest data file the writer appended to is a
/// symbolic link or has other hard links (a store copied with `cp -s` or `cp -al`, say), before
/// open changes anything: open appends to that file and may cut its tail, which would change
/// the other copy too. Sealed files are never written, so they may be shared (hard-linked into
/// a backup, say). A file whose header cannot be read is left to the checks that follow.
fn refuse_shared_files(fs: &dyn Vfs, layout: &Layout) -> Result<()> {
    let listing = layout.list(fs)?;
    for &id in listing.data.iter().rev() {
        let path = layout.data_path(id);
        match peek_header(fs, &path) {
            Some(Ok(header)) if header.kind == FileKind::Merged => continue,
            Some(Ok(_)) => {}
            _ => return Ok(()),
        }
        return match fs.shared(&path).context("inspecting", &path)? {
            Some(how) => Err(Error::SharedFile { path, how }),
            None => Ok(()),
        };
    }
    Ok(())
}

fn open_data_file(fs: &dyn Vfs, layout: &Layout, id: FileId, mode: OpenMode) -> Result<FoundFile> {
    let path = layout.data_path(id);
    let file = fs.open(&path, mode).context("opening data file", &path)?;
    let len = file.len().context("inspecting", &path)?;
    let mut header = [0; HEADER_LEN];
    let header = match file.read_at(&mut header, 0) {
        Ok(()) => FileHeader::decode(&header),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(CorruptionKind::Truncated),
        Err(e) => return Err(e).context("reading the header of", &path),
    }
    .map_err(|kind| Error::corruption(&path, 0, kind))?;
    if header.file_id != id || header.kind == FileKind::Hint {
        return Err(Error::corruption(&path, 0, CorruptionKind::WrongFile));
    }
    Ok(FoundFile {
        id,
        path,
        kind: header.kind,
        file,
        len,
    })
}

/// Loads a sealed file from `hint` (its hint file, checksum matched) if it is a valid index of
/// the file, else by scanning; a record that fails validation is corruption (sealed files were
/// synced before they were sealed).
fn recover_sealed(
    file: FoundFile,
    hint: Option<Mapping>,
    keydir: &Keydir,
    order: &mut RecordOrder,
    loaded: &mut Loaded,
) -> Result<Arc<Segment>> {
    let segment = Arc::new(Segment {
        id: file.id,
        path: file.path.clone(),
        storage: Storage::Sealed(file.file.map(&file.path)?),
    });
    order.loading(file.id, file.kind, Bytes::Mapped(segment.clone()));
    let mut usage = FileUsage::new(file.len);
    let target = Target { keydir, order };
    if !hints::load(hint.as_deref(), &file, target, loaded, &mut usage) {
        let bytes = segment.mapped().unwrap_or_default();
        let mut load = ShardedLoad::new(target);
        for (offset, decoded) in record::scan(bytes, HEADER_LEN) {
            let found = decoded.and_then(|rec| Found::at(file.id, offset, rec));
            let found = found.map_err(|kind| Error::corruption(&file.path, offset, kind))?;
            load.push(found, loaded, &mut usage);
        }
        load.finish(loaded, &mut usage);
    }
    order.loaded(file.id, &usage);
    keydir.track_file(file.id, usage);
    Ok(segment)
}

/// Scans the newest writer file, cutting off everything from its first invalid record on (a
/// write the crash interrupted). The file is not mapped while it is truncated.
///
/// A torn append leaves nothing valid behind it. If valid records do follow the damage (media
/// damage, or out-of-order write-back of unsynced pages before a power cut), they were never
/// reached by the scan, so the cut bytes are first saved beside the file as
/// `NNNNNNNNNN.data.cut-OFFSET` (or `….cut-OFFSET-N`, [`saved_tail_path`]) for a person to
/// salvage (`bitcask check` and `dump` show them).
fn recover_tail(
    fs: &dyn Vfs,
    layout: &Layout,
    file: FoundFile,
    keydir: &Keydir,
    order: &mut RecordOrder,
    loaded: &mut Loaded,
) -> Result<FoundFile> {
    let mut usage = FileUsage::new(0);
    let mut valid_end = file.len;
    order.loading(file.id, file.kind, Bytes::File(file.file.clone()));
    // The map is dropped before the file is cut (`docs/design.md`, memory maps, invariant 3).
    let saved = {
        let map = file.file.map(&file.path)?;
        let mut load = ShardedLoad::new(Target { keydir, order });
        for (offset, decoded) in record::scan(&map, HEADER_LEN) {
            match decoded {
                // Not a torn write: a valid record the index cannot address is kept on disk.
                Ok(rec) => match Found::at(file.id, offset, rec) {
                    Ok(found) => load.push(found, loaded, &mut usage),
                    Err(kind) => return Err(Error::corruption(&file.path, offset, kind)),
                },
                Err(_) => valid_end = offset,
            }
        }
        load.finish(loaded, &mut usage);
        // Saved straight from the map (the tail may be gigabytes: no copy on the heap).
        let tail = &map[valid_end as usize..];
        let save = record::may_hold_records(tail);
        if save {
            let saved = saved_tail_path(fs, &file.path, valid_end)?;
            io::write_synced(fs, &saved, tail)?;
        }
        save
    };
    if saved {
        io::sync_dir(fs, layout.dir())?;
    }
    if valid_end < file.len {
        file.file
            .set_len(valid_end)
            .context("cutting the torn tail off", &file.path)?;
    }
    // What the previous process appended may still be only in the page cache; from here on
    // everything found on open counts as durable.
    fsync_failure::sync_tail(fs, layout, &file.file, file.id, &file.path)?;
    usage.total_bytes = valid_end;
    order.loaded(file.id, &usage);
    keydir.track_file(file.id, usage);
    Ok(FoundFile {
        len: valid_end,
        ..file
    })
}

/// A name for the tail cut off `data_path` at `offset` that no file has yet:
/// `NNNNNNNNNN.data.cut-OFFSET`, or with `-2`, `-3`, … appended when an earlier open cut the
/// same file at the same offset (its saved tail must not be overwritten). Built on the path's
/// bytes, which need not be UTF-8.
fn saved_tail_path(fs: &dyn Vfs, data_path: &Path, offset: u64) -> Result<PathBuf> {
    let named = |suffix: String| {
        let mut name = data_path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let first = named(format!(".cut-{offset}"));
    let later = (2u64..).map(|n| named(format!(".cut-{offset}-{n}")));
    for candidate in std::iter::once(first).chain(later) {
        if !io::exists(fs, &candidate)? {
            return Ok(candidate);
        }
    }
    unreachable!("the names run out after u64::MAX files")
}

fn seal(file: FoundFile) -> Result<Arc<Segment>> {
    let map = file.file.map(&file.path)?;
    Ok(Arc::new(Segment {
        id: file.id,
        path: file.path,
        storage: Storage::Sealed(map),
    }))
}

fn create_active(
    fs: &dyn Vfs,
    layout: &Layout,
    ids: &FileIds,
    keydir: &Keydir,
) -> Result<FoundFile> {
    let id = ids.take()?;
    let path = layout.data_path(id);
    let header = FileHeader::new(FileKind::Data, id);
    let file = io::create_data_file(fs, layout.dir(), &path, &header.encode())?;
    keydir.track_file(id, FileUsage::new(HEADER_LEN as u64));
    Ok(FoundFile {
        id,
        path,
        kind: FileKind::Data,
        file,
        len: HEADER_LEN as u64,
    })
}

/// A record found while loading, with where it is.
#[derive(Clone, Copy)]
pub(super) struct Found<'a> {
    kind: RecordKind,
    key: &'a [u8],
    at: Stamped,
}

impl<'a> Found<'a> {
    /// `rec`, found at `offset` of `file_id`, unless it starts further than the keydir
    /// addresses.
    fn at(file_id: FileId, offset: u64, rec: record::Record<'a>) -> DecodeResult<Self> {
        let loc = Location::new(file_id, offset, rec.value.len())
            .ok_or(CorruptionKind::OffsetTooLarge)?;
        Ok(Found {
            kind: rec.kind,
            key: rec.key,
            at: Stamped { seq: rec.seq, loc },
        })
    }
}

/// Where loaded records go, and how to tell which of two is newer.
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    keydir: &'a Keydir,
    order: &'a RecordOrder,
}

impl Target<'_> {
    /// Folds one record into the keydir under newest-seq-wins.
    fn apply(&self, loaded: &mut Loaded, usage: &mut FileUsage, found: Found) {
        let Stamped { seq, loc } = found.at;
        loaded.max_seq = loaded.max_seq.max(seq);
        usage.saw_seq(seq);
        match found.kind {
            RecordKind::Put => {
                let replaces =
                    |present: &Location| self.order.is_newer(found.key, found.at, present);
                self.keydir
                    .recover_put(found.key, loc, replaces, &mut loaded.live);
            }
            RecordKind::Tombstone => {
                usage.tombstone_bytes += loc.record_len(found.key.len());
                note_tombstone(&mut loaded.tombstones, found.key.to_vec(), found.at);
            }
        }
    }
}

/// Keeps `tombstone` as the key's newest tombstone if it is newer than the one known.
fn note_tombstone(tombstones: &mut HashMap<Vec<u8>, Stamped>, key: Vec<u8>, tombstone: Stamped) {
    tombstones
        .entry(key)
        .and_modify(|known| {
            if tombstone.seq > known.seq {
                *known = tombstone;
            }
        })
        .or_insert(tombstone);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::format::hint::{HINT_TRAILER_LEN, HintBuilder, HintEntry};
    use crate::io::vfs::StdFs;

    /// A hint file of data file 1 with three entries, as merge writes it.
    fn three_entry_hint() -> Vec<u8> {
        let mut hint = HintBuilder::new(1);
        let mut offset = HEADER_LEN as u64;
        for key in [b"a", b"b", b"c"] {
            let entry = HintEntry {
                seq: offset,
                kind: RecordKind::Put,
                key,
                value_len: 8,
                offset,
            };
            hint.push(&entry);
            offset = entry.record_end().unwrap();
        }
        hint.finish(offset)
    }

    #[test]
    fn the_keydir_is_sized_from_hint_counts_only_where_the_checksum_matches() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().to_path_buf());
        let hints = BTreeSet::from([1]);
        let mut hint = three_entry_hint();
        std::fs::write(layout.hint_path(1), &hint).unwrap();
        let checked = CheckedHints::map(&StdFs, &layout, &hints);
        assert_eq!((checked.keys, checked.maps.len()), (3, 1));
        // The count's top byte damaged: it would ask for 2^56 keys (or all the file could hold).
        let count_top = hint.len() - HINT_TRAILER_LEN + 7;
        hint[count_top] = 1;
        std::fs::write(layout.hint_path(1), &hint).unwrap();
        let checked = CheckedHints::map(&StdFs, &layout, &hints);
        assert_eq!(
            (checked.keys, checked.maps.len()),
            (0, 0),
            "a damaged hint is not kept"
        );
    }
}
