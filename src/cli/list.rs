//! `list`: streamed from the store, so memory stays flat however many entries it holds.
//!
//! The table takes two or more walks of the store: one to size the columns and count the rows
//! of each state, then one per state shown (refused first by default), or one in key order.
//! Each walk reads its own snapshot, so an entry that changes state between walks may show
//! twice or not at all; `--sort key` and `--json` take one walk (JSON a second one for damaged
//! entries). Only `--sort last-crash` holds the matching rows in memory, to sort them.

use std::cell::RefCell;
use std::io::{self, Write};
use std::process::ExitCode;

use anstream::{AutoStream, ColorChoice};
use recovery_store::{
    BackendRecoveryPolicy, BrokerInstanceKey, RecoveryStore, StoreError, Timestamp,
};

use super::args::{ListArgs, OutputArg, SortArg, StateArg};
use super::render::{self, LIST_HEADERS};
use super::sanitize::sanitize;
use super::view::{EntryView, State};
use super::{Ctx, json};

/// The ANSI colour of refused rows on a terminal.
const REFUSED_COLOR: &str = "1;31";

/// The entries `list` shows: one instance's, one service's, one state's.
struct Filter<'a> {
    prefix: String,
    service: Option<&'a str>,
    state: Option<State>,
    now: Timestamp,
    policy: BackendRecoveryPolicy,
}

impl Filter<'_> {
    /// Streams the matching entries to `visit`, damaged ones to `damaged` (those a filter rules
    /// out by key text excepted); `visit` returns false to stop.
    fn walk(
        &self,
        store: &RecoveryStore,
        mut visit: impl FnMut(EntryView) -> bool,
        mut damaged: impl FnMut(&StoreError) -> bool,
    ) -> Result<(), StoreError> {
        store.for_each_entry(&self.prefix, |entry| {
            let go_on = match entry {
                Ok(e) => {
                    if self.service.is_some_and(|s| e.key.service_name != s) {
                        return Ok(());
                    }
                    let view = EntryView::new(e, self.now, &self.policy);
                    if self.state.is_some_and(|s| s != view.state) {
                        return Ok(());
                    }
                    visit(view)
                }
                Err(err @ StoreError::CorruptEntry { .. }) => {
                    if !self.damaged_shown(&err) {
                        return Ok(());
                    }
                    damaged(&err)
                }
                Err(other) => return Err(other),
            };
            if go_on { Ok(()) } else { Err(json::stop()) }
        })
    }

    /// Damaged entries are reported (never hidden) unless a filter rules them out by key text;
    /// a state filter rules them all out, as their state is unknown.
    fn damaged_shown(&self, err: &StoreError) -> bool {
        let raw = match err {
            StoreError::CorruptEntry { key, .. } => key.as_str(),
            _ => "",
        };
        self.state.is_none() && self.service.is_none_or(|s| raw.contains(&format!("/{s}@")))
    }
}

