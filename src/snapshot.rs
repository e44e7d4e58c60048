//! [`Snapshot`]: several reads of a store that all see the same commit.

use crate::error::StoreError;
use crate::key::BackendKey;
use crate::policy::BackendRecoveryPolicy;
use crate::record::{CrashRecord, RecoveryEntry};
use crate::storage::Reader;
use crate::store::RecoveryStore;

/// A read-only view of one commit of a store, for reports that walk the entries more than once
/// and must agree with themselves (e.g. one Prometheus metric family per walk).
///
/// Built by [`RecoveryStore::snapshot`]. It holds one read transaction: it never blocks
/// writers, and does not see what they commit while it lives.
pub struct Snapshot<'r, 'a> {
    reader: &'r Reader<'a>,
}

impl Snapshot<'_, '_> {
    /// Streams the entries whose key text starts with `prefix` (`""` for all) in key order to
    /// `visit`, in flat memory; as [`RecoveryStore::for_each_entry`].
    ///
    /// # Errors
    ///
    /// The first error `visit` returns, or a storage error.
    pub fn for_each_entry(
        &self,
        prefix: &str,
        mut visit: impl FnMut(Result<RecoveryEntry, StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.reader.scan(prefix, |_, entry| visit(entry))
    }

    /// The crash history of `key` (oldest first; empty when it has no state), as in
    /// [`RecoveryStore::history`].
    ///
    /// # Errors
    ///
    /// [`StoreError::CorruptEntry`] when the stored entry cannot be decoded.
    pub fn history(&self, key: &BackendKey) -> Result<Vec<CrashRecord>, StoreError> {
        self.reader.history(key)
    }

    /// The number of entries.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn len(&self) -> Result<u64, StoreError> {
        self.reader.len()
    }

    /// True when no backend has state.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// The policy stored in this commit.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the stored policy cannot be decoded.
    pub fn policy(&self) -> Result<BackendRecoveryPolicy, StoreError> {
        self.reader.policy()
    }

    /// The policy stored in this commit, with its retries per window.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the stored policy cannot be decoded.
    pub fn recovery_policy(&self) -> Result<crate::RecoveryPolicy, StoreError> {
        self.reader.recovery_policy()
    }

    /// The default policy and every per-service and per-key override in this commit; use
    /// [`Policies::for_key`](crate::Policies::for_key) to judge each entry.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the default policy cannot be decoded;
    /// [`StoreError::CorruptOverride`] naming the first override row that cannot be
    /// ([`stored_policies`](Self::stored_policies) reads past it).
    pub fn policies(&self) -> Result<crate::Policies, StoreError> {
        self.reader.policies()
    }

    /// The default policy and every override row in this commit, decodable or not: a report
    /// judges each entry with [`StoredPolicies::judge`](crate::StoredPolicies::judge), which
    /// refuses only the keys a damaged row would decide.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the default policy cannot be decoded; a storage error.
    pub fn stored_policies(&self) -> Result<crate::StoredPolicies, StoreError> {
        self.reader.stored_policies()
    }

    /// Streams the audit trail, oldest first, to `visit`. Each event is decoded separately: a
    /// damaged one reaches `visit` as [`StoreError::CorruptAuditEvent`] (naming its sequence
    /// number) and the walk goes on. A store written before schema 2 has no events.
    ///
    /// # Errors
    ///
    /// The first error `visit` returns, or a storage error.
    pub fn for_each_audit_event(
        &self,
        visit: impl FnMut(Result<crate::AuditEvent, StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.reader.audit_rows(visit)
    }

    /// The schema version of the file.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the stored version cannot be decoded.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.reader.schema_version()
    }

    /// The audit trail, oldest first, as in [`RecoveryStore::audit`] with no key.
    ///
    /// # Errors
    ///
    /// [`StoreError::CorruptAuditEvent`] naming the first event that cannot be decoded
    /// ([`for_each_audit_event`](Self::for_each_audit_event) reads past it); a storage error.
    pub fn audit(&self) -> Result<Vec<crate::AuditEvent>, StoreError> {
        self.reader.audit(|_| true)
    }
}

impl RecoveryStore {
    /// Runs `f` over one consistent read-only view of the latest commit.
    ///
    /// # Errors
    ///
    /// Whatever `f` returns, or a storage error opening the read transaction.
    pub fn snapshot<T>(
        &self,
        f: impl FnOnce(&Snapshot<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.storage().read(|reader| f(&Snapshot { reader }))
    }
}
