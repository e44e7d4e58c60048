//! One batch of crashes as one write transaction: the decisions of all, or on a crash that
//! cannot be decided each alone, and for a failed commit a copy of its error for every caller.

use std::path::Path;

use super::{Crash, Outcome};
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::record::CrashReport;
use crate::storage::Storage;
use crate::time::Timestamp;

/// Runs a batch of crashes in one durable transaction, as `apply` decides each in order.
///
/// When deciding one crash fails (a damaged entry, say), nothing was committed, and each crash
/// is then run in a transaction of its own, so every caller gets exactly what a call on its own
/// would have got. When the commit itself fails, every caller in the batch gets the error.
pub(crate) fn commit_crashes(
    storage: &Storage,
    batch: &[Crash],
    apply: impl Fn(
        &mut crate::storage::Writer<'_>,
        &BackendKey,
        Option<Timestamp>,
        CrashReport,
    ) -> Outcome,
) -> Vec<Outcome> {
    let mut undecided = false;
    let result = storage.write(|w| {
        let decisions = batch
            .iter()
            .map(|(key, now, report)| apply(w, key, *now, *report))
            .collect::<Result<Vec<_>, _>>();
        undecided = decisions.is_err();
        decisions
    });
    match result {
        Ok(decisions) => decisions.into_iter().map(Ok).collect(),
        // Only a crash that could not be decided is worth running alone; a busy store or a
        // failed commit would fail each of them again, one bound at a time.
        Err(_) if undecided && batch.len() > 1 => batch
            .iter()
            .map(|(key, now, report)| storage.write(|w| apply(w, key, *now, *report)))
            .collect(),
        Err(err) => {
            let mut outcomes: Vec<Outcome> = batch
                .iter()
                .skip(1)
                .map(|_| Err(replicate(&err, storage.path())))
                .collect();
            outcomes.insert(0, Err(err));
            outcomes
        }
    }
}

/// A copy of `err` for another caller of the same failed batch. Errors are not `Clone` (they
/// carry I/O and engine sources); the variants a commit can fail with are copied field by
/// field, and any other keeps its message.
fn replicate(err: &StoreError, path: &Path) -> StoreError {
    use StoreError as E;
    match err {
        E::Corrupt { path, detail } => E::Corrupt {
            path: path.clone(),
            detail: detail.clone(),
        },
        E::CorruptEntry { path, key, detail } => E::CorruptEntry {
            path: path.clone(),
            key: key.clone(),
            detail: detail.clone(),
        },
        E::NotAStore { path, detail } => E::NotAStore {
            path: path.clone(),
            detail: detail.clone(),
        },
        E::Locked { path, detail } => E::Locked {
            path: path.clone(),
            detail: detail.clone(),
        },
        E::Io {
            action,
            path,
            source,
        } => E::Io {
            action,
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(source.kind(), source.to_string()),
            },
        },
        E::Busy {
            path,
            waited_for,
            waited,
        } => E::Busy {
            path: path.clone(),
            waited_for,
            waited: *waited,
        },
        E::Storage { path, source } => E::Storage {
            path: path.clone(),
            source: source.to_string().into(),
        },
        other => E::Storage {
            path: path.to_owned(),
            source: other.to_string().into(),
        },
    }
}
