//! Whole-store imports ([`RecoveryStore::import`]): an image's entries and policies written in
//! one transaction, replacing the store's state or merged into it. This is what
//! `recovery-store import` runs; `export` writes the same parts.
//!
//! An import never writes the store's audit trail beyond its own `import` event: the trail
//! records what happened to this store, and events from elsewhere would be indistinguishable
//! from its own.

use std::collections::HashSet;

use crate::audit::{AuditAction, Change};
use crate::error::StoreError;
use crate::key::{BackendKey, validate_service_name};
use crate::overrides::PolicyScope;
use crate::policy::{BackendRecoveryPolicy, RecoveryPolicy};
use crate::record::{CrashRecord, HISTORY_LIMIT, RecoveryEntry};
use crate::storage::Writer;
use crate::store::RecoveryStore;

/// The most keys or scopes an import error names; the rest are counted.
const NAMED: usize = 5;

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

fn replace(
    w: &mut Writer<'_>,
    image: &StoreImage,
    default: DefaultPolicy,
    overwrite: bool,
) -> Result<ImportOutcome, StoreError> {
    let held = w.keys("")?;
    // Comparing every entry costs a read each inside the write lock: only a replace that may
    // refuse needs it. (A replace that would change nothing never gets here.)
    if !overwrite {
        let differing = differing_entries(w, image, &held)?;
        refuse_replacing(w, image, default, &differing)?;
    }
    let wanted: HashSet<String> = image
        .entries
        .iter()
        .map(|(e, _)| e.key.to_string())
        .collect();
    let mut outcome = ImportOutcome {
        changed: true,
        removed: held
            .iter()
            .map(|raw| String::from_utf8_lossy(raw).into_owned())
            .filter(|key| !wanted.contains(key))
            .collect(),
        ..ImportOutcome::default()
    };
    for raw in &held {
        w.remove_raw(raw)?;
    }
    for (entry, history) in &image.entries {
        w.put_with_history(entry, history)?;
    }
    if let Some(overrides) = &image.overrides {
        let before = w.policies().ok().map(|p| sorted(p.overrides));
        let cleared = w.clear_overrides()?;
        for (scope, policy) in overrides {
            w.set_override(scope, policy)?;
        }
        if before != Some(sorted(overrides.clone())) {
            outcome.overrides_replaced = cleared;
        }
    }
    Ok(outcome)
}

/// The stored keys (raw text) a replace would lose or change: those the image lacks, or
/// holds with another entry or history (a damaged entry always differs).
fn differing_entries(
    w: &Writer<'_>,
    image: &StoreImage,
    held: &[Vec<u8>],
) -> Result<Vec<String>, StoreError> {
    let wanted: std::collections::HashMap<String, &(RecoveryEntry, Vec<CrashRecord>)> = image
        .entries
        .iter()
        .map(|item| (item.0.key.to_string(), item))
        .collect();
    let mut differing = Vec::new();
    for raw in held {
        let text = String::from_utf8_lossy(raw).into_owned();
        let same = match (wanted.get(&text), w.get_raw(raw)) {
            (Some((entry, history)), Ok(Some(stored))) => {
                stored == *entry && w.history(&text)? == *history
            }
            _ => false,
        };
        if !same {
            differing.push(text);
        }
    }
    Ok(differing)
}

