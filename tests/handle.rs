//! The long-lived handle a broker keeps: bounded waits on a stalled peer, healing after
//! transient I/O faults, following its path when the file is replaced, and no commit when a
//! call changes nothing. Multi-process scenarios use real processes (this test binary in a
//! helper role, and the CLI).

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use recovery_store::{
    BackendRecoveryPolicy, RecoveryStore, StorageBackend, StoreError, StoreOptions, Timestamp,
};
use redb::BackendError;
use redb::backends::FileBackend;

use crate::crash::fault_backend::FaultBackend;
use crate::util::{Reaped, TempStore, at, bin, key};

const ROLE_VAR: &str = "RECOVERY_STORE_HANDLE_ROLE";
const PATH_VAR: &str = "RECOVERY_STORE_HANDLE_PATH";

/// The bound the stall test gives every call.
const BOUND: Duration = Duration::from_secs(1);
/// Slack on top of the bound for process start-up on a loaded machine.
const SLACK: Duration = Duration::from_secs(4);

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| v == "true" || v == "1")
}

// ---------------------------------------------------------------------------------------------
// Helper processes

// Not a test of its own: the body of helper processes, a no-op unless the role variable is set.
#[test]
fn helper_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    let path = PathBuf::from(std::env::var(PATH_VAR).expect("helper path"));
    match role.as_str() {
        "stall" => stall(&path),
        "broker" => broker(&path),
        other => panic!("unknown helper role {other:?}"),
    }
}

/// Stops its own process (SIGSTOP) at the first sync after it is armed: inside a commit, with
/// the write lock held.
#[derive(Debug)]
struct StopAtSync {
    inner: FileBackend,
    armed: Arc<AtomicBool>,
}

impl StorageBackend for StopAtSync {
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
        if self.armed.swap(false, Ordering::AcqRel) {
            println!("stopping");
            // SAFETY: raising a signal on our own process has no memory effects.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

fn stall(path: &Path) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open store file");
    let armed = Arc::new(AtomicBool::new(false));
    let backend = StopAtSync {
        inner: FileBackend::new(file).expect("backend"),
        armed: armed.clone(),
    };
    let store = RecoveryStore::open_with_backend(backend, path, StoreOptions::default())
        .expect("helper open");
    armed.store(true, Ordering::Release);
    let decision = store
        .record_crash_now(&key("shared/stalled@1.0.0"))
        .expect("stalled writer records its crash");
    println!("done {decision:?}");
}

// Records a crash of a new key every few milliseconds, printing `ack I EPOCH` once each is
// acknowledged, where EPOCH counts the `changed-N` marker files seen before the call began.
// Stops when a `stop` file appears.
fn broker(path: &Path) {
    let dir = path.parent().expect("store dir");
    let store = RecoveryStore::open(path).expect("broker open");
    for i in 0.. {
        if dir.join("stop").exists() {
            break;
        }
        let epoch = (1..)
            .take_while(|n| dir.join(format!("changed-{n}")).exists())
            .count();
        store
            .record_crash_now(&key(&format!("shared/svc-{i}@1.0.0")))
            .expect("broker records a crash");
        println!("ack {i} {epoch}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn spawn_helper(role: &str, path: &Path) -> Reaped {
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "handle::helper_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_VAR, role)
        .env(PATH_VAR, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn helper");
    Reaped::new(child)
}

fn wait_for_line(lines: &mut impl Iterator<Item = String>, prefix: &str) -> String {
    lines
        // The harness prints its own `test … ` before the helper's first line.
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("helper never printed {prefix:?}"))
}

fn stopped(child: &Child) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

// ---------------------------------------------------------------------------------------------
// Bounded waits

/// Runs `call`, asserting that it returns within the bound (plus slack); returns how long.
fn timed<T>(what: &str, longest: &mut Duration, call: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = call();
    let took = started.elapsed();
    assert!(took < BOUND + SLACK, "{what} took {took:?}");
    eprintln!("{what}: {took:?}");
    *longest = (*longest).max(took);
    value
}

fn busy<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Busy { path, waited, .. }) => {
            assert!(waited >= BOUND, "{what}: gave up after {waited:?}");
            assert!(path.ends_with("recovery.redb"), "{what}: names the store");
        }
        other => panic!("{what}: expected Busy, got {other:?}"),
    }
}

