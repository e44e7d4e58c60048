//! Real processes: a worker is killed with SIGKILL mid-stream, and several processes and threads
//! record on the same keys at once.
//!
//! Workers are this test binary run again with `RECOVERY_STORE_WORKER` set, executing only
//! [`worker_entry`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use recovery_store::{BackendKey, RecoveryStore, StoreError, StoreOptions, Timestamp};

use crate::util::{Rng, TempStore, env_flag, key};

const WORKER_VAR: &str = "RECOVERY_STORE_WORKER";
const PATH_VAR: &str = "RECOVERY_STORE_WORKER_PATH";
const THREADS_VAR: &str = "RECOVERY_STORE_WORKER_THREADS";
const COUNT_VAR: &str = "RECOVERY_STORE_WORKER_COUNT";

const KEYS: [&str; 3] = [
    "shared/alpha@1.0.0",
    "private:beta/beta@2.0.0",
    "explicit:ci/gamma@0.1.0",
];

/// One step of the kill -9 worker's fixed script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Crash(usize),
    Reset(usize),
}

/// The worker's `i`th step: crashes round-robin over the keys, with a reset now and then.
fn step(i: usize) -> Step {
    let k = i % KEYS.len();
    if (i / KEYS.len()) % 5 == 4 {
        Step::Reset(k)
    } else {
        Step::Crash(k)
    }
}

fn keys() -> Vec<BackendKey> {
    KEYS.iter().map(|k| key(k)).collect()
}

/// `total_crashes` per key, as the store holds it (absent keys have no entry).
type Totals = BTreeMap<usize, u64>;

fn apply(totals: &mut Totals, s: Step) {
    match s {
        Step::Crash(k) => *totals.entry(k).or_default() += 1,
        Step::Reset(k) => {
            totals.remove(&k);
        }
    }
}

fn read_totals(store: &RecoveryStore) -> Totals {
    let mut totals = Totals::new();
    for (i, k) in keys().iter().enumerate() {
        if let Some(entry) = store.get(k).expect("read entry") {
            totals.insert(i, entry.total_crashes);
        }
    }
    totals
}

// Not a test of its own: the body of worker processes, a no-op unless `RECOVERY_STORE_WORKER`
// names a role.
#[test]
fn worker_entry() {
    let Ok(role) = std::env::var(WORKER_VAR) else {
        return;
    };
    let path = PathBuf::from(std::env::var(PATH_VAR).expect("worker path"));
    let number = |var: &str| -> usize {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    };
    match role.as_str() {
        "script" => run_script(&path),
        "count" => run_counter(&path, number(THREADS_VAR), number(COUNT_VAR)),
        "abandon" => abandon(&path),
        "create" => {
            let store = RecoveryStore::open(&path).expect("worker create");
            store
                .record_crash(&keys()[0], Timestamp::now())
                .expect("worker record");
            println!("\ncreated");
        }
        other => panic!("unknown worker role {other:?}"),
    }
}

// Guards atomic creation on a real file system: a process killed at any moment while it
// creates a store leaves either no file at the path or a complete store, never a half-made file
// that the next open chokes on; and its temporary file is swept by the next creator.
#[test]
fn kill_9_during_creation_never_leaves_a_half_made_store() {
    let mut rng = Rng::new(0x5EED_C0DE);
    let (mut absent, mut complete) = (0, 0);
    for round in 0..30 {
        let tmp = TempStore::new();
        let mut child = spawn_worker("create", &tmp.path, &[]);
        thread::sleep(Duration::from_micros(rng.below(20_000)));
        let _ = child.kill();
        child.wait().expect("reap worker");
        if tmp.path.exists() {
            complete += 1;
            let store =
                RecoveryStore::open_with(&tmp.path, StoreOptions::default().read_only(true))
                    .unwrap_or_else(|e| panic!("round {round}: the file left behind: {e}"));
            assert!(store.len().expect("len") <= 1, "round {round}");
        } else {
            absent += 1;
        }
        let store = RecoveryStore::open(&tmp.path)
            .unwrap_or_else(|e| panic!("round {round}: creating after the kill: {e}"));
        store
            .record_crash(&keys()[1], Timestamp::now())
            .expect("record after the kill");
        drop(store);
        let leftovers: Vec<_> = std::fs::read_dir(tmp.dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| n.to_string_lossy().contains(".creating."))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
    }
    eprintln!("creation kills: {absent} rounds left no file, {complete} a complete store");
}

