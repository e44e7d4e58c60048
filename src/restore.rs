//! Whole-store imports ([`RecoveryStore::import`]): a document's entries, policies and audit
//! trail written in one transaction, replacing the store's state or merged into it. This is
//! what `recovery-store import` runs; `export` writes the same parts.

use std::collections::HashSet;

use crate::audit::{self, AUDIT_LIMIT, AuditAction, AuditEvent, Change};
use crate::error::StoreError;
use crate::key::{BackendKey, validate_service_name};
use crate::overrides::PolicyScope;
use crate::policy::{BackendRecoveryPolicy, RecoveryPolicy};
use crate::record::{CrashRecord, RecoveryEntry};
use crate::storage::Writer;
use crate::store::RecoveryStore;

/// The longest text an imported audit event may carry in its key, scope, user or reason, in
/// bytes (4 KiB): events are rows of a bounded table, not documents.
pub const MAX_AUDIT_TEXT: usize = 4096;

/// What an import writes: a whole store's state, as `export` reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreImage {
    /// The default policy; `None` keeps the store's.
    pub policy: Option<RecoveryPolicy>,
    /// The per-service and per-key overrides; `None` keeps the store's. With
    /// [`ImportMode::Replace`] these replace every override the store holds; with
    /// [`ImportMode::Merge`] they are added to them.
    pub overrides: Option<Vec<(PolicyScope, RecoveryPolicy)>>,
    /// Every entry with its crash history (oldest first; the last
    /// [`HISTORY_LIMIT`](crate::HISTORY_LIMIT) crashes are kept).
    pub entries: Vec<(RecoveryEntry, Vec<CrashRecord>)>,
    /// Audit events to restore, oldest first. Their [`AuditEvent::seq`] is ignored: each is
    /// appended under the store's next number, after the store's own events.
    pub audit: Vec<AuditEvent>,
}

/// How an import meets the state a store already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// The image's entries replace every entry; its policy and overrides, when given, replace
    /// the store's.
    Replace,
    /// The image's entries and overrides are added; a key or scope the store already holds
    /// (with another policy) is refused unless `overwrite`, when the image's wins.
    Merge {
        /// Let the image's entries and overrides replace the store's where both have one.
        overwrite: bool,
    },
}

/// What an import changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportOutcome {
    /// Merge: the keys the store held that the image's entries replaced.
    pub overwritten: Vec<BackendKey>,
    /// Merge: the scopes whose stored override the image's replaced.
    pub overrides_overwritten: Vec<PolicyScope>,
    /// Replace: how many overrides the store held before the image's replaced them.
    pub overrides_replaced: u64,
    /// Audit events of the image appended to the trail.
    pub audit_added: usize,
    /// Audit events of the image the trail already held (same time, action, key, scope, uid,
    /// user, PID and reason), not added twice: importing a store's own export adds none.
    pub audit_already_held: usize,
}

/// What an import does to the default policy.
#[derive(Clone, Copy)]
pub(crate) enum DefaultPolicy {
    Keep,
    /// The backoff and window, keeping the stored retries per window.
    Timing(BackendRecoveryPolicy),
    Full(RecoveryPolicy),
}

