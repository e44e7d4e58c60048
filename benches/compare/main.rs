//! Side-by-side comparison run:
//! `cargo bench -p recovery-store-benches --bench compare [-- --quick]`.
//!
//! Prints one table of medians and ratios, all measured in this one process (peak RSS in child
//! processes of this same binary): the store against the fsync floor, against SQLite doing the
//! same read-modify-write, and against the in-memory reference. `COMPARE_QUICK=1` or `--quick`
//! shrinks every count; `COMPARE_DIR` picks the directory the files live in (default: a temporary
//! directory under `$TMPDIR`).
//!
//! One module per comparison, run in this order on shared files: `write_path` (a, b),
//! `read_path` (c), `file_ops` (what one call does to the file, and the syncs of every
//! write-side call), `concurrency` (d), `big_store` (e) and `no_change` (f).
//!
//! `cargo test -p recovery-store-benches --benches` runs this binary without `--bench`; it then
//! exits at once.

mod big_store;
mod common;
mod concurrency;
mod counting;
mod file_ops;
mod no_change;
mod read_path;
mod sqlite;
mod table;
mod write_path;

use std::path::Path;

use recovery_store::RecoveryStore;

use crate::common::populate_store;
use crate::table::{Table, cpu_model, fs_type};

/// How much each comparison measures.
pub struct Config {
    quick: bool,
    /// Ops per median (latency rows).
    pub ops: usize,
    /// Entries in the store that reads and many-key writes run against.
    pub entries: usize,
    /// Entries in the big store (open time and RSS).
    pub big: usize,
    /// Decisions per round of the 8-thread rows, and rounds.
    pub mt_ops: usize,
    pub mt_rounds: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        big_store::child(&args[1..]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without `--bench`: do nothing there.
        return;
    }
    let quick = args.iter().any(|a| a == "--quick") || std::env::var_os("COMPARE_QUICK").is_some();
    let cfg = if quick {
        Config {
            quick,
            ops: 200,
            entries: 10_000,
            big: 100_000,
            mt_ops: 400,
            mt_rounds: 1,
        }
    } else {
        Config {
            quick,
            ops: 1_000,
            entries: 10_000,
            big: 1_000_000,
            mt_ops: 2_000,
            mt_rounds: 3,
        }
    };
    let dir = match std::env::var_os("COMPARE_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    run(&cfg, dir.path());
}

fn run(cfg: &Config, dir: &Path) {
    let mut t = Table::default();
    eprintln!("compare: working in {} ...", dir.display());

    // One store and one SQLite database of `cfg.entries` entries serve (a) to (c).
    let store_path = dir.join("store.redb");
    let store = RecoveryStore::open(&store_path).expect("open store");
    populate_store(&store, cfg.entries);
    let sql_path = dir.join("sqlite.db");
    let sql = sqlite::open(&sql_path);
    sqlite::populate(&sql, cfg.entries);

    write_path::run(cfg, dir, &store, &sql, &mut t);
    read_path::run(cfg, dir, &store, &sql, &mut t);
    drop(sql);
    file_ops::run(cfg, dir, &mut t);
    concurrency::run(cfg, dir, &mut t);
    drop(store);
    big_store::run(cfg, dir, &store_path, &mut t);
    no_change::run(cfg, &store_path, &mut t);

    println!();
    println!(
        "recovery-store compare{}: {} ops per latency median; files in {} ({})",
        if cfg.quick { " (quick)" } else { "" },
        cfg.ops,
        dir.display(),
        fs_type(dir)
    );
    println!(
        "machine: {} x {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    t.print();
}
