//! The store at scale, through the real CLI binary and real processes:
//! `cargo bench -p recovery-store-benches --bench scale`.
//!
//! - `list`, `list --refused`, `--json list`, `export`, `check` and `metrics` (the default
//!   series cap, and every backend) of the `recovery-store` binary: wall time and peak RSS
//!   (`ru_maxrss` from `wait4` on the child).
//! - The longest single `record_crash` wait in another process while the CLI's `prune` and
//!   `reset --all --yes` run, against the same writer with no command running.
//! - The first open after a writer was killed with SIGKILL: time and peak RSS, read-write and
//!   read-only through the library, and `status` through the CLI, against a clean open.
//! - The `fdatasync`s each CLI write command makes, counted with `strace -f` when it is there.
//!
//! Entries: 100,000 by default, `SCALE_FULL=1` for 1,000,000, `SCALE_ENTRIES=N` for any other
//! count. `SCALE_DIR` picks the directory the files live in (default: a temporary directory
//! under `$TMPDIR`). The binary measured is `RECOVERY_STORE_BIN`, else the workspace's
//! `recovery-store`, built in release mode by this bench before it starts.
//!
//! `cargo test -p recovery-store-benches --benches` runs this binary without `--bench`; it then
//! exits at once.

#[allow(dead_code)]
#[path = "../compare/common.rs"]
mod common;
mod crash_open;
mod measure;
mod stall;
mod syncs;
#[allow(dead_code)]
#[path = "../compare/table.rs"]
mod table;

use std::path::{Path, PathBuf};
use std::process::Command;

use recovery_store::{BackendKey, DEFAULT_CACHE_SIZE, RecoveryStore};

use crate::common::{BUILD_BATCH, at_secs};
use crate::measure::{Measured, measure};
use crate::table::{Table, cpu_model, fmt, fs_type};

/// What every measurement needs: the binary, the directory and a clean store of `entries`.
pub struct Setup {
    /// The `recovery-store` binary.
    pub cli: PathBuf,
    pub dir: PathBuf,
    pub entries: usize,
    /// A cleanly closed store of `entries` entries, never written after it was built; copied
    /// for every measurement that changes its file.
    pub template: PathBuf,
}

impl Setup {
    /// A fresh copy of the template at `dir/name`.
    pub fn copy(&self, name: &str) -> PathBuf {
        copy_synced(&self.template, &self.dir.join(name))
    }

    /// `recovery-store --db PATH ARGS...`, stdout discarded.
    pub fn cli(&self, db: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli);
        cmd.arg("--db").arg(db).args(args);
        cmd
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without `--bench`: do nothing there.
        return;
    }
    let entries = match std::env::var("SCALE_ENTRIES") {
        Ok(n) => n.parse().expect("SCALE_ENTRIES: a number of entries"),
        Err(_) if std::env::var_os("SCALE_FULL").is_some() => 1_000_000,
        Err(_) => 100_000,
    };
    let dir = match std::env::var_os("SCALE_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let cli = measure::cli_binary();
    let template = dir.path().join("template.redb");
    eprintln!(
        "scale: building {entries} entries in {} ...",
        template.display()
    );
    // Built in a child: a child's ru_maxrss starts from its parent's RSS at fork, so this
    // process stays small and opens no big store itself.
    build_in_child(&template, entries);
    let setup = Setup {
        cli,
        dir: dir.path().to_owned(),
        entries,
        template,
    };
    run(&setup);
}

/// The `i`th key of the big store, as brokers write them: with a 64-digit executable hash.
pub fn hashed_key(i: usize) -> BackendKey {
    let mut x = i as u64;
    let hash: String = (0..4)
        .map(|_| {
            // splitmix64: distinct, evenly spread digits.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            format!("{:016x}", z ^ (z >> 31))
        })
        .collect();
    format!("shared/svc-{i:07}@1.0.0#{hash}")
        .parse()
        .expect("valid key")
}

/// A store at `path` of `n` entries (`hashed_key(0..n)`), one crash each at times spread over
/// 1,000 s, cleanly closed.
fn build(path: &Path, n: usize) {
    let store = RecoveryStore::open(path).expect("open template");
    let mut batch = Vec::with_capacity(BUILD_BATCH);
    for i in 0..n {
        batch.push((hashed_key(i), at_secs(i as i64 % 1_000)));
        if batch.len() == BUILD_BATCH || i + 1 == n {
            store.record_crashes(&batch).expect("record_crashes");
            batch.clear();
        }
    }
}

/// Copies `from` to `to` and syncs the copy: a store that has been on disk a while has no
/// dirty pages, and the first sync of a fresh copy would otherwise land on whatever measures it.
pub fn copy_synced(from: &Path, to: &Path) -> PathBuf {
    std::fs::copy(from, to).expect("copy a store");
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .expect("sync the copy");
    to.to_owned()
}

