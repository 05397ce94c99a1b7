//! `merge`: rewrites the live records into fresh files and drops the dead ones, with a spinner
//! (the library's merge reports no progress of its own) and a before/after summary.

use std::path::Path;

use bitcask::{Config, Stats};

use crate::error::{CliError, CliResult};
use crate::output::{counted, human_bytes, write_stdout};
use crate::progress::Progress;
use crate::store;

/// Merges the store in `dir`, writing hint files or not, and prints what it reclaimed.
pub fn run(dir: &Path, hint_files: bool, quiet: bool) -> CliResult {
    store::require_store(dir)?;
    let db = store::open_with(Config::new(dir).hint_files(hint_files))?;
    let before = db.stats();
    let spinner = Progress::spinner(
        format!(
            "merging {} ({})",
            counted(before.num_data_files, "data file"),
            human_bytes(before.total_bytes)
        ),
        quiet,
    );
    let merged = db.merge().map_err(CliError::store("merging"));
    spinner.finish();
    merged?;
    let after = db.stats();
    store::close(&db)?;
    write_stdout(format!("{}\n", summary(&before, &after)).as_bytes())
}

fn summary(before: &Stats, after: &Stats) -> String {
    format!(
        "merged: {}, {} -> {}, {} ({} reclaimed); {}",
        counted(before.num_data_files, "data file"),
        human_bytes(before.total_bytes),
        counted(after.num_data_files, "data file"),
        human_bytes(after.total_bytes),
        human_bytes(before.total_bytes.saturating_sub(after.total_bytes)),
        counted(after.num_keys, "live key")
    )
}
