//! One clock view per host: processes in a time namespace (`unshare --time --boottime N`, as a
//! CRIU-restored container sees it) share the host's boot id but not its `CLOCK_BOOTTIME`.
//! Every process sharing a store must decide the same way wherever it runs. Runs the real CLI
//! under `unshare`; needs root, and fails under `CI=true` without it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::ownership::unavailable;
use crate::util::{TempStore, bin};

const KEY: &str = "shared/alpha@1.0.0";
const SHIFT_SECS: u64 = 3600;

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command run in a new time namespace whose boot clock is `SHIFT_SECS` ahead of the host's.
fn shifted(program: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--fork", "--time", "--boottime", &SHIFT_SECS.to_string()])
        .arg(program)
        .stdin(Stdio::null());
    cmd
}

fn host(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null());
    cmd
}

fn cli(mut cmd: Command, db: &Path, args: &[&str]) -> Output {
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("RECOVERY_STORE_DB")
        .output()
        .expect("run the CLI")
}

fn uptime_secs(mut cmd: Command) -> Option<f64> {
    let out = cmd.arg("/proc/uptime").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// True when time namespaces work here and really shift the boot clock.
fn time_namespaces_work() -> bool {
    let cat = Path::new("/bin/cat");
    match (uptime_secs(host(cat)), uptime_secs(shifted(cat))) {
        (Some(h), Some(s)) if (s - h - SHIFT_SECS as f64).abs() < 60.0 => true,
        found => {
            unavailable(&format!(
                "`unshare --time --boottime` does not shift the boot clock here: {found:?}"
            ));
            false
        }
    }
}

/// Records two crashes of KEY from `writer`, then asks `status` from `reader`: both sides must
/// say refused.
fn both_views_agree(writer: fn(&Path) -> Command, reader: fn(&Path) -> Command) {
    let t = TempStore::new();
    let first = cli(writer(&bin()), &t.path, &["record-crash", KEY]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "first crash: {}",
        text(&first)
    );
    let second = cli(writer(&bin()), &t.path, &["record-crash", KEY]);
    assert_eq!(
        second.status.code(),
        Some(1),
        "second crash: {}",
        text(&second)
    );
    for (side, cmd) in [
        ("writer's view", writer(&bin())),
        ("other view", reader(&bin())),
    ] {
        let out = cli(cmd, &t.path, &["status", KEY]);
        assert_eq!(out.status.code(), Some(1), "{side}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("refused"),
            "{side}: {}",
            text(&out)
        );
    }
}

// Guards issue 8's example: the host records two crashes (refused); `status` in a time
// namespace with a boot clock an hour ahead must say refused too, not healthy.
#[test]
fn a_time_namespace_sees_the_hosts_refusal() {
    if time_namespaces_work() {
        both_views_agree(host, shifted);
    }
}

// Guards the reverse direction: crashes recorded in the namespace refuse the backend for the
// host as well.
#[test]
fn the_host_sees_a_time_namespaces_refusal() {
    if time_namespaces_work() {
        both_views_agree(shifted, host);
    }
}
