//! Keys the store cannot judge: the override row that would decide the key (its `key:` row, else
//! its `service:` row) is damaged, or the key's own entry is. That is a permanent error of one
//! key, not an outage: the store keeps deciding every other key, while this key's decisions are
//! taken in memory and held for it alone, so they never stand in the write-through queue of the
//! others. They are written through, in order, once the store judges the key again (the row
//! removed or replaced); a handle dropped before that loses them.
//!
//! Judged in memory by the policy the store applied to the key when it last answered for it, or,
//! for a key it never judged through this handle, by [`no_retry`]: a policy stored for it may
//! allow fewer retries than any other, so none is given.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::DurableRecoveryState;
use super::queue::{self, Pending};
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::policy::{
    BackendRecoveryDecision, BackendRecoveryRefusalReason, BackendStatus, RecoveryPolicy,
};
use crate::record::RecoveryEntry;
use crate::store::RecoveryStore;
use crate::time::Timestamp;
use crate::window;

/// One key the store refuses to judge, and what was decided for it in memory.
#[derive(Debug)]
pub(super) struct Unjudged {
    /// The store's error for this key (it names the row and the command that repairs it).
    pub(super) error: StoreError,
    pub(super) since: SystemTime,
    /// The key's state as decided in memory; `None` for no state.
    pub(super) entry: Option<RecoveryEntry>,
    /// Decisions for this key waiting for the store to judge it again, in order.
    pub(super) held: VecDeque<Pending>,
    /// Held decisions dropped beyond [`MAX_PENDING`](super::MAX_PENDING).
    pub(super) dropped: u64,
}

/// True when `err`, returned by a call for `key`, is that key's own permanent error (a damaged
/// override row that would judge it, or its damaged entry) rather than a failing store.
pub(super) fn is_unjudged(err: &StoreError, key: &BackendKey) -> bool {
    match err {
        // The store returns it only for a key the damaged row would judge.
        StoreError::CorruptOverride { .. } => true,
        StoreError::CorruptEntry { key: raw, .. } => *raw == key.to_string(),
        _ => false,
    }
}

/// The policy for a key the store cannot judge and never judged through this handle: the
/// default's backoff and budget window with no retry (`retries_per_window` 0), so its every
/// crash is refused for the rest of a budget window.
pub(super) fn no_retry(default: RecoveryPolicy) -> RecoveryPolicy {
    RecoveryPolicy {
        recovery: default.recovery,
        retries_per_window: 0,
    }
}

/// [`window::crash`], where a policy with `retries_per_window` 0 refuses the first crash too.
pub(super) fn crash_under(
    previous: Option<&RecoveryEntry>,
    key: &BackendKey,
    now: Timestamp,
    policy: &RecoveryPolicy,
) -> (RecoveryEntry, BackendRecoveryDecision) {
    let (entry, decision) = window::crash(previous, key, now, policy);
    if policy.retries_per_window > 0 {
        return (entry, decision);
    }
    let elapsed = window::window_elapsed(&entry.window_started_at, now, &policy.recovery)
        .unwrap_or(Duration::ZERO);
    let refuse = BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::BackendUnavailable,
        retry_after: policy.recovery.budget_window.saturating_sub(elapsed),
    };
    (entry, refuse)
}

/// [`window::status_under`], where a policy with `retries_per_window` 0 refuses while any crash
/// is in the window.
pub(super) fn status_under(
    entry: &RecoveryEntry,
    now: Timestamp,
    policy: &RecoveryPolicy,
) -> BackendStatus {
    match window::status_under(entry, now, policy) {
        BackendStatus::Recovering {
            window_remaining, ..
        } if policy.retries_per_window == 0 => BackendStatus::Refused {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: window_remaining,
        },
        status => status,
    }
}

impl DurableRecoveryState {
    /// The error that keeps the store from judging `key`, while it does: the damaged override
    /// row that would decide it ([`StoreError::CorruptOverride`], naming the row and the
    /// `policy unset`/`policy set` command that repairs it) or its damaged entry
    /// ([`StoreError::CorruptEntry`]). `None` for a key the store judges.
    ///
    /// Such a key is decided in memory (see [`policy_of`](Self::policy_of)), its decisions are
    /// held apart from every other key's and written through once the store judges it again;
    /// [`health`](Self::health) stays degraded naming it until then.
    pub fn unjudged(&self, key: &BackendKey) -> Option<&StoreError> {
        self.unjudged.get(key).map(|u| &u.error)
    }

    /// Marks `key` as one the store cannot judge, moving what was decided for it in memory out
    /// of the shared state.
    pub(super) fn mark_unjudged(&mut self, key: &BackendKey, error: StoreError) {
        if let Some(u) = self.unjudged.get_mut(key) {
            u.error = error;
            return;
        }
        let entry = self.remembered(key);
        self.shadow.remove(key);
        // A damaged entry leaves its override readable: judge by it, not by no retry.
        if let (StoreError::CorruptEntry { .. }, Some(store)) = (&error, &self.store)
            && let Ok(applied) = store.policy_for(key)
        {
            self.key_policies.insert(key.clone(), applied.policy);
        }
        self.unjudged.insert(
            key.clone(),
            Unjudged {
                error,
                since: SystemTime::now(),
                entry,
                held: VecDeque::new(),
                dropped: 0,
            },
        );
    }

