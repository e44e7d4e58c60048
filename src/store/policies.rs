//! The store's policies: the default, the per-service and per-key overrides, and which one
//! judges a key; each change is written with its audit event in one transaction.

use crate::audit::{AuditAction, Change};
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::overrides::{AppliedPolicy, Policies, PolicyScope};
use crate::policy::{BackendRecoveryPolicy, RecoveryPolicy};
use crate::record::RecoveryEntry;

use super::RecoveryStore;

impl RecoveryStore {
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
    ///
    /// # Errors
    ///
    /// [`StoreError::CorruptOverride`] naming the first override row that cannot be decoded
    /// (a [`Snapshot::stored_policies`](crate::Snapshot::stored_policies) reads past them);
    /// [`StoreError::Corrupt`] for a default that cannot be decoded; storage errors.
    pub fn policies(&self) -> Result<Policies, StoreError> {
        self.storage.read(|r| r.policies())
    }

    /// Every per-service and per-key override, in scope text order; errors as for
    /// [`policies`](Self::policies).
    pub fn overrides(&self) -> Result<Vec<(PolicyScope, RecoveryPolicy)>, StoreError> {
        Ok(self.policies()?.overrides)
    }

    /// The policy that judges `key` (its key override, else its service's, else the default),
    /// and which scope it came from.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for a key the store refuses; [`StoreError::CorruptOverride`]
    /// when the override that would judge the key cannot be decoded (never another policy in
    /// its place); storage errors.
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
        self.change_default(|_| policy, reason)
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
        policy.validate()?;
        self.change_default(
            |now| RecoveryPolicy::new(policy, now.retries_per_window),
            reason,
        )
    }

    /// Stores `change(stored default)` as the default with one audit event (scope `default`),
    /// or writes nothing when that is what is stored. A default that cannot be read is taken
    /// as the reference's and replaced.
    fn change_default(
        &self,
        change: impl Fn(RecoveryPolicy) -> RecoveryPolicy,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Ok(now) = self.storage.read(|r| r.recovery_policy())
            && change(now) == now
        {
            return Ok(());
        }
        self.storage.write(|w| {
            let now = w.recovery_policy().ok();
            let new = change(now.unwrap_or_default());
            if now != Some(new) {
                w.set_recovery_policy(&new)?;
                w.append_audit(&Change::scope(
                    AuditAction::PolicySet,
                    "default".into(),
                    reason,
                ))?;
            }
            Ok(())
        })
    }
}