/// `build(path, n)` in a child process of this binary.
fn build_in_child(path: &Path, n: usize) {
    let exe = std::env::current_exe().expect("current exe");
    let status = Command::new(exe)
        .args(["--child", "build"])
        .arg(path)
        .arg(n.to_string())
        .status()
        .expect("run the build child");
    assert!(status.success(), "building {} failed", path.display());
}

fn run(s: &Setup) {
    let mut t = Table::default();
    let limit = (DEFAULT_CACHE_SIZE as u64 >> 10) + (64 << 10);
    let size = std::fs::metadata(&s.template).map_or(0, |m| m.len());

    eprintln!("scale: list, --json list, export, check ...");
    let small = s.dir.join("small.redb");
    build_in_child(&small, 0);
    let floor = measure(Command::new("true"));
    let baseline = measure(s.cli(&small, &["list"]));
    let db = &s.template;
    let rows = [
        ("list", measure(s.cli(db, &["list"]))),
        (
            "list --refused (prints nothing)",
            measure(s.cli(db, &["list", "--refused"])),
        ),
        ("--json list", measure(s.cli(db, &["--json", "list"]))),
        ("export", measure(s.cli(db, &["export"]))),
        ("check", measure(s.cli(db, &["check"]))),
        (
            "metrics (default --max-series 100000)",
            measure(s.cli(db, &["metrics"])),
        ),
        (
            "metrics --max-series all",
            measure(s.cli(db, &["metrics", "--max-series", "100000000"])),
        ),
    ];
    t.section(&format!(
        "(a) CLI reads of {} entries ({:.1} MiB file): wall time and peak RSS (wait4 ru_maxrss)",
        s.entries,
        size as f64 / (1 << 20) as f64
    ));
    t.text(&rss_line(
        "true (the floor: RSS inherited at fork)",
        &floor,
        None,
    ));
    t.text(&rss_line(
        "list of an empty store (baseline)",
        &baseline,
        None,
    ));
    for (what, m) in &rows {
        t.text(&rss_line(what, m, Some(&baseline)));
        t.target(
            &format!("  target: peak <= cache + 64 MiB = {limit} KiB"),
            m.ok() && m.maxrss_kib <= limit,
        );
    }

    eprintln!("scale: record_crash waits behind prune and reset --all ...");
    let stalls = stall::run(s);
    t.section(&format!(
        "(b) the longest single record_crash in another process while a CLI command runs on {} \
         entries",
        s.entries
    ));
    for line in stalls {
        t.text(&line);
    }

    eprintln!("scale: first open after kill -9 ...");
    let opens = crash_open::run(s);
    t.section(&format!(
        "(c) the first open after a writer was killed with SIGKILL, {} entries",
        s.entries
    ));
    for (what, m, open) in &opens {
        let mut line = rss_line(what, m, None);
        if let Some(open) = open {
            line += &format!("  (open itself {})", fmt(*open));
        }
        t.text(&line);
        if what.contains("kill -9") {
            t.target(
                &format!("  target: peak <= cache + 64 MiB = {limit} KiB"),
                m.ok() && m.maxrss_kib <= limit,
            );
        }
    }

    eprintln!("scale: fdatasyncs per CLI write command ...");
    t.section("(d) fdatasync calls per CLI write command (strace -f), on a store of 1,000 entries");
    for line in syncs::run(s) {
        t.text(&line);
    }

    println!();
    println!(
        "recovery-store scale: {} entries with hashed keys (built in record_crashes batches of \
         {BUILD_BATCH}); binary {}; files in {} ({})",
        s.entries,
        s.cli.display(),
        s.dir.display(),
        fs_type(&s.dir)
    );
    println!(
        "machine: {} x {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    t.print();
}

/// `what`: time, peak RSS and, against `base`, their ratios; or how it failed.
fn rss_line(what: &str, m: &Measured, base: Option<&Measured>) -> String {
    let mut line = format!(
        "{what:<46} {:>10}  {:>8} KiB peak RSS",
        fmt(m.elapsed),
        m.maxrss_kib
    );
    if let Some(base) = base {
        line += &format!(
            "  {:>7.1}x the baseline's RSS",
            m.maxrss_kib as f64 / base.maxrss_kib as f64
        );
    }
    if !m.ok() {
        line += &format!("  FAILED ({}): {}", m.status, m.stderr_line());
    }
    line
}

/// The child side, `--child MODE ARGS...`: see `stall::writer` and `crash_open::child`.
fn child(args: &[String]) {
    match args.first().map(String::as_str) {
        Some("build") => build(Path::new(&args[1]), args[2].parse().expect("count")),
        Some("writer") => stall::writer(Path::new(&args[1])),
        Some("crash-writer") => crash_open::crash_writer(Path::new(&args[1])),
        Some("open") => crash_open::child(Path::new(&args[1]), &args[2]),
        other => panic!("unknown child mode {other:?}"),
    }
}
