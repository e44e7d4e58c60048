//! `list`, `show` and `status`: pinned human output and the JSON schema.

use super::*;

#[test]
fn list_is_an_aligned_table_in_key_order() {
    let cli = populated();
    let now = at(T5);
    let table = cli.ok(&with_now(&now, &["list"]));
    assert_eq!(
        table,
        "\
KEY                         STATE       CRASHES  LAST CRASH  LAST EXIT  RETRY AFTER / WINDOW ENDS
shared/demo@1.0.0           refused     2/2      4s ago      -          retry in 25s
private:svc/svc@1.0.0#9f2c  recovering  1/1      3s ago      -          window ends in 27s
explicit:ci/old@1.0.0       healthy     0/1      1m05s ago   -          window ended 35s ago
"
    );
    let by_key = cli.ok(&with_now(&now, &["list", "--sort", "key"]));
    let keys: Vec<&str> = by_key
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "explicit:ci/old@1.0.0",
            "private:svc/svc@1.0.0#9f2c",
            "shared/demo@1.0.0"
        ]
    );
    let refused = cli.ok(&with_now(&now, &["list", "--refused"]));
    assert_eq!(refused.lines().count(), 2, "{refused}");
    assert!(refused.contains("shared/demo@1.0.0"));
    let shared = cli.ok(&with_now(&now, &["list", "--instance", "shared"]));
    assert_eq!(
        shared.lines().nth(1).unwrap().split_whitespace().next(),
        Some("shared/demo@1.0.0")
    );
    assert_eq!(shared.lines().count(), 2);
    let svc = cli.ok(&with_now(&now, &["list", "--service", "svc"]));
    assert!(
        svc.contains("private:svc/svc@1.0.0#9f2c") && svc.lines().count() == 2,
        "{svc}"
    );
    let none = cli.ok(&with_now(&now, &["list", "--service", "nothing"]));
    assert_eq!(none, "no backend matches\n");
}

#[test]
fn list_json_follows_the_schema() {
    let cli = populated();
    let now = at(T5);
    let doc: List = cli.json(0, &with_now(&now, &["list"]));
    assert_eq!(doc.store, cli.path().to_str().unwrap());
    assert_eq!(
        doc.now,
        Time {
            rfc3339: "2026-01-01T00:00:05.000Z".into(),
            unix_ms: 1_767_225_605_000
        }
    );
    assert!(doc.damaged.is_empty());
    let keys: Vec<&str> = doc.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "explicit:ci/old@1.0.0",
            "private:svc/svc@1.0.0#9f2c",
            "shared/demo@1.0.0"
        ]
    );
    let demo = &doc.entries[2];
    assert_eq!(
        (
            demo.instance.as_str(),
            demo.service.as_str(),
            demo.version.as_str()
        ),
        ("shared", "demo", "1.0.0")
    );
    assert_eq!(demo.state, "refused");
    assert_eq!((demo.crashes_in_window, demo.total_crashes), (2, 2));
    assert_eq!(demo.window_started_at.unix_ms, 1_767_225_600_000);
    assert_eq!(demo.last_crash.rfc3339, "2026-01-01T00:00:01.000Z");
    assert_eq!(demo.window_ends_at.rfc3339, "2026-01-01T00:00:30.000Z");
    assert_eq!(
        (demo.window_remaining_ms, demo.retry_after_ms),
        (25_000, Some(25_000))
    );
    assert_eq!(demo.exe_hash, None);
    let svc = &doc.entries[1];
    assert_eq!(
        (svc.state.as_str(), svc.retry_after_ms),
        ("recovering", None)
    );
    assert_eq!(svc.exe_hash.as_deref(), Some("9f2c"));
    assert_eq!(svc.instance, "private:svc");
    let old = &doc.entries[0];
    assert_eq!(
        (old.state.as_str(), old.window_remaining_ms),
        ("healthy", 0)
    );
    let refused: List = cli.json(0, &with_now(&now, &["list", "--refused"]));
    assert_eq!(refused.entries.len(), 1);
}

