//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use bitcask::{Config, Database};

/// Opens `dir` with a small data file limit so tests rotate often, and without background
/// merging so that what a test sees on disk is what its own calls did.
pub fn open_small(dir: &Path, limit: u64) -> Database {
    Config::new(dir)
        .data_file_limit(limit)
        .background_merge(false)
        .open()
        .unwrap()
}

/// Names of the files in `dir` with the given extension, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

/// Every live key with its value, read back through `read`.
pub fn contents(db: &Database) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    db.keys()
        .map(|k| {
            let v = db.read(&k).expect("every listed key reads");
            (k, v)
        })
        .collect()
}

/// Copies every file of `from` into `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// The file id in a data or hint file's name.
pub fn file_id(path: &Path) -> u32 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Every file in `dir` with its bytes, sorted by path.
pub fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}
