//! `reset`: clearing state after a repair. Named keys (a key without its executable hash
//! clears its entries under every hash only with `--all-hashes`), damaged entries by their
//! stored text, the backends refused now (`--refused`, like `systemctl reset-failed`), one
//! service or instance, or everything. Each key named that had no state is listed.
//!
//! `reset --refused` cannot tell whether a backend whose policy override is damaged is refused
//! (that depends on the policy): it leaves such a backend, names it and the override on stderr,
//! and exits 1. Naming the key, or removing the override first, clears it.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use recovery_store::{BackendKey, RecoveryStore, StoreError};

use super::args::ResetArgs;
use super::lookup;
use super::sanitize::sanitize;
use super::view::{EntryView, State, instance_prefix};
use super::{Ctx, json, render};

pub fn reset(ctx: &Ctx, args: &ResetArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if args.all && !args.yes {
        bail!(
            "refusing to reset every entry without --yes ({}): run `recovery-store reset --all --yes` to confirm",
            ctx.shown_path()
        );
    }
    // Nothing to clear in a store that does not exist: never create one.
    let store = ctx.open_existing()?;
    let outcome = if args.refused {
        clear_refused(ctx, &store, args)?
    } else if !args.keys.is_empty() || !args.raw.is_empty() {
        clear_keys(&store, args)?
    } else {
        clear_prefix(&store, args)?
    };
    if ctx.json {
        json::emit(
            out,
            &json::Reset {
                cleared: outcome.cleared.clone(),
                no_state: outcome.no_state.iter().map(|(k, _)| k.clone()).collect(),
            },
        )?;
        return Ok(left_unjudged(&outcome));
    }
    for key in &outcome.cleared {
        writeln!(out, "cleared {}", sanitize(key))?;
    }
    for (key, similar) in &outcome.no_state {
        let near = if similar.is_empty() {
            String::new()
        } else {
            format!(" (similar keys with state: {})", similar.join(", "))
        };
        writeln!(out, "no state for {}{near}", sanitize(key))?;
    }
    if outcome.cleared.is_empty() && outcome.no_state.is_empty() {
        writeln!(out, "nothing to reset: {}", sanitize(&outcome.nothing))?;
    }
    Ok(left_unjudged(&outcome))
}

/// Names on stderr each backend left because its state could not be judged; exit 1 if any.
fn left_unjudged(outcome: &Cleared) -> ExitCode {
    for text in &outcome.unjudged {
        eprintln!("recovery-store: {}", sanitize(text));
    }
    if outcome.unjudged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::NEGATIVE)
    }
}

/// What a reset did.
struct Cleared {
    /// Stored keys cleared.
    cleared: Vec<String>,
    /// Keys named that had no state, each with near keys to suggest.
    no_state: Vec<(String, Vec<String>)>,
    /// What to say when a filter cleared nothing.
    nothing: String,
    /// Backends left because a damaged policy override hides their state, each with why.
    unjudged: Vec<String>,
}

/// `reset KEY… [--raw TEXT…]`: a key without its hash clears its entries under every hash
/// only with `--all-hashes`; otherwise such a key is refused before anything is cleared.
fn clear_keys(store: &RecoveryStore, args: &ResetArgs) -> anyhow::Result<Cleared> {
    if !args.all_hashes {
        for key in args.keys.iter().filter(|k| k.exe_hash.is_empty()) {
            let (hashed, itself_damaged) = hashed_entries(store, key)?;
            if !hashed.is_empty() {
                let itself = if itself_damaged {
                    format!("; {key} itself is stored too, damaged")
                } else {
                    String::new()
                };
                bail!(
                    "{key} has no executable hash and matches {} with one ({}){itself}: name one, \
                     or pass --all-hashes to clear them all (`recovery-store show {key}` shows them)",
                    render::entries(hashed.len()),
                    hashed.join(", ")
                );
            }
        }
    }
    let exact: BTreeSet<String> = args.keys.iter().map(|k| k.to_string()).collect();
    let raw: BTreeSet<&str> = args.raw.iter().map(String::as_str).collect();
    let widened: Vec<&BackendKey> = args
        .keys
        .iter()
        .filter(|k| args.all_hashes && k.exe_hash.is_empty())
        .collect();
    let reason = args.reason.as_deref();
    let cleared = if raw.is_empty() && widened.is_empty() {
        // Exact keys only: each is a one-key reset, audited with its key.
        let mut cleared = Vec::new();
        for key in args
            .keys
            .iter()
            .map(|k| (k.to_string(), k))
            .collect::<std::collections::BTreeMap<_, _>>()
        {
            if store.reset_with_reason(key.1, reason)? {
                cleared.push(key.0);
            }
        }
        cleared
    } else {
        let named: Vec<&str> = exact
            .iter()
            .map(String::as_str)
            .chain(raw.iter().copied())
            .collect();
        let scope = format!("keys:{}", named.join(","));
        store.reset_where_with_reason("", &scope, reason, |text| {
            // A raw key matches as stored, or as `list` and `check` show it (sanitized).
            exact.contains(text)
                || raw.contains(text)
                || raw.contains(sanitize(text).as_ref())
                || widened.iter().any(|w| lookup::names_stored(w, text))
        })?
    };
    let mut no_state = Vec::new();
    for key in &args.keys {
        let text = key.to_string();
        let widen = args.all_hashes && key.exe_hash.is_empty();
        let hit = cleared
            .iter()
            .any(|c| *c == text || (widen && lookup::names_stored(key, c)));
        if !hit {
            no_state.push((key.to_string(), lookup::similar(store, key)?));
        }
    }
    for text in &args.raw {
        let hit = cleared
            .iter()
            .any(|c| c == text || sanitize(c) == text.as_str());
        if !hit {
            no_state.push((text.clone(), Vec::new()));
        }
    }
    Ok(Cleared {
        cleared,
        no_state,
        nothing: String::new(),
        unjudged: Vec::new(),
    })
}

