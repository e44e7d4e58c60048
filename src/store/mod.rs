//! [`RecoveryStore`]: the recovery policy with its state kept durably in a redb file.

use std::path::{Path, PathBuf};

use crate::audit::{AuditAction, Change};
use crate::error::StoreError;
use crate::group::{self, GroupCommit};
use crate::key::BackendKey;
use crate::policy::BackendRecoveryDecision;
use crate::record::{CrashRecord, CrashReport};
use crate::storage::{Storage, StorageBackend, Writer};
use crate::time::Timestamp;
use crate::window;
pub use crate::window::status_of;

mod options;
mod policies;
mod reads;
mod repair;

pub use options::{DEFAULT_CACHE_SIZE, DEFAULT_LOCK_TIMEOUT, StoreOptions};
pub use repair::DroppedRows;

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
    ///
    /// # Errors
    ///
    /// As [`record_crash`](Self::record_crash), and [`StoreError::InvalidCrashReport`] for a
    /// report no process could have ended with ([`CrashReport::validate`]), before anything is
    /// recorded.
    pub fn record_crash_with(
        &self,
        key: &BackendKey,
        now: Timestamp,
        report: CrashReport,
    ) -> Result<BackendRecoveryDecision, StoreError> {
        key.validate()?;
        report.validate()?;
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
        report.validate()?;
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
