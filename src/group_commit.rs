//! Group commit: makes appended records durable with as few fsyncs as possible.
//!
//! Writers append under the writer lock and then wait here, outside it, until their seq is
//! durable. The first waiter becomes the leader: it reads the active file and the last appended
//! seq, fsyncs outside every lock, and publishes the new durable seq; everyone who appended
//! before that read is covered by the one fsync, and writers that arrive meanwhile queue for the
//! next one. Records in earlier files are already durable: rotation fsyncs a file before sealing
//! it.

use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::sync::{Condvar, Mutex, MutexGuard, ProtocolBreak, broken};

#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    synced: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Every record with a seq up to this is durable.
    durable_seq: u64,
    /// A leader is fsyncing now.
    leader_active: bool,
    /// An fsync failed: nothing later can be promised durable.
    failed: Option<String>,
}

impl GroupCommit {
    /// Returns once every record up to `seq` is durable.
    pub(crate) fn wait_durable(&self, engine: &Engine, seq: u64) -> Result<()> {
        let mut state = self.state.lock();
        loop {
            if state.durable_seq >= seq {
                return Ok(());
            }
            if let Some(reason) = &state.failed {
                return Err(Error::Poisoned(reason.clone()));
            }
            if state.leader_active {
                if broken(ProtocolBreak::FollowerSkipsWait) {
                    return Ok(());
                }
                self.synced.wait(&mut state);
                continue;
            }
            state.leader_active = true;
            let synced = MutexGuard::unlocked(&mut state, || sync_active(engine));
            state.leader_active = false;
            match &synced {
                Ok(upto) => state.durable_seq = state.durable_seq.max(*upto),
                Err(e) => {
                    state.failed.get_or_insert_with(|| e.to_string());
                }
            }
            self.synced.notify_all();
            synced?;
        }
    }
}

/// Fsyncs the active file; returns the seq up to which records are now durable.
fn sync_active(engine: &Engine) -> Result<u64> {
    let (file, upto, path) = {
        let writer = engine.writer.lock();
        writer.check_poisoned()?;
        let path = engine.layout.data_path(writer.file_id());
        (writer.file(), writer.last_seq(), path)
    };
    let synced = file.sync().context("syncing", &path);
    if let Err(e) = &synced {
        engine.writer.lock().poison(e.to_string());
    }
    synced.map(|()| upto)
}
