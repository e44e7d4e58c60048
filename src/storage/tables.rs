//! The [`Reader`] and [`Writer`] of one transaction, and the `meta` and `entries` tables
//! through them (the policy and audit rows are in `policy_rows` and `audit_rows`).

use std::ops::Bound;
use std::path::Path;

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableError,
    WriteTransaction,
};

use super::guard::{encode_err, engine_err, missing_meta, not_a_store};
use super::{AUDIT, ENTRIES, META, OVERRIDES};
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::migrations::{self, CURRENT_VERSION, FORMAT_NAME, current as schema};
use crate::policy::BackendRecoveryPolicy;
use crate::record::{self, CrashRecord, RecoveryEntry};

/// Reads from one snapshot.
pub(crate) struct Reader<'a> {
    pub(super) txn: &'a ReadTransaction,
    pub(super) meta: ReadOnlyTable<&'static [u8], &'static [u8]>,
    entries: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    /// The schema the values were written by (a store not yet migrated reads as it is).
    pub(super) schema: u32,
    pub(super) path: &'a Path,
}

impl<'a> Reader<'a> {
    pub(super) fn open(txn: &'a ReadTransaction, path: &'a Path) -> Result<Self, StoreError> {
        let meta = match txn.open_table(META) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Err(not_a_store(path)),
            Err(e) => return Err(engine_err(path, e)),
        };
        let entries = match txn.open_table(ENTRIES) {
            Ok(table) => Some(table),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(engine_err(path, e)),
        };
        // A file that says no version fails in `schema_version`; until then, read as current.
        let schema = read_schema_version(&meta, path).unwrap_or(CURRENT_VERSION);
        Ok(Self {
            txn,
            meta,
            entries,
            schema,
            path,
        })
    }

    /// The schema version recorded in the file, after checking the format name.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        read_schema_version(&self.meta, self.path)
    }

    /// One backend's entry.
    pub fn get(&self, key: &BackendKey) -> Result<Option<RecoveryEntry>, StoreError> {
        match &self.entries {
            Some(table) => get_entry(table, key, self.schema, self.path),
            None => Ok(None),
        }
    }

    /// One backend's crash history, oldest first (empty without an entry).
    pub fn history(&self, key: &BackendKey) -> Result<Vec<CrashRecord>, StoreError> {
        let Some(table) = &self.entries else {
            return Ok(Vec::new());
        };
        let text = key.to_string();
        let value = table
            .get(text.as_bytes())
            .map_err(|e| engine_err(self.path, e))?;
        value
            .map(|v| {
                record::decode_history(v.value(), self.schema).map_err(|e| {
                    StoreError::CorruptEntry {
                        path: self.path.to_owned(),
                        key: text.clone(),
                        detail: format!("value: {e}"),
                    }
                })
            })
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Visits every entry whose key text starts with `prefix`, in key order. Each entry is
    /// decoded separately, so one damaged entry does not hide the others.
    pub fn scan(
        &self,
        prefix: &str,
        visit: impl FnMut(&[u8], Result<RecoveryEntry, StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match &self.entries {
            Some(table) => scan_entries(table, prefix, self.schema, self.path, visit),
            None => Ok(()),
        }
    }

    /// Whether `key` has a stored entry, decodable or not.
    pub fn contains(&self, key: &BackendKey) -> Result<bool, StoreError> {
        match &self.entries {
            Some(table) => Ok(table
                .get(key.to_string().as_bytes())
                .map_err(|e| engine_err(self.path, e))?
                .is_some()),
            None => Ok(false),
        }
    }

    /// Visits the raw key and decoded entry of each entry under `prefix`, in key order,
    /// starting just after `after` when given, until `visit` returns `Ok(false)`.
    pub fn scan_after(
        &self,
        prefix: &str,
        after: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], Result<RecoveryEntry, StoreError>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(table) = &self.entries else {
            return Ok(());
        };
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Included(prefix.as_bytes()),
        };
        let range = table
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(|e| engine_err(self.path, e))?;
        for item in range {
            let (key, value) = item.map_err(|e| engine_err(self.path, e))?;
            let (key, value) = (key.value(), value.value());
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            if !visit(
                key,
                record::decode_entry(key, value, self.schema, self.path),
            )? {
                break;
            }
        }
        Ok(())
    }

    /// The number of entries.
    pub fn len(&self) -> Result<u64, StoreError> {
        match &self.entries {
            Some(table) => table.len().map_err(|e| engine_err(self.path, e)),
            None => Ok(0),
        }
    }
}

