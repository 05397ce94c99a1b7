//! The crate's one error type, and the corruption kinds that decoders report.
//!
//! Decoders in `format/` return a bare [`CorruptionKind`]; the caller that knows the file and the
//! offset wraps it into [`Error::Corruption`].

use std::path::PathBuf;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// The name the original README's API table gives results; kept so code written against that
/// table compiles unchanged.
pub type ErrorResult<T> = Result<T>;

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `read` found no live value for the key.
    #[error("key not found")]
    KeyNotFound,

    /// The key is longer than [`crate::MAX_KEY_LEN`].
    #[error("key is {len} bytes, more than the limit of {max} bytes")]
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The value is longer than [`crate::MAX_VALUE_LEN`].
    #[error("value is {len} bytes, more than the limit of {max} bytes")]
    ValueTooLarge {
        /// Length of the rejected value.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// An operating-system I/O call failed.
    #[error("I/O error while {context} {}: {source}", path.display())]
    Io {
        /// What the engine was doing.
        context: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk failed validation. Nothing from them is returned as data.
    #[error(
        "corrupt data in {} at offset {offset}: {kind}; {}",
        path.display(),
        kind.advice()
    )]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record or header.
        offset: u64,
        /// What failed to validate.
        kind: CorruptionKind,
    },

    /// A data file's header (or an uncommitted merge output's) names a format version this
    /// build does not read, normally because a newer build wrote it. Open changed nothing. (`Corruption` says the same of a hint file's or a
    /// record's bytes; a data file's version decides whether the store can be opened at all.)
    #[error(
        "{} is in format version {version}, which this build does not read (it reads versions \
         {oldest} to {newest}); open the store with the bitcask that wrote it. Nothing was \
         changed; do not `repair` it with this build, which keeps only what it can read",
        path.display(),
        oldest = crate::format::header::OLDEST_READABLE_VERSION,
        newest = crate::format::header::FORMAT_VERSION
    )]
    UnsupportedFormat {
        /// The data file.
        path: PathBuf,
        /// The version its header names.
        version: u16,
    },

    /// Another handle, in this or another process, holds the directory's lock.
    #[error(
        "the store at {} is already open {holder}; close that handle first",
        path.display()
    )]
    Locked {
        /// The store's directory.
        path: PathBuf,
        /// Who holds it, as far as its `LOCK` file tells.
        holder: LockHolder,
    },

    /// `base_dir` exists and is not a directory, or lies under a file (this names the file).
    #[error("{} exists and is not a directory; a store needs a directory of its own", .0.display())]
    NotADirectory(PathBuf),

    /// The newest data file the writer appended to is a symbolic link or one of several hard
    /// links (a store copied with `cp -s` or `cp -al`, say): open appends to it and may cut its
    /// tail, which would change the other copy too, so it refuses before changing anything.
    /// (Sealed files are never written and may be shared.)
    #[error(
        "{} is {how}; open appends to the store's newest data file and may cut its tail, \
         which would change the other copy too, so it must be the store's own. Replace it with \
         a copy of its own (e.g. `cp --remove-destination`), then open again; nothing was \
         changed",
        path.display()
    )]
    SharedFile {
        /// The data file.
        path: PathBuf,
        /// How it is shared.
        how: Sharing,
    },

    /// The handle was closed with [`crate::Database::close`].
    #[error("the database handle is closed")]
    Closed,

    /// An earlier write or fsync failed (or panicked), so the writer can no longer promise what
    /// is on disk. Reads keep working, and so does [`crate::Database::sync`] unless an fsync
    /// failed or a group-commit fsync round panicked; reopen the store to write again.
    #[error("the store refuses writes after an earlier failure ({0}); reopen it to write again")]
    Poisoned(String),

    /// Merges are refused until the store is reopened, for the reason given: a merge failed
    /// after its commit point, and only recovery may finish it, or the background merge thread
    /// panicked. Reads and writes keep working.
    #[error("merges are refused until the store is reopened: {0}; reads and writes still work")]
    MergeRefused(String),

    /// The store has used every sequence number (2^64 - 2 records): it can be read, not
    /// written. Copy its live pairs into a new store (`bitcask export` / `import`).
    #[error(
        "the store has used all 2^64 - 2 sequence numbers; it stays readable, but writing needs a \
         new store (copy the live pairs over, e.g. with `bitcask export` and `import`)"
    )]
    SequenceExhausted,

    /// Every data file id up to `u32::MAX` is taken, so no new data file can be created. New
    /// files take ids above the largest number among the directory's `*.data` and `*.hint`
    /// names, so a stray file with a large number is the likely cause.
    #[error(
        "no data file id is left: new files take ids above the largest number among the \
         directory's *.data and *.hint names, and ids end at 4294967295 (u32::MAX); look for a \
         stray file with a number that large and remove it"
    )]
    FileIdsExhausted,

    /// A handle was used in a child process created by `fork` after the store was opened: the
    /// child shares the parent's lock, files and maps, and a write or a close there would break
    /// the parent's store. Every call that returns a `Result` refuses with this in a forked child
    /// (after checking a key's and value's size), `keys()` and `stats()` are empty there and
    /// `needs_merge()` is false; dropping the handle there is harmless. (A child made
    /// without `fork`'s atfork handlers, by a raw `clone` or glibc's `_Fork`, is refused only by
    /// `close`; drop, `stats()` and `needs_merge()` leave the parent's store alone there too.)
    #[error(
        "this handle was opened by process {opened_by}, and this is a child it forked: a child \
         must not use or close its parent's handle"
    )]
    ForkedChild {
        /// The process that opened the store.
        opened_by: u32,
    },

    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// How a data file is shared with another name, as [`Error::SharedFile`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sharing {
    /// The name is a symbolic link.
    SymbolicLink,
    /// The file has this many hard links (more than one).
    HardLinks(u64),
}