impl RecoveryStore {
    /// Writes `image` in one transaction, with one [`AuditAction::Import`] event last (scope
    /// `all` for [`ImportMode::Replace`], `merge` for a merge). The audit trail is never
    /// replaced: the image's events are appended after the store's own, those it already holds
    /// are skipped, and the oldest beyond [`AUDIT_LIMIT`] are dropped as always.
    ///
    /// Everything is validated before the transaction starts, and a refused merge writes
    /// nothing. A merge that adds no entry, override or event writes nothing at all.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for an invalid key or service name; [`StoreError::InvalidPolicy`]
    /// for a policy a store cannot hold; [`StoreError::InvalidImport`] for an entry the store
    /// could not have written (a key given twice, no crash in its window, fewer crashes in
    /// total than in it), a scope given twice, an audit event without the key or scope its
    /// action needs or with text over [`MAX_AUDIT_TEXT`], or, in a merge without `overwrite`,
    /// keys or scopes the store already holds (all named); storage errors as for any write.
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
        let default = match image.policy {
            Some(policy) => DefaultPolicy::Full(policy),
            None => DefaultPolicy::Keep,
        };
        self.import_with(image, default, mode, reason)
    }

    /// Replaces the whole state with `entries` (and the policy, if given) in one transaction,
    /// with an [`AuditAction::Import`](crate::AuditAction) event (scope `all`). The retries
    /// per window and the overrides stay as stored.
    ///
    /// Entries the store could not have written are refused with
    /// [`StoreError::InvalidImport`] before anything changes: a key given twice, no crash in
    /// the window, or fewer crashes in total than in the window.
    pub fn replace_all(
        &self,
        policy: Option<BackendRecoveryPolicy>,
        entries: &[RecoveryEntry],
    ) -> Result<(), StoreError> {
        let entries: Vec<_> = entries.iter().map(|e| (e.clone(), Vec::new())).collect();
        self.replace_all_with_history(policy, &entries)
    }

    /// [`replace_all`](Self::replace_all), each entry with its crash history (the last
    /// [`HISTORY_LIMIT`](crate::HISTORY_LIMIT) crashes of it are kept).
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
        self.import_with(&image, default, ImportMode::Replace, None)
            .map(drop)
    }

    pub(crate) fn import_with(
        &self,
        image: &StoreImage,
        default: DefaultPolicy,
        mode: ImportMode,
        reason: Option<&str>,
    ) -> Result<ImportOutcome, StoreError> {
        validate(image, default)?;
        let audit = recent(&image.audit);
        let stored: Vec<_> = audit.iter().map(audit::to_stored_event).collect();
        let nothing = image.entries.is_empty()
            && image.overrides.as_ref().is_none_or(Vec::is_empty)
            && audit.is_empty()
            && matches!(default, DefaultPolicy::Keep);
        if nothing && matches!(mode, ImportMode::Merge { .. }) {
            return Ok(ImportOutcome::default());
        }
        self.storage().write(|w| {
            let mut outcome = match mode {
                ImportMode::Replace => replace(w, image)?,
                ImportMode::Merge { overwrite } => merge(w, image, overwrite)?,
            };
            match default {
                DefaultPolicy::Keep => {}
                DefaultPolicy::Timing(policy) => w.set_policy(&policy)?,
                DefaultPolicy::Full(policy) => w.set_recovery_policy(&policy)?,
            }
            (outcome.audit_added, outcome.audit_already_held) = w.append_new_audit(&stored)?;
            let scope = match mode {
                ImportMode::Replace => "all",
                ImportMode::Merge { .. } => "merge",
            };
            w.append_audit(&Change::scope(AuditAction::Import, scope.into(), reason))?;
            Ok(outcome)
        })
    }
}

fn replace(w: &mut Writer<'_>, image: &StoreImage) -> Result<ImportOutcome, StoreError> {
    for raw in &w.keys("")? {
        w.remove_raw(raw)?;
    }
    for (entry, history) in &image.entries {
        w.put_with_history(entry, history)?;
    }
    let mut outcome = ImportOutcome::default();
    if let Some(overrides) = &image.overrides {
        outcome.overrides_replaced = w.clear_overrides()?;
        for (scope, policy) in overrides {
            w.set_override(scope, policy)?;
        }
    }
    Ok(outcome)
}

fn merge(
    w: &mut Writer<'_>,
    image: &StoreImage,
    overwrite: bool,
) -> Result<ImportOutcome, StoreError> {
    let mut outcome = ImportOutcome::default();
    for (entry, _) in &image.entries {
        if w.get(&entry.key)?.is_some() {
            outcome.overwritten.push(entry.key.clone());
        }
    }
    let overrides = image.overrides.as_deref().unwrap_or_default();
    for (scope, policy) in overrides {
        if w.holds_other_override(scope, policy)? {
            outcome.overrides_overwritten.push(scope.clone());
        }
    }
    let conflict = !(outcome.overwritten.is_empty() && outcome.overrides_overwritten.is_empty());
    if conflict && !overwrite {
        return Err(StoreError::InvalidImport {
            detail: conflicts(&outcome),
        });
    }
    for (entry, history) in &image.entries {
        w.put_with_history(entry, history)?;
    }
    for (scope, policy) in overrides {
        w.set_override(scope, policy)?;
    }
    Ok(outcome)
}

