//! The OS plumbing of `run`, apart from its supervision policy: the child in its own process
//! group with a parent-death signal, signal delivery through a self-pipe, waits that block
//! instead of polling, and the per-key run lock.
//!
//! The command runs in a process group of its own (as `tini -g` does), so a signal sent to
//! `run`'s group (a terminal's Ctrl-C, GNU `timeout`, `kill -- -PGID`) reaches `run` only,
//! and `run` forwards it to the command's group once.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use rustix::fs::{FlockOperation, flock};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use signal_hook::consts::signal::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

/// Signals that ask `run` to stop: forwarded once, then the command's end is not a crash.
pub const STOP_SIGNALS: [i32; 2] = [SIGINT, SIGTERM];
/// Signals passed on to the command as they come.
pub const FORWARDED_SIGNALS: [i32; 5] = [SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

/// Signals, a child's exit and the store thread's answers, all as bytes on one self-pipe, so
/// `run` sleeps in one blocking read and wakes for whichever comes first.
pub struct Wakeups {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
    waker: UnixStream,
}

/// What woke [`Wakeups::wait`]: the signals that arrived (each at most once, in no order).
pub type Arrived = Vec<i32>;

impl Wakeups {
    /// Installs handlers for the stop, forwarded and child signals. From here on none of them
    /// has its default action on `run`.
    pub fn install() -> io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        let waker = write.try_clone()?;
        // Another thread's wake-up must never block on a full pipe: a full pipe wakes anyway.
        waker.set_nonblocking(true)?;
        let signals = STOP_SIGNALS
            .iter()
            .chain(&FORWARDED_SIGNALS)
            .chain(&[SIGCHLD]);
        let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, signals)?;
        Ok(Self { delivery, waker })
    }

    /// A handle another thread uses to wake this one.
    pub fn waker(&self) -> io::Result<Waker> {
        Ok(Waker(self.waker.try_clone()?))
    }

    /// Blocks until a signal or a wake-up arrives, or `deadline` passes (`None`: no deadline);
    /// returns the signals received since the last call (SIGCHLD included).
    pub fn wait(&mut self, deadline: Option<Instant>) -> io::Result<Arrived> {
        let arrived: Arrived = self.delivery.pending().collect();
        if !arrived.is_empty() {
            return Ok(arrived);
        }
        let timeout = match deadline {
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(arrived),
            },
            None => None,
        };
        let read = self.delivery.get_read_mut();
        read.set_read_timeout(timeout)?;
        match read.read(&mut [0u8; 64]) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
        Ok(self.delivery.pending().collect())
    }
}

/// Wakes a thread blocked in [`Wakeups::wait`].
pub struct Waker(UnixStream);

impl Waker {
    /// One byte on the self-pipe; a full pipe already means "wake up".
    pub fn wake(&self) {
        let _ = (&self.0).write(&[1]);
    }
}

/// Why a command could not be started: the shell's 127 (not found) or 126 (found, but not
/// executable), with the OS error.
#[derive(Debug)]
pub struct ExecFailure {
    /// 127 or 126.
    pub code: u8,
    /// The error from `execve` (or from setting the child up).
    pub error: io::Error,
}

/// A running command: the leader of its own process group. Dropping it kills the whole
/// group and reaps the leader, so no path out of `run` leaves the command behind.
pub struct Child {
    inner: std::process::Child,
    pgid: Pid,
    reaped: bool,
}

/// Starts `command` in a new process group, with SIGKILL as its parent-death signal. stdin
/// and stderr are inherited; stdout too, unless `stdout_to_stderr`.
///
/// The fork happens on the calling thread, which must live as long as `run` (the main
/// thread): Linux sends the parent-death signal when the forking *thread* exits.
pub fn spawn(command: &[OsString], stdout_to_stderr: bool) -> Result<Child, ExecFailure> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    if stdout_to_stderr {
        let err = io::stderr().lock();
        use std::os::fd::AsFd as _;
        let fd = err
            .as_fd()
            .try_clone_to_owned()
            .map_err(|error| ExecFailure { code: 126, error })?;
        cmd.stdout(Stdio::from(fd));
    }
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe system
    // calls (setpgid, prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setpgid(None, None)?;
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // `run` died before the prctl: nobody would ever send the death signal.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from(rustix::io::Errno::SRCH));
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(inner) => {
            let pgid = Pid::from_raw(inner.id() as i32).expect("a child's pid is positive");
            Ok(Child {
                inner,
                pgid,
                reaped: false,
            })
        }
        Err(error) => {
            let code = if error.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            Err(ExecFailure { code, error })
        }
    }
}

