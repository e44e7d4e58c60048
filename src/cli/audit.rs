//! `audit`: the audit trail, oldest first, as a table or as
//! `{events: [{seq, at, action, key, scope, uid, user, pid, reason}], damaged: [{seq, error}]}`.
//! Opens the store read-only and never creates one.
//!
//! Each event is decoded on its own: the events that decode are listed, and each one that does
//! not is named on stderr by its sequence number, with exit 1 (as `export` leaves out a damaged
//! entry). A damaged event may be one about `--key KEY`, so it is named under `--key` too.

use std::io::Write;
use std::process::ExitCode;

use recovery_store::{AuditEvent, BackendKey, StoreError};
use serde::Serialize;

use super::json::{self, Time};
use super::sanitize::sanitize;
use super::view::rfc3339;
use super::{Ctx, NEGATIVE};

/// The `audit --json` document.
#[derive(Debug, Serialize)]
struct Audit {
    events: Vec<Event>,
    /// Events that cannot be decoded, left out of `events`.
    damaged: Vec<Damaged>,
}

/// A damaged event: its sequence number and why it cannot be read.
#[derive(Debug, Serialize)]
struct Damaged {
    seq: u64,
    error: String,
}

/// One event: `key` is set for one-key actions (`reset`, `success`), `scope` for the others.
#[derive(Debug, Serialize)]
struct Event {
    /// The event's sequence number: counts up from 1, never reused.
    seq: u64,
    at: Time,
    action: &'static str,
    key: Option<String>,
    scope: Option<String>,
    uid: Option<u32>,
    user: Option<String>,
    pid: Option<u32>,
    reason: Option<String>,
}

impl Event {
    fn of(e: &AuditEvent) -> Self {
        Self {
            seq: e.seq,
            at: Time::of(&e.at),
            action: e.action.as_str(),
            key: e.key.clone(),
            scope: e.scope.clone(),
            uid: e.uid,
            user: e.user.clone(),
            pid: e.pid,
            reason: e.reason.clone(),
        }
    }
}

pub fn audit(
    ctx: &Ctx,
    key: Option<&BackendKey>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let (events, damaged) = read(ctx, key)?;
    for err in &damaged {
        eprintln!("recovery-store: {}", sanitize(&err.to_string()));
    }
    let code = if damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NEGATIVE)
    };
    if ctx.json {
        json::emit(
            out,
            &Audit {
                events: events.iter().map(Event::of).collect(),
                damaged: damaged
                    .iter()
                    .filter_map(|err| match err {
                        StoreError::CorruptAuditEvent { seq, .. } => Some(Damaged {
                            seq: *seq,
                            error: err.to_string(),
                        }),
                        _ => None,
                    })
                    .collect(),
            },
        )?;
        return Ok(code);
    }
    if events.is_empty() {
        let what = key.map_or(String::new(), |k| format!(" for {k}"));
        writeln!(out, "no audit events{what}")?;
        return Ok(code);
    }
    let header = [
        "SEQ",
        "TIME",
        "ACTION",
        "KEY/SCOPE",
        "USER (UID)",
        "PID",
        "REASON",
    ];
    let rows: Vec<[String; 7]> = events.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(out, "{}", line(r.each_ref().map(String::as_str)))?;
    }
    Ok(code)
}

fn row(e: &AuditEvent) -> [String; 7] {
    let known = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let user = match (&e.user, e.uid) {
        (Some(name), Some(uid)) => format!("{} ({uid})", sanitize(name)),
        (None, Some(uid)) => format!("({uid})"),
        (Some(name), None) => sanitize(name).into_owned(),
        (None, None) => "-".into(),
    };
    [
        e.seq.to_string(),
        rfc3339(&e.at, false),
        e.action.as_str().to_owned(),
        known(
            e.key
                .as_deref()
                .or(e.scope.as_deref())
                .map(|t| sanitize(t).into_owned()),
        ),
        user,
        known(e.pid.map(|p| p.to_string())),
        known(e.reason.as_deref().map(|t| sanitize(t).into_owned())),
    ]
}

/// The events (those about `key`, when given) that decode, oldest first, and the errors naming
/// each that does not, all from one snapshot.
fn read(ctx: &Ctx, key: Option<&BackendKey>) -> anyhow::Result<(Vec<AuditEvent>, Vec<StoreError>)> {
    let store = ctx.open_read()?;
    let key = key.map(ToString::to_string);
    let (mut events, mut damaged) = (Vec::new(), Vec::new());
    store.snapshot(|snap| {
        snap.for_each_audit_event(|event| {
            match event {
                Ok(e) if key.is_none() || e.key == key => events.push(e),
                Ok(_) => {}
                Err(err @ StoreError::CorruptAuditEvent { .. }) => damaged.push(err),
                Err(other) => return Err(other),
            }
            Ok(())
        })
    })?;
    Ok((events, damaged))
}
