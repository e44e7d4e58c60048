//! Human output. Every renderer writes to `&mut impl Write`; keys are validated text, and
//! anything else that came from outside is sanitized before it gets here.

use std::io::{self, Write};

use recovery_store::{
    AppliedPolicy, BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, CrashRecord,
    RecoveryPolicy, StoreError, Timestamp,
};

use super::crashes;
use super::lookup::Found;
use super::sanitize::{sanitize, sanitize_lossy};
use super::view::{EntryView, State, relative, rfc3339, span};

/// The `list` table's headers.
pub const LIST_HEADERS: [&str; 6] = [
    "KEY",
    "STATE",
    "CRASHES",
    "LAST CRASH",
    "LAST EXIT",
    "RETRY AFTER / WINDOW ENDS",
];

/// The digits of an executable hash the table shows (`-o wide` shows them all).
pub const SHORT_HASH: usize = 12;

/// One `list` row's cells; the key's hash is shortened unless `wide`.
pub fn list_row(v: &EntryView, now: &Timestamp, wide: bool) -> [String; 6] {
    [
        shown_key(&v.entry.key, wide),
        v.state.name().to_owned(),
        format!("{}/{}", v.crashes_in_window(), v.entry.total_crashes),
        relative(&v.entry.last_crash, now),
        v.last
            .as_ref()
            .map_or_else(|| "-".to_owned(), crashes::exit_text),
        next(v, now),
    ]
}

/// The key as the table shows it: a hash longer than [`SHORT_HASH`] digits is cut to that
/// many and marked with `…`.
pub fn shown_key(key: &BackendKey, wide: bool) -> String {
    match key.exe_hash.get(..SHORT_HASH) {
        Some(short) if !wide && key.exe_hash.len() > SHORT_HASH => format!(
            "{}/{}@{}#{short}…",
            key.instance, key.service_name, key.service_version
        ),
        _ => key.to_string(),
    }
}

/// Column widths for rows of `cells`, headers included.
pub fn widths<const N: usize>(headers: &[&str; N]) -> [usize; N] {
    headers.map(|h| h.chars().count())
}

/// Widens `widths` to fit `row`.
pub fn fit<const N: usize>(widths: &mut [usize; N], row: &[String; N]) {
    for (w, cell) in widths.iter_mut().zip(row) {
        *w = (*w).max(cell.chars().count());
    }
}

/// Writes one row in columns two spaces apart, without trailing blanks; `color` wraps it in
/// an ANSI colour (the caller decides whether the terminal gets colour).
pub fn row<const N: usize>(
    out: &mut impl Write,
    widths: &[usize; N],
    cells: &[String; N],
    color: Option<&str>,
) -> io::Result<()> {
    let mut line = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == N {
            line.push_str(cell);
        } else {
            let pad = w.saturating_sub(cell.chars().count());
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad + 2));
        }
    }
    let line = line.trim_end();
    match color {
        Some(code) => writeln!(out, "\x1b[{code}m{line}\x1b[0m"),
        None => writeln!(out, "{line}"),
    }
}

/// What happens next: when a refused backend may retry, or when a window ends.
fn next(v: &EntryView, now: &Timestamp) -> String {
    match v.state {
        State::Refused => format!("retry in {}", span(v.remaining, true)),
        State::Recovering => format!("window ends in {}", span(v.remaining, true)),
        State::Healthy => format!("window ended {}", relative(&v.window_ends, now)),
    }
}

/// Every field of the backends a key names, with absolute and relative times: one block per
/// matching entry, or one block saying it has no recorded state; a match a damaged override
/// would judge gets a block saying so. `histories` holds each judged entry's crash history,
/// in the order of `found.views`; `policy` is the key's own when nothing matched.
pub fn show(
    out: &mut impl Write,
    key: &BackendKey,
    found: &Found,
    histories: &[Vec<CrashRecord>],
    now: &Timestamp,
    policy: &AppliedPolicy,
) -> io::Result<()> {
    if found.matched() == 0 {
        return show_one(out, key, None, &found.similar, now, policy);
    }
    if found.widened(key) {
        writeln!(
            out,
            "{key} has no executable hash: it matches {} under any hash",
            entries(found.matched())
        )?;
        writeln!(out)?;
    }
    for (i, (v, applied)) in found.views.iter().zip(&found.applied).enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        show_one(out, &v.entry.key, Some(v), &[], now, applied)?;
        crashes::table(out, histories.get(i).map_or(&[], Vec::as_slice), now)?;
    }
    for (i, u) in found.unjudged.iter().enumerate() {
        if i > 0 || !found.views.is_empty() {
            writeln!(out)?;
        }
        writeln!(out, "key:    {}", sanitize(&u.key))?;
        writeln!(out, "state:  unknown: {}", sanitize(&u.text()))?;
    }
    Ok(())
}

