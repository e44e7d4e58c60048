//! The reference policy's behaviours, on the in-memory `BackendRecoveryState` and on the durable
//! `RecoveryStore` with a reopen between steps; plus the store's own promises (policy in the
//! file, clock semantics, permissions, sharing across threads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryState, BackendStatus, BootTime, BrokerInstanceKey,
    DEFAULT_RECOVERY_BUDGET_WINDOW, DEFAULT_RECOVERY_RETRY_BACKOFF, DEFAULT_SPAWN_BUDGET_WINDOW,
    RecoveryStore, StoreOptions, Timestamp,
};

use crate::util::{TempStore, at, base, key};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn retry() -> BackendRecoveryDecision {
    BackendRecoveryDecision::Retry {
        retry_after: DEFAULT_RECOVERY_RETRY_BACKOFF,
        attempt: 1,
    }
}

fn refuse(retry_after: Duration) -> BackendRecoveryDecision {
    BackendRecoveryDecision::Refuse {
        reason: BackendRecoveryRefusalReason::BackendUnavailable,
        retry_after,
    }
}

fn zccache() -> BackendKey {
    BackendKey::new(BrokerInstanceKey::Shared, "zccache", "1.11.20", "")
}

// ---- The reference module's behaviours, against the in-memory drop-in. ----

#[test]
fn memory_first_crash_retries_once_after_backoff() {
    let mut state = BackendRecoveryState::new();
    let now = Instant::now();
    assert_eq!(state.record_crash(zccache(), now), retry());
}

#[test]
fn memory_second_crash_in_window_refuses_for_the_rest_of_it() {
    let mut state = BackendRecoveryState::new();
    let now = Instant::now();
    state.record_crash(zccache(), now);
    assert_eq!(
        state.record_crash(zccache(), now + 10 * SEC),
        refuse(20 * SEC)
    );
    assert_eq!(state.record_crash(zccache(), now + 29 * SEC), refuse(SEC));
}

#[test]
fn memory_crash_after_window_starts_a_new_one() {
    let mut state = BackendRecoveryState::new();
    let now = Instant::now();
    state.record_crash(zccache(), now);
    state.record_crash(zccache(), now + SEC);
    assert_eq!(
        state.record_crash(zccache(), now + DEFAULT_RECOVERY_BUDGET_WINDOW),
        retry()
    );
    assert_eq!(
        state.record_crash(zccache(), now + DEFAULT_RECOVERY_BUDGET_WINDOW + 5 * SEC),
        refuse(25 * SEC)
    );
}

#[test]
fn memory_success_clears_state() {
    let mut state = BackendRecoveryState::new();
    let now = Instant::now();
    state.record_crash(zccache(), now);
    state.record_success(&zccache());
    assert_eq!(state.record_crash(zccache(), now + SEC), retry());
}

#[test]
fn memory_keys_are_independent() {
    let mut state = BackendRecoveryState::default();
    let now = Instant::now();
    let other = key("private:zccache/zccache@1.11.20");
    state.record_crash(zccache(), now);
    assert_eq!(state.record_crash(other, now), retry());
    assert!(matches!(
        state.record_crash(zccache(), now),
        BackendRecoveryDecision::Refuse { .. }
    ));
}

#[test]
fn memory_policy_clamps_zero_and_is_honoured() {
    let policy = BackendRecoveryPolicy::new(Duration::ZERO, 2 * SEC);
    assert_eq!(policy.retry_backoff, MS);
    let mut state = BackendRecoveryState::with_policy(policy);
    let now = Instant::now();
    assert_eq!(
        state.record_crash(zccache(), now),
        BackendRecoveryDecision::Retry {
            retry_after: MS,
            attempt: 1
        }
    );
    assert_eq!(state.record_crash(zccache(), now + SEC), refuse(SEC));
    assert_eq!(
        state.record_crash(zccache(), now + 2 * SEC),
        BackendRecoveryDecision::Retry {
            retry_after: MS,
            attempt: 1
        }
    );
}

