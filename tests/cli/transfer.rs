//! `check`, `export`, `import`, `completions`, and a closed stdout.

use super::*;

#[test]
fn check_reports_a_sound_store() {
    let cli = populated();
    let out = cli.ok(&["check"]);
    assert!(
        out.contains("integrity: ok\n") && out.contains("entries:   3 ok, 0 damaged\n"),
        "{out}"
    );
    assert!(out.ends_with("no problems found\n"), "{out}");
    let doc: Check = cli.json(0, &["check"]);
    assert!(doc.ok && doc.problems.is_empty());
    assert_eq!(
        (doc.integrity.as_str(), doc.schema_version),
        ("ok", recovery_store::SCHEMA_VERSION)
    );
    assert_eq!((doc.entries, doc.damaged), (3, 0));
    assert_eq!(doc.store, cli.path().to_str().unwrap());
    assert_eq!(
        doc.policy,
        Some(StoredPolicy {
            retry_backoff_ms: 250,
            budget_window_ms: 30_000,
            retries_per_window: 1,
        })
    );
}

/// Writes a raw entry the library would never write: a hostile key and an undecodable value.
pub(super) fn plant_damaged_entry(path: &Path, raw_key: &[u8]) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("entries");
        let mut table = txn.open_table(def).unwrap();
        table.insert(raw_key, &[0xffu8, 0xff, 0xff][..]).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn check_reports_each_damaged_entry_and_exits_1() {
    let cli = populated();
    plant_damaged_entry(cli.path(), b"shared/evil\x1b[2J@1.0.0");
    let out = cli.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("entries:   3 ok, 1 damaged"), "{text}");
    assert!(text.contains("problem:") && text.contains("[2J"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "escape sequence reached the terminal: {text:?}"
    );
    let doc: Check = cli.json(1, &["check"]);
    assert!(!doc.ok);
    assert_eq!((doc.entries, doc.damaged, doc.problems.len()), (3, 1, 1));

    // list still shows the readable entries and warns about the damaged one.
    let out = cli.run(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    assert!(
        stderr(&out).contains("cannot be decoded") && !stderr(&out).contains('\x1b'),
        "{}",
        stderr(&out)
    );
    let doc: List = cli.json(0, &["list"]);
    assert_eq!(doc.damaged.len(), 1);
    assert_eq!(doc.damaged[0].key, "shared/evil\x1b[2J@1.0.0");
    assert!(!doc.damaged[0].error.is_empty());

    // export leaves it out, says so and exits 1; a reset clears it.
    let out = cli.run(&["export"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        serde_json::from_slice::<Export>(&out.stdout)
            .unwrap()
            .entries
            .len(),
        3
    );
    assert!(stderr(&out).contains("left out of the export"));
    let doc: Reset = cli.json(0, &["reset", "--instance", "shared"]);
    assert_eq!(
        doc.cleared,
        ["shared/demo@1.0.0", "shared/evil\x1b[2J@1.0.0"]
    );
    assert!(cli.json::<Check>(0, &["check"]).ok);
}

#[test]
fn export_then_import_restores_everything() {
    let cli = populated();
    cli.ok(&["policy", "set", "--retry-backoff", "100ms"]);
    let text = cli.ok(&["export"]);
    let doc: Export = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (doc.format.as_str(), doc.version),
        ("recovery-store-export", 2)
    );
    assert_eq!(
        doc.policy,
        StoredPolicy {
            retry_backoff_ms: 100,
            budget_window_ms: 30_000,
            retries_per_window: 1,
        }
    );
    assert_eq!(doc.entries.len(), 3);
    assert!(
        doc.exported_at.boot.is_some(),
        "a real clock reading carries the boot clock"
    );
    let demo = &doc.entries[2];
    assert_eq!(
        (
            demo.key.as_str(),
            demo.crashes_in_window,
            demo.total_crashes
        ),
        ("shared/demo@1.0.0", 2, 2)
    );
    assert_eq!(demo.window_started_at.unix_nanos, 1_767_225_600_000_000_000);
    assert_eq!(demo.window_started_at.rfc3339, "2026-01-01T00:00:00.000Z");

    let other = Cli::new();
    other.ok(&["record-crash", "shared/gone@1.0.0"]);
    let file = other.tmp.dir.path().join("export.json");
    std::fs::write(&file, &text).unwrap();
    let file_arg = file.to_str().unwrap();
    let out = other.run(&["import", file_arg]);
    assert_error(
        &out,
        "the store holds 1 entry (shared/gone@1.0.0) that the import would replace",
    );
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    let done: Import = other.json(0, &["import", file_arg, "--yes"]);
    assert_eq!(
        done.removed,
        ["shared/gone@1.0.0"],
        "named: the document lacks it"
    );
    assert_eq!(
        (done.imported, done.store.as_str()),
        (3, other.path().to_str().unwrap())
    );
    assert_eq!(done.policy, doc.policy);
    let again: Export = serde_json::from_str(&other.ok(&["export"])).unwrap();
    assert_eq!(
        again.entries, doc.entries,
        "lossless, and the old state was replaced"
    );
    assert_eq!(
        other.ok(&["import", file_arg, "--yes"]),
        format!(
            "{} already holds everything in the document: nothing written\nnote: the document's 1 audit event was not imported: a store's trail records only its own changes (keep the document as the old store's record)\n",
            other.path().display()
        )
    );
    // stdin works too.
    let third = Cli::new();
    let mut child = third
        .cmd(&["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(third.json::<List>(0, &["list"]).entries.len(), 3);
}

#[test]
fn bad_import_documents_change_nothing_and_say_what_is_wrong() {
    let cli = populated();
    let before = cli.ok(&["export"]);
    let good: serde_json::Value = serde_json::from_str(&before).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("{ not json".into(), "not a valid export document"),
        (
            edit(&|v| v["format"] = "sqlite".into()),
            "`format` is \"sqlite\"",
        ),
        (edit(&|v| v["version"] = 9.into()), "`version` is 9"),
        (
            edit(&|v| v["entries"][1]["key"] = "shared/Bad@1.0.0".into()),
            "`entries[1]`.key",
        ),
        (
            edit(&|v| v["entries"][0]["crashes_in_window"] = 0.into()),
            "crashes_in_window must be at least 1",
        ),
        (
            edit(&|v| v["entries"][0]["surprise"] = 1.into()),
            "unknown field `surprise`",
        ),
        (
            edit(&|v| v["entries"][2]["last_crash"]["unix_ms"] = 5.into()),
            "does not match",
        ),
        (
            edit(&|v| v["policy"]["budget_window_ms"] = 0.into()),
            "budget_window_ms",
        ),
        (
            edit(&|v| v["policy"]["retry_backoff_ms"] = 30_000.into()),
            "is not shorter than the budget window",
        ),
        (
            edit(&|v| {
                let first = v["entries"][0].clone();
                v["entries"].as_array_mut().unwrap().push(first);
            }),
            "appears more than once",
        ),
    ];
    let file = cli.tmp.dir.path().join("bad.json");
    for (text, needle) in cases {
        std::fs::write(&file, &text).unwrap();
        let out = cli.run(&["import", file.to_str().unwrap()]);
        assert_error(&out, needle);
        // A newer document needs another build, not a fix.
        let next = if needle.starts_with("`version`") {
            "import it with the recovery-store that exported it"
        } else {
            "fix the document"
        };
        assert!(stderr(&out).contains(next), "{}", stderr(&out));
    }
    let out = cli.run(&["import", "/nonexistent/export.json"]);
    assert_error(
        &out,
        "cannot read the import document (/nonexistent/export.json): ",
    );
    assert!(
        stderr(&out)
            .trim_end()
            .ends_with(": check the path, or pass - to read stdin"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        cli.ok(&["export"]).lines().skip(12).collect::<Vec<_>>(),
        before.lines().skip(12).collect::<Vec<_>>()
    );
    let fresh = Cli::new();
    std::fs::write(&file, "{}").unwrap();
    assert_error(
        &fresh.run(&["import", file.to_str().unwrap()]),
        "missing field",
    );
    assert!(!fresh.path().exists(), "a rejected import creates nothing");
}

#[test]
fn completions_are_generated() {
    let cli = Cli::new();
    let bash = cli.ok(&["completions", "bash"]);
    assert!(
        bash.contains("record-crash") && bash.contains("complete"),
        "{bash}"
    );
    assert!(
        cli.ok(&["completions", "zsh"])
            .contains("#compdef recovery-store")
    );
    assert!(!cli.path().exists());
}

#[test]
fn a_closed_stdout_exits_quietly() {
    let cli = Cli::new();
    let entries: Vec<serde_json::Value> = (0..3000)
        .map(|i| {
            serde_json::json!({"key": format!("shared/s{i}@1.0.0"), "window_started_at": {"unix_ms": 1_767_225_600_000i64},
                "crashes_in_window": 1, "last_crash": {"unix_ms": 1_767_225_600_000i64}, "total_crashes": 1})
        })
        .collect();
    let doc = serde_json::json!({"format": "recovery-store-export", "version": 1,
        "policy": {"retry_backoff_ms": 250, "budget_window_ms": 30000}, "entries": entries});
    let file = cli.tmp.dir.path().join("many.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    cli.ok(&["import", file.to_str().unwrap()]);
    for args in [
        &["list"][..],
        &["--json", "list"],
        &["list", "-q"],
        &["export"],
    ] {
        let mut child = cli
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
    }
}

// `import` applies the document's policy as `policy set` would, with the same guard: a window
// over a day needs --yes even into a new store, and nothing is created without it.
#[test]
fn import_of_a_very_long_policy_needs_yes_like_policy_set() {
    let source = Cli::new();
    source.ok(&[
        "policy",
        "set",
        "--budget-window",
        "400d",
        "--retry-backoff",
        "250ms",
        "--yes",
    ]);
    let document = source.tmp.dir.path().join("long.json");
    std::fs::write(&document, source.expect(0, &["export"])).unwrap();
    let target = Cli::new();
    let out = target.run(&["import", document.to_str().unwrap()]);
    assert_error(&out, "over 1 day");
    assert!(!target.path().exists(), "nothing is created without --yes");
    target.ok(&["import", "--yes", document.to_str().unwrap()]);
    assert!(target.path().exists());
}
