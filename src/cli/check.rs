//! `check`: the storage engine's integrity check, the schema, the policy and every entry,
//! each problem reported rather than the first one only.

use std::io::Write;
use std::process::ExitCode;

use recovery_store::{BackendRecoveryPolicy, RecoveryStore, SCHEMA_VERSION};

use super::commands::damaged_text;
use super::sanitize::sanitize;
use super::{Ctx, NEGATIVE, json, render};

pub fn check(ctx: &Ctx, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    // Opening validates the header, the format name and the schema version.
    let mut store = ctx.open_existing()?;
    let (doc, policy) = examine(ctx, &mut store);
    if ctx.json {
        json::emit(out, &doc)?;
    } else {
        writeln!(out, "store:     {}", ctx.shown_path())?;
        writeln!(out, "integrity: {}", doc.integrity)?;
        writeln!(out, "schema:    ok (version {})", doc.schema_version)?;
        match &policy {
            Some(p) => writeln!(out, "policy:    ok ({})", render::policy_text(p))?,
            None => writeln!(out, "policy:    damaged")?,
        }
        writeln!(
            out,
            "entries:   {} ok, {} damaged",
            doc.entries, doc.damaged
        )?;
        for problem in &doc.problems {
            writeln!(out, "problem:   {}", sanitize(problem))?;
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

/// Runs every check, collecting each problem instead of stopping at the first; also returns
/// the policy, when it could be read.
fn examine(ctx: &Ctx, store: &mut RecoveryStore) -> (json::Check, Option<BackendRecoveryPolicy>) {
    let mut problems = Vec::new();
    let integrity = match store.check_integrity() {
        Ok(true) => "ok",
        Ok(false) => {
            problems
                .push("the storage engine's integrity check failed and repaired the file".into());
            "repaired"
        }
        Err(e) => {
            problems.push(e.to_string());
            "failed"
        }
    };
    let policy = store
        .policy()
        .map_err(|e| problems.push(e.to_string()))
        .ok();
    let (good, bad) = store.scan_all().unwrap_or_else(|e| {
        problems.push(e.to_string());
        (Vec::new(), Vec::new())
    });
    for e in good
        .iter()
        .filter(|e| e.total_crashes < u64::from(e.crashes_in_window))
    {
        problems.push(format!(
            "entry {} counts {} in its window but {} in total: reset it with `recovery-store reset`",
            e.key, e.crashes_in_window, e.total_crashes
        ));
    }
    problems.extend(bad.iter().map(damaged_text));
    let doc = json::Check {
        store: ctx.path.to_string_lossy().into_owned(),
        ok: problems.is_empty(),
        integrity,
        schema_version: SCHEMA_VERSION,
        policy: policy.as_ref().map(json::Policy::of),
        entries: good.len(),
        damaged: bad.len(),
        problems,
    };
    (doc, policy)
}
