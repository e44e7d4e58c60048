//! The `--json` schema, as a reader of the documentation would declare it: any field the
//! binary adds or drops fails these tests. Optional fields must still be present (as `null`):
//! serde would otherwise read a dropped one as `None`.

use serde::{Deserialize, Deserializer};

/// Deserializes an `Option` field that must be present in the document, `null` or not.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Time {
    pub rfc3339: String,
    pub unix_ms: i64,
}

/// A stored policy with its retries per window: `policy`, `policy set` and `show`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoredPolicy {
    pub retry_backoff_ms: u64,
    pub budget_window_ms: u64,
    pub retries_per_window: u32,
}

/// `policy`: the default policy and every override.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    pub retry_backoff_ms: u64,
    pub budget_window_ms: u64,
    pub retries_per_window: u32,
    pub overrides: Vec<Override>,
    pub damaged: Vec<DamagedOverride>,
}

/// A `policy` override row that cannot be decoded.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DamagedOverride {
    pub scope: String,
    pub error: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub scope: String,
    pub retry_backoff_ms: u64,
    pub budget_window_ms: u64,
    pub retries_per_window: u32,
}

/// `policy unset`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyUnset {
    pub scope: String,
    pub removed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub key: String,
    pub instance: String,
    pub service: String,
    pub version: String,
    #[serde(deserialize_with = "present")]
    pub exe_hash: Option<String>,
    pub state: String,
    pub crashes_in_window: u32,
    pub total_crashes: u64,
    pub window_started_at: Time,
    pub last_crash: Time,
    pub last_crash_at: Time,
    pub window_ends_at: Time,
    pub window_remaining_ms: u64,
    #[serde(deserialize_with = "present")]
    pub retry_after_ms: Option<u64>,
    /// `show` only (absent from `list`): the last crashes, oldest first.
    #[serde(default)]
    pub history: Option<Vec<Crash>>,
}

