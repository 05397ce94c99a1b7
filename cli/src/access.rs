//! Gives `repair`'s copy the original store's permission bits and owner.
//!
//! `repair` may run as another user (root, say) than the program that opens the store, which
//! must still be able to open the copy once `--in-place` swaps it in; and a store kept private
//! must stay private. The copy's directory takes the original directory's bits and owner; its
//! files take those of the original's newest data file (the one the program last wrote, so one
//! it can write), with read and write for the owner kept.
//!
//! The copy's directory is opened once and its files through it, never following a symbolic
//! link (Linux): run as root beside a directory another user can write, a path-based walk could
//! be steered onto files outside the copy.

use std::fs::{File, Metadata};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{CliError, CliResult};

/// What could not be matched.
#[derive(Debug, Default)]
pub struct Access {
    /// Problems with the files: the program that opens the store may not be able to, so
    /// `--in-place` refuses.
    pub blocking: Vec<String>,
    /// Problems with the directory only (its owner: the user who ran `repair` owns it, and may
    /// not give it away); reported, not refused.
    pub notes: Vec<String>,
}

impl Access {
    /// The report's lines about it.
    pub fn report(&self) -> String {
        self.blocking
            .iter()
            .chain(&self.notes)
            .map(|problem| format!("access    {problem}\n"))
            .collect()
    }
}

/// A mode and owner to give.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Wanted {
    fn of(meta: &Metadata, extra_mode: u32) -> Self {
        Wanted {
            mode: (meta.mode() & 0o7777) | extra_mode,
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// Gives the copy at `out` the access of the store at `original`, whose newest data file is
/// `newest_data` (if it has one; files keep theirs otherwise).
pub fn match_original(
    original: &Path,
    newest_data: Option<&Path>,
    out: &Path,
) -> CliResult<Access> {
    let inspect = |path: &Path| std::fs::metadata(path).map_err(CliError::io("inspecting", path));
    let dir_wanted = Wanted::of(&inspect(original)?, 0);
    let file_wanted = match newest_data {
        Some(path) => Some(Wanted::of(&inspect(path)?, 0o600)),
        None => None,
    };
    let mut access = Access::default();
    let dir = open_dir(out).map_err(CliError::io("opening", out))?;
    if let Some(wanted) = file_wanted {
        for (name, file) in files_in(&dir, out).map_err(CliError::io("listing", out))? {
            if let Err(problem) = give(&file, wanted) {
                access
                    .blocking
                    .push(format!("{}: {problem}", out.join(name).display()));
            }
        }
    }
    if let Err(problem) = give(&dir, dir_wanted) {
        access.notes.push(format!("{}: {problem}", out.display()));
    }
    Ok(access)
}

/// Gives `file` the wanted mode and owner, and syncs that; what went wrong, if anything.
fn give(file: &File, wanted: Wanted) -> Result<(), String> {
    let meta = file
        .metadata()
        .map_err(|e| format!("inspecting it failed: {e}"))?;
    if meta.mode() & 0o7777 != wanted.mode {
        let mode = std::fs::Permissions::from_mode(wanted.mode);
        file.set_permissions(mode)
            .map_err(|e| format!("giving it mode {:o} failed: {e}", wanted.mode))?;
    }
    if (meta.uid(), meta.gid()) != (wanted.uid, wanted.gid) {
        std::os::unix::fs::fchown(file, Some(wanted.uid), Some(wanted.gid)).map_err(|e| {
            format!(
                "giving it the store's owner {}:{} failed ({e}); run repair as that user or \
                 as root",
                wanted.uid, wanted.gid
            )
        })?;
    }
    file.sync_all()
        .map_err(|e| format!("syncing its mode and owner failed: {e}"))
}

/// Opens the directory `dir` itself, not a symbolic link's target.
#[cfg(target_os = "linux")]
fn open_dir(dir: &Path) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::open(dir, flags, Mode::empty())?))
}

/// The regular files in the directory `dir`, each opened through it, without following a
/// symbolic link or waiting on a FIFO.
#[cfg(target_os = "linux")]
fn files_in(dir: &File, _path: &Path) -> std::io::Result<Vec<(std::ffi::OsString, File)>> {
    use std::os::unix::ffi::OsStrExt;

    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut files = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
            continue; // a symbolic link (ELOOP), or gone: not a file of the copy's
        };
        let file = File::from(fd);
        if file.metadata()?.is_file() {
            let name = std::ffi::OsStr::from_bytes(name.to_bytes()).to_os_string();
            files.push((name, file));
        }
    }
    Ok(files)
}

/// Elsewhere by path, skipping symbolic links (a link swapped in between the check and the open
/// is still followed there).
#[cfg(not(target_os = "linux"))]
fn open_dir(dir: &Path) -> std::io::Result<File> {
    if std::fs::symlink_metadata(dir)?.file_type().is_symlink() {
        return Err(std::io::Error::other("a symbolic link"));
    }
    File::open(dir)
}

#[cfg(not(target_os = "linux"))]
fn files_in(_dir: &File, path: &Path) -> std::io::Result<Vec<(std::ffi::OsString, File)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push((entry.file_name(), File::open(entry.path())?));
        }
    }
    Ok(files)
}
