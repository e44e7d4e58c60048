//! Side-by-side comparison run:
//! `cargo bench -p recovery-store-benches --bench compare [-- --quick]`.
//!
//! Prints one table of medians and ratios, all measured in this one process (peak RSS in child
//! processes of this same binary): the store against the fsync floor, against SQLite doing the
//! same read-modify-write, and against the in-memory reference. `COMPARE_QUICK=1` or `--quick`
//! shrinks every count; `COMPARE_DIR` picks the directory the files live in (default: a temporary
//! directory under `$TMPDIR`).
//!
//! `cargo test -p recovery-store-benches --benches` runs this binary without `--bench`; it then
//! exits at once.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use recovery_store::{
    BackendKey, BackendRecoveryPolicy, BackendRecoveryState, BackendStatus, DEFAULT_CACHE_SIZE,
    RecoveryEntry, RecoveryStore, StoreOptions, Timestamp, status_of,
};
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use rusqlite::{Connection, OptionalExtension, params};

/// 2026-01-01T00:00:00Z, in nanoseconds.
const BASE_NANOS: i64 = 1_767_225_600 * 1_000_000_000;
const THREADS: usize = 8;

struct Config {
    quick: bool,
    /// Ops per median (latency rows).
    ops: usize,
    /// Entries in the store that reads and many-key writes run against.
    entries: usize,
    /// Entries in the big store (open time and RSS).
    big: usize,
    /// Decisions per round of the 8-thread rows, and rounds.
    mt_ops: usize,
    mt_rounds: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without `--bench`: do nothing there.
        return;
    }
    let quick = args.iter().any(|a| a == "--quick") || std::env::var_os("COMPARE_QUICK").is_some();
    let cfg = if quick {
        Config {
            quick,
            ops: 200,
            entries: 10_000,
            big: 100_000,
            mt_ops: 400,
            mt_rounds: 1,
        }
    } else {
        Config {
            quick,
            ops: 1_000,
            entries: 10_000,
            big: 1_000_000,
            mt_ops: 2_000,
            mt_rounds: 3,
        }
    };
    let dir = match std::env::var_os("COMPARE_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    run(&cfg, dir.path());
}