fn show_one(
    out: &mut impl Write,
    key: &BackendKey,
    view: Option<&EntryView>,
    similar: &[String],
    now: &Timestamp,
    policy: &AppliedPolicy,
) -> io::Result<()> {
    let when = |ts: &Timestamp| format!("{} ({})", rfc3339(ts, true), relative(ts, now));
    let hash = if key.exe_hash.is_empty() {
        "-"
    } else {
        &key.exe_hash
    };
    let mut fields: Vec<(&str, String)> = vec![
        ("key", key.to_string()),
        ("instance", key.instance.to_string()),
        ("service", key.service_name.to_owned()),
        ("version", key.service_version.to_owned()),
        ("executable hash", hash.to_owned()),
    ];
    match view {
        None => {
            fields.push(("state", "healthy (no recorded state for this key)".into()));
            fields.push(("may start", "yes".into()));
            if !similar.is_empty() {
                fields.push(("similar keys", similar.join(", ")));
            }
        }
        Some(v) => {
            fields.push(("state", v.state.name().to_owned()));
            fields.push((
                "may start",
                match v.retry_after() {
                    Some(wait) => format!("no, retry after {}", span(wait, true)),
                    None => "yes".into(),
                },
            ));
            let in_window = if v.state == State::Healthy {
                "0 (the window has ended)".to_owned()
            } else {
                v.crashes_in_window().to_string()
            };
            fields.push(("crashes in window", in_window));
            fields.push(("total crashes", v.entry.total_crashes.to_string()));
            fields.push(("window started", when(&v.entry.window_started_at)));
            fields.push(("last crash", when(&v.entry.last_crash)));
            let ends = if v.remaining.is_zero() {
                "window ended"
            } else {
                "window ends"
            };
            fields.push((ends, when(&v.window_ends)));
        }
    }
    fields.push(("policy", applied_policy_text(policy)));
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    for (name, value) in fields {
        writeln!(out, "{:<width$} {value}", format!("{name}:"), width = width)?;
    }
    Ok(())
}

/// The one-line `status` answer for the entries a key names (the worst decides).
pub fn status(
    out: &mut impl Write,
    key: &BackendKey,
    found: &Found,
    applied: &AppliedPolicy,
) -> io::Result<()> {
    status_line(out, key, found)?;
    if applied.scope.is_some() {
        writeln!(out, "policy: {}", applied_policy_text(applied))?;
    }
    Ok(())
}

fn status_line(out: &mut impl Write, key: &BackendKey, found: &Found) -> io::Result<()> {
    let Some(worst) = found.worst() else {
        let near = if found.similar.is_empty() {
            String::new()
        } else {
            format!("; similar keys with state: {}", found.similar.join(", "))
        };
        return writeln!(
            out,
            "{key}: healthy: may start now (no recorded state for this key{near})"
        );
    };
    let answer = match worst.state {
        State::Healthy => "healthy: may start now (its last window has ended)".to_owned(),
        State::Recovering => format!(
            "recovering ({} in the window, which ends in {}): may start now",
            crashes(worst.crashes_in_window()),
            span(worst.remaining, true)
        ),
        State::Refused => format!(
            "refused (backend unavailable): retry after {}; {}",
            span(worst.remaining, true),
            way_out(&worst.entry.key)
        ),
    };
    let mut line = format!("{key}: {answer}");
    if found.widened(key) {
        let named: Vec<String> = found
            .views
            .iter()
            .map(|v| format!("{} {}", v.entry.key, v.state.name()))
            .chain(
                found
                    .unjudged
                    .iter()
                    .map(|u| format!("{} not judged ({})", sanitize(&u.key), u.why())),
            )
            .collect();
        let judged = if found.unjudged.is_empty() {
            String::new()
        } else {
            format!("{} judged of ", found.views.len())
        };
        line.push_str(&format!(
            " [worst of {judged}{} under any executable hash: {}]",
            entries(found.matched()),
            named.join(", ")
        ));
    }
    writeln!(out, "{line}")
}

/// What an operator can do about a refused backend.
pub fn way_out(key: &BackendKey) -> String {
    format!(
        "after a repair, `recovery-store reset {key}` lets it start now; \
         `recovery-store run --wait` waits for the window instead"
    )
}

/// `retry after 250ms (attempt 1)` or `refused (backend unavailable), retry after 29s`.
pub fn decision_text(decision: &BackendRecoveryDecision) -> String {
    match decision {
        BackendRecoveryDecision::Retry {
            retry_after,
            attempt,
        } => {
            format!(
                "retry after {} (attempt {attempt})",
                span(*retry_after, true)
            )
        }
        BackendRecoveryDecision::Refuse { retry_after, .. } => {
            format!(
                "refused (backend unavailable), retry after {}",
                span(*retry_after, true)
            )
        }
    }
}

/// A damaged entry's error, with the `reset --raw` command that clears it.
pub fn damaged_text(err: &StoreError) -> String {
    match err {
        StoreError::CorruptEntry {
            path, key, detail, ..
        } => {
            let shown = sanitize(key);
            format!(
                "entry {shown} in {} cannot be decoded ({detail}): clear it with \
                 `recovery-store reset --raw {}`",
                sanitize_lossy(path),
                shell_quoted(&shown)
            )
        }
        other => other.to_string(),
    }
}

