//! [`RecoveryStore`]: the recovery policy with its state kept durably in a redb file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::{AuditAction, AuditEvent, Change};
use crate::error::StoreError;
use crate::group::{self, GroupCommit};
use crate::key::BackendKey;
use crate::overrides::{AppliedPolicy, Policies, PolicyScope};
use crate::policy::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendStatus, RecoveryPolicy,
};
use crate::record::{CrashRecord, CrashReport, RecoveryEntry};
use crate::storage::{OpenConfig, Storage, StorageBackend, Writer};
use crate::time::Timestamp;
use crate::window;
pub use crate::window::status_of;

/// Default redb page cache: a few MiB, plenty for tens of thousands of backends.
pub const DEFAULT_CACHE_SIZE: usize = 4 << 20;

/// Options for [`RecoveryStore::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    policy: Option<BackendRecoveryPolicy>,
    cache_size: usize,
    create: bool,
    read_only: bool,
    mode: u32,
    trust_any_owner: bool,
    lock_timeout: Duration,
}

/// Default bound on every wait for another process's lock: 5 s.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            policy: None,
            cache_size: DEFAULT_CACHE_SIZE,
            create: true,
            read_only: false,
            mode: 0o600,
            trust_any_owner: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl StoreOptions {
    /// Sets the store's policy. It is persisted in the file and applies to every process that
    /// opens the store. Without this, the policy already in the file is kept (the default
    /// policy for a new file). Opening an existing store with another policy than it holds
    /// writes an [`AuditAction::PolicySet`](crate::AuditAction) event; creating one does not.
    pub fn policy(mut self, policy: BackendRecoveryPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Sets the page cache size in bytes (default [`DEFAULT_CACHE_SIZE`]).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// Whether a missing file is created (the default) or reported as
    /// [`StoreError::NotFound`]. Inspection tools turn this off so they never create a store.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Opens without ever writing to the file: inspection leaves a store byte-for-byte as it
    /// was. Implies `create_if_missing(false)`; a policy set with [`policy`](Self::policy) is
    /// ignored, and writes return [`StoreError::ReadOnly`]. Needs only read access: a store
    /// whose last writer died is answered from a repaired in-memory view of the file (memory
    /// bounded by what the repair writes, a few MiB per million entries), which does not see
    /// later commits by other processes until it is reopened.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// True when opened with [`read_only`](Self::read_only).
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Permission bits of a store this open creates (default `0o600`, in a `0o700`
    /// directory). `0o660` makes a store that the brokers of one group share: a directory
    /// created for it is setgid `0o2770`. Allowed: 0600, 0640, 0660, 0604, 0644; anything
    /// else fails the open with [`StoreError::InvalidOptions`]. An existing empty file keeps
    /// its own owner, group and mode when it is made a store.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Skips the ownership checks (default `false`): normally the store and its directory
    /// must belong to the caller or root, others may not write them (group write only where
    /// set up for a group), and a symlink at the store path is refused, each with
    /// [`StoreError::Untrusted`]. With `true`, all of that is accepted and a symlink is followed.
    pub fn trust_any_owner(mut self, trust: bool) -> Self {
        self.trust_any_owner = trust;
        self
    }

    /// Bounds every wait for a lock another process holds (default [`DEFAULT_LOCK_TIMEOUT`],
    /// 5 s): the write lock a write transaction or a writable open takes, the file header lock
    /// that opens, reads, commits and closes take briefly. A call whose wait runs out fails with
    /// [`StoreError::Busy`] and changes nothing; one that already holds the write lock gets a
    /// fresh bound for its commit. Waits on other threads of this process are not counted here,
    /// but each of those is bounded the same way.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The policy given with [`policy`](Self::policy), if any.
    pub(crate) fn requested_policy(&self) -> Option<BackendRecoveryPolicy> {
        self.policy
    }

    fn config(&self) -> OpenConfig {
        OpenConfig {
            lock_timeout: self.lock_timeout,
            cache_size: self.cache_size,
            create: self.create && !self.read_only,
            policy: self.policy.filter(|_| !self.read_only),
            read_only: self.read_only,
            mode: self.mode,
            trust_any_owner: self.trust_any_owner,
        }
    }
}

/// The recovery policy with its state kept durably in a redb file.
///
/// Every method runs in its own redb transaction. Writes are committed with immediate
/// durability before the method returns, and several processes may have the same file open at
/// once. The store is `Send + Sync`: share one handle across threads with an `Arc`.
///
/// Every call that takes a [`BackendKey`] first checks it with [`BackendKey::validate`] and
/// refuses an invalid one with [`StoreError::InvalidKey`], before touching the file.
#[derive(Debug)]
pub struct RecoveryStore {
    storage: Storage,
    group: GroupCommit,
}

impl RecoveryStore {
    /// Opens the store at `path`, creating it (and its directory) if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the store at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        Ok(Self {
            storage: Storage::open_path(path.as_ref(), &options.config())?,
            group: GroupCommit::default(),
        })
    }

    /// Opens a store kept by a custom redb [`StorageBackend`], such as a fault-injecting one in
    /// tests. The backend must support redb's byte-range locks; `label` names it in errors.
    /// An empty backend, or one whose creation was cut short, is initialized.
    pub fn open_with_backend(
        backend: impl StorageBackend,
        label: impl Into<PathBuf>,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            storage: Storage::open_backend(backend, label.into(), &options.config())?,
            group: GroupCommit::default(),
        })
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The file this store was opened from.
    pub fn path(&self) -> &Path {
        self.storage.path()
    }

    /// The policy persisted in the store.
    pub fn policy(&self) -> Result<BackendRecoveryPolicy, StoreError> {
        self.storage.read(|r| r.policy())
    }

    /// The policy persisted in the store, with its retries per window (1, the reference, unless
    /// [`set_recovery_policy`](Self::set_recovery_policy) stored another).
    pub fn recovery_policy(&self) -> Result<RecoveryPolicy, StoreError> {
        self.storage.read(|r| r.recovery_policy())
    }

    /// The default policy and every per-service and per-key override.
    pub fn policies(&self) -> Result<Policies, StoreError> {
        self.storage.read(|r| r.policies())
    }

    /// Every per-service and per-key override, in scope text order.
    pub fn overrides(&self) -> Result<Vec<(PolicyScope, RecoveryPolicy)>, StoreError> {
        Ok(self.policies()?.overrides)
    }

    /// The policy that judges `key` (its key override, else its service's, else the default),
    /// and which scope it came from.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for a key the store refuses; storage errors.
    pub fn policy_for(&self, key: &BackendKey) -> Result<AppliedPolicy, StoreError> {
        key.validate()?;
        self.storage.read(|r| r.policy_for(key))
    }

    /// Stores `policy` as the override for `scope`: from the next decision on, every key in
    /// the scope is judged by it (a key override beats a service override, which beats the
    /// default). Returns false, writing nothing, when that override is already stored; a change
    /// writes an [`AuditAction::PolicySet`](crate::AuditAction) event with the scope text.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidPolicy`] as for [`set_recovery_policy`](Self::set_recovery_policy);
    /// storage errors.
    pub fn set_override(
        &self,
        scope: &PolicyScope,
        policy: RecoveryPolicy,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        policy.validate()?;
        let stored = |p: &Policies| p.overrides.contains(&(scope.clone(), policy));
        if self
            .storage
            .read(|r| r.policies())
            .is_ok_and(|p| stored(&p))
        {
            return Ok(false);
        }
        self.storage.write(|w| {
            let changed = w.set_override(scope, &policy)?;
            if changed {
                w.append_audit(&Change::scope(
                    AuditAction::PolicySet,
                    scope.to_string(),
                    reason,
                ))?;
            }
            Ok(changed)
        })
    }

    /// Removes the override for `scope`, so its keys fall back to the next most specific
    /// policy. Returns whether there was one; a removal writes an
    /// [`AuditAction::PolicyUnset`](crate::AuditAction) event, and a missing one writes nothing.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn remove_override(
        &self,
        scope: &PolicyScope,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let absent = |p: &Policies| !p.overrides.iter().any(|(s, _)| s == scope);
        if self
            .storage
            .read(|r| r.policies())
            .is_ok_and(|p| absent(&p))
        {
            return Ok(false);
        }
        self.storage.write(|w| {
            let removed = w.remove_override(scope)?;
            if removed {
                w.append_audit(&Change::scope(
                    AuditAction::PolicyUnset,
                    scope.to_string(),
                    reason,
                ))?;
            }
            Ok(removed)
        })
    }

    /// One key's entry and the policy that judges it, read in one snapshot.
    pub(crate) fn entry_and_policy(
        &self,
        key: &BackendKey,
    ) -> Result<(Option<RecoveryEntry>, RecoveryPolicy), StoreError> {
        self.storage
            .read(|r| Ok((r.get(key)?, r.policy_for(key)?.policy)))
    }

    /// Persists a policy with its retries per window, as [`set_policy`](Self::set_policy) does
    /// (one audit event when it changes anything, nothing written when it does not).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidPolicy`] for a backoff not shorter than the window or retries per
    /// window outside 1..=[`MAX_RETRIES_PER_WINDOW`](crate::MAX_RETRIES_PER_WINDOW); storage
    /// errors as for any write.
    pub fn set_recovery_policy(
        &self,
        policy: RecoveryPolicy,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        policy.validate()?;
        if self.storage.read(|r| r.recovery_policy()).ok() == Some(policy) {
            return Ok(());
        }
        self.storage.write(|w| {
            if w.recovery_policy().ok() != Some(policy) {
                w.set_recovery_policy(&policy)?;
                w.append_audit(&Change::scope(
                    AuditAction::PolicySet,
                    "default".into(),
                    reason,
                ))?;
            }
            Ok(())
        })
    }

    /// Persists a new policy for every process sharing the store. Windows already open are
    /// judged by the new policy from the next decision on.
    ///
    /// Storing the policy already stored writes nothing. A change writes an
    /// [`AuditAction::PolicySet`](crate::AuditAction) event (scope `default`) in the same
    /// transaction.
    pub fn set_policy(&self, policy: BackendRecoveryPolicy) -> Result<(), StoreError> {
        self.set_policy_with_reason(policy, None)
    }

    /// [`set_policy`](Self::set_policy), with the operator's reason kept in its audit event.
    pub fn set_policy_with_reason(
        &self,
        policy: BackendRecoveryPolicy,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        if self.storage.read(|r| r.policy()).ok() == Some(policy) {
            return Ok(());
        }
        self.storage.write(|w| {
            if w.policy().ok() != Some(policy) {
                w.set_policy(&policy)?;
                w.append_audit(&Change::scope(
                    AuditAction::PolicySet,
                    "default".into(),
                    reason,
                ))?;
            }
            Ok(())
        })
    }

    /// Records one observed crash of `key` at `now` and returns the recovery decision.
    ///
    /// The decision and the new state are committed durably, in one transaction, before this
    /// returns; two processes recording crashes for the same key lose no update.
    ///
    /// Threads of one process that call this at the same time share one transaction and its
    /// syncs (group commit); each still gets its own decision. A caller with no company
    /// commits at once; right after a contended batch, the next one may wait up to 200 µs to
    /// gather the callers coming back.
    ///
    /// The crash joins the entry's history (see [`history`](Self::history)) with this
    /// process's PID and uid but no exit detail: use
    /// [`record_crash_with`](Self::record_crash_with) when the exit status or signal is known.
    pub fn record_crash(
        &self,
        key: &BackendKey,
        now: Timestamp,
    ) -> Result<BackendRecoveryDecision, StoreError> {
        self.record_crash_with(key, now, CrashReport::default())
    }

    /// Records one crash of `key` at `now`, as [`record_crash`](Self::record_crash) does, with
    /// how the process ended (`CrashReport { exit_code, signal }`): the history keeps it, with
    /// this process's PID and real uid. The decision does not depend on the report.
    pub fn record_crash_with(
        &self,
        key: &BackendKey,
        now: Timestamp,
        report: CrashReport,
    ) -> Result<BackendRecoveryDecision, StoreError> {
        key.validate()?;
        self.group.submit(
            (key.clone(), Some(now), report),
            self.storage.path(),
            |batch| group::commit_crashes(&self.storage, batch, apply_crash),
        )
    }

    /// Records one observed crash of `key`, stamped with [`Timestamp::now`] once the write
    /// transaction holds the store's write lock, and returns the recovery decision.
    ///
    /// Prefer this to [`record_crash`](Self::record_crash) with a `now` taken before the call:
    /// a call that waited for another process's lock would otherwise be judged at a stale time.
    /// Otherwise it behaves as `record_crash`, group commit included.
    pub fn record_crash_now(
        &self,
        key: &BackendKey,
    ) -> Result<BackendRecoveryDecision, StoreError> {
        self.record_crash_now_with(key, CrashReport::default())
    }

    /// [`record_crash_now`](Self::record_crash_now) with how the process ended; see
    /// [`record_crash_with`](Self::record_crash_with).
    pub fn record_crash_now_with(
        &self,
        key: &BackendKey,
        report: CrashReport,
    ) -> Result<BackendRecoveryDecision, StoreError> {
        key.validate()?;
        self.group
            .submit((key.clone(), None, report), self.storage.path(), |batch| {
                group::commit_crashes(&self.storage, batch, apply_crash)
            })
    }

    /// `key`'s last crashes (at most [`HISTORY_LIMIT`](crate::HISTORY_LIMIT)), oldest first;
    /// empty when it has no state. Cleared with the rest of its state.
    pub fn history(&self, key: &BackendKey) -> Result<Vec<CrashRecord>, StoreError> {
        key.validate()?;
        self.storage.read(|r| r.history(key))
    }

    /// Syncs this handle has asked of its file so far, for tests and benchmarks.
    #[doc(hidden)]
    pub fn sync_count(&self) -> u64 {
        self.storage.syncs()
    }

    /// Group-commit counters: (batches committed, crashes waiting for the next batch).
    #[doc(hidden)]
    pub fn group_commit_stats(&self) -> (u64, usize) {
        (self.group.batches(), self.group.waiting())
    }

    /// Records crashes for several backends in one transaction, in order, returning one
    /// decision per crash. All are durable before this returns.
    pub fn record_crashes(
        &self,
        crashes: &[(BackendKey, Timestamp)],
    ) -> Result<Vec<BackendRecoveryDecision>, StoreError> {
        for (key, _) in crashes {
            key.validate()?;
        }
        self.storage.write(|w| {
            crashes
                .iter()
                .map(|(key, now)| apply_crash(w, key, Some(*now), CrashReport::default()))
                .collect()
        })
    }

    /// Clears `key`'s state after the backend is verified healthy; true if there was any.
    ///
    /// A key with no state costs one read transaction: no write transaction, no sync. A success
    /// that cleared state writes an [`AuditAction::Success`](crate::AuditAction) event in the
    /// same transaction.
    pub fn record_success(&self, key: &BackendKey) -> Result<bool, StoreError> {
        self.clear(key, AuditAction::Success, None)
    }

    /// Clears `key`'s state on an operator's word; true if there was any. Clearing state
    /// writes an [`AuditAction::Reset`](crate::AuditAction) event in the same transaction;
    /// a key with no state writes nothing.
    pub fn reset(&self, key: &BackendKey) -> Result<bool, StoreError> {
        self.reset_with_reason(key, None)
    }

    /// [`reset`](Self::reset), with the operator's reason kept in its audit event.
    pub fn reset_with_reason(
        &self,
        key: &BackendKey,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.clear(key, AuditAction::Reset, reason)
    }

    fn clear(
        &self,
        key: &BackendKey,
        action: AuditAction,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        key.validate()?;
        if !self.storage.read(|r| r.contains(key))? {
            return Ok(false);
        }
        self.storage.write(|w| {
            let removed = w.remove(key)?;
            if removed {
                w.append_audit(&Change::key(action, key.to_string(), reason))?;
            }
            Ok(removed)
        })
    }

    /// The audit trail, oldest first: every event, or only those naming `key` (events with
    /// that key, and none with a scope). At most [`AUDIT_LIMIT`](crate::AUDIT_LIMIT) events;
    /// a store written before schema 2 (read without migrating) has none.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for an invalid key; [`StoreError::Corrupt`] naming the
    /// sequence number of an event that cannot be decoded; storage errors as for any read.
    pub fn audit(&self, key: Option<&BackendKey>) -> Result<Vec<AuditEvent>, StoreError> {
        let key = match key {
            Some(key) => {
                key.validate()?;
                Some(key.to_string())
            }
            None => None,
        };
        self.storage.read(|r| {
            r.audit(|event| {
                key.as_ref()
                    .is_none_or(|k| event.key.as_deref() == Some(k.as_str()))
            })
        })
    }

    /// The stored state of `key`, if any.
    pub fn get(&self, key: &BackendKey) -> Result<Option<RecoveryEntry>, StoreError> {
        key.validate()?;
        self.storage.read(|r| r.get(key))
    }

    /// Where `key` stands at `now`.
    pub fn status(&self, key: &BackendKey, now: Timestamp) -> Result<BackendStatus, StoreError> {
        key.validate()?;
        self.storage.read(|r| {
            let Some(entry) = r.get(key)? else {
                return Ok(BackendStatus::Healthy);
            };
            let policy = r.policy_for(key)?.policy;
            Ok(crate::window::status_under(&entry, now, &policy))
        })
    }

    /// Every entry with its crash history, in key order, from one snapshot (for `show`, `list`
    /// and `export`). Fails on the first damaged entry.
    pub fn list_with_history(&self) -> Result<Vec<(RecoveryEntry, Vec<CrashRecord>)>, StoreError> {
        self.storage.read(|r| {
            let mut entries = Vec::new();
            r.scan("", |_, entry| {
                entries.push(entry?);
                Ok(())
            })?;
            entries
                .into_iter()
                .map(|entry| {
                    let history = r.history(&entry.key)?;
                    Ok((entry, history))
                })
                .collect()
        })
    }

    /// Every entry, in key order (by instance, then service).
    pub fn list(&self) -> Result<Vec<RecoveryEntry>, StoreError> {
        self.list_prefix("")
    }

    /// The entries whose key text starts with `prefix`, in key order; e.g. `"shared/"` for the
    /// shared broker's backends. Fails on the first damaged entry.
    pub fn list_prefix(&self, prefix: &str) -> Result<Vec<RecoveryEntry>, StoreError> {
        self.storage.read(|r| {
            let mut out = Vec::new();
            r.scan(prefix, |_, entry| {
                out.push(entry?);
                Ok(())
            })?;
            Ok(out)
        })
    }

    /// Streams the entries whose key text starts with `prefix` (`""` for all), in key order,
    /// from one consistent snapshot, to `visit`; memory stays flat however many there are.
    ///
    /// A damaged entry reaches `visit` as [`StoreError::CorruptEntry`] and the walk goes on;
    /// an error returned by `visit` stops the walk and is returned. The snapshot does not hold
    /// back writers: other processes commit while it runs, and it does not see their commits.
    pub fn for_each_entry(
        &self,
        prefix: &str,
        mut visit: impl FnMut(Result<RecoveryEntry, StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.storage
            .read(|r| r.scan(prefix, |_, entry| visit(entry)))
    }

    /// [`for_each_entry`](Self::for_each_entry), each entry with its crash history, from the
    /// same snapshot (for `export`).
    pub fn for_each_entry_with_history(
        &self,
        prefix: &str,
        mut visit: impl FnMut(
            Result<(RecoveryEntry, Vec<CrashRecord>), StoreError>,
        ) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.storage.read(|r| {
            r.scan(prefix, |_, entry| {
                let item = entry.and_then(|e| {
                    let history = r.history(&e.key)?;
                    Ok((e, history))
                });
                visit(item)
            })
        })
    }

    /// Decodes every entry, reporting each damaged one instead of stopping at the first.
    pub fn scan_all(&self) -> Result<(Vec<RecoveryEntry>, Vec<StoreError>), StoreError> {
        self.storage.read(|r| {
            let (mut good, mut bad) = (Vec::new(), Vec::new());
            r.scan("", |_, entry| {
                match entry {
                    Ok(e) => good.push(e),
                    Err(e) => bad.push(e),
                }
                Ok(())
            })?;
            Ok((good, bad))
        })
    }

    /// The number of entries.
    pub fn len(&self) -> Result<u64, StoreError> {
        self.storage.read(|r| r.len())
    }

    /// True when no backend has state.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Runs the storage engine's full integrity check, repairing what it can. Returns true when
    /// the file was sound. Needs the only handle in this process.
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        self.storage.check_integrity()
    }
}

// `now` is `None` for a crash stamped inside the transaction (`record_crash_now`).
fn apply_crash(
    w: &mut Writer<'_>,
    key: &BackendKey,
    now: Option<Timestamp>,
    report: CrashReport,
) -> Result<BackendRecoveryDecision, StoreError> {
    let now = now.unwrap_or_else(Timestamp::now);
    let policy = w.policy_for(key)?.policy;
    let (previous, mut history) = w.get_with_history(key)?;
    let (entry, decision) = window::crash(previous.as_ref(), key, now, &policy);
    history.push(CrashRecord::by_this_process(now, report));
    w.put_with_history(&entry, &history)?;
    Ok(decision)
}
