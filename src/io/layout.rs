//! The one place that knows the names of the files in a store directory.
//!
//! `NNNNNNNNNN.data` (data file, id zero-padded to 10 digits), `NNNNNNNNNN.hint` (its hint file),
//! `LOCK` (the directory lock), `MERGE` (a merge's commit record, present only between a merge's
//! commit point and the end of its cleanup), `FSYNC_FAILED` (a failed fsync of the active file,
//! present from the failure until the next open has written the file again) and `*.tmp` (files not
//! yet renamed into place: `NNNNNNNNNN.data.tmp`, `NNNNNNNNNN.hint.tmp`, `MERGE.tmp` and
//! `FSYNC_FAILED.tmp`; other `*.tmp` names are not the engine's).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::FileId;
use crate::io::vfs::Vfs;
use crate::sync::{AtomicU64, Ordering};

const DATA_EXT: &str = "data";
const HINT_EXT: &str = "hint";
const TMP_EXT: &str = "tmp";

/// The file names of one store directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    dir: PathBuf,
}

/// Hands out data file ids, each once and in increasing order, from one past the largest id
/// found in the directory; rotation and merge both take ids from it. Past the largest id a
/// file name can hold (`u32::MAX`) it refuses, so an open handle never reuses an id (a reopen
/// may give a new file the id of one a merge deleted).
#[derive(Debug)]
pub(crate) struct FileIds {
    next: AtomicU64,
}

impl FileIds {
    /// Ids after `largest` (from 1 in an empty directory).
    pub(crate) fn after(largest: Option<FileId>) -> Self {
        FileIds {
            next: AtomicU64::new(largest.map_or(1, |id| u64::from(id) + 1)),
        }
    }

    /// A new id, or [`Error::FileIdsExhausted`].
    pub(crate) fn take(&self) -> Result<FileId> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        FileId::try_from(id).map_err(|_| Error::FileIdsExhausted)
    }
}

/// What a directory listing found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub data: BTreeSet<FileId>,
    pub hints: BTreeSet<FileId>,
    pub tmps: Vec<PathBuf>,
}

impl Layout {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Layout { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn data_path(&self, id: FileId) -> PathBuf {
        self.dir.join(format!("{id:010}.{DATA_EXT}"))
    }

    pub(crate) fn hint_path(&self, id: FileId) -> PathBuf {
        self.dir.join(format!("{id:010}.{HINT_EXT}"))
    }

    pub(crate) fn lock_path(&self) -> PathBuf {
        self.dir.join("LOCK")
    }

    pub(crate) fn commit_path(&self) -> PathBuf {
        self.dir.join("MERGE")
    }

    /// Where a failed fsync of the active file is written down for the next open.
    pub(crate) fn fsync_failure_path(&self) -> PathBuf {
        self.dir.join("FSYNC_FAILED")
    }

    /// Lists the engine's files; names it does not know are left alone.
    pub(crate) fn list(&self, fs: &dyn Vfs) -> Result<Listing> {
        let mut listing = Listing::default();
        for path in fs.list(&self.dir).context("listing", &self.dir)? {
            let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else {
                continue;
            };
            if ext == TMP_EXT {
                if stem.to_str().is_some_and(is_engine_tmp) {
                    listing.tmps.push(path.clone());
                }
                continue;
            }
            let Some(id) = stem.to_str().and_then(parse_id) else {
                continue;
            };
            if ext == DATA_EXT {
                listing.data.insert(id);
            } else if ext == HINT_EXT {
                listing.hints.insert(id);
            }
        }
        Ok(listing)
    }
}

/// Whether `stem` + `.tmp` is a name the engine writes a file under before renaming it:
/// `NNNNNNNNNN.data`, `NNNNNNNNNN.hint`, `MERGE` or `FSYNC_FAILED`. Other `*.tmp` files are not
/// the engine's leftovers, and open leaves them alone.
fn is_engine_tmp(stem: &str) -> bool {
    match stem.split_once('.') {
        Some((id, ext)) => parse_id(id).is_some() && (ext == DATA_EXT || ext == HINT_EXT),
        None => stem == "MERGE" || stem == "FSYNC_FAILED",
    }
}

fn parse_id(stem: &str) -> Option<FileId> {
    if stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}
