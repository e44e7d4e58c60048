//! The `--json` schema: one document per command, built from these types only.
//!
//! Stable rules: durations are whole milliseconds (`*_ms`, rounded up), times are
//! `{"rfc3339": "...Z", "unix_ms": N}`, keys are canonical text.

use serde::Serialize;

use recovery_store::{BackendRecoveryPolicy, Timestamp};

use super::view::{EntryView, State, millis, rfc3339};

#[derive(Debug, Serialize)]
pub struct Time {
    pub rfc3339: String,
    pub unix_ms: i64,
}

impl Time {
    pub fn of(ts: &Timestamp) -> Self {
        Self {
            rfc3339: rfc3339(ts, true),
            unix_ms: ts.unix_millis(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Policy {
    pub retry_backoff_ms: u64,
    pub budget_window_ms: u64,
}

impl Policy {
    pub fn of(p: &BackendRecoveryPolicy) -> Self {
        Self {
            retry_backoff_ms: millis(p.retry_backoff),
            budget_window_ms: millis(p.budget_window),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub key: String,
    pub instance: String,
    pub service: String,
    pub version: String,
    pub exe_hash: Option<String>,
    pub state: State,
    pub crashes_in_window: u32,
    pub total_crashes: u64,
    pub window_started_at: Time,
    pub last_crash: Time,
    pub window_ends_at: Time,
    pub window_remaining_ms: u64,
    pub retry_after_ms: Option<u64>,
}

impl Entry {
    pub fn of(v: &EntryView) -> Self {
        let key = &v.entry.key;
        Self {
            key: key.to_string(),
            instance: key.instance.to_string(),
            service: key.service_name.to_owned(),
            version: key.service_version.to_owned(),
            exe_hash: (!key.exe_hash.is_empty()).then(|| key.exe_hash.to_owned()),
            state: v.state,
            crashes_in_window: v.entry.crashes_in_window,
            total_crashes: v.entry.total_crashes,
            window_started_at: Time::of(&v.entry.window_started_at),
            last_crash: Time::of(&v.entry.last_crash),
            window_ends_at: Time::of(&v.window_ends),
            window_remaining_ms: millis(v.remaining),
            retry_after_ms: v.retry_after().map(millis),
        }
    }
}

/// An entry that could not be decoded.
#[derive(Debug, Serialize)]
pub struct Damaged {
    pub key: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct List {
    pub store: String,
    pub now: Time,
    pub entries: Vec<Entry>,
    pub damaged: Vec<Damaged>,
}

#[derive(Debug, Serialize)]
pub struct Show {
    pub key: String,
    pub now: Time,
    pub state: State,
    pub policy: Policy,
    pub entry: Option<Entry>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub key: String,
    pub now: Time,
    pub state: State,
    pub may_start: bool,
    pub crashes_in_window: u32,
    pub window_remaining_ms: Option<u64>,
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Reset {
    pub cleared: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Retry,
    Refuse,
}

#[derive(Debug, Serialize)]
pub struct RecordCrash {
    pub key: String,
    pub at: Time,
    pub decision: Decision,
    pub retry_after_ms: u64,
    pub attempt: Option<u32>,
    pub reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct RecordSuccess {
    pub key: String,
    pub cleared: bool,
}

#[derive(Debug, Serialize)]
pub struct Prune {
    pub now: Time,
    pub pruned: usize,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub store: String,
    pub ok: bool,
    pub integrity: &'static str,
    pub schema_version: u32,
    pub policy: Option<Policy>,
    pub entries: usize,
    pub damaged: usize,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Import {
    pub store: String,
    pub imported: usize,
    pub policy: Policy,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Exited,
    Refused,
    Interrupted,
    /// The command could not be started (exit 126 or 127).
    #[serde(rename = "exec_failed")]
    ExecFailed,
    /// Another live `run` supervises the key (exit 75).
    Duplicate,
}

#[derive(Debug, Serialize)]
pub struct Run {
    pub key: String,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub starts: u32,
    pub crashes: u32,
    pub retry_after_ms: Option<u64>,
}

/// Writes `doc` as one pretty-printed JSON document.
pub fn emit(out: &mut impl std::io::Write, doc: &impl Serialize) -> anyhow::Result<()> {
    // Serialize first, so a closed stdout surfaces as a plain `io::Error` (quiet broken pipe).
    let text = serde_json::to_string_pretty(doc)?;
    writeln!(out, "{text}")?;
    Ok(())
}