/// `text` in single quotes for a POSIX shell (`'` written as `'\''`), as a command the
/// reader can paste.
pub fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `1 entry`, `2 entries`.
pub fn entries(n: usize) -> String {
    if n == 1 {
        "1 entry".into()
    } else {
        format!("{n} entries")
    }
}

pub fn crashes(n: u32) -> String {
    if n == 1 {
        "1 crash".into()
    } else {
        format!("{n} crashes")
    }
}

/// The policy that applies to a key in one line, naming the override it comes from.
pub fn applied_policy_text(applied: &AppliedPolicy) -> String {
    let text = stored_policy_text(&applied.policy);
    match &applied.scope {
        None => text,
        Some(scope) => format!("{text} ({} override {scope})", scope.kind()),
    }
}

/// A stored policy in one line with its retries per window, always.
pub fn stored_policy_text_full(p: &RecoveryPolicy) -> String {
    format!(
        "{}, {}",
        policy_text(&p.recovery),
        retries(p.retries_per_window)
    )
}

/// "1 retry per window", "3 retries per window".
pub fn retries(n: u32) -> String {
    if n == 1 {
        "1 retry per window".to_owned()
    } else {
        format!("{n} retries per window")
    }
}

/// A stored policy in one line: [`policy_text`], and its retries per window when not the
/// reference's one.
pub fn stored_policy_text(p: &RecoveryPolicy) -> String {
    match p.retries_per_window {
        1 => policy_text(&p.recovery),
        n => format!("{}, {n} retries per window", policy_text(&p.recovery)),
    }
}

pub fn policy_text(p: &BackendRecoveryPolicy) -> String {
    format!(
        "retry backoff {}, budget window {}",
        humantime::format_duration(p.retry_backoff),
        humantime::format_duration(p.budget_window)
    )
}

/// `policy set`: each duration as old → new, and when the change applies; `written` is false
/// when the store already held it (an override equal to the policy it replaces is still
/// written when the scope had none).
pub fn policy_change(
    out: &mut impl Write,
    old: &RecoveryPolicy,
    new: &RecoveryPolicy,
    written: bool,
) -> io::Result<()> {
    let change = |a, b| {
        let (a, b) = (humantime::format_duration(a), humantime::format_duration(b));
        if a.to_string() == b.to_string() {
            format!("{b} (unchanged)")
        } else {
            format!("{a} → {b}")
        }
    };
    writeln!(
        out,
        "retry backoff: {}",
        change(old.recovery.retry_backoff, new.recovery.retry_backoff)
    )?;
    writeln!(
        out,
        "budget window: {}",
        change(old.recovery.budget_window, new.recovery.budget_window)
    )?;
    let (a, b) = (old.retries_per_window, new.retries_per_window);
    if a == b {
        writeln!(out, "retries per window: {b} (unchanged)")?;
    } else {
        writeln!(out, "retries per window: {a} → {b}")?;
    }
    if !written {
        return writeln!(out, "the policy is unchanged: nothing was written");
    }
    policy_change_applies(out)
}

/// When a written policy change applies.
pub fn policy_change_applies(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "windows already running are judged by the new policy from their next decision"
    )
}

pub fn policy(out: &mut impl Write, p: &RecoveryPolicy) -> io::Result<()> {
    writeln!(
        out,
        "retry backoff: {}",
        humantime::format_duration(p.recovery.retry_backoff)
    )?;
    writeln!(
        out,
        "budget window: {}",
        humantime::format_duration(p.recovery.budget_window)
    )?;
    writeln!(out, "retries per window: {}", p.retries_per_window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_and_trim() {
        let rows = [
            ["a".to_owned(), "long value".into(), "x".into()],
            ["longer".to_owned(), "v".into(), "".into()],
        ];
        let mut widths = widths(&["K", "V", "LAST"]);
        for r in &rows {
            fit(&mut widths, r);
        }
        let mut out = Vec::new();
        row(
            &mut out,
            &widths,
            &["K", "V", "LAST"].map(str::to_owned),
            None,
        )
        .unwrap();
        for r in &rows {
            row(&mut out, &widths, r, None).unwrap();
        }
        row(&mut out, &widths, &rows[0], Some("31")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "K       V           LAST\na       long value  x\nlonger  v\n\x1b[31ma       long value  x\x1b[0m\n"
        );
    }

    #[test]
    fn long_hashes_are_shortened_unless_wide() {
        let key: BackendKey = format!("shared/zccache@1.11.20#{}", "98ea".repeat(16))
            .parse()
            .unwrap();
        assert_eq!(
            shown_key(&key, false),
            "shared/zccache@1.11.20#98ea98ea98ea…"
        );
        assert_eq!(shown_key(&key, true), key.to_string());
        let short: BackendKey = "shared/a@1.0.0#98ea98ea98ea".parse().unwrap();
        assert_eq!(shown_key(&short, false), short.to_string());
    }
}