fn cli_busy(path: &Path, args: &[&str], longest: &mut Duration) {
    let what = format!("CLI {}", args.join(" "));
    let out = timed(&what, longest, || {
        Command::new(bin())
            .arg("--db")
            .arg(path)
            .args(["--lock-timeout", "1s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run CLI")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A busy store is an error for every command, `check` included: never a damaged file.
    let (code, text) = (2, stderr);
    assert!(stdout.is_empty(), "{what}: {stdout}");
    assert_eq!(out.status.code(), Some(code), "{what}: {text}");
    assert!(
        text.contains("is busy") && text.contains("--lock-timeout"),
        "{what}: {text}"
    );
}

// Guards bounded waits: a peer stopped (SIGSTOP) inside its commit, write lock held, makes every
// other write path fail with Busy within the lock timeout, library calls and CLI write commands
// alike, while reads answer; after SIGCONT the peer's decision and all earlier state are there
// and the Busy calls changed nothing.
#[test]
fn a_stopped_writer_makes_other_writers_busy_within_the_bound() {
    let tmp = TempStore::new();
    let seed = tmp.open();
    for name in ["a", "b", "c"] {
        seed.record_crash(&key(&format!("shared/{name}@1.0.0")), at(0.0))
            .expect("seed");
    }
    let before = seed.list().expect("list");
    drop(seed);
    let export = tmp.dir.path().join("export.json");
    let out = Command::new(bin())
        .arg("--db")
        .arg(&tmp.path)
        .arg("export")
        .output()
        .expect("export");
    assert!(out.status.success());
    // One entry fewer, so the import has something to write (a no-op import only reads).
    let mut doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("export JSON");
    doc["entries"].as_array_mut().expect("entries").pop();
    std::fs::write(&export, doc.to_string()).expect("write export");

    let mut child = spawn_helper("stall", &tmp.path);
    let stdout = child.stdout.take().expect("helper stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    wait_for_line(&mut lines, "stopping");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stopped(&child) {
        assert!(Instant::now() < deadline, "helper never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }

    // Watchdog: a call that waits without a bound is let go after a minute by killing the
    // stopped writer, and then fails its time check instead of hanging the suite.
    let finished = Arc::new(AtomicBool::new(false));
    {
        let (finished, pid) = (finished.clone(), child.id() as libc::pid_t);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if finished.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: signalling the helper child by its pid; it is not reaped before this
            // test's calls are done.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
    }
    let mut longest = Duration::ZERO;
    let options = || StoreOptions::default().lock_timeout(BOUND);
    // A handle opened before it needs the write lock: opening costs no lock wait.
    let store = timed("open", &mut longest, || {
        RecoveryStore::open_with(&tmp.path, options())
    })
    .expect("open answers while the writer is stopped");
    let a = key("shared/a@1.0.0");
    // Reads answer.
    assert_eq!(
        timed("list", &mut longest, || store.list()).expect("list"),
        before
    );
    assert!(
        timed("get", &mut longest, || store.get(&a))
            .expect("get")
            .is_some()
    );
    let later = Timestamp::now() + Duration::from_secs(3600);
    busy(
        "record_crash",
        timed("record_crash", &mut longest, || {
            store.record_crash(&a, Timestamp::now())
        }),
    );
    busy(
        "record_crash_now",
        timed("record_crash_now", &mut longest, || {
            store.record_crash_now(&a)
        }),
    );
    busy(
        "record_success",
        timed("record_success", &mut longest, || store.record_success(&a)),
    );
    busy("reset", timed("reset", &mut longest, || store.reset(&a)));
    busy(
        "reset_prefix",
        timed("reset_prefix", &mut longest, || {
            store.reset_prefix("shared/")
        }),
    );
    busy("prune", timed("prune", &mut longest, || store.prune(later)));
    let other = BackendRecoveryPolicy::new(Duration::from_millis(100), Duration::from_secs(10));
    busy(
        "set_policy",
        timed("set_policy", &mut longest, || store.set_policy(other)),
    );
    busy(
        "replace_all",
        timed("replace_all", &mut longest, || store.replace_all(None, &[])),
    );
    busy(
        "open with a new policy",
        timed("open with a new policy", &mut longest, || {
            RecoveryStore::open_with(&tmp.path, options().policy(other))
        }),
    );
    let cli_reads = Command::new(bin())
        .arg("--db")
        .arg(&tmp.path)
        .args(["--lock-timeout", "1s", "list"])
        .output()
        .expect("CLI list");
    assert!(cli_reads.status.success(), "CLI list answers");
    cli_busy(&tmp.path, &["reset", "shared/a@1.0.0"], &mut longest);
    cli_busy(&tmp.path, &["record-crash", "shared/a@1.0.0"], &mut longest);
    cli_busy(
        &tmp.path,
        &["record-success", "shared/a@1.0.0"],
        &mut longest,
    );
    cli_busy(
        &tmp.path,
        &["--now", "2100-01-01T00:00:00Z", "prune"],
        &mut longest,
    );
    cli_busy(
        &tmp.path,
        &["policy", "set", "--retry-backoff", "100ms"],
        &mut longest,
    );
    cli_busy(
        &tmp.path,
        &["import", "--yes", export.to_str().expect("utf-8 path")],
        &mut longest,
    );
    cli_busy(&tmp.path, &["check"], &mut longest);
    eprintln!("longest wait with a stopped writer: {longest:?}");
    finished.store(true, Ordering::Release);

    signal(&child, libc::SIGCONT);
    let done = wait_for_line(&mut lines, "done");
    assert!(done.contains("Retry"), "{done}");
    let status = child.into_inner().wait().expect("helper exit");
    assert!(status.success());
    let mut after = store.list().expect("list after");
    let stalled = after
        .iter()
        .position(|e| e.key == key("shared/stalled@1.0.0"))
        .expect("the stopped writer's crash is recorded");
    after.remove(stalled);
    assert_eq!(after, before, "the Busy calls changed nothing");
}

// ---------------------------------------------------------------------------------------------
// Transient faults

// Guards healing: a write or sync failing with ENOSPC or EIO fails that call alone, with a
// message naming the cause, and records nothing; once the fault clears, the same handle works
// again, and every acknowledged decision is in the durable image.
#[test]
fn the_same_handle_heals_after_enospc_and_eio() {
    for (op, errno) in [
        ("write", libc::ENOSPC),
        ("sync", libc::ENOSPC),
        ("write", libc::EIO),
        ("sync", libc::EIO),
    ] {
        let backend = FaultBackend::new();
        let store =
            RecoveryStore::open_with_backend(backend.clone(), "fault", StoreOptions::default())
                .expect("open");
        let mut acked = Vec::new();
        for i in 0..5 {
            let k = key(&format!("shared/before-{i}@1.0.0"));
            store.record_crash(&k, at(i as f64)).expect("record");
            acked.push(k);
        }
        backend.fail_transiently(op, errno);
        let failed = key("shared/failed@1.0.0");
        let err = store
            .record_crash(&failed, at(10.0))
            .expect_err("the faulty call fails");
        let text = err.to_string();
        let cause = if errno == libc::ENOSPC {
            "no space left on the filesystem holding fault: free space and retry"
        } else {
            "reported an I/O error"
        };
        assert!(text.contains(cause), "{op} {errno}: {text}");
        assert!(!text.contains("permissions"), "{op} {errno}: {text}");
        backend.heal();
        // The same handle: reads and writes work again, and the failed call recorded nothing.
        assert_eq!(store.get(&failed).expect("read after healing"), None);
        let entry = {
            store.record_crash(&failed, at(11.0)).expect("retry");
            store.get(&failed).expect("get").expect("recorded")
        };
        assert_eq!(entry.total_crashes, 1, "{op} {errno}: not half-applied");
        acked.push(failed);
        for i in 0..3 {
            let k = key(&format!("shared/after-{i}@1.0.0"));
            store.record_crash(&k, at(20.0 + i as f64)).expect("record");
            acked.push(k);
        }
        drop(store);
        let reopened = RecoveryStore::open_with_backend(
            FaultBackend::from_image(&backend.durable_image()),
            "image",
            StoreOptions::default(),
        )
        .expect("reopen the durable image");
        let listed: BTreeSet<_> = reopened
            .list()
            .expect("list")
            .into_iter()
            .map(|e| e.key)
            .collect();
        for k in &acked {
            assert!(
                listed.contains(k),
                "{op} {errno}: {k} acknowledged, then lost"
            );
        }
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(!ci(), "CI needs root to mount a tmpfs");
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
    }
    ok
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

// Guards healing on a real full filesystem: a tiny tmpfs fills up, a crash cannot be
// recorded (ENOSPC, with advice to free space), and once space is freed the same handle records
// it; every decision it acknowledged is in the file.
#[test]
fn a_full_tmpfs_fails_one_call_and_the_handle_recovers_once_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !mount_tmpfs(dir.path(), "600k") {
        return;
    }
    let _unmount = Unmount(dir.path().to_owned());
    let path = dir.path().join("recovery.redb");
    let store = RecoveryStore::open(&path).expect("open");
    store
        .record_crash(&key("shared/first@1.0.0"), Timestamp::now())
        .expect("first");
    // Fill what is left.
    let filler = dir.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0xA5u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
    let mut acked = vec![key("shared/first@1.0.0")];
    let mut failure = None;
    for i in 0..20_000 {
        let k = key(&format!("shared/svc-{i:05}-padding-padding-padding@1.0.0"));
        match store.record_crash(&k, Timestamp::now()) {
            Ok(_) => acked.push(k),
            Err(e) => {
                failure = Some((k, e));
                break;
            }
        }
    }
    let (k, err) = failure.expect("the full filesystem fails a write");
    let text = err.to_string();
    assert!(
        text.contains("no space left on the filesystem holding"),
        "{text}"
    );
    std::fs::remove_file(&filler).expect("free space");
    store
        .record_crash(&k, Timestamp::now())
        .expect("the same handle records once space is free");
    acked.push(k);
    drop(store);
    let listed: BTreeSet<_> = RecoveryStore::open(&path)
        .expect("reopen")
        .list()
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    for k in &acked {
        assert!(listed.contains(k), "{k} acknowledged, then lost");
    }
}

// ---------------------------------------------------------------------------------------------
// The path is the store

fn keys_at(path: &Path) -> BTreeSet<String> {
    let out = Command::new(bin())
        .arg("--db")
        .arg(path)
        .args(["--json", "list"])
        .output()
        .expect("CLI list");
    assert!(out.status.success(), "list at {}", path.display());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list JSON");
    let entries = doc
        .get("entries")
        .and_then(|e| e.as_array())
        .or_else(|| doc.as_array())
        .expect("entries array");
    entries
        .iter()
        .map(|e| e["key"].as_str().expect("key").to_owned())
        .collect()
}

// Guards path-following in one process: after the file is deleted, renamed away or replaced,
// the handle's next decision lands in the file the path names, and a reset made at the path
// reaches the handle.
#[test]
fn a_handle_follows_its_path_when_the_file_is_deleted_renamed_or_replaced() {
    let tmp = TempStore::new();
    let store = tmp.open();
    store
        .record_crash(&key("shared/a@1.0.0"), Timestamp::now())
        .expect("a");

    std::fs::remove_file(&tmp.path).expect("rm");
    store
        .record_crash(&key("shared/b@1.0.0"), Timestamp::now())
        .expect("b");
    assert!(keys_at(&tmp.path).contains("shared/b@1.0.0"), "after rm");

    let moved = tmp.dir.path().join("moved.redb");
    std::fs::rename(&tmp.path, &moved).expect("mv away");
    store
        .record_crash(&key("shared/c@1.0.0"), Timestamp::now())
        .expect("c");
    assert!(
        keys_at(&tmp.path).contains("shared/c@1.0.0"),
        "after mv away"
    );
    assert!(!keys_at(&moved).contains("shared/c@1.0.0"));

    let fresh = tmp.dir.path().join("fresh.redb");
    RecoveryStore::open(&fresh)
        .expect("fresh")
        .record_crash(&key("shared/fresh@1.0.0"), Timestamp::now())
        .expect("fresh entry");
    std::fs::rename(&fresh, &tmp.path).expect("mv fresh into place");
    store
        .record_crash(&key("shared/d@1.0.0"), Timestamp::now())
        .expect("d");
    let now = keys_at(&tmp.path);
    assert!(now.contains("shared/d@1.0.0") && now.contains("shared/fresh@1.0.0"));
    // Reads follow too, and a reset at the path reaches the handle.
    assert!(
        store
            .get(&key("shared/fresh@1.0.0"))
            .expect("get")
            .is_some()
    );
    let status = Command::new(bin())
        .arg("--db")
        .arg(&tmp.path)
        .args(["reset", "shared/d@1.0.0"])
        .status()
        .expect("CLI reset");
    assert!(status.success());
    assert_eq!(store.get(&key("shared/d@1.0.0")).expect("get"), None);
}

fn read_acks(stdout: ChildStdout) -> std::sync::mpsc::Receiver<(u64, usize)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Some(at) = line.find("ack ") else {
                continue;
            };
            let mut parts = line[at..].split_whitespace().skip(1);
            let i = parts
                .next()
                .and_then(|p| p.parse().ok())
                .expect("ack index");
            let epoch = parts.next().and_then(|p| p.parse().ok()).expect("epoch");
            if tx.send((i, epoch)).is_err() {
                break;
            }
        }
    });
    rx
}

// Guards path-following in a running broker process: the store is deleted, then replaced by
// another store, under it; after each change, `list` at the path shows every decision the
// broker acknowledged after that change.
#[test]
fn a_running_broker_follows_its_path_when_the_file_is_deleted_or_replaced() {
    let tmp = TempStore::new();
    drop(tmp.open());
    let dir = tmp.dir.path();
    let mut child = spawn_helper("broker", &tmp.path);
    let acks = read_acks(child.stdout.take().expect("broker stdout"));
    let mut seen: Vec<(u64, usize)> = Vec::new();
    let wait_for = |epoch: usize, n: usize, seen: &mut Vec<(u64, usize)>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.iter().filter(|(_, e)| *e == epoch).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            seen.push(acks.recv_timeout(left).expect("broker acknowledges"));
        }
    };
    wait_for(0, 20, &mut seen);
    let fresh = dir.join("fresh.redb");
    drop(RecoveryStore::open(&fresh).expect("fresh store"));
    let changes: [&dyn Fn(); 2] = [&|| std::fs::remove_file(&tmp.path).expect("rm"), &|| {
        std::fs::rename(&fresh, &tmp.path).expect("mv fresh into place")
    }];
    for (n, change) in changes.iter().enumerate() {
        let epoch = n + 1;
        change();
        std::fs::write(dir.join(format!("changed-{epoch}")), b"").expect("marker");
        wait_for(epoch, 20, &mut seen);
        let listed = keys_at(&tmp.path);
        let missing: Vec<_> = seen
            .iter()
            .filter(|(_, e)| *e == epoch)
            .map(|(i, _)| format!("shared/svc-{i}@1.0.0"))
            .filter(|k| !listed.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "after change {epoch}, acknowledged but not in the file at the path: {missing:?}"
        );
    }
    std::fs::write(dir.join("stop"), b"").expect("stop");
    let status = child.into_inner().wait().expect("broker exit");
    assert!(status.success());
}