/// Reads and writes inside one write transaction.
pub(crate) struct Writer<'a> {
    pub(super) txn: &'a WriteTransaction,
    pub(super) meta: Table<'a, &'static [u8], &'static [u8]>,
    entries: Table<'a, &'static [u8], &'static [u8]>,
    pub(super) path: &'a Path,
}

impl<'a> Writer<'a> {
    pub(super) fn open(txn: &'a WriteTransaction, path: &'a Path) -> Result<Self, StoreError> {
        Ok(Self {
            txn,
            meta: txn.open_table(META).map_err(|e| engine_err(path, e))?,
            entries: txn.open_table(ENTRIES).map_err(|e| engine_err(path, e))?,
            path,
        })
    }

    /// The schema version recorded in the file, as of this transaction.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        read_schema_version(&self.meta, self.path)
    }

    /// One backend's entry.
    pub fn get(&self, key: &BackendKey) -> Result<Option<RecoveryEntry>, StoreError> {
        get_entry(&self.entries, key, CURRENT_VERSION, self.path)
    }

    /// One backend's entry and its crash history, decoded once.
    pub fn get_with_history(
        &self,
        key: &BackendKey,
    ) -> Result<(Option<RecoveryEntry>, Vec<CrashRecord>), StoreError> {
        let Some(entry) = self.get(key)? else {
            return Ok((None, Vec::new()));
        };
        Ok((Some(entry), self.history(&key.to_string())?))
    }

    /// Stores an entry with this crash history (its last
    /// [`HISTORY_LIMIT`](record::HISTORY_LIMIT) crashes), replacing any earlier one for its key.
    pub fn put_with_history(
        &mut self,
        entry: &RecoveryEntry,
        history: &[CrashRecord],
    ) -> Result<(), StoreError> {
        let key = entry.key.to_string();
        let value = record::encode_entry(entry, history).map_err(|e| encode_err(self.path, e))?;
        self.entries
            .insert(key.as_bytes(), value.as_slice())
            .map_err(|e| engine_err(self.path, e))?;
        Ok(())
    }

    /// The crash history stored under `key` (canonical key text), oldest first; none when there
    /// is no entry or its value cannot be decoded (a `put` then replaces it whole).
    pub fn history(&self, key: &str) -> Result<Vec<CrashRecord>, StoreError> {
        let value = self
            .entries
            .get(key.as_bytes())
            .map_err(|e| engine_err(self.path, e))?;
        Ok(value
            .and_then(|v| record::decode_history(v.value(), CURRENT_VERSION).ok())
            .unwrap_or_default())
    }

    /// Removes a backend's entry; true if there was one.
    pub fn remove(&mut self, key: &BackendKey) -> Result<bool, StoreError> {
        self.remove_raw(key.to_string().as_bytes())
    }

    /// Removes an entry by its stored key bytes, decodable or not; true if there was one.
    pub fn remove_raw(&mut self, raw_key: &[u8]) -> Result<bool, StoreError> {
        let removed = self
            .entries
            .remove(raw_key)
            .map_err(|e| engine_err(self.path, e))?;
        Ok(removed.is_some())
    }

    /// The entry stored under the raw key text, decoded, if any.
    pub fn get_raw(&self, raw_key: &[u8]) -> Result<Option<RecoveryEntry>, StoreError> {
        let value = self
            .entries
            .get(raw_key)
            .map_err(|e| engine_err(self.path, e))?;
        Ok(match value {
            Some(value) => Some(record::decode_entry(
                raw_key,
                value.value(),
                CURRENT_VERSION,
                self.path,
            )?),
            None => None,
        })
    }

    /// The stored key bytes under `prefix`, in order, without decoding any value.
    pub fn keys(&self, prefix: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = Vec::new();
        for_each_under(&self.entries, prefix, self.path, |key, _| {
            keys.push(key.to_vec());
            Ok(())
        })?;
        Ok(keys)
    }

    pub(super) fn initialize(&mut self, policy: BackendRecoveryPolicy) -> Result<(), StoreError> {
        let version =
            record::encode_version(CURRENT_VERSION).map_err(|e| encode_err(self.path, e))?;
        for (key, value) in [
            (schema::META_FORMAT, FORMAT_NAME),
            (schema::META_SCHEMA_VERSION, version.as_slice()),
        ] {
            self.meta
                .insert(key, value)
                .map_err(|e| engine_err(self.path, e))?;
        }
        self.create_tables()?;
        self.set_policy(&policy)
    }

    // Creates the tables schema 2 added, empty, so every store of the schema holds all of them.
    fn create_tables(&self) -> Result<(), StoreError> {
        let path = self.path;
        self.txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        self.txn
            .open_table(AUDIT)
            .map_err(|e| engine_err(path, e))?;
        Ok(())
    }

    pub(super) fn apply_step(&mut self, step: &migrations::Step) -> Result<(), StoreError> {
        let path = self.path;
        // Another process may have run this step since we looked: then there is nothing to do.
        if read_schema_version(&self.meta, path)? != step.from {
            return Ok(());
        }
        let corrupt = |what: &str, e: postcard::Error| StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("migrating {what} from schema {}: {e}", step.from),
        };
        let mut converted = Vec::new();
        for item in self.entries.iter().map_err(|e| engine_err(path, e))? {
            let (key, value) = item.map_err(|e| engine_err(path, e))?;
            let new = (step.entry)(value.value()).map_err(|e| corrupt("an entry", e))?;
            converted.push((key.value().to_vec(), new));
        }
        for (key, value) in converted {
            self.entries
                .insert(key.as_slice(), value.as_slice())
                .map_err(|e| engine_err(path, e))?;
        }
        let policy = self
            .meta
            .get(schema::META_POLICY)
            .map_err(|e| engine_err(path, e))?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| missing_meta(path, "policy"))?;
        let policy = (step.policy)(&policy).map_err(|e| corrupt("the policy", e))?;
        let version = record::encode_version(step.from + 1).map_err(|e| encode_err(path, e))?;
        self.create_tables()?;
        for (key, value) in [
            (schema::META_POLICY, policy.as_slice()),
            (schema::META_SCHEMA_VERSION, version.as_slice()),
        ] {
            self.meta
                .insert(key, value)
                .map_err(|e| engine_err(path, e))?;
        }
        Ok(())
    }
}