#[test]
fn show_prints_every_field() {
    let cli = populated();
    let now = at(T5);
    // The history's PID column names the recording process: checked apart.
    let shown = cli.ok(&with_now(&now, &["show", "shared/demo@1.0.0"]));
    let (fields, history) = shown.split_once("crash history").expect("a history table");
    let rows: Vec<(&str, &str)> = history
        .lines()
        .skip(1)
        .map(|l| l.trim_end().rsplit_once(' ').unwrap())
        .collect();
    assert_eq!(
        rows.iter()
            .map(|(row, _)| row.trim_end())
            .collect::<Vec<_>>(),
        [
            "  TIME                               EXIT",
            "  2026-01-01T00:00:00.000Z (5s ago)  -",
            "  2026-01-01T00:00:01.000Z (4s ago)  -",
        ]
    );
    assert_eq!(rows[0].1, "PID");
    assert!(
        rows[1..].iter().all(|(_, pid)| pid.parse::<u32>().is_ok()),
        "{history}"
    );
    assert!(
        history.starts_with(" (last 2, oldest first):\n"),
        "{history}"
    );
    assert_eq!(
        fields,
        "\
key:               shared/demo@1.0.0
instance:          shared
service:           demo
version:           1.0.0
executable hash:   -
state:             refused
may start:         no, retry after 25s
crashes in window: 2
total crashes:     2
window started:    2026-01-01T00:00:00.000Z (5s ago)
last crash:        2026-01-01T00:00:01.000Z (4s ago)
window ends:       2026-01-01T00:00:30.000Z (in 25s)
policy:            retry backoff 250ms, budget window 30s
"
    );
    assert_eq!(
        cli.ok(&with_now(&now, &["show", "shared/never@2.0.0"])),
        "\
key:             shared/never@2.0.0
instance:        shared
service:         never
version:         2.0.0
executable hash: -
state:           healthy (no recorded state for this key)
may start:       yes
policy:          retry backoff 250ms, budget window 30s
"
    );
    let doc: Show = cli.json(0, &with_now(&now, &["show", "private:svc/svc@1.0.0#9f2c"]));
    assert_eq!(
        (doc.key.as_str(), doc.state.as_str()),
        ("private:svc/svc@1.0.0#9f2c", "recovering")
    );
    assert_eq!(
        doc.policy,
        StoredPolicy {
            retry_backoff_ms: 250,
            budget_window_ms: 30_000,
            retries_per_window: 1
        }
    );
    assert_eq!(doc.now.unix_ms, 1_767_225_605_000);
    let entry = doc.entry.expect("entry");
    assert_eq!(
        (entry.window_remaining_ms, entry.crashes_in_window),
        (27_000, 1)
    );
    let none: Show = cli.json(0, &with_now(&now, &["show", "shared/never@2.0.0"]));
    assert!(none.entry.is_none() && none.state == "healthy");
}

#[test]
fn status_answers_in_one_line_and_its_exit_code() {
    let cli = populated();
    let now = at(T5);
    let run = |key: &str, code| cli.expect(code, &with_now(&now, &["status", key]));
    assert_eq!(
        run("shared/demo@1.0.0", 1),
        "shared/demo@1.0.0: refused (backend unavailable): retry after 25s; after a repair, \
         `recovery-store reset shared/demo@1.0.0` lets it start now; `recovery-store run --wait` \
         waits for the window instead\n"
    );
    assert_eq!(
        run("private:svc/svc@1.0.0#9f2c", 0),
        "private:svc/svc@1.0.0#9f2c: recovering (1 crash in the window, which ends in 27s): may start now\n"
    );
    assert_eq!(
        run("explicit:ci/old@1.0.0", 0),
        "explicit:ci/old@1.0.0: healthy: may start now (its last window has ended)\n"
    );
    assert_eq!(
        run("shared/never@1.0.0", 0),
        "shared/never@1.0.0: healthy: may start now (no recorded state for this key)\n"
    );
    assert_eq!(
        run("shared/demo@1.0.1", 0),
        "shared/demo@1.0.1: healthy: may start now (no recorded state for this key; similar \
         keys with state: shared/demo@1.0.0)\n"
    );
    let doc: Status = cli.json(1, &with_now(&now, &["status", "shared/demo@1.0.0"]));
    assert_eq!(
        (doc.key.as_str(), doc.state.as_str(), doc.may_start),
        ("shared/demo@1.0.0", "refused", false)
    );
    assert_eq!(
        (
            doc.crashes_in_window,
            doc.retry_after_ms,
            doc.window_remaining_ms
        ),
        (2, Some(25_000), Some(25_000))
    );
    assert_eq!(doc.now.rfc3339, "2026-01-01T00:00:05.000Z");
    let doc: Status = cli.json(0, &with_now(&now, &["status", "explicit:ci/old@1.0.0"]));
    assert_eq!(
        (doc.state.as_str(), doc.may_start, doc.crashes_in_window),
        ("healthy", true, 0)
    );
    assert!(doc.recorded && doc.total_crashes == 1);
    assert_eq!(
        (doc.retry_after_ms, doc.window_remaining_ms),
        (None, Some(0)),
        "as `list` shows an ended window"
    );
    let doc: Status = cli.json(0, &with_now(&now, &["status", "shared/demo@1.0.1"]));
    assert!(!doc.recorded && doc.matches.is_empty());
    assert_eq!(doc.similar, ["shared/demo@1.0.0"]);
    assert_eq!((doc.retry_after_ms, doc.window_remaining_ms), (None, None));
}
