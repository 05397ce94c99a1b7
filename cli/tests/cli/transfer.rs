//! `export` and `import`, and the stream format documented in `cli/README.md`.

use std::ffi::OsStr;

use crate::support::{TestStore, snapshot};

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
