//! How flag and argument values are parsed: each parser's error names what was wrong and
//! what to give instead.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use recovery_store::{BackendKey, BrokerInstanceKey};

pub(super) fn parse_db(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err(
            "the store path is empty: give a file, e.g. --db /var/lib/recovery-store/recovery.redb"
                .into(),
        );
    }
    Ok(PathBuf::from(text))
}

pub(super) fn parse_key(text: &str) -> Result<BackendKey, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// The longest `--reason`, in bytes: a sentence or two, not a document.
pub const MAX_REASON_LEN: usize = 1024;

pub(super) fn parse_retries(text: &str) -> Result<u32, String> {
    let n: u32 = text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not a count of retries: give a whole number from 1 to {}",
            recovery_store::MAX_RETRIES_PER_WINDOW
        )
    })?;
    recovery_store::validate_retries(n).map_err(|e| e.to_string())?;
    Ok(n)
}

pub(super) fn parse_reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the reason is empty: say why, e.g. --reason \"hotfix deployed\"".into());
    }
    if text.len() > MAX_REASON_LEN {
        return Err(format!(
            "the reason is {} bytes, over the {MAX_REASON_LEN}-byte limit: shorten it",
            text.len()
        ));
    }
    Ok(text.to_owned())
}

pub(super) fn parse_instance(text: &str) -> Result<BrokerInstanceKey, String> {
    text.parse().map_err(|e| format!("{e}"))
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}: expected a duration such as 250ms, 30s or 1m"))?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".into());
    }
    Ok(d)
}

pub(super) fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text, 8)
        .map_err(|_| format!("{text:?} is not an octal mode: expected e.g. 0600 or 0660"))?;
    if !matches!(mode, 0o600 | 0o640 | 0o660 | 0o604 | 0o644) {
        return Err(format!(
            "{mode:04o} cannot be a store's mode: use 0600 (private) or 0660 (a group's store)"
        ));
    }
    Ok(mode)
}

pub(super) fn parse_lock_timeout(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 5s, 500ms)"))
}

pub(super) fn parse_time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{e}: expected RFC 3339, e.g. 2026-01-01T00:00:00Z"))
}
