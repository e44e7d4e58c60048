//! `check`: the storage engine's integrity check, the schema, the policy, every entry, every
//! policy override row and every audit event, each problem reported rather than the first one
//! only, streamed so memory stays flat. A file that cannot be opened is diagnosed (see
//! `salvage`) instead of failing with the error that sent the operator here.
//!
//! A damaged override row is a problem naming its scope text, how many entries it would judge
//! (they get no decision until it is removed), and the `policy unset` that removes it. A
//! damaged audit event is a problem naming its sequence number; it changes no decision.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use recovery_store::{DroppedRows, RecoveryPolicy, RecoveryStore, SCHEMA_VERSION, StoreError};

use super::args::CheckArgs;
use super::render::{self, damaged_text};
use super::salvage::{self, Diagnosis};
use super::sanitize::{sanitize, sanitize_lossy};
use super::{Ctx, NEGATIVE, json};

/// The most problems listed one by one; the rest are counted.
const MAX_PROBLEMS: usize = 100;

pub fn check(ctx: &Ctx, args: &CheckArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if !ctx.exists() {
        return Err(ctx.not_found());
    }
    // Opening validates the header, the format name and the schema version.
    let mut store = match ctx.open_existing() {
        Ok(store) => store,
        Err(err) if matches!(err.downcast_ref(), Some(StoreError::NeedsRecovery { .. })) => {
            anyhow::bail!(
                "{} needs crash recovery after an unclean stop, which writes the file, and this \
                 process cannot write it: run `recovery-store check` as its owner or root, or \
                 on a read-write mount; until then `list`, `status` and `export` read it as it is",
                ctx.shown_path()
            );
        }
        Err(err) => {
            let Some(diagnosis) = err
                .downcast_ref::<StoreError>()
                .and_then(|e| salvage::diagnose(&ctx.path, e))
            else {
                return Err(err);
            };
            return unopenable(ctx, args, &diagnosis, out);
        }
    };
    // Removing the rows that cannot be decoded comes first, so the report shows the result.
    let dropped = if args.drop_damaged {
        Some(
            store
                .drop_damaged_rows(None)
                .with_context(|| format!("cannot drop the damaged rows of {}", ctx.shown_path()))?,
        )
    } else {
        None
    };
    let (mut doc, policy, rows) = examine(ctx, &mut store)?;
    doc.dropped = dropped.as_ref().map(|d| json::Dropped {
        overrides: d.overrides.clone(),
        audit_events: d.audit_events.clone(),
    });
    let saved = match &args.salvage {
        Some(target) => Some(salvage::write(ctx, &store, target)?),
        None => None,
    };
    let mut out = report_to(args, out);
    if ctx.json {
        json::emit(&mut out, &doc)?;
    } else {
        writeln!(out, "store:     {}", ctx.shown_path())?;
        if let Some(dropped) = &dropped {
            write_dropped(&mut out, dropped)?;
        }
        match doc.integrity {
            "not_checked" => writeln!(
                out,
                "integrity: not checked (redb's check needs write access; the rest was checked)"
            )?,
            integrity => writeln!(out, "integrity: {integrity}")?,
        }
        writeln!(out, "schema:    ok (version {})", doc.schema_version)?;
        match &policy {
            Some(p) => writeln!(
                out,
                "policy:    ok ({})",
                render::stored_policy_text_full(p)
            )?,
            None => writeln!(out, "policy:    damaged")?,
        }
        writeln!(
            out,
            "entries:   {} ok, {} damaged",
            doc.entries, doc.damaged
        )?;
        writeln!(
            out,
            "overrides: {} ok, {} damaged",
            rows.overrides[0], rows.overrides[1]
        )?;
        writeln!(
            out,
            "audit:     {} ok, {} damaged",
            rows.audit[0], rows.audit[1]
        )?;
        for problem in &doc.problems {
            writeln!(out, "problem:   {}", sanitize(problem))?;
        }
        if let (Some(n), Some(target)) = (saved, &args.salvage) {
            writeln!(
                out,
                "salvaged: {} written to {}",
                render::entries(n),
                sanitize_lossy(target)
            )?;
        }
        if doc.ok {
            writeln!(out, "no problems found")?;
        } else {
            writeln!(out, "{} problem(s) found", doc.problems.len())?;
        }
    }
    Ok(if doc.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NEGATIVE)
    })
}