fn run(cfg: &Config, dir: &Path) {
    let mut t = Table::default();
    eprintln!("compare: working in {} ...", dir.display());

    // (a) and (b): the fsync floor, the store and SQLite, interleaved op by op so that all of
    // them see the same disk (its flush latency drifts when other programs use it).
    let store_path = dir.join("store.redb");
    let store = RecoveryStore::open(&store_path).expect("open store");
    populate_store(&store, cfg.entries);
    let sql_path = dir.join("sqlite.db");
    let sql = sqlite_open(&sql_path);
    sqlite_populate(&sql, cfg.entries);
    let floor1 = FloorFile::new(dir, "floor-1");
    let floor2 = FloorFile::new(dir, "floor-2");
    let one = key(cfg.entries + 1);
    let one_text = key_text(cfg.entries + 1);
    let (mut a, mut b, mut c, mut d) = (0i64, 0i64, 0usize, 0usize);
    let m = interleaved(
        cfg.ops,
        &mut [
            &mut || floor1.op(1),
            &mut || floor2.op(2),
            &mut || {
                a += 1;
                store.record_crash(&one, at_secs(a)).expect("record_crash");
            },
            &mut || {
                c += 1;
                let k = key(c * 7919 % cfg.entries);
                store
                    .record_crash(&k, at_secs(1_000 + c as i64))
                    .expect("record_crash");
            },
            &mut || {
                b += 1;
                sqlite_crash(&sql, &one_text, at_nanos(b));
            },
            &mut || {
                d += 1;
                let k = key_text(d * 7919 % cfg.entries);
                sqlite_crash(&sql, &k, at_nanos(1_000 + d as i64));
            },
        ],
    );
    let [floor, floor2, crash_one, crash_many, sql_one, sql_many] = m[..] else {
        unreachable!()
    };
    t.section("(a) durable record_crash vs the fsync floor (all rows of (a) and (b) interleaved)");
    t.row("fsync floor: 64 B pwrite + fdatasync", floor, None);
    t.row("two-sync floor: 2 x (pwrite + fdatasync)", floor2, None);
    t.row(
        "store record_crash, 1 key",
        crash_one,
        Some(("fsync floor", floor, "<= 2.5x")),
    );
    t.row_ratio("  same, against the two-sync floor", crash_one, floor2);
    t.row(
        &format!("store record_crash, {} keys", cfg.entries),
        crash_many,
        Some(("fsync floor", floor, "<= 2.5x")),
    );
    t.row_ratio("  same, against the two-sync floor", crash_many, floor2);

    t.section("(b) one durable decision: SQLite WAL, synchronous=FULL, BEGIN IMMEDIATE..COMMIT");
    t.row(
        "sqlite decision, 1 key",
        sql_one,
        Some(("fsync floor", floor, "")),
    );
    t.row_ratio("store / sqlite, 1 key", crash_one, sql_one);
    t.row(
        &format!("sqlite decision, {} keys", cfg.entries),
        sql_many,
        Some(("fsync floor", floor, "")),
    );
    t.row_ratio(
        &format!("store / sqlite, {} keys", cfg.entries),
        crash_many,
        sql_many,
    );

    // (c) status reads.
    let reads = cfg.ops * 20;
    let now = at_secs(2_000_000);
    let mut j = 0usize;
    let store_read = median_of(reads, || {
        j += 1;
        let k = key(j * 7919 % cfg.entries);
        std::hint::black_box(store.status(&k, now).expect("status"));
    });
    let policy = BackendRecoveryPolicy::default();
    let mut j = 0usize;
    let sql_read = median_of(reads, || {
        j += 1;
        let k = key_text(j * 7919 % cfg.entries);
        std::hint::black_box(sqlite_status(&sql, &k, now.unix_nanos(), &policy));
    });
    // The in-memory reference has no read: its only per-key operations are record_crash and
    // record_success. Measured twice: its record_crash (hash lookup + policy step + update), an
    // upper bound for a lookup, and a HashMap of entries with the crate's `status_of`, which is
    // exactly the in-memory counterpart of `status`.
    let mut mem = BackendRecoveryState::new();
    let start = Instant::now();
    let keys: Vec<BackendKey> = (0..cfg.entries).map(key).collect();
    for k in &keys {
        mem.record_crash(k.clone(), start);
    }
    let mut j = 0usize;
    let mem_crash = median_of(reads, || {
        j += 1;
        let k = &keys[j * 7919 % cfg.entries];
        std::hint::black_box(mem.record_crash(k.clone(), start + Duration::from_secs(60)));
    });
    let map: HashMap<BackendKey, RecoveryEntry> = store
        .list()
        .expect("list")
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect();
    let mut j = 0usize;
    let mem_status = median_of(reads, || {
        j += 1;
        let k = &keys[j * 7919 % cfg.entries];
        let status = map
            .get(k)
            .map_or(BackendStatus::Healthy, |e| status_of(e, now, &policy));
        std::hint::black_box(status);
    });
    // The floor under any read: one empty redb read transaction on the same file, in the
    // store's MultiWriter mode and, for scale, in redb's default ExclusiveWriter mode.
    let begin_read_floor = |mode: redb::ConcurrencyMode| {
        let path = dir.join(format!("floor-{mode:?}.redb"));
        let db = redb::Builder::new()
            .set_concurrency_mode(mode)
            .create(&path)
            .expect("redb create");
        let floor = median_of(reads, || {
            std::hint::black_box(redb::ReadableDatabase::begin_read(&db).expect("begin_read"));
        });
        drop(db);
        let _ = std::fs::remove_file(&path);
        floor
    };
    let floor_multi = begin_read_floor(redb::ConcurrencyMode::MultiWriter);
    let floor_exclusive = begin_read_floor(redb::ConcurrencyMode::ExclusiveWriter);
    t.section(&format!("(c) status reads, {} entries", cfg.entries));
    t.row("store status", store_read, None);
    t.target(
        "  target: median <= 5 us",
        store_read <= Duration::from_micros(5),
    );
    t.row("sqlite select (autocommit, cached stmt)", sql_read, None);
    t.row_ratio("store / sqlite", store_read, sql_read);
    t.row("in-memory: HashMap get + status_of", mem_status, None);
    t.row(
        "in-memory: BackendRecoveryState::record_crash",
        mem_crash,
        None,
    );
    t.row_ratio("store / in-memory status_of", store_read, mem_status);
    t.row(
        "redb empty read txn, MultiWriter (floor)",
        floor_multi,
        None,
    );
    t.row_ratio("store status / that floor", store_read, floor_multi);
    t.row(
        "redb empty read txn, ExclusiveWriter",
        floor_exclusive,
        None,
    );
    drop(sql);

    // What each operation asks of the file: syscalls behind one write and one read.
    let counts = sync_counts(dir, cfg.ops.min(200));
    t.section("what one operation does to the file (counting StorageBackend)");
    for line in counts {
        t.text(&line);
    }

    // (d) 8 threads on distinct keys.
    // Rounds alternate between the two, for the same reason as above.
    let (mut store_rates, mut syncs_per, mut sql_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..cfg.mt_rounds {
        let (rate, syncs) = store_threads(dir, round, cfg.mt_ops);
        store_rates.push(rate);
        syncs_per.push(syncs);
        sql_rates.push(sqlite_threads(dir, round, cfg.mt_ops));
    }
    let store_rate = median_f64(&mut store_rates);
    let sql_rate = median_f64(&mut sql_rates);
    t.section(&format!(
        "(d) {THREADS} threads, distinct keys, {} decisions x {} rounds: durable decisions/s",
        cfg.mt_ops, cfg.mt_rounds
    ));
    t.text(&format!(
        "store (one shared handle, group commit)   {store_rate:>10.0} /s   {:.2} fdatasyncs per decision",
        median_f64(&mut syncs_per)
    ));
    t.text(&format!(
        "sqlite (a connection per thread)          {sql_rate:>10.0} /s"
    ));
    t.text(&format!(
        "store / sqlite                            {:>10.2}x  target >= 2x: {}",
        store_rate / sql_rate,
        verdict(store_rate >= 2.0 * sql_rate)
    ));
    drop(store);

    // (e) the big store: open time and peak RSS.
    let big_path = dir.join("big.redb");
    let built = child_run(&["build", path_str(&big_path), &cfg.big.to_string()]);
    let open_small = open_median(&store_path, 21);
    let open_big = open_median(&big_path, 21);
    let idle = child_run(&["idle"]);
    let used = child_run(&["use", path_str(&big_path), &cfg.big.to_string()]);
    let size = std::fs::metadata(&big_path).map(|m| m.len()).unwrap_or(0);
    let limit = (DEFAULT_CACHE_SIZE as u64 >> 10) + (64 << 10);
    t.section(&format!(
        "(e) the big store: {} entries, {:.1} MiB file",
        cfg.big,
        size as f64 / (1 << 20) as f64
    ));
    t.row(
        &format!("open, cleanly closed, {} entries", cfg.entries),
        open_small,
        None,
    );
    t.row(
        &format!("open, cleanly closed, {} entries", cfg.big),
        open_big,
        None,
    );
    t.target("  target: <= 10 ms", open_big <= Duration::from_millis(10));
    t.text(&format!(
        "peak RSS, bare child process               {:>8} KiB",
        idle.hwm_kib
    ));
    t.text(&format!(
        "peak RSS, open + {} status + {} record_crash  {:>8} KiB  (open took {:?} cold in the child)",
        used.reads, used.writes, used.hwm_kib, used.open
    ));
    t.target(
        &format!(
            "  target: <= cache {} KiB + 64 MiB = {limit} KiB",
            DEFAULT_CACHE_SIZE >> 10
        ),
        used.hwm_kib <= limit,
    );
    t.text(&format!(
        "peak RSS, building it in record_crashes batches of {BUILD_BATCH}  {:>8} KiB  (took {:?})",
        built.hwm_kib, built.open
    ));

    println!();
    println!(
        "recovery-store compare{}: {} ops per latency median; files in {} ({})",
        if cfg.quick { " (quick)" } else { "" },
        cfg.ops,
        dir.display(),
        fs_type(dir)
    );
    println!(
        "machine: {} x {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    t.print();
}

// ---------------------------------------------------------------------------------------------
// The fsync floor.

/// A file for the fsync floor: each op overwrites 64 bytes in place and calls
/// `File::sync_data`, `syncs` times: the least a durable commit can cost on this file system.
struct FloorFile {
    file: std::fs::File,
    n: std::cell::Cell<u8>,
}

impl FloorFile {
    fn new(dir: &Path, name: &str) -> Self {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(name))
            .expect("floor file");
        file.write_all_at(&[0u8; 4096], 0).expect("write");
        file.sync_all().expect("sync");
        Self {
            file,
            n: Default::default(),
        }
    }

    fn op(&self, syncs: usize) {
        for s in 0..syncs {
            self.n.set(self.n.get().wrapping_add(1));
            let buf = [self.n.get(); 64];
            self.file
                .write_all_at(&buf, (s * 64) as u64)
                .expect("write");
            self.file.sync_data().expect("fdatasync");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The store.

fn key(i: usize) -> BackendKey {
    key_text(i).parse().expect("valid key")
}

fn key_text(i: usize) -> String {
    format!("shared/svc-{i:07}@1.0.0")
}

fn at_nanos(secs: i64) -> i64 {
    BASE_NANOS + secs * 1_000_000_000
}

fn at_secs(secs: i64) -> Timestamp {
    Timestamp::from_parts(at_nanos(secs), None)
}

const BUILD_BATCH: usize = 10_000;

fn populate_store(store: &RecoveryStore, n: usize) {
    let mut batch = Vec::with_capacity(BUILD_BATCH);
    for i in 0..n {
        batch.push((key(i), at_secs(i as i64 % 1_000)));
        if batch.len() == BUILD_BATCH || i + 1 == n {
            store.record_crashes(&batch).expect("record_crashes");
            batch.clear();
        }
    }
}

fn open_median(path: &Path, reps: usize) -> Duration {
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        let store = RecoveryStore::open(path).expect("open");
        times.push(start.elapsed());
        drop(store);
    }
    median(&mut times)
}

/// Eight threads on one shared handle; returns decisions/s and fdatasyncs per decision.
fn store_threads(dir: &Path, round: usize, total: usize) -> (f64, f64) {
    let path = dir.join(format!("mt-{round}.redb"));
    let (backend, counters) = CountingBackend::create(&path);
    let store = Arc::new(
        RecoveryStore::open_with_backend(backend, &path, StoreOptions::default())
            .expect("open store"),
    );
    let per = total / THREADS;
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let keys: Vec<BackendKey> = (0..4).map(|k| key(t * 100 + k)).collect();
                barrier.wait();
                for i in 0..per {
                    store
                        .record_crash(&keys[i % keys.len()], at_secs(i as i64))
                        .expect("record_crash");
                }
            })
        })
        .collect();
    barrier.wait();
    let syncs_before = counters.syncs.load(Relaxed);
    let start = Instant::now();
    for h in handles {
        h.join().expect("thread");
    }
    let elapsed = start.elapsed();
    let syncs = counters.syncs.load(Relaxed) - syncs_before;
    let done = (per * THREADS) as f64;
    (done / elapsed.as_secs_f64(), syncs as f64 / done)
}

