//! Human output. Every renderer writes to `&mut impl Write`; keys are validated text, and
//! anything else that came from outside is sanitized before it gets here.

use std::io::{self, Write};

use recovery_store::{BackendKey, BackendRecoveryPolicy, Timestamp};

use super::view::{EntryView, State, relative, rfc3339, span};

/// Writes `rows` under `headers` in columns two spaces apart, without trailing blanks.
pub fn table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The `list` table.
pub fn list(out: &mut impl Write, views: &[EntryView], now: &Timestamp) -> io::Result<()> {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.entry.key.to_string(),
                v.state.name().to_owned(),
                format!("{}/{}", v.entry.crashes_in_window, v.entry.total_crashes),
                relative(&v.entry.last_crash, now),
                next(v, now),
            ]
        })
        .collect();
    table(
        out,
        &[
            "KEY",
            "STATE",
            "CRASHES",
            "LAST CRASH",
            "RETRY AFTER / WINDOW ENDS",
        ],
        &rows,
    )
}

/// What happens next: when a refused backend may retry, or when a window ends.
fn next(v: &EntryView, now: &Timestamp) -> String {
    match v.state {
        State::Refused => format!("retry in {}", span(v.remaining, true)),
        State::Recovering => format!("window ends in {}", span(v.remaining, true)),
        State::Healthy => format!("window ended {}", relative(&v.window_ends, now)),
    }
}

/// Every field of one backend, with absolute and relative times.
pub fn show(
    out: &mut impl Write,
    key: &BackendKey,
    view: Option<&EntryView>,
    now: &Timestamp,
    policy: &BackendRecoveryPolicy,
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
            fields.push(("state", "healthy (no recorded crashes)".into()));
            fields.push(("may start", "yes".into()));
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
            fields.push(("crashes in window", v.entry.crashes_in_window.to_string()));
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
    fields.push(("policy", policy_text(policy)));
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    for (name, value) in fields {
        writeln!(out, "{:<width$} {value}", format!("{name}:"), width = width)?;
    }
    Ok(())
}

/// The one-line `status` answer.
pub fn status(out: &mut impl Write, key: &BackendKey, view: Option<&EntryView>) -> io::Result<()> {
    match view.map(|v| (v.state, v)) {
        None | Some((State::Healthy, _)) => writeln!(out, "{key}: healthy: may start now"),
        Some((State::Recovering, v)) => writeln!(
            out,
            "{key}: recovering ({} in the window, which ends in {}): may start now",
            crashes(v.entry.crashes_in_window),
            span(v.remaining, true)
        ),
        Some((State::Refused, v)) => writeln!(
            out,
            "{key}: refused (backend unavailable): retry after {}",
            span(v.remaining, true)
        ),
    }
}

pub fn crashes(n: u32) -> String {
    if n == 1 {
        "1 crash".into()
    } else {
        format!("{n} crashes")
    }
}

pub fn policy_text(p: &BackendRecoveryPolicy) -> String {
    format!(
        "retry backoff {}, budget window {}",
        humantime::format_duration(p.retry_backoff),
        humantime::format_duration(p.budget_window)
    )
}

pub fn policy(out: &mut impl Write, p: &BackendRecoveryPolicy) -> io::Result<()> {
    writeln!(
        out,
        "retry backoff: {}",
        humantime::format_duration(p.retry_backoff)
    )?;
    writeln!(
        out,
        "budget window: {}",
        humantime::format_duration(p.budget_window)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_trims() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["a".into(), "long value".into(), "x".into()],
            vec!["longer".into(), "v".into(), "".into()],
        ];
        table(&mut out, &["K", "V", "LAST"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "K       V           LAST\na       long value  x\nlonger  v\n"
        );
    }
}
