//! Reading a store whose last writer was killed with SIGKILL, without write access: on a
//! read-only bind mount and as a user who may only read the file. The reader answers from a
//! repaired in-memory view, writes nothing, and leaves the file byte-identical and still
//! awaiting recovery; a writer that cannot write is told the store needs recovery and by whom.
//! Needs root (mount, setpriv); without it each test fails under `CI=true`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use recovery_store::{RecoveryStore, StoreOptions, Timestamp};

use crate::ownership::{Sandbox, unavailable};
use crate::util::{digest, key};

const KEY: &str = "shared/alpha@1.0.0";
const WORKER_VAR: &str = "RECOVERY_STORE_DYING_WRITER";

// Not a test of its own: a writer that records two crashes of KEY (refused), says `ready` and
// waits to be killed, holding the store open. A no-op unless the variable is set.
#[test]
fn dying_writer_entry() {
    let Some(path) = std::env::var_os(WORKER_VAR) else {
        return;
    };
    let store = RecoveryStore::open(PathBuf::from(path)).expect("writer open");
    for _ in 0..2 {
        store
            .record_crash(&key(KEY), Timestamp::now())
            .expect("record");
    }
    println!("\nready");
    std::thread::sleep(std::time::Duration::from_secs(30));
}

/// Leaves the store at `path` as a writer killed with SIGKILL leaves it.
fn kill_a_writer(path: &Path) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "recovery::dying_writer_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WORKER_VAR, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines
        .map_while(Result::ok)
        .any(|line| line.trim() == "ready");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(ready, "the writer never got ready");
    assert!(needs_recovery(path), "the killed writer left a clean file");
}

fn needs_recovery(path: &Path) -> bool {
    matches!(
        redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .open_read_only(path),
        Err(redb::DatabaseError::RepairAborted)
    )
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Reads as `uid` (through `sandbox`): `status` says refused, `list` shows the entry.
fn reads_answer(sandbox: &Sandbox, uid: u32, db: &Path) {
    let out = sandbox.cli(uid, uid, &[], db, &["status", KEY]);
    assert_eq!(out.status.code(), Some(1), "refused: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused"));
    let out = sandbox.cli(uid, uid, &[], db, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(KEY));
}

/// A write as `uid` fails, saying the store needs recovery by a process that can write it.
fn write_needs_recovery(sandbox: &Sandbox, uid: u32, db: &Path) {
    let out = sandbox.cli(uid, uid, &[], db, &["record-crash", KEY]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs crash recovery"), "{err}");
    assert!(
        err.contains(&format!(
            "run `recovery-store check` as a user who can write {}",
            db.display()
        )),
        "{err}"
    );
}

/// Unmounts when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn run_ok(cmd: &mut Command) -> bool {
    cmd.stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// Guards issue 9's read-only rescue mount: after a writer died, reads on a read-only bind
// mount answer (the library and the CLI), the file stays byte-identical and unrepaired, and a
// write names the recovery it needs.
#[test]
fn a_read_only_mount_is_read_after_an_unclean_stop() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    let dir = sandbox.dir("rw", 0, 0, 0o755);
    let path = dir.join("recovery.redb");
    kill_a_writer(&path);
    let before = digest(&path);
    let ro = sandbox.dir("ro", 0, 0, 0o755);
    if !run_ok(Command::new("mount").arg("--bind").arg(&dir).arg(&ro)) {
        return unavailable("cannot bind-mount");
    }
    let mounted = Mounted(ro.clone());
    if !run_ok(
        Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(&ro),
    ) {
        return unavailable("cannot remount read-only");
    }
    let db = ro.join("recovery.redb");
    let store = RecoveryStore::open_with(&db, StoreOptions::default().read_only(true))
        .expect("read-only open after an unclean stop");
    let entry = store.get(&key(KEY)).expect("get").expect("entry");
    assert_eq!(entry.total_crashes, 2);
    drop(store);
    reads_answer(&sandbox, 0, &db);
    write_needs_recovery(&sandbox, 0, &db);
    drop(mounted);
    assert_eq!(digest(&path), before, "the file changed");
    assert!(needs_recovery(&path), "a reader repaired the file");
    // A process that can write recovers it.
    let out = sandbox.cli(0, 0, &[], &path, &["record-crash", KEY]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!needs_recovery(&path));
}

// Guards issue 9's monitoring user: someone who may only read the file reads it after an
// unclean stop, without changing a byte, and is told what a write would need.
#[test]
fn a_user_who_can_only_read_reads_after_an_unclean_stop() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    let dir = sandbox.dir("store", 0, 0, 0o755);
    let path = dir.join("recovery.redb");
    kill_a_writer(&path);
    crate::ownership::chmod(&path, 0o644);
    let before = digest(&path);
    reads_answer(&sandbox, 65534, &path);
    write_needs_recovery(&sandbox, 65534, &path);
    assert_eq!(digest(&path), before, "the file changed");
    assert!(needs_recovery(&path), "a reader repaired the file");
}
