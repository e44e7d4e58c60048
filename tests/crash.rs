//! Power loss, simulated: the store is driven over a fault-injecting redb backend, the power is
//! cut at every mutating I/O operation, and every image a disk could hold afterwards is reopened
//! and compared against a model of the acknowledged operations.
//!
//! `RECOVERY_STORE_FULL_SWEEP=1` runs many more torn images per crash point.

#[path = "fault_backend.rs"]
pub(crate) mod fault_backend;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use fault_backend::FaultBackend;
use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    RecoveryEntry, RecoveryStore, StoreError, StoreOptions, Timestamp,
};

use crate::util::{Rng, TempStore, at, env_flag, key};

const FULL_SWEEP_VAR: &str = "RECOVERY_STORE_FULL_SWEEP";
const LABEL: &str = "simulated-disk";

/// Torn images per crash point, besides the image with every unsynced write lost.
fn torn_images_per_point() -> u64 {
    if env_flag(FULL_SWEEP_VAR) { 63 } else { 4 }
}

/// How many ops each reopened image runs on, checking decisions against the model.
fn continuation_ops() -> usize {
    if env_flag(FULL_SWEEP_VAR) {
        usize::MAX
    } else {
        8
    }
}

#[derive(Clone, Debug)]
enum Op {
    Crash(BackendKey, Timestamp),
    /// Several crashes in one transaction (`record_crashes`, as group commit batches them).
    Batch(Vec<(BackendKey, Timestamp)>),
    Success(BackendKey),
    Reset(BackendKey),
    Policy(BackendRecoveryPolicy),
}

/// What an operation returned when it was acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Decision(BackendRecoveryDecision),
    Cleared(bool),
    PolicySet,
    Decisions(Vec<BackendRecoveryDecision>),
}

/// Everything a reader can observe in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    policy: BackendRecoveryPolicy,
    entries: Vec<RecoveryEntry>,
}

/// The reference: the policy rules restated over a map, independent of the store's code.
#[derive(Default)]
struct Model {
    policy: BackendRecoveryPolicy,
    entries: BTreeMap<String, RecoveryEntry>,
}

impl Model {
    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Crash(key, now) => Outcome::Decision(self.crash(key, *now)),
            Op::Batch(crashes) => Outcome::Decisions(
                crashes
                    .iter()
                    .map(|(key, now)| self.crash(key, *now))
                    .collect(),
            ),
            Op::Success(key) | Op::Reset(key) => {
                Outcome::Cleared(self.entries.remove(&key.to_string()).is_some())
            }
            Op::Policy(policy) => {
                self.policy = *policy;
                Outcome::PolicySet
            }
        }
    }

    fn crash(&mut self, key: &BackendKey, now: Timestamp) -> BackendRecoveryDecision {
        let window = self.policy.budget_window;
        let (crashes, elapsed, started, total) = match self.entries.get(&key.to_string()) {
            None => (0, Duration::ZERO, now, 0),
            Some(e) => match now.duration_since(&e.window_started_at) {
                Some(elapsed) => (
                    e.crashes_in_window,
                    elapsed,
                    e.window_started_at,
                    e.total_crashes,
                ),
                None => (e.crashes_in_window, Duration::ZERO, now, e.total_crashes),
            },
        };
        let fresh = crashes == 0 || elapsed >= window;
        let (crashes, elapsed, started) = if fresh {
            (1, Duration::ZERO, now)
        } else {
            (crashes + 1, elapsed, started)
        };
        self.entries.insert(
            key.to_string(),
            RecoveryEntry {
                key: key.clone(),
                window_started_at: started,
                crashes_in_window: crashes,
                last_crash: now,
                total_crashes: total + 1,
            },
        );
        if crashes == 1 {
            BackendRecoveryDecision::Retry {
                retry_after: self.policy.retry_backoff,
                attempt: 1,
            }
        } else {
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: window - elapsed,
            }
        }
    }

    fn state(&self) -> State {
        State {
            policy: self.policy,
            entries: self.entries.values().cloned().collect(),
        }
    }
}

/// A deterministic workload with the model's state after every prefix of it.
struct Workload {
    ops: Vec<Op>,
    /// `outcomes[i]`: what op `i` returns.
    outcomes: Vec<Outcome>,
    /// `states[i]`: the state after the first `i` ops (`states[0]` is a fresh store).
    states: Vec<State>,
}

