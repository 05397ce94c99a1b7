//! Applying loaded records to the keydir shard by shard, on every core.
//!
//! The order in which records are applied does not matter (newest seq wins, ties go to the
//! higher file id, a later offset in one writer file is newer, tombstones are applied after
//! everything; see `order`). So a loader first sorts records into one buffer per keydir shard,
//! then threads take shards and insert each buffer front to back: each shard's table stays in the
//! CPU caches while it fills. Inserting in file order instead missed the cache (and the TLB) on
//! nearly every insert. Hint files (`hints`) and scans of data files ([`ShardedLoad`]) both load
//! this way.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Found, Loaded, Target};
use crate::keydir::FileUsage;

/// Records a scan buffers before applying them: 12 MiB of [`Found`] (48 bytes each), up to twice
/// that while the buffers grow.
const CHUNK: usize = 1 << 18;

/// Fewer buffered records than this are applied on the calling thread: not worth a thread.
const PARALLEL_FROM: usize = 1 << 14;

/// Records found by a scan of one data file, buffered by keydir shard and applied [`CHUNK`] at
/// a time, so that a large file needs no more memory than that. The buffers are dropped after
/// each chunk: kept, every shard's could grow to a whole chunk when a chunk's keys fall in few
/// shards.
pub(super) struct ShardedLoad<'t, 'a> {
    target: Target<'t>,
    by_shard: Vec<Vec<Found<'a>>>,
    buffered: usize,
}

impl<'t, 'a> ShardedLoad<'t, 'a> {
    pub(super) fn new(target: Target<'t>) -> Self {
        let shards = target.keydir.shard_count();
        ShardedLoad {
            target,
            by_shard: (0..shards).map(|_| Vec::new()).collect(),
            buffered: 0,
        }
    }

    /// Buffers `found`; applies the buffers once they hold [`CHUNK`] records.
    pub(super) fn push(&mut self, found: Found<'a>, loaded: &mut Loaded, usage: &mut FileUsage) {
        let shard = self.target.keydir.shard_of(found.key);
        self.by_shard[shard].push(found);
        self.buffered += 1;
        if self.buffered == CHUNK {
            self.apply(loaded, usage);
        }
    }

    /// Applies what is still buffered.
    pub(super) fn finish(mut self, loaded: &mut Loaded, usage: &mut FileUsage) {
        self.apply(loaded, usage);
    }

    fn apply(&mut self, loaded: &mut Loaded, usage: &mut FileUsage) {
        let target = self.target;
        if self.buffered < PARALLEL_FROM {
            for &found in self.by_shard.iter().flatten() {
                target.apply(loaded, usage, found);
            }
        } else {
            let by_shard = &self.by_shard;
            let states = in_parallel(by_shard.len(), |shard, (loaded, usage)| {
                for &found in &by_shard[shard] {
                    target.apply(loaded, usage, found);
                }
            });
            for (found, seen) in states {
                loaded.absorb(found);
                usage.absorb(&seen);
            }
        }
        self.by_shard
            .iter_mut()
            .for_each(|buffer| *buffer = Vec::new());
        self.buffered = 0;
    }
}

/// Runs `task(i, state)` for every `i` in `0..tasks`, on this thread plus one helper thread per
/// further core (never more threads than tasks), each thread with a state of its own; returns
/// the states.
pub(super) fn in_parallel<S: Default + Send>(
    tasks: usize,
    task: impl Fn(usize, &mut S) + Sync,
) -> Vec<S> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut state = S::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                return state;
            }
            task(i, &mut state);
        }
    };
    std::thread::scope(|scope| {
        // A helper that cannot be spawned just leaves more tasks to the others.
        let helpers: Vec<_> = (1..threads_for(tasks))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("bitcask-open".into())
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        let mut states = vec![work()];
        for helper in helpers {
            states.push(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        states
    })
}

/// How many threads run `tasks` tasks: one per core, and one only under loom (whose models
/// must not see threads they did not spawn).
fn threads_for(tasks: usize) -> usize {
    if cfg!(loom) {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(tasks)
}
