//! [`DurableRecoveryState`]: the broker's in-memory API, kept on disk, that always answers.
//!
//! A broker written against [`BackendRecoveryState`](crate::BackendRecoveryState) switches to
//! durable state by changing its constructor. Decisions come from the store; when the store
//! fails (locked past its bound, disk full, damaged, unreadable) they come from the same policy
//! held in memory, and the state reaches the file once the store is back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::StoreError;
use crate::key::BackendKey;
use crate::policy::{BackendRecoveryPolicy, RecoveryPolicy};
use crate::record::RecoveryEntry;
use crate::store::{RecoveryStore, StoreOptions};
#[cfg(doc)]
use crate::time::Timestamp;

mod anchor;
mod decide;
mod degraded;
mod queue;
mod unjudged;
use degraded::Degraded;
use queue::Pending;
use unjudged::Unjudged;

/// First wait before a degraded handle tries its store again; it doubles up to
/// [`MAX_RETRY_INTERVAL`] while the store keeps failing.
pub const FIRST_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between two attempts to reach a failing store.
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Most decisions held for write-through while degraded; beyond it the oldest are dropped (and
/// counted in [`StoreHealth::Degraded::dropped`]).
pub const MAX_PENDING: usize = 65_536;

/// Whether the decisions of a [`DurableRecoveryState`] are reaching its file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreHealth {
    /// Every decision so far is in the file, and the store judges every key this handle asked
    /// about.
    Durable,
    /// The store failed, or it cannot judge some key (the override row that would decide it, or
    /// its entry, is damaged: see [`DurableRecoveryState::unjudged`]); those decisions come
    /// from memory and wait to be written through.
    Degraded {
        /// When the first failure of this episode happened.
        since: SystemTime,
        /// The latest failure, as the store reported it (it says what to do); for a key the
        /// store cannot judge, that key and the error naming the damaged row and its remedy.
        cause: String,
        /// Decisions waiting to be written to the file (a failing store's queue, and those
        /// held for keys the store cannot judge).
        pending: usize,
        /// Decisions dropped because more than [`MAX_PENDING`] were waiting.
        dropped: u64,
    },
}

/// Recovery state kept in a store file, with the reference module's API: `record_crash(key,
/// Instant)` and `record_success(&key)` return plain values, never a `Result`.
///
/// Replacing `BackendRecoveryState::with_policy(p)` with
/// `DurableRecoveryState::open_with_policy(path, p)?` is the whole migration for a broker.
///
/// - **Time.** An [`Instant`] is mapped to a [`Timestamp`] through one anchor per process
///   (both clocks read together), so instants in the past or the future keep their distance
///   from each other exactly, across handles and reopens. The anchor is taken again when the
///   clocks drift apart by more than a second (a suspend, which [`Instant`] does not count).
/// - **Degraded mode.** When a call on the store fails, the decision comes from the same
///   policy applied to the state held in memory: the entry read from the file where reads still
///   work, plus every decision taken since. The decision is queued and written through, in
///   order, once the store answers again; [`health`](Self::health) says whether and why the
///   handle is degraded. While degraded, the store is tried again after 1 s, then at doubling
///   intervals up to 30 s, so a broker does not pay a failing store's bound on every call.
/// - **Keys the store refuses** ([`BackendKey::validate`]) are decided in memory only, as the
///   reference does, and never written; [`memory_only_keys`](Self::memory_only_keys) counts
///   them.
/// - **Keys the store cannot judge**, because the override row that would decide them (their
///   `key:` row, else their `service:` row) or their entry is damaged, are a permanent error of
///   that key, never an outage: every other key stays durable. Such a key is decided in memory
///   by the policy the store applied to it when it last answered for it through this handle,
///   else with no retry at all (every crash refused for the rest of the default's budget
///   window), never by the default as if nothing were wrong. Its decisions are held for it
///   alone and written through once the store judges it again (the row removed or replaced;
///   tried on every call for the key, on [`flush`](Self::flush), and every 30 s); until then
///   [`health`](Self::health) stays degraded naming the key and the row, and
///   [`unjudged`](Self::unjudged) returns the error. A handle dropped first loses them.
/// - **Drop** writes through what is pending, if the store answers; if it still fails, the
///   pending decisions are lost with the handle, as the in-memory module's would be. Call
///   [`flush`](Self::flush) first to find out.
/// - **The policy** given to [`open_with_policy`](Self::open_with_policy) is stored in the
///   file and shared by every process that opens it (the last one given wins); it must have a
///   backoff shorter than its budget window (see [`BackendRecoveryPolicy::validate`]).
#[derive(Debug)]
pub struct DurableRecoveryState {
    path: PathBuf,
    options: StoreOptions,
    store: Option<RecoveryStore>,
    /// The store's default policy as it last answered.
    policy: RecoveryPolicy,
    /// The policy that judged each key when the store last answered for it (a per-service or
    /// per-key override, or the default); degraded decisions for that key use it, and keys not
    /// in it use `policy`.
    key_policies: HashMap<BackendKey, RecoveryPolicy>,
    /// State decided in memory while degraded; `None` marks a key cleared in memory.
    shadow: HashMap<BackendKey, Option<RecoveryEntry>>,
    pending: VecDeque<Pending>,
    /// What the store last committed for each key this handle decided, so that a file that
    /// turns unreadable does not hand a crash-looping backend a fresh retry.
    committed: HashMap<BackendKey, RecoveryEntry>,
    degraded: Option<Degraded>,
    memory_only: HashMap<BackendKey, RecoveryEntry>,
    /// Keys the store refuses to judge (a damaged override row or entry of their own), each
    /// with its state and decisions held in memory, apart from `shadow` and `pending`.
    unjudged: BTreeMap<BackendKey, Unjudged>,
    /// When the unjudged keys are next tried without a call of their own.
    unjudged_next_try: Instant,
}