#[test]
fn memory_earlier_instant_counts_as_no_time() {
    let mut state = BackendRecoveryState::new();
    let now = Instant::now() + 60 * SEC;
    state.record_crash(zccache(), now);
    // As in the reference, a `now` before the window start counts as zero elapsed.
    assert_eq!(
        state.record_crash(zccache(), now - 10 * SEC),
        refuse(DEFAULT_RECOVERY_BUDGET_WINDOW)
    );
}

#[test]
fn constants_match_the_broker() {
    assert_eq!(DEFAULT_SPAWN_BUDGET_WINDOW, Duration::from_secs(30));
    assert_eq!(DEFAULT_RECOVERY_BUDGET_WINDOW, DEFAULT_SPAWN_BUDGET_WINDOW);
    assert_eq!(DEFAULT_RECOVERY_RETRY_BACKOFF, Duration::from_millis(250));
    assert_eq!(BackendRecoveryPolicy::default().budget_window, 30 * SEC);
}

// ---- The same behaviours on the durable store, reopened between steps. ----

#[test]
fn store_window_survives_reopen() {
    let t = TempStore::new();
    let k = zccache();
    assert_eq!(t.open().record_crash(&k, at(0.0)).unwrap(), retry());
    assert_eq!(
        t.open().record_crash(&k, at(10.0)).unwrap(),
        refuse(20 * SEC)
    );
    assert_eq!(t.open().record_crash(&k, at(29.0)).unwrap(), refuse(SEC));
    assert_eq!(t.open().record_crash(&k, at(30.0)).unwrap(), retry());
    let entry = t.open().get(&k).unwrap().unwrap();
    assert_eq!(entry.key, k);
    assert_eq!(entry.window_started_at, at(30.0));
    assert_eq!(entry.crashes_in_window, 1);
    assert_eq!(entry.last_crash, at(30.0));
    assert_eq!(entry.total_crashes, 4);
}

#[test]
fn store_success_and_reset_clear_state() {
    let t = TempStore::new();
    let k = zccache();
    let store = t.open();
    assert!(!store.record_success(&k).unwrap());
    store.record_crash(&k, at(0.0)).unwrap();
    drop(store);
    assert!(t.open().record_success(&k).unwrap());
    assert_eq!(t.open().get(&k).unwrap(), None);
    assert_eq!(t.open().record_crash(&k, at(1.0)).unwrap(), retry());
    t.open().record_crash(&k, at(2.0)).unwrap();
    assert!(t.open().reset(&k).unwrap());
    assert!(!t.open().reset(&k).unwrap());
    assert_eq!(t.open().record_crash(&k, at(3.0)).unwrap(), retry());
}

#[test]
fn store_status_tracks_the_window() {
    let t = TempStore::new();
    let k = zccache();
    let store = t.open();
    assert_eq!(store.status(&k, at(0.0)).unwrap(), BackendStatus::Healthy);
    store.record_crash(&k, at(0.0)).unwrap();
    assert_eq!(
        store.status(&k, at(5.0)).unwrap(),
        BackendStatus::Recovering {
            crashes_in_window: 1,
            window_remaining: 25 * SEC
        }
    );
    store.record_crash(&k, at(6.0)).unwrap();
    drop(store);
    let store = t.open();
    assert_eq!(
        store.status(&k, at(10.0)).unwrap(),
        BackendStatus::Refused {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: 20 * SEC
        }
    );
    assert_eq!(store.status(&k, at(30.0)).unwrap(), BackendStatus::Healthy);
}

