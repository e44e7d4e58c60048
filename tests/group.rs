//! Group commit: threads of one process recording crashes at once share commits, and each still
//! gets the decision a sequential run would give it.

use std::fs::OpenOptions;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use recovery_store::{
    BackendRecoveryDecision, RecoveryStore, StorageBackend, StoreOptions, Timestamp,
};
use redb::BackendError;
use redb::backends::FileBackend;

use crate::util::{TempStore, at, key};

const THREADS: usize = 8;

/// A file backend whose first sync after `arm` waits for `release`, and which counts syncs.
#[derive(Debug)]
struct GatedBackend {
    inner: FileBackend,
    gate: Arc<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    released: AtomicBool,
    syncs: AtomicU64,
}

impl StorageBackend for GatedBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.gate.syncs.fetch_add(1, Ordering::SeqCst);
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.entered.store(true, Ordering::SeqCst);
            while !self.gate.released.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

fn gated_store(tmp: &TempStore) -> (Arc<RecoveryStore>, Arc<Gate>) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&tmp.path)
        .expect("open file");
    let gate = Arc::new(Gate::default());
    let backend = GatedBackend {
        inner: FileBackend::new(file).expect("backend"),
        gate: gate.clone(),
    };
    let store = RecoveryStore::open_with_backend(backend, &tmp.path, StoreOptions::default())
        .expect("open store");
    (Arc::new(store), gate)
}

fn spin_until(mut done: impl FnMut() -> bool) {
    while !done() {
        std::thread::yield_now();
    }
}

// Guards: callers that queue while a commit is in flight share the next commit (one
// transaction, one pair of syncs), each gets its own decision, and all of it is durable.
// Timing-free: the first commit is held in its sync until seven callers are seen queued.
#[test]
fn callers_queued_behind_a_commit_share_the_next_one() {
    let tmp = TempStore::new();
    let (store, gate) = gated_store(&tmp);
    let (batches_before, _) = store.group_commit_stats();
    gate.armed.store(true, Ordering::SeqCst);
    let syncs_before = gate.syncs.load(Ordering::SeqCst);

    let spawn = |i: usize| {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .record_crash(&key(&format!("shared/svc-{i}@1.0.0")), at(i as f64))
                .expect("record_crash")
        })
    };
    let leader = spawn(0);
    spin_until(|| gate.entered.load(Ordering::SeqCst));
    let followers: Vec<_> = (1..THREADS).map(spawn).collect();
    spin_until(|| store.group_commit_stats().1 == THREADS - 1);
    gate.released.store(true, Ordering::SeqCst);

    for handle in std::iter::once(leader).chain(followers) {
        assert_eq!(
            handle.join().expect("thread"),
            BackendRecoveryDecision::Retry {
                retry_after: Duration::from_millis(250),
                attempt: 1
            }
        );
    }
    let (batches, waiting) = store.group_commit_stats();
    assert_eq!(batches - batches_before, 2, "8 calls, 2 commits");
    assert_eq!(waiting, 0);
    let syncs = gate.syncs.load(Ordering::SeqCst) - syncs_before;
    // Two commits of two syncs each (redb's MultiWriter commits in two phases), plus at most one
    // more per commit when it grows the file; eight separate commits would need 16.
    assert!(syncs <= 6, "{syncs} syncs for {THREADS} calls in 2 commits");

    drop(store);
    let reopened = tmp.open();
    assert_eq!(reopened.len().expect("len"), THREADS as u64);
}

// Guards: under real contention every caller gets exactly the decision a sequential run of the
// same per-key order gives, on private keys and on one key they all share.
#[test]
fn concurrent_callers_decide_as_a_sequential_run() {
    const CALLS: usize = 30;
    let tmp = TempStore::new();
    let store = Arc::new(tmp.open());
    let shared = key("shared/everyone@1.0.0");
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, shared, barrier) = (store.clone(), shared.clone(), barrier.clone());
            std::thread::spawn(move || {
                let own = key(&format!("shared/svc-{t}@1.0.0"));
                barrier.wait();
                let mut decisions = Vec::new();
                for i in 0..CALLS {
                    decisions.push(store.record_crash(&own, when(i)).expect("record_crash"));
                    if i == CALLS / 2 {
                        let d = store.record_crash(&shared, at(0.0)).expect("record_crash");
                        decisions.push(d);
                    }
                }
                decisions
            })
        })
        .collect();
    let results: Vec<Vec<BackendRecoveryDecision>> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();

    let model = TempStore::new().open();
    let expected: Vec<BackendRecoveryDecision> = (0..CALLS)
        .map(|i| {
            model
                .record_crash(&key("shared/model@1.0.0"), when(i))
                .expect("model")
        })
        .collect();
    let mut shared_retries = 0;
    for decisions in &results {
        let (own, on_shared): (Vec<_>, Vec<_>) = decisions
            .iter()
            .enumerate()
            .partition(|(n, _)| *n != CALLS / 2 + 1);
        let own: Vec<_> = own.into_iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(own, expected);
        let (_, d) = on_shared[0];
        if matches!(d, BackendRecoveryDecision::Retry { attempt: 1, .. }) {
            shared_retries += 1;
        } else {
            assert!(matches!(d, BackendRecoveryDecision::Refuse { .. }), "{d:?}");
        }
    }
    // All eight crashes on the shared key happened at one instant: one retry, then refusals.
    assert_eq!(shared_retries, 1);
    let entry = store.get(&shared).expect("get").expect("entry");
    assert_eq!(entry.total_crashes, THREADS as u64);
    // Eight threads hammering one store: some calls must have shared a commit.
    let (batches, _) = store.group_commit_stats();
    assert!(
        batches < (THREADS * CALLS) as u64,
        "{batches} commits for {} calls",
        THREADS * CALLS
    );
}

// Crash i of a thread's own key: 7 s apart, so windows open, refuse and end again.
fn when(i: usize) -> Timestamp {
    at(7.0 * i as f64)
}
