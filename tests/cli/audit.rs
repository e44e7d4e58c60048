//! `audit`, and `--reason` on `reset` and `policy set` (issue 12, "Audit trail").

use super::*;

const A: &str = "shared/zccache@1.11.20";
const B: &str = "private:ci/sccache@0.8.1";

fn events(cli: &Cli, args: &[&str]) -> Vec<AuditEvent> {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    cli.json::<Audit>(0, &all).events
}

#[test]
fn resets_and_policy_changes_are_listed_with_who_and_why() {
    let cli = Cli::new();
    cli.ok(&["record-crash", A]);
    cli.ok(&["record-crash", B]);
    cli.ok(&["reset", A, "--reason", "  hotfix deployed "]);
    cli.ok(&[
        "policy",
        "set",
        "--budget-window",
        "60s",
        "--reason",
        "flaky disk",
    ]);
    cli.ok(&["reset", "--service", "sccache"]);
    // Nothing to clear, nothing changed: no event.
    cli.ok(&["reset", A, "--reason", "again"]);
    cli.ok(&["policy", "set", "--budget-window", "60s"]);

    let all = events(&cli, &[]);
    type Row<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let seen: Vec<Row> = all
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.key.as_deref(),
                e.scope.as_deref(),
                e.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("reset", Some(A), None, Some("hotfix deployed")),
            ("policy_set", None, Some("default"), Some("flaky disk")),
            ("reset_scope", None, Some("service:sccache"), None),
        ]
    );
    let uid = rustix::process::getuid().as_raw();
    for e in &all {
        assert_eq!(e.uid, Some(uid));
        assert!(e.user.is_some());
        let pid = e.pid.expect("pid");
        assert_ne!(pid, std::process::id(), "the CLI's own PID, not the test's");
        assert!(e.at.rfc3339.ends_with('Z') && e.at.unix_ms > 0);
    }
    assert_ne!(all[0].pid, all[1].pid, "each command is its own process");

    let only_a = events(&cli, &["--key", A]);
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0].key.as_deref(), Some(A));
    assert!(events(&cli, &["--key", B]).is_empty());

    let table = cli.ok(&["audit"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for column in [
        "SEQ",
        "TIME",
        "ACTION",
        "KEY/SCOPE",
        "USER (UID)",
        "PID",
        "REASON",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(lines[1].starts_with("1 "), "numbered as in --json: {table}");
    assert!(lines[1].contains("reset") && lines[1].contains(A));
    assert!(lines[1].ends_with("hotfix deployed"), "{table}");
    assert!(lines[1].contains(&format!("({uid})")), "{table}");
    assert!(lines[3].contains("service:sccache") && lines[3].trim_end().ends_with('-'));
}

#[test]
fn every_reset_form_names_its_scope() {
    let cli = Cli::new();
    let reset = |args: &[&str]| {
        // A second crash in the window is refused (exit 1): either way there is state to clear.
        cli.run(&["record-crash", A]);
        cli.run(&["record-crash", B]);
        cli.ok(args);
    };
    reset(&["reset", "--all", "--yes", "--reason", "wipe"]);
    reset(&["reset", "--instance", "private:ci"]);
    reset(&["reset", A, B]);
    let scopes: Vec<(String, Option<String>, Option<String>)> = events(&cli, &[])
        .into_iter()
        .map(|e| (e.action, e.key, e.scope))
        .collect();
    let s = |t: &str| Some(t.to_owned());
    assert_eq!(
        scopes,
        [
            ("reset_scope".into(), None, s("all")),
            ("reset_scope".into(), None, s("instance:private:ci")),
            ("reset".into(), s(B), None),
            ("reset".into(), s(A), None),
        ]
    );
}

#[test]
fn audit_reads_without_creating_or_writing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recovery.redb");
    let out = command(&db, &["audit"]).output().unwrap();
    assert_error(&out, "no recovery store at");
    assert!(!db.exists(), "audit never creates a store");

    let cli = Cli::new();
    cli.ok(&["record-crash", A]);
    assert_eq!(cli.ok(&["audit"]).trim(), "no audit events");
    let before = std::fs::read(cli.path()).unwrap();
    cli.ok(&["audit", "--key", A]);
    assert_eq!(std::fs::read(cli.path()).unwrap(), before, "read-only");
}

#[test]
fn bad_reasons_and_keys_are_refused_before_anything_changes() {
    let cli = Cli::new();
    cli.ok(&["record-crash", A]);
    for (args, needle) in [
        (vec!["reset", A, "--reason", "  "], "the reason is empty"),
        (
            vec!["policy", "set", "--budget-window", "1m", "--reason", ""],
            "the reason is empty",
        ),
    ] {
        let out = cli.run(&args);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(stderr(&out).contains(needle), "{}", describe(&out));
    }
    let long = "x".repeat(1025);
    let out = cli.run(&["reset", A, "--reason", &long]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("over the 1024-byte limit"));
    let out = cli.run(&["audit", "--key", "not a key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(events(&cli, &[]).is_empty(), "nothing changed");
    assert!(cli.json::<Show>(0, &["show", A]).entry.is_some());
}