/// Refuses a replace over a store that holds state the image would lose: an entry it lacks or
/// holds otherwise, a default policy other than the image's and the reference's, or
/// overrides other than the image's (compared as sets; a damaged row counts as other).
fn refuse_replacing(
    w: &Writer<'_>,
    image: &StoreImage,
    default: DefaultPolicy,
    differing: &[String],
) -> Result<(), StoreError> {
    let mut parts = Vec::new();
    if !differing.is_empty() {
        parts.push(format!(
            "{} ({})",
            count(differing.len(), "entry", "entries"),
            named(differing)
        ));
    }
    // A store's own default, or the reference's, loses nothing when replaced.
    let stored = w.recovery_policy().ok();
    let other_default = stored.is_some_and(|s| s != RecoveryPolicy::default())
        && match default {
            DefaultPolicy::Keep => false,
            DefaultPolicy::Full(policy) => stored != Some(policy),
            DefaultPolicy::Timing(policy) => stored.is_some_and(|s| s.recovery != policy),
        };
    if other_default {
        parts.push("another default policy".to_owned());
    }
    if let Some(wanted) = &image.overrides {
        match w.policies() {
            Ok(p) if p.overrides.is_empty() => {}
            Ok(p) if sorted(p.overrides.clone()) == sorted(wanted.clone()) => {}
            Ok(p) => {
                let names: Vec<String> = p.overrides.iter().map(|(s, _)| s.to_string()).collect();
                parts.push(format!(
                    "{} ({})",
                    count(names.len(), "override", "overrides"),
                    named(&names)
                ));
            }
            Err(_) => parts.push("overrides (some of them damaged)".to_owned()),
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    Err(StoreError::ImportConflict {
        detail: format!(
            "the store holds {} that the import would replace",
            join_and(&parts)
        ),
    })
}

fn merge(
    w: &mut Writer<'_>,
    image: &StoreImage,
    overwrite: bool,
) -> Result<ImportOutcome, StoreError> {
    let mut outcome = ImportOutcome::default();
    let mut new_entries = Vec::new();
    for (entry, history) in &image.entries {
        match w.get(&entry.key) {
            Ok(None) => new_entries.push((entry, history)),
            Ok(Some(stored))
                if stored == *entry && w.history(&entry.key.to_string())? == *history => {}
            // A damaged entry is replaced like any other.
            Ok(Some(_)) | Err(StoreError::CorruptEntry { .. }) => {
                outcome.overwritten.push(entry.key.clone());
                new_entries.push((entry, history));
            }
            Err(other) => return Err(other),
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
        return Err(StoreError::ImportConflict {
            detail: conflicts(&outcome),
        });
    }
    for (entry, history) in &new_entries {
        w.put_with_history(entry, history)?;
    }
    outcome.changed = !new_entries.is_empty();
    for (scope, policy) in overrides {
        outcome.changed |= w.set_override(scope, policy)?;
    }
    Ok(outcome)
}

/// "2 entries the store holds otherwise (a, b) and 1 override stored with another policy
/// (service:x)".
fn conflicts(outcome: &ImportOutcome) -> String {
    let mut parts = Vec::new();
    if !outcome.overwritten.is_empty() {
        let names: Vec<String> = outcome
            .overwritten
            .iter()
            .map(ToString::to_string)
            .collect();
        parts.push(format!(
            "{} the store holds otherwise ({})",
            count(names.len(), "entry", "entries"),
            named(&names)
        ));
    }
    if !outcome.overrides_overwritten.is_empty() {
        let names: Vec<String> = outcome
            .overrides_overwritten
            .iter()
            .map(ToString::to_string)
            .collect();
        parts.push(format!(
            "{} stored with another policy ({})",
            count(names.len(), "override", "overrides"),
            named(&names)
        ));
    }
    join_and(&parts)
}

/// "a", "a and b", "a, b and c".
fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The first [`NAMED`] of `names`, and how many more.
fn named(names: &[String]) -> String {
    let shown = names[..names.len().min(NAMED)].join(", ");
    match names.len().saturating_sub(NAMED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

fn sorted(mut overrides: Vec<(PolicyScope, RecoveryPolicy)>) -> Vec<(PolicyScope, RecoveryPolicy)> {
    overrides.sort_by(|a, b| a.0.cmp(&b.0));
    overrides
}

fn validate(image: &StoreImage, default: DefaultPolicy) -> Result<(), StoreError> {
    validate_entries(image.entries.iter().map(|(e, _)| e))?;
    for (entry, history) in &image.entries {
        validate_history(entry, history)?;
    }
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
    Ok(())
}

/// Refuses a history the store could not have written for `entry`.
fn validate_history(entry: &RecoveryEntry, history: &[CrashRecord]) -> Result<(), StoreError> {
    let key = &entry.key;
    let most = entry.total_crashes.min(HISTORY_LIMIT as u64);
    if history.len() as u64 > most {
        return Err(invalid(format!(
            "entry {key} has {} crashes in its history, more than the {most} it can hold \
             (its total, at most {HISTORY_LIMIT})",
            history.len()
        )));
    }
    for (i, crash) in history.iter().enumerate() {
        crash
            .report()
            .validate()
            .map_err(|e| invalid(format!("entry {key} history[{i}]: {e}")))?;
        if crash.pid == Some(0) {
            return Err(invalid(format!(
                "entry {key} history[{i}] was recorded by PID 0, which no process has"
            )));
        }
    }
    Ok(())
}

fn invalid(detail: String) -> StoreError {
    StoreError::InvalidImport { detail }
}

/// Refuses entries the store could not have written: an invalid or repeated key, no crash in
/// the window, or fewer crashes in total than in the window. Times are never judged: a store
/// legitimately holds windows that start after their last crash (a late caller), boot clocks
/// offset by a time namespace, and wall times from a clock that ran ahead.
pub(crate) fn validate_entries<'a>(
    entries: impl IntoIterator<Item = &'a RecoveryEntry>,
) -> Result<(), StoreError> {
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
