//! Arguments, the store directory, exit codes for usage and store errors, and progress output.

use std::ffi::OsStr;
use std::process::Command;

use crate::support::{TestStore, bitcask, run, status};

#[test]
fn long_help_documents_the_exit_codes() {
    let mut command = bitcask();
    command.arg("--help");
    let out = run(command, b"").expect(0).out();
    assert!(out.contains("Exit codes:"), "{out}");
    for line in [
        "  0  success",
        "  1  not found or damaged",
        "  2  usage error",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    assert!(out.contains("  3  store error") && out.contains("  4  bad input"));
}

#[test]
fn a_missing_store_directory_is_a_usage_error() {
    let mut command = bitcask();
    command.args(["get", "k"]);
    let run = run(command, b"").expect(2);
    assert!(
        run.stderr.contains("--dir DIR or set BITCASK_DIR"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let store = TestStore::new();
    store.run(&["frobnicate"]).expect(2);
}

#[test]
fn malformed_hex_is_a_usage_error() {
    let store = TestStore::new();
    let run = store.run(&["put", "0xabc", "v"]).expect(2);
    assert!(run.stderr.contains("not valid hex"), "{}", run.stderr);
    assert!(!store.dir.exists(), "nothing may be created");
}

#[test]
fn the_directory_can_come_from_bitcask_dir() {
    let store = TestStore::new();
    store.fill(&[(b"k", b"from env")]);
    let mut command = bitcask();
    command.env("BITCASK_DIR", &store.dir).args(["get", "k"]);
    assert_eq!(run(command, b"").expect(0).stdout, b"from env");
}

#[test]
fn reading_a_store_that_does_not_exist_exits_3_and_creates_nothing() {
    let store = TestStore::new();
    let run = store.run(&["keys"]).expect(3);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(!store.dir.exists());
}

/// A mistyped `--dir` that names an existing directory (the store's parent, a home directory)
/// is refused by every command that does not create a store, and nothing in it changes: no
/// `LOCK`, no data file (found by review: these commands used to create a store there).
#[test]
fn commands_that_need_a_store_refuse_a_directory_without_one_and_change_nothing() {
    let store = TestStore::new();
    std::fs::create_dir(&store.dir).expect("create the directory");
    std::fs::write(store.dir.join("notes.txt"), b"not a store").expect("write a file");
    let commands: [&[&str]; 7] = [
        &["get", "k"],
        &["delete", "k"],
        &["keys"],
        &["stats"],
        &["merge"],
        &["check"],
        &["export"],
    ];
    for args in commands {
        let run = store.run(args).expect(3);
        assert!(
            run.stderr.contains("holds no data files"),
            "{args:?}: {}",
            run.stderr
        );
        let names: Vec<_> = std::fs::read_dir(&store.dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["notes.txt"], "{args:?} changed the directory");
    }
}

#[test]
fn a_store_open_elsewhere_is_a_store_error_on_one_line() {
    let store = TestStore::new();
    store.fill(&[(b"k", b"v")]);
    let _held = store.hold();
    let run = store.run(&["get", "k"]).expect(3);
    assert!(
        run.stderr
            .starts_with("bitcask: opening the store failed: ")
    );
    assert!(run.stderr.contains("already open"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn no_progress_is_drawn_when_stderr_is_not_a_terminal() {
    let store = TestStore::new();
    store.fill(&[(b"a", b"1"), (b"b", b"2")]);
    let out = store.parent().join("export.bin");
    let args = [
        OsStr::new("export"),
        OsStr::new("--output"),
        out.as_os_str(),
    ];
    let run = store.run(&args).expect(0);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.out(),
        format!("exported 2 pairs to {}\n", out.display())
    );
}

/// Runs `bitcask --dir DIR ARGS` on a pseudo-terminal through util-linux `script`, returning
/// what the terminal showed; `None` when `script` is not installed.
fn on_a_terminal(store: &TestStore, args: &str) -> Option<String> {
    // Looked up without spawning anything: every fork must go through `run` (see `support`).
    let installed = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("script").is_file()));
    if !installed {
        eprintln!("skipped: util-linux `script` is not installed");
        return None;
    }
    let line = format!(
        "{} --dir '{}' {args}",
        env!("CARGO_BIN_EXE_bitcask"),
        store.dir.display()
    );
    let mut command = Command::new("script");
    command.args(["-qec", &line, "/dev/null"]);
    Some(run(command, b"").expect(0).out())
}

#[test]
fn a_progress_bar_is_drawn_when_stderr_is_a_terminal() {
    let store = TestStore::new();
    store.fill(&[(b"a", b"1")]);
    if let Some(screen) = on_a_terminal(&store, "check") {
        assert!(screen.contains("checking"), "{screen}");
        assert!(screen.contains("result: OK"), "{screen}");
    }
}

#[test]
fn quiet_hides_the_progress_bar_on_a_terminal() {
    let store = TestStore::new();
    store.fill(&[(b"a", b"1")]);
    if let Some(screen) = on_a_terminal(&store, "--quiet check") {
        assert!(!screen.contains("checking"), "{screen}");
        assert!(screen.contains("result: OK"), "{screen}");
    }
}

/// Runs `bitcask --dir DIR ARGS` with its stdout's reader gone before it writes (as in
/// `bitcask … | head` once `head` has exited); returns the exit code.
fn exit_code_with_reader_gone(store: &TestStore, args: &[&OsStr]) -> i32 {
    let mut command = bitcask();
    command.arg("--dir").arg(&store.dir).args(args);
    let mut child = crate::support::spawn(command);
    drop(child.stdout.take());
    child
        .wait()
        .expect("the binary runs")
        .code()
        .expect("exited")
}

/// A reader that went away must not hide a verdict: `check` and `dump` still say the store is
/// damaged (exit 1), and an export into `-o /dev/stdout` is not reported as complete.
#[test]
fn a_reader_that_goes_away_does_not_hide_the_outcome() {
    let store = TestStore::new();
    crate::support::build_multi_file_store(&store.dir);
    let export = [
        OsStr::new("export"),
        OsStr::new("-o"),
        OsStr::new("/dev/stdout"),
    ];
    assert_eq!(exit_code_with_reader_gone(&store, &export), 3);

    let (path, offset) = crate::support::locate(&store.dir, b"k3");
    crate::support::flip_byte(&path, offset + 25);
    assert_eq!(
        exit_code_with_reader_gone(&store, &[OsStr::new("check")]),
        1
    );
    let dump = [OsStr::new("dump"), path.as_os_str()];
    assert_eq!(exit_code_with_reader_gone(&store, &dump), 1);
}

/// An error message that cannot be written (stderr full) does not turn the exit code into a
/// panic's.
#[test]
fn an_unwritable_stderr_keeps_the_exit_code() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full here
    };
    let store = TestStore::new();
    let mut command = bitcask();
    command
        .arg("--dir")
        .arg(store.dir.join("missing"))
        .args(["get", "k"]);
    command.stderr(full).stdout(std::process::Stdio::null());
    assert_eq!(status(command).code(), Some(3));
}
