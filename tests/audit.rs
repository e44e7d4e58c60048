//! The audit trail (issue 12): one event per committed change, in its transaction; none for a
//! call that changes nothing; reasons, uid, user and PID; reading by key; stores without one.

use std::time::Duration;

use recovery_store::{AuditAction, AuditEvent, BackendRecoveryPolicy, RecoveryStore, StoreOptions};

use crate::util::{TempStore, at, entry, key};

fn actions(events: &[AuditEvent]) -> Vec<(AuditAction, Option<&str>, Option<&str>)> {
    events
        .iter()
        .map(|e| (e.action, e.key.as_deref(), e.scope.as_deref()))
        .collect()
}

fn crash(store: &RecoveryStore, text: &str, secs: f64) {
    store.record_crash(&key(text), at(secs)).unwrap();
}

#[test]
fn every_change_writes_exactly_one_event_in_order() {
    let t = TempStore::new();
    let store = t.open();
    assert!(store.audit(None).unwrap().is_empty(), "a new store");

    crash(&store, "shared/a@1.0.0", 0.0);
    assert!(
        store.audit(None).unwrap().is_empty(),
        "crashes are not audited"
    );
    assert!(
        store
            .reset_with_reason(&key("shared/a@1.0.0"), Some("hotfix"))
            .unwrap()
    );
    crash(&store, "shared/a@1.0.0", 0.0);
    assert!(store.record_success(&key("shared/a@1.0.0")).unwrap());
    crash(&store, "shared/a@1.0.0", 0.0);
    assert!(store.reset(&key("shared/a@1.0.0")).unwrap());
    let policy = BackendRecoveryPolicy::new(Duration::from_secs(1), Duration::from_secs(60));
    store
        .set_policy_with_reason(policy, Some("flaky disk"))
        .unwrap();
    store
        .replace_all(None, &[entry("shared/b@1.0.0"), entry("shared/c@1.0.0")])
        .unwrap();
    store
        .merge_entries(&[entry("shared/d@1.0.0")], false)
        .unwrap();
    assert_eq!(store.reset_prefix("shared/b").unwrap().len(), 1);
    assert_eq!(
        store
            .reset_where_with_reason("", "service:c", Some("moved"), |k| k.contains("/c@"))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.prune(at(3600.0)).unwrap(), 1);
    assert_eq!(store.reset_prefix("").unwrap().len(), 0);

    let events = store.audit(None).unwrap();
    assert_eq!(
        actions(&events),
        [
            (AuditAction::Reset, Some("shared/a@1.0.0"), None),
            (AuditAction::Success, Some("shared/a@1.0.0"), None),
            (AuditAction::Reset, Some("shared/a@1.0.0"), None),
            (AuditAction::PolicySet, None, Some("default")),
            (AuditAction::Import, None, Some("all")),
            (AuditAction::Import, None, Some("merge")),
            (AuditAction::ResetScope, None, Some("prefix:shared/b")),
            (AuditAction::ResetScope, None, Some("service:c")),
            (AuditAction::Prune, None, Some("expired:1")),
        ]
    );
    let reasons: Vec<_> = events.iter().map(|e| e.reason.as_deref()).collect();
    assert_eq!(
        reasons,
        [
            Some("hotfix"),
            None,
            None,
            Some("flaky disk"),
            None,
            None,
            None,
            Some("moved"),
            None
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    let uid = rustix::process::getuid().as_raw();
    for event in &events {
        assert_eq!(event.uid, Some(uid));
        assert_eq!(event.pid, Some(std::process::id()));
        assert!(event.user.is_some(), "this system names uid {uid}");
        let age = event.at.wall().elapsed().unwrap_or_default();
        assert!(
            age < Duration::from_secs(300),
            "stamped now, not {age:?} ago"
        );
    }

    // By key: only the one-key events naming it.
    let a = store.audit(Some(&key("shared/a@1.0.0"))).unwrap();
    assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        store
            .audit(Some(&key("shared/z@1.0.0")))
            .unwrap()
            .is_empty()
    );

    // Durable: another handle, read-only, sees the same trail.
    drop(store);
    let ro = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true)).unwrap();
    assert_eq!(ro.audit(None).unwrap(), events);
}

