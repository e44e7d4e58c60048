//! The `--json` schema: one document per command, built from these types only.
//!
//! Stable rules: durations are whole milliseconds (`*_ms`, rounded up), times are
//! `{"rfc3339": "...Z", "unix_ms": N}` in fields named `*_at`, keys are canonical text. Fields
//! are only added; a renamed one stays beside its new name (`now` beside `evaluated_at`,
//! `last_crash` beside `last_crash_at`, `at` beside `crashed_at`), deprecated in the README.
//! For an ended window (state `healthy`), `crashes_in_window` is 0 and `total_crashes` keeps
//! the count: [`EntryView::crashes_in_window`] decides it for every command.

use std::cell::RefCell;

use serde::ser::{Error as _, SerializeSeq};
use serde::{Serialize, Serializer};

use recovery_store::{CrashRecord, RecoveryPolicy, StoreError, Timestamp};

use super::crashes::CrashJson;
use super::locate::Source;
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

/// A stored policy with its retries per window: `policy`, `policy set` and `show`.
#[derive(Debug, Serialize)]
pub struct StoredPolicy {
    pub retry_backoff_ms: u64,
    pub budget_window_ms: u64,
    pub retries_per_window: u32,
}

impl StoredPolicy {
    pub fn of(p: &RecoveryPolicy) -> Self {
        Self {
            retry_backoff_ms: millis(p.recovery.retry_backoff),
            budget_window_ms: millis(p.recovery.budget_window),
            retries_per_window: p.retries_per_window,
        }
    }
}

/// `policy`: the default policy, and every override.
#[derive(Debug, Serialize)]
pub struct PolicyDoc {
    #[serde(flatten)]
    pub policy: StoredPolicy,
    pub overrides: Vec<Override>,
    /// Override rows that cannot be decoded: judged keys get no decision until each is repaired.
    pub damaged: Vec<DamagedOverride>,
}

/// An override row that cannot be decoded.
#[derive(Debug, Serialize)]
pub struct DamagedOverride {
    /// The stored scope text (lossy UTF-8), `service:NAME` or `key:KEY` when intact.
    pub scope: String,
    /// What is wrong with it, and the command that repairs it.
    pub error: String,
}

/// One per-service or per-key override.
#[derive(Debug, Serialize)]
pub struct Override {
    /// `service:NAME` or `key:KEY`.
    pub scope: String,
    #[serde(flatten)]
    pub policy: StoredPolicy,
}

/// `policy unset`.
#[derive(Debug, Serialize)]
pub struct PolicyUnset {
    pub scope: String,
    /// False when the scope had no override (nothing was written).
    pub removed: bool,
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
    /// Deprecated: `last_crash_at`.
    pub last_crash: Time,
    pub last_crash_at: Time,
    pub window_ends_at: Time,
    pub window_remaining_ms: u64,
    pub retry_after_ms: Option<u64>,
    /// `show` only: the last crashes, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<CrashJson>>,
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
            crashes_in_window: v.crashes_in_window(),
            total_crashes: v.entry.total_crashes,
            window_started_at: Time::of(&v.entry.window_started_at),
            last_crash: Time::of(&v.entry.last_crash),
            last_crash_at: Time::of(&v.entry.last_crash),
            window_ends_at: Time::of(&v.window_ends),
            window_remaining_ms: millis(v.remaining),
            retry_after_ms: v.retry_after().map(millis),
            history: None,
        }
    }

    /// [`Entry::of`] with the entry's crash history (`show --json`).
    pub fn with_history(v: &EntryView, history: &[CrashRecord]) -> Self {
        Self {
            history: Some(history.iter().map(CrashJson::of).collect()),
            ..Self::of(v)
        }
    }
}

/// An entry that could not be decoded.
#[derive(Debug, Serialize)]
pub struct Damaged {
    pub key: String,
    pub error: String,
}

/// `list`: entries and damaged entries are streamed from the store as they are written.
#[derive(Serialize)]
pub struct List<'a> {
    pub store: String,
    /// Deprecated: `evaluated_at`.
    pub now: Time,
    pub evaluated_at: Time,
    pub entries: Streamed<'a, Entry>,
    pub damaged: Streamed<'a, Damaged>,
}

