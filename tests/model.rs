//! Randomised model test: write / remove / read / merge / reopen sequences against a `BTreeMap`.

use std::collections::BTreeMap;

use bitcask::{Config, Database, Error};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write(u8, Vec<u8>),
    Remove(u8),
    Read(u8),
    Merge,
    Reopen,
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..12u8, prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(k, v)| Op::Write(k, v)),
        2 => (0..12u8).prop_map(Op::Remove),
        3 => (0..12u8).prop_map(Op::Read),
        1 => Just(Op::Merge),
        1 => Just(Op::Reopen),
        1 => Just(Op::Sync),
    ]
}

fn key(k: u8) -> Vec<u8> {
    // Key 0 is the empty key, which is valid.
    (0..k).map(|i| b'a' + i).collect()
}

fn open(dir: &std::path::Path, limit: u64) -> Database {
    Config::new(dir).data_file_limit(limit).open().unwrap()
}

fn check_all(db: &Database, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let mut keys: Vec<Vec<u8>> = db.keys().collect();
    keys.sort();
    assert_eq!(keys, model.keys().cloned().collect::<Vec<_>>());
    assert_eq!(db.stats().num_keys, model.len() as u64);
    for (k, v) in model {
        assert_eq!(&db.read(k).unwrap(), v);
        assert_eq!(&*db.get(k).unwrap().unwrap(), &v[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_a_btreemap(ops in prop::collection::vec(op(), 1..120), limit in 64u64..1024) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(dir.path(), limit);
        let mut model = BTreeMap::new();
        for op in ops {
            match op {
                Op::Write(k, v) => {
                    db.write(&key(k), &v).unwrap();
                    model.insert(key(k), v);
                }
                Op::Remove(k) => {
                    db.remove(&key(k)).unwrap();
                    model.remove(&key(k));
                }
                Op::Read(k) => match (db.read(&key(k)), model.get(&key(k))) {
                    (Ok(got), Some(want)) => prop_assert_eq!(&got, want),
                    (Err(Error::KeyNotFound), None) => {}
                    (got, want) => prop_assert!(false, "read {:?}: {:?} vs {:?}", k, got, want),
                },
                Op::Merge => db.merge().unwrap(),
                Op::Sync => db.sync().unwrap(),
                Op::Reopen => {
                    db.close().unwrap();
                    db = open(dir.path(), limit);
                }
            }
        }
        check_all(&db, &model);
        db.close().unwrap();
        check_all(&open(dir.path(), limit), &model);
    }
}