/// One crash of `show`'s `entry.history`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    pub at: Time,
    #[serde(deserialize_with = "present")]
    pub exit_code: Option<i32>,
    #[serde(deserialize_with = "present")]
    pub signal: Option<i32>,
    #[serde(deserialize_with = "present")]
    pub pid: Option<u32>,
    #[serde(deserialize_with = "present")]
    pub uid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Damaged {
    pub key: String,
    pub error: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct List {
    pub store: String,
    pub now: Time,
    pub evaluated_at: Time,
    pub entries: Vec<Entry>,
    pub damaged: Vec<Damaged>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Show {
    pub key: String,
    pub now: Time,
    pub evaluated_at: Time,
    pub state: String,
    pub recorded: bool,
    pub policy: StoredPolicy,
    /// `default`, `service:NAME` or `key:KEY`.
    pub policy_scope: String,
    #[serde(deserialize_with = "present")]
    pub entry: Option<Entry>,
    pub matches: Vec<Entry>,
    pub similar: Vec<String>,
    pub unjudged: Vec<Damaged>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub key: String,
    pub now: Time,
    pub evaluated_at: Time,
    pub state: String,
    pub may_start: bool,
    pub recorded: bool,
    pub crashes_in_window: u32,
    pub total_crashes: u64,
    #[serde(deserialize_with = "present")]
    pub window_remaining_ms: Option<u64>,
    #[serde(deserialize_with = "present")]
    pub retry_after_ms: Option<u64>,
    pub policy: StoredPolicy,
    pub policy_scope: String,
    pub matches: Vec<String>,
    pub similar: Vec<String>,
    pub unjudged: Vec<Damaged>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    pub cleared: Vec<String>,
    pub no_state: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySet {
    pub scope: String,
    pub retry_backoff_ms: u64,
    pub budget_window_ms: u64,
    pub retries_per_window: u32,
    /// Under a damaged override (`previous_damaged`), the policy below it.
    pub previous: StoredPolicy,
    /// The damaged override that judged the scope before.
    #[serde(deserialize_with = "present")]
    pub previous_damaged: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorePath {
    pub store: String,
    pub source: String,
    pub exists: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diagnosis {
    pub problem: String,
    pub detail: String,
    #[serde(deserialize_with = "present")]
    pub salvageable: Option<usize>,
    pub next_step: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordCrash {
    pub key: String,
    pub at: Time,
    pub crashed_at: Time,
    pub decision: String,
    pub retry_after_ms: u64,
    #[serde(deserialize_with = "present")]
    pub attempt: Option<u32>,
    #[serde(deserialize_with = "present")]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSuccess {
    pub key: String,
    pub cleared: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    pub now: Time,
    pub evaluated_at: Time,
    pub pruned: usize,
    pub left_unjudged: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub store: String,
    pub ok: bool,
    pub integrity: String,
    pub schema_version: u32,
    #[serde(deserialize_with = "present")]
    pub policy: Option<StoredPolicy>,
    pub entries: usize,
    pub damaged: usize,
    pub problems: Vec<String>,
    #[serde(deserialize_with = "present")]
    pub diagnosis: Option<Diagnosis>,
    #[serde(deserialize_with = "present")]
    pub overrides: Option<RowCount>,
    #[serde(deserialize_with = "present")]
    pub audit: Option<RowCount>,
    #[serde(deserialize_with = "present")]
    pub dropped: Option<Dropped>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RowCount {
    pub ok: usize,
    pub damaged: usize,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dropped {
    pub overrides: Vec<String>,
    pub audit_events: Vec<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    pub store: String,
    pub new_store: bool,
    pub imported: usize,
    pub policy: StoredPolicy,
    #[serde(deserialize_with = "present")]
    pub overrides: Option<usize>,
    pub merged: bool,
    pub changed: bool,
    pub overwritten: Vec<String>,
    pub overrides_overwritten: Vec<String>,
    pub overrides_replaced: u64,
    pub removed: Vec<String>,
    pub audit_events_not_imported: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub key: String,
    pub outcome: String,
    pub exit_code: u8,
    pub starts: u32,
    pub crashes: u32,
    #[serde(deserialize_with = "present")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    pub rfc3339: String,
    pub unix_ms: i64,
    pub unix_nanos: i64,
    #[serde(deserialize_with = "present")]
    pub boot: Option<Boot>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    pub boot_id: String,
    pub since_boot_ns: u64,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExportEntry {
    pub key: String,
    pub window_started_at: Stamp,
    pub crashes_in_window: u32,
    pub last_crash: Stamp,
    pub total_crashes: u64,
    pub history: Vec<ExportCrash>,
}

/// One crash of an exported entry's history (export version 2).
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExportCrash {
    pub at: Stamp,
    #[serde(deserialize_with = "present")]
    pub exit_code: Option<i32>,
    #[serde(deserialize_with = "present")]
    pub signal: Option<i32>,
    #[serde(deserialize_with = "present")]
    pub pid: Option<u32>,
    #[serde(deserialize_with = "present")]
    pub uid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub format: String,
    pub version: u32,
    pub exported_at: Stamp,
    pub policy: StoredPolicy,
    pub overrides: Vec<Override>,
    pub entries: Vec<ExportEntry>,
    pub audit: Vec<ExportAudit>,
}

/// One audit event of an export (version 2): `audit --json`'s fields with a lossless time and
/// the exporting store's sequence number.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExportAudit {
    pub seq: u64,
    pub at: Stamp,
    pub action: String,
    #[serde(deserialize_with = "present")]
    pub key: Option<String>,
    #[serde(deserialize_with = "present")]
    pub scope: Option<String>,
    #[serde(deserialize_with = "present")]
    pub uid: Option<u32>,
    #[serde(deserialize_with = "present")]
    pub user: Option<String>,
    #[serde(deserialize_with = "present")]
    pub pid: Option<u32>,
    #[serde(deserialize_with = "present")]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub events: Vec<AuditEvent>,
    pub damaged: Vec<DamagedEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DamagedEvent {
    pub seq: u64,
    pub error: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub seq: u64,
    pub at: Time,
    pub action: String,
    #[serde(deserialize_with = "present")]
    pub key: Option<String>,
    #[serde(deserialize_with = "present")]
    pub scope: Option<String>,
    #[serde(deserialize_with = "present")]
    pub uid: Option<u32>,
    #[serde(deserialize_with = "present")]
    pub user: Option<String>,
    #[serde(deserialize_with = "present")]
    pub pid: Option<u32>,
    #[serde(deserialize_with = "present")]
    pub reason: Option<String>,
}
