//! `ops_faults`: sequences of write / remove / read / get / merge / sync / reopen on the
//! simulated file system, with the sync policy, the data file limit and one fault (a power cut,
//! EIO, ENOSPC or a short write at a chosen I/O operation) taken from the input. Before the
//! fault every operation succeeds and agrees with a `BTreeMap` model; after a power cut the
//! crash image (and the image of a second cut during its recovery) opens to a prefix of the
//! operations holding every durable one; after an error the call fails cleanly, reads agree
//! with the model, and reopening gives a valid prefix; then writing works again. See
//! `bitcask_fuzz::check_ops_faults`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: bitcask_fuzz::FaultsInput| {
    bitcask_fuzz::check_ops_faults(&input);
});
