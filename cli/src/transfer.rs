//! `export` and `import`: every live pair to or from an export stream (format in
//! [`crate::stream`]).
//!
//! Import validates the whole stream (magic, every length, the end record's count and CRC) before
//! it opens the store; standard input (or a pipe given with `-i`) is validated as it is copied to
//! an unlinked temporary file, so input that is not an export is refused at its first bad byte
//! instead of being copied whole. So a malformed, truncated or corrupted stream changes nothing.
//! Only then are the pairs written, followed by one sync. (A regular file is read twice, validated
//! and then imported: one that another process changes in between can have pairs written before the
//! end record's checksum refutes them, an error.) If writing fails midway (disk full, I/O error),
//! the pairs written so far stay: each is a complete record, so the store opens and reads as usual,
//! and running the same import again finishes the job (puts overwrite).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bitcask::Database;

use crate::error::{CliError, CliResult};
use crate::files;
use crate::output::{counted, quoted, write_stdout};
use crate::progress::Progress;
use crate::sorted_keys::SortedKeys;
use crate::store;
use crate::stream::{StreamError, StreamReader, StreamWriter};

/// Exports every live pair of `dir`, in key order, to `output` (stdout when `None`, `-` or a
/// name of stdout such as `/dev/stdout`). Refuses to write the binary stream to a terminal.
pub fn export(dir: &Path, output: Option<&Path>, quiet: bool) -> CliResult {
    // Names of stdout itself are written through the inherited descriptor, as the shell set it
    // up (appending after `>>`, say), not opened again at offset 0 or replaced.
    let output = output.filter(|p| !STDOUT_NAMES.iter().any(|name| *p == Path::new(name)));
    let to_stdout = output.is_none();
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "the export stream is binary and stdout is a terminal; redirect it or use -o FILE"
                .into(),
        ));
    }
    if let Some(path) = output {
        files::refuse_inside_store("-o", path, dir)?;
    }
    let db = store::open_existing(dir)?;
    let keys = SortedKeys::new(db.keys());
    let progress = Progress::items(keys.len() as u64, "exporting", quiet);
    let written = match output {
        None => export_to_stdout(&db, &keys, &progress).map(|_| None),
        Some(path) => export_to_file(&db, &keys, path, &progress).map(Some),
    };
    progress.finish();
    if let Some((count, to_file)) = written? {
        let path = output.unwrap_or(Path::new("-"));
        let line = format!(
            "exported {} to {}\n",
            counted(count, "pair"),
            path.display()
        );
        // Streamed into something that may be stdout itself (a FIFO, `/proc/PID/fd/1`): the
        // summary goes to stderr, where it cannot end up inside the stream. After a file was
        // written, a summary that cannot be printed (stdout closed) does not fail the export.
        if to_file {
            let _ = write_stdout(line.as_bytes());
        } else {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
    store::close(&db)
}

fn export_to_stdout(db: &Database, keys: &SortedKeys, progress: &Progress) -> CliResult<u64> {
    let stdout = BufWriter::new(std::io::stdout().lock());
    let (mut stdout, count) = write_stream(db, keys, stdout, "standard output", progress)?;
    stdout.flush().map_err(CliError::stdout)?;
    Ok(count)
}

/// `-o` values that name the standard output itself.
const STDOUT_NAMES: [&str; 4] = ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];

/// Where `export -o PATH` writes, decided before anything is written.
enum ExportTarget {
    /// A regular file (new or existing, reached through any symlinks), replaced as a whole.
    Replace(PathBuf),
    /// Something else (a pipe, a FIFO, a device): streamed into as it is.
    Stream,
}

/// Decided by what `path` is, through its symlinks: a regular file (`/dev/shm/x` too) is
/// replaced, a missing path is created (a dangling symlink is replaced by the file), anything
/// else is streamed into. (Names of stdout itself never get here: see `STDOUT_NAMES`.)
fn export_target(path: &Path) -> CliResult<ExportTarget> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => std::fs::canonicalize(path)
            .map(ExportTarget::Replace)
            .map_err(CliError::io("resolving", path)),
        Ok(_) => Ok(ExportTarget::Stream),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(ExportTarget::Replace(path.to_path_buf()))
        }
        Err(e) => Err(CliError::io("inspecting", path)(e)),
    }
}