// ---------------------------------------------------------------------------------------------
// SQLite: the same read-modify-write, one durable transaction per decision.

fn sqlite_open(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("sqlite open");
    conn.busy_timeout(Duration::from_secs(30)).expect("busy");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS entries (
            key TEXT PRIMARY KEY,
            window_started INTEGER NOT NULL,
            crashes INTEGER NOT NULL,
            last_crash INTEGER NOT NULL,
            total INTEGER NOT NULL
        ) WITHOUT ROWID;",
    )
    .expect("schema");
    conn
}

/// One decision: BEGIN IMMEDIATE; select; the policy step; upsert; COMMIT.
fn sqlite_crash(conn: &Connection, key: &str, now: i64) -> bool {
    let window = BackendRecoveryPolicy::default().budget_window.as_nanos() as i64;
    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    let row: Option<(i64, i64, i64)> = conn
        .prepare_cached("SELECT window_started, crashes, total FROM entries WHERE key = ?1")
        .expect("prepare")
        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .expect("select");
    let (started, crashes, total) = match row {
        Some((started, crashes, total)) if now - started < window => (started, crashes + 1, total),
        Some((_, _, total)) => (now, 1, total),
        None => (now, 1, 0),
    };
    conn.prepare_cached(
        "INSERT INTO entries (key, window_started, crashes, last_crash, total)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(key) DO UPDATE SET window_started = excluded.window_started,
            crashes = excluded.crashes, last_crash = excluded.last_crash, total = excluded.total",
    )
    .expect("prepare")
    .execute(params![key, started, crashes, now, total + 1])
    .expect("upsert");
    conn.execute_batch("COMMIT").expect("commit");
    crashes == 1
}

