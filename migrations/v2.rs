//! Schema 2: frozen record types. Never change them; add a `v3` instead.
//!
//! Schema 2 adds to schema 1: a bounded crash history in each entry, `retries_per_window` in the
//! policy, a `policy_overrides` table and an `audit` table. Every field and enum variant below is
//! encoded by position (postcard is not self-describing): never reorder, retype or remove one.

use serde::{Deserialize, Serialize};

use super::v1;

pub(crate) use super::v1::{
    Boot, ENTRIES_TABLE, META_FORMAT, META_POLICY, META_SCHEMA_VERSION, META_TABLE, Stamp,
};

/// Name of the table holding per-service and per-key policies: scope text -> [`Policy`].
/// A scope is `service:NAME` or `key:CANONICAL_KEY`.
pub(crate) const POLICY_OVERRIDES_TABLE: &str = "policy_overrides";
/// Name of the table holding the audit trail: sequence number (a redb `u64`, counting up from 1
/// and never reused) -> [`AuditEvent`].
pub(crate) const AUDIT_TABLE: &str = "audit";
/// Scope prefix of a per-service override.
#[allow(dead_code)] // used once overrides and audit land
pub(crate) const SCOPE_SERVICE: &str = "service:";
/// Scope prefix of a per-key override.
#[allow(dead_code)] // used once overrides and audit land
pub(crate) const SCOPE_KEY: &str = "key:";

/// The most crashes an entry's history keeps; older ones are dropped first.
pub(crate) const HISTORY_LIMIT: usize = 16;
/// The most events the audit table keeps; the lowest sequence numbers are dropped first.
#[allow(dead_code)] // used once overrides and audit land
pub(crate) const AUDIT_LIMIT: u64 = 10_000;

/// One recorded crash, with whatever was known about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Crash {
    pub at: Stamp,
    /// The exit status the process exited with, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the process, when one did.
    pub signal: Option<i32>,
    /// The process that recorded the crash (none for crashes migrated from schema 1).
    pub pid: Option<u32>,
    /// The real uid of the recording process (none for crashes migrated from schema 1).
    pub uid: Option<u32>,
}

/// One backend's recovery window and its recent crashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub window_started_at: Stamp,
    pub crashes_in_window: u32,
    pub last_crash: Stamp,
    pub total_crashes: u64,
    /// The last [`HISTORY_LIMIT`] crashes, oldest first.
    pub history: Vec<Crash>,
}

/// A recovery policy, in nanoseconds: the store's default (`meta` `policy`) or an override.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub retry_backoff_nanos: u64,
    pub budget_window_nanos: u64,
    /// Retries allowed in one budget window before the next crash is refused (1 in the
    /// reference policy).
    pub retries_per_window: u32,
}

/// What changed state. Variants are encoded by index: append new ones at the end only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(test), allow(dead_code))] // written once overrides and audit land
pub(crate) enum AuditAction {
    /// An operator cleared one key's state (`key` set).
    Reset = 0,
    /// An operator cleared every key in a scope (`scope` set: a prefix, a filter or `all`).
    ResetScope = 1,
    /// A success cleared a backend's state (`key` set).
    Success = 2,
    /// The default policy changed (`scope` is `default`) or an override was stored.
    PolicySet = 3,
    /// An override was removed (`scope` set).
    PolicyUnset = 4,
    /// An import replaced or merged state (`scope` set).
    Import = 5,
    /// Expired entries were removed (`scope` set).
    Prune = 6,
}

/// One audit event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(test), allow(dead_code))] // written once overrides and audit land
pub(crate) struct AuditEvent {
    pub at: Stamp,
    pub action: AuditAction,
    /// The key, for one-key actions.
    pub key: Option<String>,
    /// The scope, for every other action.
    pub scope: Option<String>,
    /// Real uid of the acting process.
    pub uid: Option<u32>,
    /// The user name of `uid`, where the system knew it.
    pub user: Option<String>,
    pub pid: Option<u32>,
    /// The operator's reason, when given.
    pub reason: Option<String>,
}

/// Schema 1 knew no crash detail: the last crash becomes a history of one, with none.
impl From<v1::Entry> for Entry {
    fn from(old: v1::Entry) -> Self {
        Self {
            window_started_at: old.window_started_at,
            crashes_in_window: old.crashes_in_window,
            last_crash: old.last_crash,
            total_crashes: old.total_crashes,
            history: vec![Crash {
                at: old.last_crash,
                exit_code: None,
                signal: None,
                pid: None,
                uid: None,
            }],
        }
    }
}

/// Schema 1 policies are the reference policy: one retry per window.
impl From<v1::Policy> for Policy {
    fn from(old: v1::Policy) -> Self {
        Self {
            retry_backoff_nanos: old.retry_backoff_nanos,
            budget_window_nanos: old.budget_window_nanos,
            retries_per_window: 1,
        }
    }
}
