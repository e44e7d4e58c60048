//! Typed access to the store's two tables, inside one read or write transaction.

use std::ops::Bound;
use std::path::Path;

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableError,
    WriteTransaction,
};

use super::guard::{encode_err, engine_err, missing_meta, not_a_store};
use super::{AUDIT, ENTRIES, META, OVERRIDES};
use crate::audit::{self, AuditEvent, Change};
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::migrations::{self, CURRENT_VERSION, FORMAT_NAME, current as schema};
use crate::overrides::{
    self, AppliedPolicy, DamagedOverride, Policies, PolicyScope, StoredPolicies,
};
use crate::policy::{BackendRecoveryPolicy, RecoveryPolicy};
use crate::record::{self, CrashRecord, RecoveryEntry};

/// Reads from one snapshot.
pub(crate) struct Reader<'a> {
    txn: &'a ReadTransaction,
    meta: ReadOnlyTable<&'static [u8], &'static [u8]>,
    entries: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    /// The schema the values were written by (a store not yet migrated reads as it is).
    schema: u32,
    path: &'a Path,
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

    /// The store's policy.
    pub fn policy(&self) -> Result<BackendRecoveryPolicy, StoreError> {
        Ok(self.recovery_policy()?.recovery)
    }

    /// The store's policy with its retries per window.
    pub fn recovery_policy(&self) -> Result<RecoveryPolicy, StoreError> {
        read_policy(&self.meta, self.schema, self.path)
    }

    /// The default policy and every override (none in a store without the overrides table).
    /// Fails with [`StoreError::CorruptOverride`] naming the first row that does not decode;
    /// [`stored_policies`](Self::stored_policies) reads past damaged rows.
    pub fn policies(&self) -> Result<Policies, StoreError> {
        self.stored_policies()?.checked()
    }

    /// The default policy and every override row, decodable or not.
    pub fn stored_policies(&self) -> Result<StoredPolicies, StoreError> {
        let default = self.recovery_policy()?;
        match self.txn.open_table(OVERRIDES) {
            Ok(table) => read_policies(&table, default, self.path),
            Err(TableError::TableDoesNotExist(_)) => Ok(StoredPolicies::new(
                Policies {
                    default,
                    overrides: Vec::new(),
                },
                Vec::new(),
            )),
            Err(e) => Err(engine_err(self.path, e)),
        }
    }

    /// The policy that judges `key`: its key override, its service's, or the default.
    pub fn policy_for(&self, key: &BackendKey) -> Result<AppliedPolicy, StoreError> {
        let default = self.recovery_policy()?;
        match self.txn.open_table(OVERRIDES) {
            Ok(table) => applied_policy(&table, key, default, self.path),
            Err(TableError::TableDoesNotExist(_)) => Ok(AppliedPolicy {
                policy: default,
                scope: None,
            }),
            Err(e) => Err(engine_err(self.path, e)),
        }
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

    /// Every audit event, oldest first, keeping those `keep` accepts (none in a store written
    /// before schema 2, which has no audit table). Fails with
    /// [`StoreError::CorruptAuditEvent`] naming the first event that does not decode;
    /// [`audit_rows`](Self::audit_rows) reads past damaged events.
    pub fn audit(&self, keep: impl Fn(&AuditEvent) -> bool) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = Vec::new();
        self.audit_rows(|event| {
            let event = event?;
            if keep(&event) {
                events.push(event);
            }
            Ok(())
        })?;
        Ok(events)
    }

    /// Visits every audit event, oldest first, each decoded separately: a damaged one reaches
    /// `visit` as [`StoreError::CorruptAuditEvent`] and the walk goes on.
    pub fn audit_rows(
        &self,
        mut visit: impl FnMut(Result<AuditEvent, StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let path = self.path;
        let table = match self.txn.open_table(AUDIT) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(engine_err(path, e)),
        };
        for item in table.iter().map_err(|e| engine_err(path, e))? {
            let (seq, value) = item.map_err(|e| engine_err(path, e))?;
            let seq = seq.value();
            visit(
                audit::decode(seq, value.value()).map_err(|e| StoreError::CorruptAuditEvent {
                    path: path.to_owned(),
                    seq,
                    detail: e.to_string(),
                }),
            )?;
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
    meta: Table<'a, &'static [u8], &'static [u8]>,
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

    /// The store's policy as of this transaction.
    pub fn policy(&self) -> Result<BackendRecoveryPolicy, StoreError> {
        Ok(self.recovery_policy()?.recovery)
    }

    /// The store's policy with its retries per window, as of this transaction.
    pub fn recovery_policy(&self) -> Result<RecoveryPolicy, StoreError> {
        read_policy(&self.meta, CURRENT_VERSION, self.path)
    }

    /// Persists a new policy, keeping the stored retries per window (1 when none is stored).
    pub fn set_policy(&mut self, policy: &BackendRecoveryPolicy) -> Result<(), StoreError> {
        let retries = match self.meta.get(schema::META_POLICY) {
            Ok(Some(old)) => {
                record::decode_policy(old.value(), CURRENT_VERSION).map_or(1, |(_, n)| n)
            }
            Ok(None) => 1,
            Err(e) => return Err(engine_err(self.path, e)),
        };
        self.set_recovery_policy(&RecoveryPolicy::new(*policy, retries))
    }

    /// The policy that judges `key` as of this transaction.
    pub fn policy_for(&self, key: &BackendKey) -> Result<AppliedPolicy, StoreError> {
        let default = self.recovery_policy()?;
        let table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(self.path, e))?;
        applied_policy(&table, key, default, self.path)
    }

    /// Stores `policy` as the override for `scope`; returns false when it was already stored.
    pub fn set_override(
        &mut self,
        scope: &PolicyScope,
        policy: &RecoveryPolicy,
    ) -> Result<bool, StoreError> {
        policy.validate()?;
        let path = self.path;
        let bytes = record::encode_policy(&policy.recovery, policy.retries_per_window, self.path)?;
        let mut table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        let text = scope.to_string();
        let old = table
            .insert(text.as_bytes(), bytes.as_slice())
            .map_err(|e| engine_err(path, e))?
            .map(|v| v.value().to_vec());
        Ok(old.as_deref() != Some(bytes.as_slice()))
    }

    /// Removes the override for `scope`; returns whether there was one.
    pub fn remove_override(&mut self, scope: &PolicyScope) -> Result<bool, StoreError> {
        let path = self.path;
        let mut table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        let removed = table
            .remove(scope.to_string().as_bytes())
            .map_err(|e| engine_err(path, e))?
            .is_some();
        Ok(removed)
    }

    /// Persists a new policy with its retries per window.
    pub fn set_recovery_policy(&mut self, policy: &RecoveryPolicy) -> Result<(), StoreError> {
        crate::policy::validate_retries(policy.retries_per_window)?;
        let bytes = record::encode_policy(&policy.recovery, policy.retries_per_window, self.path)?;
        self.meta
            .insert(schema::META_POLICY, bytes.as_slice())
            .map_err(|e| engine_err(self.path, e))?;
        Ok(())
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

    /// Appends one audit event for `change`, stamped now by this process (see
    /// [`append_stored_audit`](Self::append_stored_audit)).
    pub fn append_audit(&mut self, change: &Change) -> Result<(), StoreError> {
        self.append_stored_audit(&change.stamped())
    }

    /// Appends `event` under the next sequence number, then drops the oldest events beyond
    /// [`AUDIT_LIMIT`](schema::AUDIT_LIMIT), all in this transaction.
    pub fn append_stored_audit(&mut self, event: &schema::AuditEvent) -> Result<(), StoreError> {
        let path = self.path;
        let err = |e: redb::StorageError| engine_err(path, e);
        let mut table = self
            .txn
            .open_table(AUDIT)
            .map_err(|e| engine_err(path, e))?;
        // Numbers are never reused; at u64::MAX (never reached by counting) the newest is replaced.
        let next = match table.last().map_err(err)? {
            Some((seq, _)) => seq.value().saturating_add(1),
            None => 1,
        };
        let value = audit::encode(event).map_err(|e| encode_err(path, e))?;
        table.insert(next, value.as_slice()).map_err(err)?;
        let mut len = table.len().map_err(err)?;
        while len > schema::AUDIT_LIMIT {
            table.pop_first().map_err(err)?;
            len -= 1;
        }
        Ok(())
    }

    /// Writes raw `policy_overrides` and `audit` rows (for the schema 2 fixture, written before
    /// the code that writes them lands).
    #[cfg(test)]
    pub fn put_raw_extras(
        &mut self,
        overrides: &[(&str, Vec<u8>)],
        audit: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let path = self.path;
        let mut table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        for (scope, value) in overrides {
            table
                .insert(scope.as_bytes(), value.as_slice())
                .map_err(|e| engine_err(path, e))?;
        }
        let mut table = self
            .txn
            .open_table(AUDIT)
            .map_err(|e| engine_err(path, e))?;
        for (seq, value) in audit {
            table
                .insert(*seq, value.as_slice())
                .map_err(|e| engine_err(path, e))?;
        }
        Ok(())
    }

    /// Every raw `policy_overrides` and `audit` row, in key order.
    #[cfg(test)]
    #[allow(clippy::type_complexity)]
    pub fn raw_extras(&self) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Vec<(u64, Vec<u8>)>), StoreError> {
        let path = self.path;
        let err = |e: redb::StorageError| engine_err(path, e);
        let overrides = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?
            .iter()
            .map_err(err)?
            .map(|item| item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let audit = self
            .txn
            .open_table(AUDIT)
            .map_err(|e| engine_err(path, e))?
            .iter()
            .map_err(err)?
            .map(|item| item.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        Ok((overrides, audit))
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

pub(super) fn read_policy(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    schema: u32,
    path: &Path,
) -> Result<RecoveryPolicy, StoreError> {
    let value = meta
        .get(schema::META_POLICY)
        .map_err(|e| engine_err(path, e))?
        .ok_or_else(|| missing_meta(path, "policy"))?;
    record::decode_policy(value.value(), schema)
        .map(|(policy, retries)| RecoveryPolicy::new(policy, retries))
        .map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("meta policy: {e}"),
        })
}

fn decode_override(
    scope: &[u8],
    value: &[u8],
    path: &Path,
) -> Result<(PolicyScope, RecoveryPolicy), DamagedOverride> {
    let text = String::from_utf8_lossy(scope);
    let damaged = |detail: String| DamagedOverride::new(path.to_owned(), text.to_string(), detail);
    let Ok(utf8) = std::str::from_utf8(scope) else {
        return Err(damaged("its scope text is not UTF-8".into()));
    };
    let parsed = PolicyScope::parse(utf8).map_err(|e| damaged(format!("scope: {e}")))?;
    let (policy, retries) = record::decode_policy(value, CURRENT_VERSION)
        .map_err(|e| damaged(format!("value: {e}")))?;
    Ok((parsed, RecoveryPolicy::new(policy, retries)))
}

// Each row is decoded separately, so one damaged row does not hide the others.
fn read_policies(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    default: RecoveryPolicy,
    path: &Path,
) -> Result<StoredPolicies, StoreError> {
    let (mut overrides, mut damaged) = (Vec::new(), Vec::new());
    for item in table.iter().map_err(|e| engine_err(path, e))? {
        let (scope, value) = item.map_err(|e| engine_err(path, e))?;
        match decode_override(scope.value(), value.value(), path) {
            Ok(row) => overrides.push(row),
            Err(row) => damaged.push(row),
        }
    }
    Ok(StoredPolicies::new(
        Policies { default, overrides },
        damaged,
    ))
}

// Two point lookups, most specific first: no scan, whatever the number of overrides.
fn applied_policy(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &BackendKey,
    default: RecoveryPolicy,
    path: &Path,
) -> Result<AppliedPolicy, StoreError> {
    for scope in overrides::scopes_of(key) {
        if let Some(value) = table
            .get(scope.as_bytes())
            .map_err(|e| engine_err(path, e))?
        {
            // A damaged row of the deciding scope fails the key: never judged by another policy.
            let (scope, policy) = decode_override(scope.as_bytes(), value.value(), path)
                .map_err(|row| row.error())?;
            return Ok(AppliedPolicy {
                policy,
                scope: Some(scope),
            });
        }
    }
    Ok(AppliedPolicy {
        policy: default,
        scope: None,
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
