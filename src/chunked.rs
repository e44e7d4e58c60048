//! Operations over many entries — `prune` and the resets by prefix or predicate — commit in
//! bounded chunks, so that no broker's next decision waits long behind them.
//!
//! Each chunk is found in a read transaction, which never holds up a writer, and removed in a
//! write transaction of at most [`CHUNK`] removals, which re-checks every entry first: an entry
//! that changed between the two (a crash recorded meanwhile) is judged as it is at removal.
//! Between two chunks the write lock is left free for [`YIELD`], so a broker waiting for it
//! gets it before the next chunk. The operation as a whole is therefore not one transaction: a
//! crash recorded while it runs survives if its key was already passed.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::audit::{AuditAction, Change};
use crate::error::StoreError;
use crate::record::RecoveryEntry;
use crate::storage::Writer;
use crate::store::RecoveryStore;
use crate::time::Timestamp;
use crate::window;

/// Most entries one write transaction of a long operation removes. At about 2 µs a removal,
/// a chunk holds the write lock for a few milliseconds.
pub const CHUNK: usize = 1_000;

/// How long a long operation leaves the write lock free between two chunks, so that a
/// process waiting for it (polling at most every millisecond) gets it first.
pub(crate) const YIELD: std::time::Duration = std::time::Duration::from_millis(2);