/// Writes the stream to `path` (see [`export_target`]). A file is written under a new temporary
/// name beside it (created exclusively, with the old file's permissions), fsynced and renamed
/// into place, so a failure midway leaves any previous file as it was; the rest is streamed
/// into. Returns the number of pairs and whether the output went to a file.
fn export_to_file(
    db: &Database,
    keys: &SortedKeys,
    path: &Path,
    progress: &Progress,
) -> CliResult<(u64, bool)> {
    let label = path.display().to_string();
    let target = match export_target(path)? {
        ExportTarget::Stream => {
            let sink = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(CliError::io("opening", path))?;
            let (mut sink, count) = write_stream(db, keys, BufWriter::new(sink), &label, progress)?;
            sink.flush().map_err(CliError::io("writing", path))?;
            return Ok((count, false));
        }
        ExportTarget::Replace(target) => target,
    };
    let partial = partial_file(&target)?;
    let count = write_synced(db, keys, &partial, &label, progress)?;
    // On an error before this point, dropping `partial` deletes it.
    partial
        .persist(&target)
        .map_err(|e| CliError::io("renaming into place", e.file.path())(e.error))?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty());
    files::sync_dir(parent.unwrap_or(Path::new(".")))?;
    Ok((count, true))
}

/// A new, empty file beside `target`, named `.NAME.RANDOM.partial`: created exclusively (never
/// through a symlink or into another export's file), with `target`'s permissions if it exists
/// (else the usual ones, as the umask allows).
fn partial_file(target: &Path) -> CliResult<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty());
    let permissions = std::fs::metadata(target)
        .map(|old| old.permissions())
        .unwrap_or_else(|_| std::fs::Permissions::from_mode(0o666));
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .permissions(permissions.clone())
        .tempfile_in(parent.unwrap_or(Path::new(".")))
        .map_err(CliError::io("creating a file beside", target))?;
    if permissions.mode() != 0o666 {
        // The umask may have cleared bits of the old file's mode at creation.
        partial
            .as_file()
            .set_permissions(permissions)
            .map_err(CliError::io("setting the permissions of", partial.path()))?;
    }
    Ok(partial)
}

/// Writes the stream into `partial` and fsyncs it.
fn write_synced(
    db: &Database,
    keys: &SortedKeys,
    partial: &tempfile::NamedTempFile,
    label: &str,
    progress: &Progress,
) -> CliResult<u64> {
    let path = partial.path();
    let (file, count) = write_stream(db, keys, BufWriter::new(partial.as_file()), label, progress)?;
    file.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(CliError::io("writing", path))?;
    Ok(count)
}

/// Writes the stream of `keys` to `sink`; returns the sink and the number of pairs written.
fn write_stream<W: Write>(
    db: &Database,
    keys: &SortedKeys,
    sink: W,
    label: &str,
    progress: &Progress,
) -> CliResult<(W, u64)> {
    let io_error = |source| CliError::Io {
        doing: "writing the export stream to".into(),
        target: label.to_string(),
        source,
    };
    let mut writer = StreamWriter::new(sink).map_err(io_error)?;
    let mut count = 0;
    for key in keys.iter() {
        let value = db.get(key).map_err(|e| {
            let doing = format!("reading the value of key {}", quoted(key));
            CliError::store(doing)(e)
        })?;
        if let Some(value) = value {
            writer.pair(key, &value).map_err(io_error)?;
            count += 1;
        }
        progress.inc(1);
    }
    Ok((writer.finish().map_err(io_error)?, count))
}

/// Imports the stream from `input` (stdin when `None` or `-`) into `dir`, creating the store if
/// needed; see the module docs for what a failure leaves behind.
pub fn import(dir: &Path, input: Option<&Path>, quiet: bool) -> CliResult {
    let (mut file, label, count) = match input.filter(|p| *p != Path::new("-")) {
        None => {
            let label = "standard input".to_string();
            let (file, count) = spool_validated(std::io::stdin().lock(), &label, quiet)?;
            (file, label, count)
        }
        Some(path) => {
            files::refuse_inside_store("-i", path, dir)?;
            let label = path.display().to_string();
            let file = File::open(path).map_err(CliError::io("opening", path))?;
            let regular = file.metadata().is_ok_and(|meta| meta.is_file());
            // A pipe (`-i <(cmd)`) cannot be read twice: spooled like standard input.
            let (file, count) = if regular {
                let count = validate(&file, &label, quiet)?;
                (file, count)
            } else {
                spool_validated(file, &label, quiet)?
            };
            (file, label, count)
        }
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|source| stream_io(&label, source))?;
    let db = store::open_or_create(dir)?;
    let progress = Progress::items(count, "importing", quiet);
    let mut reader = StreamReader::new(BufReader::new(&file)).map_err(|e| bad_stream(&label, e))?;
    while let Some((key, value)) = reader.next_pair().map_err(|e| bad_stream(&label, e))? {
        db.write(key, value)
            .map_err(CliError::store("writing an imported pair"))?;
        progress.inc(1);
    }
    db.sync().map_err(CliError::store("syncing the store"))?;
    progress.finish();
    store::close(&db)?;
    let line = format!(
        "imported {} into {}\n",
        counted(count, "pair"),
        dir.display()
    );
    write_stdout(line.as_bytes())
}

