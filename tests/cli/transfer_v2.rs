//! Export version 2 carries the whole store: the default policy with its retries per window,
//! the overrides, the entries with their history, and the audit trail. `import` restores the
//! policies and entries, keeps what a document does not carry, and never writes another
//! store's audit events into the trail.

use super::*;

/// A store with a non-default policy, a service and a key override, three entries, and audit
/// events with reasons.
fn rich() -> Cli {
    let cli = populated();
    cli.ok(&[
        "policy",
        "set",
        "--retries",
        "3",
        "--reason",
        "bursty fleet",
    ]);
    cli.ok(&[
        "policy",
        "set",
        "--service",
        "demo",
        "--retry-backoff",
        "100ms",
    ]);
    cli.ok(&["policy", "set", "--key", "shared/x@1.0.0", "--retries", "5"]);
    cli.ok(&["record-crash", "shared/x@1.0.0"]);
    cli.ok(&["reset", "shared/x@1.0.0", "--reason", "hotfix deployed"]);
    cli
}

fn export(cli: &Cli) -> (String, Export) {
    let text = cli.ok(&["export"]);
    let doc = serde_json::from_str(&text).unwrap();
    (text, doc)
}

fn write_doc(cli: &Cli, name: &str, text: &str) -> String {
    let file = cli.tmp.dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_owned()
}

#[test]
fn export_carries_retries_overrides_and_the_audit_trail() {
    let cli = rich();
    let (_, doc) = export(&cli);
    assert_eq!(doc.policy.retries_per_window, 3);
    let policy: PolicyDoc = cli.json(0, &["policy"]);
    assert_eq!(
        doc.overrides, policy.overrides,
        "the same as `policy --json`"
    );
    assert_eq!(doc.overrides.len(), 2);
    let trail: Audit = cli.json(0, &["audit"]);
    assert_eq!(doc.audit.len(), trail.events.len());
    let seqs: Vec<u64> = trail.events.iter().map(|e| e.seq).collect();
    let exported: Vec<u64> = doc.audit.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs, exported,
        "`audit --json` and `export` number events alike"
    );
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let reasons: Vec<_> = doc
        .audit
        .iter()
        .filter_map(|e| e.reason.as_deref())
        .collect();
    assert_eq!(reasons, ["bursty fleet", "hotfix deployed"]);
    let reset = doc.audit.iter().find(|e| e.action == "reset").unwrap();
    assert_eq!(
        (reset.key.as_deref(), reset.scope.as_deref()),
        (Some("shared/x@1.0.0"), None)
    );
    assert!(
        doc.audit.windows(2).all(|w| w[0].seq < w[1].seq),
        "oldest first, by sequence number"
    );
}

#[test]
fn import_restores_every_part_but_never_the_audit_trail() {
    let cli = rich();
    let (text, doc) = export(&cli);
    let copy = Cli::new();
    let file = write_doc(&copy, "export.json", &text);
    let done: Import = copy.json(0, &["import", &file, "--reason", "new host"]);
    assert_eq!(
        (done.imported, done.overrides, done.new_store, done.changed),
        (3, Some(2), true, true)
    );
    assert_eq!(done.audit_events_not_imported, doc.audit.len());
    assert_eq!(done.policy.retries_per_window, 3);
    assert_eq!(
        copy.json::<PolicyDoc>(0, &["policy"]),
        cli.json::<PolicyDoc>(0, &["policy"])
    );
    let (_, again) = export(&copy);
    assert_eq!(again.entries, doc.entries);
    assert_eq!(again.overrides, doc.overrides);
    // The copy's trail records what happened to the copy: the import, and nothing forged.
    assert_eq!(again.audit.len(), 1, "{:?}", again.audit);
    let only = &again.audit[0];
    assert_eq!(
        (
            only.action.as_str(),
            only.scope.as_deref(),
            only.reason.as_deref()
        ),
        ("import", Some("all"), Some("new host"))
    );
    // The text report says what was left in the document.
    let third = Cli::new();
    let out = third.ok(&["import", &file]);
    assert!(
        out.contains(&format!(
            "note: the document's {} audit events were not imported",
            doc.audit.len()
        )),
        "{out}"
    );
    // A decision in the copy follows the restored key override (5 retries).
    for n in 1..=5 {
        let out = copy.run(&["record-crash", "shared/x@1.0.0"]);
        assert_eq!(out.status.code(), Some(0), "retry {n}: {}", describe(&out));
    }
    assert_eq!(
        copy.run(&["record-crash", "shared/x@1.0.0"]).status.code(),
        Some(1)
    );
}

