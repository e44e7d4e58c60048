//! `check --drop-damaged`: the repair for override rows and audit events that cannot be
//! decoded, including rows whose scope no `policy unset` can name; and override values that
//! decode but that no store could have written count as damaged.

use super::*;
use crate::damaged_rows::{GARBAGE, damage_first_audit_event, put_override};

/// 250 ms backoff, 30 s window, 4,294,967,295 retries: decodes, but would retry forever.
const ENDLESS_RETRIES: &[u8] = &[
    0x80, 0xe5, 0x9a, 0x77, 0x80, 0xd8, 0x8e, 0xe1, 0x6f, 0xff, 0xff, 0xff, 0xff, 0x0f,
];
/// 250 ms backoff, 1 ns window, 1 retry: a backoff not shorter than the window.
const BACKOFF_OVER_WINDOW: &[u8] = &[0x80, 0xe5, 0x9a, 0x77, 0x01, 0x01];

const ZC: &str = "shared/zc@1.0.0";

#[test]
fn override_values_no_store_could_write_are_damaged_rows() {
    let cli = Cli::new();
    cli.ok(&["record-crash", ZC]);
    cli.ok(&["policy", "set", "--service", "zc", "--retries", "5"]);
    put_override(cli.path(), b"service:zc", ENDLESS_RETRIES);
    put_override(cli.path(), b"service:other", BACKOFF_OVER_WINDOW);
    let doc: Check = cli.json(1, &["check"]);
    assert_eq!(
        doc.overrides,
        Some(RowCount { ok: 0, damaged: 2 }),
        "{:?}",
        doc.problems
    );
    assert!(
        doc.problems.iter().any(|p| p.contains("out of range")),
        "{:?}",
        doc.problems
    );
    // The key it would judge is never judged by the default instead.
    let out = cli.run(&["record-crash", ZC]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("service:zc"), "{}", stderr(&out));
}

#[test]
fn drop_damaged_removes_rows_no_other_command_can_name() {
    let cli = Cli::new();
    cli.ok(&["record-crash", ZC]);
    cli.ok(&["reset", ZC, "--reason", "first event"]);
    cli.ok(&["policy", "set", "--service", "good", "--retries", "3"]);
    // A scope with an escape sequence and one that is not UTF-8: neither can be typed.
    put_override(cli.path(), b"service:\x1b[31mEVIL\x1b[0m", GARBAGE);
    put_override(cli.path(), b"service:zc\xff", GARBAGE);
    let seq = damage_first_audit_event(cli.path());

    let out = cli.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "escape reached the terminal: {text:?}"
    );
    assert!(text.contains("check --drop-damaged"), "{text}");
    assert!(
        !text.contains("policy unset --service"),
        "no advice that cannot work: {text}"
    );

    let out = cli.run(&["check", "--drop-damaged"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "escape reached the terminal: {text:?}"
    );
    assert!(
        text.contains("dropped:   damaged policy override service:\\x1b[31mEVIL"),
        "{text}"
    );
    assert!(
        text.contains(&format!("dropped:   damaged audit event(s) {seq}")),
        "{text}"
    );
    assert!(text.ends_with("no problems found\n"), "{text}");

    // The intact override stays; the repair is itself in the trail.
    let policy: PolicyDoc = cli.json(0, &["policy"]);
    let scopes: Vec<&str> = policy.overrides.iter().map(|o| o.scope.as_str()).collect();
    assert_eq!(scopes, ["service:good"]);
    let trail: Audit = cli.json(0, &["audit"]);
    let last = trail.events.last().unwrap();
    assert_eq!(last.action, "reset_scope");
    assert!(
        last.scope
            .as_deref()
            .is_some_and(|s| s.starts_with("damaged:") && s.contains(&format!("audit#{seq}"))),
        "{last:?}"
    );

    // Nothing left: nothing written, and --json says so.
    let before = trail.events.len();
    let doc: Check = cli.json(0, &["check", "--drop-damaged"]);
    assert_eq!(
        doc.dropped,
        Some(Dropped {
            overrides: Vec::new(),
            audit_events: Vec::new()
        })
    );
    assert_eq!(doc.audit.map(|a| a.damaged), Some(0));
    assert_eq!(cli.json::<Audit>(0, &["audit"]).events.len(), before);
}

#[test]
fn a_merge_over_a_damaged_override_calls_it_damaged() {
    let source = Cli::new();
    source.ok(&["policy", "set", "--service", "zc", "--retries", "5"]);
    let doc = source.ok(&["export"]);
    let target = Cli::new();
    target.ok(&["policy", "set", "--service", "zc", "--retries", "2"]);
    put_override(target.path(), b"service:zc", GARBAGE);
    let file = target.tmp.dir.path().join("doc.json");
    std::fs::write(&file, doc).unwrap();
    let file = file.to_str().unwrap();
    let out = target.run(&["import", "--merge", file]);
    assert_error(&out, "1 override stored damaged (service:zc)");
    assert!(!stderr(&out).contains("another policy"), "{}", stderr(&out));
    // With --yes the document's row replaces the damaged one.
    target.ok(&["import", "--merge", "--yes", file]);
    assert!(target.ok(&["check"]).contains("no problems found"));
}