/// Stored keys of `key`'s instance, service and version that carry an executable hash, damaged
/// entries included (by their stored text).
fn hashed_entries(store: &RecoveryStore, key: &BackendKey) -> anyhow::Result<(Vec<String>, bool)> {
    let mut hashed = Vec::new();
    let mut itself_damaged = false;
    let plain = key.to_string();
    store.for_each_entry(&plain, |entry| {
        match entry {
            Ok(e) if lookup::same_build(&e.key, key) && !e.key.exe_hash.is_empty() => {
                hashed.push(e.key.to_string());
            }
            Err(StoreError::CorruptEntry { key: raw, .. })
                if raw != plain && lookup::names_stored(key, &raw) =>
            {
                hashed.push(format!("{} (damaged)", sanitize(&raw)));
            }
            Err(StoreError::CorruptEntry { key: raw, .. }) if raw == plain => itself_damaged = true,
            Ok(_) | Err(StoreError::CorruptEntry { .. }) => {}
            Err(other) => return Err(other),
        }
        Ok(())
    })?;
    Ok((hashed, itself_damaged))
}

/// `reset --refused [--service S] [--instance I]`: only backends refused now, like
/// `systemctl reset-failed`; more than one needs `--yes`.
fn clear_refused(ctx: &Ctx, store: &RecoveryStore, args: &ResetArgs) -> anyhow::Result<Cleared> {
    let prefix = instance_prefix(args.instance.as_ref());
    let policies = store.snapshot(|s| s.stored_policies())?;
    let now = ctx.now();
    let service = args.service.as_deref();
    let mut refused = BTreeSet::new();
    let mut unjudged = Vec::new();
    store.for_each_entry(&prefix, |entry| {
        match entry {
            Ok(e) if service.is_none_or(|s| e.key.service_name == s) => {
                match policies.judge(&e.key) {
                    Ok(applied) => {
                        let key = e.key.to_string();
                        if EntryView::under(e, now, &applied.policy).state == State::Refused {
                            refused.insert(key);
                        }
                    }
                    Err(err) => unjudged.push(format!(
                        "left {}: whether it is refused depends on its policy: {err}; or clear \
                         it by name with `recovery-store reset {}`",
                        e.key, e.key
                    )),
                }
            }
            Ok(_) | Err(StoreError::CorruptEntry { .. }) => {}
            Err(other) => return Err(other),
        }
        Ok(())
    })?;
    if refused.len() > 1 && !args.yes {
        let named: Vec<&str> = refused.iter().map(String::as_str).take(5).collect();
        let more = if refused.len() > named.len() {
            ", …"
        } else {
            ""
        };
        bail!(
            "{} backends are refused now ({}{more}): pass --yes to clear them all, or name one \
             with `recovery-store reset KEY`",
            refused.len(),
            named.join(", ")
        );
    }
    let scope = scope_of("refused", args);
    let cleared =
        store.reset_where_with_reason(&prefix, &scope, args.reason.as_deref(), |text| {
            refused.contains(text)
        })?;
    Ok(Cleared {
        cleared,
        no_state: Vec::new(),
        nothing: "no backend is refused now".into(),
        unjudged,
    })
}

/// `reset --all`, `reset --service S [--instance I]`, `reset --instance I`.
fn clear_prefix(store: &RecoveryStore, args: &ResetArgs) -> anyhow::Result<Cleared> {
    if args.all {
        return Ok(Cleared {
            cleared: store.reset_prefix_with_reason("", args.reason.as_deref())?,
            no_state: Vec::new(),
            nothing: "the store is empty".into(),
            unjudged: Vec::new(),
        });
    }
    let prefix = instance_prefix(args.instance.as_ref());
    let service = args.service.as_deref();
    let scope = scope_of("", args);
    let cleared =
        store.reset_where_with_reason(&prefix, &scope, args.reason.as_deref(), |text| {
            service.is_none_or(|s| {
                text.parse::<BackendKey>()
                    .is_ok_and(|k| k.service_name == s)
            })
        })?;
    let nothing = match (service, &args.instance) {
        (Some(s), Some(i)) => format!("no entry for service {s} under {i}"),
        (Some(s), None) => format!("no entry for service {s}"),
        (None, Some(i)) => format!("no entry under {i}"),
        (None, None) => "no entry".into(),
    };
    Ok(Cleared {
        cleared,
        no_state: Vec::new(),
        nothing,
        unjudged: Vec::new(),
    })
}

/// The scope an audit event names for a reset by filter: `refused`, `service:S`,
/// `instance:I`, joined by `,` (e.g. `refused,service:zccache`).
fn scope_of(first: &str, args: &ResetArgs) -> String {
    let service = args.service.as_ref().map(|s| format!("service:{s}"));
    let instance = args.instance.as_ref().map(|i| format!("instance:{i}"));
    [
        Some(first.to_owned()).filter(|f| !f.is_empty()),
        service,
        instance,
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(",")
}