#[test]
fn calls_that_change_nothing_write_no_event_and_commit_nothing() {
    let t = TempStore::new();
    let store = t.open();
    crash(&store, "shared/live@1.0.0", 0.0);
    let before = store.sync_count();
    assert!(!store.record_success(&key("shared/none@1.0.0")).unwrap());
    assert!(
        !store
            .reset_with_reason(&key("shared/none@1.0.0"), Some("x"))
            .unwrap()
    );
    store.set_policy(store.policy().unwrap()).unwrap();
    assert!(store.reset_prefix("private:").unwrap().is_empty());
    assert!(store.reset_where("", |_| false).unwrap().is_empty());
    assert_eq!(store.prune(at(1.0)).unwrap(), 0, "the window is still open");
    assert!(store.merge_entries(&[], false).unwrap().is_empty());
    assert_eq!(store.sync_count(), before, "nothing committed");
    assert!(store.audit(None).unwrap().is_empty());
}

#[test]
fn a_refused_import_writes_no_event() {
    let t = TempStore::new();
    let store = t.open();
    crash(&store, "shared/a@1.0.0", 0.0);
    assert!(
        store
            .merge_entries(&[entry("shared/a@1.0.0")], false)
            .is_err()
    );
    assert!(
        store.audit(None).unwrap().is_empty(),
        "the change rolled back, and its event with it"
    );
}

#[test]
fn stores_written_before_schema_2_read_with_an_empty_trail() {
    let t = TempStore::new();
    std::fs::copy(crate::format::fixture_path(), &t.path).unwrap();
    let store = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true)).unwrap();
    assert!(store.audit(None).unwrap().is_empty());
}

#[test]
fn the_v2_fixture_reads_its_events() {
    let t = TempStore::new();
    std::fs::copy(crate::format::fixture_of(2), &t.path).unwrap();
    let store = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true)).unwrap();
    let events = store.audit(None).unwrap();
    assert_eq!(events.len(), 7);
    assert_eq!(
        (events[0].action, events[0].reason.as_deref()),
        (AuditAction::Reset, Some("hotfix deployed"))
    );
    assert_eq!(
        (events[0].user.as_deref(), events[0].uid, events[0].pid),
        (Some("op"), Some(1000), Some(77))
    );
    assert_eq!(events[6].seq, u64::MAX);
    assert_eq!(events[6].action, AuditAction::Prune);
}

/// Power cut at every I/O operation of a reset, a success and a policy change: each image a
/// disk could hold afterwards holds the change and its event, or neither.
#[test]
fn a_power_cut_keeps_each_change_and_its_event_together() {
    use crate::crash::fault_backend::FaultBackend;
    let open = |backend: FaultBackend| {
        RecoveryStore::open_with_backend(backend, "audit-crash", StoreOptions::default())
    };
    let a = key("shared/a@1.0.0");
    let setup = FaultBackend::new();
    {
        let store = open(setup.clone()).unwrap();
        store.record_crash(&a, at(0.0)).unwrap();
    }
    let image = setup.durable_image();
    let fast = BackendRecoveryPolicy::new(Duration::from_secs(1), Duration::from_secs(60));
    type Change = fn(&RecoveryStore, &recovery_store::BackendKey, BackendRecoveryPolicy);
    let changes: [(&str, Change); 3] = [
        ("reset", |s, k, _| drop(s.reset_with_reason(k, Some("r")))),
        ("success", |s, k, _| drop(s.record_success(k))),
        ("policy", |s, _, p| drop(s.set_policy(p))),
    ];
    let mut checked = 0;
    for (name, change) in changes {
        // The operations the change costs on a sound disk bound the sweep.
        let probe = FaultBackend::from_image(&image);
        let store = open(probe.clone()).unwrap();
        let before = probe.ops();
        change(&store, &a, fast);
        let ops = probe.ops() - before;
        drop(store);
        assert!(ops > 0, "{name} wrote nothing");
        for point in 0..=ops {
            let backend = FaultBackend::from_image(&image);
            let store = open(backend.clone()).unwrap();
            let start = backend.ops();
            let backend = backend.crash_at(start + point);
            change(&store, &a, fast);
            drop(store);
            for disk in [backend.durable_image(), backend.torn_image(point)] {
                let Ok(store) = open(FaultBackend::from_image(&disk)) else {
                    panic!("{name}, cut at {point}: the image does not reopen");
                };
                let changed = if name == "policy" {
                    store.policy().unwrap() == fast
                } else {
                    store.get(&a).unwrap().is_none()
                };
                let events = store.audit(None).unwrap().len();
                assert_eq!(
                    events,
                    usize::from(changed),
                    "{name}, cut at {point}: change committed {changed}, {events} events"
                );
                checked += 1;
            }
        }
    }
    eprintln!("{checked} crash images checked");
}
