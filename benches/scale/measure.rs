//! Running a child process and measuring it: wall time, and peak RSS from `wait4`'s rusage.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How one child process went.
pub struct Measured {
    /// From spawn to reaped.
    pub elapsed: Duration,
    /// `ru_maxrss`: the child's peak resident set, in KiB.
    pub maxrss_kib: u64,
    pub status: ExitStatus,
    /// Its stdout (empty unless the caller kept it) and stderr.
    pub stdout: String,
    pub stderr: String,
}

impl Measured {
    /// Whether it answered: exit 0, or 1, the CLI's negative answer (`status`: refused).
    pub fn ok(&self) -> bool {
        self.status.code().is_some_and(|c| c <= 1)
    }

    /// The first line of stderr, for a failure report.
    pub fn stderr_line(&self) -> &str {
        self.stderr.lines().next().unwrap_or("")
    }
}

/// Runs `cmd` with stdout discarded, and measures it.
pub fn measure(mut cmd: Command) -> Measured {
    cmd.stdout(Stdio::null());
    measure_with(cmd)
}

/// Runs `cmd` with stdout kept (for children that report), and measures it.
pub fn measure_output(mut cmd: Command) -> Measured {
    let out = tempfile::tempfile().expect("temporary file");
    cmd.stdout(out.try_clone().expect("dup"));
    let mut m = measure_with(cmd);
    m.stdout = read_all(out);
    m
}

fn measure_with(mut cmd: Command) -> Measured {
    // stderr goes to a file: a pipe nobody reads could fill and stall the child.
    let err = tempfile::tempfile().expect("temporary file");
    cmd.stdin(Stdio::null())
        .stderr(err.try_clone().expect("dup"));
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn child");
    let (status, maxrss_kib) = wait4(child.id());
    let elapsed = start.elapsed();
    // `child` was reaped by wait4; dropping it neither waits nor kills.
    drop(child);
    Measured {
        elapsed,
        maxrss_kib,
        status,
        stdout: String::new(),
        stderr: read_all(err),
    }
}

/// Reaps `pid`, returning its exit status and `ru_maxrss` (KiB on Linux).
pub fn wait4(pid: u32) -> (ExitStatus, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 writes it and `status` for our own child `pid`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    assert_eq!(
        reaped,
        pid as libc::pid_t,
        "wait4: {}",
        std::io::Error::last_os_error()
    );
    (ExitStatus::from_raw(status), usage.ru_maxrss as u64)
}

fn read_all(mut file: File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    file.rewind().expect("rewind");
    file.read_to_string(&mut text).expect("read child output");
    text
}

/// The `recovery-store` binary: `RECOVERY_STORE_BIN`, else the workspace's, built here in
/// release mode next to this bench (the bench profile builds into the same directory).
pub fn cli_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("RECOVERY_STORE_BIN") {
        return bin.into();
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "recovery-store"])
        .args(["--bin", "recovery-store"])
        .current_dir(root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of recovery-store failed");
    let exe = std::env::current_exe().expect("current exe");
    // target/release/deps/scale-HASH -> target/release/recovery-store
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("bench binary in target/PROFILE/deps")
        .join("recovery-store");
    assert!(bin.exists(), "no {}: set RECOVERY_STORE_BIN", bin.display());
    bin
}