/// Copies a stream that cannot be read twice (stdin, a pipe) into an unlinked temporary file
/// (in `$TMPDIR`) so that it can, validating it on the way: a stream that is not an export is
/// refused at its first bad byte, not once all of it was copied. Returns the copy and the
/// number of pairs.
fn spool_validated(input: impl Read, label: &str, quiet: bool) -> CliResult<(File, u64)> {
    let spinner = Progress::spinner(format!("reading the stream from {label}"), quiet);
    let temp_dir = std::env::temp_dir();
    let spool_error = |source| CliError::Io {
        doing: format!("spooling {label} to a temporary file in"),
        target: temp_dir.display().to_string(),
        source,
    };
    let spool = tempfile::tempfile().map_err(spool_error)?;
    let mut tee = Tee {
        input,
        copy: BufWriter::with_capacity(64 << 10, spool),
        copy_failed: None,
    };
    let counted = count_pairs(BufReader::with_capacity(64 << 10, &mut tee), label, |_| {});
    if let Some(source) = tee.copy_failed.take() {
        return Err(spool_error(source));
    }
    let count = counted?;
    let spool = tee
        .copy
        .into_inner()
        .map_err(|e| spool_error(e.into_error()))?;
    spinner.finish();
    Ok((spool, count))
}

/// Reads `input`, and writes everything it reads to `copy`. A failed write is kept in
/// `copy_failed` (and fails the read), so that it is reported as the copy's failure.
struct Tee<R, W> {
    input: R,
    copy: W,
    copy_failed: Option<std::io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = loop {
            match self.input.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => break read?,
            }
        };
        if let Err(e) = self.copy.write_all(&buf[..read]) {
            let failed = std::io::Error::new(e.kind(), "writing the copy failed");
            self.copy_failed = Some(e);
            return Err(failed);
        }
        Ok(read)
    }
}

/// Reads the whole of a regular file's stream once, storing nothing; returns the number of
/// pairs.
fn validate(file: &File, label: &str, quiet: bool) -> CliResult<u64> {
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = Progress::bytes(total, "validating", quiet);
    let mut source = BufReader::new(file);
    source
        .seek(SeekFrom::Start(0))
        .map_err(|e| stream_io(label, e))?;
    let count = count_pairs(source, label, |offset| progress.set_position(offset))?;
    progress.finish();
    Ok(count)
}

/// Reads a whole stream, storing nothing, and returns its number of pairs; `progress` is told
/// the offset reached after each pair.
fn count_pairs(source: impl Read, label: &str, mut progress: impl FnMut(u64)) -> CliResult<u64> {
    let rejected = |e| match bad_stream(label, e) {
        CliError::BadInput(msg) => CliError::BadInput(format!("{msg}; nothing was imported")),
        other => other,
    };
    let mut reader = StreamReader::new(source).map_err(rejected)?;
    let mut count = 0;
    while reader.next_pair().map_err(rejected)?.is_some() {
        count += 1;
        progress(reader.offset());
    }
    Ok(count)
}

fn stream_io(label: &str, source: std::io::Error) -> CliError {
    CliError::Io {
        doing: "reading the import stream from".into(),
        target: label.to_string(),
        source,
    }
}

fn bad_stream(label: &str, error: StreamError) -> CliError {
    match error {
        StreamError::Io(source) => stream_io(label, source),
        StreamError::Invalid { offset, problem } => CliError::BadInput(format!(
            "{label} is not a valid bitcask export stream: at byte {offset}, {problem}"
        )),
    }
}
