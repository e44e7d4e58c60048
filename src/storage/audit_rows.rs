//! The audit rows: the `audit` table read (strictly, or row by row past damaged events) and
//! appended to under the next sequence number, bounded at `AUDIT_LIMIT`.

use redb::{ReadableTable, ReadableTableMetadata, TableError};

use super::AUDIT;
use super::guard::{encode_err, engine_err};
use super::tables::{Reader, Writer};
use crate::audit::{self, AuditEvent, Change};
use crate::error::StoreError;
use crate::migrations::current as schema;

impl Reader<'_> {
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
}

impl Writer<'_> {
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
            .open_table(super::OVERRIDES)
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
            .open_table(super::OVERRIDES)
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
}