#[test]
fn store_list_is_sorted_by_instance_then_service_and_prune_drops_ended_windows() {
    let t = TempStore::new();
    let store = t.open();
    let keys = [
        "shared/b@1.0.0",
        "explicit:ci/a@1.0.0",
        "shared/a@1.0.0",
        "private:z/z@2.0.0",
    ];
    for (i, k) in keys.iter().enumerate() {
        store.record_crash(&key(k), at(i as f64 * 10.0)).unwrap();
    }
    let listed: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(
        listed,
        [
            "explicit:ci/a@1.0.0",
            "private:z/z@2.0.0",
            "shared/a@1.0.0",
            "shared/b@1.0.0"
        ]
    );
    let shared: Vec<String> = store
        .list_prefix("shared/")
        .unwrap()
        .iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(shared, ["shared/a@1.0.0", "shared/b@1.0.0"]);
    // At t=40 the windows that began at 0 and 10 have ended; those at 20 and 30 have not.
    assert_eq!(store.prune(at(40.0)).unwrap(), 2);
    let left: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(left, ["private:z/z@2.0.0", "shared/a@1.0.0"]);
    assert_eq!(store.len().unwrap(), 2);
    assert_eq!(store.prune(at(40.0)).unwrap(), 0);
}

#[test]
fn store_reset_prefix_clears_only_matching_keys() {
    let t = TempStore::new();
    let store = t.open();
    for k in ["shared/a@1.0.0", "shared/b@1.0.0", "private:a/a@1.0.0"] {
        store.record_crash(&key(k), at(0.0)).unwrap();
    }
    assert_eq!(
        store.reset_prefix("shared/").unwrap(),
        ["shared/a@1.0.0", "shared/b@1.0.0"]
    );
    assert_eq!(store.len().unwrap(), 1);
}

#[test]
fn policy_is_persisted_and_shared_by_every_opener() {
    let t = TempStore::new();
    let custom = BackendRecoveryPolicy::new(100 * MS, 5 * SEC);
    let store = RecoveryStore::open_with(&t.path, StoreOptions::default().policy(custom)).unwrap();
    assert_eq!(store.policy().unwrap(), custom);
    // A second handle opened without a policy sees the stored one, and decides by it.
    let other = t.open();
    assert_eq!(other.policy().unwrap(), custom);
    let k = zccache();
    assert_eq!(
        other.record_crash(&k, at(0.0)).unwrap(),
        BackendRecoveryDecision::Retry {
            retry_after: 100 * MS,
            attempt: 1
        }
    );
    assert_eq!(store.record_crash(&k, at(1.0)).unwrap(), refuse(4 * SEC));
    // A policy change by one handle is seen by the other at its next decision.
    other
        .set_policy(BackendRecoveryPolicy::new(SEC, 60 * SEC))
        .unwrap();
    assert_eq!(store.record_crash(&k, at(2.0)).unwrap(), refuse(58 * SEC));
    drop((store, other));
    assert_eq!(t.open().policy().unwrap().budget_window, 60 * SEC);
}

#[test]
fn new_store_uses_the_default_policy() {
    let t = TempStore::new();
    assert_eq!(t.open().policy().unwrap(), BackendRecoveryPolicy::default());
}

#[test]
fn batch_decides_in_order_in_one_call() {
    let t = TempStore::new();
    let store = t.open();
    let (a, b) = (key("shared/a@1.0.0"), key("shared/b@1.0.0"));
    let decisions = store
        .record_crashes(&[
            (a.clone(), at(0.0)),
            (b.clone(), at(0.0)),
            (a.clone(), at(1.0)),
        ])
        .unwrap();
    assert_eq!(decisions, [retry(), retry(), refuse(29 * SEC)]);
    assert_eq!(store.get(&a).unwrap().unwrap().total_crashes, 2);
}

// ---- Clock semantics. ----

fn boot(id: u128, since_boot: Duration) -> BootTime {
    BootTime {
        boot_id: id,
        since_boot,
    }
}

#[test]
fn wall_clock_step_back_within_a_boot_does_not_move_the_window() {
    let t = TempStore::new();
    let k = zccache();
    let store = t.open();
    store
        .record_crash(&k, Timestamp::with_boot(base(), boot(1, 100 * SEC)))
        .unwrap();
    // NTP steps the wall clock back a day; 10 s pass on the boot clock.
    let stepped = base() - Duration::from_secs(86_400);
    let now = Timestamp::with_boot(stepped, boot(1, 110 * SEC));
    assert_eq!(store.record_crash(&k, now).unwrap(), refuse(20 * SEC));
    // The window ends 30 s after it began on the boot clock, whatever the wall clock says.
    let later = Timestamp::with_boot(stepped, boot(1, 130 * SEC));
    assert_eq!(store.status(&k, later).unwrap(), BackendStatus::Healthy);
    assert_eq!(store.record_crash(&k, later).unwrap(), retry());
}

