//! What an import refuses before its transaction: images no store could have written.

use std::collections::HashSet;

use super::{DefaultPolicy, StoreImage};
use crate::error::StoreError;
use crate::key::validate_service_name;
use crate::overrides::PolicyScope;
use crate::record::{CrashRecord, HISTORY_LIMIT, RecoveryEntry};

pub(super) fn validate(image: &StoreImage, default: DefaultPolicy) -> Result<(), StoreError> {
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
fn validate_entries<'a>(
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
