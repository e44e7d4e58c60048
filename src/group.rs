//! Group commit: concurrent `record_crash` calls in one process share one write transaction.
//!
//! Each caller queues its crash. A caller that finds no commit in progress becomes the leader:
//! it takes the whole queue, applies it in queue order in one transaction, commits it, and
//! hands every caller in the batch its own result. Callers that arrive meanwhile wait on the
//! condition variable, and one of them leads the next batch. Nobody returns before the commit
//! holding their crash is durable.
//!
//! A caller with no company commits at once. Only after a batch of several does the next
//! leader wait, at most [`LINGER`], for as many crashes as that batch held: the callers it just
//! released are usually about to come back, and gathering them nearly halves the syncs per
//! crash (measured by `cargo bench --bench compare`, row d).
//!
//! How one batch becomes one write transaction, and what each caller gets when it fails, is in
//! `batch`.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::key::BackendKey;
use crate::policy::BackendRecoveryDecision;
use crate::record::CrashReport;
use crate::time::Timestamp;

mod batch;
pub(crate) use batch::commit_crashes;

/// One queued crash, with its time (`None` stamps it once the transaction holds the write
/// lock) and how the process ended.
pub(crate) type Crash = (BackendKey, Option<Timestamp>, CrashReport);
/// What its caller gets back.
pub(crate) type Outcome = Result<BackendRecoveryDecision, StoreError>;

/// Longest a leader waits for the callers of the previous batch to come back.
const LINGER: Duration = Duration::from_micros(200);

#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
    /// Signalled on every arrival, for a lingering leader.
    arrived: Condvar,
    /// [`LINGER`], except in tests.
    linger: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            done: Condvar::new(),
            arrived: Condvar::new(),
            linger: LINGER,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Crashes waiting for a leader, in arrival order, with their callers' tickets.
    queue: Vec<(u64, Crash)>,
    /// Results not yet collected by their callers.
    results: HashMap<u64, Outcome>,
    /// True while a leader is committing a batch.
    leading: bool,
    next_ticket: u64,
    /// Batches committed (or attempted), for tests and benchmarks.
    batches: u64,
    /// Crashes in the last batch.
    last_batch: usize,
}