#[test]
fn wall_clock_step_back_without_boot_clock_bounds_the_refusal_by_one_window() {
    let t = TempStore::new();
    let k = zccache();
    let store = t.open();
    store.record_crash(&k, at(0.0)).unwrap();
    store.record_crash(&k, at(1.0)).unwrap();
    // The clock jumps back a day: the stored window now lies in the future.
    let back = at(1.0 - 86_400.0);
    assert_eq!(store.record_crash(&k, back).unwrap(), refuse(30 * SEC));
    // It was re-anchored at the observation, so one window later the backend may start again.
    let entry = store.get(&k).unwrap().unwrap();
    assert_eq!(entry.window_started_at, back);
    let one_window_later = back + DEFAULT_RECOVERY_BUDGET_WINDOW;
    assert_eq!(
        store.status(&k, one_window_later).unwrap(),
        BackendStatus::Healthy
    );
    assert_eq!(store.record_crash(&k, one_window_later).unwrap(), retry());
}

#[test]
fn status_with_window_in_the_future_does_not_trap_the_backend() {
    let t = TempStore::new();
    let k = zccache();
    let store = t.open();
    store.record_crash(&k, at(0.0)).unwrap();
    store.record_crash(&k, at(1.0)).unwrap();
    // The wall clock went back an hour: how much of the window is left cannot be known, and
    // waiting for the clock to catch up would hold the backend for an hour. It may start...
    for later in [0.0, 60.0, 3000.0] {
        assert_eq!(
            store.status(&k, at(-3600.0 + later)).unwrap(),
            BackendStatus::Healthy
        );
    }
    // ...and a crash now refuses it for exactly one window, counted from the crash.
    assert_eq!(
        store.record_crash(&k, at(-3600.0)).unwrap(),
        refuse(30 * SEC)
    );
    assert_eq!(
        store.status(&k, at(-3600.0 + 29.0)).unwrap(),
        BackendStatus::Refused {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: SEC
        }
    );
    assert_eq!(
        store.status(&k, at(-3570.0)).unwrap(),
        BackendStatus::Healthy
    );
}

#[test]
fn late_caller_on_the_same_boot_counts_as_no_time_like_the_reference() {
    let t = TempStore::new();
    let k = zccache();
    let store = t.open();
    let on_boot = |secs: f64| {
        Timestamp::with_boot(
            base() + Duration::from_secs_f64(secs),
            boot(7, Duration::from_secs_f64(100.0 + secs)),
        )
    };
    // Two brokers race: the crash stamped at 9 s reaches the store after the one at 10 s. The
    // window still began at 10 s, as in the reference: at 39.5 s half a second is left.
    let mut reference = BackendRecoveryState::new();
    let start = Instant::now();
    let expected = [retry(), refuse(30 * SEC), refuse(500 * MS), retry()];
    for (secs, want) in [10.0, 9.0, 39.5, 40.0].into_iter().zip(expected) {
        let from_reference =
            reference.record_crash(k.clone(), start + Duration::from_secs_f64(secs));
        assert_eq!(from_reference, want, "reference at {secs}");
        assert_eq!(
            store.record_crash(&k, on_boot(secs)).unwrap(),
            want,
            "store at {secs}"
        );
    }
}

