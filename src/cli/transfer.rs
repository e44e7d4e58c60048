//! `export` and `import`: the whole store as one JSON document.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use recovery_store::{
    BackendKey, BackendRecoveryPolicy, BootTime, CrashRecord, CrashReport, RecoveryEntry,
    RecoveryStore, StoreError, StoreOptions, Timestamp,
};
use serde::{Deserialize, Serialize};

use super::args::ImportArgs;
use super::render::damaged_text;
use super::sanitize::{sanitize, sanitize_lossy};
use super::view::{millis, rfc3339};
use super::{Ctx, NEGATIVE, json, render};

/// What `format` holds in every export document.
const FORMAT: &str = "recovery-store-export";
/// The export document version this build writes (it reads this one and version 1, which has
/// no `history`).
const EXPORT_VERSION: u32 = 2;

/// A stored time in full: what `json::Time` shows, plus what a lossless restore needs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rfc3339: Option<String>,
    unix_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unix_nanos: Option<i64>,
    #[serde(default)]
    boot: Option<Boot>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Boot {
    /// 32 lowercase hex digits.
    boot_id: String,
    since_boot_ns: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportPolicy {
    retry_backoff_ms: u64,
    budget_window_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportEntry {
    key: String,
    window_started_at: Stamp,
    crashes_in_window: u32,
    /// Read as `last_crash_at` too, the name other documents use for it.
    #[serde(alias = "last_crash_at")]
    last_crash: Stamp,
    total_crashes: u64,
    /// The last crashes, oldest first (version 2; absent in version 1).
    #[serde(default)]
    history: Vec<ExportCrash>,
}

/// One crash of an entry's history.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportCrash {
    at: Stamp,
    exit_code: Option<i32>,
    signal: Option<i32>,
    pid: Option<u32>,
    uid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    version: u32,
    #[serde(default)]
    exported_at: Option<Stamp>,
    policy: ExportPolicy,
    entries: Vec<ExportEntry>,
}

/// What `export` writes: the same document as [`Document`], with its entries streamed.
#[derive(Serialize)]
struct ExportDoc<'a> {
    format: &'static str,
    version: u32,
    exported_at: Stamp,
    policy: ExportPolicy,
    entries: json::Streamed<'a, ExportEntry>,
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

/// How many entries an export wrote and left out.
pub struct Exported {
    pub written: usize,
    pub left_out: usize,
}

/// Writes an export document of every entry that decodes, streamed from one snapshot; each
/// damaged entry is named on stderr.
pub fn write_export(
    store: &RecoveryStore,
    now: &Timestamp,
    out: &mut impl Write,
) -> anyhow::Result<Exported> {
    let policy = store.policy()?;
    let failed = RefCell::new(None);
    let left_out = Cell::new(0usize);
    let written = Cell::new(0usize);
    let doc = ExportDoc {
        format: FORMAT,
        version: EXPORT_VERSION,
        exported_at: stamp(now),
        policy: ExportPolicy {
            retry_backoff_ms: millis(policy.retry_backoff),
            budget_window_ms: millis(policy.budget_window),
        },
        entries: json::Streamed::new(&failed, |visit| {
            store.for_each_entry_with_history("", |entry| match entry {
                Ok((e, history)) => {
                    let item = ExportEntry {
                        key: e.key.to_string(),
                        window_started_at: stamp(&e.window_started_at),
                        crashes_in_window: e.crashes_in_window,
                        last_crash: stamp(&e.last_crash),
                        total_crashes: e.total_crashes,
                        history: history
                            .iter()
                            .map(|c| ExportCrash {
                                at: stamp(&c.at),
                                exit_code: c.exit_code,
                                signal: c.signal,
                                pid: c.pid,
                                uid: c.uid,
                            })
                            .collect(),
                    };
                    written.set(written.get() + 1);
                    if visit(item) {
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
            })
        }),
    };
    json::emit_streamed(out, &doc, &failed)?;
    Ok(Exported {
        written: written.get(),
        left_out: left_out.get(),
    })
}

pub fn import(ctx: &Ctx, args: &ImportArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let file = &args.file;
    let shown = sanitize_lossy(file);
    let text = read_document(file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the import document ({shown}): {e}: check the path, or pass - to read stdin"
        )
    })?;
    let (policy, entries) = parse_document(&text).with_context(|| {
        format!("cannot import {shown}: fix the document and run the import again")
    })?;
    policy.validate().with_context(|| {
        format!("cannot import {shown}: fix the document and run the import again")
    })?;
    // The document's policy takes effect as `policy set` would, with the same guard: one over a
    // day's window or an hour's backoff needs --yes. (With --merge the store keeps its own.)
    if !args.merge {
        super::commands::check_policy(&policy, args.yes)
            .with_context(|| format!("cannot import {shown}"))?;
    }
    // Validate everything before the store is opened, so a bad document changes nothing.
    let fresh = !ctx.exists();
    let existing = if ctx.exists() {
        Some(ctx.open_existing()?)
    } else {
        None
    };
    let (store, applied, overwritten) = if args.merge {
        let store = match existing {
            Some(store) => store,
            None => ctx.open_create_with(StoreOptions::default().policy(policy))?,
        };
        let overwritten = merge(&store, &entries, args.yes)
            .with_context(|| format!("cannot import {shown} into {}", ctx.shown_path()))?;
        let kept = store.policy()?;
        (store, kept, overwritten)
    } else {
        if let Some(store) = &existing {
            let held = store.len()?;
            let old = store.policy()?;
            if (held > 0 || old != policy) && !args.yes {
                bail!(
                    "{} holds state ({}, policy {}) that the import would replace: pass --yes to \
                     replace it, or --merge to add the document's entries to it",
                    ctx.shown_path(),
                    render::entries(usize::try_from(held).unwrap_or(usize::MAX)),
                    render::policy_text(&old)
                );
            }
        }
        let store = match existing {
            Some(store) => store,
            None => ctx.open_create()?,
        };
        store
            .replace_all_with_history(Some(policy), &entries)
            .with_context(|| format!("cannot import {shown} into {}", ctx.shown_path()))?;
        (store, policy, Vec::new())
    };
    drop(store);
    if ctx.json {
        json::emit(
            out,
            &json::Import {
                store: ctx.path.to_string_lossy().into_owned(),
                imported: entries.len(),
                policy: json::Policy::of(&applied),
                merged: args.merge,
                overwritten,
            },
        )?;
    } else if args.merge {
        writeln!(
            out,
            "merged {} into {}, keeping its other entries and its policy ({}){}",
            render::entries(entries.len()),
            ctx.shown_path(),
            render::policy_text(&applied),
            if overwritten.is_empty() {
                String::new()
            } else {
                format!("; overwrote {}", overwritten.join(", "))
            }
        )?;
    } else {
        let noun = if entries.len() == 1 {
            "entry"
        } else {
            "entries"
        };
        writeln!(
            out,
            "imported {} {noun} and the policy ({}) into {}{}",
            entries.len(),
            render::policy_text(&policy),
            ctx.shown_path(),
            if fresh {
                ", a new store"
            } else {
                ", replacing its previous state"
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds `entries` to the store, keeping the others; a key in both is refused unless
/// `overwrite`. Returns the keys overwritten. The library checks and writes in one
/// transaction; the read here only makes the refusal name every key in both.
fn merge(
    store: &RecoveryStore,
    entries: &[(RecoveryEntry, Vec<CrashRecord>)],
    overwrite: bool,
) -> anyhow::Result<Vec<String>> {
    if !overwrite {
        let mut both = Vec::new();
        for (entry, _) in entries {
            if store.get(&entry.key)?.is_some() {
                both.push(entry.key.to_string());
            }
        }
        if !both.is_empty() {
            bail!(
                "{} in both the store and the document ({}): pass --yes to let the document's win",
                render::entries(both.len()),
                both.join(", ")
            );
        }
    }
    let overwritten = store.merge_entries_with_history(entries, overwrite)?;
    Ok(overwritten.iter().map(ToString::to_string).collect())
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

type Imported = Vec<(RecoveryEntry, Vec<CrashRecord>)>;

fn parse_document(text: &str) -> anyhow::Result<(BackendRecoveryPolicy, Imported)> {
    let doc: Document = serde_json::from_str(text).context("not a valid export document")?;
    if doc.format != FORMAT {
        bail!("`format` is {:?}, expected {FORMAT:?}", doc.format);
    }
    if !(1..=EXPORT_VERSION).contains(&doc.version) {
        bail!(
            "`version` is {}; this build reads export versions 1 to {EXPORT_VERSION}: use a matching recovery-store",
            doc.version
        );
    }
    if let Some(at) = &doc.exported_at {
        timestamp(at).context("`exported_at`")?;
    }
    let duration = |name: &str, ms: u64| {
        if ms == 0 {
            bail!("`policy.{name}` must be at least 1");
        }
        Ok(Duration::from_millis(ms))
    };
    let policy = BackendRecoveryPolicy::new(
        duration("retry_backoff_ms", doc.policy.retry_backoff_ms)?,
        duration("budget_window_ms", doc.policy.budget_window_ms)?,
    );
    let mut seen = BTreeSet::new();
    let mut entries = Vec::with_capacity(doc.entries.len());
    for (i, e) in doc.entries.into_iter().enumerate() {
        let at = format!("`entries[{i}]`");
        let key: BackendKey = e.key.parse().with_context(|| format!("{at}.key"))?;
        if !seen.insert(key.to_string()) {
            bail!("{at}.key: {key} appears more than once");
        }
        if e.crashes_in_window == 0 {
            bail!("{at}.crashes_in_window must be at least 1 ({key})");
        }
        if e.total_crashes < u64::from(e.crashes_in_window) {
            bail!("{at}.total_crashes is below crashes_in_window ({key})");
        }
        let history = e
            .history
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let when =
                    timestamp(&c.at).with_context(|| format!("{at}.history[{j}].at ({key})"))?;
                let report = CrashReport {
                    exit_code: c.exit_code,
                    signal: c.signal,
                };
                Ok(CrashRecord::new(when, report, c.pid, c.uid))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        entries.push((
            RecoveryEntry {
                window_started_at: timestamp(&e.window_started_at)
                    .with_context(|| format!("{at}.window_started_at ({key})"))?,
                last_crash: timestamp(&e.last_crash)
                    .with_context(|| format!("{at}.last_crash ({key})"))?,
                crashes_in_window: e.crashes_in_window,
                total_crashes: e.total_crashes,
                key,
            },
            history,
        ));
    }
    Ok((policy, entries))
}

fn stamp(ts: &Timestamp) -> Stamp {
    Stamp {
        rfc3339: Some(rfc3339(ts, true)),
        unix_ms: ts.unix_millis(),
        unix_nanos: Some(ts.unix_nanos()),
        boot: ts.boot().map(|b| Boot {
            boot_id: format!("{:032x}", b.boot_id),
            since_boot_ns: u64::try_from(b.since_boot.as_nanos()).unwrap_or(u64::MAX),
        }),
    }
}

fn timestamp(s: &Stamp) -> anyhow::Result<Timestamp> {
    let nanos = match s.unix_nanos {
        Some(n) if n.div_euclid(1_000_000) != s.unix_ms => {
            bail!("unix_nanos {n} does not match unix_ms {}", s.unix_ms)
        }
        Some(n) => n,
        None => s
            .unix_ms
            .checked_mul(1_000_000)
            .context("unix_ms is out of range (years 1677 to 2262)")?,
    };
    let boot = match &s.boot {
        None => None,
        Some(b) => {
            let valid = b.boot_id.len() == 32 && b.boot_id.bytes().all(|c| c.is_ascii_hexdigit());
            let boot_id = u128::from_str_radix(&b.boot_id, 16)
                .ok()
                .filter(|_| valid)
                .context("boot.boot_id must be 32 hex digits")?;
            Some(BootTime {
                boot_id,
                since_boot: Duration::from_nanos(b.since_boot_ns),
            })
        }
    };
    let ts = Timestamp::from_parts(nanos, boot);
    if let Some(text) = &s.rfc3339 {
        let with_millis = text.contains('.');
        let expected = rfc3339(&ts, with_millis);
        if *text != expected {
            bail!("rfc3339 {text:?} does not match unix_ms (expected {expected:?})");
        }
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(entries: &str) -> String {
        format!(
            r#"{{"format":"{FORMAT}","version":1,"policy":{{"retry_backoff_ms":250,"budget_window_ms":30000}},"entries":[{entries}]}}"#
        )
    }

    const GOOD: &str = r#"{"key":"shared/a@1.0.0","window_started_at":{"unix_ms":1000},"crashes_in_window":1,"last_crash":{"rfc3339":"1970-01-01T00:00:02Z","unix_ms":2000},"total_crashes":3}"#;

    #[test]
    fn a_minimal_document_parses() {
        let (policy, entries) = parse_document(&doc(GOOD)).unwrap();
        assert_eq!(policy, BackendRecoveryPolicy::default());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0.last_crash.unix_nanos(), 2_000_000_000);
        assert_eq!(entries[0].0.total_crashes, 3);
        assert!(
            entries[0].1.is_empty(),
            "a document without history imports none"
        );
    }

    #[test]
    fn export_stamps_round_trip() {
        let ts = Timestamp::from_parts(
            -1_234_567_891,
            Some(BootTime {
                boot_id: u128::MAX - 5,
                since_boot: Duration::from_nanos(77),
            }),
        );
        assert_eq!(timestamp(&stamp(&ts)).unwrap(), ts);
    }

    #[test]
    fn problems_are_named() {
        let cases = [
            (doc(&format!("{GOOD},{GOOD}")), "appears more than once"),
            (
                doc(&GOOD.replace("shared/a", "Shared/a")),
                "entries[0]`.key",
            ),
            (
                doc(&GOOD.replace(r#""crashes_in_window":1"#, r#""crashes_in_window":0"#)),
                "at least 1",
            ),
            (
                doc(&GOOD.replace("00:00:02Z", "00:00:03Z")),
                "does not match",
            ),
            (doc(&GOOD.replace("total_crashes", "totl")), "unknown field"),
            (
                doc("").replace("recovery-store-export", "other"),
                "`format`",
            ),
            (
                doc("").replace(r#""version":1"#, r#""version":3"#),
                "`version` is 3",
            ),
            (doc("").replace("250", "0"), "policy.retry_backoff_ms"),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", parse_document(&text).unwrap_err());
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }
}
