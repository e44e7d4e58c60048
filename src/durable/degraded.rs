//! Degraded mode of a [`DurableRecoveryState`]: the retry schedule of a failing store, the
//! state remembered for decisions taken in memory, and the write-through that replays them, in
//! order, once the store answers again. A key the store refuses to judge is moved out of the
//! queue on the way (see `unjudged`), so it never holds up the others.

use std::time::{Duration, Instant, SystemTime};

use super::queue::{self, Pending};
use super::{
    DurableRecoveryState, FIRST_RETRY_INTERVAL, MAX_RETRY_INTERVAL, StoreHealth, unjudged,
};
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::record::RecoveryEntry;
use crate::store::RecoveryStore;

/// Why and since when a handle is degraded, and when it tries its store again.
#[derive(Debug)]
pub(super) struct Degraded {
    since: SystemTime,
    cause: String,
    next_try: Instant,
    interval: Duration,
    dropped: u64,
}

impl DurableRecoveryState {
    /// Whether decisions are reaching the file, and if not, why and how many wait: a failing
    /// store first; else the keys the store cannot judge ([`unjudged`](Self::unjudged)), the
    /// first named in `cause` with the error naming its damaged row and remedy.
    pub fn health(&self) -> StoreHealth {
        let (held, held_dropped) = self.held_counts();
        if let Some(d) = &self.degraded {
            return StoreHealth::Degraded {
                since: d.since,
                cause: d.cause.clone(),
                pending: self.pending.len() + held,
                dropped: d.dropped + held_dropped,
            };
        }
        let Some((key, first)) = self.unjudged.iter().next() else {
            return StoreHealth::Durable;
        };
        let others = match self.unjudged.len() - 1 {
            0 => String::new(),
            1 => " (and 1 other key)".to_owned(),
            n => format!(" (and {n} other keys)"),
        };
        StoreHealth::Degraded {
            since: self
                .unjudged
                .values()
                .map(|u| u.since)
                .min()
                .unwrap_or(first.since),
            cause: format!(
                "{key}{others} decided in memory, the store cannot judge it: {}",
                first.error
            ),
            pending: held,
            dropped: held_dropped,
        }
    }

    /// Whether `key`'s decisions are reaching the file: as [`health`](Self::health) while the
    /// store fails; else degraded only when the store cannot judge this key, with its own error
    /// and held decisions; else durable, whatever other keys the store cannot judge.
    pub fn health_of(&self, key: &BackendKey) -> StoreHealth {
        if self.degraded.is_some() {
            return self.health();
        }
        match self.unjudged.get(key) {
            None => StoreHealth::Durable,
            Some(u) => StoreHealth::Degraded {
                since: u.since,
                cause: format!(
                    "{key} decided in memory, the store cannot judge it: {}",
                    u.error
                ),
                pending: u.held.len(),
                dropped: u.dropped,
            },
        }
    }