#[test]
fn boot_change_falls_back_to_the_wall_clock() {
    let t = TempStore::new();
    let k = zccache();
    t.open()
        .record_crash(&k, Timestamp::with_boot(base(), boot(1, 500 * SEC)))
        .unwrap();
    // Reboot: the boot clock restarts near zero, the wall clock moved on 12 s.
    let after_reboot = Timestamp::with_boot(base() + 12 * SEC, boot(2, 3 * SEC));
    assert_eq!(
        t.open().record_crash(&k, after_reboot).unwrap(),
        refuse(18 * SEC)
    );
    // Within the new boot, the window (started in the old one) is still judged by wall time.
    let later = Timestamp::with_boot(base() + 31 * SEC, boot(2, 22 * SEC));
    assert_eq!(t.open().record_crash(&k, later).unwrap(), retry());
    // The new window began in boot 2, so from here the boot clock measures it.
    let stepped = Timestamp::with_boot(base() - 86_400 * SEC, boot(2, 32 * SEC));
    assert_eq!(
        t.open().record_crash(&k, stepped).unwrap(),
        refuse(20 * SEC)
    );
}

#[test]
fn real_clock_round_trip() {
    let t = TempStore::new();
    let k = zccache();
    let store = t.open();
    assert_eq!(store.record_crash(&k, Timestamp::now()).unwrap(), retry());
    let second = store.record_crash(&k, Timestamp::now()).unwrap();
    assert!(
        matches!(second, BackendRecoveryDecision::Refuse { retry_after, .. }
            if retry_after <= DEFAULT_RECOVERY_BUDGET_WINDOW
                && retry_after > DEFAULT_RECOVERY_BUDGET_WINDOW - 10 * SEC),
        "{second:?}"
    );
    let stored = store.get(&k).unwrap().unwrap();
    assert!(stored.window_started_at.boot().is_some() || !cfg!(target_os = "linux"));
}

// ---- Sharing and files. ----

#[test]
fn store_is_shared_across_threads_without_lost_updates() {
    let t = TempStore::new();
    let store = Arc::new(t.open());
    let keys: Vec<BackendKey> = (0..4).map(|i| key(&format!("shared/s{i}@1.0.0"))).collect();
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let store = Arc::clone(&store);
            let keys = keys.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    store
                        .record_crash(&keys[(i + n) % keys.len()], at(i as f64))
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let total: u64 = store.list().unwrap().iter().map(|e| e.total_crashes).sum();
    assert_eq!(total, 100);
}

#[test]
fn two_handles_in_one_process_see_each_others_commits() {
    let t = TempStore::new();
    let (a, b) = (t.open(), t.open());
    let k = zccache();
    a.record_crash(&k, at(0.0)).unwrap();
    assert_eq!(b.get(&k).unwrap().unwrap().crashes_in_window, 1);
    assert_eq!(b.record_crash(&k, at(1.0)).unwrap(), refuse(29 * SEC));
    assert!(b.reset(&k).unwrap());
    assert_eq!(a.get(&k).unwrap(), None);
}

#[test]
fn new_file_and_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/nested/recovery.redb");
    RecoveryStore::open(&path).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    // No temporary file is left beside the store.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["recovery.redb"]);
}