impl Workload {
    fn new(len: usize, seed: u64) -> Self {
        let keys = [
            key("shared/alpha@1.0.0"),
            key("private:beta/beta@2.1.0-rc.1"),
            key("explicit:ci/gamma@0.3.7#9f2c"),
            key("shared/delta@10.0.0"),
        ];
        let policies = [
            BackendRecoveryPolicy::new(Duration::from_millis(100), Duration::from_secs(10)),
            BackendRecoveryPolicy::new(Duration::from_secs(1), Duration::from_secs(45)),
            BackendRecoveryPolicy::default(),
        ];
        let steps = [0.1, 1.0, 4.0, 9.5, 31.0];
        let mut rng = Rng::new(seed);
        let mut t = 0.0;
        let mut ops = Vec::with_capacity(len);
        for i in 0..len {
            let k = keys[rng.below(keys.len() as u64) as usize].clone();
            t += steps[rng.below(steps.len() as u64) as usize];
            // Every kind appears in each stretch of ten; the rest are mostly crashes.
            let op = match (i % 10, rng.below(10)) {
                (3, _) => Op::Success(k),
                (5, _) => Op::Batch(
                    (0..3)
                        .map(|j| {
                            let k = keys[rng.below(keys.len() as u64) as usize].clone();
                            (k, at(t + f64::from(j)))
                        })
                        .collect(),
                ),
                (6, _) => Op::Reset(k),
                (9, _) => Op::Policy(policies[(i / 10) % policies.len()]),
                (_, 0) => Op::Success(k),
                (_, 1) => Op::Reset(k),
                _ => Op::Crash(k, at(t)),
            };
            ops.push(op);
        }
        let mut model = Model::default();
        let mut states = vec![model.state()];
        let mut outcomes = Vec::with_capacity(len);
        for op in &ops {
            outcomes.push(model.apply(op));
            states.push(model.state());
        }
        Self {
            ops,
            outcomes,
            states,
        }
    }

    fn len(&self) -> usize {
        self.ops.len()
    }
}

fn apply(store: &RecoveryStore, op: &Op) -> Result<Outcome, StoreError> {
    Ok(match op {
        Op::Crash(key, now) => Outcome::Decision(store.record_crash(key, *now)?),
        Op::Batch(crashes) => Outcome::Decisions(store.record_crashes(crashes)?),
        Op::Success(key) => Outcome::Cleared(store.record_success(key)?),
        Op::Reset(key) => Outcome::Cleared(store.reset(key)?),
        Op::Policy(policy) => {
            store.set_policy(*policy)?;
            Outcome::PolicySet
        }
    })
}

fn read_state(store: &RecoveryStore) -> Result<State, StoreError> {
    Ok(State {
        policy: store.policy()?,
        entries: store.list()?,
    })
}

fn open(backend: FaultBackend) -> Result<RecoveryStore, StoreError> {
    RecoveryStore::open_with_backend(backend, LABEL, StoreOptions::default())
}

/// Runs `w` from `from` on `store`, checking every outcome and the final state; the text of the
/// first disagreement otherwise.
fn continue_as_model(store: &RecoveryStore, w: &Workload, from: usize) -> Result<(), String> {
    let until = from.saturating_add(continuation_ops()).min(w.len());
    for i in from..until {
        let got = apply(store, &w.ops[i]).map_err(|e| format!("op {i} failed: {e}"))?;
        if got != w.outcomes[i] {
            return Err(format!(
                "op {i} ({:?}) returned {got:?}, model says {:?}",
                w.ops[i], w.outcomes[i]
            ));
        }
    }
    let end = read_state(store).map_err(|e| format!("reading the final state: {e}"))?;
    if end != w.states[until] {
        return Err(format!("state after op {until} differs from the model"));
    }
    Ok(())
}

