//! Reads of a store: one entry, the entries (listed, streamed or scanned for damage), their
//! history and the audit trail, each from one snapshot.

use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::policy::BackendStatus;
use crate::record::{CrashRecord, RecoveryEntry};
use crate::time::Timestamp;

use super::RecoveryStore;

impl RecoveryStore {
    /// The audit trail, oldest first: every event, or only those naming `key` (events with
    /// that key, and none with a scope). At most [`AUDIT_LIMIT`](crate::AUDIT_LIMIT) events;
    /// a store written before schema 2 (read without migrating) has none.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for an invalid key; [`StoreError::CorruptAuditEvent`] naming
    /// the sequence number of an event that cannot be decoded (the CLI's `audit` reads past
    /// them through [`Snapshot::for_each_audit_event`](crate::Snapshot::for_each_audit_event));
    /// storage errors as for any read.
    pub fn audit(&self, key: Option<&BackendKey>) -> Result<Vec<AuditEvent>, StoreError> {
        let key = match key {
            Some(key) => {
                key.validate()?;
                Some(key.to_string())
            }
            None => None,
        };
        self.storage.read(|r| {
            r.audit(|event| {
                key.as_ref()
                    .is_none_or(|k| event.key.as_deref() == Some(k.as_str()))
            })
        })
    }

    /// The stored state of `key`, if any.
    pub fn get(&self, key: &BackendKey) -> Result<Option<RecoveryEntry>, StoreError> {
        key.validate()?;
        self.storage.read(|r| r.get(key))
    }

    /// Where `key` stands at `now`.
    pub fn status(&self, key: &BackendKey, now: Timestamp) -> Result<BackendStatus, StoreError> {
        key.validate()?;
        self.storage.read(|r| {
            let Some(entry) = r.get(key)? else {
                return Ok(BackendStatus::Healthy);
            };
            let policy = r.policy_for(key)?.policy;
            Ok(crate::window::status_under(&entry, now, &policy))
        })
    }

    /// Every entry with its crash history, in key order, from one snapshot (for `show`, `list`
    /// and `export`). Fails on the first damaged entry.
    pub fn list_with_history(&self) -> Result<Vec<(RecoveryEntry, Vec<CrashRecord>)>, StoreError> {
        self.storage.read(|r| {
            let mut entries = Vec::new();
            r.scan("", |_, entry| {
                entries.push(entry?);
                Ok(())
            })?;
            entries
                .into_iter()
                .map(|entry| {
                    let history = r.history(&entry.key)?;
                    Ok((entry, history))
                })
                .collect()
        })
    }

    /// Every entry, in key order (by instance, then service).
    pub fn list(&self) -> Result<Vec<RecoveryEntry>, StoreError> {
        self.list_prefix("")
    }

    /// The entries whose key text starts with `prefix`, in key order; e.g. `"shared/"` for the
    /// shared broker's backends. Fails on the first damaged entry.
    pub fn list_prefix(&self, prefix: &str) -> Result<Vec<RecoveryEntry>, StoreError> {
        self.storage.read(|r| {
            let mut out = Vec::new();
            r.scan(prefix, |_, entry| {
                out.push(entry?);
                Ok(())
            })?;
            Ok(out)
        })
    }

    /// Streams the entries whose key text starts with `prefix` (`""` for all), in key order,
    /// from one consistent snapshot, to `visit`; memory stays flat however many there are.
    ///
    /// A damaged entry reaches `visit` as [`StoreError::CorruptEntry`] and the walk goes on;
    /// an error returned by `visit` stops the walk and is returned. The snapshot does not hold
    /// back writers: other processes commit while it runs, and it does not see their commits.
    pub fn for_each_entry(
        &self,
        prefix: &str,
        mut visit: impl FnMut(Result<RecoveryEntry, StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.storage
            .read(|r| r.scan(prefix, |_, entry| visit(entry)))
    }

    /// [`for_each_entry`](Self::for_each_entry), each entry with its crash history, from the
    /// same snapshot (for `export`).
    pub fn for_each_entry_with_history(
        &self,
        prefix: &str,
        mut visit: impl FnMut(
            Result<(RecoveryEntry, Vec<CrashRecord>), StoreError>,
        ) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.storage.read(|r| {
            r.scan(prefix, |_, entry| {
                let item = entry.and_then(|e| {
                    let history = r.history(&e.key)?;
                    Ok((e, history))
                });
                visit(item)
            })
        })
    }

    /// Decodes every entry, reporting each damaged one instead of stopping at the first.
    pub fn scan_all(&self) -> Result<(Vec<RecoveryEntry>, Vec<StoreError>), StoreError> {
        self.storage.read(|r| {
            let (mut good, mut bad) = (Vec::new(), Vec::new());
            r.scan("", |_, entry| {
                match entry {
                    Ok(e) => good.push(e),
                    Err(e) => bad.push(e),
                }
                Ok(())
            })?;
            Ok((good, bad))
        })
    }

    /// The number of entries.
    pub fn len(&self) -> Result<u64, StoreError> {
        self.storage.read(|r| r.len())
    }

    /// True when no backend has state.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}