// Opens `path` with redb as any writer would, commits, and exits without closing: the file is
// left as by a writer that died, needing crash recovery before its next writable open.
fn abandon(path: &Path) {
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(path)
        .expect("worker open");
    let txn = db.begin_write().expect("begin");
    {
        let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("abandoned");
        let mut table = txn.open_table(table).expect("table");
        table
            .insert(b"k".as_slice(), b"v".as_slice())
            .expect("insert");
    }
    txn.commit().expect("commit");
    std::process::exit(0);
}

/// Leaves the file at `path` as a writer that died mid-session would, and checks that it now
/// needs crash recovery (a read-only open is refused).
fn leave_dirty(path: &Path) {
    let status = spawn_worker("abandon", path, &[]).wait().expect("worker");
    assert!(status.success(), "abandon worker: {status}");
    let ro = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open_read_only(path);
    assert!(
        matches!(ro, Err(redb::DatabaseError::RepairAborted)),
        "the file should need recovery"
    );
}

// Guards the files a dead writer left behind: a foreign redb file and a store of a newer schema
// are still refused byte-for-byte untouched, though redb would repair them on a writable open.
#[test]
fn files_left_by_dead_writers_are_still_refused_untouched() {
    let foreign = TempStore::new();
    drop(redb::Database::create(&foreign.path).expect("create foreign"));
    leave_dirty(&foreign.path);
    let newer = TempStore::new();
    drop(newer.open());
    crate::util::rewrite_meta(
        &newer.path,
        b"schema_version",
        &postcard::to_allocvec(&3u32).expect("encode"),
    );
    leave_dirty(&newer.path);
    for (t, expected) in [(&foreign, "NotAStore"), (&newer, "NewerSchema")] {
        let before = std::fs::read(&t.path).expect("read");
        for options in [
            StoreOptions::default(),
            StoreOptions::default().read_only(true),
        ] {
            let err = RecoveryStore::open_with(&t.path, options).expect_err("refused");
            let variant = match err {
                StoreError::NotAStore { .. } => "NotAStore",
                StoreError::NewerSchema { .. } => "NewerSchema",
                _ => "other",
            };
            assert_eq!(variant, expected, "{err}");
        }
        assert!(
            std::fs::read(&t.path).expect("read") == before,
            "{expected} file changed"
        );
    }
}

// Guards read-only opens of a store whose writer died: they answer from a repaired in-memory
// view, the handle stays read-only, the data is there, and the file is left as it was.
#[test]
fn read_only_open_of_a_store_left_by_a_dead_writer_repairs_but_never_writes_after() {
    let t = TempStore::new();
    let k = key("shared/alpha@1.0.0");
    t.open().record_crash(&k, Timestamp::now()).expect("record");
    leave_dirty(&t.path);
    let before = std::fs::read(&t.path).expect("read");
    let store = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true))
        .expect("read-only open");
    assert_eq!(store.get(&k).expect("get").expect("entry").total_crashes, 1);
    assert!(matches!(
        store.record_crash(&k, Timestamp::now()),
        Err(StoreError::ReadOnly { .. })
    ));
    drop(store);
    assert!(
        std::fs::read(&t.path).expect("read") == before,
        "a reader wrote the file"
    );
}

// Runs the fixed script, printing `ack I` once step I is acknowledged, until killed (or, as a
// backstop, for a few seconds).
fn run_script(path: &Path) {
    let store = RecoveryStore::open(path).expect("worker open");
    let keys = keys();
    let mut out = std::io::stdout().lock();
    // The leading newline ends the line the test harness may have left open.
    writeln!(out, "\nopen")
        .and_then(|()| out.flush())
        .expect("print");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    while Instant::now() < deadline {
        match step(i) {
            Step::Crash(k) => {
                store
                    .record_crash(&keys[k], Timestamp::now())
                    .expect("record crash");
            }
            Step::Reset(k) => {
                store.reset(&keys[k]).expect("reset");
            }
        }
        writeln!(out, "ack {i}")
            .and_then(|()| out.flush())
            .expect("print");
        i += 1;
    }
}