#[derive(Debug, Serialize)]
pub struct Show {
    pub key: String,
    /// Deprecated: `evaluated_at`.
    pub now: Time,
    pub evaluated_at: Time,
    pub state: State,
    /// False when the key has no recorded state.
    pub recorded: bool,
    /// The policy that applies to the key (its worst match's).
    pub policy: StoredPolicy,
    /// Where it comes from: `default`, `service:NAME` or `key:KEY`.
    pub policy_scope: String,
    /// The entry the key names; for a key without its hash, the worst of `matches`.
    pub entry: Option<Entry>,
    /// Every entry the key names (several for a key without its executable hash).
    pub matches: Vec<Entry>,
    /// Stored keys of the same service, when nothing matched.
    pub similar: Vec<String>,
    /// Matches a damaged policy override would judge: left out of `entry` and `matches`.
    pub unjudged: Vec<Damaged>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub key: String,
    /// Deprecated: `evaluated_at`.
    pub now: Time,
    pub evaluated_at: Time,
    pub state: State,
    pub may_start: bool,
    /// False when the key has no recorded state.
    pub recorded: bool,
    pub crashes_in_window: u32,
    /// 0 without recorded state.
    pub total_crashes: u64,
    /// Null without recorded state; 0 once the window has ended.
    pub window_remaining_ms: Option<u64>,
    pub retry_after_ms: Option<u64>,
    /// The policy that applies to the key (its worst match's).
    pub policy: StoredPolicy,
    /// Where it comes from: `default`, `service:NAME` or `key:KEY`.
    pub policy_scope: String,
    /// The stored keys consulted (several for a key without its executable hash).
    pub matches: Vec<String>,
    /// Stored keys of the same service, when nothing matched.
    pub similar: Vec<String>,
    /// Matches a damaged policy override would judge: not consulted, named here.
    pub unjudged: Vec<Damaged>,
}

#[derive(Debug, Serialize)]
pub struct Reset {
    pub cleared: Vec<String>,
    /// Keys named on the command line that had no state.
    pub no_state: Vec<String>,
}

/// `path`: the store a command would use.
#[derive(Debug, Serialize)]
pub struct StorePath {
    pub store: String,
    pub source: Source,
    pub exists: bool,
}

/// `policy set`: the new policy, and the one it replaced.
#[derive(Debug, Serialize)]
pub struct PolicySet {
    /// `default`, `service:NAME` or `key:KEY`.
    pub scope: String,
    #[serde(flatten)]
    pub policy: StoredPolicy,
    /// The policy that judged the scope before; when `previous_damaged` is set (a damaged
    /// override judged it, with values unknown), the policy below that row, else the default.
    pub previous: StoredPolicy,
    /// The damaged override (`service:NAME` or `key:KEY`) that judged the scope before, whose
    /// values could not be read; null otherwise.
    pub previous_damaged: Option<String>,
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
    /// Deprecated: `crashed_at`.
    pub at: Time,
    pub crashed_at: Time,
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
    /// Deprecated: `evaluated_at`.
    pub now: Time,
    pub evaluated_at: Time,
    pub pruned: usize,
    /// Entries left because a damaged policy override would judge them (named on stderr).
    pub left_unjudged: usize,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub store: String,
    pub ok: bool,
    pub integrity: &'static str,
    pub schema_version: u32,
    /// The default policy with its retries per window; null when it cannot be read.
    pub policy: Option<StoredPolicy>,
    pub entries: usize,
    pub damaged: usize,
    pub problems: Vec<String>,
    /// For a file that cannot be opened: what is wrong and what can be salvaged.
    pub diagnosis: Option<Diagnosis>,
    /// Policy override rows that decode and that do not (null when not examined).
    pub overrides: Option<RowCount>,
    /// Audit events that decode and that do not (null when not examined).
    pub audit: Option<RowCount>,
    /// With `--drop-damaged`: what was removed before the check.
    pub dropped: Option<Dropped>,
}

/// Rows of one table: how many decode, how many do not.
#[derive(Debug, Serialize)]
pub struct RowCount {
    pub ok: usize,
    pub damaged: usize,
}

/// What `check --drop-damaged` removed.
#[derive(Debug, Serialize)]
pub struct Dropped {
    /// Scope texts of the override rows removed.
    pub overrides: Vec<String>,
    /// Sequence numbers of the audit events removed.
    pub audit_events: Vec<u64>,
}

