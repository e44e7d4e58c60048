//! The first open after `kill -9`, at scale, in both kinds of recovery:
//! `cargo bench -p recovery-store-benches --bench recovery`.
//!
//! Builds a store of `RECOVERY_STORE_BENCH_ENTRIES` entries (default 1,000,000), has a writer
//! process open it and die by SIGKILL, then runs the CLI against copies of the file it left:
//! a read-only `status` (answered from a repaired in-memory view) and a writable `record-crash`
//! (checked on that view, then repaired in place), plus a `status` on the repaired file for
//! comparison. Each row is one child process: its wall time and peak RSS (from `wait4`).
//! `RECOVERY_STORE_BIN=PATH` measures another build of the CLI (e.g. an older one).
//!
//! Two kinds of dirty file: a store writer killed mid-write (its commits record redb's
//! allocator state, so recovery loads it: the usual case), and a file whose last commit came
//! from redb's single-writer mode, which records none, so recovery walks every page (a full
//! repair, the worst case). `scale` measures the first, through the library as well.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use recovery_store::{BackendKey, RecoveryStore, Timestamp};

#[path = "scale/measure.rs"]
#[allow(dead_code)]
mod measure;

const WRITER_VAR: &str = "RECOVERY_STORE_BENCH_WRITER";
const FULL_REPAIR_VAR: &str = "RECOVERY_STORE_BENCH_FULL_REPAIR";
const BATCH: usize = 10_000;
const KEY: &str = "shared/svc-0000000@1.0.0";

fn key(i: usize) -> BackendKey {
    format!("shared/svc-{i:07}@1.0.0")
        .parse()
        .expect("valid key")
}

fn main() {
    if let Some(path) = std::env::var_os(WRITER_VAR) {
        if std::env::var_os(FULL_REPAIR_VAR).is_some() {
            return writer_without_allocator_state(Path::new(&path));
        }
        return writer(Path::new(&path));
    }
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches` runs bench binaries without `--bench`
    }
    let entries: usize = std::env::var("RECOVERY_STORE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let cli = measure::cli_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let clean = dir.path().join("clean.redb");
    let built = Instant::now();
    build(&clean, entries);
    let size = std::fs::metadata(&clean).expect("stat").len();
    eprintln!(
        "built {entries} entries ({:.1} MiB) in {:.1?}",
        size as f64 / (1 << 20) as f64,
        built.elapsed()
    );
    let mib = size as f64 / (1 << 20) as f64;
    println!(
        "| first open after kill -9, {entries} entries ({mib:.0} MiB) | wall time | peak RSS |"
    );
    println!("| --- | --- | --- |");
    for (scenario, full_repair) in [("killed mid-write", false), ("full repair", true)] {
        let dirty = dir.path().join("dirty.redb");
        std::fs::copy(&clean, &dirty).expect("copy");
        kill_a_writer(&dirty, full_repair);
        for (what, args) in [
            ("`status` (read-only: repaired view)", &["status", KEY][..]),
            (
                "`record-crash` (writable: checked view, then repair)",
                &["record-crash", KEY][..],
            ),
        ] {
            let copy = dir.path().join("copy.redb");
            std::fs::copy(&dirty, &copy).expect("copy");
            let (time, rss) = measure(&cli, &copy, args);
            println!(
                "| {scenario}: {what} | {time:.2?} | {:.1} MiB |",
                rss as f64 / 1024.0
            );
            if args[0] == "record-crash" {
                let (time, rss) = measure(&cli, &copy, &["status", KEY]);
                println!(
                    "| {scenario}: `status` after the repair (clean open) | {time:.2?} | {:.1} MiB |",
                    rss as f64 / 1024.0
                );
            }
            std::fs::remove_file(&copy).expect("remove");
        }
    }
}

/// A store with `n` entries, one crash each.
fn build(path: &Path, n: usize) {
    let store = RecoveryStore::open(path).expect("open");
    let base = Timestamp::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..n {
        batch.push((key(i), base));
        if batch.len() == BATCH || i + 1 == n {
            store.record_crashes(&batch).expect("record_crashes");
            batch.clear();
        }
    }
}

// The writer child: opens the store, says so, and commits batches of 10,000 crashes until it is
// killed, so the kill lands inside a write transaction or a commit.
fn writer(path: &Path) {
    let store = RecoveryStore::open(path).expect("writer open");
    println!("ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    while Instant::now() < deadline {
        let batch: Vec<_> = (0..BATCH)
            .map(|i| (key(round * BATCH + i), Timestamp::now()))
            .collect();
        store.record_crashes(&batch).expect("writer commit");
        round = (round + 1) % 100;
    }
}

// The writer child of the worst case: another program's last commit, through redb in its
// single-writer mode, recorded no allocator state, so recovery must walk every page (a full
// repair). The store's own commits always record it.
fn writer_without_allocator_state(path: &Path) {
    let db = redb::Database::open(path).expect("writer open");
    let txn = db.begin_write().expect("begin");
    {
        let scratch: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("scratch");
        let mut table = txn.open_table(scratch).expect("table");
        table
            .insert(b"k".as_slice(), b"v".as_slice())
            .expect("insert");
    }
    txn.commit().expect("commit");
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

// Leaves `path` as a writer killed with SIGKILL leaves it: needing crash recovery.
fn kill_a_writer(path: &Path, full_repair: bool) {
    let mut writer = Command::new(std::env::current_exe().expect("bench binary"));
    if full_repair {
        writer.env(FULL_REPAIR_VAR, "1");
    }
    let mut child = writer
        .env(WRITER_VAR, path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), "ready", "writer did not start");
    std::thread::sleep(Duration::from_millis(700));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

// Runs the CLI once; its wall time and peak RSS in KiB.
fn measure(cli: &Path, db: &Path, args: &[&str]) -> (Duration, u64) {
    let mut cmd = Command::new(cli);
    cmd.arg("--db").arg(db).args(args);
    let m = measure::measure(cmd);
    assert!(m.ok(), "{args:?} failed: {}", m.stderr_line());
    (m.elapsed, m.maxrss_kib)
}
