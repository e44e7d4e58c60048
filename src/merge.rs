//! [`RecoveryStore::merge_entries`]: adding entries (an `import --merge`) to a live store in one
//! write transaction, so that a crash another process records meanwhile is never lost.

use crate::error::StoreError;
use crate::key::BackendKey;
use crate::record::{CrashRecord, RecoveryEntry};
use crate::restore::{DefaultPolicy, ImportMode, StoreImage};
use crate::store::RecoveryStore;

impl RecoveryStore {
    /// Adds `entries` to the store in one transaction, keeping every other entry and the
    /// policy; returns the keys the store held with other state, which `entries` replaced. Adding entries writes an
    /// [`AuditAction::Import`](crate::AuditAction) event (scope `merge`) in the same
    /// transaction; an empty `entries` writes nothing. (See [`import`](Self::import) for
    /// merging overrides too.)
    ///
    /// A key the store holds with other state is refused with [`StoreError::ImportConflict`],
    /// naming the keys, and nothing changes, unless `overwrite` is true, when `entries`
    /// replace them (a key held exactly as given is no conflict). The
    /// check and the write share the transaction, so a crash recorded by another process is
    /// either seen by the check or committed before it, never overwritten unseen.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for an invalid key; [`StoreError::InvalidImport`] for an entry
    /// the store could not have written (as for [`import`](Self::import));
    /// [`StoreError::ImportConflict`] for a key in both without `overwrite`; storage errors as
    /// for any write.
    pub fn merge_entries(
        &self,
        entries: &[RecoveryEntry],
        overwrite: bool,
    ) -> Result<Vec<BackendKey>, StoreError> {
        let entries: Vec<_> = entries.iter().map(|e| (e.clone(), Vec::new())).collect();
        self.merge_entries_with_history(&entries, overwrite)
    }

    /// [`merge_entries`](Self::merge_entries), each entry with its crash history: an entry
    /// it overwrites is replaced whole, history included.
    pub fn merge_entries_with_history(
        &self,
        entries: &[(RecoveryEntry, Vec<CrashRecord>)],
        overwrite: bool,
    ) -> Result<Vec<BackendKey>, StoreError> {
        let image = StoreImage {
            entries: entries.to_vec(),
            ..StoreImage::default()
        };
        let mode = ImportMode::Merge { overwrite };
        Ok(self
            .import_with(&image, DefaultPolicy::Keep, mode, None)?
            .overwritten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn entry(key: &str, crashes: u32) -> RecoveryEntry {
        let at = Timestamp::from_parts(1_000_000_000, None);
        RecoveryEntry {
            key: key.parse().unwrap(),
            window_started_at: at,
            crashes_in_window: crashes,
            last_crash: at,
            total_crashes: u64::from(crashes),
        }
    }

    #[test]
    fn merge_keeps_other_entries_and_refuses_keys_in_both_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecoveryStore::open(dir.path().join("s.redb")).unwrap();
        store
            .record_crash(&"shared/mine@1.0.0".parse().unwrap(), Timestamp::now())
            .unwrap();
        let added = [entry("shared/a@1.0.0", 1), entry("shared/b@1.0.0", 2)];
        assert!(store.merge_entries(&added, false).unwrap().is_empty());
        assert_eq!(store.len().unwrap(), 3);

        let again = [entry("shared/a@1.0.0", 2), entry("shared/c@1.0.0", 1)];
        let err = store.merge_entries(&again, false).unwrap_err();
        assert!(
            matches!(&err, StoreError::ImportConflict { detail } if detail.contains("shared/a@1.0.0")),
            "{err}"
        );
        assert_eq!(store.len().unwrap(), 3, "a refused merge writes nothing");
        let a: BackendKey = "shared/a@1.0.0".parse().unwrap();
        assert_eq!(
            store.merge_entries(&again, true).unwrap(),
            std::slice::from_ref(&a)
        );
        assert_eq!(store.get(&a).unwrap().unwrap().crashes_in_window, 2);
        assert_eq!(store.len().unwrap(), 4);

        let twice = [entry("shared/d@1.0.0", 1), entry("shared/d@1.0.0", 1)];
        assert!(store.merge_entries(&twice, true).is_err());
        assert!(
            store
                .merge_entries(&[entry("shared/e@1.0.0", 0)], true)
                .is_err()
        );
        assert_eq!(store.len().unwrap(), 4);
    }
}