impl DurableRecoveryState {
    /// Opens (creating if missing) the store at `path`, keeping the policy stored there (the
    /// default policy for a new file).
    ///
    /// # Errors
    ///
    /// Whatever [`RecoveryStore::open`] returns: a foreign, damaged or newer file, a path that
    /// cannot be created, a store held past its lock bound.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the store at `path` and stores `policy` in it, like
    /// [`BackendRecoveryState::with_policy`](crate::BackendRecoveryState::with_policy).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`StoreError::InvalidPolicy`] for a backoff not shorter
    /// than the budget window.
    pub fn open_with_policy(
        path: impl AsRef<Path>,
        policy: BackendRecoveryPolicy,
    ) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default().policy(policy))
    }

    /// Opens the store at `path` with `options`.
    ///
    /// # Errors
    ///
    /// As [`RecoveryStore::open_with`]; [`StoreError::ReadOnly`] for read-only options, with
    /// which no decision could ever be kept.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        if options.is_read_only() {
            // Every decision would stay in memory: refuse rather than degrade forever.
            return Err(StoreError::ReadOnly {
                path: path.as_ref().to_owned(),
            });
        }
        let store = RecoveryStore::open_with(path.as_ref(), options.clone())?;
        let policy = store.recovery_policy()?;
        Ok(Self::build(
            path.as_ref(),
            options,
            Some(store),
            policy,
            None,
        ))
    }

    /// Opens the store at `path`, or, when that fails, starts degraded with `fallback` as the
    /// policy (the one in `options` if given) and keeps trying to open the store.
    ///
    /// For supervisors that must keep a service running whatever state its store file is in.
    /// A missing file is never an error here when `options` allow creating it.
    pub fn open_or_degraded(
        path: impl AsRef<Path>,
        options: StoreOptions,
        fallback: BackendRecoveryPolicy,
    ) -> Self {
        let path = path.as_ref();
        match Self::open_with(path, options.clone()) {
            Ok(state) => state,
            Err(err) => {
                let policy = options.requested_policy().unwrap_or(fallback);
                Self::build(path, options, None, policy.into(), Some(err))
            }
        }
    }

    fn build(
        path: &Path,
        options: StoreOptions,
        store: Option<RecoveryStore>,
        policy: RecoveryPolicy,
        failure: Option<StoreError>,
    ) -> Self {
        let mut state = Self {
            path: path.to_owned(),
            options,
            store,
            policy,
            key_policies: HashMap::new(),
            shadow: HashMap::new(),
            pending: VecDeque::new(),
            committed: HashMap::new(),
            degraded: None,
            memory_only: HashMap::new(),
            unjudged: BTreeMap::new(),
            unjudged_next_try: Instant::now(),
        };
        if let Some(err) = failure {
            state.degrade(&err);
        }
        state
    }

    /// Keys the store refuses ([`BackendKey::validate`]), decided in memory only.
    pub fn memory_only_keys(&self) -> usize {
        self.memory_only.len()
    }

    /// The policy decisions are taken with: the store's, as of the last time it answered.
    pub fn policy(&self) -> BackendRecoveryPolicy {
        self.policy.recovery
    }

    /// [`policy`](Self::policy) with its retries per window.
    pub fn recovery_policy(&self) -> RecoveryPolicy {
        self.policy
    }

    /// The policy that judges `key` now: read from the store (its key override, its service's,
    /// or the default) and remembered for degraded decisions; while degraded, or while the
    /// store cannot judge the key ([`unjudged`](Self::unjudged)), the one it is decided by in
    /// memory ([`policy_of`](Self::policy_of)).
    pub fn policy_for(&mut self, key: &BackendKey) -> RecoveryPolicy {
        if key.validate().is_ok() {
            // An unjudged key is tried again first; a failing store leaves it to memory.
            let _ = self.retry_unjudged(key);
        }
        if key.validate().is_ok() && !self.unjudged.contains_key(key) {
            let read = self
                .reachable_store()
                .map(|s| Ok((s.entry_and_policy(key)?.1, s.recovery_policy()?)));
            match read {
                Some(Ok((policy, default))) => {
                    self.policy = default;
                    self.key_policies.insert(key.clone(), policy);
                }
                Some(Err(err)) if unjudged::is_unjudged(&err, key) => self.mark_unjudged(key, err),
                Some(Err(err)) => self.degrade(&err),
                None => {}
            }
        }
        self.policy_of(key)
    }

    /// The policy `key` is judged by in memory: the one (override or default) the store
    /// applied to it when it last answered for this key, else the store's default as last read.
    /// While the store answers, the store applies the current one itself.
    ///
    /// For a key the store cannot judge ([`unjudged`](Self::unjudged)) and never judged through
    /// this handle, the default's backoff and budget window with `retries_per_window` 0: no
    /// retry, every crash is refused for the rest of the window. (The stored [`RecoveryPolicy`]
    /// allows 1 or more; 0 only ever comes from here, and the store refuses to store it.)
    pub fn policy_of(&self, key: &BackendKey) -> RecoveryPolicy {
        match self.key_policies.get(key) {
            Some(policy) => *policy,
            None if self.unjudged.contains_key(key) => unjudged::no_retry(self.policy),
            None => self.policy,
        }
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store handle, when the store is open and nothing waits to be written through.
    pub fn store(&self) -> Option<&RecoveryStore> {
        self.store
            .as_ref()
            .filter(|_| self.degraded.is_none() && self.held_counts().0 == 0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn key(i: usize) -> BackendKey {
        BackendKey::new(
            crate::BrokerInstanceKey::Shared,
            format!("s{i}"),
            "1.0.0",
            "",
        )
    }

    // A store that cannot even be opened (its directory is a file): every decision is taken
    // in memory and queued.
    fn unreachable_state() -> (tempfile::TempDir, DurableRecoveryState) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let path = dir.path().join("file").join("recovery.redb");
        let state = DurableRecoveryState::open_or_degraded(
            path,
            StoreOptions::default(),
            BackendRecoveryPolicy::default(),
        );
        (dir, state)
    }

    #[test]
    fn a_full_queue_compacts_successes_then_drops_the_oldest_and_counts_them() {
        let (_dir, mut state) = unreachable_state();
        let now = Instant::now();
        // Crash and clear the same key over and over: compaction keeps only the last success.
        for _ in 0..MAX_PENDING {
            state.record_crash(key(0), now);
            state.record_success(&key(0));
        }
        let StoreHealth::Degraded {
            pending, dropped, ..
        } = state.health()
        else {
            panic!("degraded expected");
        };
        assert!(pending < MAX_PENDING / 2, "compacted: {pending}");
        assert_eq!(dropped, 0);
        // Distinct keys cannot be compacted: beyond the bound the oldest go, and are counted.
        for i in 1..=MAX_PENDING + 10 {
            state.record_crash(key(i), now);
        }
        let StoreHealth::Degraded {
            pending, dropped, ..
        } = state.health()
        else {
            panic!("degraded expected");
        };
        assert_eq!(pending, MAX_PENDING);
        assert!(dropped >= 10, "{dropped}");
        assert!(
            matches!(state.pending.back(), Some(Pending::Crash(k, ..)) if *k == key(MAX_PENDING + 10))
        );
    }
}