pub fn list(ctx: &Ctx, args: &ListArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_read()?;
    let filter = Filter {
        prefix: instance_prefix(args.instance.as_ref()),
        service: args.service.as_deref(),
        state: args.state_filter().map(state_of),
        now: ctx.now(),
        policy: store.policy()?,
    };
    let sort = args.sort.unwrap_or(if ctx.json {
        SortArg::Key
    } else {
        SortArg::State
    });
    if ctx.json {
        json_list(ctx, &store, &filter, sort, out)?;
    } else if args.quiet {
        keys_only(&store, &filter, sort, out)?;
    } else {
        table(
            ctx,
            &store,
            &filter,
            sort,
            args.output == OutputArg::Wide,
            out,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn state_of(arg: StateArg) -> State {
    match arg {
        StateArg::Healthy => State::Healthy,
        StateArg::Recovering => State::Recovering,
        StateArg::Refused => State::Refused,
    }
}

/// The key-text prefix of one broker instance's entries (`""` for every instance).
pub fn instance_prefix(instance: Option<&BrokerInstanceKey>) -> String {
    instance.map(|i| format!("{i}/")).unwrap_or_default()
}

/// The states in the order `--sort state` shows them.
const WORST_FIRST: [State; 3] = [State::Refused, State::Recovering, State::Healthy];

/// Runs `emit` over the matching entries in `sort` order. `counts` (per state, as from a
/// sizing walk) lets the state order skip walks that would find nothing.
fn in_order(
    store: &RecoveryStore,
    filter: &Filter<'_>,
    sort: SortArg,
    counts: Option<[usize; 3]>,
    mut emit: impl FnMut(&EntryView) -> io::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = None;
    let mut visit = |v: EntryView| match emit(&v) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    };
    match sort {
        SortArg::Key => filter.walk(store, &mut visit, |_| true),
        SortArg::State => {
            let mut result = Ok(());
            for state in WORST_FIRST {
                if counts.is_some_and(|c| c[usize::from(state.severity())] == 0)
                    || filter.state.is_some_and(|s| s != state)
                {
                    continue;
                }
                let one = Filter {
                    state: Some(state),
                    prefix: filter.prefix.clone(),
                    ..*filter
                };
                result = one.walk(store, &mut visit, |_| true);
                if result.is_err() {
                    break;
                }
            }
            result
        }
        SortArg::LastCrash => {
            let mut rows = Vec::new();
            let walked = filter.walk(
                store,
                |v| {
                    rows.push(v);
                    true
                },
                |_| true,
            );
            rows.sort_by(|a, b| {
                b.entry
                    .last_crash
                    .unix_nanos()
                    .cmp(&a.entry.last_crash.unix_nanos())
                    .then_with(|| a.entry.key.cmp(&b.entry.key))
            });
            walked.map(|()| {
                rows.into_iter().all(&mut visit);
            })
        }
    }
    .or_else(|e| if failed.is_some() { Ok(()) } else { Err(e) })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn keys_only(
    store: &RecoveryStore,
    filter: &Filter<'_>,
    sort: SortArg,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(out);
    in_order(store, filter, sort, None, |v| {
        writeln!(out, "{}", v.entry.key)
    })?;
    out.flush()?;
    Ok(())
}

fn table(
    ctx: &Ctx,
    store: &RecoveryStore,
    filter: &Filter<'_>,
    sort: SortArg,
    wide: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Sizing walk: column widths, rows per state, and damaged entries reported once.
    let mut widths = render::widths(&LIST_HEADERS);
    let mut counts = [0usize; 3];
    filter.walk(
        store,
        |v| {
            render::fit(&mut widths, &render::list_row(&v, &filter.now, wide));
            counts[usize::from(v.state.severity())] += 1;
            true
        },
        |err| {
            eprintln!("recovery-store: {}", sanitize(&render::damaged_text(err)));
            true
        },
    )?;
    if counts.iter().sum::<usize>() == 0 {
        let filtered = !filter.prefix.is_empty() || filter.service.is_some();
        if filtered || filter.state.is_some() {
            writeln!(out, "no backend matches")?;
        } else {
            writeln!(out, "no backend has recovery state in {}", ctx.shown_path())?;
        }
        return Ok(());
    }
    let color = AutoStream::<io::Stdout>::choice(&io::stdout()) != ColorChoice::Never;
    let mut out = io::BufWriter::new(out);
    let header = LIST_HEADERS.map(str::to_owned);
    render::row(&mut out, &widths, &header, None)?;
    in_order(store, filter, sort, Some(counts), |v| {
        let paint = (color && v.state == State::Refused).then_some(REFUSED_COLOR);
        render::row(
            &mut out,
            &widths,
            &render::list_row(v, &filter.now, wide),
            paint,
        )
    })?;
    out.flush()?;
    Ok(())
}

fn json_list(
    ctx: &Ctx,
    store: &RecoveryStore,
    filter: &Filter<'_>,
    sort: SortArg,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let failed = RefCell::new(None);
    let doc = json::List {
        store: ctx.path.to_string_lossy().into_owned(),
        now: json::Time::of(&filter.now),
        evaluated_at: json::Time::of(&filter.now),
        entries: json::Streamed::new(&failed, |visit| {
            in_order(store, filter, sort, None, |v| {
                if visit(json::Entry::of(v)) {
                    Ok(())
                } else {
                    Err(io::Error::other("stopped"))
                }
            })
            .or_else(|e| match e.downcast::<StoreError>() {
                Ok(store_error) => Err(store_error),
                // The visitor stopped: its own error is reported.
                Err(_) => Ok(()),
            })
        }),
        damaged: json::Streamed::new(&failed, |visit| {
            filter.walk(
                store,
                |_| true,
                |err| {
                    visit(json::Damaged {
                        key: damaged_key(err),
                        error: render::damaged_text(err),
                    })
                },
            )
        }),
    };
    json::emit_streamed(out, &doc, &failed)
}

fn damaged_key(err: &StoreError) -> String {
    match err {
        StoreError::CorruptEntry { key, .. } => key.clone(),
        _ => String::new(),
    }
}
