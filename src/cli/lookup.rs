//! Which entries a `KEY` argument names: exactly one when it carries an executable hash; every
//! hash of that instance, service and version when it does not (brokers store hashes nobody
//! types). When nothing matches, near keys (the same service under another version, instance
//! or hash) are offered, so a typo never reads as a healthy backend.

use recovery_store::{BackendKey, RecoveryStore, StoreError, Timestamp};

use super::view::EntryView;

/// The most near keys suggested.
const MAX_SIMILAR: usize = 5;

/// The entries a key names, judged at one moment.
#[derive(Debug)]
pub struct Found {
    /// The matching entries, in key order.
    pub views: Vec<EntryView>,
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

    /// True when the key matched entries under executable hashes it did not name.
    pub fn widened(&self, key: &BackendKey) -> bool {
        self.views.iter().any(|v| v.entry.key != *key)
    }
}

/// Finds the entries `key` names; see the module docs.
pub fn find(
    store: &RecoveryStore,
    key: &BackendKey,
    now: Timestamp,
    policies: &recovery_store::Policies,
) -> Result<Found, StoreError> {
    let mut views = Vec::new();
    if key.exe_hash.is_empty() {
        store.for_each_entry(&key.to_string(), |entry| {
            match entry {
                Ok(e) if same_build(&e.key, key) => views.push(EntryView::new(e, now, policies)),
                // Damaged entries are `check`'s and `list`'s to report.
                Ok(_) | Err(StoreError::CorruptEntry { .. }) => {}
                Err(other) => return Err(other),
            }
            Ok(())
        })?;
    } else if let Some(e) = store.get(key)? {
        views.push(EntryView::new(e, now, policies));
    }
    let similar = if views.is_empty() {
        similar(store, key)?
    } else {
        Vec::new()
    };
    Ok(Found { views, similar })
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
