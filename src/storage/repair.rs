//! Removing the schema 2 rows that cannot be decoded: damaged policy override rows and audit
//! events (`check --drop-damaged`). An unreadable row holds nothing a store could use, and a
//! row whose scope cannot be typed could not be removed any other way.

use redb::{ReadableTable, ReadableTableMetadata};

use super::guard::engine_err;
use super::policy_rows::decode_override;
use super::tables::Writer;
use super::{AUDIT, OVERRIDES};
use crate::audit;
use crate::error::StoreError;

impl Writer<'_> {
    /// Removes every override row that does not decode (or holds a policy no store could
    /// have written); returns their scope texts (lossy UTF-8), in key order.
    pub fn drop_damaged_overrides(&mut self) -> Result<Vec<String>, StoreError> {
        let path = self.path;
        let err = |e: redb::StorageError| engine_err(path, e);
        let mut table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        let mut damaged = Vec::new();
        for item in table.iter().map_err(err)? {
            let (scope, value) = item.map_err(err)?;
            if decode_override(scope.value(), value.value(), path).is_err() {
                damaged.push(scope.value().to_vec());
            }
        }
        for scope in &damaged {
            table.remove(scope.as_slice()).map_err(err)?;
        }
        Ok(damaged
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    /// Removes every audit event that does not decode; returns their sequence numbers.
    pub fn drop_damaged_audit_events(&mut self) -> Result<Vec<u64>, StoreError> {
        let path = self.path;
        let err = |e: redb::StorageError| engine_err(path, e);
        let mut table = self
            .txn
            .open_table(AUDIT)
            .map_err(|e| engine_err(path, e))?;
        if table.len().map_err(err)? == 0 {
            return Ok(Vec::new());
        }
        let mut damaged = Vec::new();
        for item in table.iter().map_err(err)? {
            let (seq, value) = item.map_err(err)?;
            if audit::decode(seq.value(), value.value()).is_err() {
                damaged.push(seq.value());
            }
        }
        for seq in &damaged {
            table.remove(*seq).map_err(err)?;
        }
        Ok(damaged)
    }
}
