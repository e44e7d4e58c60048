//! `record-crash`, `record-success`, `reset`, `prune` and `policy`.

use super::*;

#[test]
fn record_crash_and_success_print_the_decision() {
    let cli = Cli::new();
    let now = at(T0);
    let key = "shared/a@1.0.0";
    assert_eq!(
        cli.ok(&with_now(&now, &["record-crash", key])),
        "shared/a@1.0.0: crash recorded: retry after 250ms (attempt 1)\n"
    );
    let later = at("2026-01-01T00:00:10Z");
    let doc: RecordCrash = cli.json(1, &with_now(&later, &["record-crash", key]));
    assert_eq!((doc.key.as_str(), doc.decision.as_str()), (key, "refuse"));
    assert_eq!((doc.retry_after_ms, doc.attempt), (20_000, None));
    assert_eq!(doc.reason.as_deref(), Some("backend_unavailable"));
    assert_eq!(doc.at.rfc3339, "2026-01-01T00:00:10.000Z");
    assert_eq!(doc.crashed_at, doc.at);
    let out = cli.expect(1, &with_now(&later, &["record-crash", key]));
    assert_eq!(
        out,
        "shared/a@1.0.0: crash recorded: refused (backend unavailable), retry after 20s; after a \
         repair, `recovery-store reset shared/a@1.0.0` lets it start now; `recovery-store run \
         --wait` waits for the window instead\n"
    );

    let doc: RecordSuccess = cli.json(0, &["record-success", key]);
    assert!(doc.cleared && doc.key == key);
    assert_eq!(
        cli.ok(&["record-success", key]),
        "shared/a@1.0.0: success recorded: it had no recovery state\n"
    );
    let doc: RecordCrash = cli.json(0, &["record-crash", key]);
    assert_eq!(
        (doc.decision.as_str(), doc.attempt, doc.retry_after_ms),
        ("retry", Some(1), 250)
    );
    assert_eq!(doc.reason, None);
    assert_eq!(
        cli.ok(&["record-success", key]),
        "shared/a@1.0.0: success recorded: its recovery state was cleared\n"
    );
}

#[test]
fn reset_forms_say_what_they_cleared() {
    let cli = populated();
    let out = cli.run(&["reset", "--all"]);
    assert_error(&out, "without --yes");
    assert_eq!(
        cli.json::<List>(0, &["list"]).entries.len(),
        3,
        "--all without --yes cleared nothing"
    );

    assert_eq!(
        cli.ok(&["reset", "shared/demo@1.0.0", "shared/none@1.0.0"]),
        "cleared shared/demo@1.0.0\nno state for shared/none@1.0.0\n"
    );
    assert_eq!(
        cli.ok(&["reset", "shared/demo@1.0.0"]),
        "no state for shared/demo@1.0.0\n"
    );
    assert_eq!(
        cli.ok(&["reset", "--service", "svc", "--instance", "shared"]),
        "nothing to reset: no entry for service svc under shared\n"
    );
    let doc: Reset = cli.json(0, &["reset", "--service", "svc"]);
    assert_eq!(doc.cleared, ["private:svc/svc@1.0.0#9f2c"]);
    let doc: Reset = cli.json(0, &["reset", "--all", "--yes"]);
    assert_eq!(doc.cleared, ["explicit:ci/old@1.0.0"]);
    assert_eq!(
        cli.ok(&["reset", "--all", "--yes"]),
        "nothing to reset: the store is empty\n"
    );
    assert_eq!(
        cli.ok(&["list"]),
        format!(
            "no backend has recovery state in {}\n",
            cli.path().display()
        )
    );

    let fresh = Cli::new();
    assert_error(&fresh.run(&["reset", "--all"]), "--yes");
    assert!(!fresh.path().exists(), "a refused reset creates nothing");
}

#[test]
fn prune_drops_ended_windows() {
    let cli = populated();
    let now = at(T5);
    assert_eq!(
        cli.ok(&with_now(&now, &["prune"])),
        "pruned 1 entry whose window had ended\n"
    );
    let doc: Prune = cli.json(0, &with_now(&now, &["prune"]));
    assert_eq!(doc.pruned, 0);
    assert_eq!(doc.now.unix_ms, 1_767_225_605_000);
    assert_eq!(doc.evaluated_at, doc.now);
    let later = at("2026-01-01T00:01:00Z");
    let doc: Prune = cli.json(0, &with_now(&later, &["prune"]));
    assert_eq!(doc.pruned, 2);
    assert!(cli.json::<List>(0, &["list"]).entries.is_empty());
}

