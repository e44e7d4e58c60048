//! The writes of an import inside its transaction: a replace or a merge, each refusing what
//! it would overwrite without `overwrite`, and the text naming those conflicts.

use std::collections::{HashMap, HashSet};

use super::{DefaultPolicy, ImportOutcome, StoreImage};
use crate::error::StoreError;
use crate::overrides::PolicyScope;
use crate::policy::RecoveryPolicy;
use crate::record::{CrashRecord, RecoveryEntry};
use crate::storage::Writer;

/// The most keys or scopes an import error names; the rest are counted.
const NAMED: usize = 5;

pub(super) fn replace(
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
    let wanted: HashMap<String, &(RecoveryEntry, Vec<CrashRecord>)> = image
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

pub(super) fn merge(
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
        let mut damaged = Vec::new();
        for scope in &outcome.overrides_overwritten {
            if w.override_is_damaged(scope)? {
                damaged.push(scope.clone());
            }
        }
        return Err(StoreError::ImportConflict {
            detail: conflicts(&outcome, &damaged),
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

/// "2 entries the store holds otherwise (a, b), 1 override stored with another policy
/// (service:x) and 1 damaged override row (service:y)"; `damaged` are those of
/// `overrides_overwritten` whose stored row cannot be read.
fn conflicts(outcome: &ImportOutcome, damaged: &[PolicyScope]) -> String {
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
    let (broken, other): (Vec<&PolicyScope>, Vec<&PolicyScope>) = outcome
        .overrides_overwritten
        .iter()
        .partition(|scope| damaged.contains(scope));
    for (scopes, what) in [
        (other, "stored with another policy"),
        (broken, "stored damaged"),
    ] {
        if !scopes.is_empty() {
            let names: Vec<String> = scopes.iter().map(ToString::to_string).collect();
            parts.push(format!(
                "{} {what} ({})",
                count(names.len(), "override", "overrides"),
                named(&names)
            ));
        }
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

pub(super) fn sorted(
    mut overrides: Vec<(PolicyScope, RecoveryPolicy)>,
) -> Vec<(PolicyScope, RecoveryPolicy)> {
    overrides.sort_by(|a, b| a.0.cmp(&b.0));
    overrides
}
