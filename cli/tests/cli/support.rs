//! Running the binary against a temporary store, and building and damaging stores.
//!
//! The library's directory lock is an flock, which belongs to the open file description. A
//! child that another test forks while this process has a store open shares that description
//! until it execs, so the lock would look held for a moment after `close`. Hence spawning takes
//! [`FORK_GUARD`] exclusively, and every short-lived library handle here is opened and closed
//! under it shared ([`with_db`]).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard};

use bitcask::format::header::HEADER_LEN;
use bitcask::format::record::{RecordKind, scan};
use bitcask::{Config, Database};

/// Serialises forks against open library handles; see the module docs.
static FORK_GUARD: RwLock<()> = RwLock::new(());

fn no_fork() -> RwLockReadGuard<'static, ()> {
    FORK_GUARD
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens the store at `dir`, runs `f` on it and closes it, with no fork in between.
pub fn with_db<T>(dir: &Path, f: impl FnOnce(&Database) -> T) -> T {
    let _guard = no_fork();
    let db = Database::open(dir).expect("store opens");
    let out = f(&db);
    db.close().expect("close");
    out
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Raw stdout.
    pub stdout: Vec<u8>,
    /// Stderr as text.
    pub stderr: String,
}

impl Run {
    /// Stdout as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            code,
            "exit code {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.out(),
            self.stderr
        );
        self
    }
}

/// The binary, with `BITCASK_DIR` cleared so the caller's environment cannot leak in.
pub fn bitcask() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bitcask"));
    command.env_remove("BITCASK_DIR");
    command
}

/// Starts `command` with empty stdin and stdout and stderr piped, under the fork guard.
pub fn spawn(command: Command) -> std::process::Child {
    spawn_with(command, Stdio::null())
}

/// Starts `command` with stdin, stdout and stderr piped, under the fork guard; the caller writes
/// to stdin and decides when to close it.
pub fn spawn_with_stdin(command: Command) -> std::process::Child {
    spawn_with(command, Stdio::piped())
}

fn spawn_with(mut command: Command, stdin: Stdio) -> std::process::Child {
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn_guarded(&mut command)
}

/// Starts `command` holding [`FORK_GUARD`] exclusively (see the module doc).
fn spawn_guarded(command: &mut Command) -> std::process::Child {
    let _exclusive = FORK_GUARD.write().unwrap_or_else(|p| p.into_inner());
    command.spawn().expect("the binary starts")
}

/// Runs `command` with the standard streams it was set up with; returns its exit status.
pub fn status(mut command: Command) -> std::process::ExitStatus {
    spawn_guarded(&mut command).wait().expect("the binary runs")
}

/// Runs `command` with `stdin` as its standard input.
pub fn run(mut command: Command, stdin: &[u8]) -> Run {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_guarded(&mut command);
    let mut input = child.stdin.take().expect("stdin is piped");
    // Commands that do not read stdin may exit before the write; a broken pipe is fine then.
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().expect("the binary runs");
    Run {
        code: output.status.code().expect("exited normally"),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `bitcask --dir DIR ARGS...` as the user `nobody` (through `setpriv`), or returns
/// `None` (having said why) unless the tests run as root with `setpriv` at hand and the binary
/// reachable by nobody.
pub fn run_as_nobody(dir: &Path, args: &[&str]) -> Option<Run> {
    use std::os::unix::fs::MetadataExt;
    let as_nobody = |args: &[&str]| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_bitcask"))
            .arg("--dir")
            .arg(dir)
            .args(args);
        run(command, b"")
    };
    // The test created the store's parent directory: its owner is who the tests run as.
    let as_root = std::fs::metadata(dir.parent()?).ok()?.uid() == 0;
    if !as_root || as_nobody(&["--version"]).code != 0 {
        eprintln!("skipped: needs root and setpriv, with the binary reachable by nobody");
        return None;
    }
    Some(as_nobody(args))
}

/// A store directory (not created yet) inside its own temporary directory.
pub struct TestStore {
    _tmp: tempfile::TempDir,
    /// The store directory: `<tmp>/db`.
    pub dir: PathBuf,
}

impl TestStore {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("db");
        TestStore { _tmp: tmp, dir }
    }

    /// The temporary directory holding the store (and anything created beside it).
    pub fn parent(&self) -> &Path {
        self.dir.parent().expect("db has a parent")
    }

    /// Runs `bitcask --dir DIR ARGS...` with empty stdin.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        self.run_with_stdin(args, b"")
    }

    /// Runs `bitcask --dir DIR ARGS...` with `stdin`.
    pub fn run_with_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Run {
        let mut command = bitcask();
        command.arg("--dir").arg(&self.dir).args(args);
        run(command, stdin)
    }

    /// Opens the store through the library and keeps it open (and locked) until dropped.
    /// Forks by other tests may share its lock meanwhile, so use it only to hold the lock.
    pub fn hold(&self) -> Database {
        Database::open(&self.dir).expect("store opens")
    }

    /// Runs `f` on the store opened through the library, then closes it.
    pub fn with_db<T>(&self, f: impl FnOnce(&Database) -> T) -> T {
        with_db(&self.dir, f)
    }

    /// Writes pairs through the library and closes the store.
    pub fn fill(&self, pairs: &[(&[u8], &[u8])]) {
        self.with_db(|db| {
            for (key, value) in pairs {
                db.write(key, value).expect("write");
            }
        });
    }

    /// The live pairs, read through the library.
    pub fn pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs_of(&self.dir)
    }
}

