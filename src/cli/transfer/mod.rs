//! `export` and `import`: the whole store as one JSON document (see [`document`] for its
//! shape and validation).

mod document;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use recovery_store::{
    ImportMode, ImportOutcome, PolicyScope, RecoveryPolicy, RecoveryStore, StoreError, StoreImage,
    StoreOptions, Timestamp,
};
use serde::Serialize;

use self::document::{
    EXPORT_VERSION, ExportAudit, ExportEntry, ExportOverride, ExportPolicy, FORMAT, Stamp,
    parse_document, stamp,
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
    let shown = sanitize_lossy(file);
    let text = read_document(file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the import document ({shown}): {e}: check the path, or pass - to read stdin"
        )
    })?;
    let mut image = parse_document(&text).with_context(|| {
        format!("cannot import {shown}: fix the document and run the import again")
    })?;
    let policy = image.policy.unwrap_or_default();
    // The document's policies take effect as `policy set` would, with the same guard: one over
    // a day's window or an hour's backoff needs --yes. (With --merge the store keeps its
    // default, and the document's overrides are added.)
    if !args.merge {
        super::commands::check_policy(&policy.recovery, args.yes)
            .with_context(|| format!("cannot import {shown}"))?;
    }
    for (scope, p) in image.overrides.as_deref().unwrap_or_default() {
        super::commands::check_policy(&p.recovery, args.yes)
            .with_context(|| format!("cannot import {shown}: the override for {scope}"))?;
    }
    // Everything is validated before the store is opened, so a bad document changes nothing.
    let fresh = !ctx.exists();
    let existing = if ctx.exists() {
        Some(ctx.open_existing()?)
    } else {
        None
    };
    let mode = if args.merge {
        ImportMode::Merge {
            overwrite: args.yes,
        }
    } else {
        ImportMode::Replace
    };
    if let Some(store) = &existing {
        match mode {
            ImportMode::Merge { overwrite } => refuse_conflicts(store, &image, overwrite)?,
            ImportMode::Replace => refuse_replacing(ctx, store, &image, args.yes)?,
        }
    }
    let store = match existing {
        Some(store) => store,
        None => ctx.open_create_with(StoreOptions::default().policy(policy.recovery))?,
    };
    if args.merge {
        image.policy = None;
    }
    let outcome = store
        .import_with_reason(&image, mode, args.reason.as_deref())
        .with_context(|| format!("cannot import {shown} into {}", ctx.shown_path()))?;
    let applied = store.recovery_policy()?;
    drop(store);
    let report = Report {
        ctx,
        image: &image,
        outcome: &outcome,
        applied: &applied,
        fresh,
        merged: args.merge,
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

/// A replace over a store holding state (entries, another default policy, or other
/// overrides) needs --yes, and the refusal says what would go.
fn refuse_replacing(
    ctx: &Ctx,
    store: &RecoveryStore,
    image: &StoreImage,
    yes: bool,
) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let held = store.len()?;
    let old = store.recovery_policy()?;
    let old_overrides = store.overrides()?;
    let new_overrides = image.overrides.as_deref().unwrap_or_default();
    if held == 0 && Some(old) == image.policy && old_overrides == new_overrides {
        return Ok(());
    }
    let overrides = match old_overrides.len() {
        0 => String::new(),
        1 => ", 1 override".into(),
        n => format!(", {n} overrides"),
    };
    bail!(
        "{} holds state ({}, policy {}{overrides}) that the import would replace: pass --yes to \
         replace it, or --merge to add the document's entries and overrides to it",
        ctx.shown_path(),
        render::entries(usize::try_from(held).unwrap_or(usize::MAX)),
        render::stored_policy_text(&old),
    )
}