/// The report for a file that cannot be opened: what is wrong, and what can be salvaged.
fn unopenable(
    ctx: &Ctx,
    args: &CheckArgs,
    diagnosis: &Diagnosis,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let saved = match &args.salvage {
        Some(target) => Some(salvage::write_from_copy(ctx, target)?),
        None => None,
    };
    let doc = json::Check {
        store: ctx.path.to_string_lossy().into_owned(),
        ok: false,
        integrity: "unreadable",
        schema_version: SCHEMA_VERSION,
        policy: None,
        entries: 0,
        damaged: 0,
        problems: vec![diagnosis.detail.clone()],
        diagnosis: Some(json::Diagnosis {
            problem: diagnosis.problem,
            detail: diagnosis.detail.clone(),
            salvageable: diagnosis.salvageable,
            next_step: diagnosis.next_step.clone(),
        }),
        overrides: None,
        audit: None,
        dropped: None,
    };
    let mut out = report_to(args, out);
    if ctx.json {
        json::emit(&mut out, &doc)?;
    } else {
        writeln!(out, "store:     {}", ctx.shown_path())?;
        writeln!(
            out,
            "problem:   {} ({})",
            diagnosis.problem.replace('_', " "),
            sanitize(&diagnosis.detail)
        )?;
        let salvage = match diagnosis.salvageable {
            Some(n) => format!("{} can still be decoded", render::entries(n)),
            None => "nothing can be decoded".into(),
        };
        writeln!(out, "salvage:   {salvage}")?;
        if let (Some(n), Some(target)) = (saved, &args.salvage) {
            writeln!(
                out,
                "salvaged: {} written to {}",
                render::entries(n),
                sanitize_lossy(target)
            )?;
        }
        writeln!(out, "next:      {}", sanitize(&diagnosis.next_step))?;
    }
    Ok(ExitCode::from(NEGATIVE))
}

/// How many policy override rows and audit events decode (`[ok, damaged]`).
#[derive(Default)]
struct Rows {
    overrides: [usize; 2],
    audit: [usize; 2],
}

