//! `export` and `import`: the whole store as one JSON document (see [`document`] for its
//! shape and validation).

mod document;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use recovery_store::{
    ImportMode, ImportOutcome, PolicyScope, RecoveryPolicy, RecoveryStore, StoreError, StoreImage,
    Timestamp,
};
use serde::Serialize;

use self::document::{
    EXPORT_VERSION, ExportAudit, ExportEntry, ExportOverride, ExportPolicy, FORMAT, NewerDocument,
    Stamp, parse_document, stamp,
};
use super::args::ImportArgs;
use super::render::damaged_text;
use super::sanitize::{sanitize, sanitize_lossy};
use super::{Ctx, NEGATIVE, json, render};

/// What `export` writes, every part read from one snapshot, the entries streamed.
#[derive(Serialize)]
struct ExportDoc<'a> {
    format: &'static str,
    version: u32,
    exported_at: Stamp,
    policy: ExportPolicy,
    overrides: Vec<ExportOverride>,
    entries: json::Streamed<'a, ExportEntry>,
    audit: Vec<ExportAudit>,
}

pub fn export(ctx: &Ctx, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_read()?;
    let left_out = write_export(&store, &ctx.now(), out)?.left_out;
    // Export what can be read; say what was left out, and exit 1 so scripts notice.
    Ok(if left_out == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NEGATIVE)
    })
}

/// How many entries an export wrote, and how many entries, override rows and audit events it
/// left out because they could not be decoded.
pub struct Exported {
    pub written: usize,
    pub left_out: usize,
}

/// Writes an export document of the policies, the audit trail and every entry that decodes,
/// all from one snapshot, the entries streamed; each damaged entry, override row and audit
/// event is left out and named on stderr.
pub fn write_export(
    store: &RecoveryStore,
    now: &Timestamp,
    out: &mut impl Write,
) -> anyhow::Result<Exported> {
    let mut result = None;
    store.snapshot(|snap| {
        // A damaged override row or audit event is left out and named, as a damaged entry is.
        let policies = snap.stored_policies()?;
        let mut audit = Vec::new();
        let mut damaged = Vec::new();
        snap.for_each_audit_event(|event| {
            match event {
                Ok(e) => audit.push(e),
                Err(err @ StoreError::CorruptAuditEvent { .. }) => damaged.push(err),
                Err(other) => return Err(other),
            }
            Ok(())
        })?;
        damaged.extend(policies.damaged().iter().map(|row| row.error()));
        for err in &damaged {
            eprintln!(
                "recovery-store: left out of the export: {}",
                sanitize(&err.to_string())
            );
        }
        let failed = RefCell::new(None);
        let left_out = Cell::new(damaged.len());
        let written = Cell::new(0usize);
        let doc = ExportDoc {
            format: FORMAT,
            version: EXPORT_VERSION,
            exported_at: stamp(now),
            policy: ExportPolicy::of(&policies.default_policy()),
            overrides: policies
                .overrides()
                .iter()
                .map(|(scope, policy)| ExportOverride::of(scope, policy))
                .collect(),
            entries: json::Streamed::new(&failed, |visit| {
                snap.for_each_entry("", |entry| {
                    match entry.and_then(|e| {
                        let history = snap.history(&e.key)?;
                        Ok((e, history))
                    }) {
                        Ok((e, history)) => {
                            written.set(written.get() + 1);
                            if visit(ExportEntry::of(&e, &history)) {
                                Ok(())
                            } else {
                                Err(json::stop())
                            }
                        }
                        Err(err @ StoreError::CorruptEntry { .. }) => {
                            left_out.set(left_out.get() + 1);
                            eprintln!(
                                "recovery-store: left out of the export: {}",
                                sanitize(&damaged_text(&err))
                            );
                            Ok(())
                        }
                        Err(other) => Err(other),
                    }
                })
            }),
            audit: audit.iter().map(ExportAudit::of).collect(),
        };
        result = Some(json::emit_streamed(out, &doc, &failed).map(|()| Exported {
            written: written.get(),
            left_out: left_out.get(),
        }));
        Ok(())
    })?;
    result.context("the export snapshot ended before the document was written")?
}