// ---------------------------------------------------------------------------------------------
// No change, no commit

// Guards no-change-no-commit in the library: calls with nothing to change make no sync.
#[test]
fn calls_that_change_nothing_make_no_sync() {
    let tmp = TempStore::new();
    let store = tmp.open();
    let present = key("shared/present@1.0.0");
    store
        .record_crash(&present, Timestamp::now())
        .expect("present");
    let policy = store.policy().expect("policy");
    let absent = key("shared/absent@1.0.0");
    let before = store.sync_count();
    assert!(!store.record_success(&absent).expect("record_success"));
    assert!(!store.reset(&absent).expect("reset"));
    assert!(
        store
            .reset_prefix("other/")
            .expect("reset_prefix")
            .is_empty()
    );
    assert!(
        store
            .reset_where("shared/", |_| false)
            .expect("reset_where")
            .is_empty()
    );
    assert_eq!(store.prune(Timestamp::now()).expect("prune"), 0);
    store.set_policy(policy).expect("set_policy");
    assert_eq!(store.sync_count(), before, "no-op calls synced");
    // A fresh handle that only finds nothing to do never syncs either.
    let other = tmp.open();
    assert!(!other.record_success(&absent).expect("record_success"));
    assert_eq!(other.sync_count(), 0, "a no-op handle synced");
    // The counter does count: a real change syncs.
    assert!(store.record_success(&present).expect("clear"));
    assert!(store.sync_count() > before);
}

