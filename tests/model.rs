//! Property tests: random sequences of crashes, successes, resets, reopens, time advances,
//! wall-clock steps and reboots give the same decisions, states and statuses on the durable
//! store as on an in-memory model; and, with monotonic time, the same decisions as the
//! in-memory `BackendRecoveryState` that mirrors the broker's reference module. The model also
//! runs stores whose policy allows several retries per window.
//!
//! `RECOVERY_STORE_PROPTEST_CASES` raises the number of cases (default 48 each).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BackendRecoveryState, BackendStatus, BootTime, PolicyScope, RecoveryPolicy, RecoveryStore,
    StoreOptions, Timestamp,
};

use crate::util::{TempStore, base, key};

const KEYS: [&str; 3] = [
    "shared/alpha@1.0.0",
    "private:beta/beta@2.1.0-rc.1",
    "explicit:ci/gamma@0.0.1#00ff",
];

#[derive(Clone, Debug)]
enum Op {
    Crash(usize),
    Success(usize),
    Reset(usize),
    Reopen,
    /// Both clocks move forward this many milliseconds.
    Advance(u64),
    /// The wall clock alone steps back this many milliseconds (NTP or an operator).
    StepBack(u64),
    /// The wall clock alone steps forward.
    StepForward(u64),
    /// The machine reboots: a new boot id, the boot clock restarts, wall time moves on.
    Reboot(u64),
    /// A crash stamped this many milliseconds ago on both clocks reaches the store late, as
    /// when two brokers race.
    LateCrash(usize, u64),
    /// Both clocks move forward to exactly one window after the key's window start, plus this
    /// many milliseconds (-1, 0 or 1): the boundary random steps almost never hit.
    ToWindowEdge(usize, i8),
    /// An override for the key (true) or for its service (false).
    Override(bool, usize, RecoveryPolicy),
    /// The override for the key (true) or its service (false) is removed.
    Unset(bool, usize),
    /// Entries whose window has ended are removed.
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS.len()).prop_map(Op::Crash),
        1 => (0..KEYS.len()).prop_map(Op::Success),
        1 => (0..KEYS.len()).prop_map(Op::Reset),
        1 => Just(Op::Reopen),
        4 => (0u64..45_000).prop_map(Op::Advance),
        1 => (1u64..=86_400_000).prop_map(Op::StepBack),
        1 => (1u64..=3_600_000).prop_map(Op::StepForward),
        1 => (0u64..120_000).prop_map(Op::Reboot),
        1 => ((0..KEYS.len()), 0u64..40_000).prop_map(|(k, ms)| Op::LateCrash(k, ms)),
        2 => ((0..KEYS.len()), -1i8..=1).prop_map(|(k, d)| Op::ToWindowEdge(k, d)),
    ]
}

pub(crate) fn policy() -> impl Strategy<Value = BackendRecoveryPolicy> {
    // Stores hold only policies whose backoff is shorter than the window.
    (0u64..2_000, 2u64..60_000).prop_map(|(backoff, window)| {
        BackendRecoveryPolicy::new(
            Duration::from_millis(backoff % window),
            Duration::from_millis(window),
        )
    })
}

/// [`op`], plus overrides set and removed for each key and its service, and prunes.
fn op_with_overrides() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => op(),
        2 => (any::<bool>(), 0..KEYS.len(), policy(), 1u32..=3)
            .prop_map(|(key, k, p, n)| Op::Override(key, k, RecoveryPolicy::new(p, n))),
        1 => (any::<bool>(), 0..KEYS.len()).prop_map(|(key, k)| Op::Unset(key, k)),
        1 => Just(Op::Prune),
    ]
}

fn scope(key_scope: bool, k: usize) -> PolicyScope {
    let key = key(KEYS[k]);
    if key_scope {
        PolicyScope::key(key).unwrap()
    } else {
        PolicyScope::service(&key.service_name).unwrap()
    }
}

