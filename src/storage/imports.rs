//! Whole-table writes that only an import makes: clearing the overrides, comparing an override
//! as stored, and telling which audit events a store already holds.

use std::collections::HashSet;

use redb::ReadableTable;

use super::guard::{encode_err, engine_err};
use super::tables::Writer;
use super::{AUDIT, OVERRIDES};
use crate::audit;
use crate::error::StoreError;
use crate::migrations::current as schema;
use crate::overrides::PolicyScope;
use crate::policy::RecoveryPolicy;
use crate::record;

impl Writer<'_> {
    /// True when the store holds an override for `scope` other than `policy` (a damaged row
    /// counts as another).
    pub fn holds_other_override(
        &self,
        scope: &PolicyScope,
        policy: &RecoveryPolicy,
    ) -> Result<bool, StoreError> {
        let path = self.path;
        let wanted = record::encode_policy(&policy.recovery, policy.retries_per_window, path)?;
        let table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        let held = table
            .get(scope.to_string().as_bytes())
            .map_err(|e| engine_err(path, e))?;
        Ok(held.is_some_and(|v| v.value() != wanted.as_slice()))
    }

    /// Removes every override; returns how many there were.
    pub fn clear_overrides(&mut self) -> Result<u64, StoreError> {
        let path = self.path;
        let mut table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        let mut removed = 0;
        while table
            .pop_first()
            .map_err(|e| engine_err(path, e))?
            .is_some()
        {
            removed += 1;
        }
        Ok(removed)
    }

    /// Appends those of `events` the trail does not already hold (an event equal in every
    /// field but its sequence number is held), oldest first; returns (appended, already held).
    pub fn append_new_audit(
        &mut self,
        events: &[schema::AuditEvent],
    ) -> Result<(usize, usize), StoreError> {
        let mut held = self.audit_values()?;
        let (mut added, mut skipped) = (0, 0);
        for event in events {
            let bytes = audit::encode(event).map_err(|e| encode_err(self.path, e))?;
            if held.insert(bytes) {
                self.append_stored_audit(event)?;
                added += 1;
            } else {
                skipped += 1;
            }
        }
        Ok((added, skipped))
    }

    /// The stored bytes of every audit event held, sequence numbers left out.
    fn audit_values(&self) -> Result<HashSet<Vec<u8>>, StoreError> {
        let path = self.path;
        let err = |e: redb::StorageError| engine_err(path, e);
        let table = self
            .txn
            .open_table(AUDIT)
            .map_err(|e| engine_err(path, e))?;
        table
            .iter()
            .map_err(err)?
            .map(|item| item.map(|(_, v)| v.value().to_vec()).map_err(err))
            .collect()
    }
}
