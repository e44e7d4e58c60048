//! Crash history: each crash is kept with how the process ended and who recorded it, the last
//! 16 only, newest last; it goes with the entry's state when that is cleared; and deciding does
//! not depend on it.

use recovery_store::{CrashReport, HISTORY_LIMIT, RecoveryStore, StoreOptions};

use crate::util::{TempStore, at, key};

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[test]
fn crashes_keep_their_exit_detail_pid_and_uid() {
    let t = TempStore::new();
    let store = t.open();
    let k = key("shared/svc@1.0.0");
    let exited = CrashReport {
        exit_code: Some(3),
        signal: None,
    };
    let killed = CrashReport {
        exit_code: None,
        signal: Some(9),
    };
    store.record_crash_with(&k, at(0.0), exited).unwrap();
    store.record_crash(&k, at(1.0)).unwrap();
    store.record_crash_now_with(&k, killed).unwrap();
    let history = store.history(&k).unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(
        history.iter().map(|c| c.report()).collect::<Vec<_>>(),
        [exited, CrashReport::default(), killed]
    );
    assert_eq!((history[0].at, history[1].at), (at(0.0), at(1.0)));
    for crash in &history {
        assert_eq!(crash.pid, Some(std::process::id()));
        assert_eq!(crash.uid, Some(uid()));
    }
    // Reopened, read-only: the same history.
    drop(store);
    let reader =
        RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true)).unwrap();
    assert_eq!(reader.history(&k).unwrap(), history);
    assert_eq!(reader.list_with_history().unwrap()[0].1, history);
}

#[test]
fn history_is_bounded_newest_last_and_cleared_with_the_state() {
    let t = TempStore::new();
    let store = t.open();
    let k = key("shared/svc@1.0.0");
    let n = HISTORY_LIMIT + 9;
    for i in 0..n {
        let report = CrashReport {
            exit_code: Some(i as i32),
            signal: None,
        };
        // Far apart: each crash starts a new window, and the history still spans them all.
        store
            .record_crash_with(&k, at(i as f64 * 1000.0), report)
            .unwrap();
    }
    let history = store.history(&k).unwrap();
    assert_eq!(history.len(), HISTORY_LIMIT);
    let codes: Vec<_> = history.iter().map(|c| c.exit_code.unwrap()).collect();
    assert_eq!(
        codes,
        ((n - HISTORY_LIMIT) as i32..n as i32).collect::<Vec<_>>()
    );
    assert_eq!(store.get(&k).unwrap().unwrap().total_crashes, n as u64);
    assert!(store.record_success(&k).unwrap());
    assert!(store.history(&k).unwrap().is_empty());
    store.record_crash(&k, at(0.0)).unwrap();
    assert_eq!(store.history(&k).unwrap().len(), 1);
}

#[test]
fn the_report_never_changes_a_decision() {
    let plain = TempStore::new();
    let detailed = TempStore::new();
    let (a, b) = (plain.open(), detailed.open());
    let k = key("shared/svc@1.0.0");
    for (i, secs) in [0.0, 0.1, 0.2, 31.0, 31.1, 100.0].into_iter().enumerate() {
        let report = CrashReport {
            exit_code: (i % 2 == 0).then_some(1),
            signal: (i % 2 == 1).then_some(15),
        };
        assert_eq!(
            a.record_crash(&k, at(secs)).unwrap(),
            b.record_crash_with(&k, at(secs), report).unwrap()
        );
    }
    assert_eq!(a.list().unwrap(), b.list().unwrap());
}

#[test]
fn replace_all_with_history_round_trips_and_replace_all_clears_it() {
    let t = TempStore::new();
    let store = t.open();
    let k = key("shared/svc@1.0.0");
    store
        .record_crash_with(
            &k,
            at(0.0),
            CrashReport {
                exit_code: Some(2),
                signal: None,
            },
        )
        .unwrap();
    let all = store.list_with_history().unwrap();
    let other = TempStore::new();
    let copy = other.open();
    copy.replace_all_with_history(None, &all).unwrap();
    assert_eq!(copy.list_with_history().unwrap(), all);
    copy.replace_all(None, &[all[0].0.clone()]).unwrap();
    assert!(copy.history(&k).unwrap().is_empty());
}

// Guards the degraded path: a crash decided in memory while the store cannot be reached keeps
// its report in the queue, and the write-through stores it.
#[test]
fn a_degraded_handle_queues_the_report_and_writes_it_through() {
    use recovery_store::{BackendRecoveryPolicy, DurableRecoveryState, StoreHealth};
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the store's directory should be: every open fails until it goes.
    let missing = dir.path().join("state");
    std::fs::write(&missing, b"").unwrap();
    let path = missing.join("recovery.redb");
    let mut state = DurableRecoveryState::open_or_degraded(
        &path,
        StoreOptions::default(),
        BackendRecoveryPolicy::default(),
    );
    assert!(matches!(state.health(), StoreHealth::Degraded { .. }));
    let k = key("shared/svc@1.0.0");
    let report = CrashReport {
        exit_code: None,
        signal: Some(11),
    };
    state.record_crash_at_with(&k, at(0.0), report);
    assert!(matches!(
        state.health(),
        StoreHealth::Degraded { pending: 1, .. }
    ));
    std::fs::remove_file(&missing).unwrap();
    std::fs::create_dir(&missing).unwrap();
    state.flush().unwrap();
    assert!(matches!(state.health(), StoreHealth::Durable));
    let history = RecoveryStore::open(&path).unwrap().history(&k).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].report(), history[0].at), (report, at(0.0)));
}

#[test]
fn a_report_no_process_could_end_with_is_refused_and_records_nothing() {
    let t = TempStore::new();
    let store = t.open();
    let k = key("shared/svc@1.0.0");
    let bad = [
        (Some(256), None),
        (Some(-1), None),
        (None, Some(0)),
        (None, Some(recovery_store::MAX_SIGNAL + 1)),
        (Some(1), Some(9)),
    ];
    for (exit_code, signal) in bad {
        let report = CrashReport { exit_code, signal };
        assert!(report.validate().is_err(), "{report:?}");
        for result in [
            store.record_crash_with(&k, at(1.0), report),
            store.record_crash_now_with(&k, report),
        ] {
            assert!(
                matches!(
                    result,
                    Err(recovery_store::StoreError::InvalidCrashReport { .. })
                ),
                "{report:?}: {result:?}"
            );
        }
    }
    assert!(store.get(&k).unwrap().is_none(), "nothing recorded");
    // The edges of each range are fine.
    for (exit_code, signal) in [
        (Some(0), None),
        (Some(255), None),
        (None, Some(1)),
        (None, Some(64)),
    ] {
        store
            .record_crash_with(&k, at(1.0), CrashReport { exit_code, signal })
            .unwrap();
    }
}

#[test]
fn a_broker_still_decides_a_crash_whose_report_is_invalid_and_drops_the_detail() {
    let t = TempStore::new();
    let mut state = recovery_store::DurableRecoveryState::open(&t.path).unwrap();
    let k = key("shared/svc@1.0.0");
    let report = CrashReport {
        exit_code: Some(-7),
        signal: None,
    };
    let decision = state.record_crash_at_with(&k, at(1.0), report);
    assert!(
        matches!(
            decision,
            recovery_store::BackendRecoveryDecision::Retry { .. }
        ),
        "{decision:?}"
    );
    drop(state);
    let history = t.open().history(&k).unwrap();
    assert_eq!(history.len(), 1, "the crash is recorded");
    assert_eq!(
        history[0].report(),
        CrashReport::default(),
        "without the bad detail"
    );
}
