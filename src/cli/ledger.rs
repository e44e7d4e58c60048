//! The one seam between `run` and the store: recovery decisions that never fail and never
//! keep `run` waiting past a bound.
//!
//! A thread of its own owns a [`DurableRecoveryState`], so a stalled or broken store never
//! blocks the supervisor, which keeps answering signals. That state decides from the store,
//! or, when the store fails, from the same policy in memory, queueing its writes to be written
//! through once the store is back (the thread retries every [`RETRY`]). When the thread itself
//! does not answer within the patience bound (a store stalled by another process), the
//! decision comes from an in-memory [`BackendRecoveryState`] that mirrors every crash and
//! success here; the thread still applies the call, in order and with its own time, once it
//! gets through.
//!
//! A key the store cannot judge (the override row that would decide it, or its entry, is
//! damaged) is no store failure: its answers are [`Answer::Unjudged`], with the store's error,
//! and `run` stops supervising it rather than judge it by another policy.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryState,
    BackendStatus, CrashReport, DurableRecoveryState, StoreHealth, StoreOptions, Timestamp,
};

use super::process::Waker;

/// How often a degraded store is tried again while writes wait for it (the library's own
/// schedule backs off to 30 s, too slow for an operator watching `run` recover).
const RETRY: Duration = Duration::from_secs(1);
/// While the store is degraded, how long a call waits for it before memory decides: long
/// enough for a store that is back to answer, short enough that a stalled one costs nothing.
const DEGRADED_PATIENCE: Duration = Duration::from_millis(100);

/// A question or a write for the store thread.
enum Job {
    Policy,
    Status(Timestamp),
    Crash(CrashReport),
    Success,
    /// Write through whatever waits for the store.
    Flush,
}