/// Runs every check, collecting each problem instead of stopping at the first; also returns
/// the policy, when it could be read, and the counts of schema 2's other rows.
///
/// A store held by another process past the lock timeout is not a problem with the file: that
/// is an error (exit 2), so a busy store never reads as a damaged one.
fn examine(
    ctx: &Ctx,
    store: &mut RecoveryStore,
) -> anyhow::Result<(json::Check, Option<RecoveryPolicy>, Rows)> {
    let mut problems = Vec::new();
    let integrity = match store.check_integrity() {
        Err(busy @ StoreError::Busy { .. }) => return Err(busy.into()),
        // redb's check needs a writable handle; without one the rest is still checked.
        Err(e) if cannot_write(&e) => "not_checked",
        Ok(true) => "ok",
        Ok(false) => {
            problems
                .push("the storage engine's integrity check failed and repaired the file".into());
            "repaired"
        }
        Err(e) => {
            problems.push(problem_text(&e));
            "failed"
        }
    };
    let policy = store
        .recovery_policy()
        .map_err(|e| problems.push(problem_text(&e)))
        .ok();
    // Without a readable default policy (already a problem) the overrides are not examined.
    let overrides = match store.snapshot(|s| s.stored_policies()) {
        Ok(p) => Some(p),
        Err(StoreError::Corrupt { .. }) if policy.is_none() => None,
        Err(e) => {
            problems.push(problem_text(&e));
            None
        }
    };
    // Entries each damaged override row would judge, by its scope text.
    let mut judged_by: BTreeMap<String, usize> = BTreeMap::new();
    // Override problems go before the entries' (there are few rows, and many damaged entries
    // must not push them past the list's bound).
    let overrides_at = problems.len();
    let (mut good, mut bad, mut unlisted) = (0usize, 0usize, 0usize);
    let mut note = |problems: &mut Vec<String>, text: String| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(text);
        } else {
            unlisted += 1;
        }
    };
    let walked = store.for_each_entry("", |entry| {
        match entry {
            Ok(e) => {
                good += 1;
                if let Some(Err(StoreError::CorruptOverride { scope, .. })) =
                    overrides.as_ref().map(|p| p.judge(&e.key))
                {
                    *judged_by.entry(scope).or_default() += 1;
                }
                if e.total_crashes < u64::from(e.crashes_in_window) {
                    note(
                        &mut problems,
                        format!(
                            "entry {} counts {} in its window but {} in total: reset it with \
                             `recovery-store reset {}`",
                            e.key, e.crashes_in_window, e.total_crashes, e.key
                        ),
                    );
                }
            }
            Err(err @ StoreError::CorruptEntry { .. }) => {
                bad += 1;
                note(&mut problems, damaged_text(&err));
            }
            Err(other) => return Err(other),
        }
        Ok(())
    });
    if let Err(e) = walked {
        problems.push(problem_text(&e));
    }
    let mut rows = Rows::default();
    if let Some(overrides) = &overrides {
        rows.overrides = [overrides.overrides().len(), overrides.damaged().len()];
        let texts = overrides.damaged().iter().map(|row| {
            let n = judged_by.get(&row.scope).copied().unwrap_or(0);
            format!(
                "policy override {:?} cannot be decoded ({}) and would judge {}: {}",
                row.scope,
                row.detail,
                render::entries(n),
                row.remedy()
            )
        });
        problems.splice(overrides_at..overrides_at, texts);
    }
    let audited = store.snapshot(|s| {
        s.for_each_audit_event(|event| {
            match event {
                Ok(_) => rows.audit[0] += 1,
                Err(err @ StoreError::CorruptAuditEvent { .. }) => {
                    rows.audit[1] += 1;
                    note(&mut problems, err.to_string());
                }
                Err(other) => return Err(other),
            }
            Ok(())
        })
    });
    if let Err(e) = audited {
        problems.push(problem_text(&e));
    }
    if unlisted > 0 {
        problems.push(format!(
            "{unlisted} more problem(s) not listed: `recovery-store --json list` names every \
             damaged entry, `recovery-store policy` every damaged override and `recovery-store \
             audit` every damaged audit event"
        ));
    }
    let doc = json::Check {
        store: ctx.path.to_string_lossy().into_owned(),
        ok: problems.is_empty(),
        integrity,
        schema_version: SCHEMA_VERSION,
        policy: policy.as_ref().map(json::StoredPolicy::of),
        entries: good,
        damaged: bad,
        problems,
        diagnosis: None,
        overrides: Some(json::RowCount {
            ok: rows.overrides[0],
            damaged: rows.overrides[1],
        }),
        audit: Some(json::RowCount {
            ok: rows.audit[0],
            damaged: rows.audit[1],
        }),
        dropped: None,
    };
    Ok((doc, policy, rows))
}

// This process may read the file but not write it: a read-only mount, or a reader's account.
fn cannot_write(err: &StoreError) -> bool {
    match err {
        StoreError::ReadOnly { .. } => true,
        StoreError::Io { source, .. } => {
            source.kind() == std::io::ErrorKind::PermissionDenied
                || source.raw_os_error() == Some(libc::EROFS)
        }
        _ => false,
    }
}

// A problem as `check` reports it: the library's advice for damage is to run `check`, which is
// this command, so it names the next step instead.
fn problem_text(err: &StoreError) -> String {
    match err {
        StoreError::Corrupt { detail, .. } => format!(
            "the file is damaged ({detail}): save what still decodes with `recovery-store check \
             --salvage FILE`, move the file aside, and `recovery-store import FILE` into a new store"
        ),
        other => other.to_string(),
    }
}

// Where the report goes: stdout, unless the salvaged document itself goes there (`-`).
/// `dropped:` lines naming what `--drop-damaged` removed.
fn write_dropped(out: &mut impl Write, dropped: &DroppedRows) -> std::io::Result<()> {
    if dropped.is_empty() {
        return writeln!(
            out,
            "dropped:   nothing (no damaged override row or audit event)"
        );
    }
    for scope in &dropped.overrides {
        writeln!(
            out,
            "dropped:   damaged policy override {}",
            sanitize(scope)
        )?;
    }
    if !dropped.audit_events.is_empty() {
        let seqs: Vec<String> = dropped
            .audit_events
            .iter()
            .map(ToString::to_string)
            .collect();
        writeln!(out, "dropped:   damaged audit event(s) {}", seqs.join(", "))?;
    }
    Ok(())
}

fn report_to<'a>(args: &CheckArgs, out: &'a mut impl Write) -> Box<dyn Write + 'a> {
    if args
        .salvage
        .as_deref()
        .is_some_and(|p| p.as_os_str() == "-")
    {
        Box::new(std::io::stderr())
    } else {
        Box::new(out)
    }
}
