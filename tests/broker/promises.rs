//! What the durable type promises beyond the broker's tests: windows survive a reopen, the
//! broker always gets a decision when the store fails, and the state reaches the file once the
//! store is back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryState,
    BrokerInstanceKey, DurableRecoveryState, RecoveryStore, StoreHealth, StoreOptions,
};

use crate::util::{TempStore, key};

const SEC: Duration = Duration::from_secs(1);

fn zccache() -> BackendKey {
    key("shared/zccache@1.11.20")
}

#[test]
fn a_window_is_carried_across_a_drop_and_a_reopen() {
    let t = TempStore::new();
    let now = Instant::now();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    assert!(matches!(
        state.record_crash(zccache(), now),
        BackendRecoveryDecision::Retry { attempt: 1, .. }
    ));
    drop(state); // the broker restarts
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    assert!(matches!(
        state.record_crash(zccache(), now + 10 * SEC),
        BackendRecoveryDecision::Refuse { retry_after, .. } if retry_after == 20 * SEC
    ));
    state.record_success(&zccache());
    drop(state);
    assert_eq!(RecoveryStore::open(&t.path).unwrap().len().unwrap(), 0);
}

#[test]
fn keys_the_store_refuses_are_decided_in_memory_only() {
    let t = TempStore::new();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    let odd = BackendKey::new(BrokerInstanceKey::Shared, "Not/Valid", "x", "");
    let now = Instant::now();
    assert!(matches!(
        state.record_crash(odd.clone(), now),
        BackendRecoveryDecision::Retry { .. }
    ));
    assert!(matches!(
        state.record_crash(odd.clone(), now + SEC),
        BackendRecoveryDecision::Refuse { .. }
    ));
    assert_eq!(state.memory_only_keys(), 1);
    assert_eq!(state.health(), StoreHealth::Durable);
    state.record_success(&odd);
    assert_eq!(state.memory_only_keys(), 0);
    drop(state);
    assert_eq!(RecoveryStore::open(&t.path).unwrap().len().unwrap(), 0);
}

