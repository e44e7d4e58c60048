//! The `recovery-store` command: argument types, renderers and the commands themselves. It
//! reaches the library only through `recovery_store`'s public API.

mod args;
mod audit;
mod check;
mod commands;
mod crashes;
mod exposition;
mod fail;
mod json;
mod ledger;
mod list;
mod locate;
mod lookup;
mod metrics;
mod policy_cmd;
mod process;
mod prune;
mod render;
mod reset;
mod salvage;
mod sanitize;
mod supervise;
mod textfile;
mod transfer;
mod view;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

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
    let (path, source) = locate::resolve(cli.db)?;
    let ctx = Ctx {
        path,
        source,
        json: cli.json,
        now: cli.now,
        trust_owner: cli.trust_owner,
        mode: cli.mode,
        lock_timeout: cli.lock_timeout,
    };
    let mut out = io::stdout().lock();
    let code = commands::dispatch(&ctx, cli.command, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// What every command needs: where the store is, how to print, and what time it is.
pub struct Ctx {
    pub path: PathBuf,
    /// How `path` was chosen.
    pub source: locate::Source,
    pub json: bool,
    now: Option<SystemTime>,
    trust_owner: bool,
    mode: Option<u32>,
    lock_timeout: std::time::Duration,
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
    /// the file is never written, even after an unclean shutdown.
    pub fn open_read(&self) -> anyhow::Result<RecoveryStore> {
        self.open(StoreOptions::default().read_only(true))
    }

    /// Opens an existing store writably without creating one: `check`, `reset`, `prune` and
    /// `record-success`, which have nothing to do on a store that does not exist.
    pub fn open_existing(&self) -> anyhow::Result<RecoveryStore> {
        self.open(StoreOptions::default().create_if_missing(false))
    }

    /// Opens the store for a command that records something, creating it when missing and
    /// saying so on stderr: "created a new store at PATH".
    pub fn open_create(&self) -> anyhow::Result<RecoveryStore> {
        self.open_create_with(StoreOptions::default())
    }

    /// [`open_create`](Self::open_create) with options, e.g. the policy a new store starts
    /// with.
    pub fn open_create_with(&self, options: StoreOptions) -> anyhow::Result<RecoveryStore> {
        let existed = self.exists();
        let store = self.open(options)?;
        if !existed && self.exists() {
            eprintln!(
                "recovery-store: created a new store at {}",
                self.shown_path()
            );
        }
        Ok(store)
    }

    /// True when something is at the store path (the open decides whether it is a store).
    pub fn exists(&self) -> bool {
        self.path.symlink_metadata().is_ok()
    }

    fn open(&self, options: StoreOptions) -> anyhow::Result<RecoveryStore> {
        let options = options.trust_any_owner(self.trust_owner);
        let options = match self.mode {
            Some(mode) => options.mode(mode),
            None => options,
        };
        let options = options.lock_timeout(self.lock_timeout);
        RecoveryStore::open_with(&self.path, options).map_err(|err| match err {
            StoreError::NotFound { .. } => self.not_found(),
            other => anyhow::Error::new(other),
        })
    }

    /// The error for a missing store: how the path was chosen, and what creates one.
    pub fn not_found(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "no recovery store at {} (from {}): check --db or RECOVERY_STORE_DB \
             (`recovery-store path` shows the choice); only record-crash, run, import and \
             policy set create a store",
            self.shown_path(),
            self.source.describe()
        )
    }
}
