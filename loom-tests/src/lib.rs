//! The models are in `tests/models.rs`; this crate exists to build the engine with `--cfg loom`.