    /// Holds a decision taken in memory for an unjudged key.
    pub(super) fn hold(&mut self, op: Pending) {
        if let Some(u) = self.unjudged.get_mut(op.key()) {
            if matches!(op, Pending::Success(_)) {
                // A success makes every earlier decision for the key moot.
                u.held.clear();
            }
            u.dropped += queue::push(&mut u.held, op);
        }
    }

    /// Tries the store for `key` again, when it answers: writes its held decisions through, in
    /// order, and, once none is left, asks the store to judge it. The key stays unjudged while
    /// the store still refuses it.
    ///
    /// # Errors
    ///
    /// A failing store's error (the handle is then degraded); never the key's own.
    pub(super) fn retry_unjudged(&mut self, key: &BackendKey) -> Result<(), StoreError> {
        if !self.unjudged.contains_key(key) || self.reachable_store().is_none() {
            return Ok(());
        }
        let (Some(store), Some(u)) = (self.store.as_ref(), self.unjudged.get_mut(key)) else {
            return Ok(());
        };
        let result = write_held(store, key, u).and_then(|()| {
            let (entry, policy) = store.entry_and_policy(key)?;
            Ok((entry, policy))
        });
        match result {
            Ok((entry, policy)) => {
                self.unjudged.remove(key);
                self.key_policies.insert(key.clone(), policy);
                match entry {
                    Some(entry) => self.committed.insert(key.clone(), entry),
                    None => self.committed.remove(key),
                };
                Ok(())
            }
            Err(err) if is_unjudged(&err, key) => {
                u.error = err;
                Ok(())
            }
            Err(err) => {
                self.degrade(&err);
                Err(err)
            }
        }
    }

    /// [`retry_unjudged`](Self::retry_unjudged) for every unjudged key, when the store's retry
    /// schedule says so (`force` ignores it).
    pub(super) fn retry_all_unjudged(&mut self, force: bool) -> Result<(), StoreError> {
        let now = std::time::Instant::now();
        if self.unjudged.is_empty() || (!force && now < self.unjudged_next_try) {
            return Ok(());
        }
        self.unjudged_next_try = now + super::MAX_RETRY_INTERVAL;
        let keys: Vec<BackendKey> = self.unjudged.keys().cloned().collect();
        keys.iter().try_for_each(|key| self.retry_unjudged(key))
    }

    /// The first unjudged key's error whose decisions are still held.
    pub(super) fn held_error(&self) -> Option<StoreError> {
        self.unjudged
            .values()
            .filter(|u| !u.held.is_empty())
            .find_map(|u| duplicate(&u.error))
    }

    /// Decisions held for unjudged keys, and how many were dropped.
    pub(super) fn held_counts(&self) -> (usize, u64) {
        self.unjudged
            .values()
            .fold((0, 0), |(n, d), u| (n + u.held.len(), d + u.dropped))
    }
}

// A copy of a key's own error (`StoreError` is not `Clone`: its I/O variants cannot be).
fn duplicate(err: &StoreError) -> Option<StoreError> {
    match err {
        StoreError::CorruptOverride {
            path,
            scope,
            detail,
        } => Some(StoreError::CorruptOverride {
            path: path.clone(),
            scope: scope.clone(),
            detail: detail.clone(),
        }),
        StoreError::CorruptEntry { path, key, detail } => Some(StoreError::CorruptEntry {
            path: path.clone(),
            key: key.clone(),
            detail: detail.clone(),
        }),
        _ => None,
    }
}

// Writes `u`'s held decisions in order, dropping each once committed.
fn write_held(store: &RecoveryStore, key: &BackendKey, u: &mut Unjudged) -> Result<(), StoreError> {
    while let Some(op) = u.held.front() {
        match op {
            Pending::Crash(_, at, report) => store.record_crash_with(key, *at, *report).map(drop),
            Pending::Success(_) => store.record_success(key).map(drop),
        }?;
        u.held.pop_front();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerInstanceKey;
    use crate::policy::BackendRecoveryPolicy;

    #[test]
    fn no_retry_refuses_every_crash_for_the_rest_of_its_window() {
        let key = BackendKey::new(BrokerInstanceKey::Shared, "zc", "1.0.0", "");
        let policy = no_retry(RecoveryPolicy::default());
        let window = BackendRecoveryPolicy::default().budget_window;
        let t0 = Timestamp::now();
        let (entry, first) = crash_under(None, &key, t0, &policy);
        assert!(
            matches!(first, BackendRecoveryDecision::Refuse { retry_after, .. } if retry_after == window),
            "{first:?}"
        );
        let later = t0 + Duration::from_secs(10);
        assert!(matches!(
            status_under(&entry, later, &policy),
            BackendStatus::Refused { retry_after, .. } if retry_after == window - Duration::from_secs(10)
        ));
        let (_, second) = crash_under(Some(&entry), &key, later, &policy);
        assert!(
            matches!(second, BackendRecoveryDecision::Refuse { retry_after, .. } if retry_after == window - Duration::from_secs(10)),
            "{second:?}"
        );
        // After the window the backend may start again, and its next crash is refused again.
        let after = t0 + window;
        assert_eq!(status_under(&entry, after, &policy), BackendStatus::Healthy);
        // A policy with retries judges as the store would.
        let stored = RecoveryPolicy::new(BackendRecoveryPolicy::default(), 5);
        assert_eq!(
            crash_under(None, &key, t0, &stored),
            window::crash(None, &key, t0, &stored)
        );
    }
}
