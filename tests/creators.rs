//! Two creators of one store in different PID namespaces: the temporary file of a creator that
//! is alive, but whose PID means nothing here, is never swept, and both end with one store.
//! Runs the real CLI under `unshare --pid` and strace; fails under `CI=true` without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use recovery_store::RecoveryStore;

use crate::ownership::{is_root, unavailable};
use crate::util::{Reaped, TempStore, bin, key};

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".recovery.redb.creating."))
        })
        .collect()
}

// Guards issue 8's sweep: a creator in another PID namespace, stalled by strace for 3 s between
// making its temporary file and linking it, is not swept by a creator on the host, and both
// record their crash in one valid store.
#[test]
fn a_live_creator_in_another_pid_namespace_is_not_swept() {
    if !is_root() || !Path::new("/usr/bin/strace").exists() {
        return unavailable("needs root and strace");
    }
    let t = TempStore::new();
    // Inside the namespace the creator gets PID 30001, which names nothing (or something else)
    // on the host: a PID-based sweep would take it for dead.
    let script = "echo 30000 > /proc/sys/kernel/ns_last_pid 2>/dev/null; \
        exec strace -f -qq -o /dev/null -e trace=link,linkat \
        -e inject=link,linkat:delay_enter=3000000 \"$0\" --db \"$1\" record-crash shared/inside@1.0.0";
    let inside = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", script])
        .arg(bin())
        .arg(&t.path)
        .env_remove("RECOVERY_STORE_DB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn unshare");
    let mut inside = Reaped::new(inside);
    let deadline = Instant::now() + Duration::from_secs(20);
    let theirs = loop {
        if let Some(file) = temporary_files(t.dir.path()).pop() {
            break file;
        }
        if let Some(status) = inside.try_wait().expect("poll") {
            let out = inside.into_inner().wait_with_output().expect("output");
            return unavailable(&format!(
                "the namespaced creator ended early ({status}): {}",
                text(&out)
            ));
        }
        assert!(Instant::now() < deadline, "no temporary file appeared");
        std::thread::sleep(Duration::from_millis(5));
    };
    let host = Command::new(bin())
        .arg("--db")
        .arg(&t.path)
        .args(["record-crash", "shared/host@1.0.0"])
        .env_remove("RECOVERY_STORE_DB")
        .stdin(Stdio::null())
        .output()
        .expect("run the host creator");
    assert_eq!(host.status.code(), Some(0), "{}", text(&host));
    let still_running = inside.try_wait().expect("poll").is_none();
    assert!(
        !still_running || theirs.exists(),
        "the live creator's file {theirs:?} was swept"
    );
    let out = inside.into_inner().wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "namespaced creator: {}",
        text(&out)
    );
    let store = RecoveryStore::open(&t.path).expect("open");
    for k in ["shared/inside@1.0.0", "shared/host@1.0.0"] {
        assert!(store.get(&key(k)).expect("get").is_some(), "{k} missing");
    }
    assert_eq!(temporary_files(t.dir.path()), Vec::<PathBuf>::new());
}

// Guards the creator's retry: its temporary file removed (by an operator, or an older sweeper)
// while it is stalled before linking, it builds the store again instead of failing.
#[test]
fn a_creator_whose_temporary_file_vanished_starts_over() {
    if !Path::new("/usr/bin/strace").exists() {
        return unavailable("needs strace");
    }
    let t = TempStore::new();
    let creator = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=link,linkat"])
        .args(["-e", "inject=link,linkat:delay_enter=1500000"])
        .arg(bin())
        .arg("--db")
        .arg(&t.path)
        .args(["record-crash", "shared/a@1.0.0"])
        .env_remove("RECOVERY_STORE_DB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strace");
    let creator = Reaped::new(creator);
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(file) = temporary_files(t.dir.path()).pop() {
            break file;
        }
        assert!(Instant::now() < deadline, "no temporary file appeared");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Wait until it is built and the creator is stalled in link, then take it away.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_file(&first).expect("remove the temporary file");
    let out = creator.into_inner().wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let store = RecoveryStore::open(&t.path).expect("open");
    assert!(store.get(&key("shared/a@1.0.0")).expect("get").is_some());
    assert_eq!(temporary_files(t.dir.path()), Vec::<PathBuf>::new());
}
