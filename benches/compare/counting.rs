//! A `StorageBackend` around redb's file backend that counts what redb asks of the file, and
//! the time each kind of call takes.

use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Calls, bytes and nanoseconds, shared between the backend and whoever reads them.
#[derive(Debug, Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub read_bytes: AtomicU64,
    pub writes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub syncs: AtomicU64,
    pub set_lens: AtomicU64,
    pub locks: AtomicU64,
    pub unlocks: AtomicU64,
    pub queries: AtomicU64,
    /// Nanoseconds spent in sync_data, in write, in the lock calls, and in read.
    pub sync_ns: AtomicU64,
    pub write_ns: AtomicU64,
    pub lock_ns: AtomicU64,
    pub read_ns: AtomicU64,
}

impl Counters {
    /// Every counter, in field order.
    pub fn snapshot(&self) -> [u64; 13] {
        [
            &self.reads,
            &self.read_bytes,
            &self.writes,
            &self.write_bytes,
            &self.syncs,
            &self.set_lens,
            &self.locks,
            &self.unlocks,
            &self.queries,
            &self.sync_ns,
            &self.write_ns,
            &self.lock_ns,
            &self.read_ns,
        ]
        .map(|c| c.load(Relaxed))
    }
}

/// Runs `f`, adding its duration to `ns`.
fn timed<T>(ns: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    ns.fetch_add(start.elapsed().as_nanos() as u64, Relaxed);
    out
}

/// redb's file backend, counted.
#[derive(Debug)]
pub struct CountingBackend {
    inner: FileBackend,
    counters: Arc<Counters>,
}

impl CountingBackend {
    /// A backend on `path` (created if missing), and its counters.
    pub fn create(path: &Path) -> (Self, Arc<Counters>) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .expect("open backend file");
        let counters = Arc::new(Counters::default());
        let backend = Self {
            inner: FileBackend::new(file).expect("file backend"),
            counters: counters.clone(),
        };
        (backend, counters)
    }
}

impl StorageBackend for CountingBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.counters.reads.fetch_add(1, Relaxed);
        self.counters
            .read_bytes
            .fetch_add(out.len() as u64, Relaxed);
        timed(&self.counters.read_ns, || self.inner.read(offset, out))
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.counters.set_lens.fetch_add(1, Relaxed);
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.counters.syncs.fetch_add(1, Relaxed);
        timed(&self.counters.sync_ns, || self.inner.sync_data())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.counters.writes.fetch_add(1, Relaxed);
        self.counters
            .write_bytes
            .fetch_add(data.len() as u64, Relaxed);
        timed(&self.counters.write_ns, || self.inner.write(offset, data))
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.counters.locks.fetch_add(1, Relaxed);
        timed(&self.counters.lock_ns, || {
            self.inner.try_lock_range(start, end)
        })
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.counters.locks.fetch_add(1, Relaxed);
        timed(&self.counters.lock_ns, || {
            self.inner.try_lock_shared_range(start, end)
        })
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.counters.locks.fetch_add(1, Relaxed);
        timed(&self.counters.lock_ns, || self.inner.lock_range(start, end))
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.counters.locks.fetch_add(1, Relaxed);
        timed(&self.counters.lock_ns, || {
            self.inner.lock_shared_range(start, end)
        })
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.counters.unlocks.fetch_add(1, Relaxed);
        timed(&self.counters.lock_ns, || {
            self.inner.unlock_range(start, end)
        })
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.counters.queries.fetch_add(1, Relaxed);
        timed(&self.counters.lock_ns, || {
            self.inner.query_lock_range(start, end)
        })
    }
}
