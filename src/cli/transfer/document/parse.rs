//! Reading a document back: its serde shape, and every check made before a store is opened.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, bail};
use recovery_store::{
    AuditAction, BackendKey, BackendRecoveryPolicy, CrashRecord, CrashReport, MAX_POLICY_DURATION,
    PolicyScope, RecoveryEntry, RecoveryPolicy, StoreImage, validate_retries,
};
use serde::Deserialize;

use super::{
    ECHO, EXPORT_VERSION, ExportAudit, ExportEntry, ExportOverride, ExportPolicy, FORMAT, Stamp,
    timestamp,
};
use crate::cli::sanitize::sanitize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    version: u32,
    #[serde(default)]
    exported_at: Option<Stamp>,
    policy: ExportPolicy,
    #[serde(default)]
    overrides: Option<Vec<ExportOverride>>,
    entries: Vec<ExportEntry>,
    #[serde(default)]
    audit: Option<Vec<ExportAudit>>,
}

/// A document parsed and checked: what `import` writes, and what it reports.
#[derive(Debug)]
pub struct Parsed {
    /// The entries and policies to write. `policy` is `None` when the document gives no retries
    /// per window (the caller fills in the store's); `overrides` is `None` when it carries none.
    pub image: StoreImage,
    /// The default policy's backoff and window, and its retries per window if given.
    pub policy: (BackendRecoveryPolicy, Option<u32>),
    /// How many audit events the document carries (checked, never written to a store).
    pub audit_events: usize,
    /// Crash details no process could have given (see [`CrashReport::validate`], and PID 0),
    /// dropped: the crash is kept without them, as a broker keeps one.
    pub details_dropped: usize,
}

/// The version error, which a fixed document cannot cure: it needs another build.
#[derive(Debug)]
pub struct NewerDocument(pub u32);

impl std::fmt::Display for NewerDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`version` is {}; this build reads export versions 1 to {EXPORT_VERSION}: import it \
             with the recovery-store that exported it, or a newer one",
            self.0
        )
    }
}

impl std::error::Error for NewerDocument {}

/// Parses and validates a whole document into what `import` writes. Names the first problem
/// by its place in the document, e.g. "`entries[3]`.key". Times are taken as they are: a
/// store legitimately holds late callers' windows, time-namespace boot clocks and times from
/// a clock that ran ahead.
pub fn parse_document(text: &str) -> anyhow::Result<Parsed> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        bail!("the document is empty: give the file `recovery-store export` wrote");
    }
    let doc: Document = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(
        text,
    ))
    .map_err(|e| {
        let place = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            anyhow::anyhow!("not a valid export document: not JSON ({inner})")
        } else if place == "." && !inner.to_string().starts_with("missing field") {
            // serde's own words here name its internal types.
            anyhow::anyhow!(
                "not an export document: an export document is a JSON object with `format`, \
                 `version`, `policy` and `entries`"
            )
        } else if place == "." {
            anyhow::anyhow!("{inner}")
        } else {
            anyhow::anyhow!("`{place}`: {inner}")
        }
    })?;
    if doc.format != FORMAT {
        bail!(
            "`format` is {:?}, expected {FORMAT:?}",
            shorten(&doc.format)
        );
    }
    if !(1..=EXPORT_VERSION).contains(&doc.version) {
        return Err(NewerDocument(doc.version).into());
    }
    if doc.version == 1 {
        let later = [
            ("overrides", doc.overrides.is_some()),
            ("audit", doc.audit.is_some()),
            (
                "policy.retries_per_window",
                doc.policy.retries_per_window.is_some(),
            ),
            ("history", doc.entries.iter().any(|e| e.history.is_some())),
        ];
        if let Some((field, _)) = later.iter().find(|(_, there)| *there) {
            bail!("a version 1 document has no `{field}` (version 2 added it): set `version` to 2");
        }
    }
    if let Some(at) = &doc.exported_at {
        timestamp(at).context("`exported_at`")?;
    }
    let retries = doc.policy.retries_per_window;
    let policy = recovery_policy(
        "policy",
        doc.policy.retry_backoff_ms,
        doc.policy.budget_window_ms,
        retries.unwrap_or(1),
    )?;
    let overrides = match &doc.overrides {
        None => None,
        Some(list) => Some(overrides(list)?),
    };
    let mut details_dropped = 0;
    let entries = entries(doc.entries, &mut details_dropped)?;
    let audit = doc.audit.unwrap_or_default();
    for (i, e) in audit.iter().enumerate() {
        audit_event(e).with_context(|| format!("`audit[{i}]`"))?;
    }
    Ok(Parsed {
        image: StoreImage {
            policy: retries.map(|_| policy),
            overrides,
            entries,
        },
        policy: (policy.recovery, retries),
        audit_events: audit.len(),
        details_dropped,
    })
}

