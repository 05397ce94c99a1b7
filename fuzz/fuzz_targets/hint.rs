//! `hint`: arbitrary bytes into `HintFile::decode` and `MergeCommit::decode`. Nothing panics; a
//! decoded hint of this build's version rebuilt with `HintBuilder` (and a decoded commit
//! re-encoded) gives back exactly the input bytes, and a version 1 hint of back-to-back records
//! rebuilds to the same entries. Each input is also tried with its checksums recomputed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitcask_fuzz::check_hint(data);
});