#[test]
fn policy_shows_and_sets() {
    let cli = Cli::new();
    assert_error(&cli.run(&["policy"]), "no recovery store");
    assert_eq!(
        cli.ok(&[
            "policy",
            "set",
            "--retry-backoff",
            "10ms",
            "--budget-window",
            "5s"
        ]),
        "retry backoff: 250ms → 10ms\nbudget window: 30s → 5s\n\
         retries per window: 1 (unchanged)\n\
         windows already running are judged by the new policy from their next decision\n"
    );
    assert_eq!(
        cli.ok(&["policy"]),
        "retry backoff: 10ms\nbudget window: 5s\nretries per window: 1\n"
    );
    let doc: PolicySet = cli.json(0, &["policy", "set", "--budget-window", "1m"]);
    assert_eq!(
        doc,
        PolicySet {
            scope: "default".into(),
            retry_backoff_ms: 10,
            budget_window_ms: 60_000,
            retries_per_window: 1,
            previous: StoredPolicy {
                retry_backoff_ms: 10,
                budget_window_ms: 5_000,
                retries_per_window: 1
            },
            previous_damaged: None,
        }
    );
    let doc: PolicyDoc = cli.json(0, &["policy"]);
    assert_eq!(
        doc,
        PolicyDoc {
            retry_backoff_ms: 10,
            budget_window_ms: 60_000,
            retries_per_window: 1,
            overrides: vec![],
            damaged: vec![],
        }
    );
    let doc: RecordCrash = cli.json(0, &["record-crash", "shared/a@1.0.0"]);
    assert_eq!(doc.retry_after_ms, 10, "the new policy decides");
}

#[test]
fn policy_set_of_the_stored_policy_says_nothing_changed() {
    let cli = Cli::new();
    cli.ok(&["record-crash", "shared/a@1.0.0"]);
    let text = cli.ok(&[
        "policy",
        "set",
        "--budget-window",
        "30s",
        "--retry-backoff",
        "250ms",
    ]);
    assert!(
        text.contains("the policy is unchanged: nothing was written"),
        "{text}"
    );
    assert!(!text.contains("judged by the new policy"), "{text}");
}

#[test]
fn policy_set_retries_allows_n_retries_per_window() {
    let cli = Cli::new();
    for (bad, needle) in [
        ("0", "0 retries per window is outside 1..=100"),
        ("101", "101 retries per window is outside 1..=100"),
        ("two", "is not a count of retries"),
    ] {
        let out = cli.run(&["policy", "set", "--retries", bad]);
        assert_error(&out, needle);
        assert!(!cli.path().exists(), "a refused policy creates no store");
    }
    let doc: PolicySet = cli.json(0, &["policy", "set", "--retries", "3"]);
    assert_eq!(
        doc,
        PolicySet {
            scope: "default".into(),
            retry_backoff_ms: 250,
            budget_window_ms: 30_000,
            retries_per_window: 3,
            previous: StoredPolicy {
                retry_backoff_ms: 250,
                budget_window_ms: 30_000,
                retries_per_window: 1
            },
            previous_damaged: None,
        }
    );
    assert_eq!(
        cli.ok(&["policy"]),
        "retry backoff: 250ms\nbudget window: 30s\nretries per window: 3\n"
    );
    // A timing change keeps the retries.
    let text = cli.ok(&["policy", "set", "--budget-window", "1m"]);
    assert!(text.contains("retries per window: 3 (unchanged)"), "{text}");
    assert_eq!(cli.json::<PolicyDoc>(0, &["policy"]).retries_per_window, 3);
    for attempt in 1..=3 {
        let doc: RecordCrash = cli.json(0, &["record-crash", "shared/a@1.0.0"]);
        assert_eq!(
            (doc.decision.as_str(), doc.attempt),
            ("retry", Some(attempt))
        );
        let show: Show = cli.json(0, &["show", "shared/a@1.0.0"]);
        assert_eq!(show.state, "recovering");
        assert_eq!(show.policy.retries_per_window, 3);
    }
    let doc: RecordCrash = cli.json(1, &["record-crash", "shared/a@1.0.0"]);
    assert_eq!(doc.decision, "refuse");
    assert!(
        cli.ok(&["show", "shared/a@1.0.0"])
            .contains("3 retries per window")
    );
    let doc: PolicySet = cli.json(0, &["policy", "set", "--retries", "1"]);
    assert_eq!(doc.previous.retries_per_window, 3);
    assert_eq!(doc.retries_per_window, 1);
}

#[test]
fn policy_set_of_the_reference_policy_creates_no_store_and_a_change_records_its_event() {
    let cli = Cli::new();
    let out = cli.ok(&[
        "policy",
        "set",
        "--retries",
        "1",
        "--retry-backoff",
        "250ms",
    ]);
    assert!(out.contains("nothing was written"), "{out}");
    assert!(!cli.path().exists(), "nothing to record, so no store");
    cli.ok(&["policy", "set", "--retries", "2", "--reason", "bursty"]);
    let trail: Audit = cli.json(0, &["audit"]);
    assert_eq!(
        trail.events.len(),
        1,
        "the new store's policy was chosen by someone"
    );
    assert_eq!(
        (
            trail.events[0].action.as_str(),
            trail.events[0].scope.as_deref(),
            trail.events[0].reason.as_deref()
        ),
        ("policy_set", Some("default"), Some("bursty"))
    );
}