// Records `count` crashes on every key from each of `threads` threads, then prints `done N`.
fn run_counter(path: &Path, threads: usize, count: usize) {
    let store = Arc::new(RecoveryStore::open(path).expect("worker open"));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let keys = keys();
                let mut acked = 0;
                for i in 0..count {
                    // Each thread starts on a different key, so they collide in every order.
                    for j in 0..keys.len() {
                        let k = &keys[(t + i + j) % keys.len()];
                        store
                            .record_crash(k, Timestamp::now())
                            .expect("record crash");
                        acked += 1;
                    }
                }
                acked
            })
        })
        .collect();
    let acked: usize = handles
        .into_iter()
        .map(|h| h.join().expect("worker thread"))
        .sum();
    println!("\ndone {acked}");
}

fn spawn_worker(role: &str, path: &Path, envs: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "processes::worker_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(WORKER_VAR, role)
    .env(PATH_VAR, path)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (name, value) in envs {
        cmd.env(name, value);
    }
    cmd.spawn().expect("spawn worker")
}

/// Reads the worker's protocol lines (`open`, `ack N`, `done N`): each is sent on as it
/// arrives, and the reader thread returns them all once the worker's stdout closes.
fn read_lines(child: &mut Child) -> (mpsc::Receiver<String>, thread::JoinHandle<Vec<String>>) {
    let stdout = child.stdout.take().expect("worker stdout");
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "open" || line.starts_with("ack ") || line.starts_with("done ") {
                let _ = tx.send(line.clone());
                all.push(line);
            }
        }
        all
    });
    (rx, reader)
}

fn rounds() -> usize {
    if env_flag("RECOVERY_STORE_FULL_SWEEP") {
        300
    } else {
        60
    }
}

// Guards durability against a process killed at any moment: across many SIGKILLs, landing in
// startup, in open and between or inside commits, every acknowledged crash and reset is in the
// file (the op in flight may or may not have landed, nothing else), and the next open succeeds.
#[test]
fn kill_9_loses_no_acknowledged_operation() {
    let started = Instant::now();
    let tmp = TempStore::new();
    let mut rng = Rng::new(0x6B11_1009);
    let (mut acknowledged, mut landed, mut killed_in_open) = (0, 0, 0);
    let mut state = Totals::new();
    let rounds = rounds();
    for round in 0..rounds {
        let mut child = spawn_worker("script", &tmp.path, &[]);
        let (lines, reader) = read_lines(&mut child);
        // A third of the rounds die early (often while starting or opening), a third at a
        // random moment from launch, the rest a moment after a random number of acks.
        if round % 3 == 0 {
            thread::sleep(Duration::from_micros(rng.below(15_000)));
        } else if round % 3 == 1 {
            thread::sleep(Duration::from_micros(rng.below(150_000)));
        } else {
            let wanted = rng.below(40);
            let mut acks = 0;
            while acks <= wanted {
                match lines.recv_timeout(Duration::from_secs(30)) {
                    Ok(line) if line.starts_with("ack ") => acks += 1,
                    Ok(_) => {}
                    Err(e) => panic!("round {round}: the worker went quiet: {e}"),
                }
            }
            thread::sleep(Duration::from_micros(rng.below(2_000)));
        }
        child.kill().expect("SIGKILL the worker");
        let status = child.wait().expect("reap the worker");
        let lines = reader.join().expect("reader thread");
        if !lines.iter().any(|l| l == "open") {
            killed_in_open += 1;
        }
        let acks: Vec<usize> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("ack ")?.parse().ok())
            .collect();
        assert!(
            acks.iter().copied().eq(0..acks.len()),
            "round {round}: acks out of order"
        );
        assert!(
            status.code().is_none() || status.success(),
            "round {round}: the worker failed on its own: {status}"
        );
        let store = RecoveryStore::open(&tmp.path)
            .unwrap_or_else(|e| panic!("round {round}: open after SIGKILL failed: {e}"));
        let found = read_totals(&store);
        drop(store);
        let mut expected = state.clone();
        for i in 0..acks.len() {
            apply(&mut expected, step(i));
        }
        let mut with_in_flight = expected.clone();
        apply(&mut with_in_flight, step(acks.len()));
        if found == with_in_flight && found != expected {
            landed += 1;
        }
        assert!(
            found == expected || found == with_in_flight,
            "round {round}: {} acknowledged ops; store holds {found:?}, expected {expected:?} \
             or, with the op in flight, {with_in_flight:?}",
            acks.len()
        );
        acknowledged += acks.len();
        state = found;
    }
    eprintln!(
        "kill -9: {rounds} rounds, {acknowledged} acknowledged ops, {landed} in-flight ops \
         landed, {killed_in_open} kills before the store was open, 0 lost operations ({:.1?})",
        started.elapsed()
    );
    assert!(
        acknowledged > rounds,
        "the workers barely ran: {acknowledged} ops"
    );
}

