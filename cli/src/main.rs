//! `bitcask`: the command-line tool to inspect, verify, repair and script a bitcask store.
//!
//! This file holds the argument definitions and the dispatch; each command lives in its own
//! module. `cli/README.md` shows a session with every command, the export stream format and the
//! exit codes.

mod access;
mod check;
mod dump;
mod error;
mod files;
mod kv;
mod merge;
mod output;
mod progress;
mod repair;
mod salvage;
mod sorted_keys;
mod stats;
mod store;
mod stream;
mod transfer;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{CliError, CliResult, EXIT_CODES_HELP, EXIT_OK};

const LONG_ABOUT: &str = "\
Inspect, verify, repair and script a bitcask store.

Every command works on the store directory given with --dir DIR or the BITCASK_DIR
environment variable. Only put and import create a store; every other command (but dump,
which reads one file) refuses a directory that does not exist or holds no data files, and
changes nothing in it.

Keys: a KEY argument is taken byte for byte, except that a 0x prefix (or --hex) makes it hex,
so `0x00ff` is the two bytes 00 ff. A literal key that starts with \"0x\" must therefore be
given in hex. Printed keys are escaped when they are not plain UTF-8 (\\xNN for bytes that are
not UTF-8, \\n, \\t, \\\\ ...); with --hex they are printed as 0x-prefixed hex.

Progress bars are drawn on stderr only when it is a terminal; --quiet turns them off.";

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "bitcask",
    version,
    about = "Inspect, verify, repair and script a bitcask store",
    long_about = LONG_ABOUT,
    after_help = "Run `bitcask --help` for the key syntax and the exit codes.",
    after_long_help = EXIT_CODES_HELP
)]
struct Cli {
    /// The store directory.
    #[arg(
        long,
        short = 'd',
        global = true,
        env = "BITCASK_DIR",
        value_name = "DIR"
    )]
    dir: Option<PathBuf>,

    /// Draw no progress bars or spinners.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,

    /// Read keys on the command line as hex and print keys as 0x-prefixed hex.
    #[arg(long, global = true)]
    hex: bool,

    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Store VALUE under KEY (VALUE `-` reads the value from stdin).
    Put {
        /// The key.
        key: OsString,
        /// The value, or `-` to read it from stdin.
        value: OsString,
    },
    /// Print the value of KEY to stdout, as raw bytes (exit code 1 if missing).
    Get {
        /// The key.
        key: OsString,
    },
    /// Remove KEY (exit code 1 if it was not there).
    #[command(alias = "rm")]
    Delete {
        /// The key.
        key: OsString,
    },
    /// List the live keys in byte order, one per line.
    Keys {
        /// Only keys starting with this prefix (hex with 0x or --hex).
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<OsString>,
    },
    /// Show key count and live/dead bytes, overall and per data file.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite the live records into fresh files, reclaiming dead bytes.
    Merge {
        /// Write no hint files beside the merged files (`Config::hint_files(false)`): less disk,
        /// and opening reads the merged records instead.
        #[arg(long)]
        no_hints: bool,
    },
    /// Verify every record's checksum and every hint file without opening the store.
    ///
    /// Reads the files directly (so it works on a store that fails to open) and changes
    /// nothing. Refuses a store that another process has open. Prints one line per problem
    /// with the file and offset, and exits with code 1 if anything is damaged; a torn tail
    /// of the newest data file (an interrupted write that the next open cuts off) is only a
    /// warning.
    Check,
    /// Print the records of one data file, hint file, saved tail, MERGE or FSYNC_FAILED record,
    /// for debugging.
    ///
    /// FILE is used as given if it exists, else relative to --dir. Exits with code 1 if the
    /// file holds bytes that do not decode.
    Dump {
        /// The file to dump.
        file: PathBuf,
    },
    /// Write every live pair to a binary-safe stream (stdout by default).
    Export {
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read pairs from an export stream (stdin by default) into the store.
    ///
    /// The whole stream is validated before anything is written, so a bad stream (exit code 4)
    /// leaves the store unchanged (unless a file given with -i changes between the check and
    /// the copy: see cli/README.md).
    Import {
        /// Read from this file instead of stdin.
        #[arg(long, short = 'i', value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Copy every valid record of a damaged store into a new store beside it.
    ///
    /// The copy goes to DIR.repaired (or --out). The report lists what was dropped. With
    /// --in-place, once the copy is complete and synced, the original is renamed to
    /// `DIR.damaged-<unix seconds>` and the copy takes its place; the original is never deleted.
    Repair {
        /// Where to write the repaired store (must not exist, or be empty).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Replace the original with the repaired copy once the copy is complete.
        #[arg(long)]
        in_place: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        // `keys | head` is not a failure; an export whose reader went away (to stdout, or to
        // `-o /dev/stdout` or a FIFO) is cut short. (An export to a regular file is complete
        // before its summary line is printed.) Commands with a verdict return it in preference
        // to a broken pipe.
        Err(e) if e.is_broken_pipe() && !is_export(&cli.command) => ExitCode::from(EXIT_OK),
        Err(e) => {
            // Not `eprintln!`, which panics when stderr cannot be written (`2>/dev/full`).
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("bitcask: {e}\n").as_bytes(),
            );
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: &Cli) -> CliResult {
    let (hex, quiet) = (cli.hex, cli.quiet);
    match &cli.command {
        Command::Put { key, value } => kv::put(dir(cli)?, key, value, hex),
        Command::Get { key } => kv::get(dir(cli)?, key, hex),
        Command::Delete { key } => kv::delete(dir(cli)?, key, hex),
        Command::Keys { prefix } => kv::keys(dir(cli)?, prefix.as_deref(), hex),
        Command::Stats { json } => stats::run(dir(cli)?, *json),
        Command::Merge { no_hints } => merge::run(dir(cli)?, !*no_hints, quiet),
        Command::Check => check::run(dir(cli)?, quiet),
        Command::Dump { file } => dump::run(file, cli.dir.as_deref(), hex),
        Command::Export { output } => transfer::export(dir(cli)?, output.as_deref(), quiet),
        Command::Import { input } => transfer::import(dir(cli)?, input.as_deref(), quiet),
        Command::Repair { out, in_place } => {
            repair::run(dir(cli)?, out.as_deref(), *in_place, hex, quiet)
        }
    }
}

fn is_export(command: &Command) -> bool {
    matches!(command, Command::Export { .. })
}

/// The store directory, which every command but `dump` needs.
fn dir(cli: &Cli) -> CliResult<&Path> {
    cli.dir.as_deref().ok_or_else(|| {
        CliError::Usage("no store directory: pass --dir DIR or set BITCASK_DIR".into())
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }
}