/// "2 entries already in the store (a, b) and 1 override with another policy (service:x),
/// and overwriting was not asked for".
fn conflicts(outcome: &ImportOutcome) -> String {
    let mut parts = Vec::new();
    if !outcome.overwritten.is_empty() {
        let named: Vec<String> = outcome
            .overwritten
            .iter()
            .map(ToString::to_string)
            .collect();
        parts.push(format!(
            "{} already in the store ({})",
            outcome.overwritten.len(),
            named.join(", ")
        ));
    }
    if !outcome.overrides_overwritten.is_empty() {
        let named: Vec<String> = outcome
            .overrides_overwritten
            .iter()
            .map(ToString::to_string)
            .collect();
        let n = named.len();
        parts.push(format!(
            "{n} override{} stored with another policy ({})",
            if n == 1 { "" } else { "s" },
            named.join(", ")
        ));
    }
    format!("{}, and overwriting was not asked for", parts.join(" and "))
}

/// The last [`AUDIT_LIMIT`] events: no more could stay in the trail.
fn recent(events: &[AuditEvent]) -> &[AuditEvent] {
    let limit = usize::try_from(AUDIT_LIMIT).unwrap_or(usize::MAX);
    &events[events.len().saturating_sub(limit)..]
}

fn validate(image: &StoreImage, default: DefaultPolicy) -> Result<(), StoreError> {
    let plain: Vec<RecoveryEntry> = image.entries.iter().map(|(e, _)| e.clone()).collect();
    validate_entries(&plain)?;
    match default {
        DefaultPolicy::Keep => {}
        DefaultPolicy::Timing(policy) => policy.validate()?,
        DefaultPolicy::Full(policy) => policy.validate()?,
    }
    let mut scopes = HashSet::new();
    for (scope, policy) in image.overrides.as_deref().unwrap_or_default() {
        match scope {
            PolicyScope::Service(name) => validate_service_name(name)?,
            PolicyScope::Key(key) => key.validate()?,
        }
        policy.validate()?;
        if !scopes.insert(scope) {
            return Err(invalid(format!(
                "the override for {scope} appears more than once"
            )));
        }
    }
    for event in recent(&image.audit) {
        validate_event(event)?;
    }
    Ok(())
}

fn validate_event(event: &AuditEvent) -> Result<(), StoreError> {
    let action = event.action.as_str();
    let seq = event.seq;
    if event.action.is_one_key() {
        let Some(key) = &event.key else {
            return Err(invalid(format!(
                "audit event {seq} ({action}) names no key"
            )));
        };
        key.parse::<BackendKey>()
            .map_err(|e| invalid(format!("audit event {seq} ({action}) key {key:?}: {e}")))?;
        if event.scope.is_some() {
            return Err(invalid(format!(
                "audit event {seq} ({action}) names a scope; a {action} event names only its key"
            )));
        }
    } else {
        if event.scope.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(format!(
                "audit event {seq} ({action}) names no scope"
            )));
        }
        if event.key.is_some() {
            return Err(invalid(format!(
                "audit event {seq} ({action}) names a key; a {action} event names only its scope"
            )));
        }
    }
    for (field, text) in [
        ("key", &event.key),
        ("scope", &event.scope),
        ("user", &event.user),
        ("reason", &event.reason),
    ] {
        if let Some(text) = text
            && text.len() > MAX_AUDIT_TEXT
        {
            return Err(invalid(format!(
                "audit event {seq} {field} is {} bytes, over the {MAX_AUDIT_TEXT}-byte limit",
                text.len()
            )));
        }
    }
    Ok(())
}

fn invalid(detail: String) -> StoreError {
    StoreError::InvalidImport { detail }
}

/// Refuses entries the store could not have written: an invalid or repeated key, no crash in
/// the window, or fewer crashes in total than in the window.
pub(crate) fn validate_entries(entries: &[RecoveryEntry]) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    for entry in entries {
        entry.key.validate()?;
        let problem = if !seen.insert(&entry.key) {
            "appears more than once"
        } else if entry.crashes_in_window == 0 {
            "has no crash in its window"
        } else if entry.total_crashes < u64::from(entry.crashes_in_window) {
            "has fewer crashes in total than in its window"
        } else {
            continue;
        };
        return Err(invalid(format!("entry {} {problem}", entry.key)));
    }
    Ok(())
}
