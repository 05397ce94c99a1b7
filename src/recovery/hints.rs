//! Loading a sealed data file's keys from its hint file: validate the whole hint before applying
//! any of it (its checksum was checked when open mapped it, `CheckedHints`; one pass decodes
//! every entry, checks it against the data file and notes where the parts start), then apply
//! its entries on every core, shard by shard (`sharded`), in two passes:
//!
//! 1. Decode each part and copy its entries into one buffer per keydir shard, by the shard their
//!    key falls in (threads take parts).
//! 2. Insert shard by shard (threads take shards), reading each buffer front to back. Reading
//!    the hint itself shard by shard instead moved the cache misses to the hint.

use std::ops::Range;

use smallvec::SmallVec;

use super::order::Stamped;
use super::sharded::in_parallel;
use super::{Found, FoundFile, Loaded, Target};
use crate::format::FileId;
use crate::format::hint::{EntryFit, EntryStart, HintEntry, HintFile};
use crate::format::record::RecordKind;
use crate::keydir::{FileUsage, Keydir, Location};

/// Entries per part: enough that handing a part to another thread pays for itself.
const PART_ENTRIES: usize = 1 << 16;

/// Rounds the shards are loaded in: the decoded copies of one round's entries are in memory at
/// once, 56 B per entry. Measured at 1M keys (`benches/profile.rs`): 1 round ~100 ms and
/// 202 MB peak RSS, 2 rounds ~115 ms and 173 MB, 4 rounds ~130 ms and 158 MB.
const ROUNDS: usize = 2;

/// Applies `hint`, `file`'s hint file (whose checksum matched, `CheckedHints`), if it is a
/// valid index of the file; returns false (having applied nothing) if there is none or it is
/// stale or damaged, so the caller scans the data file instead.
pub(super) fn load(
    hint: Option<&[u8]>,
    file: &FoundFile,
    target: Target,
    loaded: &mut Loaded,
    usage: &mut FileUsage,
) -> bool {
    let Some(bytes) = hint else {
        return false;
    };
    let mut fit = Fit::new(file.len);
    let decoded = HintFile::decode_checked_with(bytes, |start, entry| fit.check(start, entry));
    let Ok(hint) = decoded else {
        return false;
    };
    if hint.file_id != file.id || hint.data_len != file.len {
        return false;
    }
    let Some(parts) = fit.parts() else {
        return false;
    };
    apply_parts(&hint, &parts, file.id, target, loaded, usage);
    true
}

/// A run of a hint's entries: from the start of one entry up to the start of a later one, or
/// to the end of the hint.
type Part = (EntryStart, Option<EntryStart>);

/// Checks the entries against the data file as open requires ([`EntryFit`]), and splits them
/// into parts of [`PART_ENTRIES`].
struct Fit {
    rule: EntryFit,
    entries: usize,
    starts: Vec<EntryStart>,
}

impl Fit {
    fn new(file_len: u64) -> Self {
        Fit {
            rule: EntryFit::new(file_len),
            entries: 0,
            starts: Vec::new(),
        }
    }

    fn check(&mut self, start: EntryStart, entry: &HintEntry) {
        self.rule.check(entry);
        if self.entries.is_multiple_of(PART_ENTRIES) {
            self.starts.push(start);
        }
        self.entries += 1;
    }

    /// The parts, if every entry fits.
    fn parts(self) -> Option<Vec<Part>> {
        if !self.rule.fits() {
            return None;
        }
        let ends = self.starts.iter().skip(1).copied().map(Some).chain([None]);
        Some(self.starts.iter().copied().zip(ends).collect())
    }
}

/// A decoded hint entry waiting in its shard's buffer (the key copied: inline when short).
struct Pending {
    key: SmallVec<[u8; 16]>,
    kind: RecordKind,
    at: Stamped,
}

/// One part's entries, by keydir shard.
type Grouped = Vec<Vec<Pending>>;

/// Applies the entries [`ROUNDS`] groups of shards at a time, so that only one group's decoded
/// copies are in memory at once; each round decodes the whole hint again.
fn apply_parts(
    hint: &HintFile,
    parts: &[Part],
    file_id: FileId,
    target: Target,
    loaded: &mut Loaded,
    usage: &mut FileUsage,
) {
    let keydir = target.keydir;
    let shards = keydir.shard_count();
    let per_round = shards.div_ceil(ROUNDS);
    for first in (0..shards).step_by(per_round) {
        let round = first..shards.min(first + per_round);
        let grouped = group_parts(hint, parts, round.clone(), file_id, keydir);
        let found = in_parallel(round.len(), |shard, (loaded, usage)| {
            for by_shard in &grouped {
                for entry in &by_shard[shard] {
                    let found = Found {
                        kind: entry.kind,
                        key: &entry.key,
                        at: entry.at,
                    };
                    target.apply(loaded, usage, found);
                }
            }
        });
        for (found, seen) in found {
            loaded.absorb(found);
            usage.absorb(&seen);
        }
    }
}

/// Each part's entries that fall in `shards`, by shard (in no particular order of parts: the
/// order entries are applied in does not matter).
fn group_parts(
    hint: &HintFile,
    parts: &[Part],
    shards: Range<usize>,
    file_id: FileId,
    keydir: &Keydir,
) -> Vec<Grouped> {
    in_parallel(parts.len(), |part, done: &mut Vec<_>| {
        let (start, end) = parts[part];
        let entries = hint.part(start, end);
        done.push(group_by_shard(&entries, shards.clone(), file_id, keydir));
    })
    .into_iter()
    .flatten()
    .collect()
}

/// The entries whose key falls in one of `shards`, indexed from the first of them.
fn group_by_shard(
    entries: &HintFile,
    shards: Range<usize>,
    file_id: FileId,
    keydir: &Keydir,
) -> Grouped {
    let expected = PART_ENTRIES / keydir.shard_count() * 5 / 4;
    let mut grouped: Grouped = shards
        .clone()
        .map(|_| Vec::with_capacity(expected))
        .collect();
    for entry in entries.entries() {
        let shard = keydir.shard_of(entry.key);
        if !shards.contains(&shard) {
            continue;
        }
        // `Fit::check` checked that every offset fits a location.
        let Some(loc) = Location::new(file_id, entry.offset, entry.value_len as usize) else {
            continue;
        };
        grouped[shard - shards.start].push(Pending {
            key: SmallVec::from_slice(entry.key),
            kind: entry.kind,
            at: Stamped {
                seq: entry.seq,
                loc,
            },
        });
    }
    grouped
}