impl RecoveryStore {
    /// Clears every entry whose key text starts with `prefix` (`""` for all), damaged entries
    /// included, in chunks of at most [`CHUNK`] per transaction. Returns the stored keys
    /// removed. Nothing is committed, and nothing synced, when nothing matches.
    ///
    /// Each committed chunk writes one [`AuditAction::ResetScope`](crate::AuditAction) event in
    /// its transaction, scope `all` for `""` and `prefix:PREFIX` otherwise.
    ///
    /// # Errors
    ///
    /// A storage error; the chunks committed before it stay removed.
    pub fn reset_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.reset_prefix_with_reason(prefix, None)
    }

    /// [`reset_prefix`](Self::reset_prefix), with the operator's reason kept in its audit
    /// events.
    pub fn reset_prefix_with_reason(
        &self,
        prefix: &str,
        reason: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let scope = if prefix.is_empty() {
            "all".to_owned()
        } else {
            format!("prefix:{prefix}")
        };
        self.reset_where_with_reason(prefix, &scope, reason, |_| true)
    }

    /// Clears the entries under `prefix` whose key text satisfies `matches`, in chunks of at
    /// most [`CHUNK`] per transaction. Damaged entries are offered with the stored key text.
    /// Returns the keys removed.
    ///
    /// Each committed chunk writes one [`AuditAction::ResetScope`](crate::AuditAction) event in
    /// its transaction, scope `where:PREFIX`; name the scope with
    /// [`reset_where_with_reason`](Self::reset_where_with_reason).
    ///
    /// # Errors
    ///
    /// A storage error; the chunks committed before it stay removed. A panic in `matches` is
    /// the caller's: it stops the operation and resumes in the caller.
    pub fn reset_where(
        &self,
        prefix: &str,
        matches: impl FnMut(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        self.reset_where_with_reason(prefix, &format!("where:{prefix}"), None, matches)
    }

    /// [`reset_where`](Self::reset_where), with the scope its audit events name (free text,
    /// e.g. `refused` or `service:zccache`) and the operator's reason. Each committed chunk
    /// writes one event.
    pub fn reset_where_with_reason(
        &self,
        prefix: &str,
        scope: &str,
        reason: Option<&str>,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut caller_panic = None;
        let mut removed = Vec::new();
        let result = self.remove_in_chunks(
            prefix,
            |raw, _| {
                let text = String::from_utf8_lossy(raw);
                catch_unwind(AssertUnwindSafe(|| matches(&text))).map_err(|panic| {
                    caller_panic = Some(panic);
                    // Stops the walk; never seen, the panic resumes below.
                    StoreError::InvalidImport {
                        detail: "aborted by a panic in the caller's predicate".into(),
                    }
                })
            },
            |_, _| Ok(true),
            |_| Change::scope(AuditAction::ResetScope, scope.to_owned(), reason),
            |raw| removed.push(String::from_utf8_lossy(raw).into_owned()),
        );
        if let Some(panic) = caller_panic {
            resume_unwind(panic);
        }
        result.map(|()| removed)
    }

    /// Drops every entry whose window has ended at `now`, in chunks of at most [`CHUNK`] per
    /// transaction; returns how many. Damaged entries are left for `check` and `reset --raw`,
    /// and so are the entries a damaged policy override would judge (whether their window has
    /// ended depends on the policy it held): `check` names the row, `policy unset` removes it.
    /// Nothing is committed, and nothing synced, when no window has ended.
    ///
    /// Each committed chunk writes one [`AuditAction::Prune`](crate::AuditAction) event in its
    /// transaction, scope `expired:N` with N the entries that chunk removed.
    ///
    /// # Errors
    ///
    /// A storage error; the chunks committed before it stay removed.
    pub fn prune(&self, now: Timestamp) -> Result<usize, StoreError> {
        // Each entry is judged by the policy that applies to it (key, service, default).
        let policies = self.storage().read(|r| r.stored_policies())?;
        let mut count = 0;
        self.remove_in_chunks(
            "",
            |_, entry| {
                Ok(entry.is_ok_and(|e| {
                    policies
                        .judge(&e.key)
                        .is_ok_and(|applied| window::ended(e, now, &applied.policy.recovery))
                }))
            },
            |w, raw| {
                let Some(e) = w.get_raw(raw)? else {
                    return Ok(false);
                };
                match w.policy_for(&e.key) {
                    Ok(applied) => Ok(window::ended(&e, now, &applied.policy.recovery)),
                    // Damaged since the pick: left, as at the pick.
                    Err(StoreError::CorruptOverride { .. }) => Ok(false),
                    Err(other) => Err(other),
                }
            },
            |n| Change::scope(AuditAction::Prune, format!("expired:{n}"), None),
            |_| count += 1,
        )?;
        Ok(count)
    }

    // Walks `prefix` in key order; `pick` chooses in a read transaction, and each chunk of
    // picks is removed in a write transaction where `still` confirms each one, with the audit
    // event `change` makes of the number removed (none when a chunk removed nothing).
    // `removed` hears of each key once its chunk has committed.
    fn remove_in_chunks(
        &self,
        prefix: &str,
        mut pick: impl FnMut(&[u8], Result<&RecoveryEntry, &StoreError>) -> Result<bool, StoreError>,
        still: impl Fn(&Writer<'_>, &[u8]) -> Result<bool, StoreError>,
        change: impl Fn(usize) -> Change,
        mut removed: impl FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let mut doomed = Vec::new();
            let mut more = false;
            let mut last = None;
            self.storage().read(|r| {
                r.scan_after(prefix, cursor.as_deref(), |raw, entry| {
                    last = Some(raw.to_vec());
                    if pick(raw, entry.as_ref())? {
                        doomed.push(raw.to_vec());
                    }
                    more = doomed.len() >= CHUNK;
                    Ok(!more)
                })
            })?;
            if !doomed.is_empty() {
                let gone = self.storage().write(|w| {
                    let mut gone = Vec::new();
                    for raw in doomed {
                        if still(w, &raw)? && w.remove_raw(&raw)? {
                            gone.push(raw);
                        }
                    }
                    if !gone.is_empty() {
                        w.append_audit(&change(gone.len()))?;
                    }
                    Ok(gone)
                })?;
                gone.iter().for_each(|raw| removed(raw));
            }
            if !more {
                return Ok(());
            }
            std::thread::sleep(YIELD);
            cursor = last;
        }
    }
}
