//! Which entries a `KEY` argument names: exactly one when it carries an executable hash; every
//! hash of that instance, service and version when it does not (brokers store hashes nobody
//! types). When nothing matches, near keys (the same service under another version, instance
//! or hash) are offered, so a typo never reads as a healthy backend.
//!
//! A match whose deciding policy override is damaged (its key's row, else its service's) is
//! never judged by another policy: it is kept apart, named with its error, and the matches that
//! can be judged are answered for. Only a key whose every match is unjudged fails.

use recovery_store::{
    AppliedPolicy, BackendKey, RecoveryStore, StoreError, StoredPolicies, Timestamp,
};

use super::view::EntryView;

/// The most near keys suggested.
const MAX_SIMILAR: usize = 5;

/// The entries a key names, judged at one moment.
#[derive(Debug)]
pub struct Found {
    /// The matching entries that could be judged, in key order.
    pub views: Vec<EntryView>,
    /// The policy that judged each of `views`, in the same order.
    pub applied: Vec<AppliedPolicy>,
    /// The matching entries whose deciding override is damaged, with that row's error
    /// ([`StoreError::CorruptOverride`]), in key order.
    pub unjudged: Vec<(BackendKey, StoreError)>,
    /// Stored keys of the same service, when nothing matched.
    pub similar: Vec<String>,
}

impl Found {
    /// The worst matching entry: refused before recovering before healthy, then the longest
    /// wait.
    pub fn worst(&self) -> Option<&EntryView> {
        self.views
            .iter()
            .fold(None, |worst: Option<&EntryView>, v| match worst {
                Some(w) if !v.worse_than(w) => Some(w),
                _ => Some(v),
            })
    }

    /// The stored keys matched.
    pub fn keys(&self) -> Vec<String> {
        self.views.iter().map(|v| v.entry.key.to_string()).collect()
    }

    /// The policy that judged the worst match; `None` when nothing was judged.
    pub fn worst_policy(&self) -> Option<&AppliedPolicy> {
        let worst = self.worst()?;
        let i = self
            .views
            .iter()
            .position(|v| v.entry.key == worst.entry.key)?;
        self.applied.get(i)
    }

    /// True when the key matched entries under executable hashes it did not name.
    pub fn widened(&self, key: &BackendKey) -> bool {
        self.views.iter().any(|v| v.entry.key != *key)
            || self.unjudged.iter().any(|(k, _)| k != key)
    }

    /// How many entries matched, judged or not.
    pub fn matched(&self) -> usize {
        self.views.len() + self.unjudged.len()
    }

    /// One text per unjudged match: its key and why it cannot be judged.
    pub fn unjudged_texts(&self) -> Vec<String> {
        self.unjudged
            .iter()
            .map(|(key, err)| unjudged_text(key, err))
            .collect()
    }
}

/// An entry judged by a damaged override: its key, and the row's error with its remedy.
pub fn unjudged_text(key: &BackendKey, err: &StoreError) -> String {
    format!("entry {key} cannot be judged: {err}")
}

/// Finds the entries `key` names, each judged by the policy `policies` picks for it; see the
/// module docs.
///
/// # Errors
///
/// A storage error; never a damaged override (its matches are [`Found::unjudged`]).
pub fn find(
    store: &RecoveryStore,
    key: &BackendKey,
    now: Timestamp,
    policies: &StoredPolicies,
) -> Result<Found, StoreError> {
    let mut found = Found {
        views: Vec::new(),
        applied: Vec::new(),
        unjudged: Vec::new(),
        similar: Vec::new(),
    };
    let mut judge = |e: recovery_store::RecoveryEntry| match policies.judge(&e.key) {
        Ok(applied) => {
            found.views.push(EntryView::under(e, now, &applied.policy));
            found.applied.push(applied);
        }
        Err(err) => found.unjudged.push((e.key, err)),
    };
    if key.exe_hash.is_empty() {
        store.for_each_entry(&key.to_string(), |entry| {
            match entry {
                Ok(e) if same_build(&e.key, key) => judge(e),
                // Damaged entries are `check`'s and `list`'s to report.
                Ok(_) | Err(StoreError::CorruptEntry { .. }) => {}
                Err(other) => return Err(other),
            }
            Ok(())
        })?;
    } else if let Some(e) = store.get(key)? {
        judge(e);
    }
    if found.matched() == 0 {
        found.similar = similar(store, key)?;
    }
    Ok(found)
}

/// Same instance, service and version; any executable hash.
pub fn same_build(stored: &BackendKey, wanted: &BackendKey) -> bool {
    stored.instance == wanted.instance
        && stored.service_name == wanted.service_name
        && stored.service_version == wanted.service_version
}

/// Stored keys of `key`'s service under another version, instance or hash.
pub fn similar(store: &RecoveryStore, key: &BackendKey) -> Result<Vec<String>, StoreError> {
    let mut near = Vec::new();
    store.for_each_entry("", |entry| {
        match entry {
            Ok(e) if e.key.service_name == key.service_name && e.key != *key => {
                if near.len() < MAX_SIMILAR {
                    near.push(e.key.to_string());
                }
            }
            Ok(_) | Err(StoreError::CorruptEntry { .. }) => {}
            Err(other) => return Err(other),
        }
        Ok(())
    })?;
    Ok(near)
}
