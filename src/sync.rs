//! The one import point for the synchronisation primitives the engine's protocol uses, so that a
//! model checker can swap them for instrumented stand-ins in one place.

pub(crate) use dashmap::DashMap;
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