/// Runs the workload on `backend` until the power fails; returns how many ops were acknowledged.
fn run_until_power_loss(w: &Workload, backend: &FaultBackend) -> Result<usize, String> {
    let store = match open(backend.clone()) {
        Ok(store) => store,
        Err(_) if backend.crashed() => return Ok(0),
        Err(e) => return Err(format!("open failed without a power loss: {e}")),
    };
    let mut acked = 0;
    for (i, op) in w.ops.iter().enumerate() {
        match apply(&store, op) {
            Ok(got) if got == w.outcomes[i] => acked += 1,
            Ok(got) => {
                return Err(format!(
                    "op {i} returned {got:?} before the crash, model says {:?}",
                    w.outcomes[i]
                ));
            }
            Err(_) if backend.crashed() => break,
            Err(e) => return Err(format!("op {i} failed without a power loss: {e}")),
        }
    }
    drop(store);
    Ok(acked)
}

/// What one crash image showed after reopening.
#[derive(Clone, Debug)]
enum Verdict {
    /// Every acknowledged op is there; `landed` when the in-flight op committed too.
    Intact { landed: bool },
    /// The image reopened and is sound, but `lost` acknowledged ops are missing or wrong.
    Lost { lost: usize },
    /// The image did not reopen, failed the integrity check, or diverged afterwards.
    Broken(String),
}

fn check_image(w: &Workload, image: &[u8], acked: usize) -> Verdict {
    let mut store = match open(FaultBackend::from_image(image)) {
        Ok(store) => store,
        Err(e) => return Verdict::Broken(format!("reopen failed: {e}")),
    };
    match store.check_integrity() {
        Ok(true) => {}
        Ok(false) => return Verdict::Broken("integrity check needed repairs".into()),
        Err(e) => return Verdict::Broken(format!("integrity check failed: {e}")),
    }
    let state = match read_state(&store) {
        Ok(state) => state,
        Err(e) => return Verdict::Broken(format!("reading the state: {e}")),
    };
    let matched = if state == w.states[acked] {
        acked
    } else if acked < w.len() && state == w.states[acked + 1] {
        acked + 1
    } else {
        // The newest prefix the image does hold tells how much was lost.
        let kept = (0..acked).rev().find(|&j| w.states[j] == state);
        return Verdict::Lost {
            lost: kept.map_or(acked.max(1), |j| acked - j),
        };
    };
    match continue_as_model(&store, w, matched) {
        Ok(()) => Verdict::Intact {
            landed: matched > acked,
        },
        Err(e) => Verdict::Broken(format!("after reopening: {e}")),
    }
}

#[derive(Debug, Default)]
struct Tally {
    crash_points: u64,
    images: u64,
    distinct_images: u64,
    acknowledged: u64,
    in_flight_landed: u64,
    lost_ops: u64,
    lost_images: u64,
    broken: Vec<String>,
}

impl Tally {
    fn record(&mut self, point: u64, image: &str, verdict: Verdict, acked: usize) {
        self.images += 1;
        self.acknowledged += acked as u64;
        match verdict {
            Verdict::Intact { landed } => self.in_flight_landed += u64::from(landed),
            Verdict::Lost { lost } => {
                self.lost_ops += lost as u64;
                self.lost_images += 1;
            }
            Verdict::Broken(why) => self
                .broken
                .push(format!("crash point {point}, {image}: {why}")),
        }
    }

    fn summary(&self, name: &str, ops: usize, elapsed: Duration) -> String {
        format!(
            "{name}: {ops} ops, {} crash points, {} images ({} distinct), \
             {} acknowledged ops checked, {} in-flight ops landed, {} lost operations in {} images, {} broken images ({:.1?})",
            self.crash_points,
            self.images,
            self.distinct_images,
            self.acknowledged,
            self.in_flight_landed,
            self.lost_ops,
            self.lost_images,
            self.broken.len(),
            elapsed,
        )
    }

    fn assert_nothing_lost(&self, summary: &str) {
        let examples: Vec<&String> = self.broken.iter().take(40).collect();
        assert!(
            self.lost_ops == 0 && self.broken.is_empty(),
            "{summary}\nfirst broken images: {examples:#?}"
        );
    }
}

/// Counts the mutating I/O operations of a whole run, the final close included.
fn total_io_ops(w: &Workload, make: impl Fn() -> FaultBackend) -> u64 {
    let backend = make();
    let acked = run_until_power_loss(w, &backend).expect("a run without faults");
    assert_eq!(acked, w.len(), "a run without faults acknowledges every op");
    backend.ops()
}

