//! Whole-store imports ([`RecoveryStore::import`]): an image's entries and policies written in
//! one transaction, replacing the store's state or merged into it. This is what
//! `recovery-store import` runs; `export` writes the same parts.
//!
//! An import never writes the store's audit trail beyond its own `import` event: the trail
//! records what happened to this store, and events from elsewhere would be indistinguishable
//! from its own.

use crate::audit::{AuditAction, Change};
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::overrides::PolicyScope;
use crate::policy::{BackendRecoveryPolicy, RecoveryPolicy};
use crate::record::{CrashRecord, RecoveryEntry};
use crate::store::RecoveryStore;

mod validate;
mod write;

use validate::validate;
use write::{merge, replace, sorted};

/// What an import writes: a whole store's state, as `export` reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreImage {
    /// The default policy; `None` keeps the store's.
    pub policy: Option<RecoveryPolicy>,
    /// The per-service and per-key overrides; `None` keeps the store's. With
    /// [`ImportMode::Replace`] these replace every override the store holds; with
    /// [`ImportMode::Merge`] they are added to them.
    pub overrides: Option<Vec<(PolicyScope, RecoveryPolicy)>>,
    /// Every entry with its crash history, oldest first (at most
    /// [`HISTORY_LIMIT`](crate::HISTORY_LIMIT) crashes, and no more than the entry's total).
    pub entries: Vec<(RecoveryEntry, Vec<CrashRecord>)>,
}

impl StoreImage {
    /// Checks everything [`RecoveryStore::import`] checks before its transaction: call it to
    /// refuse a bad image before opening (or creating) a store.
    ///
    /// # Errors
    ///
    /// As [`RecoveryStore::import`], less [`StoreError::ImportConflict`] and storage errors.
    pub fn validate(&self) -> Result<(), StoreError> {
        validate(
            self,
            self.policy.map_or(DefaultPolicy::Keep, DefaultPolicy::Full),
        )
    }
}

/// How an import meets the state a store already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// The image's entries replace every entry; its policy and overrides, when given, replace
    /// the store's.
    Replace {
        /// Replace state the image would lose: an entry it lacks or holds otherwise, a default
        /// policy other than the image's (and the reference's), or overrides other than the
        /// image's. Without it such a store is refused with [`StoreError::ImportConflict`],
        /// checked inside the import's transaction.
        overwrite: bool,
    },
    /// The image's entries and overrides are added; the store's others and its default
    /// policy stay (unless the image gives one).
    Merge {
        /// Let the image's entries, and overrides that differ from the store's, replace them.
        /// Without it a key or scope in both is refused with [`StoreError::ImportConflict`].
        overwrite: bool,
    },
}

/// What an import changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportOutcome {
    /// The keys the store held that the image's entries replaced (a merge).
    pub overwritten: Vec<BackendKey>,
    /// The scopes whose stored override the image's replaced (a merge).
    pub overrides_overwritten: Vec<PolicyScope>,
    /// How many overrides the store held before the image's other ones replaced them (a
    /// replace with overrides; 0 when they were the same).
    pub overrides_replaced: u64,
    /// The keys (stored text) a replace removed because the image lacks them.
    pub removed: Vec<String>,
    /// False when the import found nothing to change: then it took no write lock and wrote
    /// nothing, not even its audit event.
    pub changed: bool,
}

/// What an import does to the default policy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultPolicy {
    Keep,
    /// The backoff and window, keeping the stored retries per window.
    Timing(BackendRecoveryPolicy),
    Full(RecoveryPolicy),
}

impl RecoveryStore {
    /// Writes `image` in one transaction, with one [`AuditAction::Import`] event (scope `all`
    /// for a replace, `merge` for a merge). Everything is validated before the transaction
    /// starts; the checks against what the store holds run inside it, so a refused import
    /// writes nothing and never overwrites state it did not see. An import that would change
    /// nothing writes nothing ([`ImportOutcome::changed`] false).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for an invalid key or service name; [`StoreError::InvalidPolicy`]
    /// for a policy a store cannot hold; [`StoreError::InvalidImport`] for an entry the store
    /// could not have written (a key given twice, no crash in its window, fewer crashes in
    /// total than in it, a history longer than its total, a crash report
    /// [`CrashReport::validate`](crate::CrashReport::validate) refuses, or PID 0) or a scope
    /// given twice;
    /// [`StoreError::ImportConflict`] for state the import would overwrite without
    /// `overwrite` (the first few keys or scopes named); storage errors as for any write.
    pub fn import(
        &self,
        image: &StoreImage,
        mode: ImportMode,
    ) -> Result<ImportOutcome, StoreError> {
        self.import_with_reason(image, mode, None)
    }