#[test]
fn open_without_create_refuses_missing_file_and_creates_nothing() {
    let t = TempStore::new();
    let err = RecoveryStore::open_with(&t.path, StoreOptions::default().create_if_missing(false))
        .unwrap_err();
    assert!(
        matches!(err, recovery_store::StoreError::NotFound { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&t.path.display().to_string()));
    assert!(!t.path.exists());
}

#[test]
fn concurrent_creators_share_one_store() {
    let t = TempStore::new();
    let path = Arc::new(t.path.clone());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || {
                let store = RecoveryStore::open(&*path).unwrap();
                store
                    .record_crash(&key(&format!("shared/c{i}@1.0.0")), at(0.0))
                    .unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(t.open().len().unwrap(), 4);
}

#[test]
fn read_only_open_never_writes_and_refuses_writes() {
    let t = TempStore::new();
    let k = zccache();
    t.open().record_crash(&k, at(0.0)).unwrap();
    let options = || StoreOptions::default().read_only(true);
    let store = RecoveryStore::open_with(&t.path, options()).unwrap();
    assert_eq!(store.get(&k).unwrap().unwrap().crashes_in_window, 1);
    assert_eq!(store.list().unwrap().len(), 1);
    let err = store.record_crash(&k, at(1.0)).unwrap_err();
    assert!(
        matches!(err, recovery_store::StoreError::ReadOnly { .. }),
        "{err}"
    );
    // A writer in the same moment is not blocked, and the reader sees its commit.
    let writer = t.open();
    writer.record_crash(&k, at(2.0)).unwrap();
    assert_eq!(store.get(&k).unwrap().unwrap().crashes_in_window, 2);
    drop((store, writer));
    // Opening and reading read-only leaves the file byte-for-byte as it was.
    let snapshot = std::fs::read(&t.path).unwrap();
    let store = RecoveryStore::open_with(&t.path, options()).unwrap();
    assert_eq!(store.len().unwrap(), 1);
    drop(store);
    assert_eq!(std::fs::read(&t.path).unwrap(), snapshot);
    // A missing file is not created.
    let missing = t.dir.path().join("missing.redb");
    assert!(RecoveryStore::open_with(&missing, options()).is_err());
    assert!(!missing.exists());
}

#[test]
fn store_handle_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<RecoveryStore>();
    assert_send_sync::<recovery_store::StoreError>();
}

// Guards the sweep of creators' temporary files: liveness is the creator's lock on its file,
// never its PID (which means nothing across PID namespaces).
#[test]
fn creation_sweeps_away_leftovers_of_dead_creators_only() {
    use std::os::fd::AsRawFd;
    let t = TempStore::new();
    let leftover = |pid: u32| {
        t.dir
            .path()
            .join(format!(".recovery.redb.creating.{pid}.1"))
    };
    // Unlocked, though named for this live process: abandoned.
    let abandoned = leftover(std::process::id());
    // Locked, though named for a PID that does not exist here: a creator elsewhere, alive.
    let live = leftover(u32::MAX);
    let unrelated = t.dir.path().join(".other.redb.creating.1.1");
    for file in [&abandoned, &live, &unrelated] {
        std::fs::write(file, b"half-made").unwrap();
    }
    // A creator holds an open-file-description write lock on byte 0 of its file.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&live)
        .unwrap();
    // SAFETY: an all-zero flock is valid; fcntl on a descriptor this test owns.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_len = 1;
    assert_eq!(
        unsafe { libc::fcntl(held.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) },
        0
    );
    t.open();
    assert!(!abandoned.exists(), "an unlocked temporary file is removed");
    assert!(
        live.exists(),
        "a locked (live) creator's file is left alone"
    );
    assert!(unrelated.exists(), "another store's files are left alone");
    drop(held);
}

#[test]
fn replace_all_refuses_entries_the_store_could_not_have_written() {
    let t = TempStore::new();
    let store = t.open();
    let k = zccache();
    store.record_crash(&k, at(0.0)).unwrap();
    let entry = |crashes_in_window, total_crashes| recovery_store::RecoveryEntry {
        key: zccache(),
        window_started_at: at(0.0),
        crashes_in_window,
        last_crash: at(0.0),
        total_crashes,
    };
    for bad in [
        vec![entry(0, 0)],
        vec![entry(3, 2)],
        vec![entry(1, 1), entry(2, 2)],
    ] {
        let err = store.replace_all(None, &bad).unwrap_err();
        assert!(
            matches!(&err, recovery_store::StoreError::InvalidImport { detail }
                if detail.contains("shared/zccache@1.11.20")),
            "{err}"
        );
    }
    // Nothing changed; a valid document replaces everything.
    assert_eq!(store.get(&k).unwrap().unwrap().total_crashes, 1);
    store.replace_all(None, &[entry(2, 5)]).unwrap();
    assert_eq!(store.list().unwrap(), [entry(2, 5)]);
}

#[test]
fn a_panicking_reset_predicate_is_the_callers_panic_and_changes_nothing() {
    let t = TempStore::new();
    let store = t.open();
    store.record_crash(&zccache(), at(0.0)).unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.reset_where("", |_| panic!("caller bug"))
    }))
    .expect_err("the caller's panic propagates");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"caller bug"));
    assert_eq!(store.len().unwrap(), 1);
    assert_eq!(
        store.reset_where("", |_| true).unwrap(),
        ["shared/zccache@1.11.20"]
    );
}