#[test]
fn importing_a_stores_own_export_changes_nothing_and_needs_no_yes() {
    let cli = rich();
    let (text, _) = export(&cli);
    let file = write_doc(&cli, "self.json", &text);
    let trail: Audit = cli.json(0, &["audit"]);
    let done: Import = cli.json(0, &["import", &file]);
    assert!(!done.changed);
    assert_eq!(
        cli.json::<Audit>(0, &["audit"]).events.len(),
        trail.events.len(),
        "no event for no change"
    );
    let out = cli.ok(&["import", &file]);
    assert!(
        out.contains("already holds everything in the document: nothing written"),
        "{out}"
    );
    // A merge of it changes nothing either, and says so.
    let out = cli.ok(&["import", "--merge", &file, "--yes"]);
    assert!(out.contains("nothing written"), "{out}");
    assert_eq!(
        cli.json::<Audit>(0, &["audit"]).events.len(),
        trail.events.len()
    );
}

#[test]
fn a_replacing_import_replaces_the_overrides_and_asks_first() {
    let cli = rich();
    let (text, _) = export(&cli);
    let target = Cli::new();
    target.ok(&["policy", "set", "--service", "legacy", "--retries", "4"]);
    let file = write_doc(&target, "export.json", &text);
    let out = target.run(&["import", &file]);
    assert_error(
        &out,
        "1 override (service:legacy) that the import would replace",
    );
    assert!(
        stderr(&out).contains("pass --yes to let the document's win, or --merge"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        target.json::<PolicyDoc>(0, &["policy"]).overrides.len(),
        1,
        "a refused import changes nothing"
    );
    let done: Import = target.json(0, &["import", &file, "--yes"]);
    assert_eq!(done.overrides_replaced, 1);
    let scopes: Vec<String> = target
        .json::<PolicyDoc>(0, &["policy"])
        .overrides
        .into_iter()
        .map(|o| o.scope)
        .collect();
    assert_eq!(scopes, ["key:shared/x@1.0.0", "service:demo"]);
    // The target's own trail stays: its policy set first, then the import.
    let trail: Audit = target.json(0, &["audit"]);
    let actions: Vec<(&str, Option<&str>)> = trail
        .events
        .iter()
        .map(|e| (e.action.as_str(), e.scope.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("policy_set", Some("service:legacy")),
            ("import", Some("all"))
        ]
    );
}

#[test]
fn a_document_without_overrides_keeps_the_stores_and_says_so() {
    let cli = rich();
    let (text, _) = export(&cli);
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc.as_object_mut().unwrap().remove("overrides");
    doc["policy"]
        .as_object_mut()
        .unwrap()
        .remove("retries_per_window");
    let target = Cli::new();
    target.ok(&["policy", "set", "--retries", "4"]);
    target.ok(&["policy", "set", "--service", "legacy", "--retries", "2"]);
    let file = write_doc(&target, "bare.json", &doc.to_string());
    let out = target.ok(&["import", &file, "--yes"]);
    assert!(
        out.contains("note: the document carries no overrides; the store's stayed"),
        "{out}"
    );
    assert!(
        out.contains("note: the document gives no retries per window; the store's (4) stayed"),
        "{out}"
    );
    let policy = target.json::<PolicyDoc>(0, &["policy"]);
    assert_eq!(policy.retries_per_window, 4);
    assert_eq!(policy.overrides.len(), 1);
    assert_eq!(policy.overrides[0].scope, "service:legacy");
}

#[test]
fn a_merge_into_a_missing_store_keeps_the_reference_default() {
    let cli = rich();
    let (text, doc) = export(&cli);
    let target = Cli::new();
    let file = write_doc(&target, "doc.json", &text);
    let done: Import = target.json(0, &["import", "--merge", &file]);
    assert!(done.new_store && done.merged && done.changed);
    let policy = target.json::<PolicyDoc>(0, &["policy"]);
    assert_eq!(
        (policy.retry_backoff_ms, policy.retries_per_window),
        (250, 1),
        "a merge keeps the store's default, a new store's being the reference"
    );
    assert_eq!(
        policy.overrides, doc.overrides,
        "the document's overrides are added"
    );
    // A document policy over a day needs --yes only where it takes effect: not in a merge.
    let mut long: serde_json::Value = serde_json::from_str(&text).unwrap();
    long["policy"]["budget_window_ms"] = 2_592_000_000u64.into();
    let other = Cli::new();
    let file = write_doc(&other, "long.json", &long.to_string());
    other.ok(&["import", "--merge", &file]);
    let out = Cli::new().run(&["import", &file]);
    assert_error(&out, "over 1 day");
}

#[test]
fn a_merge_refusal_names_a_few_keys_and_counts_the_rest() {
    let cli = Cli::new();
    for i in 0..20 {
        cli.ok(&["record-crash", &format!("shared/s{i:02}@1.0.0")]);
    }
    let (text, _) = export(&cli);
    let file = write_doc(&cli, "all.json", &text);
    // Entries held exactly as the document has them are no conflict.
    let out = cli.ok(&["import", "--merge", &file]);
    assert!(out.contains("nothing written"), "{out}");
    // Nineteen that changed since, and one the store no longer has.
    cli.ok(&["reset", "shared/s19@1.0.0"]);
    for i in 0..19 {
        // A second crash in the window: refused (exit 1), and recorded.
        cli.expect(1, &["record-crash", &format!("shared/s{i:02}@1.0.0")]);
    }
    let out = cli.run(&["import", "--merge", &file]);
    assert_error(&out, "19 entries the store holds otherwise");
    let err = stderr(&out);
    assert!(
        err.contains("shared/s04@1.0.0 and 14 more") && !err.contains("shared/s05@1.0.0"),
        "{err}"
    );
    assert!(err.contains("pass --yes"), "{err}");
}

#[test]
fn a_merge_adds_overrides_and_refuses_another_policy_for_a_scope_unless_asked() {
    let cli = rich();
    let (text, _) = export(&cli);
    let target = Cli::new();
    target.ok(&["policy", "set", "--budget-window", "1m"]);
    target.ok(&["policy", "set", "--service", "demo", "--retries", "9"]);
    target.ok(&["policy", "set", "--service", "keep", "--retries", "2"]);
    let file = write_doc(&target, "export.json", &text);
    let before = target.json::<PolicyDoc>(0, &["policy"]);
    let out = target.run(&["import", "--merge", &file]);
    assert_error(&out, "1 override stored with another policy (service:demo)");
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    assert_eq!(target.json::<PolicyDoc>(0, &["policy"]), before);

    let done: Import = target.json(0, &["import", "--merge", "--yes", &file]);
    assert_eq!(done.overrides_overwritten, ["service:demo"]);
    assert!(done.merged);
    let after = target.json::<PolicyDoc>(0, &["policy"]);
    assert_eq!(
        (after.budget_window_ms, after.retries_per_window),
        (60_000, 1),
        "a merge keeps the store's default policy"
    );
    let scopes: Vec<(String, u32)> = after
        .overrides
        .into_iter()
        .map(|o| (o.scope, o.retries_per_window))
        .collect();
    assert_eq!(
        scopes,
        [
            ("key:shared/x@1.0.0".to_owned(), 5),
            ("service:demo".to_owned(), 3),
            ("service:keep".to_owned(), 2)
        ],
        "the document's win where asked; the store's others stay"
    );
}

#[test]
fn a_version_1_document_keeps_the_stores_retries_and_overrides() {
    let cli = rich();
    let (_, doc) = export(&cli);
    let v1 = serde_json::json!({
        "format": "recovery-store-export",
        "version": 1,
        "policy": {"retry_backoff_ms": 250, "budget_window_ms": 30000},
        "entries": [{
            "key": doc.entries[0].key,
            "window_started_at": {"unix_ms": 1000},
            "crashes_in_window": 1,
            "last_crash": {"unix_ms": 2000},
            "total_crashes": 1
        }]
    });
    let file = write_doc(&cli, "v1.json", &v1.to_string());
    cli.ok(&["import", &file, "--yes"]);
    let policy = cli.json::<PolicyDoc>(0, &["policy"]);
    assert_eq!(policy.retries_per_window, 3, "{policy:?}");
    assert_eq!(policy.overrides.len(), 2, "{policy:?}");
    assert_eq!(cli.json::<List>(0, &["list"]).entries.len(), 1);
}

#[test]
fn bad_overrides_and_audit_events_are_named_and_change_nothing() {
    let cli = rich();
    let (text, _) = export(&cli);
    let good: serde_json::Value = serde_json::from_str(&text).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            edit(&|v| v["policy"]["retries_per_window"] = 0.into()),
            "`policy.retries_per_window`",
        ),
        (
            edit(&|v| v["overrides"][0]["scope"] = "host:x".into()),
            "`overrides[0]`.scope",
        ),
        (
            edit(&|v| v["overrides"][1]["retries_per_window"] = 101.into()),
            "the override for service:demo",
        ),
        (
            edit(&|v| v["overrides"][1] = v["overrides"][0].clone()),
            "appears more than once",
        ),
        (
            edit(&|v| v["audit"][0]["action"] = "delete".into()),
            "not an audit action",
        ),
        (
            edit(&|v| v["audit"][0]["scope"] = serde_json::Value::Null),
            "`audit[0]`",
        ),
        (
            edit(&|v| {
                v["entries"][0]["history"] = serde_json::json!([
                    {"at": {"unix_ms": 1}, "exit_code": 1, "signal": null, "pid": 1, "uid": 0},
                    {"at": {"unix_ms": 2}, "exit_code": 1, "signal": null, "pid": 1, "uid": 0},
                ])
            }),
            "more than the 1 it can hold",
        ),
    ];
    let before = cli.ok(&["export"]);
    let strip = |t: &str| {
        let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
        v["exported_at"] = serde_json::Value::Null;
        v
    };
    for (i, (doc, needle)) in cases.iter().enumerate() {
        let file = write_doc(&cli, &format!("bad{i}.json"), doc);
        let out = cli.run(&["import", &file, "--yes"]);
        assert_error(&out, needle);
        assert!(
            stderr(&out).contains("fix the document"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(strip(&cli.ok(&["export"])), strip(&before));
}
