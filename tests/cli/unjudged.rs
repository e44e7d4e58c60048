//! Keys a damaged policy override would judge, as the commands that walk or name several keys
//! meet them: `prune` counts only the entries it actually left, `status` and `show` answer for
//! the matches they can judge and name the others, `list` (every form) says when it could not
//! judge an entry, `policy set --key` unblocks one key under a damaged service row, and
//! `policy set`/`unset` never show a damaged row's values as if they had been read.

use super::*;
use crate::cli::damaged_rows::{OTHER, ZC, crash, store_with_damaged_override};
use crate::damaged_rows::{GARBAGE, put_override};

const LATE: &str = "2026-02-01T00:00:00Z";

/// The damaged `service:zc` row is named (its remedy's wording is the library's).
fn names_zc_row(text: &str) {
    assert!(text.contains("policy override \"service:zc\""), "{text}");
}

#[test]
fn prune_exits_0_when_no_entry_was_left() {
    // A damaged row whose scope judges no key: a service name that is not valid.
    let cli = Cli::new();
    crash(&cli, T0, OTHER);
    put_override(cli.path(), b"service:Bad Name", GARBAGE);
    let now = at(LATE);
    let out = cli.run(&with_now(&now, &["--json", "prune"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc: Prune = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((doc.pruned, doc.left_unjudged), (1, 0));
    assert!(out.stderr.is_empty(), "{}", describe(&out));

    // A damaged service row shadowed by the key's own override: the key is judged, and pruned.
    let cli = Cli::new();
    crash(&cli, T0, ZC);
    cli.ok(&["policy", "set", "--key", ZC, "--retries", "2"]);
    cli.ok(&["policy", "set", "--service", "zc", "--retries", "5"]);
    put_override(cli.path(), b"service:zc", GARBAGE);
    let text = cli.expect(0, &with_now(&now, &["prune"]));
    assert_eq!(text, "pruned 1 entry whose window had ended\n");
    let left: List = cli.json(0, &with_now(&now, &["list"]));
    assert!(left.entries.is_empty() && left.damaged.is_empty());
}

#[test]
fn prune_counts_and_names_the_entries_it_left() {
    let cli = Cli::new();
    for v in 1..=4 {
        crash(&cli, T0, &format!("shared/zc@{v}.0.0"));
    }
    crash(&cli, T0, OTHER);
    put_override(cli.path(), b"service:zc", GARBAGE);
    let now = at(LATE);
    let out = cli.run(&with_now(&now, &["--json", "prune"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: Prune = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((doc.pruned, doc.left_unjudged), (1, 4));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line per damaged row: {err}");
    assert!(err.contains("left 4 entries"), "{err}");
    for v in 1..=3 {
        assert!(err.contains(&format!("shared/zc@{v}.0.0")), "{err}");
    }
    assert!(
        !err.contains("shared/zc@4.0.0"),
        "only the first few: {err}"
    );
    names_zc_row(&err);
}

/// One crash of `#00ff` (its key override then damaged), two of `#11aa` (refused).
fn two_hashes() -> Cli {
    let cli = Cli::new();
    crash(&cli, T0, "shared/hashy@1.0.0#00ff");
    crash(&cli, T0, "shared/hashy@1.0.0#11aa");
    crash(&cli, "2026-01-01T00:00:01Z", "shared/hashy@1.0.0#11aa");
    put_override(cli.path(), b"key:shared/hashy@1.0.0#00ff", GARBAGE);
    cli
}

#[test]
fn status_and_show_judge_the_matches_they_can_and_name_the_others() {
    let cli = two_hashes();
    let now = at("2026-01-01T00:00:02Z");
    let names_00ff = |text: &str| {
        assert!(
            text.contains("shared/hashy@1.0.0#00ff") && text.contains("cannot be judged"),
            "{text}"
        );
    };

    let out = cli.run(&with_now(&now, &["status", "shared/hashy@1.0.0"]));
    assert_eq!(out.status.code(), Some(1), "refused: {}", describe(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with("shared/hashy@1.0.0: refused"), "{line}");
    assert!(line.contains("#00ff not judged"), "{line}");
    names_00ff(&stderr(&out));

    let doc: Status = cli.json(1, &with_now(&now, &["status", "shared/hashy@1.0.0"]));
    assert_eq!(doc.state, "refused");
    assert_eq!(doc.matches, ["shared/hashy@1.0.0#11aa"]);
    assert_eq!(doc.unjudged.len(), 1);
    assert_eq!(doc.unjudged[0].key, "shared/hashy@1.0.0#00ff");
    names_00ff(&doc.unjudged[0].error);

    let out = cli.run(&with_now(&now, &["show", "shared/hashy@1.0.0"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("key:               shared/hashy@1.0.0#11aa"),
        "{text}"
    );
    assert!(text.contains("state:             refused"), "{text}");
    names_00ff(&text);
    let doc: Show = cli.json(0, &with_now(&now, &["show", "shared/hashy@1.0.0"]));
    assert_eq!(doc.state, "refused");
    assert_eq!(doc.matches.len(), 1);
    assert_eq!(doc.unjudged[0].key, "shared/hashy@1.0.0#00ff");

    // Named alone, the unjudged key still fails, naming its row.
    let out = cli.run(&with_now(&now, &["status", "shared/hashy@1.0.0#00ff"]));
    assert_error(&out, "\"key:shared/hashy@1.0.0#00ff\"");
}

#[test]
fn list_says_when_it_could_not_judge_what_it_filtered() {
    let cli = store_with_damaged_override();
    let now = at("2026-01-01T00:00:02Z");
    for args in [
        &["list", "-q"][..],
        &["list", "--refused"],
        &["list", "--state", "healthy"],
    ] {
        let out = cli.run(&with_now(&now, args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("entry {ZC} cannot be judged")),
            "{args:?}: {err}"
        );
        names_zc_row(&err);
    }
    let doc: List = cli.json(0, &with_now(&now, &["list", "--refused"]));
    assert_eq!(doc.entries.len(), 1);
    assert_eq!(doc.damaged.len(), 1, "{:?}", doc.damaged);
    assert_eq!(doc.damaged[0].key, ZC);
}

#[test]
fn list_with_every_entry_unjudged_says_so() {
    let cli = Cli::new();
    crash(&cli, T0, ZC);
    put_override(cli.path(), b"service:zc", GARBAGE);
    for args in [&["list"][..], &["list", "--service", "zc"]] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("could not be decoded or judged"),
            "{args:?}: {text}"
        );
        assert!(
            !text.contains("no backend has") && !text.contains("no backend matches"),
            "{text}"
        );
        assert!(stderr(&out).contains(ZC), "{}", describe(&out));
    }
}

#[test]
fn policy_json_names_every_damaged_row() {
    let cli = store_with_damaged_override();
    put_override(cli.path(), b"service:Bad Name", GARBAGE);
    let out = cli.run(&["--json", "policy"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: PolicyDoc = serde_json::from_slice(&out.stdout).unwrap();
    let scopes: Vec<&str> = doc.damaged.iter().map(|d| d.scope.as_str()).collect();
    assert_eq!(scopes, ["service:Bad Name", "service:zc"]);
    names_zc_row(&doc.damaged[1].error);
    let text = cli.expect(1, &["policy"]);
    assert!(text.contains("override service:zc: damaged"), "{text}");
}

#[test]
fn a_key_override_with_every_field_unblocks_a_key_under_a_damaged_service_row() {
    let cli = store_with_damaged_override();
    let out = cli.run(&["policy", "set", "--key", ZC, "--retries", "2"]);
    assert_error(
        &out,
        "give --retry-backoff/--budget-window/--retries, or repair service:zc first",
    );

    let doc: PolicySet = cli.json(
        0,
        &[
            "policy",
            "set",
            "--key",
            ZC,
            "--retry-backoff",
            "100ms",
            "--budget-window",
            "10s",
            "--retries",
            "2",
        ],
    );
    assert_eq!(
        (
            doc.retry_backoff_ms,
            doc.budget_window_ms,
            doc.retries_per_window
        ),
        (100, 10_000, 2)
    );
    assert_eq!(
        doc.previous.retries_per_window, 1,
        "the default, below the damaged row"
    );
    assert_eq!(doc.previous_damaged.as_deref(), Some("service:zc"));
    let now = at("2026-01-01T00:00:02Z");
    let status: Status = cli.json(0, &with_now(&now, &["status", ZC]));
    assert_eq!(status.policy_scope, format!("key:{ZC}"));

    // Text names the damaged row instead of showing values as unchanged.
    let text = cli.ok(&[
        "policy",
        "set",
        "--key",
        "shared/zc@2.0.0",
        "--retry-backoff",
        "100ms",
        "--budget-window",
        "10s",
        "--retries",
        "2",
    ]);
    assert!(
        text.contains("judged by the damaged override service:zc"),
        "{text}"
    );
    assert!(!text.contains("unchanged"), "{text}");

    // Unset again, the key falls back to the damaged row: warned.
    let out = cli.run(&["policy", "unset", "--key", ZC]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("warning") && err.contains(ZC), "{err}");
    names_zc_row(&err);
}

#[test]
fn policy_set_over_a_damaged_service_row_says_it_was_damaged() {
    let cli = store_with_damaged_override();
    let text = cli.ok(&["policy", "set", "--service", "zc", "--retries", "4"]);
    assert!(
        text.contains("replaces the damaged override service:zc"),
        "{text}"
    );
    assert!(!text.contains("unchanged"), "{text}");
    assert!(text.contains("retries per window: 4"), "{text}");
    // Now intact: a second set shows real previous values.
    let doc: PolicySet = cli.json(0, &["policy", "set", "--service", "zc", "--retries", "3"]);
    assert_eq!(doc.previous.retries_per_window, 4);
    assert_eq!(doc.previous_damaged, None);
}