pub fn import(ctx: &Ctx, args: &ImportArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let file = &args.file;
    let shown = if file.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        sanitize_lossy(file)
    };
    let text = read_document(file).map_err(|e| {
        let next = if file.as_os_str() == "-" {
            "pipe the file `recovery-store export` wrote"
        } else {
            "check the path, or pass - to read stdin"
        };
        anyhow::anyhow!("cannot read the import document ({shown}): {e}: {next}")
    })?;
    // Document problems read "cannot import FILE: <what is wrong>: fix the document ...".
    let refused = |e: anyhow::Error| {
        if e.is::<NewerDocument>() {
            anyhow::anyhow!("cannot import {shown}: {e}")
        } else {
            anyhow::anyhow!(
                "cannot import {shown}: {e:#}: fix the document and run the import again"
            )
        }
    };
    let parsed = parse_document(&text).map_err(refused)?;
    parsed.image.validate().map_err(|e| match e {
        StoreError::InvalidImport { detail } => refused(anyhow::anyhow!(detail)),
        other => refused(other.into()),
    })?;
    let fresh = !ctx.exists();
    let into = || format!("cannot import {shown} into {}", ctx.shown_path());
    // The document's policies take effect as `policy set` would, with the same guard: one over
    // a day's window or an hour's backoff needs --yes, unless the store already holds it. (A
    // merge keeps the store's default.) A new store is only created once they pass.
    let guard = |held: Option<&RecoveryStore>| -> anyhow::Result<()> {
        let stored = held.and_then(|s| s.policies().ok());
        if !args.merge && stored.as_ref().map(|p| p.default.recovery) != Some(parsed.policy.0) {
            super::commands::check_policy(&parsed.policy.0, args.yes)
                .with_context(|| format!("cannot import {shown}: its default policy"))?;
        }
        for (scope, p) in parsed.image.overrides.as_deref().unwrap_or_default() {
            let held = stored
                .as_ref()
                .is_some_and(|s| s.overrides.contains(&(scope.clone(), *p)));
            if !held {
                super::commands::check_policy(&p.recovery, args.yes)
                    .with_context(|| format!("cannot import {shown}: the override for {scope}"))?;
            }
        }
        Ok(())
    };
    if fresh {
        guard(None)?;
    }
    // A new (or empty) store starts with the reference policy; the import then writes the
    // document's in its transaction.
    let store = ctx.open_create().with_context(into)?;
    if !fresh {
        guard(Some(&store))?;
    }
    let mut image = parsed.image;
    let (mode, kept_retries) = if args.merge {
        image.policy = None;
        (
            ImportMode::Merge {
                overwrite: args.yes,
            },
            false,
        )
    } else {
        // A document without retries per window keeps the store's.
        let retries = match parsed.policy.1 {
            Some(n) => n,
            None => store.recovery_policy().map_or(1, |p| p.retries_per_window),
        };
        image.policy = Some(RecoveryPolicy::new(parsed.policy.0, retries));
        (
            ImportMode::Replace {
                overwrite: args.yes,
            },
            parsed.policy.1.is_none(),
        )
    };
    let imported = store.import_with_reason(&image, mode, args.reason.as_deref());
    let outcome = match imported {
        Ok(outcome) => outcome,
        Err(e) => {
            let left = if fresh && store.is_empty().unwrap_or(false) {
                format!(
                    " (the empty store this import created at {} holds no state: remove it, \
                     or run the import again)",
                    ctx.shown_path()
                )
            } else {
                String::new()
            };
            return Err(match e {
                StoreError::ImportConflict { detail } => {
                    let alternative = if args.merge {
                        ""
                    } else {
                        ", or --merge to add the document's entries and overrides to it"
                    };
                    anyhow::anyhow!(
                        "{}: {detail}: pass --yes to let the document's win{alternative}",
                        into()
                    )
                }
                other => anyhow::Error::from(other).context(format!("{}{left}", into())),
            });
        }
    };
    let applied = store.recovery_policy()?;
    let overrides_kept =
        image.overrides.is_none() && !store.overrides().unwrap_or_default().is_empty();
    drop(store);
    let report = Report {
        ctx,
        image: &image,
        outcome: &outcome,
        applied: &applied,
        fresh,
        merged: args.merge,
        kept_retries,
        overrides_kept,
        audit_events: parsed.audit_events,
        details_dropped: parsed.details_dropped,
    };
    if ctx.json {
        report.json(out)?;
    } else if args.merge {
        report.merged(out)?;
    } else {
        report.replaced(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What an import did, for the text and JSON reports.
struct Report<'a> {
    ctx: &'a Ctx,
    image: &'a StoreImage,
    outcome: &'a ImportOutcome,
    applied: &'a RecoveryPolicy,
    fresh: bool,
    merged: bool,
    /// The document gave no retries per window, so the store's stayed.
    kept_retries: bool,
    /// The document carried no overrides, and the store's stayed.
    overrides_kept: bool,
    audit_events: usize,
    /// Crash details no process could have given, imported without them.
    details_dropped: usize,
}

impl Report<'_> {
    fn json(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let scopes = |s: &[PolicyScope]| s.iter().map(ToString::to_string).collect();
        json::emit(
            out,
            &json::Import {
                store: self.ctx.path.to_string_lossy().into_owned(),
                new_store: self.fresh,
                imported: self.image.entries.len(),
                policy: json::StoredPolicy::of(self.applied),
                overrides: self.image.overrides.as_ref().map(Vec::len),
                merged: self.merged,
                changed: self.outcome.changed,
                overwritten: self
                    .outcome
                    .overwritten
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                overrides_overwritten: scopes(&self.outcome.overrides_overwritten),
                overrides_replaced: self.outcome.overrides_replaced,
                removed: self.outcome.removed.clone(),
                audit_events_not_imported: self.audit_events,
            },
        )
    }

    fn merged(&self, out: &mut impl Write) -> anyhow::Result<()> {
        if !self.outcome.changed {
            writeln!(
                out,
                "{} already holds everything the document would add: nothing written",
                self.ctx.shown_path()
            )?;
            return self.notes(out);
        }
        let mut overwrote: Vec<String> = self
            .outcome
            .overwritten
            .iter()
            .map(ToString::to_string)
            .collect();
        overwrote.extend(
            self.outcome
                .overrides_overwritten
                .iter()
                .map(|s| format!("the override for {s}")),
        );
        writeln!(
            out,
            "merged {}{} into {}, keeping its other entries and its policy ({}){}",
            render::entries(self.image.entries.len()),
            self.overrides_text(),
            self.ctx.shown_path(),
            render::stored_policy_text(self.applied),
            if overwrote.is_empty() {
                String::new()
            } else {
                format!("; overwrote {}", named(&overwrote))
            },
        )?;
        self.notes(out)
    }

    fn replaced(&self, out: &mut impl Write) -> anyhow::Result<()> {
        if !self.outcome.changed && !self.fresh {
            writeln!(
                out,
                "{} already holds everything in the document: nothing written",
                self.ctx.shown_path()
            )?;
            return self.notes(out);
        }
        let n = self.image.entries.len();
        let noun = if n == 1 { "entry" } else { "entries" };
        let mut state = if self.fresh {
            ", a new store".to_owned()
        } else {
            ", replacing its previous state".to_owned()
        };
        let removed = &self.outcome.removed;
        if !removed.is_empty() {
            let shown: Vec<String> = removed.iter().map(|k| sanitize(k).into_owned()).collect();
            state.push_str(&format!(
                "; removed {} the document lacks ({})",
                render::entries(removed.len()),
                named(&shown)
            ));
        }
        match self.outcome.overrides_replaced {
            0 => {}
            1 => state.push_str("; replaced its 1 other override"),
            k => state.push_str(&format!("; replaced its {k} other overrides")),
        }
        writeln!(
            out,
            "imported {n} {noun}{} and the policy ({}) into {}{state}",
            self.overrides_text(),
            render::stored_policy_text(self.applied),
            self.ctx.shown_path(),
        )?;
        self.notes(out)
    }

    /// ", 2 overrides" when the document had any.
    fn overrides_text(&self) -> String {
        match self.image.overrides.as_ref().map_or(0, Vec::len) {
            0 => String::new(),
            1 => ", 1 override".into(),
            n => format!(", {n} overrides"),
        }
    }

    /// What stayed as the store had it, and the audit events not imported: one line each.
    fn notes(&self, out: &mut impl Write) -> anyhow::Result<()> {
        if self.kept_retries && !self.fresh {
            writeln!(
                out,
                "note: the document gives no retries per window; the store's ({}) stayed",
                self.applied.retries_per_window
            )?;
        }
        if self.overrides_kept {
            writeln!(
                out,
                "note: the document carries no overrides; the store's stayed (`recovery-store policy` lists them)"
            )?;
        }
        if self.details_dropped > 0 {
            writeln!(
                out,
                "note: {} crash detail(s) no process could have given (an exit status outside \
                 0-255, a signal outside 1-64, both at once, or PID 0) were imported without it",
                self.details_dropped
            )?;
        }
        if self.audit_events > 0 {
            let events = if self.audit_events == 1 {
                "1 audit event was".to_owned()
            } else {
                format!("{} audit events were", self.audit_events)
            };
            writeln!(
                out,
                "note: the document's {events} not imported: a store's trail records only its \
                 own changes (keep the document as the old store's record)"
            )?;
        }
        Ok(())
    }
}

/// The first few of `names`, and how many more.
fn named(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let first = names[..names.len().min(SHOWN)].join(", ");
    match names.len().saturating_sub(SHOWN) {
        0 => first,
        more => format!("{first} and {more} more"),
    }
}

fn read_document(file: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        std::fs::File::open(file)?.read_to_string(&mut text)?;
    }
    Ok(text)
}