fn fdatasyncs(path: &Path, args: &[&str]) -> usize {
    let trace = path.with_extension("trace");
    let status = Command::new("strace")
        .args(["-f", "-e", "trace=fdatasync,fsync", "-o"])
        .arg(&trace)
        .arg(bin())
        .arg("--db")
        .arg(path)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("strace");
    assert!(status.code().is_some());
    let mut text = String::new();
    std::fs::File::open(&trace)
        .expect("trace")
        .read_to_string(&mut text)
        .expect("read trace");
    text.lines()
        .filter(|l| l.contains("fdatasync(") || l.contains("fsync("))
        .count()
}

// Guards no-change-no-commit in the CLI, traced with strace on the real binary: write commands
// with nothing to change make no sync at all.
#[test]
fn cli_write_commands_with_nothing_to_change_make_no_sync() {
    if !Path::new("/usr/bin/strace").exists() {
        assert!(!ci(), "CI needs strace");
        eprintln!("skipped: no strace");
        return;
    }
    let tmp = TempStore::new();
    tmp.open()
        .record_crash(&key("shared/present@1.0.0"), Timestamp::now())
        .expect("present");
    for args in [
        &["record-success", "shared/absent@1.0.0"][..],
        &["reset", "shared/absent@1.0.0"],
        &["prune"],
        &[
            "policy",
            "set",
            "--retry-backoff",
            "250ms",
            "--budget-window",
            "30s",
        ],
    ] {
        assert_eq!(fdatasyncs(&tmp.path, args), 0, "{args:?}");
    }
    // The trace does see syncs when something changes.
    assert!(fdatasyncs(&tmp.path, &["reset", "shared/present@1.0.0"]) > 0);
}

