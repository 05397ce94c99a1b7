//! Opening a store through the library, with the checks and messages the commands share.

use std::path::Path;

use bitcask::{Config, Database};

use crate::error::{CliError, CliResult};
use crate::files::StoreFiles;

/// Fails unless `dir` exists and is a directory, so that reading commands never create a store
/// in a mistyped path (the library creates missing directories on open).
fn require_dir(dir: &Path) -> CliResult {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(CliError::Refused(format!(
            "{} is not a directory; --dir must name a store directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::Refused(format!(
            "no store at {}: the directory does not exist (check --dir or BITCASK_DIR)",
            dir.display()
        ))),
        Err(e) => Err(CliError::io("inspecting", dir)(e)),
    }
}

/// Fails unless `dir` is a directory that holds a store: a data file, or a merge record. A
/// mistyped `--dir` (the store's parent, say, or a home directory) is refused before anything
/// locks, creates or changes a file in it.
pub fn require_store(dir: &Path) -> CliResult {
    require_dir(dir)?;
    let found = StoreFiles::list(dir)?;
    if found.data.is_empty() && found.merge_record.is_none() {
        return Err(CliError::Refused(format!(
            "{} holds no data files, so it is not a bitcask store (check --dir or BITCASK_DIR)",
            dir.display()
        )));
    }
    Ok(())
}

/// Opens the store in `dir`, which must exist and hold a store, without the background merge
/// thread: a command that reads should not start rewriting the store while it runs.
pub fn open_existing(dir: &Path) -> CliResult<Database> {
    require_store(dir)?;
    open_with(Config::new(dir).background_merge(false))
}

/// Opens the store in `dir`, creating the directory and an empty store if missing.
pub fn open_or_create(dir: &Path) -> CliResult<Database> {
    open_with(Config::new(dir))
}

/// Opens the store `config` names, with its settings.
pub fn open_with(config: Config) -> CliResult<Database> {
    config.open().map_err(CliError::store("opening the store"))
}

/// Closes `db`, which syncs every write made through it.
pub fn close(db: &Database) -> CliResult {
    db.close().map_err(CliError::store("closing the store"))
}
