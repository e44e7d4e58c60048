//! `prune`: drops ended windows, and says which entries it left because a damaged policy
//! override would judge them (whether their window has ended depends on the policy that row
//! held). It exits 1 only when it actually left one: a damaged row that judges no stored key
//! (a scope that names no key, or a service row every key of which has its own override)
//! changes nothing.

use std::io::Write;
use std::process::ExitCode;

use recovery_store::{RecoveryStore, StoreError};

use super::sanitize::sanitize;
use super::{Ctx, NEGATIVE, json, render};

/// The keys named on stderr for each damaged row that made `prune` leave entries.
const KEYS_SHOWN: usize = 3;

/// The entries one damaged override row would judge.
struct LeftBy {
    /// The row's error: its scope and the command that repairs it.
    error: StoreError,
    /// How many entries it judges.
    count: usize,
    /// The first [`KEYS_SHOWN`] of them, in key order.
    keys: Vec<String>,
}

/// The entries a damaged override would judge, by row, read from one snapshot. The library's
/// `prune` leaves them without counting them, so they are read back after it.
fn left(store: &RecoveryStore) -> Result<Vec<LeftBy>, StoreError> {
    store.snapshot(|s| {
        let policies = s.stored_policies()?;
        let mut rows: Vec<LeftBy> = Vec::new();
        if policies.damaged().is_empty() {
            return Ok(rows);
        }
        s.for_each_entry("", |entry| {
            // A damaged entry is `check`'s and `reset --raw`'s, as before.
            let Ok(e) = entry else { return Ok(()) };
            let Err(error) = policies.judge(&e.key) else {
                return Ok(());
            };
            let i = match rows.iter().position(|r| same_row(&r.error, &error)) {
                Some(i) => i,
                None => {
                    rows.push(LeftBy {
                        error,
                        count: 0,
                        keys: Vec::new(),
                    });
                    rows.len() - 1
                }
            };
            let row = &mut rows[i];
            row.count += 1;
            if row.keys.len() < KEYS_SHOWN {
                row.keys.push(e.key.to_string());
            }
            Ok(())
        })?;
        Ok(rows)
    })
}

fn same_row(a: &StoreError, b: &StoreError) -> bool {
    match (a, b) {
        (
            StoreError::CorruptOverride { scope: a, .. },
            StoreError::CorruptOverride { scope: b, .. },
        ) => a == b,
        _ => a.to_string() == b.to_string(),
    }
}

pub fn prune(ctx: &Ctx, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_existing()?;
    let now = ctx.now();
    let pruned = store.prune(now)?;
    let left = left(&store)?;
    let total: usize = left.iter().map(|r| r.count).sum();
    if ctx.json {
        json::emit(
            out,
            &json::Prune {
                now: json::Time::of(&now),
                evaluated_at: json::Time::of(&now),
                pruned,
                left_unjudged: total,
            },
        )?;
    } else {
        let noun = if pruned == 1 { "entry" } else { "entries" };
        writeln!(out, "pruned {pruned} {noun} whose window had ended")?;
    }
    for row in &left {
        let more = if row.count > row.keys.len() {
            ", …"
        } else {
            ""
        };
        eprintln!(
            "recovery-store: left {} a damaged policy override would judge ({}{more}): {}",
            render::entries(row.count),
            row.keys.join(", "),
            sanitize(&row.error.to_string())
        );
    }
    Ok(if total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NEGATIVE)
    })
}
