//! Whole-table writes that only an import makes: clearing the overrides, and comparing an
//! override as stored.

use redb::ReadableTable;

use super::OVERRIDES;
use super::guard::engine_err;
use super::policy_rows::decode_override;
use super::tables::Writer;
use crate::error::StoreError;
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

    /// True when the override row of `scope` is stored but cannot be decoded (or holds a
    /// policy no store could have written).
    pub fn override_is_damaged(&self, scope: &PolicyScope) -> Result<bool, StoreError> {
        let path = self.path;
        let table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        let text = scope.to_string();
        let held = table
            .get(text.as_bytes())
            .map_err(|e| engine_err(path, e))?;
        Ok(held.is_some_and(|v| decode_override(text.as_bytes(), v.value(), path).is_err()))
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
}
