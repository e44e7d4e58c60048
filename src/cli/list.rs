//! `list`: streamed from the store, so memory stays flat however many entries it holds.
//!
//! The table takes two walks of the store: one to size the columns, count the rows of each
//! state and keep the refused and recovering rows (usually few; up to [`BUFFERED_ROWS`]), then
//! one that prints the rest (the healthy rows by default, refused first; every row with
//! `--sort key`). Past that many unhealthy rows, each state gets a walk of its own. Each walk
//! reads its own snapshot, so an entry that changes state between walks may show twice or not
//! at all. `--json` takes one walk in key order (and one more for damaged entries). Only
//! `--sort last-crash` holds every matching row in memory, to sort them.
//!
//! An entry whose policy override cannot be decoded (its key's, or its service's when the key
//! has none) is reported as a damaged entry is, naming the override and the `policy unset`
//! that removes it: its state depends on that policy, so it is never shown as judged by
//! another one. Every other entry is listed as usual.

use std::cell::RefCell;
use std::io::{self, Write};
use std::process::ExitCode;

use anstream::{AutoStream, ColorChoice};
use recovery_store::{RecoveryStore, StoreError};

use super::args::{ListArgs, OutputArg, SortArg, StateArg};
use super::render::{self, LIST_HEADERS};
use super::view::{EntryView, State, instance_prefix};
use super::{Ctx, json};

mod walk;

use walk::{Damaged, Filter, report};

/// The ANSI colour of refused rows on a terminal.
const REFUSED_COLOR: &str = "1;31";