/// `check` on a file it cannot open.
#[derive(Debug, Serialize)]
pub struct Diagnosis {
    /// `truncated`, `bad_header`, `foreign`, `newer_schema` or `damaged`.
    pub problem: &'static str,
    pub detail: String,
    /// Entries `check --salvage` would recover; null when nothing can be decoded.
    pub salvageable: Option<usize>,
    pub next_step: String,
}

#[derive(Debug, Serialize)]
pub struct Import {
    pub store: String,
    /// True when the import created the store.
    pub new_store: bool,
    /// Entries in the document.
    pub imported: usize,
    /// The store's default policy after the import.
    pub policy: StoredPolicy,
    /// Overrides in the document; null when it carries none (the store's stayed).
    pub overrides: Option<usize>,
    /// True for `--merge` into an existing store.
    pub merged: bool,
    /// False when the store already held everything: nothing was written.
    pub changed: bool,
    /// Keys in both the store and the document, overwritten under `--merge --yes`.
    pub overwritten: Vec<String>,
    /// Scopes whose override the document's replaced under `--merge --yes`.
    pub overrides_overwritten: Vec<String>,
    /// Overrides the store held that a replace removed before writing the document's.
    pub overrides_replaced: u64,
    /// Keys a replace removed because the document lacks them.
    pub removed: Vec<String>,
    /// Audit events in the document: checked, never written to the store's trail.
    pub audit_events_not_imported: usize,
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

/// A JSON array written element by element as a walk of the store produces them, so a
/// document never holds the store in memory.
pub struct Streamed<'a, T> {
    #[allow(clippy::type_complexity)]
    walk: RefCell<Box<dyn FnMut(&mut dyn FnMut(T) -> bool) -> Result<(), StoreError> + 'a>>,
    failed: &'a RefCell<Option<StoreError>>,
}

impl<'a, T> Streamed<'a, T> {
    /// `walk` calls its visitor once per element, stopping when the visitor returns false; a
    /// store error it returns ends the document and is kept in `failed`.
    pub fn new(
        failed: &'a RefCell<Option<StoreError>>,
        walk: impl FnMut(&mut dyn FnMut(T) -> bool) -> Result<(), StoreError> + 'a,
    ) -> Self {
        Self {
            walk: RefCell::new(Box::new(walk)),
            failed,
        }
    }
}

impl<T: Serialize> Serialize for Streamed<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        let mut write_error = None;
        let walked = (self.walk.borrow_mut())(&mut |item| match seq.serialize_element(&item) {
            Ok(()) => true,
            Err(e) => {
                write_error = Some(e);
                false
            }
        });
        if let Some(e) = write_error {
            return Err(e);
        }
        if let Err(e) = walked {
            let text = e.to_string();
            *self.failed.borrow_mut() = Some(e);
            return Err(S::Error::custom(text));
        }
        seq.end()
    }
}

/// The error a walk returns to stop early once its visitor has said so; never shown, because
/// the visitor's own error is reported instead.
pub fn stop() -> StoreError {
    StoreError::InvalidImport {
        detail: "stopped".into(),
    }
}

/// Writes `doc`, whose arrays are [`Streamed`], as one pretty-printed JSON document straight
/// to `out`. A store error met on the way is returned as itself; a closed stdout as a plain
/// `io::Error` (quiet broken pipe).
pub fn emit_streamed(
    out: &mut impl std::io::Write,
    doc: &impl Serialize,
    failed: &RefCell<Option<StoreError>>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut buffered = std::io::BufWriter::new(out);
    let written = serde_json::to_writer_pretty(&mut buffered, doc);
    if let Some(e) = failed.borrow_mut().take() {
        return Err(e.into());
    }
    match written {
        Ok(()) => {}
        Err(e) if e.is_io() => return Err(std::io::Error::from(e).into()),
        Err(e) => return Err(e.into()),
    }
    writeln!(buffered)?;
    buffered.flush()?;
    Ok(())
}

/// Writes `doc` as one pretty-printed JSON document.
pub fn emit(out: &mut impl std::io::Write, doc: &impl Serialize) -> anyhow::Result<()> {
    // Serialize first, so a closed stdout surfaces as a plain `io::Error` (quiet broken pipe).
    let text = serde_json::to_string_pretty(doc)?;
    writeln!(out, "{text}")?;
    Ok(())
}
