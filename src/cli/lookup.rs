//! Which entries a `KEY` argument names: exactly one when it carries an executable hash; every
//! hash of that instance, service and version when it does not (brokers store hashes nobody
//! types). When nothing matches, near keys (the same service under another version, instance
//! or hash) are offered, so a typo never reads as a healthy backend.
//!
//! A match whose deciding policy override is damaged (its key's row, else its service's) is
//! never judged by another policy, and a match whose own entry cannot be decoded cannot be
//! judged at all: each is kept apart, named with its error and remedy, and the matches that can
//! be judged are answered for. Only a key whose every match is unjudged fails.

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
    /// The matching entries that could not be judged: a damaged deciding override
    /// ([`StoreError::CorruptOverride`]) or a damaged entry ([`StoreError::CorruptEntry`]).
    pub unjudged: Vec<Unjudged>,
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
            || self.unjudged.iter().any(|u| u.key != key.to_string())
    }

    /// How many entries matched, judged or not.
    pub fn matched(&self) -> usize {
        self.views.len() + self.unjudged.len()
    }

    /// One text per unjudged match: its key and why it cannot be judged.
    pub fn unjudged_texts(&self) -> Vec<String> {
        self.unjudged.iter().map(Unjudged::text).collect()
    }
}

/// A matching entry that could not be judged.
#[derive(Debug)]
pub struct Unjudged {
    /// The stored key text (a damaged entry's may not parse; sanitize before printing).
    pub key: String,
    /// [`StoreError::CorruptOverride`] or [`StoreError::CorruptEntry`].
    pub error: StoreError,
}

impl Unjudged {
    /// Why it was not judged, in a few words: `damaged policy override` or `damaged entry`.
    pub fn why(&self) -> &'static str {
        match self.error {
            StoreError::CorruptEntry { .. } => "damaged entry",
            _ => "damaged policy override",
        }
    }

    /// Its key, why it cannot be judged, and the remedy: for a damaged entry, the
    /// `recovery-store reset --raw 'KEY'` that clears it.
    pub fn text(&self) -> String {
        match &self.error {
            StoreError::CorruptEntry { detail, .. } => format!(
                "entry {} cannot be judged: it cannot be decoded ({detail}): clear it with \
                 `recovery-store reset --raw {}`",
                self.key,
                super::render::shell_quoted(&self.key)
            ),
            err => format!("entry {} cannot be judged: {err}", self.key),
        }
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
        Err(error) => found.unjudged.push(Unjudged {
            key: e.key.to_string(),
            error,
        }),
    };
    let wanted = key.to_string();
    let damaged = |raw: &str| raw == wanted || (key.exe_hash.is_empty() && names_stored(key, raw));
    let mut unreadable = Vec::new();
    let mut keep = |entry: Result<recovery_store::RecoveryEntry, StoreError>| {
        match entry {
            Ok(e) if e.key == *key || (key.exe_hash.is_empty() && same_build(&e.key, key)) => {
                judge(e);
            }
            Err(error @ StoreError::CorruptEntry { .. }) => {
                if let StoreError::CorruptEntry { key: raw, .. } = &error
                    && damaged(raw)
                {
                    unreadable.push(Unjudged {
                        key: raw.clone(),
                        error,
                    });
                }
            }
            Ok(_) => {}
            Err(other) => return Err(other),
        }
        Ok(())
    };
    if key.exe_hash.is_empty() {
        store.for_each_entry(&wanted, &mut keep)?;
    } else {
        store.get(key).transpose().map_or(Ok(()), &mut keep)?;
    }
    found.unjudged.append(&mut unreadable);
    found.unjudged.sort_by(|a, b| a.key.cmp(&b.key));
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

/// True when the stored key text `text` is one of the entries the hash-less `wanted` names:
/// the same instance, service and version under any hash. Matched as text too, since a damaged
/// entry's key may not parse.
pub fn names_stored(wanted: &BackendKey, text: &str) -> bool {
    text.parse::<BackendKey>()
        .is_ok_and(|k| same_build(&k, wanted))
        || text
            .strip_prefix(wanted.to_string().as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('#'))
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