/// A merge refuses keys, and overrides with another policy, that are in both the store and the
/// document unless --yes, naming each. The library checks again in its transaction; this read
/// only makes the refusal name them all in the CLI's words.
fn refuse_conflicts(
    store: &RecoveryStore,
    image: &StoreImage,
    overwrite: bool,
) -> anyhow::Result<()> {
    if overwrite {
        return Ok(());
    }
    let mut both = Vec::new();
    for (entry, _) in &image.entries {
        if store.get(&entry.key)?.is_some() {
            both.push(entry.key.to_string());
        }
    }
    let held = store.overrides()?;
    let differ = |scope: &PolicyScope, policy: &RecoveryPolicy| {
        held.iter().any(|(s, p)| s == scope && p != policy)
    };
    let scopes: Vec<String> = image
        .overrides
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|(scope, policy)| differ(scope, policy))
        .map(|(scope, _)| scope.to_string())
        .collect();
    let mut parts = Vec::new();
    if !both.is_empty() {
        parts.push(format!(
            "{} in both the store and the document ({})",
            render::entries(both.len()),
            both.join(", ")
        ));
    }
    if !scopes.is_empty() {
        parts.push(format!(
            "{} with another policy in the store ({})",
            if scopes.len() == 1 {
                "1 override".to_owned()
            } else {
                format!("{} overrides", scopes.len())
            },
            scopes.join(", ")
        ));
    }
    if !parts.is_empty() {
        bail!("{}: pass --yes to let the document's win", parts.join("; "));
    }
    Ok(())
}

/// What an import did, for the text and JSON reports.
struct Report<'a> {
    ctx: &'a Ctx,
    image: &'a StoreImage,
    outcome: &'a ImportOutcome,
    applied: &'a RecoveryPolicy,
    fresh: bool,
    merged: bool,
}

impl Report<'_> {
    fn json(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let scopes = |s: &[PolicyScope]| s.iter().map(ToString::to_string).collect();
        json::emit(
            out,
            &json::Import {
                store: self.ctx.path.to_string_lossy().into_owned(),
                imported: self.image.entries.len(),
                policy: json::StoredPolicy::of(self.applied),
                overrides: self.image.overrides.as_ref().map_or(0, Vec::len),
                merged: self.merged,
                overwritten: self
                    .outcome
                    .overwritten
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                overrides_overwritten: scopes(&self.outcome.overrides_overwritten),
                audit_added: self.outcome.audit_added,
                audit_already_held: self.outcome.audit_already_held,
            },
        )
    }

    fn merged(&self, out: &mut impl Write) -> anyhow::Result<()> {
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
            "merged {}{} into {}, keeping its other entries and its policy ({}){}{}",
            render::entries(self.image.entries.len()),
            self.overrides_text(),
            self.ctx.shown_path(),
            render::stored_policy_text(self.applied),
            if overwrote.is_empty() {
                String::new()
            } else {
                format!("; overwrote {}", overwrote.join(", "))
            },
            self.audit_text()
        )?;
        Ok(())
    }

    fn replaced(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let n = self.image.entries.len();
        let noun = if n == 1 { "entry" } else { "entries" };
        writeln!(
            out,
            "imported {n} {noun}{} and the policy ({}) into {}{}{}",
            self.overrides_text(),
            render::stored_policy_text(self.applied),
            self.ctx.shown_path(),
            if self.fresh {
                ", a new store"
            } else {
                ", replacing its previous state"
            },
            self.audit_text()
        )?;
        Ok(())
    }

    /// ", 2 overrides" when the document had any.
    fn overrides_text(&self) -> String {
        match self.image.overrides.as_ref().map_or(0, Vec::len) {
            0 => String::new(),
            1 => ", 1 override".into(),
            n => format!(", {n} overrides"),
        }
    }

    /// "; restored 12 audit events (3 already held)" when the document had any.
    fn audit_text(&self) -> String {
        let (added, held) = (self.outcome.audit_added, self.outcome.audit_already_held);
        if added + held == 0 {
            return String::new();
        }
        let noun = if added == 1 { "event" } else { "events" };
        let held = if held == 0 {
            String::new()
        } else {
            format!(" ({held} already held)")
        };
        format!("; restored {added} audit {noun}{held}")
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
