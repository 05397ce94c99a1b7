//! `record`: arbitrary bytes into `Record::decode`, `record::scan` and `FileHeader::decode`.
//! Nothing panics; whatever decodes re-encodes to exactly the bytes it was decoded from. Each
//! input is also tried with its checksums recomputed, so the checks behind the CRC get explored.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitcask_fuzz::check_record(data);
});
