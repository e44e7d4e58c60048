//! Degraded mode of a [`DurableRecoveryState`]: the retry schedule of a failing store, the
//! state remembered for decisions taken in memory, and the write-through that replays them, in
//! order, once the store answers again.

use std::time::{Duration, Instant, SystemTime};

use super::queue::{self, Pending};
use super::{DurableRecoveryState, FIRST_RETRY_INTERVAL, MAX_RETRY_INTERVAL, StoreHealth};
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
    /// Whether decisions are reaching the file, and if not, why and how many wait.
    pub fn health(&self) -> StoreHealth {
        match &self.degraded {
            None => StoreHealth::Durable,
            Some(d) => StoreHealth::Degraded {
                since: d.since,
                cause: d.cause.clone(),
                pending: self.pending.len(),
                dropped: d.dropped,
            },
        }
    }

    /// Tries the store now, whatever the retry schedule, and writes through every pending
    /// decision.
    ///
    /// # Errors
    ///
    /// The store's error when it still fails; the handle stays degraded and keeps its queue.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.degraded.is_none() {
            return Ok(());
        }
        self.write_through().inspect_err(|err| self.degrade(err))
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
        let store = match &mut self.store {
            Some(store) => store,
            slot @ None => slot.insert(RecoveryStore::open_with(&self.path, self.options.clone())?),
        };
        let mut done = 0;
        let result: Result<(), StoreError> = self.pending.iter().try_for_each(|op| {
            match op {
                Pending::Crash(key, at, report) => {
                    store.record_crash_with(key, *at, *report).map(drop)
                }
                Pending::Success(key) => store.record_success(key).map(drop),
            }?;
            done += 1;
            Ok(())
        });
        // What was committed is in the file: never replay it.
        self.pending.drain(..done);
        result?;
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
        if !self.pending.is_empty() {
            let _ = self.flush();
        }
    }
}

// A lock held by another process: the handle itself is sound, and opening another would
// wait as long again.
fn is_contention(err: &StoreError) -> bool {
    matches!(err, StoreError::Locked { .. } | StoreError::Busy { .. })
}