impl Child {
    /// The command's PID, which is also its process group ID.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Sends `sig` to the command's whole process group. A group already gone is no error.
    pub fn signal_group(&self, sig: i32) {
        if let Some(sig) = Signal::from_named_raw(sig) {
            let _ = rustix::process::kill_process_group(self.pgid, sig);
        }
    }

    /// The command's status once it has ended, without blocking. When the leader has ended,
    /// whatever is left of its group is killed with SIGKILL *before* the leader is reaped, so
    /// the group ID cannot have been reused.
    pub fn try_exit(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.reaped {
            return Ok(None);
        }
        let peek = rustix::process::waitid(
            WaitId::Pid(self.pgid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        )?;
        if peek.is_none() {
            return Ok(None);
        }
        self.signal_group(libc::SIGKILL);
        let status = self.inner.wait()?;
        self.reaped = true;
        Ok(Some(status))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(libc::SIGKILL);
            let _ = self.inner.wait();
        }
    }
}

/// Held for as long as `run` supervises a key: an exclusive `flock` on a small file beside the
/// store. The kernel drops it when `run` dies in any way, and it is seen from every PID
/// namespace that sees the file, unlike a PID checked with `kill(pid, 0)`.
///
/// Dropping it removes the file while the lock is still held, so lock files do not pile up; a
/// `run` that locked the file just before it was removed notices that the path no longer names
/// its file and takes the lock again on a new one.
pub struct RunLock {
    /// Closed (and so unlocked) after `drop` has removed the path.
    _file: File,
    path: PathBuf,
    key: String,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RunLock {
    /// Notes in the lock file the process group of the command just started, so that if this
    /// `run` is killed outright, the next `run` of the key ends what the command left behind
    /// (processes it started, which the parent-death signal does not reach).
    pub fn record_group(&mut self, pgid: u32) {
        let Some(group) = Group::of(pgid) else {
            return;
        };
        let key = self.key.clone();
        let _ = self
            ._file
            .set_len(0)
            .and_then(|()| std::io::Seek::rewind(&mut self._file))
            .and_then(|()| writeln!(self._file, "{}\n{key}\n{group}", std::process::id()));
    }
}

/// A process group as a lock file records it: its id, its leader's start time (clock ticks
/// after boot), and the boot and PID namespace it lives in, without which the id means nothing.
struct Group {
    pgid: u32,
    start: u64,
    boot: String,
    pid_ns: u64,
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "group {} {} {} {}",
            self.pgid, self.start, self.boot, self.pid_ns
        )
    }
}

impl Group {
    fn of(pgid: u32) -> Option<Self> {
        Some(Self {
            pgid,
            start: start_ticks(pgid)?,
            boot: boot_id()?,
            pid_ns: pid_namespace()?,
        })
    }

    fn parse(text: &str) -> Option<Self> {
        let line = text.lines().find_map(|l| l.strip_prefix("group "))?;
        let mut parts = line.split_whitespace();
        Some(Self {
            pgid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
            boot: parts.next()?.to_owned(),
            pid_ns: parts.next()?.parse().ok()?,
        })
    }

    // Kills what is left of the group of a `run` that was killed outright. Only in the same
    // boot and PID namespace, and only processes that started no earlier than its leader: a
    // group id reused since then (a new leader with that id) is left alone.
    fn end_leftovers(&self) {
        if boot_id().as_deref() != Some(self.boot.as_str()) || pid_namespace() != Some(self.pid_ns)
        {
            return;
        }
        let leftover = match start_ticks(self.pgid) {
            // The leader itself: still the command of that `run`, or a new process.
            Some(start) => start == self.start,
            None => members(self.pgid).any(|start| start >= self.start),
        };
        if leftover && let Some(pgid) = rustix::process::Pid::from_raw(self.pgid as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

// Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot.
fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid).and_then(|f| f.get(19)?.parse().ok())
}

// The fields of /proc/PID/stat after the command name: state is [0], pgrp [2], starttime [19].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

// The start times of the processes in group `pgid`.
fn members(pgid: u32) -> impl Iterator<Item = u64> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(move |pid| {
            let fields = stat_fields(pid)?;
            (fields.get(2)?.parse::<u32>().ok()? == pgid).then(|| fields.get(19)?.parse().ok())?
        })
}