    /// Tries the store now, whatever the retry schedule, and writes through every pending
    /// decision: the queue of a failing store, then those held for keys the store could not
    /// judge (each written once the store judges its key again).
    ///
    /// # Errors
    ///
    /// The store's error when it still fails; the handle stays degraded and keeps its queue.
    /// Else, when decisions are still held for a key the store cannot judge, that key's error
    /// ([`StoreError::CorruptOverride`] or [`StoreError::CorruptEntry`], naming the row and its
    /// remedy); every other key's decisions are in the file.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.degraded.is_some() {
            self.write_through().inspect_err(|err| self.degrade(err))?;
        }
        self.retry_all_unjudged(true)?;
        match self.held_error() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    // The store, once it is open and every pending decision is in it; `None` while degraded
    // and before the next retry is due.
    pub(super) fn reachable_store(&mut self) -> Option<&RecoveryStore> {
        if let Some(d) = &self.degraded {
            if Instant::now() < d.next_try {
                return None;
            }
            if let Err(err) = self.write_through() {
                self.degrade(&err);
                return None;
            }
        }
        // A failing store degrades the handle: the caller decides from memory.
        if self.retry_all_unjudged(false).is_err() {
            return None;
        }
        self.store.as_ref()
    }

    // Replays the pending decisions in order; on success the handle is durable again. A
    // handle that fails for any reason but a lock held elsewhere is replaced by a fresh open
    // at once: an engine that latched an error may not recover in place.
    fn write_through(&mut self) -> Result<(), StoreError> {
        match self.replay() {
            Err(err) if self.store.is_some() && !is_contention(&err) => {
                self.store = None;
                self.replay()
            }
            other => other,
        }
    }

    fn replay(&mut self) -> Result<(), StoreError> {
        if self.store.is_none() {
            self.store = Some(RecoveryStore::open_with(&self.path, self.options.clone())?);
        }
        // What was committed is in the file: never replay it. A key the store refuses to judge
        // does not stop the others: its decisions leave the queue to be held for it.
        while let Some(op) = self.pending.front().cloned() {
            let key = op.key();
            if !self.unjudged.contains_key(key) {
                let Some(store) = &self.store else { break };
                let written = match &op {
                    Pending::Crash(key, at, report) => {
                        store.record_crash_with(key, *at, *report).map(drop)
                    }
                    Pending::Success(key) => store.record_success(key).map(drop),
                };
                match written {
                    Ok(()) => {
                        self.pending.pop_front();
                        continue;
                    }
                    Err(err) if unjudged::is_unjudged(&err, key) => self.mark_unjudged(key, err),
                    Err(err) => return Err(err),
                }
            }
            self.pending.pop_front();
            self.hold(op);
        }
        let Some(store) = &self.store else {
            return Ok(());
        };
        self.policy = store.recovery_policy()?;
        // What was decided in memory is now what the file holds.
        for (key, entry) in self.shadow.drain() {
            match entry {
                Some(entry) => self.committed.insert(key, entry),
                None => self.committed.remove(&key),
            };
        }
        self.degraded = None;
        Ok(())
    }

    pub(super) fn degrade(&mut self, err: &StoreError) {
        let now = Instant::now();
        match &mut self.degraded {
            Some(d) => {
                d.cause = err.to_string();
                d.interval = (d.interval * 2).min(MAX_RETRY_INTERVAL);
                d.next_try = now + d.interval;
            }
            None => {
                self.degraded = Some(Degraded {
                    since: SystemTime::now(),
                    cause: err.to_string(),
                    next_try: now + FIRST_RETRY_INTERVAL,
                    interval: FIRST_RETRY_INTERVAL,
                    dropped: 0,
                });
            }
        }
    }

    // The state of `key` as this handle last knew it: decided in memory, else read from the
    // store if it still answers reads, else as last committed through this handle. Never
    // opens the file: a degraded decision must not wait.
    pub(super) fn remembered(&self, key: &BackendKey) -> Option<RecoveryEntry> {
        if let Some(u) = self.unjudged.get(key) {
            return u.entry.clone();
        }
        if let Some(entry) = self.shadow.get(key) {
            return entry.clone();
        }
        // Reads often still work where writes fail (a full disk, a stalled writer); a file
        // that cannot be read leaves what this handle last saw committed.
        match self.store.as_ref().map(|s| s.get(key)) {
            Some(Ok(entry)) => entry,
            _ => self.committed.get(key).cloned(),
        }
    }

    pub(super) fn queue(&mut self, op: Pending) {
        let dropped = queue::push(&mut self.pending, op);
        if let Some(d) = &mut self.degraded {
            d.dropped += dropped;
        }
    }
}

impl Drop for DurableRecoveryState {
    fn drop(&mut self) {
        if !self.pending.is_empty() || self.held_counts().0 > 0 {
            let _ = self.flush();
        }
    }
}

// A lock held by another process: the handle itself is sound, and opening another would
// wait as long again.
fn is_contention(err: &StoreError) -> bool {
    matches!(err, StoreError::Locked { .. } | StoreError::Busy { .. })
}