fn sqlite_populate(conn: &Connection, n: usize) {
    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    {
        let mut stmt = conn
            .prepare_cached("INSERT OR REPLACE INTO entries VALUES (?1, ?2, 1, ?2, 1)")
            .expect("prepare");
        for i in 0..n {
            stmt.execute(params![key_text(i), at_nanos(i as i64 % 1_000)])
                .expect("insert");
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
}

/// The SQLite counterpart of `status`: one autocommit select, then the same classification.
fn sqlite_status(conn: &Connection, key: &str, now: i64, policy: &BackendRecoveryPolicy) -> bool {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT window_started, crashes FROM entries WHERE key = ?1")
        .expect("prepare")
        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .expect("select");
    match row {
        Some((started, crashes)) => {
            crashes >= 2 && ((now - started) as u128) < policy.budget_window.as_nanos()
        }
        None => false,
    }
}

fn sqlite_threads(dir: &Path, round: usize, total: usize) -> f64 {
    let path = dir.join(format!("mt-{round}.db"));
    drop(sqlite_open(&path));
    let per = total / THREADS;
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = sqlite_open(&path);
                let keys: Vec<String> = (0..4).map(|k| key_text(t * 100 + k)).collect();
                barrier.wait();
                for i in 0..per {
                    sqlite_crash(&conn, &keys[i % keys.len()], at_nanos(i as i64));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("thread");
    }
    (per * THREADS) as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// A StorageBackend that counts what redb asks of the file.

#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    read_bytes: AtomicU64,
    writes: AtomicU64,
    write_bytes: AtomicU64,
    syncs: AtomicU64,
    set_lens: AtomicU64,
    locks: AtomicU64,
    unlocks: AtomicU64,
    queries: AtomicU64,
    /// Nanoseconds spent in sync_data, in write, in the lock calls, and in read.
    sync_ns: AtomicU64,
    write_ns: AtomicU64,
    lock_ns: AtomicU64,
    read_ns: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> [u64; 13] {
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

#[derive(Debug)]
struct CountingBackend {
    inner: FileBackend,
    counters: Arc<Counters>,
}

impl CountingBackend {
    fn create(path: &Path) -> (Self, Arc<Counters>) {
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

/// Per-operation backend calls for a durable record_crash and for a status read.
fn sync_counts(dir: &Path, ops: usize) -> Vec<String> {
    let path = dir.join("counted.redb");
    let (backend, counters) = CountingBackend::create(&path);
    let store = RecoveryStore::open_with_backend(backend, &path, StoreOptions::default())
        .expect("open counted store");
    populate_store(&store, 1_000);
    let mut lines = Vec::new();
    let mut measure = |what: &str, f: &mut dyn FnMut(usize)| {
        let before = counters.snapshot();
        let start = Instant::now();
        for i in 0..ops {
            f(i);
        }
        let per_op = start.elapsed() / ops as u32;
        let after = counters.snapshot();
        let d: Vec<f64> = before
            .iter()
            .zip(after)
            .map(|(b, a)| (a - b) as f64 / ops as f64)
            .collect();
        let us = |i: usize| d[i] / 1e3;
        let other = per_op.as_secs_f64() * 1e6 - us(9) - us(10) - us(11) - us(12);
        lines.push(format!(
            "{what:<22} {:>4.1} fdatasync  {:>4.1} pwrite ({:>6.0} B)  {:>4.1} pread ({:>4.0} B)  \
             {:>3.1} set_len  {:>4.1} lock + {:>4.1} unlock + {:>3.1} query",
            d[4], d[2], d[3], d[0], d[1], d[5], d[6], d[7], d[8]
        ));
        lines.push(format!(
            "{:<22} {per_op:>9.2?}/op = fdatasync {:.1} us + pwrite {:.1} us + locks {:.1} us \
             + pread {:.1} us + the rest (CPU) {other:.1} us",
            "",
            us(9),
            us(10),
            us(11),
            us(12)
        ));
    };
    measure("record_crash, 1 key:", &mut |i| {
        store
            .record_crash(&key(0), at_secs(5_000 + i as i64))
            .expect("record_crash");
    });
    measure("record_crash, 1k keys:", &mut |i| {
        store
            .record_crash(&key(i * 7 % 1_000), at_secs(9_000 + i as i64))
            .expect("record_crash");
    });
    let now = at_secs(20_000);
    measure("status:", &mut |i| {
        std::hint::black_box(store.status(&key(i * 7 % 1_000), now).expect("status"));
    });
    lines
}

// ---------------------------------------------------------------------------------------------
// Child processes, for peak RSS that means something.

struct ChildReport {
    hwm_kib: u64,
    open: Duration,
    reads: usize,
    writes: usize,
}

fn child_run(args: &[&str]) -> ChildReport {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.parse().ok())
            .unwrap_or(0)
    };
    ChildReport {
        hwm_kib: field("hwm_kib="),
        open: Duration::from_nanos(field("nanos=")),
        reads: field("reads=") as usize,
        writes: field("writes=") as usize,
    }
}

fn child(args: &[String]) {
    let report = |nanos: u128, reads: usize, writes: usize| {
        println!(
            "hwm_kib={} nanos={nanos} reads={reads} writes={writes}",
            vm_hwm_kib()
        );
    };
    match args.first().map(String::as_str) {
        Some("idle") => report(0, 0, 0),
        Some("build") => {
            let path = PathBuf::from(&args[1]);
            let n: usize = args[2].parse().expect("count");
            let start = Instant::now();
            let store = RecoveryStore::open(&path).expect("open");
            populate_store(&store, n);
            drop(store);
            report(start.elapsed().as_nanos(), 0, n);
        }
        Some("use") => {
            let path = PathBuf::from(&args[1]);
            let n: usize = args[2].parse().expect("count");
            let start = Instant::now();
            let store = RecoveryStore::open(&path).expect("open");
            let open = start.elapsed();
            let (reads, writes) = (100_000, 100);
            let now = at_secs(5_000);
            for j in 0..reads {
                let k = key(j * 7919 % n);
                std::hint::black_box(store.status(&k, now).expect("status"));
            }
            for j in 0..writes {
                let k = key(j * 104_729 % n);
                store.record_crash(&k, now).expect("record_crash");
            }
            report(open.as_nanos(), reads, writes);
        }
        other => panic!("unknown child mode {other:?}"),
    }
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Timing and the table.

/// Times each of `ops` calls separately and returns the median.
fn median_of(ops: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..(ops / 20).max(3) {
        f(); // warm up
    }
    let mut times = Vec::with_capacity(ops);
    for _ in 0..ops {
        let start = Instant::now();
        f();
        times.push(start.elapsed());
    }
    median(&mut times)
}

/// Runs the operations round-robin, `ops` rounds after a warm-up, timing each call; returns
/// each operation's median.
fn interleaved(ops: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    let mut times = vec![Vec::with_capacity(ops); fs.len()];
    for round in 0..ops + (ops / 20).max(3) {
        for (f, times) in fs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            f();
            if round >= (ops / 20).max(3) {
                times.push(start.elapsed());
            }
        }
    }
    times.iter_mut().map(|t| median(t)).collect()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn median_f64(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

#[derive(Default)]
struct Table {
    lines: Vec<String>,
}

impl Table {
    fn section(&mut self, title: &str) {
        self.lines.push(String::new());
        self.lines.push(title.to_string());
    }

    fn text(&mut self, text: &str) {
        self.lines.push(format!("  {text}"));
    }

    fn row(&mut self, name: &str, value: Duration, against: Option<(&str, Duration, &str)>) {
        let mut line = format!("  {name:<46} {:>10}", fmt(value));
        if let Some((what, base, target)) = against {
            let ratio = value.as_secs_f64() / base.as_secs_f64();
            line += &format!("   {ratio:>6.2}x {what}");
            if let Some(limit) = target.strip_prefix("<= ").and_then(|t| t.strip_suffix('x')) {
                let limit: f64 = limit.parse().unwrap_or(f64::INFINITY);
                line += &format!("  (target {target}: {})", verdict(ratio <= limit));
            }
        }
        self.lines.push(line);
    }

    fn row_ratio(&mut self, name: &str, a: Duration, b: Duration) {
        let ratio = a.as_secs_f64() / b.as_secs_f64();
        self.lines
            .push(format!("  {name:<46} {:>10}   {ratio:>6.2}x", ""));
    }

    fn target(&mut self, name: &str, met: bool) {
        self.lines.push(format!("  {name}: {}", verdict(met)));
    }

    fn print(&self) {
        for line in &self.lines {
            println!("{line}");
        }
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{:.2} us", ns as f64 / 1e3)
    } else if ns < 10_000_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The file system type of the mount holding `dir`, from /proc/self/mountinfo.
fn fs_type(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let fstype = fields.get(sep + 1).copied().unwrap_or("?");
        let device = fields.get(sep + 2).copied().unwrap_or("?");
        if dir.starts_with(mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((
                mount.len(),
                format!("{fstype} on {device}, mounted at {mount}"),
            ));
        }
    }
    best.map_or_else(|| "unknown file system".into(), |(_, s)| s)
}