// Guards stamping under the lock: a `record_crash_now` that waited for a stopped writer is
// stamped after the wait, not when it was called.
#[test]
fn record_crash_now_is_stamped_once_the_lock_is_held() {
    let tmp = TempStore::new();
    drop(tmp.open());
    let mut child = spawn_helper("stall", &tmp.path);
    let stdout = child.stdout.take().expect("helper stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    wait_for_line(&mut lines, "stopping");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stopped(&child) {
        assert!(Instant::now() < deadline, "helper never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }
    let store = Arc::new(
        RecoveryStore::open_with(
            &tmp.path,
            StoreOptions::default().lock_timeout(Duration::from_secs(60)),
        )
        .expect("open"),
    );
    let k = key("shared/waiting@1.0.0");
    let called = std::time::SystemTime::now();
    let waiter = {
        let (store, k) = (store.clone(), k.clone());
        std::thread::spawn(move || store.record_crash_now(&k))
    };
    std::thread::sleep(Duration::from_millis(500));
    let resumed = std::time::SystemTime::now();
    signal(&child, libc::SIGCONT);
    waiter
        .join()
        .expect("waiter")
        .expect("recorded after the wait");
    wait_for_line(&mut lines, "done");
    let entry = store.get(&k).expect("get").expect("entry");
    assert!(
        entry.last_crash.wall() >= resumed,
        "stamped {:?} after the call began, before the writer resumed",
        entry
            .last_crash
            .wall()
            .duration_since(called)
            .unwrap_or_default()
    );
}

// Guards the broker's degraded mode under a stalled peer: a `DurableRecoveryState` whose store
// is held by a writer stopped inside its commit still answers every call within the lock bound,
// decides from the state it can still read, and writes its decisions through after SIGCONT.
#[test]
fn a_durable_state_degrades_under_a_stopped_writer_and_writes_through_after() {
    use recovery_store::{BackendRecoveryDecision, DurableRecoveryState, StoreHealth};
    let tmp = TempStore::new();
    let options = StoreOptions::default().lock_timeout(BOUND);
    let mut state = DurableRecoveryState::open_with(&tmp.path, options).expect("open");
    let (looping, fresh) = (key("shared/looping@1.0.0"), key("shared/fresh@1.0.0"));
    let now = std::time::Instant::now();
    assert!(matches!(
        state.record_crash(looping.clone(), now),
        BackendRecoveryDecision::Retry { .. }
    ));

    let mut child = spawn_helper("stall", &tmp.path);
    let stdout = child.stdout.take().expect("helper stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    wait_for_line(&mut lines, "stopping");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stopped(&child) {
        assert!(Instant::now() < deadline, "helper never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }

    let started = Instant::now();
    let second = state.record_crash(looping.clone(), now + Duration::from_secs(1));
    let first_fresh = state.record_crash(fresh.clone(), now + Duration::from_secs(1));
    let waited = started.elapsed();
    assert!(waited < BOUND + SLACK, "waited {waited:?}");
    // The stored crash was read despite the stall: the second crash in the window refuses.
    assert!(
        matches!(second, BackendRecoveryDecision::Refuse { retry_after, .. }
            if retry_after == Duration::from_secs(29)),
        "{second:?}"
    );
    assert!(matches!(first_fresh, BackendRecoveryDecision::Retry { .. }));
    let StoreHealth::Degraded { cause, pending, .. } = state.health() else {
        panic!("degraded expected, got {:?}", state.health());
    };
    assert!(cause.contains("busy"), "{cause}");
    assert_eq!(pending, 2);

    signal(&child, libc::SIGCONT);
    wait_for_line(&mut lines, "done");
    drop(child);
    state.flush().expect("the store is back");
    assert_eq!(state.health(), StoreHealth::Durable);
    drop(state);
    let store = tmp.open();
    assert_eq!(store.get(&looping).unwrap().unwrap().crashes_in_window, 2);
    assert_eq!(store.get(&fresh).unwrap().unwrap().crashes_in_window, 1);
    assert!(store.get(&key("shared/stalled@1.0.0")).unwrap().is_some());
}
