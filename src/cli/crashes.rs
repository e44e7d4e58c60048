//! How a backend's crash history is shown: the `LAST EXIT` cell of `list`, the history table of
//! `show`, and the `history` JSON of `show --json`.

use std::io::{self, Write};

use recovery_store::{CrashRecord, Timestamp};
use serde::Serialize;

use super::json::Time;
use super::view::{relative, rfc3339};

/// How a crash ended, in a few characters (`list`'s `LAST EXIT` cell, `show`'s `EXIT`): `code 3`, `SIGKILL` (`signal 40` for one without a
/// name), or `-` when it is not known.
pub fn exit_text(crash: &CrashRecord) -> String {
    match (crash.exit_code, crash.signal) {
        (_, Some(signal)) => {
            signal_name(signal).map_or_else(|| format!("signal {signal}"), str::to_owned)
        }
        (Some(code), None) => format!("code {code}"),
        (None, None) => "-".to_owned(),
    }
}

// The standard Linux signal names (signal(7)), by number.
fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    let index = usize::try_from(signal).ok()?.checked_sub(1)?;
    NAMES.get(index).copied()
}

/// `show`'s history table, newest last: time (absolute and relative), how it ended, and the
/// recording PID. Nothing when there is no history.
pub fn table(out: &mut impl Write, history: &[CrashRecord], now: &Timestamp) -> io::Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let rows: Vec<[String; 3]> = history
        .iter()
        .map(|c| {
            [
                format!("{} ({})", rfc3339(&c.at, true), relative(&c.at, now)),
                exit_text(c),
                c.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            ]
        })
        .collect();
    let headers = ["TIME", "EXIT", "PID"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    writeln!(out, "crash history (last {}, oldest first):", history.len())?;
    let line = |out: &mut dyn Write, cells: [&str; 3]| {
        writeln!(
            out,
            "  {:<w0$}  {:<w1$}  {}",
            cells[0],
            cells[1],
            cells[2],
            w0 = widths[0],
            w1 = widths[1]
        )
    };
    line(out, headers)?;
    for row in &rows {
        line(out, [&row[0], &row[1], &row[2]])?;
    }
    Ok(())
}

/// One crash of `show --json`'s `entry.history`.
#[derive(Debug, Serialize)]
pub struct CrashJson {
    pub at: Time,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
}

impl CrashJson {
    pub fn of(crash: &CrashRecord) -> Self {
        Self {
            at: Time::of(&crash.at),
            exit_code: crash.exit_code,
            signal: crash.signal,
            pid: crash.pid,
            uid: crash.uid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recovery_store::CrashReport;

    fn crash(exit_code: Option<i32>, signal: Option<i32>) -> CrashRecord {
        CrashRecord::new(
            Timestamp::from_parts(0, None),
            CrashReport { exit_code, signal },
            None,
            None,
        )
    }

    #[test]
    fn exits_read_as_operators_write_them() {
        assert_eq!(exit_text(&crash(Some(3), None)), "code 3");
        assert_eq!(exit_text(&crash(None, Some(9))), "SIGKILL");
        assert_eq!(exit_text(&crash(None, Some(15))), "SIGTERM");
        assert_eq!(exit_text(&crash(None, Some(40))), "signal 40");
        assert_eq!(exit_text(&crash(None, None)), "-");
    }
}
