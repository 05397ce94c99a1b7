//! The exclusive directory lock: one open handle per store, across threads and processes.
//!
//! The real file system's lock (`io::vfs`) also writes the holder's process id and host into
//! the `LOCK` file ([`holder_note`]) and empties it again before it unlocks, so that a refused
//! open can say who holds the store. The note is a courtesy for the error message, never
//! trusted for exclusion: the flock alone decides.

use std::path::Path;

use crate::error::{Error, IoContext, LockHolder, Result};
use crate::io::vfs::{LockGuard, Vfs};

/// Holds the `LOCK` file's exclusive lock (flock on the real file system) until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _guard: LockGuard,
}

impl DirLock {
    /// Takes the lock without waiting; a held lock is [`Error::Locked`] naming `dir` and, where
    /// the `LOCK` file records a live process, the holder.
    pub(crate) fn acquire(fs: &dyn Vfs, dir: &Path, lock_path: &Path) -> Result<Self> {
        match fs.lock(lock_path) {
            Ok(guard) => Ok(DirLock { _guard: guard }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::Locked {
                path: dir.to_path_buf(),
                holder: holder(fs, lock_path, &e),
            }),
            Err(e) => Err(e).context("locking", lock_path),
        }
    }
}

/// The refusal of a lock this process holds already (the registry of `StdFs::lock`, or the
/// simulated file system): [`LockHolder::ThisProcess`].
#[derive(Debug)]
pub(crate) struct HeldByThisProcess;

impl std::fmt::Display for HeldByThisProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("another handle in this process holds the lock")
    }
}

impl std::error::Error for HeldByThisProcess {}

/// Who holds the lock that refused `refusal`.
fn holder(fs: &dyn Vfs, lock_path: &Path, refusal: &std::io::Error) -> LockHolder {
    if refusal
        .get_ref()
        .is_some_and(|inner| inner.is::<HeldByThisProcess>())
    {
        return LockHolder::ThisProcess;
    }
    match fs
        .read_all(lock_path)
        .ok()
        .and_then(|note| live_holder(&note))
    {
        Some(pid) => LockHolder::Process(pid),
        None => LockHolder::Unknown,
    }
}

/// What a holder writes into `LOCK`: its process id and [`this_host`], then a newline.
pub(crate) fn holder_note(pid: u32) -> String {
    format!("{pid} {}\n", this_host())
}

/// The process a `LOCK` file's note names, if the note is whole, was written on this host and in
/// this pid namespace (a process id means nothing elsewhere: two containers sharing a volume may
/// both run as process 1), and that process is alive (a holder that crashed leaves its note).
fn live_holder(note: &[u8]) -> Option<u32> {
    let note = std::str::from_utf8(note).ok()?.strip_suffix('\n')?;
    let (pid, host) = note.split_once(' ')?;
    let pid: u32 = pid.parse().ok()?;
    let named = host == this_host() && host != UNKNOWN_HOST && pid != std::process::id();
    (named && process_is_alive(pid)).then_some(pid)
}

/// The process the `LOCK` file of the store in `dir` names as its holder, if it is alive and on
/// this host, in this pid namespace (Linux only; `None` elsewhere). For tools that find a store
/// locked (the `bitcask` CLI): a library handle records its process id there while it holds
/// the lock. The note is never used for exclusion, which is the `flock` alone.
pub fn recorded_lock_holder(dir: impl AsRef<Path>) -> Option<u32> {
    let layout = crate::io::layout::Layout::new(dir.as_ref().to_path_buf());
    let note = std::fs::read(layout.lock_path()).ok()?;
    live_holder(&note)
}

/// What stands for the host where it cannot be told.
const UNKNOWN_HOST: &str = "-";

/// This host and pid namespace, as holder notes name them: `hostname/pid:[inode]` on Linux.
#[cfg(target_os = "linux")]
fn this_host() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname");
    let namespace = std::fs::read_link("/proc/self/ns/pid");
    match (hostname, namespace) {
        (Ok(hostname), Ok(namespace)) => {
            let host = format!("{}/{}", hostname.trim(), namespace.display());
            // One word, so that the note splits at its first space.
            host.split_whitespace().collect::<Vec<_>>().join("_")
        }
        _ => UNKNOWN_HOST.to_string(),
    }
}

#[cfg(not(target_os = "linux"))]
fn this_host() -> String {
    UNKNOWN_HOST.to_string()
}

/// Whether a process with this id exists (a holder that crashed leaves its id behind).
#[cfg(target_os = "linux")]
fn process_is_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists, and belongs to another user.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Elsewhere the id cannot be checked, so it is not named.
#[cfg(not(target_os = "linux"))]
fn process_is_alive(_pid: u32) -> bool {
    false
}