impl GroupCommit {
    /// Queues `crash` and returns its outcome once the batch holding it has been run by
    /// `run_batch`, which gets the batch in queue order and returns one outcome per crash.
    pub fn submit(
        &self,
        crash: Crash,
        path: &Path,
        run_batch: impl FnOnce(&[Crash]) -> Vec<Outcome>,
    ) -> Outcome {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, crash));
        self.arrived.notify_one();
        // A caller leads at most once: its own crash is in the batch it leads.
        let mut run_batch = Some(run_batch);
        loop {
            if let Some(outcome) = state.results.remove(&ticket) {
                return outcome;
            }
            // Our crash has no result and nobody is leading: it is still queued, so we lead.
            if !state.leading
                && let Some(run_batch) = run_batch.take()
            {
                state.leading = true;
                state = self.linger(state);
                state.batches += 1;
                let batch = std::mem::take(&mut state.queue);
                state.last_batch = batch.len();
                drop(state);
                let (tickets, crashes): (Vec<u64>, Vec<Crash>) = batch.into_iter().unzip();
                let ran = catch_unwind(AssertUnwindSafe(|| run_batch(&crashes)));
                state = self.lock();
                state.leading = false;
                let outcomes = match ran {
                    Ok(outcomes) => outcomes,
                    Err(panic) => {
                        // Release the followers of this batch before the panic goes on.
                        for &t in &tickets {
                            state.results.insert(t, Err(lost(path)));
                        }
                        state.results.remove(&ticket);
                        self.done.notify_all();
                        drop(state);
                        resume_unwind(panic);
                    }
                };
                let mut outcomes = outcomes.into_iter();
                for t in tickets {
                    let outcome = outcomes.next().unwrap_or_else(|| Err(lost(path)));
                    state.results.insert(t, outcome);
                }
                // Followers of this batch collect their results; one of those still queued leads.
                self.done.notify_all();
                continue;
            }
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    // Under contention the callers of the previous batch are about to come back with their next
    // crash: waiting a moment for them roughly doubles the crashes one commit carries. After a
    // batch of one (no contention seen) a leader starts at once.
    fn linger<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if state.last_batch <= 1 {
            return state;
        }
        let deadline = Instant::now() + self.linger;
        while state.queue.len() < state.last_batch {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            state = self
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state
    }

    /// Batches run so far.
    pub fn batches(&self) -> u64 {
        self.lock().batches
    }

    /// Crashes queued and waiting for a leader.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// For callers whose batch ended without an outcome for them: its leader panicked.
fn lost(path: &Path) -> StoreError {
    StoreError::Storage {
        path: path.to_owned(),
        source: "the thread committing this crash together with others failed before \
                 reporting its outcome"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn crash(i: usize) -> Crash {
        (
            format!("shared/svc-{i}@1.0.0").parse().unwrap(),
            Some(Timestamp::from_parts(i as i64, None)),
            CrashReport::default(),
        )
    }

    fn retry(attempt: u32) -> Outcome {
        Ok(BackendRecoveryDecision::Retry {
            retry_after: Duration::from_millis(attempt.into()),
            attempt,
        })
    }

    // Decides each crash by the number in its key, so every caller can check it got its own.
    fn decide(batch: &[Crash]) -> Vec<Outcome> {
        batch
            .iter()
            .map(|(key, _, _)| {
                let n: u32 = key.service_name[4..].parse().unwrap();
                retry(n)
            })
            .collect()
    }

    #[test]
    fn a_lone_caller_leads_a_batch_of_one() {
        let group = GroupCommit::default();
        for i in 0..3 {
            let out = group.submit(crash(i), Path::new("test"), |batch| {
                assert_eq!(batch.len(), 1);
                decide(batch)
            });
            assert_eq!(out.unwrap(), retry(i as u32).unwrap());
        }
        assert_eq!(group.batches(), 3);
    }

    // Deterministic: the first leader is held inside its commit until seven callers have
    // queued behind it; they must then share the next batch, each getting its own outcome.
    #[test]
    fn callers_queued_behind_a_commit_share_the_next_one() {
        let group = Arc::new(GroupCommit::default());
        let release = Arc::new(AtomicBool::new(false));
        let leader = {
            let (group, release) = (group.clone(), release.clone());
            std::thread::spawn(move || {
                group.submit(crash(0), Path::new("test"), |batch| {
                    while !release.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    decide(batch)
                })
            })
        };
        while group.batches() == 0 {
            std::thread::yield_now();
        }
        let followers: Vec<_> = (1..8)
            .map(|i| {
                let group = group.clone();
                std::thread::spawn(move || group.submit(crash(i), Path::new("test"), decide))
            })
            .collect();
        while group.waiting() < 7 {
            std::thread::yield_now();
        }
        release.store(true, Ordering::Release);
        assert_eq!(leader.join().unwrap().unwrap(), retry(0).unwrap());
        for (i, f) in followers.into_iter().enumerate() {
            assert_eq!(f.join().unwrap().unwrap(), retry(i as u32 + 1).unwrap());
        }
        assert_eq!(group.batches(), 2);
    }

    // Deterministic: with a linger far longer than the test, the leader after a batch of three
    // waits until three crashes are queued, and commits them together.
    #[test]
    fn after_a_contended_batch_the_next_leader_gathers_as_many() {
        let group = Arc::new(GroupCommit {
            linger: Duration::from_secs(60),
            ..GroupCommit::default()
        });
        group.lock().last_batch = 3;
        let callers: Vec<_> = (0..3)
            .map(|i| {
                let group = group.clone();
                std::thread::spawn(move || {
                    group.submit(crash(i), Path::new("test"), |batch| {
                        assert_eq!(batch.len(), 3, "the leader gathered the whole batch");
                        decide(batch)
                    })
                })
            })
            .collect();
        for (i, caller) in callers.into_iter().enumerate() {
            assert_eq!(caller.join().unwrap().unwrap(), retry(i as u32).unwrap());
        }
        assert_eq!(group.batches(), 1);
        // After a batch of one, a lone caller starts at once: the 60 s linger would show.
        group.lock().last_batch = 1;
        let started = Instant::now();
        group.submit(crash(9), Path::new("test"), decide).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no linger after a batch of one"
        );
    }

    #[test]
    fn a_panicking_leader_releases_its_followers() {
        let group = Arc::new(GroupCommit::default());
        let release = Arc::new(AtomicBool::new(false));
        let leader = {
            let (group, release) = (group.clone(), release.clone());
            std::thread::spawn(move || {
                group.submit(crash(0), Path::new("test"), |_| {
                    while !release.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    Vec::new()
                })
            })
        };
        while group.batches() == 0 {
            std::thread::yield_now();
        }
        let follower = {
            let group = group.clone();
            std::thread::spawn(move || {
                group.submit(crash(1), Path::new("test"), |_| panic!("boom"))
            })
        };
        while group.waiting() < 1 {
            std::thread::yield_now();
        }
        release.store(true, Ordering::Release);
        // The leader returned too few outcomes: both get an error, nobody hangs.
        assert!(leader.join().unwrap().is_err());
        // The follower leads the next batch, which panics; the panic reaches its own caller.
        assert!(follower.join().is_err());
        assert!(group.submit(crash(2), Path::new("test"), decide).is_ok());
    }
}