fn boot_id() -> Option<String> {
    Some(
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()?
            .trim()
            .to_owned(),
    )
}

fn pid_namespace() -> Option<u64> {
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

/// The answer of [`lock_run`].
pub enum Locked {
    /// This `run` now supervises the key.
    Held(RunLock),
    /// Another live `run` holds it: its PID (as it wrote it, in its own PID namespace) if it
    /// has written it yet, and the lock file.
    Busy { pid: Option<u32>, path: PathBuf },
}

/// Takes the run lock of `key` for the store at `store`, without waiting: the file
/// `.<store file name>.run.<16 hex digits>.lock` in the store's directory, the digits a hash
/// (FNV-1a, stable across builds) of the store's file name and the key.
///
/// A lock file this creates gets `mode` (0600, or 0660 beside a group's store), less the umask.
pub fn lock_run(store: &Path, key: &str, mode: u32) -> io::Result<Locked> {
    let path = lock_path(store, key);
    if let Some(dir) = path.parent() {
        // The store's own directory, made as the store would make it: the lock comes first.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    loop {
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            // Never through a symbolic link, nor on anything but a plain file of its own: the
            // lock is truncated and written, perhaps by root in a directory others can write.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)?;
        let meta = file.metadata()?;
        // (No links at all is a file just removed by the `run` that held it: see below.)
        if !meta.is_file() || meta.nlink() > 1 {
            return Err(io::Error::other(format!(
                "{} is not a plain file with one link: remove it",
                path.display()
            )));
        }
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // Removed (by the `run` that held it) between our open and our lock: the lock
                // is on a file nobody else will find. Take it again on the one at the path.
                let here = file.metadata()?;
                match std::fs::metadata(&path) {
                    Ok(there) if (there.dev(), there.ino()) == (here.dev(), here.ino()) => {}
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                // A file left by a `run` killed outright may name its command's group, and
                // whatever that command started may still run: end it before starting anew.
                let mut previous = String::new();
                let _ = file.read_to_string(&mut previous);
                if let Some(group) = Group::parse(&previous) {
                    group.end_leftovers();
                }
                file.set_len(0)?;
                std::io::Seek::rewind(&mut file)?;
                writeln!(file, "{}\n{key}", std::process::id())?;
                return Ok(Locked::Held(RunLock {
                    _file: file,
                    path,
                    key: key.to_owned(),
                }));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.lines().next().and_then(|l| l.trim().parse().ok());
                return Ok(Locked::Busy { pid, path });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn lock_path(store: &Path, key: &str) -> PathBuf {
    let name = store.file_name().unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = name
        .as_encoded_bytes()
        .iter()
        .chain(b"\0")
        .chain(key.as_bytes());
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Keep the name within NAME_MAX whatever the store is called; the hash covers all of it.
    let shown: String = name.to_string_lossy().chars().take(100).collect();
    let dir = store.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    dir.join(format!(".{shown}.run.{hash:016x}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_paths_sit_beside_the_store_and_differ_per_key_and_store() {
        let a = lock_path(Path::new("/s/recovery.redb"), "shared/a@1.0.0");
        assert!(a.starts_with("/s"));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".recovery.redb.run.") && name.ends_with(".lock"));
        assert_ne!(
            a,
            lock_path(Path::new("/s/recovery.redb"), "shared/b@1.0.0")
        );
        assert_ne!(a, lock_path(Path::new("/s/other.redb"), "shared/a@1.0.0"));
        // FNV-1a is fixed: the same key maps to the same file in every build.
        assert_eq!(
            a,
            lock_path(Path::new("/s/recovery.redb"), "shared/a@1.0.0")
        );
        let long = "x".repeat(250);
        let p = lock_path(&Path::new("/s").join(&long), "shared/a@1.0.0");
        assert!(p.file_name().unwrap().len() < 255);
        assert_eq!(
            lock_path(Path::new("r.redb"), "k").parent(),
            Some(Path::new("."))
        );
    }
}