    /// [`import`](Self::import), with the operator's reason kept in its
    /// [`AuditAction::Import`] event.
    pub fn import_with_reason(
        &self,
        image: &StoreImage,
        mode: ImportMode,
        reason: Option<&str>,
    ) -> Result<ImportOutcome, StoreError> {
        let default = image
            .policy
            .map_or(DefaultPolicy::Keep, DefaultPolicy::Full);
        self.import_with(image, default, mode, reason)
    }

    /// Replaces the whole state with `entries` (and the policy, if given) in one transaction,
    /// with an [`AuditAction::Import`](crate::AuditAction) event (scope `all`). The retries
    /// per window and the overrides stay as stored.
    ///
    /// Entries the store could not have written are refused with
    /// [`StoreError::InvalidImport`] before anything changes, as by [`import`](Self::import).
    pub fn replace_all(
        &self,
        policy: Option<BackendRecoveryPolicy>,
        entries: &[RecoveryEntry],
    ) -> Result<(), StoreError> {
        let entries: Vec<_> = entries.iter().map(|e| (e.clone(), Vec::new())).collect();
        self.replace_all_with_history(policy, &entries)
    }

    /// [`replace_all`](Self::replace_all), each entry with its crash history.
    pub fn replace_all_with_history(
        &self,
        policy: Option<BackendRecoveryPolicy>,
        entries: &[(RecoveryEntry, Vec<CrashRecord>)],
    ) -> Result<(), StoreError> {
        let image = StoreImage {
            entries: entries.to_vec(),
            ..StoreImage::default()
        };
        let default = policy.map_or(DefaultPolicy::Keep, DefaultPolicy::Timing);
        let mode = ImportMode::Replace { overwrite: true };
        self.import_with(&image, default, mode, None).map(drop)
    }

    pub(crate) fn import_with(
        &self,
        image: &StoreImage,
        default: DefaultPolicy,
        mode: ImportMode,
        reason: Option<&str>,
    ) -> Result<ImportOutcome, StoreError> {
        validate(image, default)?;
        if self.changes_nothing(image, default, mode)? {
            return Ok(ImportOutcome::default());
        }
        self.storage().write(|w| {
            let mut outcome = match mode {
                ImportMode::Replace { overwrite } => replace(w, image, default, overwrite)?,
                ImportMode::Merge { overwrite } => merge(w, image, overwrite)?,
            };
            let changed_default = match default {
                DefaultPolicy::Keep => false,
                DefaultPolicy::Timing(policy) => {
                    let before = w.recovery_policy().ok();
                    w.set_policy(&policy)?;
                    before != w.recovery_policy().ok()
                }
                DefaultPolicy::Full(policy) => {
                    let before = w.recovery_policy().ok();
                    w.set_recovery_policy(&policy)?;
                    before != Some(policy)
                }
            };
            outcome.changed |= changed_default;
            if outcome.changed {
                let scope = match mode {
                    ImportMode::Replace { .. } => "all",
                    ImportMode::Merge { .. } => "merge",
                };
                w.append_audit(&Change::scope(AuditAction::Import, scope.into(), reason))?;
            }
            Ok(outcome)
        })
    }

    /// True when writing `image` would change nothing: the default policy (if given), the
    /// overrides (if given: the same set for a replace, already stored for a merge) and every
    /// entry with its history already stored as given, and, for a replace, no other entry.
    /// Read before the write so that a no-op takes no write lock and commits nothing; a change
    /// another process commits meanwhile is as if it came after the import.
    fn changes_nothing(
        &self,
        image: &StoreImage,
        default: DefaultPolicy,
        mode: ImportMode,
    ) -> Result<bool, StoreError> {
        let replace = matches!(mode, ImportMode::Replace { .. });
        self.storage().read(|r| {
            let stored = r.recovery_policy().ok();
            let same_default = match default {
                DefaultPolicy::Keep => true,
                DefaultPolicy::Full(policy) => stored == Some(policy),
                DefaultPolicy::Timing(policy) => stored.is_some_and(|s| s.recovery == policy),
            };
            if !same_default {
                return Ok(false);
            }
            if let Some(wanted) = &image.overrides {
                // A damaged row is for the transaction to find and report.
                let Ok(held) = r.policies().map(|p| p.overrides) else {
                    return Ok(false);
                };
                let same = if replace {
                    sorted(held) == sorted(wanted.clone())
                } else {
                    wanted.iter().all(|o| held.contains(o))
                };
                if !same {
                    return Ok(false);
                }
            }
            if replace && r.len()? != image.entries.len() as u64 {
                return Ok(false);
            }
            for (entry, history) in &image.entries {
                if r.get(&entry.key).ok().flatten().as_ref() != Some(entry)
                    || r.history(&entry.key).ok().as_ref() != Some(history)
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }
}
