//! Damaged rows of schema 2's `policy_overrides` and `audit` tables, written as raw bytes
//! beside the library: `check` names each one; `list`, `metrics`, `prune`, `reset --refused`,
//! `status`, `policy` and `audit` keep serving what is not damaged, and never judge a key by
//! another policy than the damaged override stored for it; `run` of such a key exits 2 naming the
//! row, before starting the command or after a crash it cannot record; `policy unset` and
//! `policy set` repair a damaged row.

use super::run_store::lines;
use super::*;
use crate::damaged_rows::{GARBAGE, damage_first_audit_event, put_override};

/// Judged by the damaged `service:zc` override.
pub(super) const ZC: &str = "shared/zc@1.0.0";
/// Judged by the default policy.
pub(super) const OTHER: &str = "shared/other@1.0.0";
/// Judged by the intact `service:good` override (3 retries: recovering after two crashes).
pub(super) const GOOD: &str = "shared/good@1.0.0";
/// A window long ended: pruned, unless a damaged override judges it.
pub(super) const OLD: &str = "shared/old@1.0.0";

pub(super) fn crash(cli: &Cli, now: &str, key: &str) {
    let now = at(now);
    let out = cli.run(&with_now(&now, &["record-crash", key]));
    // 1: refused.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        describe(&out)
    );
}

/// Two crashes at T0 for ZC, OTHER and GOOD, one long before for OLD; a good override for
/// `good` and one for `zc`, whose value is then damaged.
pub(super) fn store_with_damaged_override() -> Cli {
    let cli = Cli::new();
    crash(&cli, "2025-12-01T00:00:00Z", OLD);
    for key in [ZC, OTHER, GOOD] {
        crash(&cli, T0, key);
        crash(&cli, "2026-01-01T00:00:01Z", key);
    }
    cli.ok(&["policy", "set", "--service", "good", "--retries", "3"]);
    cli.ok(&["policy", "set", "--service", "zc", "--retries", "5"]);
    put_override(cli.path(), b"service:zc", GARBAGE);
    cli
}

fn assert_names_the_row(text: &str) {
    assert!(text.contains("\"service:zc\""), "{text}");
    assert!(
        text.contains("recovery-store policy unset --service zc"),
        "{text}"
    );
}

#[test]
fn check_reports_each_damaged_override_row_and_audit_event() {
    let cli = store_with_damaged_override();
    let seq = damage_first_audit_event(cli.path());

    let text = cli.expect(1, &["check"]);
    assert!(text.contains("overrides: 1 ok, 1 damaged"), "{text}");
    assert!(text.contains("audit:     "), "{text}");
    assert!(text.contains(" 1 damaged\n"), "{text}");
    let problem = text
        .lines()
        .find(|l| l.starts_with("problem:   policy override"))
        .unwrap_or_else(|| panic!("no override problem in {text}"));
    assert_names_the_row(problem);
    assert!(problem.contains("would judge 1 entry"), "{problem}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("problem:   audit event {seq} "))),
        "{text}"
    );

    let doc: Check = cli.json(1, &["check"]);
    assert!(!doc.ok);
    assert_eq!(doc.problems.len(), 2, "{:?}", doc.problems);
    assert_names_the_row(&doc.problems[0]);
    assert!(doc.problems[1].starts_with(&format!("audit event {seq} ")));
}

#[test]
fn list_serves_every_key_not_judged_by_the_damaged_override() {
    let cli = store_with_damaged_override();
    let now = at("2026-01-01T00:00:02Z");
    let doc: List = cli.json(0, &with_now(&now, &["list"]));
    let states: Vec<(&str, &str)> = doc
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [(GOOD, "recovering"), (OLD, "healthy"), (OTHER, "refused")],
        "ZC is never shown as judged by the default policy"
    );
    assert_eq!(doc.damaged.len(), 1, "{:?}", doc.damaged);
    assert_eq!(doc.damaged[0].key, ZC);
    assert_names_the_row(&doc.damaged[0].error);

    let out = cli.run(&with_now(&now, &["list"]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(OTHER) && !table.contains(ZC), "{table}");
    assert!(stderr(&out).contains(ZC), "{}", describe(&out));
    assert_names_the_row(&stderr(&out));
    // A state filter cannot place ZC: it may be in that state, so it is named.
    let refused: List = cli.json(0, &with_now(&now, &["list", "--state", "refused"]));
    assert_eq!(refused.entries.len(), 1);
    assert_eq!(refused.damaged.len(), 1, "{:?}", refused.damaged);
    assert_eq!(refused.damaged[0].key, ZC);
}