impl std::fmt::Display for Sharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sharing::SymbolicLink => write!(f, "a symbolic link"),
            Sharing::HardLinks(count) => write!(f, "one of {count} hard links to one file"),
        }
    }
}

/// Who holds a store's lock, as [`Error::Locked`] reports it. A holder records its process id
/// and host in the `LOCK` file while it holds the lock; another process is named only if the
/// note was written on this host, in this pid namespace, and that process is alive (Linux;
/// elsewhere another process is always [`LockHolder::Unknown`]). See also
/// [`crate::recorded_lock_holder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockHolder {
    /// Another handle in this process (close it, or share it: a handle serves many threads).
    ThisProcess,
    /// The live process with this id.
    Process(u32),
    /// Someone the `LOCK` file does not name: the `bitcask` CLI, a handle still writing its
    /// note, a process on another host or in another pid namespace (a container), a file
    /// system that would not take the note, or a note left by a holder that crashed (unless
    /// its process id now belongs to another live process, which is then named wrongly).
    Unknown,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockHolder::ThisProcess => write!(f, "in this process (another handle holds it)"),
            LockHolder::Process(pid) => {
                write!(f, "in process {pid} (the id its LOCK file records)")
            }
            LockHolder::Unknown => write!(f, "(its LOCK file is held by this or another process)"),
        }
    }
}

/// What exactly failed to validate in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The stored checksum does not match the bytes.
    #[error("checksum mismatch (stored {expected:#010x}, computed {actual:#010x})")]
    ChecksumMismatch {
        /// Checksum stored in the file.
        expected: u32,
        /// Checksum computed over the bytes read.
        actual: u32,
    },
    /// The bytes end inside a header or record.
    #[error("the data ends inside a record or header")]
    Truncated,
    /// The file does not start with this engine's magic bytes.
    #[error("not a bitcask file (bad magic bytes)")]
    BadMagic,
    /// The file was written in a format version this build does not read.
    #[error(
        "format version {0}, which this build does not read (it reads versions {oldest} to \
         {newest})",
        oldest = crate::format::header::OLDEST_READABLE_VERSION,
        newest = crate::format::header::FORMAT_VERSION
    )]
    UnsupportedVersion(u16),
    /// A length field exceeds what the format allows.
    #[error("length field out of range")]
    BadLength,
    /// A variable-length integer is longer than 10 bytes, overflows 64 bits, or is not in its
    /// shortest form.
    #[error("malformed variable-length integer")]
    BadVarint,
    /// A field holds a value this version does not know (flags, file kind).
    #[error("unknown field value {0:#x}")]
    UnknownValue(u64),
    /// The file's header names another file id or kind than its file name says.
    #[error("file header does not match the file name")]
    WrongFile,
    /// A record's key differs from the key the keydir expected at that location.
    #[error("record holds a different key than the index expects")]
    KeyMismatch,
    /// The keydir points into a data file that is not open (it should have been repointed by
    /// the merge that retired the file); a bug rather than damage on disk.
    #[error("the index points into a data file that is not open")]
    MissingFile,
    /// A record starts 4 GiB or more into its data file, further than the index can address
    /// (no version of this engine writes such a file; see `MAX_DATA_FILE_LIMIT`).
    #[error("a record starts 4 GiB or more into its file, beyond what the index addresses")]
    OffsetTooLarge,
    /// A committed merge's record (`MERGE`) names an output data file that exists neither under
    /// its name nor as its `.tmp`: it was deleted outside the engine.
    #[error("a committed merge names this output data file, but it is missing")]
    MissingMergeOutput,
    /// A sealed writer file lost records from its end: the next writer file does not start at
    /// the seq after its last one ([`crate::format::seq_ranges`]); it was cut short at a record
    /// boundary, by a partial copy say.
    #[error(
        "records are missing from the end of this sealed file: {}, but the next writer file \
         ({later:010}.data) starts at seq {first}",
        last_record(last)
    )]
    RecordsMissingAtEnd {
        /// The file's last seq, if it holds any record.
        last: Option<u64>,
        /// The next writer file's id.
        later: u32,
        /// That file's first seq.
        first: u64,
    },
}

/// How [`CorruptionKind::RecordsMissingAtEnd`] describes the end of the file it names.
fn last_record(last: &Option<u64>) -> String {
    match last {
        Some(last) => format!("its last record has seq {last}"),
        None => "it holds no records".to_string(),
    }
}

impl CorruptionKind {
    /// What to do about it, for [`Error::Corruption`]'s message.
    fn advice(&self) -> &'static str {
        match self {
            CorruptionKind::MissingFile => {
                "this is a bug in bitcask, not damage on disk (please report it); reopening the \
                 store rebuilds the index from the files"
            }
            _ => {
                "the file was damaged or truncated outside the engine (run `bitcask check` / \
                 `repair`, or restore from a backup)"
            }
        }
    }
}

/// Attaches what the engine was doing and the path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn context(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            context,
            path: path.into(),
            source,
        })
    }
}

impl Error {
    pub(crate) fn corruption(path: impl Into<PathBuf>, offset: u64, kind: CorruptionKind) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Damage on disk points to `check` and `repair`; a missing file in the index is a bug that
    /// no repair of the files would help.
    #[test]
    fn corruption_advice_fits_its_cause() {
        let message = |kind| Error::corruption("/store/1.data", 20, kind).to_string();
        let missing = message(CorruptionKind::MissingFile);
        assert!(
            missing.contains("a bug") && !missing.contains("repair"),
            "{missing}"
        );
        let damaged = message(CorruptionKind::Truncated);
        assert!(
            damaged.contains("repair") && !damaged.contains("bug"),
            "{damaged}"
        );
    }
}
