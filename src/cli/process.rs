//! The OS plumbing of `run`, apart from its supervision policy: the child in its own process
//! group with a parent-death signal, signal delivery through a self-pipe, waits that block
//! instead of polling, and the per-key run lock (in `run_lock`, with what a `run` killed
//! outright leaves behind in `leftovers`).
//!
//! The command runs in a process group of its own (as `tini -g` does), so a signal sent to
//! `run`'s group (a terminal's Ctrl-C, GNU `timeout`, `kill -- -PGID`) reaches `run` only,
//! and `run` forwards it to the command's group once.

use std::ffi::OsString;
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use signal_hook::consts::signal::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

mod leftovers;
mod run_lock;
pub use run_lock::{Locked, RunLock, lock_run};

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
