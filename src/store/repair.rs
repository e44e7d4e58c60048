//! [`RecoveryStore::drop_damaged_rows`]: removing the override rows and audit events that
//! cannot be decoded, the repair `check` offers for rows no other command can name.

use crate::audit::{AuditAction, Change};
use crate::error::StoreError;

use super::RecoveryStore;

/// The most rows named in the repair's audit event; the rest are counted.
const NAMED: usize = 5;

/// What [`RecoveryStore::drop_damaged_rows`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DroppedRows {
    /// The scope text (lossy UTF-8; sanitize before printing) of each override row removed.
    pub overrides: Vec<String>,
    /// The sequence number of each audit event removed.
    pub audit_events: Vec<u64>,
}

impl DroppedRows {
    /// True when nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty() && self.audit_events.is_empty()
    }
}

impl RecoveryStore {
    /// Removes, in one transaction, every policy override row that cannot be decoded (or holds
    /// a policy no store could have written) and every audit event that cannot be decoded,
    /// with one [`AuditAction::ResetScope`] event naming them (scope `damaged:` followed by
    /// the scopes and `audit#SEQ`, the first few named). Keys a removed override judged are
    /// judged by the next most specific policy from their next decision. Nothing damaged:
    /// nothing written.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] through a read-only handle; storage errors as for any write.
    pub fn drop_damaged_rows(&self, reason: Option<&str>) -> Result<DroppedRows, StoreError> {
        let any = self.snapshot(|snap| {
            if !snap.stored_policies()?.damaged().is_empty() {
                return Ok(true);
            }
            let mut found = false;
            snap.for_each_audit_event(|event| {
                found |= matches!(event, Err(StoreError::CorruptAuditEvent { .. }));
                match event {
                    Ok(_) | Err(StoreError::CorruptAuditEvent { .. }) => Ok(()),
                    Err(other) => Err(other),
                }
            })?;
            Ok(found)
        })?;
        if !any {
            return Ok(DroppedRows::default());
        }
        self.storage().write(|w| {
            let dropped = DroppedRows {
                overrides: w.drop_damaged_overrides()?,
                audit_events: w.drop_damaged_audit_events()?,
            };
            if !dropped.is_empty() {
                w.append_audit(&Change::scope(
                    AuditAction::ResetScope,
                    scope_of(&dropped),
                    reason,
                ))?;
            }
            Ok(dropped)
        })
    }
}

/// `damaged:service:zc,audit#3`, the first [`NAMED`] rows named and the rest counted.
fn scope_of(dropped: &DroppedRows) -> String {
    let rows: Vec<String> = dropped
        .overrides
        .iter()
        .cloned()
        .chain(
            dropped
                .audit_events
                .iter()
                .map(|seq| format!("audit#{seq}")),
        )
        .collect();
    let mut text = format!("damaged:{}", rows[..rows.len().min(NAMED)].join(","));
    if rows.len() > NAMED {
        text.push_str(&format!(",+{} more", rows.len() - NAMED));
    }
    text
}