fn overrides(list: &[ExportOverride]) -> anyhow::Result<Vec<(PolicyScope, RecoveryPolicy)>> {
    let mut scopes = BTreeSet::new();
    let mut overrides = Vec::with_capacity(list.len());
    for (i, o) in list.iter().enumerate() {
        let at = format!("overrides[{i}]");
        let scope = PolicyScope::parse(&o.scope).with_context(|| format!("`{at}`.scope"))?;
        if !scopes.insert(scope.to_string()) {
            bail!("`{at}`.scope: {scope} appears more than once");
        }
        let policy = recovery_policy(
            &at,
            o.retry_backoff_ms,
            o.budget_window_ms,
            o.retries_per_window,
        )
        .with_context(|| format!("the override for {scope}"))?;
        overrides.push((scope, policy));
    }
    Ok(overrides)
}

/// At most [`ECHO`] characters of `text`, sanitized.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(ECHO).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    sanitize(&short).into_owned()
}

fn recovery_policy(
    at: &str,
    backoff_ms: u64,
    window_ms: u64,
    retries: u32,
) -> anyhow::Result<RecoveryPolicy> {
    let duration = |name: &str, ms: u64| {
        if ms == 0 {
            bail!("`{at}.{name}` must be at least 1");
        }
        // `export` rounds up to whole milliseconds, so the longest duration a store holds
        // comes back one rounding over it.
        let longest_ms = MAX_POLICY_DURATION.as_nanos().div_ceil(1_000_000);
        let d = if u128::from(ms) == longest_ms {
            MAX_POLICY_DURATION
        } else {
            Duration::from_millis(ms)
        };
        if d > MAX_POLICY_DURATION {
            bail!(
                "`{at}.{name}` ({}) is longer than the {} a store can hold",
                humantime::format_duration(d),
                humantime::format_duration(Duration::from_secs(MAX_POLICY_DURATION.as_secs()))
            );
        }
        Ok(d)
    };
    validate_retries(retries).with_context(|| format!("`{at}.retries_per_window`"))?;
    let policy = RecoveryPolicy::new(
        BackendRecoveryPolicy::new(
            duration("retry_backoff_ms", backoff_ms)?,
            duration("budget_window_ms", window_ms)?,
        ),
        retries,
    );
    policy.validate().with_context(|| format!("`{at}`"))?;
    Ok(policy)
}

fn entries(
    entries: Vec<ExportEntry>,
    details_dropped: &mut usize,
) -> anyhow::Result<Vec<(RecoveryEntry, Vec<CrashRecord>)>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("`entries[{i}]`");
        let key: BackendKey = e.key.parse().with_context(|| format!("{at}.key"))?;
        if !seen.insert(key.to_string()) {
            bail!("{at}.key: {key} appears more than once");
        }
        if e.crashes_in_window == 0 {
            bail!("{at}.crashes_in_window must be at least 1 ({key})");
        }
        if e.total_crashes < u64::from(e.crashes_in_window) {
            bail!("{at}.total_crashes is below crashes_in_window ({key})");
        }
        let history = e
            .history
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let when =
                    timestamp(&c.at).with_context(|| format!("{at}.history[{j}].at ({key})"))?;
                let mut report = CrashReport {
                    exit_code: c.exit_code,
                    signal: c.signal,
                };
                if report.validate().is_err() {
                    report = CrashReport::default();
                    *details_dropped += 1;
                }
                let pid = if c.pid == Some(0) {
                    *details_dropped += 1;
                    None
                } else {
                    c.pid
                };
                Ok(CrashRecord::new(when, report, pid, c.uid))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.push((
            RecoveryEntry {
                window_started_at: timestamp(&e.window_started_at)
                    .with_context(|| format!("{at}.window_started_at ({key})"))?,
                last_crash: timestamp(&e.last_crash)
                    .with_context(|| format!("{at}.last_crash ({key})"))?,
                crashes_in_window: e.crashes_in_window,
                total_crashes: e.total_crashes,
                key,
            },
            history,
        ));
    }
    Ok(out)
}

/// Checks one audit event's shape: a known action, with its key (one-key actions) or its
/// scope (the others), and a time.
fn audit_event(e: &ExportAudit) -> anyhow::Result<()> {
    let Some(action) = AuditAction::from_name(&e.action) else {
        let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        bail!(
            ".action {:?} is not an audit action (one of {})",
            shorten(&e.action),
            known.join(", ")
        );
    };
    let name = action.as_str();
    if action.is_one_key() {
        let key = e
            .key
            .as_deref()
            .with_context(|| format!(".key: a {name} event names its key"))?;
        key.parse::<BackendKey>().context(".key")?;
        if e.scope.is_some() {
            bail!(".scope: a {name} event names its key, not a scope");
        }
    } else {
        if e.scope.as_deref().is_none_or(str::is_empty) {
            bail!(".scope: a {name} event names its scope");
        }
        if e.key.is_some() {
            bail!(".key: a {name} event names its scope, not a key");
        }
    }
    timestamp(&e.at).context(".at")?;
    Ok(())
}