#[test]
fn late_caller_rule_stays_within_one_boot_and_spans_any_lateness_on_it() {
    let t = TempStore::new();
    let k = zccache();
    let store = t.open();
    store
        .record_crash(&k, Timestamp::with_boot(base(), boot(1, 500 * SEC)))
        .unwrap();
    // A reboot with the wall clock 10 s back is a clock step, not a late caller: the window
    // cannot be placed, so the backend may start, and its next crash refuses for one window.
    let after = Timestamp::with_boot(base() - 10 * SEC, boot(2, 5 * SEC));
    assert_eq!(store.status(&k, after).unwrap(), BackendStatus::Healthy);
    assert_eq!(store.record_crash(&k, after).unwrap(), refuse(30 * SEC));
    let one_window_on = Timestamp::with_boot(base() + 20 * SEC, boot(2, 35 * SEC));
    assert_eq!(
        store.status(&k, one_window_on).unwrap(),
        BackendStatus::Healthy
    );

    // On one boot the boot clock never steps: a stamp a window or more before the start is a
    // late caller like any other, and counts as no time, as in the reference.
    for (lateness, ms) in [(SEC, 0), (30 * SEC, 0), (30 * SEC, 1), (3600 * SEC, 0)] {
        let t = TempStore::new();
        let store = t.open();
        let on_boot = |d: Duration| Timestamp::with_boot(base() + d, boot(7, d));
        let start = on_boot(4000 * SEC);
        store.record_crash(&k, start).unwrap();
        let late = on_boot(4000 * SEC - lateness - ms * MS);
        assert_eq!(
            store.status(&k, late).unwrap(),
            BackendStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: 30 * SEC
            }
        );
        assert_eq!(store.record_crash(&k, late).unwrap(), refuse(30 * SEC));
        assert_eq!(store.get(&k).unwrap().unwrap().window_started_at, start);
    }
}

#[test]
fn status_follows_the_stored_policy() {
    let t = TempStore::new();
    let policy = BackendRecoveryPolicy::new(MS, 5 * SEC);
    let store = RecoveryStore::open_with(&t.path, StoreOptions::default().policy(policy)).unwrap();
    let k = zccache();
    store.record_crash(&k, at(0.0)).unwrap();
    store.record_crash(&k, at(1.0)).unwrap();
    assert_eq!(
        store.status(&k, at(4.0)).unwrap(),
        BackendStatus::Refused {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: SEC
        }
    );
    assert_eq!(store.status(&k, at(5.0)).unwrap(), BackendStatus::Healthy);
}

// ---- Keys built with the broker's unchecked `BackendKey::new`. ----

#[test]
fn store_refuses_invalid_keys_before_touching_the_file() {
    let t = TempStore::new();
    t.open().record_crash(&zccache(), at(0.0)).unwrap();
    let before = std::fs::read(&t.path).unwrap();
    // A read-only handle answers a write with `ReadOnly` once it reaches the storage layer, so
    // `InvalidKey` from it proves the key was checked first.
    let store = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true)).unwrap();
    let bad = [
        BackendKey::new(BrokerInstanceKey::Shared, "a/b", "1.0.0", ""),
        BackendKey::new(BrokerInstanceKey::Shared, "Zccache", "1.0.0", ""),
        BackendKey::new(BrokerInstanceKey::Shared, "zccache", "1.0", ""),
        BackendKey::new(BrokerInstanceKey::Shared, "zccache", "1.0.0", "ABC"),
        BackendKey::new(
            BrokerInstanceKey::Private {
                service_name: "x@y".into(),
            },
            "zccache",
            "1.0.0",
            "",
        ),
        BackendKey::new(BrokerInstanceKey::Shared, "z".repeat(65), "1.0.0", ""),
    ];
    for key in &bad {
        let invalid = |r: Result<(), recovery_store::StoreError>| {
            assert!(
                matches!(r, Err(recovery_store::StoreError::InvalidKey(_))),
                "{key:?}: {r:?}"
            )
        };
        invalid(store.record_crash(key, at(1.0)).map(drop));
        invalid(store.record_crashes(&[(key.clone(), at(1.0))]).map(drop));
        invalid(store.record_success(key).map(drop));
        invalid(store.reset(key).map(drop));
        invalid(store.get(key).map(drop));
        invalid(store.status(key, at(1.0)).map(drop));
    }
    drop(store);
    assert!(
        std::fs::read(&t.path).unwrap() == before,
        "the file changed"
    );
}