pub(super) fn read_schema_version(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    path: &Path,
) -> Result<u32, StoreError> {
    let format = meta
        .get(schema::META_FORMAT)
        .map_err(|e| engine_err(path, e))?;
    if format.as_ref().map(|v| v.value()) != Some(FORMAT_NAME) {
        return Err(not_a_store(path));
    }
    let version = meta
        .get(schema::META_SCHEMA_VERSION)
        .map_err(|e| engine_err(path, e))?
        .ok_or_else(|| missing_meta(path, "schema_version"))?;
    record::decode_version(version.value()).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("meta schema_version: {e}"),
    })
}

pub(super) fn get_entry(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &BackendKey,
    schema: u32,
    path: &Path,
) -> Result<Option<RecoveryEntry>, StoreError> {
    let text = key.to_string();
    let value = table
        .get(text.as_bytes())
        .map_err(|e| engine_err(path, e))?;
    value
        .map(|v| record::decode_entry_of(key.clone(), v.value(), schema, path))
        .transpose()
}

pub(super) fn scan_entries(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &str,
    schema: u32,
    path: &Path,
    mut visit: impl FnMut(&[u8], Result<RecoveryEntry, StoreError>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for_each_under(table, prefix, path, |key, value| {
        visit(key, record::decode_entry(key, value, schema, path))
    })
}

/// Visits the raw key and value of every entry whose key starts with `prefix`, in key order.
fn for_each_under(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &str,
    path: &Path,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let range = table
        .range::<&[u8]>(prefix.as_bytes()..)
        .map_err(|e| engine_err(path, e))?;
    for item in range {
        let (key, value) = item.map_err(|e| engine_err(path, e))?;
        if !key.value().starts_with(prefix.as_bytes()) {
            break;
        }
        visit(key.value(), value.value())?;
    }
    Ok(())
}
