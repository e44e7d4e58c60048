//! What a `run` killed outright may leave behind: its command's process group, as the run lock
//! file records it, and how the next `run` of the key ends what is left of that group.

use std::os::unix::fs::MetadataExt as _;

/// A process group as a lock file records it: its id, its leader's start time (clock ticks
/// after boot), and the boot and PID namespace it lives in, without which the id means nothing.
pub(super) struct Group {
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
    pub(super) fn of(pgid: u32) -> Option<Self> {
        Some(Self {
            pgid,
            start: start_ticks(pgid)?,
            boot: boot_id()?,
            pid_ns: pid_namespace()?,
        })
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
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
    pub(super) fn end_leftovers(&self) {
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