#[test]
fn metrics_count_the_unjudged_key_as_damaged_and_serve_the_others() {
    let cli = store_with_damaged_override();
    let now = at("2026-01-01T00:00:02Z");
    let text = cli.expect(0, &with_now(&now, &["metrics"]));
    let sample = |line_start: &str| {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in {text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(sample("recovery_store_damaged_entries "), 1.0);
    assert_eq!(sample("recovery_store_damaged_policy_overrides "), 1.0);
    assert_eq!(
        sample(&format!(
            "recovery_store_backend_state{{key=\"{OTHER}\",instance=\"shared\",service=\"other\",version=\"1.0.0\",state=\"refused\"}}"
        )),
        1.0
    );
    assert!(!text.contains(&format!("key=\"{ZC}\"")), "{text}");
}

#[test]
fn prune_leaves_the_keys_a_damaged_override_judges() {
    let cli = store_with_damaged_override();
    // Every window has ended under the default policy, ZC's too.
    let now = at("2026-02-01T00:00:00Z");
    let out = cli.run(&with_now(&now, &["--json", "prune"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: Prune = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc.pruned, 3, "OLD, OTHER and GOOD");
    assert_names_the_row(&stderr(&out));
    let left: List = cli.json(0, &with_now(&now, &["list"]));
    assert!(left.entries.is_empty());
    assert_eq!(left.damaged.len(), 1);
    assert_eq!(
        left.damaged[0].key, ZC,
        "kept: its window depends on the policy"
    );
}

#[test]
fn reset_refused_clears_the_others_and_names_the_unjudged_key() {
    let cli = store_with_damaged_override();
    let now = at("2026-01-01T00:00:02Z");
    let out = cli.run(&with_now(&now, &["reset", "--refused", "--yes"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("cleared {OTHER}\n")
    );
    let err = stderr(&out);
    assert!(err.contains(&format!("left {ZC}")), "{err}");
    assert_names_the_row(&err);
    // Named, it is cleared whatever its policy.
    cli.ok(&["reset", ZC]);
}

#[test]
fn status_and_record_crash_answer_for_other_keys_and_fail_clearly_for_the_judged_one() {
    let cli = store_with_damaged_override();
    let now = at("2026-01-01T00:00:02Z");
    let doc: Status = cli.json(1, &with_now(&now, &["status", OTHER]));
    assert_eq!(doc.state, "refused");
    cli.expect(0, &with_now(&now, &["show", GOOD]));
    for args in [&["status", ZC][..], &["show", ZC], &["record-crash", ZC]] {
        let out = cli.run(&with_now(&now, args));
        assert_error(&out, "policy override \"service:zc\"");
        assert_names_the_row(&stderr(&out));
    }
    cli.expect(1, &with_now(&now, &["record-crash", OTHER]));
}

#[test]
fn audit_lists_the_events_that_decode_and_names_the_damaged_one() {
    let cli = store_with_damaged_override();
    let all: Audit = cli.json(0, &["audit"]);
    assert_eq!(all.events.len(), 2, "the two policy sets");
    let seq = damage_first_audit_event(cli.path());
    let out = cli.run(&["--json", "audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: Audit = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc.events.len(), 1);
    assert_eq!(doc.events[0].scope.as_deref(), Some("service:zc"));
    assert_eq!(doc.damaged.len(), 1, "named in the document too");
    assert_eq!(doc.damaged[0].seq, seq);
    assert!(doc.damaged[0].error.contains("check --drop-damaged"));
    assert!(
        stderr(&out).contains(&format!("audit event {seq} ")),
        "{}",
        describe(&out)
    );
    let text = cli.expect(1, &["audit"]);
    assert!(text.contains("service:zc"), "{text}");
}

#[test]
fn policy_shows_the_rest_and_unset_removes_the_damaged_row() {
    let cli = store_with_damaged_override();
    let out = cli.run(&["--json", "policy"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: PolicyDoc = serde_json::from_slice(&out.stdout).unwrap();
    let scopes: Vec<&str> = doc.overrides.iter().map(|o| o.scope.as_str()).collect();
    assert_eq!(scopes, ["service:good"]);
    assert_names_the_row(&stderr(&out));

    let removed: PolicyUnset = cli.json(0, &["policy", "unset", "--service", "zc"]);
    assert!(removed.removed);
    assert!(cli.ok(&["check"]).contains("no problems found"));
    // ZC is judged again, by the default policy now.
    let now = at("2026-01-01T00:00:02Z");
    let doc: Status = cli.json(1, &with_now(&now, &["status", ZC]));
    assert_eq!(doc.policy_scope, "default");
}

#[test]
fn policy_set_replaces_a_damaged_row_of_its_scope() {
    let cli = store_with_damaged_override();
    let doc: PolicySet = cli.json(0, &["policy", "set", "--service", "zc", "--retries", "4"]);
    assert_eq!(doc.retries_per_window, 4);
    assert_eq!(
        (doc.retry_backoff_ms, doc.budget_window_ms),
        (250, 30_000),
        "fields not given come from the policy below the damaged row"
    );
    assert_eq!(
        doc.previous.retries_per_window, 1,
        "the damaged row's values are unknown: the policy below it (the default)"
    );
    assert_eq!(doc.previous_damaged.as_deref(), Some("service:zc"));
    assert!(cli.ok(&["check"]).contains("no problems found"));
    let now = at("2026-01-01T00:00:02Z");
    let status: Status = cli.json(0, &with_now(&now, &["status", ZC]));
    assert_eq!(status.policy_scope, "service:zc");
}

#[test]
fn damaged_key_rows_and_damaged_scope_text_can_be_removed_too() {
    let cli = store_with_damaged_override();
    cli.ok(&["policy", "unset", "--service", "zc"]);
    put_override(cli.path(), format!("key:{OTHER}").as_bytes(), GARBAGE);
    put_override(cli.path(), b"service:Bad Name", GARBAGE);
    let doc: Check = cli.json(1, &["check"]);
    assert_eq!(doc.problems.len(), 2, "{:?}", doc.problems);
    assert!(
        doc.problems
            .iter()
            .any(|p| p.contains(&format!("policy unset --key {OTHER}"))),
        "{:?}",
        doc.problems
    );
    assert!(
        doc.problems
            .iter()
            .any(|p| p.contains("policy unset --service 'Bad Name'")),
        "{:?}",
        doc.problems
    );
    let now = at("2026-01-01T00:00:02Z");
    assert_error(
        &cli.run(&with_now(&now, &["status", OTHER])),
        &format!("\"key:{OTHER}\""),
    );
    cli.ok(&["policy", "unset", "--key", OTHER]);
    cli.ok(&["policy", "unset", "--service", "Bad Name"]);
    assert!(cli.ok(&["check"]).contains("no problems found"));
}

#[test]
fn salvage_carries_the_rows_that_decode_and_names_the_damaged_ones() {
    let cli = store_with_damaged_override();
    let seq = damage_first_audit_event(cli.path());
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.json");
    let out = cli.run(&["check", "--salvage", saved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("salvaged: 4 entries"), "{text}");
    assert_names_the_row(&text);
    let left_out = stderr(&out);
    assert!(
        left_out.contains(&format!("audit event {seq} ")),
        "{left_out}"
    );
    assert_names_the_row(&left_out);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(doc["entries"].as_array().unwrap().len(), 4);
    let scopes: Vec<&str> = doc["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["service:good"]);
    let audit = doc["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 1, "the event that decodes: {audit:?}");
    assert_eq!(audit[0]["scope"], "service:zc");

    // Imported into a new store, the salvage is a store without damage.
    let fresh = Cli::new();
    fresh.ok(&["import", saved.to_str().unwrap()]);
    assert!(fresh.ok(&["check"]).contains("no problems found"));
    let policies: PolicyDoc = fresh.json(0, &["policy"]);
    assert_eq!(policies.overrides.len(), 1);
}

#[test]
fn export_leaves_the_damaged_rows_out_and_says_so() {
    let cli = store_with_damaged_override();
    let seq = damage_first_audit_event(cli.path());
    let out = cli.run(&["export"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("audit event {seq} ")), "{err}");
    assert_names_the_row(&err);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["entries"].as_array().unwrap().len(), 4);
    assert_eq!(doc["overrides"].as_array().unwrap().len(), 1);
    assert_eq!(doc["audit"].as_array().unwrap().len(), 1);
}

/// `run ZC -- COMMAND` with `--json` when asked; the command appends to the returned file.
fn run_zc(cli: &Cli, json: bool, rest: &str) -> (Output, std::path::PathBuf) {
    let (cmd, starts) = super::run_store::counting(cli, rest);
    let mut args = Vec::from(if json { &["--json"][..] } else { &[] });
    args.extend(["run", ZC, "--", "sh", "-c", &cmd]);
    (cli.run(&args), starts)
}

fn total_crashes(cli: &Cli, key: &str) -> u64 {
    let store = recovery_store::RecoveryStore::open(cli.path()).unwrap();
    store
        .get(&key.parse().unwrap())
        .unwrap()
        .map_or(0, |e| e.total_crashes)
}

#[test]
fn run_refuses_to_supervise_a_key_the_damaged_override_judges() {
    let cli = store_with_damaged_override();
    for json in [false, true] {
        let (out, starts) = run_zc(&cli, json, "exit 1");
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(out.stdout.is_empty(), "{}", describe(&out));
        assert_eq!(lines(&starts), 0, "never started");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("run {ZC}: not started: policy override")),
            "{err}"
        );
        assert_names_the_row(&err);
        // Not a store outage, nothing kept in memory, nothing lost.
        for wrong in ["unavailable", "in memory", "reset", "lost", "not in it"] {
            assert!(!err.contains(wrong), "{wrong:?} in {err}");
        }
    }
    assert_eq!(total_crashes(&cli, ZC), 2, "nothing recorded");
    // Keys the row does not judge are supervised as ever, by their own policies.
    let doc: Run = cli.json(75, &["run", OTHER, "--", "sh", "-c", "exit 3"]);
    assert_eq!((doc.starts, doc.crashes), (2, 2), "the default's one retry");
    // Once the row is replaced, ZC is supervised by it.
    cli.ok(&["policy", "set", "--service", "zc", "--retries", "2"]);
    let (out, starts) = run_zc(&cli, true, "exit 3");
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert_eq!(lines(&starts), 3, "two retries under the replaced row");
}

// The row is damaged while the command runs: its crash cannot be judged, so `run` records
// nothing, restarts nothing and says why.
#[test]
fn run_stops_when_the_override_judging_its_key_is_damaged_while_it_runs() {
    let cli = store_with_damaged_override();
    cli.ok(&["policy", "set", "--service", "zc", "--retries", "5"]);
    let go = cli.tmp.dir.path().join("go");
    let rest = format!(
        "while [ ! -e '{}' ]; do sleep 0.02; done; exit 3",
        go.display()
    );
    let (cmd, starts) = super::run_store::counting(&cli, &rest);
    let child = super::run_store::spawn_run(&cli, &["run", ZC, "--", "sh", "-c", &cmd]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lines(&starts) == 0 {
        assert!(std::time::Instant::now() < deadline, "never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    put_override(cli.path(), b"service:zc", GARBAGE);
    std::fs::write(&go, b"").unwrap();
    let out = child.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(lines(&starts), 1, "not restarted");
    let err = stderr(&out);
    assert!(
        err.contains("exited with code 3: crash not recorded, not restarted: policy override"),
        "{err}"
    );
    assert_names_the_row(&err);
    assert!(!err.contains("unavailable"), "{err}");
    assert_eq!(
        total_crashes(&cli, ZC),
        2,
        "the crash was judged by no policy"
    );
}
