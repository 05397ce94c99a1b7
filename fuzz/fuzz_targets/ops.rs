//! `ops`: sequences of write / remove / read / get / merge / reopen / sync / crash against a
//! `BTreeMap` model, with a data file limit taken from the input (64..=4096 bytes). Every
//! operation succeeds and every read agrees with the model. See `bitcask_fuzz::check_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: bitcask_fuzz::OpsInput| {
    bitcask_fuzz::check_ops(&input);
});
