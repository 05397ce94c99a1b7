//! The CLI's error type, the exit codes it maps to, and the one-line messages it prints.

use std::fmt;
use std::path::{Path, PathBuf};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The key asked for is missing, or `check`/`dump` found damage.
pub const EXIT_NOT_FOUND_OR_DAMAGED: u8 = 1;
/// Bad arguments (clap uses the same code for the errors it detects).
pub const EXIT_USAGE: u8 = 2;
/// The store (or a file next to it) could not be opened, read or written.
pub const EXIT_STORE: u8 = 3;
/// `import` was given a stream that is not a valid export stream.
pub const EXIT_BAD_INPUT: u8 = 4;

/// The exit codes as shown at the end of `--help` (kept in sync with `cli/README.md`).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (also: `repair` finished its copy, whatever it had to drop)
  1  not found or damaged: `get`/`delete` of a missing key, `check` found damage,
     `dump` met bytes that do not decode
  2  usage error: bad arguments, a malformed hex key, a key or value over the limits
     (`put`), no store directory given, `export` to a terminal, a `-o`/`-i`/`--out`
     path inside the store
  3  store error: the store or a file could not be opened, read or written (missing
     directory or one that holds no store, store open in another process, I/O error,
     corruption that stops the library from opening it, a file in a newer format,
     `repair` output directory already exists, `repair --in-place` refusing to swap in
     a copy that may lack records or that it could not give the store's owner)
  4  bad input: `import` was given a malformed, truncated or corrupted stream; nothing
     was imported";

/// Everything that makes the tool exit with a non-zero code.
#[derive(Debug)]
pub enum CliError {
    /// The key (already escaped for display) has no live value.
    KeyNotFound(String),
    /// `check` or `dump` found damage; the details were already printed on stdout.
    Damaged(String),
    /// The command line is wrong in a way clap could not see.
    Usage(String),
    /// The library failed while doing `doing`.
    Store {
        /// What the tool was doing, e.g. "opening the store".
        doing: String,
        /// The library's error; its message names the path.
        source: bitcask::Error,
    },
    /// A file-system call outside the library failed.
    Io {
        /// What the tool was doing, e.g. "reading".
        doing: String,
        /// The file or stream involved, ready for display.
        target: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store is open in another process, so its files may change under us; `holder` is the
    /// process id its `LOCK` file records (a library handle records its own).
    Busy { dir: PathBuf, holder: Option<u32> },
    /// A precondition on the file system does not hold (e.g. the output directory exists).
    Refused(String),
    /// The import stream is not valid; nothing was imported.
    BadInput(String),
}

/// `Result` with [`CliError`].
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::KeyNotFound(_) | CliError::Damaged(_) => EXIT_NOT_FOUND_OR_DAMAGED,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Store { .. } | CliError::Io { .. } => EXIT_STORE,
            CliError::Busy { .. } | CliError::Refused(_) => EXIT_STORE,
            CliError::BadInput(_) => EXIT_BAD_INPUT,
        }
    }

    /// Whether this is a write to a closed pipe (`bitcask keys | head`), which is not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// Wraps a library error with what the tool was doing.
    pub fn store(doing: impl Into<String>) -> impl FnOnce(bitcask::Error) -> CliError {
        let doing = doing.into();
        move |source| CliError::Store { doing, source }
    }

    /// Wraps an I/O error with what the tool was doing and the path involved.
    pub fn io(doing: &str, path: &Path) -> impl FnOnce(std::io::Error) -> CliError {
        let doing = doing.to_string();
        let target = path.display().to_string();
        move |source| CliError::Io {
            doing,
            target,
            source,
        }
    }

    /// An I/O error on standard output.
    pub fn stdout(source: std::io::Error) -> CliError {
        CliError::Io {
            doing: "writing to".into(),
            target: "standard output".into(),
            source,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::KeyNotFound(key) => write!(f, "key not found: {key}"),
            CliError::Damaged(msg) | CliError::Usage(msg) => f.write_str(msg),
            CliError::Refused(msg) | CliError::BadInput(msg) => f.write_str(msg),
            CliError::Store { doing, source } => {
                write!(f, "{doing} failed: {source}")?;
                match advice(source) {
                    Some(advice) => write!(f, " ({advice})"),
                    None => Ok(()),
                }
            }
            CliError::Io {
                doing,
                target,
                source,
            } => write!(f, "{doing} {target} failed: {source}"),
            CliError::Busy { dir, holder } => write!(
                f,
                "the store at {} is open in {} (its LOCK file is held); close it first: this \
                 command reads the files directly and needs them to stand still",
                dir.display(),
                match holder {
                    Some(pid) => format!("process {pid}"),
                    None => "another process".to_string(),
                }
            ),
        }
    }
}

/// What to do about a library error whose own message does not already say it.
fn advice(error: &bitcask::Error) -> Option<&'static str> {
    match error {
        bitcask::Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::PermissionDenied => Some("check the permissions of the store"),
            std::io::ErrorKind::StorageFull => Some("free some disk space and retry"),
            _ => Some("check that the path exists and is a readable bitcask store"),
        },
        bitcask::Error::Poisoned(_) => Some("run the command again"),
        _ => None,
    }
}
