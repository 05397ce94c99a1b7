//! `export` and `import`, and the stream format documented in `cli/README.md`.

use std::ffi::OsStr;

use crate::support::{
    TestStore, bitcask, build_multi_file_store, flip_byte, locate, snapshot, spawn,
    spawn_with_stdin,
};

const BINARY_PAIRS: [(&[u8], &[u8]); 3] = [
    (b"", b"empty key"),
    (b"\x00\xff\nkey", b"P\x00E\xff"),
    (b"plain", b""),
];

fn sorted(pairs: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut owned: Vec<_> = pairs
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    owned.sort();
    owned
}

/// A stream built from the format description alone.
fn hand_built_stream(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut bytes = b"bitcask-export v1\n".to_vec();
    for (key, value) in pairs {
        bytes.push(b'P');
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        bytes.extend_from_slice(value);
    }
    bytes.push(b'E');
    bytes.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn export_to_a_file_and_import_from_it_round_trips_binary_pairs() {
    let (from, to) = (TestStore::new(), TestStore::new());
    from.fill(&BINARY_PAIRS);
    let file = from.parent().join("pairs.bin");
    from.run(&[OsStr::new("export"), OsStr::new("-o"), file.as_os_str()])
        .expect(0);
    let run = to
        .run(&[OsStr::new("import"), OsStr::new("-i"), file.as_os_str()])
        .expect(0);
    assert_eq!(
        run.out(),
        format!("imported 3 pairs into {}\n", to.dir.display())
    );
    assert_eq!(to.pairs(), sorted(&BINARY_PAIRS));
}

/// A path inside the store is refused before anything is written: an export there could
/// replace one of the store's files, and the next open deletes a `*.tmp` file given to import.
#[test]
fn export_and_import_refuse_a_path_inside_the_store() {
    let store = TestStore::new();
    store.fill(&BINARY_PAIRS);
    let before = snapshot(&store.dir);
    let data = crate::support::data_files(&store.dir).remove(0);
    let run = store
        .run(&[OsStr::new("export"), OsStr::new("-o"), data.as_os_str()])
        .expect(2);
    assert!(
        run.stderr.contains("lies inside the store"),
        "{}",
        run.stderr
    );

    let backup = store.dir.join("backup.tmp");
    std::fs::write(&backup, hand_built_stream(&BINARY_PAIRS)).unwrap();
    let run = store
        .run(&[OsStr::new("import"), OsStr::new("-i"), backup.as_os_str()])
        .expect(2);
    assert!(
        run.stderr.contains("lies inside the store"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(&backup).unwrap();
    assert_eq!(snapshot(&store.dir), before);
}

#[test]
fn export_to_stdout_writes_the_documented_format_in_key_order() {
    let store = TestStore::new();
    store.fill(&BINARY_PAIRS);
    let run = store.run(&["export"]).expect(0);
    let mut in_key_order = BINARY_PAIRS;
    in_key_order.sort();
    assert_eq!(run.stdout, hand_built_stream(&in_key_order));
}

#[test]
fn import_reads_a_stream_from_stdin() {
    let store = TestStore::new();
    let stream = hand_built_stream(&BINARY_PAIRS);
    store.run_with_stdin(&["import"], &stream).expect(0);
    assert_eq!(store.pairs(), sorted(&BINARY_PAIRS));
}

/// `-i` naming a pipe (here `/dev/stdin` while stdin is one; also `-i <(cmd)`) is spooled like
/// stdin, since the stream is read twice.
#[test]
fn import_from_a_pipe_named_with_dash_i() {
    let store = TestStore::new();
    let stream = hand_built_stream(&BINARY_PAIRS);
    store
        .run_with_stdin(&["import", "-i", "/dev/stdin"], &stream)
        .expect(0);
    assert_eq!(store.pairs(), sorted(&BINARY_PAIRS));
}

/// Standard input is validated as it is copied: input that is not an export stream is refused
/// at once, not after the whole of it was read (here it never ends: stdin stays open).
#[test]
fn import_refuses_stdin_that_is_not_a_stream_before_reading_all_of_it() {
    use std::io::{Read, Write};
    let store = TestStore::new();
    let mut command = bitcask();
    command.arg("--dir").arg(&store.dir).arg("import");
    let mut child = spawn_with_stdin(command);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(b"id,name\n1,not an export stream\n")
        .unwrap();
    stdin.flush().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("import kept reading input that is not a stream");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    drop(stdin);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("does not start with"), "{stderr}");
    assert!(!store.dir.exists(), "nothing was created");
}

#[test]
fn a_truncated_stream_exits_4_and_imports_nothing() {
    let store = TestStore::new();
    store.fill(&[(b"existing", b"kept")]);
    let before = snapshot(&store.dir);
    let stream = hand_built_stream(&BINARY_PAIRS);
    let run = store.run_with_stdin(&["import"], &stream[..stream.len() - 5]);
    let run = run.expect(4);
    assert!(run.stderr.contains("truncated"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing was imported"),
        "{}",
        run.stderr
    );
    assert_eq!(snapshot(&store.dir), before);
}

#[test]
fn a_stream_with_a_wrong_checksum_exits_4_and_imports_nothing() {
    let store = TestStore::new();
    let mut stream = hand_built_stream(&BINARY_PAIRS);
    let last = stream.len() - 1;
    stream[last] ^= 0x01;
    let run = store.run_with_stdin(&["import"], &stream).expect(4);
    assert!(run.stderr.contains("checksum mismatch"), "{}", run.stderr);
    assert!(!store.dir.exists(), "the store is not even created");
}

/// An export that fails midway (here on a damaged value) leaves an earlier export at the same
/// path as it was, and no partial file beside it.
#[test]
fn a_failed_export_leaves_the_previous_file_untouched() {
    let store = TestStore::new();
    build_multi_file_store(&store.dir);
    store.run(&["merge"]).expect(0); // hint files: open does not scan, the read finds the damage
    let file = store.parent().join("backup.bin");
    let export = [OsStr::new("export"), OsStr::new("-o"), file.as_os_str()];
    store.run(&export).expect(0);
    let before = std::fs::read(&file).unwrap();
    let (path, offset) = locate(&store.dir, b"k3");
    flip_byte(&path, offset + 25);
    let run = store.run(&export);
    assert_ne!(run.code, 0, "the export of a damaged value succeeded");
    assert!(
        run.stderr.contains("key \"k3\""),
        "names the key: {}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the earlier export changed"
    );
    let partials: Vec<_> = std::fs::read_dir(store.parent())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partials.is_empty(), "left behind: {partials:?}");
}

/// A regular file is replaced wherever it lives, `/dev/shm` included: streaming into it kept
/// the old file's longer tail after the end record, which import then refused.
#[test]
fn export_replaces_a_regular_file_under_dev() {
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        return; // no /dev/shm here
    };
    let store = TestStore::new();
    store.fill(&BINARY_PAIRS);
    let file = shm.path().join("backup.bin");
    std::fs::write(&file, vec![b'x'; 100_000]).unwrap();
    store
        .run(&[OsStr::new("export"), OsStr::new("-o"), file.as_os_str()])
        .expect(0);
    let other = TestStore::new();
    other
        .run(&[OsStr::new("import"), OsStr::new("-i"), file.as_os_str()])
        .expect(0);
    assert_eq!(other.pairs(), sorted(&BINARY_PAIRS));
}

/// `-o` into something that is not a regular file is streamed into, not fsynced or replaced.
#[test]
fn export_to_dev_null_succeeds() {
    let store = TestStore::new();
    store.fill(&BINARY_PAIRS);
    let run = store.run(&["export", "-o", "/dev/null"]).expect(0);
    // The summary goes to stderr: the stream may be going to stdout (`-o /dev/stdout`).
    assert_eq!(run.out(), "");
    assert!(
        run.stderr.contains("exported 3 pairs to /dev/null"),
        "{}",
        run.stderr
    );
}

/// A reader that goes away before the end leaves an incomplete stream: `export` fails, unlike
/// `keys | head`, where stopping early is the reader's choice.
#[test]
fn export_fails_when_its_reader_goes_away() {
    use std::io::Read;

    let store = TestStore::new();
    let value = [7u8; 200];
    let keys: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &value[..])).collect();
    store.fill(&pairs); // about 400 KB of stream: more than a pipe holds
    let mut command = bitcask();
    command.arg("--dir").arg(&store.dir).arg("export");
    let mut child = spawn(command);
    let mut stdout = child.stdout.take().unwrap();
    let mut start = [0u8; 16];
    stdout.read_exact(&mut start).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_ne!(
        output.status.code(),
        Some(0),
        "a cut-short export reported success"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("export stream"), "{stderr}");
}