/// Cuts the power at each of `points` and checks every image of each cut. An image already
/// checked with the same number of acknowledged ops is not reopened again.
fn sweep(
    w: &Workload,
    points: impl Iterator<Item = u64>,
    torn: u64,
    make: impl Fn() -> FaultBackend,
) -> Tally {
    let mut tally = Tally::default();
    let mut seen: HashMap<(u64, usize), Verdict> = HashMap::new();
    for point in points {
        tally.crash_points += 1;
        let backend = make().crash_at(point);
        let acked = match run_until_power_loss(w, &backend) {
            Ok(acked) => acked,
            Err(why) => {
                tally.broken.push(format!("crash point {point}: {why}"));
                continue;
            }
        };
        let images = [(0, backend.durable_image())]
            .into_iter()
            .chain((1..=torn).map(|seed| {
                (
                    seed,
                    backend.torn_image(point.wrapping_mul(1_000_003) ^ seed),
                )
            }));
        for (seed, image) in images {
            let mut hasher = DefaultHasher::new();
            image.hash(&mut hasher);
            let verdict = seen
                .entry((hasher.finish(), acked))
                .or_insert_with(|| {
                    tally.distinct_images += 1;
                    check_image(w, &image, acked)
                })
                .clone();
            let name = match seed {
                0 => "unsynced writes dropped".to_string(),
                seed => format!("torn image seed {seed}"),
            };
            tally.record(point, &name, verdict, acked);
        }
    }
    tally
}

/// Mutating I/O operations that creating a store on an empty backend takes.
fn creation_io_ops() -> u64 {
    let probe = FaultBackend::new();
    let store = open(probe.clone()).expect("create a store");
    let ops = probe.ops();
    drop(store);
    ops
}

// Guards the durability promise: a power cut at any I/O operation of a mixed workload on an
// existing store (crashes, successes, resets, policy changes, the final close) loses no
// acknowledged operation, leaves a file redb finds sound, and decisions carry on exactly as
// the model says. Cuts during creation are covered by the creation test below.
#[test]
fn power_loss_at_every_io_operation_loses_nothing() {
    let started = Instant::now();
    let w = Workload::new(48, 0x5EED_0004);
    let total = total_io_ops(&w, FaultBackend::new);
    let first = creation_io_ops();
    let torn = torn_images_per_point();
    let tally = sweep(&w, first..total, torn, FaultBackend::new);
    let summary = tally.summary("power-loss sweep", w.len(), started.elapsed());
    eprintln!("{summary}");
    assert_eq!(tally.crash_points, total - first);
    assert_eq!(tally.images, (1 + torn) * tally.crash_points);
    tally.assert_nothing_lost(&summary);
}

// Guards the harness itself: with a disk whose sync lies (reports success, persists nothing),
// the sweep must report lost acknowledged operations. A harness that cannot see this loss
// could not see a real one either.
#[test]
fn negative_control_lying_sync_is_detected() {
    let started = Instant::now();
    let w = Workload::new(48, 0x5EED_0004);
    let lying = || FaultBackend::new().lying_sync();
    let total = total_io_ops(&w, lying);
    // Every seventh point and the very end; images with every unsynced write dropped, which
    // here means every write at all.
    let points = (creation_io_ops()..total).step_by(7).chain([total - 1]);
    let tally = sweep(&w, points, 0, lying);
    let summary = tally.summary("negative control (lying sync)", w.len(), started.elapsed());
    eprintln!("{summary}");
    assert!(
        tally.lost_ops > 0 && tally.lost_images > 0,
        "the harness did not notice a disk that never persists: {summary}"
    );
}

// Guards the rule that damaged data is an error, never a panic: the images a lying disk leaves
// (unsynced writes surviving at random, so the allocator state and the trees disagree) must
// make open fail or succeed cleanly, and dropping the store must not panic either.
#[test]
fn garbled_images_fail_cleanly_instead_of_panicking() {
    let w = Workload::new(48, 0x5EED_0004);
    let lying = || FaultBackend::new().lying_sync();
    let total = total_io_ops(&w, lying);
    let mut panics = Vec::new();
    let mut images = 0;
    for point in (creation_io_ops()..total).step_by(7) {
        let backend = lying().crash_at(point);
        let _ = run_until_power_loss(&w, &backend);
        for seed in 1..=4 {
            images += 1;
            let image = backend.torn_image(point.wrapping_mul(1_000_003) ^ seed);
            let outcome = std::panic::catch_unwind(|| {
                if let Ok(store) = open(FaultBackend::from_image(&image)) {
                    let _ = store.list();
                    drop(store);
                }
            });
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                panics.push(format!("crash point {point}, seed {seed}: {message}"));
            }
        }
    }
    eprintln!("garbled images: {images} images, {} panics", panics.len());
    assert!(
        panics.is_empty(),
        "panics escaped the store API: {panics:#?}"
    );
}

