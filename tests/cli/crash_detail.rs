//! Crash detail on the command line: `record-crash --exit-code/--signal`, `run` recording how
//! its child ended, `show`'s history table and `entry.history`, `list`'s LAST EXIT column, and
//! export version 2 carrying the history through `import`.

use super::schema::{Export, List, Show};
use super::*;

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[test]
fn record_crash_keeps_the_exit_code_or_signal() {
    let cli = Cli::new();
    let key = "shared/svc@1.0.0";
    cli.ok(&with_now(
        &at(T0),
        &["record-crash", key, "--exit-code", "3"],
    ));
    cli.expect(
        1,
        &with_now(
            &at("2026-01-01T00:00:01Z"),
            &["record-crash", key, "--signal", "9"],
        ),
    );
    cli.expect(
        1,
        &with_now(&at("2026-01-01T00:00:02Z"), &["record-crash", key]),
    );
    let show: Show = cli.json(0, &["show", key]);
    let history = show
        .entry
        .unwrap()
        .history
        .expect("show carries the history");
    let exits: Vec<_> = history.iter().map(|c| (c.exit_code, c.signal)).collect();
    assert_eq!(exits, [(Some(3), None), (None, Some(9)), (None, None)]);
    assert_eq!(history[0].at.rfc3339, "2026-01-01T00:00:00.000Z");
    for crash in &history {
        assert_eq!(crash.uid, Some(uid()));
        assert!(crash.pid.is_some_and(|p| p != std::process::id()));
    }
    // The list's LAST EXIT is the newest crash's; `list --json` has no history.
    let table = cli.ok(&["list"]);
    assert!(
        table.lines().next().unwrap().contains("LAST EXIT"),
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains("  -  "), "{table}");
    cli.ok(&["reset", key]);
    cli.ok(&["record-crash", key, "--signal", "9"]);
    assert!(cli.ok(&["list"]).contains("SIGKILL"));
    assert!(cli.json::<List>(0, &["list"]).entries[0].history.is_none());
    let shown = cli.ok(&["show", key]);
    assert!(
        shown.contains("crash history (last 1, oldest first):"),
        "{shown}"
    );
    assert!(shown.contains("SIGKILL"), "{shown}");
}

#[test]
fn exit_details_out_of_range_or_together_are_refused() {
    let cli = Cli::new();
    for args in [
        &["record-crash", "shared/a@1.0.0", "--exit-code", "256"][..],
        &["record-crash", "shared/a@1.0.0", "--exit-code", "-1"],
        &["record-crash", "shared/a@1.0.0", "--signal", "0"],
        &[
            "record-crash",
            "shared/a@1.0.0",
            "--signal",
            "9",
            "--exit-code",
            "1",
        ],
    ] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    }
    assert!(!cli.path().exists(), "nothing was recorded");
}

#[test]
fn run_records_how_its_child_ended() {
    let cli = Cli::new();
    cli.ok(&["policy", "set", "--retry-backoff", "10ms"]);
    let out = cli.run(&["run", "shared/exits@1.0.0", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let out = cli.run(&["run", "shared/killed@1.0.0", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    for (key, expected) in [
        ("shared/exits@1.0.0", (Some(7), None)),
        ("shared/killed@1.0.0", (None, Some(9))),
    ] {
        let history = cli
            .json::<Show>(0, &["show", key])
            .entry
            .unwrap()
            .history
            .unwrap();
        assert_eq!(history.len(), 2, "{key}");
        assert!(
            history.iter().all(|c| (c.exit_code, c.signal) == expected),
            "{key}: {history:?}"
        );
    }
    let table = cli.ok(&["list", "--sort", "key"]);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert!(
        rows[0].contains("code 7") && rows[1].contains("SIGKILL"),
        "{table}"
    );
}

#[test]
fn export_version_2_carries_the_history_through_import() {
    let cli = Cli::new();
    cli.ok(&["record-crash", "shared/a@1.0.0", "--exit-code", "4"]);
    cli.ok(&["record-crash", "shared/b@1.0.0"]);
    let text = cli.ok(&["export"]);
    let doc: Export = serde_json::from_str(&text).unwrap();
    assert_eq!(doc.version, 2);
    assert_eq!(doc.entries[0].history.len(), 1);
    assert_eq!(doc.entries[0].history[0].exit_code, Some(4));
    let saved = cli.path().with_extension("json");
    std::fs::write(&saved, &text).unwrap();
    let fresh = Cli::new();
    fresh.ok(&["import", saved.to_str().unwrap()]);
    let again: Export = serde_json::from_str(&fresh.ok(&["export"])).unwrap();
    assert_eq!(again.entries, doc.entries);
    // A version 1 document (no history) still imports; its entries start with none.
    let v1 = text.replace("\"version\": 2", "\"version\": 1");
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    let mut v1 = v1;
    for entry in v1["entries"].as_array_mut().unwrap() {
        entry.as_object_mut().unwrap().remove("history");
    }
    // What version 2 added: a version 1 document carrying any of it is refused.
    for field in ["overrides", "audit"] {
        v1.as_object_mut().unwrap().remove(field);
    }
    v1["policy"]
        .as_object_mut()
        .unwrap()
        .remove("retries_per_window");
    std::fs::write(&saved, v1.to_string()).unwrap();
    let old = Cli::new();
    old.ok(&["import", saved.to_str().unwrap()]);
    let show: Show = old.json(0, &["show", "shared/a@1.0.0"]);
    let entry = show.entry.unwrap();
    assert_eq!(entry.total_crashes, 1);
    assert_eq!(entry.history, Some(Vec::new()));
}
