//! One walk of the store for `list`: the entries a filter keeps, judged by the policy that
//! applies to each, and the entries it cannot show (damaged, or judged by a damaged policy
//! override), which no filter but a key-text one hides.

use recovery_store::{BackendKey, RecoveryStore, StoreError, StoredPolicies, Timestamp};

use crate::cli::json;
use crate::cli::lookup;
use crate::cli::render;
use crate::cli::sanitize::sanitize;
use crate::cli::view::{EntryView, State};

/// The entries `list` shows: one instance's, one service's, one state's.
pub(super) struct Filter<'a> {
    pub prefix: String,
    pub service: Option<&'a str>,
    pub state: Option<State>,
    pub now: Timestamp,
    pub policies: StoredPolicies,
}

/// An entry `list` cannot show: its stored key text, and why, with what to do next.
pub(super) struct Damaged {
    pub key: String,
    pub text: String,
}

impl Damaged {
    fn of(err: &StoreError) -> Self {
        let key = match err {
            StoreError::CorruptEntry { key, .. } => key.clone(),
            _ => String::new(),
        };
        Self {
            key,
            text: render::damaged_text(err),
        }
    }

    /// An entry judged by a damaged override.
    fn unjudged(key: &BackendKey, err: &StoreError) -> Self {
        Self {
            key: key.to_string(),
            text: lookup::unjudged_text(key, err),
        }
    }
}

impl Filter<'_> {
    /// Streams the matching entries to `visit`, damaged ones to `damaged` (those a filter rules
    /// out by key text excepted); `visit` returns false to stop.
    pub fn walk(
        &self,
        store: &RecoveryStore,
        mut visit: impl FnMut(EntryView) -> bool,
        mut damaged: impl FnMut(&Damaged) -> bool,
    ) -> Result<(), StoreError> {
        store.for_each_entry_with_history(&self.prefix, |entry| {
            let go_on = match entry {
                Ok((e, mut history)) => {
                    if self.service.is_some_and(|s| e.key.service_name != s) {
                        return Ok(());
                    }
                    let applied = match self.policies.judge(&e.key) {
                        Ok(applied) => applied,
                        // Its state is unknown, so it may be the state filtered for: named.
                        Err(err) => {
                            let go_on = damaged(&Damaged::unjudged(&e.key, &err));
                            return if go_on { Ok(()) } else { Err(json::stop()) };
                        }
                    };
                    let mut view = EntryView::under(e, self.now, &applied.policy);
                    view.last = history.pop();
                    if self.state.is_some_and(|s| s != view.state) {
                        return Ok(());
                    }
                    visit(view)
                }
                Err(err @ StoreError::CorruptEntry { .. }) => {
                    if !self.damaged_shown(&err) {
                        return Ok(());
                    }
                    damaged(&Damaged::of(&err))
                }
                Err(other) => return Err(other),
            };
            if go_on { Ok(()) } else { Err(json::stop()) }
        })
    }

    /// Damaged entries are reported (never hidden) unless a filter rules them out by key text;
    /// a state filter cannot (their state is unknown, so it may be the one filtered for).
    fn damaged_shown(&self, err: &StoreError) -> bool {
        let raw = match err {
            StoreError::CorruptEntry { key, .. } => key.as_str(),
            _ => "",
        };
        self.service.is_none_or(|s| raw.contains(&format!("/{s}@")))
    }
}

/// Names an entry `list` cannot show on stderr (the table's and `-q`'s way; `--json` lists it).
pub(super) fn report(damaged: &Damaged) -> bool {
    eprintln!("recovery-store: {}", sanitize(&damaged.text));
    true
}