/// Waits for `child` until `deadline`; kills it and returns `None` when time runs out.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("poll worker") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// Guards concurrent writers: two processes with several threads each record crashes on the
// same keys at once; every one is counted exactly once, and all finish within a bound (a
// deadlock or lost wakeup fails the test instead of hanging it).
#[test]
fn processes_and_threads_sharing_keys_count_exactly() {
    const PROCESSES: usize = 2;
    const THREADS: usize = 3;
    const COUNT: usize = 30;
    let started = Instant::now();
    let tmp = TempStore::new();
    // Created up front, so the workers race on recording, not on creating.
    drop(tmp.open());
    let envs = [
        (THREADS_VAR, THREADS.to_string()),
        (COUNT_VAR, COUNT.to_string()),
    ];
    let mut workers: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let mut child = spawn_worker("count", &tmp.path, &envs);
            let lines = read_lines(&mut child);
            (child, lines)
        })
        .collect();
    let deadline = started + Duration::from_secs(120);
    let mut acked = 0;
    for (i, (child, (_, reader))) in workers.iter_mut().enumerate() {
        let status = wait_until(child, deadline);
        assert!(
            status.is_some_and(|s| s.success()),
            "worker {i} did not finish within the bound: {status:?}"
        );
        let lines = std::mem::replace(reader, thread::spawn(Vec::new));
        let lines = lines.join().expect("reader thread");
        let done: usize = lines
            .iter()
            .find_map(|l| l.strip_prefix("done ")?.parse().ok())
            .expect("worker reports its count");
        acked += done;
    }
    let per_key = (PROCESSES * THREADS * COUNT) as u64;
    assert_eq!(acked as u64, per_key * KEYS.len() as u64);
    let store = tmp.open();
    let totals = read_totals(&store);
    for (k, name) in KEYS.iter().enumerate() {
        assert_eq!(totals.get(&k), Some(&per_key), "key {name}");
    }
    eprintln!(
        "shared writers: {PROCESSES} processes x {THREADS} threads, {acked} crashes recorded, \
         totals exact ({:.1?})",
        started.elapsed()
    );
}

// Guards the durability steps of creation that no crash image can show on this file system:
// the new file is synced before it is linked into place, and the directory after. Traced with
// strace on the real binary.
#[test]
fn creation_syncs_the_file_before_linking_it_and_the_directory_after() {
    let strace = Path::new("/usr/bin/strace");
    if !strace.exists() {
        assert!(std::env::var_os("CI").is_none(), "CI needs strace");
        eprintln!("skipped: no strace");
        return;
    }
    let tmp = TempStore::new();
    let trace = tmp.dir.path().join("trace");
    let status = Command::new(strace)
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync,link,linkat", "-o"])
        .arg(&trace)
        .arg(crate::util::bin())
        .arg("--db")
        .arg(&tmp.path)
        .args(["record-crash", "shared/alpha@1.0.0"])
        .stdout(Stdio::null())
        .status()
        .expect("strace");
    assert_eq!(status.code(), Some(0));
    let calls: Vec<String> = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .filter(|l| !l.contains("unfinished") && !l.contains("resumed"))
        .map(str::to_owned)
        .collect();
    let link = calls
        .iter()
        .position(|l| l.contains("link") && l.ends_with("= 0"))
        .expect("the store is linked into place");
    let dir = tmp.dir.path().display().to_string();
    assert!(
        calls[..link]
            .iter()
            .any(|l| l.contains("sync(") && l.contains(".recovery.redb.creating.")),
        "no sync of the new file before the link: {calls:#?}"
    );
    assert!(
        calls[link..]
            .iter()
            .any(|l| l.contains("fsync(") && l.contains(&format!("<{dir}>"))),
        "no sync of the directory after the link: {calls:#?}"
    );
}
