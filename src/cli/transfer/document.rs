//! The export document: its serde types, how a store's parts become them, and how a document
//! is parsed and validated back into a [`StoreImage`] before any store is opened.
//!
//! Version 2 carries the default policy with its retries per window, the overrides, every
//! entry with its crash history, and the audit trail. Version 1 (no history, overrides, audit
//! or retries) still imports. A part a document does not carry is kept as the store has it;
//! the audit trail is read and checked but never written to a store (see `restore.rs`).

use std::time::Duration;

use anyhow::{Context as _, bail};
use recovery_store::{
    AuditEvent, BootTime, CrashRecord, PolicyScope, RecoveryEntry, RecoveryPolicy, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::cli::view::{millis, rfc3339};

/// What `format` holds in every export document.
pub const FORMAT: &str = "recovery-store-export";
/// The export document version this build writes (it reads this one and version 1).
pub const EXPORT_VERSION: u32 = 2;
/// The most characters of a bad value echoed in an error.
const ECHO: usize = 64;

/// A stored time in full: what `json::Time` shows, plus what a lossless restore needs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rfc3339: Option<String>,
    unix_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unix_nanos: Option<i64>,
    #[serde(default)]
    boot: Option<Boot>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Boot {
    /// 32 lowercase hex digits.
    boot_id: String,
    since_boot_ns: u64,
}

/// The default policy; `retries_per_window` is absent in version 1 (which means 1).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPolicy {
    retry_backoff_ms: u64,
    budget_window_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retries_per_window: Option<u32>,
}

impl ExportPolicy {
    pub fn of(p: &RecoveryPolicy) -> Self {
        Self {
            retry_backoff_ms: millis(p.recovery.retry_backoff),
            budget_window_ms: millis(p.recovery.budget_window),
            retries_per_window: Some(p.retries_per_window),
        }
    }
}

/// One per-service or per-key override (version 2).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportOverride {
    /// `service:NAME` or `key:KEY`.
    scope: String,
    retry_backoff_ms: u64,
    budget_window_ms: u64,
    retries_per_window: u32,
}

impl ExportOverride {
    pub fn of(scope: &PolicyScope, p: &RecoveryPolicy) -> Self {
        Self {
            scope: scope.to_string(),
            retry_backoff_ms: millis(p.recovery.retry_backoff),
            budget_window_ms: millis(p.recovery.budget_window),
            retries_per_window: p.retries_per_window,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportEntry {
    key: String,
    window_started_at: Stamp,
    crashes_in_window: u32,
    /// Read as `last_crash_at` too, the name other documents use for it.
    #[serde(alias = "last_crash_at")]
    last_crash: Stamp,
    total_crashes: u64,
    /// The last crashes, oldest first (version 2; absent in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history: Option<Vec<ExportCrash>>,
}

impl ExportEntry {
    pub fn of(e: &RecoveryEntry, history: &[CrashRecord]) -> Self {
        Self {
            key: e.key.to_string(),
            window_started_at: stamp(&e.window_started_at),
            crashes_in_window: e.crashes_in_window,
            last_crash: stamp(&e.last_crash),
            total_crashes: e.total_crashes,
            history: Some(
                history
                    .iter()
                    .map(|c| ExportCrash {
                        at: stamp(&c.at),
                        exit_code: c.exit_code,
                        signal: c.signal,
                        pid: c.pid,
                        uid: c.uid,
                    })
                    .collect(),
            ),
        }
    }
}

/// One crash of an entry's history.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportCrash {
    at: Stamp,
    exit_code: Option<i32>,
    signal: Option<i32>,
    pid: Option<u32>,
    uid: Option<u32>,
}

/// One audit event (version 2): `audit --json`'s fields, with a lossless time and the
/// sequence number it had in the exporting store.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportAudit {
    #[serde(default)]
    seq: u64,
    at: Stamp,
    action: String,
    key: Option<String>,
    scope: Option<String>,
    uid: Option<u32>,
    user: Option<String>,
    pid: Option<u32>,
    reason: Option<String>,
}

impl ExportAudit {
    pub fn of(e: &AuditEvent) -> Self {
        Self {
            seq: e.seq,
            at: stamp(&e.at),
            action: e.action.as_str().to_owned(),
            key: e.key.clone(),
            scope: e.scope.clone(),
            uid: e.uid,
            user: e.user.clone(),
            pid: e.pid,
            reason: e.reason.clone(),
        }
    }
}

pub fn stamp(ts: &Timestamp) -> Stamp {
    Stamp {
        rfc3339: Some(rfc3339(ts, true)),
        unix_ms: ts.unix_millis(),
        unix_nanos: Some(ts.unix_nanos()),
        boot: ts.boot().map(|b| Boot {
            boot_id: format!("{:032x}", b.boot_id),
            since_boot_ns: u64::try_from(b.since_boot.as_nanos()).unwrap_or(u64::MAX),
        }),
    }
}

fn timestamp(s: &Stamp) -> anyhow::Result<Timestamp> {
    let nanos = match s.unix_nanos {
        Some(n) if n.div_euclid(1_000_000) != s.unix_ms => {
            bail!("unix_nanos {n} does not match unix_ms {}", s.unix_ms)
        }
        Some(n) => n,
        None => s
            .unix_ms
            .checked_mul(1_000_000)
            .context("unix_ms is out of range (years 1677 to 2262)")?,
    };
    let boot = match &s.boot {
        None => None,
        Some(b) => {
            let valid = b.boot_id.len() == 32 && b.boot_id.bytes().all(|c| c.is_ascii_hexdigit());
            let boot_id = u128::from_str_radix(&b.boot_id, 16)
                .ok()
                .filter(|_| valid)
                .context("boot.boot_id must be 32 hex digits")?;
            Some(BootTime {
                boot_id,
                since_boot: Duration::from_nanos(b.since_boot_ns),
            })
        }
    };
    let ts = Timestamp::from_parts(nanos, boot);
    if let Some(text) = &s.rfc3339 {
        let with_millis = text.contains('.');
        let expected = rfc3339(&ts, with_millis);
        if *text != expected {
            bail!("rfc3339 {text:?} does not match unix_ms (expected {expected:?})");
        }
    }
    Ok(ts)
}

mod parse;

#[cfg(test)]
use parse::Parsed;
pub use parse::{NewerDocument, parse_document};

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
