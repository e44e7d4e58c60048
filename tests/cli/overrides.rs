//! `policy set --service/--key`, `policy unset`: per-service and per-key policies, the most
//! specific deciding, named by `show` and `status`, and kept in the audit trail.

use super::*;

const A: &str = "shared/zc@1.0.0";
const B: &str = "private:zc/zc@2.0.0";
const OTHER: &str = "shared/other@1.0.0";

#[test]
fn the_most_specific_policy_decides_and_is_named() {
    let cli = Cli::new();
    // A service override on a missing store creates it with the default policy.
    let doc: PolicySet = cli.json(
        0,
        &[
            "policy",
            "set",
            "--service",
            "zc",
            "--retries",
            "2",
            "--reason",
            "bursty",
        ],
    );
    assert_eq!(
        doc,
        PolicySet {
            scope: "service:zc".into(),
            retry_backoff_ms: 250,
            budget_window_ms: 30_000,
            retries_per_window: 2,
            previous: StoredPolicy {
                retry_backoff_ms: 250,
                budget_window_ms: 30_000,
                retries_per_window: 1
            },
            previous_damaged: None,
        }
    );
    // A key override takes its unspecified fields from the policy applying to the key now
    // (the service's).
    let doc: PolicySet = cli.json(0, &["policy", "set", "--key", A, "--retry-backoff", "5ms"]);
    assert_eq!(
        (doc.scope.as_str(), doc.retry_backoff_ms),
        ("key:shared/zc@1.0.0", 5)
    );
    assert_eq!(doc.retries_per_window, 2, "taken from the service override");
    assert_eq!(
        cli.json::<PolicyDoc>(0, &["policy"]),
        PolicyDoc {
            retry_backoff_ms: 250,
            budget_window_ms: 30_000,
            retries_per_window: 1,
            overrides: vec![
                Override {
                    scope: "key:shared/zc@1.0.0".into(),
                    retry_backoff_ms: 5,
                    budget_window_ms: 30_000,
                    retries_per_window: 2
                },
                Override {
                    scope: "service:zc".into(),
                    retry_backoff_ms: 250,
                    budget_window_ms: 30_000,
                    retries_per_window: 2
                },
            ],
            damaged: vec![],
        }
    );
    let text = cli.ok(&["policy"]);
    assert!(
        text.contains(
            "override service:zc: retry backoff 250ms, budget window 30s, 2 retries per window"
        ),
        "{text}"
    );
    // A key override equal to the policy applying now is still stored, and says so.
    let text = cli.ok(&["policy", "set", "--key", B, "--retries", "2"]);
    assert!(text.contains("judged by the new policy"), "{text}");
    let text = cli.ok(&["policy", "set", "--key", B, "--retries", "2"]);
    assert!(text.contains("nothing was written"), "{text}");
    cli.ok(&["policy", "unset", "--key", B]);
    // Decisions: A by its key override, B by its service's, OTHER by the default.
    for (key, backoff) in [(A, 5), (B, 250)] {
        for attempt in 1..=2 {
            let doc: RecordCrash = cli.json(0, &["record-crash", key]);
            assert_eq!(
                (doc.attempt, doc.retry_after_ms),
                (Some(attempt), backoff),
                "{key}"
            );
        }
        let doc: RecordCrash = cli.json(1, &["record-crash", key]);
        assert_eq!(doc.decision, "refuse", "{key}");
    }
    cli.json::<RecordCrash>(0, &["record-crash", OTHER]);
    let doc: RecordCrash = cli.json(1, &["record-crash", OTHER]);
    assert_eq!(doc.decision, "refuse", "the default allows one retry");
    // show and status name the policy that applies.
    for (key, scope) in [
        (A, "key:shared/zc@1.0.0"),
        (B, "service:zc"),
        (OTHER, "default"),
    ] {
        let show: Show = cli.json(0, &["show", key]);
        assert_eq!(show.policy_scope, scope);
        let status: Status = cli.json(1, &["status", key]);
        assert_eq!(status.policy_scope, scope);
        assert_eq!(status.policy, show.policy);
    }
    let show: Show = cli.json(0, &["show", A]);
    assert_eq!(show.policy.retry_backoff_ms, 5);
    let text = cli.ok(&["show", B]);
    assert!(
        text.contains("2 retries per window (service override service:zc)"),
        "{text}"
    );
    let out = cli.run(&["status", A]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(key override key:shared/zc@1.0.0)"),
        "{text}"
    );
    // Removing the key override leaves A to its service's policy.
    let doc: PolicyUnset = cli.json(0, &["policy", "unset", "--key", A, "--reason", "done"]);
    assert_eq!(
        doc,
        PolicyUnset {
            scope: "key:shared/zc@1.0.0".into(),
            removed: true
        }
    );
    assert_eq!(cli.json::<Show>(0, &["show", A]).policy_scope, "service:zc");
    // A second removal writes nothing and says so.
    assert!(
        cli.ok(&["policy", "unset", "--key", A])
            .contains("nothing was written")
    );
    let text = cli.ok(&["policy", "unset", "--service", "zc"]);
    assert!(text.contains("removed the service:zc override"), "{text}");
    assert!(cli.json::<PolicyDoc>(0, &["policy"]).overrides.is_empty());
    // Every change is in the audit trail with its scope and reason; the no-op is not.
    let audit: Audit = cli.json(0, &["audit"]);
    let policy_events: Vec<(String, Option<String>, Option<String>)> = audit
        .events
        .into_iter()
        .filter(|e| e.action.starts_with("policy"))
        .map(|e| (e.action, e.scope, e.reason))
        .collect();
    assert_eq!(
        policy_events,
        vec![
            (
                "policy_set".into(),
                Some("service:zc".into()),
                Some("bursty".into())
            ),
            (
                "policy_set".into(),
                Some("key:shared/zc@1.0.0".into()),
                None
            ),
            (
                "policy_set".into(),
                Some("key:private:zc/zc@2.0.0".into()),
                None
            ),
            (
                "policy_unset".into(),
                Some("key:private:zc/zc@2.0.0".into()),
                None
            ),
            (
                "policy_unset".into(),
                Some("key:shared/zc@1.0.0".into()),
                Some("done".into())
            ),
            ("policy_unset".into(), Some("service:zc".into()), None),
        ]
    );
}

