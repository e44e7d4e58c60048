//! How `run` ends: each outcome, and the exit status and `--json` summary it gives.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::view::millis;
use crate::cli::{Ctx, TEMPFAIL, json};

/// How `run` ends.
pub(super) enum End {
    /// The command exited 0 without being asked to stop.
    Exited,
    /// Stopped on request (a signal): exit with this status; nothing recorded.
    Stopped(u8),
    /// Refused, with this long until the window ends.
    Refused(Duration),
    /// The command could not be started (126 or 127).
    ExecFailed(u8),
    /// Another live `run` supervises this key.
    Duplicate,
}

pub(super) fn finish(
    ctx: &Ctx,
    out: &mut impl Write,
    key: &str,
    end: End,
    starts: u32,
    crashes: u32,
) -> anyhow::Result<ExitCode> {
    let (outcome, code, retry_after) = match end {
        End::Exited => (json::Outcome::Exited, 0, None),
        End::Stopped(code) => (json::Outcome::Interrupted, code, None),
        End::Refused(wait) => (json::Outcome::Refused, TEMPFAIL, Some(millis(wait))),
        End::ExecFailed(code) => (json::Outcome::ExecFailed, code, None),
        End::Duplicate => (json::Outcome::Duplicate, TEMPFAIL, None),
    };
    if ctx.json {
        json::emit(
            out,
            &json::Run {
                key: key.to_owned(),
                outcome,
                exit_code: code,
                starts,
                crashes,
                retry_after_ms: retry_after,
            },
        )?;
    }
    Ok(ExitCode::from(code))
}