pub(crate) fn cases() -> u32 {
    std::env::var("RECOVERY_STORE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// The simulated machine's clocks.
struct Clock {
    wall_ms: i64,
    boot_id: u128,
    since_boot_ms: u64,
}

impl Clock {
    fn now(&self) -> Timestamp {
        self.ago(0)
    }

    /// A reading taken `ms` milliseconds ago on both clocks (never before this boot began).
    fn ago(&self, ms: u64) -> Timestamp {
        let ms = ms.min(self.since_boot_ms);
        let wall_ms = self.wall_ms - ms as i64;
        let offset = Duration::from_millis(wall_ms.unsigned_abs());
        let wall = if wall_ms >= 0 {
            base() + offset
        } else {
            base() - offset
        };
        Timestamp::with_boot(
            wall,
            BootTime {
                boot_id: self.boot_id,
                since_boot: Duration::from_millis(self.since_boot_ms - ms),
            },
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Window {
    started: Timestamp,
    crashes: u32,
    total: u64,
}

/// The policy written out longhand from the reference, plus the store's one addition: a window
/// that starts after `now` because the wall clock went back is re-anchored at `now` by the next
/// crash, and reads as healthy until then. A start after `now` on the same boot's clock, by any
/// amount, is a late caller and counts as no time, as in the reference.
struct Model {
    policy: BackendRecoveryPolicy,
    /// Crashes 1..=retries in a window retry; the next is refused (1 in the reference).
    retries: u32,
    windows: HashMap<usize, Window>,
    /// Per-key overrides, by key index.
    key_overrides: HashMap<usize, RecoveryPolicy>,
    /// Per-service overrides, by the index of a key of that service (every key's service
    /// differs).
    service_overrides: HashMap<usize, RecoveryPolicy>,
}

impl Model {
    /// The most specific policy for key `k`: its own, its service's, or the default.
    fn policy_of(&self, k: usize) -> (BackendRecoveryPolicy, u32) {
        self.key_overrides
            .get(&k)
            .or_else(|| self.service_overrides.get(&k))
            .map_or((self.policy, self.retries), |p| {
                (p.recovery, p.retries_per_window)
            })
    }

    fn elapsed(&self, window: &Window, now: Timestamp) -> Option<Duration> {
        if let Some(elapsed) = now.duration_since(&window.started) {
            return Some(elapsed);
        }
        let (started, now) = (window.started.boot()?, now.boot()?);
        (started.boot_id == now.boot_id).then_some(Duration::ZERO)
    }

    fn crash(&mut self, k: usize, now: Timestamp) -> BackendRecoveryDecision {
        let (p, retries) = self.policy_of(k);
        let fresh = Window {
            started: now,
            crashes: 0,
            total: 0,
        };
        let elapsed = self.windows.get(&k).map(|w| self.elapsed(w, now));
        let w = self.windows.entry(k).or_insert(fresh);
        let elapsed = match elapsed.unwrap_or(Some(Duration::ZERO)) {
            Some(e) => e,
            None => {
                w.started = now;
                Duration::ZERO
            }
        };
        w.total += 1;
        if w.crashes == 0 || elapsed >= p.budget_window {
            w.started = now;
            w.crashes = 1;
            return BackendRecoveryDecision::Retry {
                retry_after: p.retry_backoff,
                attempt: 1,
            };
        }
        w.crashes += 1;
        if w.crashes <= retries {
            return BackendRecoveryDecision::Retry {
                retry_after: p.retry_backoff,
                attempt: w.crashes,
            };
        }
        BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: p.budget_window - elapsed,
        }
    }

    fn status(&self, k: usize, now: Timestamp) -> BackendStatus {
        let Some(w) = self.windows.get(&k) else {
            return BackendStatus::Healthy;
        };
        let Some(elapsed) = self.elapsed(w, now) else {
            return BackendStatus::Healthy;
        };
        let (policy, retries) = self.policy_of(k);
        if elapsed >= policy.budget_window {
            BackendStatus::Healthy
        } else if w.crashes <= retries {
            BackendStatus::Recovering {
                crashes_in_window: w.crashes,
                window_remaining: policy.budget_window - elapsed,
            }
        } else {
            BackendStatus::Refused {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: policy.budget_window - elapsed,
            }
        }
    }
}

/// The broker's reference module (`../shared/reference/recovery.rs`), transcribed line by line
/// and independent of this crate's policy code: the store and the drop-in are both held to it.
pub(crate) struct Reference {
    policy: BackendRecoveryPolicy,
    /// Window start and crashes in the window, per key.
    pub entries: HashMap<usize, (Instant, u32)>,
}

impl Reference {
    pub(crate) fn new(policy: BackendRecoveryPolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
        }
    }

    pub(crate) fn record_crash(&mut self, k: usize, now: Instant) -> BackendRecoveryDecision {
        let elapsed_since = |started: Instant| {
            now.checked_duration_since(started)
                .unwrap_or(Duration::ZERO)
        };
        let entry = self.entries.entry(k).or_insert((now, 0));
        // refresh
        if elapsed_since(entry.0) >= self.policy.budget_window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 == 1 {
            return BackendRecoveryDecision::Retry {
                retry_after: self.policy.retry_backoff,
                attempt: 1,
            };
        }
        BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: self
                .policy
                .budget_window
                .saturating_sub(elapsed_since(entry.0)),
        }
    }

    pub(crate) fn record_success(&mut self, k: usize) {
        self.entries.remove(&k);
    }
}

fn keys() -> Vec<BackendKey> {
    KEYS.iter().map(|k| key(k)).collect()
}

/// Runs `ops` on a store holding `stored` and on the model, comparing every decision, status
/// and entry.
fn store_matches_model(stored: RecoveryPolicy, ops: &[Op]) -> Result<(), TestCaseError> {
    let policy = stored.recovery;
    let t = TempStore::new();
    let keys = keys();
    let mut store =
        RecoveryStore::open_with(&t.path, StoreOptions::default().policy(policy)).unwrap();
    if stored.retries_per_window != 1 {
        store.set_recovery_policy(stored, None).unwrap();
    }
    let mut model = Model {
        policy,
        retries: stored.retries_per_window,
        windows: HashMap::new(),
        key_overrides: HashMap::new(),
        service_overrides: HashMap::new(),
    };
    let mut clock = Clock {
        wall_ms: 0,
        boot_id: 1,
        since_boot_ms: 60_000,
    };
    for op in ops {
        let now = clock.now();
        match *op {
            Op::Crash(k) | Op::LateCrash(k, _) => {
                let now = match *op {
                    Op::LateCrash(_, ms) => clock.ago(ms),
                    _ => now,
                };
                let got = store.record_crash(&keys[k], now).unwrap();
                let want = model.crash(k, now);
                prop_assert_eq!(&got, &want, "crash {} at {:?}", KEYS[k], now);
                // Whatever the clocks did, a refusal never outlasts one window.
                if let BackendRecoveryDecision::Refuse { retry_after, .. } = got {
                    prop_assert!(retry_after <= model.policy_of(k).0.budget_window);
                }
            }
            Op::Success(k) => {
                let had = model.windows.remove(&k).is_some();
                prop_assert_eq!(store.record_success(&keys[k]).unwrap(), had);
            }
            Op::Reset(k) => {
                let had = model.windows.remove(&k).is_some();
                prop_assert_eq!(store.reset(&keys[k]).unwrap(), had);
            }
            Op::Reopen => {
                drop(store);
                store = t.open();
                prop_assert_eq!(store.recovery_policy().unwrap(), stored);
            }
            Op::Advance(ms) => {
                clock.wall_ms += ms as i64;
                clock.since_boot_ms += ms;
            }
            Op::ToWindowEdge(k, delta) => {
                let edge = |w: &Window| {
                    let elapsed = model.elapsed(w, now)?;
                    let window = model.policy_of(k).0.budget_window;
                    let target = window.as_millis() as i64 + i64::from(delta);
                    u64::try_from(target - elapsed.as_millis() as i64).ok()
                };
                if let Some(ms) = model.windows.get(&k).and_then(edge) {
                    clock.wall_ms += ms as i64;
                    clock.since_boot_ms += ms;
                }
            }
            Op::Override(key_scope, k, p) => {
                let changed = store.set_override(&scope(key_scope, k), p, None).unwrap();
                let map = if key_scope {
                    &mut model.key_overrides
                } else {
                    &mut model.service_overrides
                };
                prop_assert_eq!(changed, map.insert(k, p) != Some(p));
            }
            Op::Unset(key_scope, k) => {
                let removed = store.remove_override(&scope(key_scope, k), None).unwrap();
                let map = if key_scope {
                    &mut model.key_overrides
                } else {
                    &mut model.service_overrides
                };
                prop_assert_eq!(removed, map.remove(&k).is_some());
            }
            Op::Prune => {
                let ended: Vec<usize> = model
                    .windows
                    .iter()
                    .filter(|(k, w)| {
                        model
                            .elapsed(w, now)
                            .is_some_and(|e| e >= model.policy_of(**k).0.budget_window)
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for k in &ended {
                    model.windows.remove(k);
                }
                prop_assert_eq!(store.prune(now).unwrap(), ended.len());
            }
            Op::StepBack(ms) => clock.wall_ms -= ms as i64,
            Op::StepForward(ms) => clock.wall_ms += ms as i64,
            Op::Reboot(ms) => {
                clock.boot_id += 1;
                clock.since_boot_ms = 5_000;
                clock.wall_ms += ms as i64;
            }
        }
        let now = clock.now();
        for (k, backend) in keys.iter().enumerate() {
            prop_assert_eq!(store.status(backend, now).unwrap(), model.status(k, now));
            let (p, n) = model.policy_of(k);
            prop_assert_eq!(
                store.policy_for(backend).unwrap().policy,
                RecoveryPolicy::new(p, n)
            );
            let stored = store.get(backend).unwrap();
            let modelled = model.windows.get(&k);
            prop_assert_eq!(stored.is_some(), modelled.is_some());
            if let (Some(s), Some(m)) = (stored, modelled) {
                prop_assert_eq!(s.window_started_at, m.started);
                prop_assert_eq!(s.crashes_in_window, m.crashes);
                prop_assert_eq!(s.total_crashes, m.total);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn store_matches_model_through_reopens_and_clock_faults(
        policy in policy(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        store_matches_model(policy.into(), &ops)?;
    }

    /// Policies allowing 1..=5 retries per window: crashes 1..=N retry with attempts 1..=N and
    /// report recovering, crash N+1 is refused for the rest of the window.
    #[test]
    fn store_with_retries_per_window_matches_model(
        policy in policy(),
        retries in 1u32..=5,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        store_matches_model(RecoveryPolicy::new(policy, retries), &ops)?;
    }

    /// Per-key and per-service overrides set and removed at random: every decision, status and
    /// prune follows the most specific policy (key, then service, then the default).
    #[test]
    fn store_with_overrides_matches_model(
        policy in policy(),
        retries in 1u32..=3,
        ops in proptest::collection::vec(op_with_overrides(), 1..48),
    ) {
        store_matches_model(RecoveryPolicy::new(policy, retries), &ops)?;
    }

    #[test]
    fn store_decides_exactly_as_the_in_memory_reference(
        policy in policy(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let t = TempStore::new();
        let keys = keys();
        let mut store = RecoveryStore::open_with(&t.path, StoreOptions::default().policy(policy))
            .unwrap();
        let mut drop_in = BackendRecoveryState::with_policy(policy);
        let mut reference = Reference::new(policy);
        let start = Instant::now();
        let mut elapsed = Duration::ZERO;
        for op in &ops {
            // One boot and monotonic clocks: the reference is keyed by Instant, which never
            // steps. A late crash is stamped up to 40 s back, which may be more than a window.
            let stamp = |at: Duration| {
                Timestamp::with_boot(
                    base() + at,
                    BootTime { boot_id: 1, since_boot: at + Duration::from_secs(60) },
                )
            };
            match *op {
                Op::Crash(k) | Op::LateCrash(k, _) => {
                    let late = match *op {
                        Op::LateCrash(_, ms) => Duration::from_millis(ms)
                            .min(elapsed),
                        _ => Duration::ZERO,
                    };
                    let at = start + elapsed - late;
                    let want = reference.record_crash(k, at);
                    let got = store.record_crash(&keys[k], stamp(elapsed - late)).unwrap();
                    prop_assert_eq!(&got, &want, "store");
                    prop_assert_eq!(drop_in.record_crash(keys[k].clone(), at), want, "drop-in");
                }
                Op::Success(k) | Op::Reset(k) => {
                    store.record_success(&keys[k]).unwrap();
                    drop_in.record_success(&keys[k]);
                    reference.record_success(k);
                }
                Op::ToWindowEdge(k, delta) => {
                    if let Some(&(started, _)) = reference.entries.get(&k) {
                        let edge = (started - start + policy.budget_window).as_millis() as i64
                            + i64::from(delta);
                        if let Ok(edge) = u64::try_from(edge) {
                            elapsed = elapsed.max(Duration::from_millis(edge));
                        }
                    }
                }
                Op::Reopen => {
                    drop(store);
                    store = t.open();
                }
                Op::Advance(ms) | Op::StepForward(ms) | Op::Reboot(ms) => {
                    elapsed += Duration::from_millis(ms);
                }
                Op::StepBack(_) => {}
                // Only `op_with_overrides` makes these; the reference has one policy.
                Op::Override(..) | Op::Unset(..) | Op::Prune => {}
            }
        }
    }
}
