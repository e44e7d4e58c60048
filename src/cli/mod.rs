//! The `recovery-store` command: argument types, renderers and the commands themselves. It
//! reaches the library only through `recovery_store`'s public API.

mod args;
mod check;
mod commands;
mod fail;
mod json;
mod ledger;
mod process;
mod render;
mod sanitize;
mod supervise;
mod transfer;
mod view;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::Parser;
use recovery_store::{RecoveryStore, StoreError, StoreOptions, Timestamp};

pub use fail::{exit, install_panic_hook, internal_error};

use args::Cli;
use sanitize::sanitize_lossy;

/// Exit status for a negative answer: refused, or problems found.
const NEGATIVE: u8 = 1;
/// Exit status when `run` was refused (EX_TEMPFAIL).
const TEMPFAIL: u8 = 75;

/// Parses the command line and runs one command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return Ok(fail::usage(&err)),
    };
    let ctx = Ctx {
        path: store_path(cli.db)?,
        json: cli.json,
        now: cli.now,
    };
    let mut out = io::stdout().lock();
    let code = commands::dispatch(&ctx, cli.command, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// What every command needs: where the store is, how to print, and what time it is.
pub struct Ctx {
    pub path: PathBuf,
    pub json: bool,
    now: Option<SystemTime>,
}

impl Ctx {
    /// The current time, or the hidden `--now` override used by tests.
    pub fn now(&self) -> Timestamp {
        match self.now {
            Some(wall) => Timestamp::from_wall(wall),
            None => Timestamp::now(),
        }
    }

    /// The store path, safe to print.
    pub fn shown_path(&self) -> String {
        sanitize_lossy(&self.path)
    }

    /// Opens the store for a read command: a missing file is an error and is not created, and
    /// the file is never written (unless redb must first recover it from an unclean shutdown).
    pub fn open_read(&self) -> anyhow::Result<RecoveryStore> {
        self.open(StoreOptions::default().read_only(true))
    }

    /// Opens an existing store writably without creating one: `check`, whose integrity check
    /// may repair the file.
    pub fn open_existing(&self) -> anyhow::Result<RecoveryStore> {
        self.open(StoreOptions::default().create_if_missing(false))
    }

    /// Opens the store for a write command, creating it when missing.
    pub fn open_write(&self) -> anyhow::Result<RecoveryStore> {
        self.open(StoreOptions::default())
    }

    fn open(&self, options: StoreOptions) -> anyhow::Result<RecoveryStore> {
        RecoveryStore::open_with(&self.path, options).map_err(|err| match err {
            StoreError::NotFound { .. } => anyhow::anyhow!(
                "no recovery store at {}: check --db or RECOVERY_STORE_DB; \
                 write commands (record-crash, run, import, policy set) create it",
                self.shown_path()
            ),
            other => anyhow::Error::new(other),
        })
    }
}

/// `--db`, else `$RECOVERY_STORE_DB` (both via clap), else the XDG state directory.
fn store_path(db: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = db.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(path);
    }
    let tail = Path::new("recovery-store").join("recovery.redb");
    // The XDG spec says to ignore relative values.
    if let Some(state) = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(state.join(tail));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no store path (HOME is not set): pass --db PATH or set RECOVERY_STORE_DB")?;
    Ok(PathBuf::from(home).join(".local/state").join(tail))
}