#[test]
fn memory_state_accepts_any_key_as_the_broker_does() {
    let mut state = BackendRecoveryState::new();
    let odd = BackendKey::new(BrokerInstanceKey::Shared, "Not/Valid", "x", "");
    let now = Instant::now();
    assert_eq!(state.record_crash(odd.clone(), now), retry());
    assert_eq!(state.record_crash(odd.clone(), now + SEC), refuse(29 * SEC));
    state.record_success(&odd);
    assert_eq!(state.record_crash(odd, now + 2 * SEC), retry());
}

#[test]
fn for_each_entry_streams_in_key_order_and_stops_when_told() {
    let t = TempStore::new();
    let store = t.open();
    for name in ["c", "a", "b"] {
        store
            .record_crash(&key(&format!("shared/{name}@1.0.0")), at(0.0))
            .unwrap();
    }
    store
        .record_crash(&key("private:x/a@1.0.0"), at(0.0))
        .unwrap();
    let mut seen = Vec::new();
    store
        .for_each_entry("shared/", |entry| {
            seen.push(entry?.key.to_string());
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, ["shared/a@1.0.0", "shared/b@1.0.0", "shared/c@1.0.0"]);
    let mut visits = 0;
    let stopped = store.for_each_entry("", |_| {
        visits += 1;
        Err(recovery_store::StoreError::ReadOnly {
            path: "stop".into(),
        })
    });
    assert!(matches!(
        stopped,
        Err(recovery_store::StoreError::ReadOnly { .. })
    ));
    assert_eq!(visits, 1);
}

// Guards short transactions for long operations: prune and resets over more than one chunk
// commit once per chunk (two syncs each), never holding the write lock for the whole walk,
// and still remove exactly what they should.
#[test]
fn long_operations_commit_in_bounded_chunks() {
    let t = TempStore::new();
    let store = t.open();
    let n = 2 * recovery_store::CHUNK + 500;
    let crashes: Vec<(BackendKey, Timestamp)> = (0..n)
        .map(|i| (key(&format!("shared/svc{i:05}@1.0.0")), at(0.0)))
        .chain((0..10).map(|i| (key(&format!("shared/fresh{i}@1.0.0")), at(100.0))))
        .collect();
    store.record_crashes(&crashes).unwrap();
    let chunks = n.div_ceil(recovery_store::CHUNK) as u64;

    let before = store.sync_count();
    assert_eq!(store.prune(at(100.0)).unwrap(), n);
    // Two syncs per commit, and redb syncs once more when a commit has to grow the file (as
    // the copy-on-write pages of a large removal may): one commit per chunk either way, never
    // one for the whole walk (2) nor one per entry.
    let syncs = store.sync_count() - before;
    assert!(
        (2 * chunks..=2 * chunks + 1).contains(&syncs),
        "one commit per chunk: {syncs} syncs for {chunks} chunks"
    );
    assert_eq!(store.len().unwrap(), 10, "live windows are kept");

    let before = store.sync_count();
    assert_eq!(store.prune(at(100.0)).unwrap(), 0);
    assert_eq!(
        store.sync_count(),
        before,
        "nothing to prune, nothing committed"
    );

    store.record_crashes(&crashes[..n]).unwrap();
    let before = store.sync_count();
    let cleared = store.reset_where("shared/svc", |_| true).unwrap();
    assert_eq!(cleared.len(), n);
    assert!(cleared.windows(2).all(|w| w[0] < w[1]), "in key order");
    assert_eq!(store.sync_count() - before, 2 * chunks);
    assert_eq!(store.len().unwrap(), 10);
}
