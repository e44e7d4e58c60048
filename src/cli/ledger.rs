//! The one seam between `run` and the store: recovery decisions that never fail and never
//! keep `run` waiting past a bound.
//!
//! A thread of its own owns the store handle, so a stalled or broken store never blocks the
//! supervisor, which keeps answering signals. Every crash and success is also applied to an
//! in-memory [`BackendRecoveryState`] under the same policy. When the store errs, or does not
//! answer within the patience bound, the decision comes from memory (the store is *degraded*)
//! and the write stays queued, in order, to be written through with its original time once
//! the store answers again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryState,
    BackendStatus, RecoveryStore, StoreOptions, Timestamp,
};

use super::process::Waker;

/// How often a degraded store is tried again while writes wait for it.
const RETRY: Duration = Duration::from_secs(1);
/// While the store is degraded, how long a call waits for it before memory decides: long
/// enough for a store that is back to answer, short enough that a stalled one costs nothing.
const DEGRADED_PATIENCE: Duration = Duration::from_millis(100);

/// A question or a write for the store thread.
enum Job {
    Policy,
    Status(Timestamp),
    Crash(Timestamp),
    Success,
}

impl Job {
    /// Writes are kept until the store takes them; questions are answered or dropped.
    fn is_write(&self) -> bool {
        matches!(self, Job::Crash(_) | Job::Success)
    }
}

/// The store thread's answer to job `id`.
pub struct Reply {
    id: u64,
    answer: Result<Answer, String>,
    /// No write is waiting for the store any more.
    drained: bool,
}

/// The store's answer to one job.
pub enum Answer {
    /// The policy stored.
    Policy(BackendRecoveryPolicy),
    /// Where the key stands.
    Status(BackendStatus),
    /// A crash's decision.
    Decision(BackendRecoveryDecision),
    /// A write with nothing to say.
    Done,
}

/// What the supervisor learns from one call: the answer, and whether the store's health just
/// changed (for the one-time warning and the "back" notice).
pub enum Health {
    /// Nothing new to say.
    Same,
    /// The store just failed or stalled: say so once, with the cause.
    Lost(String),
    /// The store answers again and every queued write is in it.
    Back,
}

/// Where `run` keeps one key's recovery state. See the module docs.
pub struct Ledger {
    key: BackendKey,
    jobs: Sender<(u64, Job)>,
    replies: Receiver<Reply>,
    next_id: u64,
    memory: BackendRecoveryState,
    /// Crashes applied to `memory` since its last success.
    memory_crashes: u32,
    /// The ids of writes not yet acknowledged by the store.
    unsaved: Vec<u64>,
    policy: BackendRecoveryPolicy,
    patience: Duration,
    degraded: bool,
}

/// A call still waiting for the store: give it to [`Ledger::settle`] after each wake-up.
pub struct Pending {
    id: u64,
    deadline: Instant,
}