/// The store thread's answer to job `id` (`None` after a retry nobody asked for), and the
/// store's health after it: `Err((cause, writes waiting))` while decisions come from memory.
pub struct Reply {
    id: u64,
    answer: Option<Answer>,
    health: Result<(), (String, usize)>,
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
    /// The store cannot judge this key: its error, naming the damaged override row (or entry)
    /// and the command that repairs it. Any decision was taken in memory only.
    Unjudged(String),
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
    /// The store thread's last answer said that writes wait for a degraded store.
    unsaved: bool,
    /// The highest job id the store thread has answered.
    answered: u64,
    /// The id of the last crash or success sent to the store thread.
    last_write: u64,
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
    /// Starts the store thread for `key` on the store at `path`, opened with `options`
    /// (created when missing). It
    /// opens the store itself, so even a hanging open never blocks the caller. `patience`
    /// bounds each wait for an answer; `waker` is woken on every answer.
    pub fn start(
        path: PathBuf,
        options: StoreOptions,
        key: BackendKey,
        patience: Duration,
        waker: Waker,
    ) -> std::io::Result<Self> {
        let (jobs, job_rx) = mpsc::channel();
        let (reply_tx, replies) = mpsc::channel();
        let thread_key = key.clone();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || serve(path, options, thread_key, job_rx, reply_tx, waker))?;
        Ok(Self {
            key,
            jobs,
            replies,
            next_id: 0,
            memory: BackendRecoveryState::new(),
            memory_crashes: 0,
            unsaved: false,
            answered: 0,
            last_write: 0,
            policy: BackendRecoveryPolicy::default(),
            patience,
            degraded: false,
        })
    }

    /// The policy in force for this key (its override, its service's, or the store's default)
    /// once read, the default before.
    pub fn policy(&self) -> BackendRecoveryPolicy {
        self.policy
    }

    /// True while some crash or success may not be in the store yet: the store thread has
    /// calls it did not answer, or its last answer said the store was degraded.
    pub fn unsaved(&self) -> bool {
        self.unsaved || self.answered < self.last_write
    }

    /// True while decisions come from memory: the store failed, or did not answer in time.
    pub fn degraded(&self) -> bool {
        self.degraded
    }

    /// Asks the store thread to write through what waits for the store.
    pub fn flush(&mut self) -> Pending {
        self.submit(Job::Flush)
    }

    fn submit(&mut self, job: Job) -> Pending {
        self.next_id += 1;
        if matches!(job, Job::Crash(..) | Job::Success) {
            self.last_write = self.next_id;
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

    /// Records a crash, stamped once the store's lock is held, with how the child ended (kept in
    /// the entry's crash history).
    pub fn record_crash(&mut self, report: CrashReport) -> Pending {
        self.submit(Job::Crash(report))
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
            self.answered = self.answered.max(reply.id);
            let durable = reply.health.is_ok();
            // Not a store failure: the answer itself says what is wrong, and `run` ends on it.
            let unjudged = matches!(reply.answer, Some(Answer::Unjudged(_)));
            match reply.health {
                _ if unjudged => {}
                Ok(()) => {
                    self.unsaved = false;
                    if self.degraded {
                        self.degraded = false;
                        health = Health::Back;
                    }
                }
                Err((cause, waiting_writes)) => {
                    self.unsaved = waiting_writes > 0;
                    if !self.degraded {
                        self.degraded = true;
                        health = Health::Lost(cause);
                    }
                }
            }
            if let Some(Answer::Policy(policy)) = &reply.answer {
                self.adopt(*policy);
            }
            if let (Some(answer), Some(w)) = (reply.answer, waiting)
                && w.id == reply.id
            {
                outcome = Some(Outcome::Store(answer, durable));
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
            Outcome::Store(Answer::Decision(d), durable) => (d, durable),
            _ => (local, false),
        }
    }

    /// Where the key stands, from a settled status answer. Only the store knows a refusal
    /// before a start; in memory a refusal comes with the crash decision itself.
    pub fn standing(&self, outcome: Outcome) -> Standing {
        match outcome {
            Outcome::Store(Answer::Status(BackendStatus::Refused { retry_after, .. }), _) => {
                Standing::Refused(retry_after)
            }
            Outcome::Store(..) => Standing::Free,
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
    /// The store thread answered; the flag is false when that answer came from the policy
    /// in memory because the store is degraded.
    Store(Answer, bool),
    /// The store erred or stalled: decide from memory.
    Memory,
}

impl Outcome {
    /// The store's error when it cannot judge this key ([`Answer::Unjudged`]).
    pub fn unjudged(&self) -> Option<&str> {
        match self {
            Self::Store(Answer::Unjudged(error), _) => Some(error),
            _ => None,
        }
    }
}

/// The store thread: applies jobs in order. While the store is degraded it flushes the
/// queued writes every [`RETRY`], and each answer carries the store's health.
fn serve(
    path: PathBuf,
    options: StoreOptions,
    key: BackendKey,
    jobs: Receiver<(u64, Job)>,
    replies: Sender<Reply>,
    waker: Waker,
) {
    let existed = path.symlink_metadata().is_ok();
    let mut state =
        DurableRecoveryState::open_or_degraded(&path, options, BackendRecoveryPolicy::default());
    if !existed && path.symlink_metadata().is_ok() {
        // As every command that creates a store says, so a mistyped --db shows at once; in
        // the form of `run`'s progress lines, one write.
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let line = format!(
            "{now} recovery-store: run {key}: created a new store at {}\n",
            path.display()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
    loop {
        let degraded = !matches!(state.health_of(&key), StoreHealth::Durable);
        let next = if degraded {
            jobs.recv_timeout(RETRY)
        } else {
            jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let (id, answer) = match next {
            Ok((id, job)) => (id, Some(apply(&mut state, &key, job))),
            Err(RecvTimeoutError::Timeout) => {
                if state.flush().is_err() {
                    continue;
                }
                (0, None)
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let health = match state.health_of(&key) {
            StoreHealth::Durable => Ok(()),
            StoreHealth::Degraded { cause, pending, .. } => Err((cause, pending)),
            _ => Err(("store unavailable".into(), 0)),
        };
        let _ = replies.send(Reply { id, answer, health });
        waker.wake();
    }
}

fn apply(state: &mut DurableRecoveryState, key: &BackendKey, job: Job) -> Answer {
    let asks = matches!(job, Job::Policy | Job::Status(_) | Job::Crash(_));
    let answer = answer(state, key, job);
    // Whatever memory decided, a key the store cannot judge is not supervised on it.
    match state.unjudged(key) {
        Some(error) if asks => Answer::Unjudged(error.to_string()),
        _ => answer,
    }
}

fn answer(state: &mut DurableRecoveryState, key: &BackendKey, job: Job) -> Answer {
    match job {
        // The policy that judges this key: an override of it or its service, or the default.
        Job::Policy => Answer::Policy(state.policy_for(key).recovery),
        Job::Status(now) => Answer::Status(state.status(key, now)),
        // Stamped once the store's lock is held: a wait for a busy store never gives a
        // decision taken at a stale time.
        Job::Crash(report) => Answer::Decision(state.record_crash_now_with(key, report)),
        Job::Success => {
            state.record_success(key);
            Answer::Done
        }
        Job::Flush => {
            let _ = state.flush();
            Answer::Done
        }
    }
}
