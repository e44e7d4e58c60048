//! The commands that inspect and change single backends, the policy and the store path;
//! `list`, `check`, `prune`, `run`, `export` and `import` live apart. Text shared by several commands
//! lives in `render` and `view`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::CommandFactory;
use recovery_store::{
    AppliedPolicy, BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, CrashReport,
};

use super::args::{Cli, Command, MetricsArgs};
use super::lookup::{self, Found};
use super::view::{EntryView, State, millis};
use super::{
    Ctx, NEGATIVE, audit, check, json, list, metrics, policy_cmd, prune, render, reset, supervise,
    textfile, transfer,
};

/// Kept for `run`, which imported it from here; the text lives in `render`.
pub use super::render::decision_text;

/// A budget window longer than this needs `policy set --yes`.
const LONG_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// A retry backoff longer than this needs `policy set --yes`.
const LONG_BACKOFF: Duration = Duration::from_secs(3600);

pub fn dispatch(ctx: &Ctx, command: Command, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match command {
        Command::List(args) => list::list(ctx, &args, out),
        Command::Show { key } => show(ctx, &key, out),
        Command::Status { key } => status(ctx, &key, out),
        Command::Reset(args) => reset::reset(ctx, &args, out),
        Command::RecordCrash {
            key,
            exit_code,
            signal,
        } => record_crash(ctx, &key, CrashReport { exit_code, signal }, out),
        Command::RecordSuccess { key } => record_success(ctx, &key, out),
        Command::Prune => prune::prune(ctx, out),
        Command::Policy { action } => super::policy_cmd::policy(ctx, action, out),
        Command::Check(args) => check::check(ctx, &args, out),
        Command::Export => transfer::export(ctx, out),
        Command::Import(args) => transfer::import(ctx, &args, out),
        Command::Path => path(ctx, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "recovery-store", out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => supervise::run(ctx, args, out),
        Command::Metrics(args) => metrics(ctx, &args, out),
        Command::Audit { key } => audit::audit(ctx, key.as_ref(), out),
    }
}

fn metrics(ctx: &Ctx, args: &MetricsArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if ctx.json {
        bail!(
            "metrics has no JSON form: it prints the Prometheus text format; use `list --json` for JSON"
        );
    }
    let store = std::sync::Arc::new(ctx.open_read()?);
    let report = || -> anyhow::Result<metrics::Report> {
        let file_size = std::fs::metadata(&ctx.path)
            .with_context(|| format!("cannot read the size of {}", ctx.path.display()))?
            .len();
        Ok(metrics::Report {
            now: ctx.now(),
            max_series: args.max_series,
            file_size,
        })
    };
    match &args.output {
        Some(path) => textfile::write_atomically(path, |file| {
            metrics::write(std::sync::Arc::clone(&store), report()?, file)
        })?,
        None => metrics::write(store, report()?, out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The entries `key` names, judged now, with the policy that judged the worst of them (of the
/// key itself when nothing matched).
///
/// A match that cannot be judged (a damaged entry, or a damaged override that would judge it)
/// is left in [`Found::unjudged`]; the lookup fails only when no match could be judged (or, with
/// none, when the key itself cannot be).
fn lookup(
    ctx: &Ctx,
    key: &BackendKey,
) -> anyhow::Result<(Found, AppliedPolicy, recovery_store::Timestamp)> {
    let store = ctx.open_read()?;
    let stored = store.snapshot(|s| s.stored_policies())?;
    let now = ctx.now();
    let found = lookup::find(&store, key, now, &stored)
        .with_context(|| format!("cannot read the state of {key}"))?;
    let applied = match found.worst_policy() {
        Some(applied) => applied.clone(),
        // Every match is unjudged: no answer could be true.
        None if !found.unjudged.is_empty() => bail!(unknown(key, &found)),
        None => stored.judge(key)?,
    };
    Ok((found, applied, now))
}

/// Names each unjudged match on stderr, one line each.
fn warn_unjudged(found: &Found) {
    for text in found.unjudged_texts() {
        eprintln!("recovery-store: {}", super::sanitize::sanitize(&text));
    }
}

/// The one error line for a key whose answer an unjudged match could change.
fn unknown(key: &BackendKey, found: &Found) -> String {
    if !found.widened(key) {
        return format!(
            "cannot tell whether {key} may start: {}",
            found.unjudged_texts().join("; ")
        );
    }
    let judged = if found.views.is_empty() {
        String::new()
    } else {
        format!(" ({} judged may start)", render::entries(found.views.len()))
    };
    format!(
        "cannot tell whether {key} may start: {} of its matches cannot be judged{judged}: {}",
        found.unjudged.len(),
        found.unjudged_texts().join("; ")
    )
}

/// The matches that could not be judged, as `--json` names them.
fn unjudged_json(found: &Found) -> Vec<json::Damaged> {
    found
        .unjudged
        .iter()
        .map(|u| json::Damaged {
            key: u.key.clone(),
            error: u.text(),
        })
        .collect()
}

fn show(ctx: &Ctx, key: &BackendKey, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (found, policy, now) = lookup(ctx, key)?;
    warn_unjudged(&found);
    let histories = if found.views.is_empty() {
        Vec::new()
    } else {
        let store = ctx.open_read()?;
        found
            .views
            .iter()
            .map(|v| store.history(&v.entry.key))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot read the crash history of {key}"))?
    };
    let with_history = |v: &EntryView| {
        let i = found.views.iter().position(|w| w.entry.key == v.entry.key);
        json::Entry::with_history(v, i.map_or(&[], |i| histories[i].as_slice()))
    };
    if ctx.json {
        let worst = found.worst();
        json::emit(
            out,
            &json::Show {
                key: key.to_string(),
                now: json::Time::of(&now),
                evaluated_at: json::Time::of(&now),
                state: worst.map_or(State::Healthy, |v| v.state),
                recorded: worst.is_some(),
                policy: json::StoredPolicy::of(&policy.policy),
                policy_scope: policy_cmd::scope_name(&policy),
                entry: worst.map(with_history),
                matches: found.views.iter().map(with_history).collect(),
                similar: found.similar.clone(),
                unjudged: unjudged_json(&found),
            },
        )?;
    } else {
        render::show(out, key, &found, &histories, &now, &policy)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn status(ctx: &Ctx, key: &BackendKey, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (found, applied, now) = lookup(ctx, key)?;
    let worst = found.worst();
    let state = worst.map_or(State::Healthy, |v| v.state);
    // A refusal stands whatever the unjudged matches hold; "may start" would not.
    if state.may_start() && !found.unjudged.is_empty() {
        bail!(unknown(key, &found));
    }
    warn_unjudged(&found);
    if ctx.json {
        json::emit(
            out,
            &json::Status {
                key: key.to_string(),
                now: json::Time::of(&now),
                evaluated_at: json::Time::of(&now),
                state,
                may_start: state.may_start(),
                recorded: worst.is_some(),
                crashes_in_window: worst.map_or(0, EntryView::crashes_in_window),
                total_crashes: worst.map_or(0, |v| v.entry.total_crashes),
                window_remaining_ms: worst.map(|v| millis(v.remaining)),
                retry_after_ms: worst.and_then(EntryView::retry_after).map(millis),
                policy: json::StoredPolicy::of(&applied.policy),
                policy_scope: policy_cmd::scope_name(&applied),
                matches: found.keys(),
                similar: found.similar.clone(),
                unjudged: unjudged_json(&found),
            },
        )?;
    } else {
        render::status(out, key, &found, &applied)?;
    }
    Ok(if state.may_start() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NEGATIVE)
    })
}

fn record_crash(
    ctx: &Ctx,
    key: &BackendKey,
    report: CrashReport,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let store = ctx.open_create()?;
    // Stamped once the store's write lock is held, unless the hidden --now fixes the time.
    let decision = match ctx.now {
        Some(_) => store.record_crash_with(key, ctx.now(), report),
        None => store.record_crash_now_with(key, report),
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
                crashed_at: json::Time::of(&now),
                decision: kind,
                retry_after_ms: millis(retry_after),
                attempt,
                reason,
            },
        )?;
    } else if refused {
        writeln!(
            out,
            "{key}: crash recorded: {}; {}",
            decision_text(&decision),
            render::way_out(key)
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

fn record_success(ctx: &Ctx, key: &BackendKey, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    // A success clears state; a store that does not exist has none, so none is created.
    let store = ctx.open_existing()?;
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
        let similar = lookup::similar(&store, key)?;
        let near = if similar.is_empty() {
            String::new()
        } else {
            format!(" (similar keys with state: {})", similar.join(", "))
        };
        writeln!(
            out,
            "{key}: success recorded: it had no recovery state{near}"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a policy that could never refuse a backend, and asks for `--yes` before one that
/// would hold refused backends for very long: it applies at once to windows already running.
pub(super) fn check_policy(new: &BackendRecoveryPolicy, yes: bool) -> anyhow::Result<()> {
    let shown = |d: Duration| humantime::format_duration(d).to_string();
    if new.retry_backoff >= new.budget_window {
        bail!(
            "the retry backoff ({}) is not shorter than the budget window ({}), so a crash loop \
             could never be refused: choose a backoff shorter than the window, e.g. \
             --retry-backoff 250ms --budget-window 30s",
            shown(new.retry_backoff),
            shown(new.budget_window)
        );
    }
    new.validate()?;
    if yes {
        return Ok(());
    }
    if new.budget_window > LONG_WINDOW {
        bail!(
            "a budget window of {} is over 1 day, and windows already running would be judged by \
             it at once (a refused backend stays refused that long): pass --yes if you mean it",
            shown(new.budget_window)
        );
    }
    if new.retry_backoff > LONG_BACKOFF {
        bail!(
            "a retry backoff of {} is over 1 hour (every first crash waits that long): pass --yes \
             if you mean it",
            shown(new.retry_backoff)
        );
    }
    Ok(())
}

fn path(ctx: &Ctx, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let exists = ctx.exists();
    if ctx.json {
        json::emit(
            out,
            &json::StorePath {
                store: ctx.path.to_string_lossy().into_owned(),
                source: ctx.source,
                exists,
            },
        )?;
    } else {
        writeln!(out, "{}", ctx.shown_path())?;
        let state = if exists {
            "the file exists"
        } else {
            "no file there yet; record-crash, run, import and policy set create it"
        };
        writeln!(out, "chosen by {} ({state})", ctx.source.describe())?;
    }
    Ok(ExitCode::SUCCESS)
}