/// Whether the library refuses to open the store at `dir`.
pub fn fails_to_open(dir: &Path) -> bool {
    let _guard = no_fork();
    Database::open(dir).is_err()
}

/// The live pairs of the store at `dir`, sorted.
pub fn pairs_of(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut pairs: Vec<_> = with_db(dir, |db| {
        db.keys()
            .map(|k| {
                let v = db.read(&k).expect("read");
                (k, v)
            })
            .collect()
    });
    pairs.sort();
    pairs
}

/// A store with ten keys `k0`..`k9` (values `value-N`), `k2` overwritten with `newer`, `k5`
/// removed, spread over several small data files so that the first ones are sealed.
pub fn build_multi_file_store(dir: &Path) {
    let _guard = no_fork();
    let db = Config::new(dir)
        .data_file_limit(200)
        .open()
        .expect("store opens");
    for i in 0..10 {
        db.write(format!("k{i}").as_bytes(), format!("value-{i}").as_bytes())
            .expect("write");
    }
    db.write(b"k2", b"newer").expect("write");
    db.remove(b"k5").expect("remove");
    db.close().expect("close");
}

/// The pairs [`build_multi_file_store`] leaves, minus the keys in `lost`.
pub fn expected_pairs(lost: &[&str]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut pairs: Vec<_> = (0..10)
        .filter(|&i| i != 5)
        .map(|i| (format!("k{i}"), format!("value-{i}")))
        .map(|(k, v)| {
            if k == "k2" {
                (k, "newer".into())
            } else {
                (k, v)
            }
        })
        .filter(|(k, _)| !lost.contains(&k.as_str()))
        .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
        .collect();
    pairs.sort();
    pairs
}

/// The data files of a store, by id.
pub fn data_files(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, "data")
}

/// The files of `dir` whose extension is `ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list store")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// Where the put record of `key` is: its data file and offset (the first found).
pub fn locate(dir: &Path, key: &[u8]) -> (PathBuf, u64) {
    for path in data_files(dir) {
        let bytes = std::fs::read(&path).expect("read data file");
        for (offset, record) in scan(&bytes, HEADER_LEN) {
            let record = record.expect("an undamaged store");
            if record.key == key && record.kind == RecordKind::Put {
                return (path, offset);
            }
        }
    }
    panic!("no put record for {key:?}");
}

/// Inverts the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0xff;
    std::fs::write(path, bytes).expect("write");
}

/// Appends bytes to `path`.
pub fn append(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(bytes).expect("append");
}

/// Every file of `dir` with its bytes, to prove a command changed nothing.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// A store whose newest data file was damaged in `k3`'s record and then opened, so the open cut
/// it there and saved `k3`.. `k9`'s records (valid records after the damage) beside it; returns
/// the saved tail's path and the offset it was cut at.
pub fn store_with_a_saved_tail(dir: &Path) -> (PathBuf, u64) {
    {
        let _guard = no_fork();
        let db = Config::new(dir).open().expect("store opens");
        for i in 0..10 {
            db.write(format!("k{i}").as_bytes(), format!("value-{i}").as_bytes())
                .expect("write");
        }
        db.close().expect("close");
    }
    let (path, offset) = locate(dir, b"k3");
    flip_byte(&path, offset + 25);
    with_db(dir, |_| ());
    let saved = dir.join(format!(
        "{}.cut-{offset}",
        path.file_name().unwrap().to_str().unwrap()
    ));
    assert!(saved.exists(), "open did not save the cut tail");
    (saved, offset)
}