// The store cannot be opened at all (another program holds the file exclusively): a
// supervisor still gets every decision from the policy in memory, and the decisions reach the
// file once the store is back.
#[test]
fn a_store_that_cannot_be_opened_degrades_and_writes_through_later() {
    let t = TempStore::new();
    let policy = BackendRecoveryPolicy::new(Duration::from_millis(10), 30 * SEC);
    RecoveryStore::open_with(&t.path, StoreOptions::default().policy(policy)).unwrap();
    let exclusive = redb::Database::open(&t.path).unwrap();

    let mut state = DurableRecoveryState::open_or_degraded(
        &t.path,
        StoreOptions::default(),
        BackendRecoveryPolicy::default(),
    );
    let mut reference = BackendRecoveryState::with_policy(BackendRecoveryPolicy::default());
    let now = Instant::now();
    let other = key("shared/other@1.0.0");
    for (k, at) in [(zccache(), 0), (other.clone(), 1), (zccache(), 2)] {
        let at = now + at * SEC;
        assert_eq!(
            state.record_crash(k.clone(), at),
            reference.record_crash(k, at)
        );
    }
    state.record_success(&other);
    let StoreHealth::Degraded { pending, cause, .. } = state.health() else {
        panic!("degraded expected, got {:?}", state.health());
    };
    assert_eq!(pending, 4);
    assert!(cause.contains(&t.path.display().to_string()), "{cause}");
    assert!(state.flush().is_err(), "the store is still held");

    drop(exclusive);
    state.flush().unwrap();
    assert_eq!(state.health(), StoreHealth::Durable);
    // Back on the store, decisions follow the stored policy and the written-through state.
    assert_eq!(state.policy(), policy);
    let store = RecoveryStore::open(&t.path).unwrap();
    let entry = store.get(&zccache()).unwrap().expect("written through");
    assert_eq!((entry.crashes_in_window, entry.total_crashes), (2, 2));
    assert!(
        store.get(&other).unwrap().is_none(),
        "the success was written through"
    );
    assert!(matches!(
        state.record_crash(zccache(), now + 3 * SEC),
        BackendRecoveryDecision::Refuse { .. }
    ));
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` with one file, which it returns.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0xAAu8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    filler
}

// A real full disk: decisions keep coming from memory while it is full, and every one of them
// is in the file after space is freed, through the same handle.
#[test]
fn a_full_disk_degrades_and_the_same_handle_writes_through_after_space_is_freed() {
    let Some(fs) = Tmpfs::mount("600k") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let path = fs.path().join("recovery.redb");
    let mut state = DurableRecoveryState::open(&path).unwrap();
    let mut reference = BackendRecoveryState::new();
    let now = Instant::now();
    let keys: Vec<BackendKey> = (0..6)
        .map(|i| key(&format!("shared/svc{i}@1.0.0")))
        .collect();
    // One crash on the store before the disk fills: the fallback must build on it.
    assert_eq!(
        state.record_crash(keys[0].clone(), now),
        reference.record_crash(keys[0].clone(), now)
    );
    let filler = fill(fs.path());
    for (i, k) in keys.iter().enumerate() {
        let at = now + (i as u32 + 1) * SEC;
        assert_eq!(
            state.record_crash(k.clone(), at),
            reference.record_crash(k.clone(), at),
            "{k}"
        );
    }
    assert!(
        matches!(state.health(), StoreHealth::Degraded { .. }),
        "a full disk must degrade the handle: {:?}",
        state.health()
    );

    std::fs::remove_file(filler).unwrap();
    state.flush().unwrap();
    assert_eq!(state.health(), StoreHealth::Durable);
    drop(state);
    let store = RecoveryStore::open(&path).unwrap();
    for (i, k) in keys.iter().enumerate() {
        let entry = store.get(k).unwrap().expect("written through");
        let want = if i == 0 { 2 } else { 1 };
        assert_eq!(entry.crashes_in_window, want, "{k}");
    }
}

// The file turns to garbage under a live handle: the handle must not forget the crash it has
// just committed, or a crash-looping backend gets a fresh retry.
#[test]
fn a_file_that_turns_unreadable_keeps_the_last_committed_state() {
    let t = TempStore::new();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    let now = Instant::now();
    assert!(matches!(
        state.record_crash(zccache(), now),
        BackendRecoveryDecision::Retry { .. }
    ));
    std::fs::write(&t.path, vec![0x5Au8; 8192]).unwrap();
    let decision = state.record_crash(zccache(), now + SEC);
    assert!(
        matches!(
            decision,
            BackendRecoveryDecision::Refuse { retry_after, .. } if retry_after == 29 * SEC
        ),
        "a second crash in the window must refuse, not get a fresh retry: {decision:?}"
    );
    assert!(matches!(state.health(), StoreHealth::Degraded { .. }));
}

// A broker that never crashes pays nothing on its healthy path: clearing a backend with no
// state commits nothing and syncs nothing.
#[test]
fn the_healthy_path_costs_no_commit() {
    let t = TempStore::new();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    let syncs = state.store().unwrap().sync_count();
    for _ in 0..100 {
        state.record_success(&zccache());
    }
    assert_eq!(state.store().unwrap().sync_count(), syncs);
    state.record_crash(zccache(), Instant::now());
    assert!(
        state.store().unwrap().sync_count() > syncs,
        "a crash does commit"
    );
}

// A policy changed by another process (an operator's `policy set`) applies to `status` at
// once, as it does to the store's own decisions.
#[test]
fn status_follows_a_policy_changed_by_another_process() {
    let t = TempStore::new();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    let now = recovery_store::Timestamp::now();
    state.record_crash_at(&zccache(), now);
    state.record_crash_at(&zccache(), now);
    RecoveryStore::open(&t.path)
        .unwrap()
        .set_policy(BackendRecoveryPolicy::new(SEC, 60 * SEC))
        .unwrap();
    let later = now + 40 * SEC;
    assert!(
        matches!(
            state.status(&zccache(), later),
            recovery_store::BackendStatus::Refused { retry_after, .. } if retry_after == 20 * SEC
        ),
        "{:?}",
        state.status(&zccache(), later)
    );
    assert_eq!(state.policy(), BackendRecoveryPolicy::new(SEC, 60 * SEC));
}

// A store allowing three retries per window: the durable type decides with them, and its
// status and policy report them, whoever stored them.
#[test]
fn retries_per_window_stored_by_another_process_decide() {
    let t = TempStore::new();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    let policy = recovery_store::RecoveryPolicy::new(BackendRecoveryPolicy::default(), 3);
    RecoveryStore::open(&t.path)
        .unwrap()
        .set_recovery_policy(policy, Some("bursty backend"))
        .unwrap();
    let now = recovery_store::Timestamp::now();
    for attempt in 1..=3 {
        assert_eq!(
            state.record_crash_at(&zccache(), now),
            BackendRecoveryDecision::Retry {
                retry_after: policy.recovery.retry_backoff,
                attempt
            }
        );
        assert!(matches!(
            state.status(&zccache(), now),
            recovery_store::BackendStatus::Recovering { crashes_in_window, .. }
                if crashes_in_window == attempt
        ));
    }
    assert!(matches!(
        state.record_crash_at(&zccache(), now),
        BackendRecoveryDecision::Refuse { .. }
    ));
    assert_eq!(state.recovery_policy(), policy);
    // Stored retries outside 1..=100 are refused with the range named, and change nothing.
    let store = RecoveryStore::open(&t.path).unwrap();
    for bad in [0, 101] {
        let err = store
            .set_recovery_policy(
                recovery_store::RecoveryPolicy {
                    recovery: BackendRecoveryPolicy::default(),
                    retries_per_window: bad,
                },
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("1..=100"), "{err}");
    }
    assert_eq!(store.recovery_policy().unwrap(), policy);
    // A change of timing alone keeps the retries.
    store
        .set_policy(BackendRecoveryPolicy::new(SEC, 60 * SEC))
        .unwrap();
    assert_eq!(store.recovery_policy().unwrap().retries_per_window, 3);
}

// An override stored by another process decides the durable type's crashes of that key, and
// the handle remembers it as the policy for its degraded decisions about the key.
#[test]
fn an_override_decides_and_is_remembered_for_its_key() {
    let t = TempStore::new();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    let fast = recovery_store::RecoveryPolicy::new(
        BackendRecoveryPolicy::new(Duration::from_millis(5), 10 * SEC),
        2,
    );
    let scope = recovery_store::PolicyScope::service("zccache").unwrap();
    let store = RecoveryStore::open(&t.path).unwrap();
    assert!(store.set_override(&scope, fast, None).unwrap());
    assert!(
        !store.set_override(&scope, fast, None).unwrap(),
        "already stored"
    );
    let now = recovery_store::Timestamp::now();
    assert_eq!(
        state.record_crash_at(&zccache(), now),
        BackendRecoveryDecision::Retry {
            retry_after: Duration::from_millis(5),
            attempt: 1
        }
    );
    assert_eq!(state.policy_of(&zccache()), fast);
    assert_eq!(
        state.policy_of(&key("shared/other@1.0.0")),
        state.recovery_policy()
    );
    assert!(matches!(
        state.record_crash_at(&zccache(), now),
        BackendRecoveryDecision::Retry { attempt: 2, .. }
    ));
    assert!(matches!(
        state.record_crash_at(&zccache(), now),
        BackendRecoveryDecision::Refuse { retry_after, .. } if retry_after == 10 * SEC
    ));
    assert!(store.remove_override(&scope, None).unwrap());
    assert!(
        !store.remove_override(&scope, None).unwrap(),
        "already gone"
    );
    assert_eq!(store.policy_for(&zccache()).unwrap().scope, None);
}

// Degraded, a key is judged by the override the store last applied to it, not by the default:
// a service allowed two retries keeps its second one when the file turns unreadable.
#[test]
fn a_degraded_handle_judges_a_key_by_its_last_read_override() {
    let t = TempStore::new();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    let fast = recovery_store::RecoveryPolicy::new(
        BackendRecoveryPolicy::new(Duration::from_millis(5), 10 * SEC),
        2,
    );
    RecoveryStore::open(&t.path)
        .unwrap()
        .set_override(
            &recovery_store::PolicyScope::service("zccache").unwrap(),
            fast,
            None,
        )
        .unwrap();
    let now = Instant::now();
    assert!(matches!(
        state.record_crash(zccache(), now),
        BackendRecoveryDecision::Retry { attempt: 1, .. }
    ));
    std::fs::write(&t.path, vec![0x5Au8; 8192]).unwrap();
    assert_eq!(
        state.record_crash(zccache(), now + SEC),
        BackendRecoveryDecision::Retry {
            retry_after: Duration::from_millis(5),
            attempt: 2
        }
    );
    assert!(matches!(state.health(), StoreHealth::Degraded { .. }));
    assert!(matches!(
        state.record_crash(zccache(), now + 2 * SEC),
        BackendRecoveryDecision::Refuse { retry_after, .. } if retry_after == 8 * SEC
    ));
    // A key the store never judged for this handle gets the default as last read.
    let other = key("shared/other@1.0.0");
    assert_eq!(
        state.policy_of(&other),
        recovery_store::RecoveryPolicy::default()
    );
    assert!(matches!(
        state.record_crash(other.clone(), now),
        BackendRecoveryDecision::Retry { retry_after, .. } if retry_after == Duration::from_millis(250)
    ));
}
