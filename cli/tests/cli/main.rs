//! Integration tests that run the real `bitcask` binary, one behaviour per test.

mod check;
mod inspect;
mod kv;
mod repair;
mod repair_as_open;
mod support;
mod transfer;
mod usage;
