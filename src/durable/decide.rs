//! The decisions of a [`DurableRecoveryState`]: from the store while it answers, else from the
//! same policy applied to the state held in memory, queued for write-through.

use std::time::Instant;

use super::anchor::Anchor;
use super::queue::Pending;
use super::{DurableRecoveryState, unjudged};
use crate::key::BackendKey;
use crate::policy::{BackendRecoveryDecision, BackendStatus};
use crate::record::CrashReport;
#[cfg(doc)]
use crate::store::RecoveryStore;
use crate::time::Timestamp;
use crate::window;

impl DurableRecoveryState {
    /// Records one observed crash of `key` at `now` and returns the recovery decision, exactly
    /// as the reference module does.
    ///
    /// The decision is durable before this returns unless the handle is degraded (see
    /// [`health`](Self::health)); then it comes from memory and is written through later.
    pub fn record_crash(&mut self, key: BackendKey, now: Instant) -> BackendRecoveryDecision {
        self.record_crash_with(key, now, CrashReport::default())
    }

    /// [`record_crash`](Self::record_crash) with how the process ended, kept in the entry's
    /// history (see [`RecoveryStore::record_crash_with`]); a degraded handle queues the report
    /// with the crash and writes both through later.
    pub fn record_crash_with(
        &mut self,
        key: BackendKey,
        now: Instant,
        report: CrashReport,
    ) -> BackendRecoveryDecision {
        let at = Anchor::stamp(now);
        self.record_crash_at_with(&key, at, report)
    }

    /// Records one crash of `key` at the stored time `now`; see
    /// [`record_crash`](Self::record_crash).
    pub fn record_crash_at(&mut self, key: &BackendKey, now: Timestamp) -> BackendRecoveryDecision {
        self.crash(key, Some(now), CrashReport::default())
    }

    /// [`record_crash_at`](Self::record_crash_at) with how the process ended. A report no
    /// process could have ended with ([`CrashReport::validate`]) is dropped: the crash is
    /// still decided and recorded, without detail.
    pub fn record_crash_at_with(
        &mut self,
        key: &BackendKey,
        now: Timestamp,
        report: CrashReport,
    ) -> BackendRecoveryDecision {
        self.crash(key, Some(now), report)
    }

    /// Records one crash of `key`, stamped once the store's write lock is held (as
    /// [`RecoveryStore::record_crash_now`]), so that a wait for a busy store never yields a
    /// decision taken at a stale time; degraded, it is stamped at the moment of the decision.
    pub fn record_crash_now(&mut self, key: &BackendKey) -> BackendRecoveryDecision {
        self.crash(key, None, CrashReport::default())
    }

    /// [`record_crash_now`](Self::record_crash_now) with how the process ended, kept in the
    /// entry's history (queued with the crash while degraded).
    pub fn record_crash_now_with(
        &mut self,
        key: &BackendKey,
        report: CrashReport,
    ) -> BackendRecoveryDecision {
        self.crash(key, None, report)
    }

    // `at`: the crash's time, or `None` for "when the lock is held".
    fn crash(
        &mut self,
        key: &BackendKey,
        at: Option<Timestamp>,
        report: CrashReport,
    ) -> BackendRecoveryDecision {
        let report = if report.validate().is_ok() {
            report
        } else {
            CrashReport::default()
        };
        if key.validate().is_err() {
            let now = at.unwrap_or_else(Timestamp::now);
            let previous = self.memory_only.get(key);
            let (entry, decision) = window::crash(previous, key, now, &self.policy);
            self.memory_only.insert(key.clone(), entry);
            return decision;
        }
        // A failing store leaves the decision to memory, as below.
        let _ = self.retry_unjudged(key);
        let judged = !self.unjudged.contains_key(key);
        if let Some(store) = self.reachable_store().filter(|_| judged) {
            let recorded = match at {
                Some(now) => store.record_crash_with(key, now, report),
                None => store.record_crash_now_with(key, report),
            };
            match recorded {
                Ok(decision) => {
                    if let Ok((entry, policy)) = store.entry_and_policy(key) {
                        if let Some(entry) = entry {
                            self.committed.insert(key.clone(), entry);
                        }
                        self.key_policies.insert(key.clone(), policy);
                    }
                    return decision;
                }
                Err(err) if unjudged::is_unjudged(&err, key) => self.mark_unjudged(key, err),
                Err(err) => self.degrade(&err),
            }
        }
        let now = at.unwrap_or_else(Timestamp::now);
        let previous = self.remembered(key);
        let policy = self.policy_of(key);
        let (entry, decision) = unjudged::crash_under(previous.as_ref(), key, now, &policy);
        let op = Pending::Crash(key.clone(), now, report);
        match self.unjudged.get_mut(key) {
            Some(u) => {
                u.entry = Some(entry);
                self.hold(op);
            }
            None => {
                self.shadow.insert(key.clone(), Some(entry));
                self.queue(op);
            }
        }
        decision
    }

    /// Clears `key`'s state after the backend is verified healthy again.
    ///
    /// A backend with no state costs a read, never a commit.
    pub fn record_success(&mut self, key: &BackendKey) {
        if key.validate().is_err() {
            self.memory_only.remove(key);
            return;
        }
        self.committed.remove(key);
        if let Some(u) = self.unjudged.get_mut(key) {
            // Held with the key's other decisions (it makes them moot), and written through at
            // once when the store answers: clearing state needs no policy.
            u.entry = None;
            self.hold(Pending::Success(key.clone()));
            let _ = self.retry_unjudged(key);
            return;
        }
        if let Some(store) = self.reachable_store() {
            match store.record_success(key) {
                Ok(_) => return,
                Err(err) if unjudged::is_unjudged(&err, key) => {
                    self.mark_unjudged(key, err);
                    return self.record_success(key);
                }
                Err(err) => self.degrade(&err),
            }
        }
        self.shadow.insert(key.clone(), None);
        self.queue(Pending::Success(key.clone()));
    }

    /// Where `key` stands at `now`, from the store, or from memory while degraded.
    ///
    /// While the store answers, the entry is judged by the policy stored now (another
    /// process may have changed it), which this handle then keeps for its degraded decisions.
    pub fn status(&mut self, key: &BackendKey, now: Timestamp) -> BackendStatus {
        let entry = if key.validate().is_err() {
            self.memory_only.get(key).cloned()
        } else {
            let _ = self.retry_unjudged(key);
            let judged = !self.unjudged.contains_key(key);
            let current = self
                .reachable_store()
                .filter(|_| judged)
                .map(|s| Ok((s.entry_and_policy(key)?, s.recovery_policy()?)));
            match current {
                Some(Ok(((entry, policy), default))) => {
                    self.policy = default;
                    self.key_policies.insert(key.clone(), policy);
                    entry
                }
                Some(Err(err)) => {
                    if unjudged::is_unjudged(&err, key) {
                        self.mark_unjudged(key, err);
                    } else {
                        self.degrade(&err);
                    }
                    self.remembered(key)
                }
                None => self.remembered(key),
            }
        };
        entry.map_or(BackendStatus::Healthy, |e| {
            unjudged::status_under(&e, now, &self.policy_of(key))
        })
    }
}