impl Pending {
    /// When the store's answer stops being worth waiting for.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Ledger {
    /// Starts the store thread for `key` on the store at `path` (created when missing). It
    /// opens the store itself, so even a hanging open never blocks the caller. `patience`
    /// bounds each wait for an answer; `waker` is woken on every answer.
    pub fn start(
        path: PathBuf,
        key: BackendKey,
        patience: Duration,
        waker: Waker,
    ) -> std::io::Result<Self> {
        let (jobs, job_rx) = mpsc::channel();
        let (reply_tx, replies) = mpsc::channel();
        let thread_key = key.clone();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || serve(path, thread_key, job_rx, reply_tx, waker))?;
        Ok(Self {
            key,
            jobs,
            replies,
            next_id: 0,
            memory: BackendRecoveryState::new(),
            memory_crashes: 0,
            unsaved: Vec::new(),
            policy: BackendRecoveryPolicy::default(),
            patience,
            degraded: false,
        })
    }

    /// The policy in force: the store's once read, the default before.
    pub fn policy(&self) -> BackendRecoveryPolicy {
        self.policy
    }

    /// How many crashes and successes the store has not acknowledged yet.
    pub fn unsaved(&self) -> usize {
        self.unsaved.len()
    }

    fn submit(&mut self, job: Job) -> Pending {
        self.next_id += 1;
        if job.is_write() {
            self.unsaved.push(self.next_id);
        }
        // A dead store thread answers nothing; the caller's deadline then decides from memory.
        let _ = self.jobs.send((self.next_id, job));
        let patience = if self.degraded {
            DEGRADED_PATIENCE.min(self.patience)
        } else {
            self.patience
        };
        Pending {
            id: self.next_id,
            deadline: Instant::now() + patience,
        }
    }

    /// Asks for the store's policy (kept for the in-memory fallback).
    pub fn ask_policy(&mut self) -> Pending {
        self.submit(Job::Policy)
    }

    /// Asks whether the key may start now.
    pub fn ask_status(&mut self) -> Pending {
        self.submit(Job::Status(Timestamp::now()))
    }

    /// Records a crash, now.
    pub fn record_crash(&mut self) -> Pending {
        self.submit(Job::Crash(Timestamp::now()))
    }

    /// Records a success. Nobody waits for its answer; [`Ledger::settle`] still reports the
    /// store's health from it.
    pub fn record_success(&mut self) {
        self.memory.record_success(&self.key);
        self.memory_crashes = 0;
        self.submit(Job::Success);
    }

    /// Takes the store's answers that have arrived. Returns the health change, and the
    /// outcome of `waiting` once known: from the store, or from memory once its deadline has
    /// passed or the store erred.
    pub fn settle(&mut self, waiting: Option<&Pending>) -> (Health, Option<Outcome>) {
        let mut health = Health::Same;
        let mut outcome = None;
        while let Ok(reply) = self.replies.try_recv() {
            let mine = waiting.is_some_and(|w| w.id == reply.id);
            match reply.answer {
                Ok(answer) => {
                    self.unsaved.retain(|&id| id != reply.id);
                    if let Answer::Policy(policy) = &answer {
                        self.adopt(*policy);
                    }
                    if self.degraded && reply.drained {
                        self.degraded = false;
                        health = Health::Back;
                    }
                    if mine {
                        outcome = Some(Outcome::Store(answer));
                    }
                }
                Err(cause) => {
                    if !self.degraded {
                        self.degraded = true;
                        health = Health::Lost(cause);
                    }
                    if mine {
                        outcome = Some(Outcome::Memory);
                    }
                }
            }
        }
        if outcome.is_none() && waiting.is_some_and(|w| Instant::now() >= w.deadline) {
            if !self.degraded {
                self.degraded = true;
                health = Health::Lost(format!(
                    "no answer within {}",
                    humantime::format_duration(self.patience)
                ));
            }
            outcome = Some(Outcome::Memory);
        }
        (health, outcome)
    }

    /// The decision for a crash recorded with [`Ledger::record_crash`], once settled: the
    /// store's, else the in-memory policy's. The crash is applied to memory either way.
    /// The flag is true when the store decided.
    pub fn crash_decision(&mut self, outcome: Outcome) -> (BackendRecoveryDecision, bool) {
        let local = self.memory.record_crash(self.key.clone(), Instant::now());
        self.memory_crashes += 1;
        match outcome {
            Outcome::Store(Answer::Decision(d)) => (d, true),
            _ => (local, false),
        }
    }

    /// Where the key stands, from a settled status answer. Only the store knows a refusal
    /// before a start; in memory a refusal comes with the crash decision itself.
    pub fn standing(&self, outcome: Outcome) -> Standing {
        match outcome {
            Outcome::Store(Answer::Status(BackendStatus::Refused { retry_after, .. })) => {
                Standing::Refused(retry_after)
            }
            Outcome::Store(_) => Standing::Free,
            Outcome::Memory => Standing::Unknown,
        }
    }

    /// Takes the store's policy; the state in memory restarts under it unless it holds a
    /// crash (a policy read late, after the store came back, must not erase it).
    fn adopt(&mut self, policy: BackendRecoveryPolicy) {
        if policy != self.policy && self.memory_crashes == 0 {
            self.policy = policy;
            self.memory = BackendRecoveryState::with_policy(policy);
        }
    }
}

/// Where a key stands before a start.
pub enum Standing {
    /// The store refuses it for this long.
    Refused(Duration),
    /// The store lets it start.
    Free,
    /// The store did not answer: nothing refuses it but the crash decisions made in memory.
    Unknown,
}

/// How a call was settled.
pub enum Outcome {
    /// The store answered.
    Store(Answer),
    /// The store erred or stalled: decide from memory.
    Memory,
}

/// The store thread: applies jobs in order; a failed write stays queued and is retried every
/// [`RETRY`], and on the next job, with its original time.
fn serve(
    path: PathBuf,
    key: BackendKey,
    jobs: Receiver<(u64, Job)>,
    replies: Sender<Reply>,
    waker: Waker,
) {
    let mut store: Option<RecoveryStore> = None;
    let mut queue: VecDeque<(u64, Job, bool)> = VecDeque::new();
    loop {
        let next = if queue.is_empty() {
            jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            jobs.recv_timeout(RETRY)
        };
        match next {
            Ok((id, job)) => queue.push_back((id, job, false)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Everything already sent, so that "drained" means no write is waiting anywhere.
        queue.extend(jobs.try_iter().map(|(id, job)| (id, job, false)));
        while let Some((id, job, answered)) = queue.front() {
            let result = apply(&mut store, &path, &key, job);
            let failed = result.is_err();
            if failed {
                // Reopen next time: the file may be repaired, replaced or unlocked by then.
                store = None;
            }
            if !*answered || !failed {
                let drained = !failed && queue.len() == 1;
                let _ = replies.send(Reply {
                    id: *id,
                    answer: result,
                    drained,
                });
                waker.wake();
            }
            if failed {
                // Answer every queued call now (from memory); keep only the writes.
                for (id, _, answered) in queue.iter_mut() {
                    if !*answered {
                        let _ = replies.send(Reply {
                            id: *id,
                            answer: Err("store unavailable".into()),
                            drained: false,
                        });
                    }
                    *answered = true;
                }
                queue.retain(|(_, job, _)| job.is_write());
                waker.wake();
                break;
            }
            queue.pop_front();
        }
    }
}

fn apply(
    store: &mut Option<RecoveryStore>,
    path: &std::path::Path,
    key: &BackendKey,
    job: &Job,
) -> Result<Answer, String> {
    let store = match store {
        Some(store) => store,
        None => store.insert(
            RecoveryStore::open_with(path, StoreOptions::default()).map_err(|e| e.to_string())?,
        ),
    };
    let answer = match job {
        Job::Policy => store.policy().map(Answer::Policy),
        Job::Status(now) => store.status(key, *now).map(Answer::Status),
        Job::Crash(now) => store.record_crash(key, *now).map(Answer::Decision),
        Job::Success => store.record_success(key).map(|_| Answer::Done),
    };
    answer.map_err(|e| e.to_string())
}