#[test]
fn overrides_are_validated_like_the_default() {
    let cli = Cli::new();
    cli.ok(&["record-crash", A]);
    let out = cli.run(&["policy", "set", "--service", "zc", "--retry-backoff", "30s"]);
    assert_error(&out, "is not shorter than the budget window");
    let out = cli.run(&["policy", "set", "--key", A, "--budget-window", "2d"]);
    assert_error(&out, "is over 1 day");
    assert!(stderr(&out).contains("--yes"));
    let out = cli.run(&["policy", "set", "--service", "Not A Name", "--retries", "2"]);
    assert_error(&out, "is not a service name");
    let out = cli.run(&["policy", "set", "--key", "nope", "--retries", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli.run(&[
        "policy",
        "set",
        "--key",
        A,
        "--service",
        "zc",
        "--retries",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2), "one scope at a time");
    let out = cli.run(&["policy", "unset"]);
    assert_eq!(out.status.code(), Some(2), "unset needs a scope");
    assert!(
        cli.json::<PolicyDoc>(0, &["policy"]).overrides.is_empty(),
        "nothing stored"
    );
    let doc: PolicySet = cli.json(
        0,
        &[
            "policy",
            "set",
            "--key",
            A,
            "--budget-window",
            "2d",
            "--yes",
        ],
    );
    assert_eq!(doc.budget_window_ms, 2 * 86_400_000);
    // The default is untouched by an override.
    assert_eq!(
        cli.json::<PolicyDoc>(0, &["policy"]).budget_window_ms,
        30_000
    );
}

#[test]
fn run_is_judged_by_the_policy_of_its_key() {
    let cli = Cli::new();
    cli.set_policy("10ms", "5s");
    cli.ok(&["policy", "set", "--service", "zc", "--retries", "3"]);
    // Three retries for the service's key: four starts before the refusal.
    let doc: Run = cli.json(75, &["run", A, "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        (doc.outcome.as_str(), doc.starts, doc.crashes),
        ("refused", 4, 4)
    );
    // Another service keeps the default's one retry.
    let doc: Run = cli.json(75, &["run", OTHER, "--", "sh", "-c", "exit 3"]);
    assert_eq!((doc.starts, doc.crashes), (2, 2));
}

#[test]
fn metrics_judge_each_backend_by_its_policy() {
    let cli = Cli::new();
    cli.ok(&["policy", "set", "--service", "zc", "--retries", "2"]);
    for key in [A, OTHER] {
        cli.ok(&["record-crash", key]);
        cli.run(&["record-crash", key]);
    }
    let text = cli.ok(&["metrics"]);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("parses as Prometheus text");
    let state_of = |key: &str| -> Vec<String> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "recovery_store_backend_state")
            .filter(|s| s.labels.get("key") == Some(key))
            .filter(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0))
            .map(|s| s.labels.get("state").unwrap_or("").to_owned())
            .collect()
    };
    // Two crashes: the second of two allowed retries for zc, a refusal under the default.
    assert_eq!(state_of(A), ["recovering"]);
    assert_eq!(state_of(OTHER), ["refused"]);
}
