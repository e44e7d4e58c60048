//! The commands that inspect and change the store; `check`, `run`, `export` and `import` live
//! apart.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::CommandFactory;
use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BrokerInstanceKey, RecoveryStore,
    StoreError, Timestamp,
};

use super::args::{Cli, Command, ListArgs, PolicyAction, ResetArgs};
use super::sanitize::{sanitize, sanitize_lossy};
use super::view::{EntryView, State, millis, span};
use super::{Ctx, NEGATIVE, check, json, render, supervise, transfer};

pub fn dispatch(ctx: &Ctx, command: Command, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match command {
        Command::List(args) => list(ctx, &args, out),
        Command::Show { key } => show(ctx, &key, out),
        Command::Status { key } => status(ctx, &key, out),
        Command::Reset(args) => reset(ctx, &args, out),
        Command::RecordCrash { key } => record_crash(ctx, &key, out),
        Command::RecordSuccess { key } => record_success(ctx, &key, out),
        Command::Prune => prune(ctx, out),
        Command::Policy { action } => policy(ctx, action, out),
        Command::Check => check::check(ctx, out),
        Command::Export => transfer::export(ctx, out),
        Command::Import { file } => transfer::import(ctx, &file, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "recovery-store", out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => supervise::run(ctx, args, out),
    }
}

fn list(ctx: &Ctx, args: &ListArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_read()?;
    let policy = store.policy()?;
    let now = ctx.now();
    let prefix = instance_prefix(args.instance.as_ref());
    let service_ok = |key: &BackendKey| {
        args.service
            .as_deref()
            .is_none_or(|s| key.service_name == s)
    };
    let (good, bad) = store.scan_all()?;
    let views: Vec<EntryView> = good
        .into_iter()
        .filter(|e| e.key.to_string().starts_with(&prefix) && service_ok(&e.key))
        .map(|e| EntryView::new(e, now, &policy))
        .filter(|v| !args.refused || v.state == State::Refused)
        .collect();
    let damaged = damaged_matching(&bad, args, &prefix);
    if ctx.json {
        json::emit(
            out,
            &json::List {
                store: ctx.path.to_string_lossy().into_owned(),
                now: json::Time::of(&now),
                entries: views.iter().map(json::Entry::of).collect(),
                damaged,
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    for d in &damaged {
        eprintln!("recovery-store: {}", sanitize(&d.error));
    }
    if views.is_empty() {
        let filtered = args.instance.is_some() || args.service.is_some() || args.refused;
        if filtered {
            writeln!(out, "no backend matches")?;
        } else {
            writeln!(out, "no backend has recovery state in {}", ctx.shown_path())?;
        }
    } else {
        render::list(out, &views, &now)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Damaged entries are reported (never hidden) unless a filter rules them out by key text.
fn damaged_matching(bad: &[StoreError], args: &ListArgs, prefix: &str) -> Vec<json::Damaged> {
    if args.refused {
        return Vec::new();
    }
    bad.iter()
        .filter_map(|err| {
            let raw = match err {
                StoreError::CorruptEntry { key, .. } => key.clone(),
                _ => String::new(),
            };
            let service_hit = args
                .service
                .as_deref()
                .is_none_or(|s| raw.contains(&format!("/{s}@")));
            (raw.starts_with(prefix) && service_hit).then(|| json::Damaged {
                key: raw,
                error: damaged_text(err),
            })
        })
        .collect()
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
                 `recovery-store reset --raw '{}'`",
                sanitize_lossy(path),
                shown.replace('\'', r"'\''")
            )
        }
        other => other.to_string(),
    }
}

/// The key-text prefix of one broker instance's entries (`""` for every instance).
fn instance_prefix(instance: Option<&BrokerInstanceKey>) -> String {
    instance.map(|i| format!("{i}/")).unwrap_or_default()
}

/// The entry for `key` judged now, plus the policy it was judged by.
fn lookup(
    ctx: &Ctx,
    key: &BackendKey,
) -> anyhow::Result<(Option<EntryView>, BackendRecoveryPolicy, Timestamp)> {
    let store = ctx.open_read()?;
    let policy = store.policy()?;
    let now = ctx.now();
    let entry = store
        .get(key)
        .with_context(|| format!("cannot read the state of {key}"))?;
    Ok((entry.map(|e| EntryView::new(e, now, &policy)), policy, now))
}

fn show(ctx: &Ctx, key: &BackendKey, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (view, policy, now) = lookup(ctx, key)?;
    if ctx.json {
        json::emit(
            out,
            &json::Show {
                key: key.to_string(),
                now: json::Time::of(&now),
                state: view.as_ref().map_or(State::Healthy, |v| v.state),
                policy: json::Policy::of(&policy),
                entry: view.as_ref().map(json::Entry::of),
            },
        )?;
    } else {
        render::show(out, key, view.as_ref(), &now, &policy)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn status(ctx: &Ctx, key: &BackendKey, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (view, _, now) = lookup(ctx, key)?;
    let state = view.as_ref().map_or(State::Healthy, |v| v.state);
    if ctx.json {
        let live = view.as_ref().filter(|v| v.state != State::Healthy);
        json::emit(
            out,
            &json::Status {
                key: key.to_string(),
                now: json::Time::of(&now),
                state,
                may_start: state.may_start(),
                crashes_in_window: live.map_or(0, |v| v.entry.crashes_in_window),
                window_remaining_ms: live.map(|v| millis(v.remaining)),
                retry_after_ms: view.as_ref().and_then(|v| v.retry_after()).map(millis),
            },
        )?;
    } else {
        render::status(out, key, view.as_ref())?;
    }
    Ok(if state.may_start() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NEGATIVE)
    })
}

fn reset(ctx: &Ctx, args: &ResetArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if args.all && !args.yes {
        bail!(
            "refusing to reset every entry without --yes ({}): run `recovery-store reset --all --yes` to confirm",
            ctx.shown_path()
        );
    }
    let store = ctx.open_write()?;
    let (cleared, what) = clear(&store, args)?;
    if ctx.json {
        json::emit(out, &json::Reset { cleared })?;
    } else if cleared.is_empty() {
        writeln!(out, "nothing to reset: {}", sanitize(&what))?;
    } else {
        for key in &cleared {
            writeln!(out, "cleared {}", sanitize(key))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Clears what `args` names; returns the stored keys cleared, and what to say if none were.
fn clear(store: &RecoveryStore, args: &ResetArgs) -> anyhow::Result<(Vec<String>, String)> {
    if args.all {
        return Ok((store.reset_prefix("")?, "the store is empty".to_owned()));
    }
    if !args.keys.is_empty() || !args.raw.is_empty() {
        let mut wanted: BTreeSet<String> = args.keys.iter().map(|k| k.to_string()).collect();
        wanted.extend(args.raw.iter().cloned());
        // A raw key matches as stored, or as `list` and `check` show it (sanitized).
        let cleared = store.reset_where("", |text| {
            wanted.contains(text) || wanted.contains(sanitize(text).as_ref())
        })?;
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        return Ok((cleared, format!("no state for {}", names.join(", "))));
    }
    let prefix = instance_prefix(args.instance.as_ref());
    let service = args.service.as_deref();
    let cleared = store.reset_where(&prefix, |text| {
        service.is_none_or(|s| {
            text.parse::<BackendKey>()
                .is_ok_and(|k| k.service_name == s)
        })
    })?;
    let what = match (service, &args.instance) {
        (Some(s), Some(i)) => format!("no entry for service {s} under {i}"),
        (Some(s), None) => format!("no entry for service {s}"),
        (None, Some(i)) => format!("no entry under {i}"),
        (None, None) => "no entry".into(),
    };
    Ok((cleared, what))
}

fn record_crash(ctx: &Ctx, key: &BackendKey, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_write()?;
    // Stamped once the store's write lock is held, unless the hidden --now fixes the time.
    let decision = match ctx.now {
        Some(_) => store.record_crash(key, ctx.now()),
        None => store.record_crash_now(key),
    }
    .with_context(|| format!("cannot record a crash of {key}"))?;
    let now = ctx.now();
    let refused = matches!(decision, BackendRecoveryDecision::Refuse { .. });
    if ctx.json {
        let (kind, retry_after, attempt, reason) = match decision {
            BackendRecoveryDecision::Retry {
                retry_after,
                attempt,
            } => (json::Decision::Retry, retry_after, Some(attempt), None),
            BackendRecoveryDecision::Refuse { retry_after, .. } => (
                json::Decision::Refuse,
                retry_after,
                None,
                Some("backend_unavailable"),
            ),
        };
        json::emit(
            out,
            &json::RecordCrash {
                key: key.to_string(),
                at: json::Time::of(&now),
                decision: kind,
                retry_after_ms: millis(retry_after),
                attempt,
                reason,
            },
        )?;
    } else {
        writeln!(out, "{key}: crash recorded: {}", decision_text(&decision))?;
    }
    Ok(if refused {
        ExitCode::from(NEGATIVE)
    } else {
        ExitCode::SUCCESS
    })
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

fn record_success(ctx: &Ctx, key: &BackendKey, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_write()?;
    let cleared = store
        .record_success(key)
        .with_context(|| format!("cannot record a success of {key}"))?;
    if ctx.json {
        json::emit(
            out,
            &json::RecordSuccess {
                key: key.to_string(),
                cleared,
            },
        )?;
    } else if cleared {
        writeln!(
            out,
            "{key}: success recorded: its recovery state was cleared"
        )?;
    } else {
        writeln!(out, "{key}: success recorded: it had no recovery state")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(ctx: &Ctx, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_write()?;
    let now = ctx.now();
    let pruned = store.prune(now)?;
    if ctx.json {
        json::emit(
            out,
            &json::Prune {
                now: json::Time::of(&now),
                pruned,
            },
        )?;
    } else {
        let noun = if pruned == 1 { "entry" } else { "entries" };
        writeln!(out, "pruned {pruned} {noun} whose window had ended")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn policy(
    ctx: &Ctx,
    action: Option<PolicyAction>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let policy = match action {
        None => ctx.open_read()?.policy()?,
        Some(PolicyAction::Set {
            retry_backoff,
            budget_window,
        }) => {
            let store = ctx.open_write()?;
            let old = store.policy()?;
            let new = BackendRecoveryPolicy::new(
                retry_backoff.unwrap_or(old.retry_backoff),
                budget_window.unwrap_or(old.budget_window),
            );
            store
                .set_policy(new)
                .with_context(|| format!("cannot set the policy of {}", ctx.shown_path()))?;
            new
        }
    };
    if ctx.json {
        json::emit(out, &json::Policy::of(&policy))?;
    } else {
        render::policy(out, &policy)?;
    }
    Ok(ExitCode::SUCCESS)
}
