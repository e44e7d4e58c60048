//! The `recovery-store` binary, run for real: every command, its `--json` schema (parsed into
//! `deny_unknown_fields` structs), pinned human output, every error path, and `run` against
//! real child processes. Times are pinned with the hidden `--now` option where output shows them.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::util::{TempStore, bin};

mod audit;
mod crash_detail;
mod damaged_rows;
mod diagnose;
mod drop_damaged;
mod files;
mod inspect;
mod listing;
mod lookup_damaged;
mod metrics;
mod operator;
mod overrides;
mod resilience;
mod run;
mod run_lock;
mod run_signals;
mod run_store;
mod schema;
mod transfer;
mod transfer_v2;
mod unjudged;
mod write;

use schema::*;

/// A temporary store and a way to run the CLI against it.
struct Cli {
    tmp: TempStore,
}

impl Cli {
    fn new() -> Self {
        Self {
            tmp: TempStore::new(),
        }
    }

    fn path(&self) -> &Path {
        &self.tmp.path
    }

    fn cmd(&self, args: &[&str]) -> Command {
        command(self.path(), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run recovery-store")
    }

    /// Runs and asserts the exit code; returns stdout.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    fn ok(&self, args: &[&str]) -> String {
        self.expect(0, args)
    }

    /// `policy set` with both durations, e.g. a fast policy for `run` tests.
    fn set_policy(&self, retry_backoff: &str, budget_window: &str) {
        self.ok(&[
            "policy",
            "set",
            "--retry-backoff",
            retry_backoff,
            "--budget-window",
            budget_window,
        ]);
    }

    /// Runs with `--json`, asserts the exit code, parses the one document on stdout.
    fn json<T: DeserializeOwned>(&self, code: i32, args: &[&str]) -> T {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.expect(code, &all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
    }
}

fn command(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("RECOVERY_STORE_DB")
        .stdin(Stdio::null());
    cmd
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a clean one-line error: exit 2, `recovery-store: ` prefix, no panic or debug dump.
fn assert_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    assert!(err.starts_with("recovery-store: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty(), "{}", describe(out));
}

const T0: &str = "2026-01-01T00:00:00Z";

fn at(rfc3339: &str) -> Vec<String> {
    vec!["--now".into(), rfc3339.into()]
}

/// `--now T record-crash KEY` and friends.
fn with_now<'a>(now: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    now.iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect()
}

/// Three backends at T0 + 5 s: one refused, one recovering, one whose window ended.
fn populated() -> Cli {
    let cli = Cli::new();
    let crash = |now: &str, key: &str, code: i32| {
        let now = at(now);
        cli.expect(code, &with_now(&now, &["record-crash", key]));
    };
    crash("2025-12-31T23:59:00Z", "explicit:ci/old@1.0.0", 0);
    crash(T0, "shared/demo@1.0.0", 0);
    crash("2026-01-01T00:00:01Z", "shared/demo@1.0.0", 1);
    crash("2026-01-01T00:00:02Z", "private:svc/svc@1.0.0#9f2c", 0);
    cli
}

const T5: &str = "2026-01-01T00:00:05Z";

/// Polls `done` until it holds; the deadline is generous for a loaded machine.
fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}