pub fn list(ctx: &Ctx, args: &ListArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_read()?;
    let filter = Filter {
        prefix: instance_prefix(args.instance.as_ref()),
        service: args.service.as_deref(),
        state: args.state_filter().map(state_of),
        now: ctx.now(),
        policies: store.snapshot(|s| s.stored_policies())?,
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

/// The states in the order `--sort state` shows them.
const WORST_FIRST: [State; 3] = [State::Refused, State::Recovering, State::Healthy];

/// The most refused and recovering rows the first walk keeps to print from memory; beyond
/// this, each state gets a walk of its own.
const BUFFERED_ROWS: usize = 4096;

/// What a first walk learned: rows per state, and the refused and recovering rows themselves
/// when they are few (they usually are), so `--sort state` takes two walks instead of four.
struct Plan {
    counts: [usize; 3],
    unhealthy: Option<Vec<EntryView>>,
}

impl Plan {
    fn total(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// The first walk: counts, the few unhealthy rows, and `size` for every row (column widths).
fn plan(
    store: &RecoveryStore,
    filter: &Filter<'_>,
    mut size: impl FnMut(&EntryView),
    damaged: impl FnMut(&Damaged) -> bool,
) -> Result<Plan, StoreError> {
    let mut counts = [0usize; 3];
    let mut unhealthy = Some(Vec::new());
    filter.walk(
        store,
        |v| {
            size(&v);
            counts[usize::from(v.state.severity())] += 1;
            if v.state != State::Healthy {
                match &mut unhealthy {
                    Some(rows) if rows.len() < BUFFERED_ROWS => rows.push(v),
                    _ => unhealthy = None,
                }
            }
            true
        },
        damaged,
    )?;
    Ok(Plan { counts, unhealthy })
}

/// Runs `emit` over the matching entries in `sort` order; `plan` is the first walk's, when
/// one was taken (`--sort state` takes one if not).
fn in_order(
    store: &RecoveryStore,
    filter: &Filter<'_>,
    sort: SortArg,
    plan: Option<Plan>,
    mut emit: impl FnMut(&EntryView) -> io::Result<()>,
    mut damaged: impl FnMut(&Damaged) -> bool,
) -> anyhow::Result<()> {
    let mut failed = None;
    let mut visit = |v: &EntryView| match emit(v) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    };
    let walked = match sort {
        SortArg::Key => filter.walk(store, |v| visit(&v), damaged),
        SortArg::State => {
            let plan = match plan {
                Some(plan) => plan,
                None => self::plan(store, filter, |_| {}, damaged)?,
            };
            by_state(store, filter, plan, &mut visit)
        }
        SortArg::LastCrash => {
            let mut rows = Vec::new();
            let walked = filter.walk(
                store,
                |v| {
                    rows.push(v);
                    true
                },
                &mut damaged,
            );
            rows.sort_by(|a, b| {
                b.entry
                    .last_crash
                    .unix_nanos()
                    .cmp(&a.entry.last_crash.unix_nanos())
                    .then_with(|| a.entry.key.cmp(&b.entry.key))
            });
            walked.map(|()| {
                rows.iter().all(&mut visit);
            })
        }
    };
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(walked?)
}

/// Refused, then recovering, then healthy rows: the first two from the plan's memory when it
/// kept them, else one walk per state; healthy rows always from a walk of their own.
fn by_state(
    store: &RecoveryStore,
    filter: &Filter<'_>,
    plan: Plan,
    visit: &mut impl FnMut(&EntryView) -> bool,
) -> Result<(), StoreError> {
    let mut walk_states: Vec<State> = Vec::new();
    match plan.unhealthy {
        Some(mut rows) => {
            // Walked in key order; a stable sort keeps it within each state.
            rows.sort_by_key(|v| std::cmp::Reverse(v.state.severity()));
            if !rows.iter().all(&mut *visit) {
                return Ok(());
            }
            walk_states.push(State::Healthy);
        }
        None => walk_states.extend(WORST_FIRST),
    }
    for state in walk_states {
        if plan.counts[usize::from(state.severity())] == 0
            || filter.state.is_some_and(|s| s != state)
        {
            continue;
        }
        let one = Filter {
            state: Some(state),
            prefix: filter.prefix.clone(),
            policies: filter.policies.clone(),
            ..*filter
        };
        let mut stopped = false;
        let walked = one.walk(
            store,
            |v| {
                stopped = !visit(&v);
                !stopped
            },
            |_| true,
        );
        if stopped {
            return Ok(());
        }
        walked?;
    }
    Ok(())
}

fn keys_only(
    store: &RecoveryStore,
    filter: &Filter<'_>,
    sort: SortArg,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(out);
    in_order(
        store,
        filter,
        sort,
        None,
        |v| writeln!(out, "{}", v.entry.key),
        report,
    )?;
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
    // First walk: column widths, rows per state, and damaged entries reported once.
    let mut widths = render::widths(&LIST_HEADERS);
    let mut unshown = 0usize;
    let plan = plan(
        store,
        filter,
        |v| render::fit(&mut widths, &render::list_row(v, &filter.now, wide)),
        |damaged| {
            unshown += 1;
            report(damaged)
        },
    )?;
    if plan.total() == 0 {
        let filtered = !filter.prefix.is_empty() || filter.service.is_some();
        if unshown > 0 {
            writeln!(
                out,
                "no backend could be listed: {} could not be decoded or judged (named on stderr)",
                render::entries(unshown)
            )?;
        } else if filtered || filter.state.is_some() {
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
    in_order(
        store,
        filter,
        sort,
        Some(plan),
        |v| {
            let paint = (color && v.state == State::Refused).then_some(REFUSED_COLOR);
            render::row(
                &mut out,
                &widths,
                &render::list_row(v, &filter.now, wide),
                paint,
            )
        },
        |_| true,
    )?;
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
            in_order(
                store,
                filter,
                sort,
                None,
                |v| {
                    if visit(json::Entry::of(v)) {
                        Ok(())
                    } else {
                        Err(io::Error::other("stopped"))
                    }
                },
                |_| true,
            )
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
                |damaged| {
                    visit(json::Damaged {
                        key: damaged.key.clone(),
                        error: damaged.text.clone(),
                    })
                },
            )
        }),
    };
    json::emit_streamed(out, &doc, &failed)
}