/// `-o /dev/stdout` into a pipe: the stream alone goes down the pipe (the summary goes to
/// stderr), so it imports.
#[test]
fn export_to_dev_stdout_is_a_clean_stream() {
    let store = TestStore::new();
    store.fill(&BINARY_PAIRS);
    let run = store.run(&["export", "-o", "/dev/stdout"]).expect(0);
    assert_eq!(run.stdout, hand_built_stream(&BINARY_PAIRS));
}

/// `-o` naming a symlink replaces the file it points to and keeps the link; the new file keeps
/// the old one's permissions.
#[test]
fn export_through_a_symlink_replaces_its_target_and_keeps_permissions() {
    use std::os::unix::fs::PermissionsExt;

    let store = TestStore::new();
    store.fill(&BINARY_PAIRS);
    let target = store.parent().join("exports-2026.bin");
    std::fs::write(&target, b"an older export").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = store.parent().join("latest.bin");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    store
        .run(&[OsStr::new("export"), OsStr::new("-o"), link.as_os_str()])
        .expect(0);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read(&target).unwrap(),
        hand_built_stream(&BINARY_PAIRS)
    );
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// `-o /dev/stdout` writes through the descriptor the shell set up: after `>>`, the stream is
/// appended to what the file held, not written over its start or renamed over it.
#[test]
fn export_to_dev_stdout_appends_where_the_shell_says() {
    let store = TestStore::new();
    store.fill(&BINARY_PAIRS);
    let file = store.parent().join("log.bin");
    std::fs::write(&file, b"earlier bytes\n").unwrap();
    let program = bitcask().get_program().to_owned();
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(r#""$0" --dir "$1" export -o /dev/stdout >> "$2""#)
        .arg(&program)
        .arg(&store.dir)
        .arg(&file);
    crate::support::run(shell, b"").expect(0); // under the fork guard, as every spawn
    let bytes = std::fs::read(&file).unwrap();
    let stream = bytes
        .strip_prefix(b"earlier bytes\n")
        .expect("the earlier bytes stay first");
    assert_eq!(stream, hand_built_stream(&sorted_refs(&BINARY_PAIRS)));
}

fn sorted_refs<'a>(pairs: &[(&'a [u8], &'a [u8])]) -> Vec<(&'a [u8], &'a [u8])> {
    let mut pairs = pairs.to_vec();
    pairs.sort();
    pairs
}
