//! The file backend the store opens through: lock waits bounded by a deadline, the identity of
//! the file it has open, and a count of its syncs.
//!
//! redb waits for its byte-range locks (the writer byte, the header) with blocking calls. This
//! backend turns each into try-locks polled until the calling operation's deadline; when it
//! passes, the lock call fails and [`take_timeout`] tells the store what it waited for. redb
//! treats a failed lock call as a failed operation without latching anything (its
//! `CheckedBackend` only latches failed reads, writes, syncs and unlocks), so the call that
//! timed out fails alone.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redb::{BackendError, StorageBackend};

/// Where redb keeps its coordination bytes (the writer byte is the first).
const LOCK_BASE: u64 = 1 << 62;

/// The device and inode of a file: what a path must still name for the store to be the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path` now, following symlinks.
    pub fn of_path(path: &Path) -> io::Result<Self> {
        let st = rustix::fs::stat(path)?;
        Ok(Self {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    fn of_file(file: &File) -> io::Result<Self> {
        let st = rustix::fs::fstat(file)?;
        Ok(Self {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// A lock wait that ran out: what was waited for, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expired {
    pub what: &'static str,
    pub waited: Duration,
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static EXPIRED: Cell<Option<Expired>> = const { Cell::new(None) };
}

/// Runs `f` with every lock wait on this thread ending at most `timeout` from now. Nested calls
/// keep the outer deadline, so one operation waits at most `timeout` in all.
pub(crate) fn with_deadline<T>(timeout: Duration, f: impl FnOnce() -> T) -> T {
    let outer = DEADLINE.get();
    if outer.is_none() {
        EXPIRED.set(None);
        DEADLINE.set(Some(Instant::now() + timeout));
    }
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.set(self.0);
        }
    }
    let _restore = Restore(outer);
    f()
}

/// The lock wait on this thread that ran out during the current operation, if any.
pub(crate) fn expired() -> Option<Expired> {
    EXPIRED.get()
}

/// Wraps a backend so that its blocking lock calls wait no longer than the caller's deadline.
#[derive(Debug, Clone)]
pub(crate) struct DeadlineBackend {
    inner: Arc<dyn StorageBackend>,
    /// The bound for a lock call made outside [`with_deadline`] (redb's close, say).
    timeout: Duration,
    syncs: Arc<AtomicU64>,
}

impl DeadlineBackend {
    pub fn new(inner: Arc<dyn StorageBackend>, timeout: Duration, syncs: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            timeout,
            syncs,
        }
    }

    /// Opens the file at `path` (read-write unless `read_only`), returning the backend and the
    /// identity of the file it opened.
    pub fn open_file(
        path: &Path,
        read_only: bool,
        timeout: Duration,
        syncs: Arc<AtomicU64>,
    ) -> io::Result<(Self, FileId)> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        let id = FileId::of_file(&file)?;
        let inner = redb::backends::FileBackend::new(file).map_err(io::Error::other)?;
        Ok((Self::new(Arc::new(inner), timeout, syncs), id))
    }

    fn wait(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        try_lock: impl Fn() -> Result<bool, BackendError>,
        lock: impl FnOnce() -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let started = Instant::now();
        let deadline = DEADLINE.get().unwrap_or(started + self.timeout);
        let mut pause = Duration::from_micros(50);
        loop {
            match try_lock() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                // A backend without try-locks can only wait the engine's way.
                Err(BackendError::Unsupported) => return lock(),
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                let what = describe(start, end);
                // Counted from the start of the operation, whose deadline this is.
                let waited = (now + self.timeout)
                    .checked_duration_since(deadline)
                    .unwrap_or(now - started)
                    .max(now - started);
                EXPIRED.set(Some(Expired { what, waited }));
                return Err(BackendError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("gave up waiting for {what}"),
                )));
            };
            std::thread::sleep(pause.min(left));
            // Capped at 1 ms: a long operation leaves the lock free for 2 ms between chunks
            // (`chunked::YIELD`), and a waiter must not sleep through that gap.
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }
}

fn describe(start: Bound<u64>, _end: Bound<u64>) -> &'static str {
    match start {
        Bound::Included(0) | Bound::Unbounded => {
            "the file header lock (held briefly by every commit, and across a sync by an open or close)"
        }
        Bound::Included(LOCK_BASE) => "the write lock (held by a writer for its whole transaction)",
        _ => "a lock of the storage engine",
    }
}

impl StorageBackend for DeadlineBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
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
        self.wait(
            start,
            end,
            || self.inner.try_lock_range(start, end),
            || self.inner.lock_range(start, end),
        )
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.wait(
            start,
            end,
            || self.inner.try_lock_shared_range(start, end),
            || self.inner.lock_shared_range(start, end),
        )
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// Runs `f` (a commit) with a deadline of its own, `timeout` from now: a decision that got the
/// write lock is not abandoned half-way for want of the time spent waiting for it.
pub(crate) fn with_fresh_deadline<T>(timeout: Duration, f: impl FnOnce() -> T) -> T {
    let outer = DEADLINE.replace(Some(Instant::now() + timeout));
    let value = f();
    DEADLINE.set(outer);
    value
}

/// Runs `f` (a close) without letting a lock wait that runs out inside it mark the calling
/// operation as timed out: a close that cannot write its clean-shutdown header leaves the file
/// for the next opener to recover, which fails nothing.
pub(crate) fn quietly<T>(timeout: Duration, f: impl FnOnce() -> T) -> T {
    let before = EXPIRED.get();
    let value = with_fresh_deadline(timeout, f);
    EXPIRED.set(before);
    value
}

/// Opens files for one store through [`DeadlineBackend`], remembering the identity of the last.
pub(crate) struct Opener {
    pub timeout: Duration,
    pub syncs: Arc<AtomicU64>,
    pub opened: Cell<Option<FileId>>,
}

impl Opener {
    /// A backend on the file at `path`.
    pub fn file(&self, path: &Path, read_only: bool) -> io::Result<DeadlineBackend> {
        let (backend, id) =
            DeadlineBackend::open_file(path, read_only, self.timeout, self.syncs.clone())?;
        self.opened.set(Some(id));
        Ok(backend)
    }
}