// Guards creation: a power cut at any I/O operation while an empty backend is being made into
// a store leaves an image that the next open initializes or accepts, with no error, a sound
// file and a fresh store that then behaves as the model says.
#[test]
fn power_loss_during_creation_leaves_an_openable_image() {
    let w = Workload::new(12, 0x5EED_0005);
    let creation_ops = creation_io_ops();
    assert!(creation_ops > 0);
    let mut images = 0;
    let mut failures = Vec::new();
    for point in 0..creation_ops {
        let backend = FaultBackend::new().crash_at(point);
        assert!(
            open(backend.clone()).is_err(),
            "crash point {point}: open succeeded"
        );
        let seeds = 1..=torn_images_per_point().max(16);
        let candidates = [(0, backend.durable_image())]
            .into_iter()
            .chain(seeds.map(|seed| (seed, backend.torn_image(seed))));
        for (seed, image) in candidates {
            images += 1;
            match check_image(&w, &image, 0) {
                Verdict::Intact { .. } => {}
                Verdict::Lost { lost } => failures.push(format!("point {point}: {lost} ops lost")),
                Verdict::Broken(why) => failures.push(format!(
                    "point {point}, image {seed} ({} bytes, first 4 KiB {}): {why}",
                    image.len(),
                    if image.iter().take(4096).all(|b| *b == 0) {
                        "all zero"
                    } else {
                        "not zero"
                    },
                )),
            }
        }
    }
    eprintln!(
        "creation sweep: {creation_ops} crash points, {images} images, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

// Guards creation through a path: a creation cut short leaves only a temporary file beside the
// store, never a half-made store at the path, and such leftovers do not disturb the next open.
#[test]
fn leftovers_of_an_interrupted_creation_do_not_block_open() {
    let tmp = TempStore::new();
    let backend = FaultBackend::new().crash_at(3);
    assert!(open(backend.clone()).is_err());
    let leftover = tmp.dir.path().join(".recovery.redb.creating.1.2");
    std::fs::write(&leftover, backend.torn_image(7)).expect("write leftover");
    std::fs::write(tmp.dir.path().join(".recovery.redb.creating.3.4"), b"").expect("write");
    let store = tmp.open();
    let k = key("shared/alpha@1.0.0");
    assert!(matches!(
        store.record_crash(&k, at(0.0)),
        Ok(BackendRecoveryDecision::Retry { attempt: 1, .. })
    ));
    drop(store);
    assert_eq!(
        tmp.open().get(&k).expect("read").map(|e| e.total_crashes),
        Some(1)
    );
}

// Guards the model against drifting from the store: without faults the two agree on every
// decision and on the whole state after every operation.
#[test]
fn the_model_agrees_with_the_store_without_faults() {
    let w = Workload::new(48, 0x5EED_0004);
    let kinds = |f: fn(&Op) -> bool| w.ops.iter().filter(|op| f(op)).count();
    assert!(kinds(|op| matches!(op, Op::Crash(..))) >= 10);
    assert!(kinds(|op| matches!(op, Op::Batch(..))) >= 4);
    assert!(kinds(|op| matches!(op, Op::Success(_))) >= 4);
    assert!(kinds(|op| matches!(op, Op::Reset(_))) >= 4);
    assert!(kinds(|op| matches!(op, Op::Policy(_))) >= 4);
    assert!(
        w.outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Decision(BackendRecoveryDecision::Refuse { .. })))
    );
    let store = open(FaultBackend::new()).expect("open");
    for (i, op) in w.ops.iter().enumerate() {
        assert_eq!(apply(&store, op).expect("apply"), w.outcomes[i], "op {i}");
        assert_eq!(
            read_state(&store).expect("state"),
            w.states[i + 1],
            "after op {i}"
        );
    }
}
