//! (e) the big store: open time and peak RSS, the latter in child processes of this same
//! binary (`--child MODE ...`), so that it means something.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use recovery_store::{DEFAULT_CACHE_SIZE, RecoveryStore};

use crate::Config;
use crate::common::{BUILD_BATCH, at_secs, key, median, path_str, populate_store};
use crate::table::Table;

/// Adds section (e) to `t`; `small` is the store of `cfg.entries` entries, closed.
pub fn run(cfg: &Config, dir: &Path, small: &Path, t: &mut Table) {
    let big_path = dir.join("big.redb");
    let built = child_run(&["build", path_str(&big_path), &cfg.big.to_string()]);
    let open_small = open_median(small, 21);
    let open_big = open_median(&big_path, 21);
    let idle = child_run(&["idle"]);
    let used = child_run(&["use", path_str(&big_path), &cfg.big.to_string()]);
    let size = std::fs::metadata(&big_path).map(|m| m.len()).unwrap_or(0);
    let limit = (DEFAULT_CACHE_SIZE as u64 >> 10) + (64 << 10);
    t.section(&format!(
        "(e) the big store: {} entries, {:.1} MiB file",
        cfg.big,
        size as f64 / (1 << 20) as f64
    ));
    t.row(
        &format!("open, cleanly closed, {} entries", cfg.entries),
        open_small,
        None,
    );
    t.row(
        &format!("open, cleanly closed, {} entries", cfg.big),
        open_big,
        None,
    );
    t.target("  target: <= 10 ms", open_big <= Duration::from_millis(10));
    t.text(&format!(
        "peak RSS, bare child process               {:>8} KiB",
        idle.hwm_kib
    ));
    t.text(&format!(
        "peak RSS, open + {} status + {} record_crash  {:>8} KiB  (open took {:?} cold in the child)",
        used.reads, used.writes, used.hwm_kib, used.open
    ));
    t.target(
        &format!(
            "  target: <= cache {} KiB + 64 MiB = {limit} KiB",
            DEFAULT_CACHE_SIZE >> 10
        ),
        used.hwm_kib <= limit,
    );
    t.text(&format!(
        "peak RSS, building it in record_crashes batches of {BUILD_BATCH}  {:>8} KiB  (took {:?})",
        built.hwm_kib, built.open
    ));
}

/// The median time of `reps` opens of a cleanly closed store.
fn open_median(path: &Path, reps: usize) -> Duration {
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        let store = RecoveryStore::open(path).expect("open");
        times.push(start.elapsed());
        drop(store);
    }
    median(&mut times)
}

/// What a child process reports: its peak RSS, a time, and the calls it made.
struct ChildReport {
    hwm_kib: u64,
    open: Duration,
    reads: usize,
    writes: usize,
}

fn child_run(args: &[&str]) -> ChildReport {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.parse().ok())
            .unwrap_or(0)
    };
    ChildReport {
        hwm_kib: field("hwm_kib="),
        open: Duration::from_nanos(field("nanos=")),
        reads: field("reads=") as usize,
        writes: field("writes=") as usize,
    }
}

/// The child side: `idle`, `build PATH N` or `use PATH N`; prints one line of `name=value`.
pub fn child(args: &[String]) {
    let report = |nanos: u128, reads: usize, writes: usize| {
        println!(
            "hwm_kib={} nanos={nanos} reads={reads} writes={writes}",
            vm_hwm_kib()
        );
    };
    match args.first().map(String::as_str) {
        Some("idle") => report(0, 0, 0),
        Some("build") => {
            let path = PathBuf::from(&args[1]);
            let n: usize = args[2].parse().expect("count");
            let start = Instant::now();
            let store = RecoveryStore::open(&path).expect("open");
            populate_store(&store, n);
            drop(store);
            report(start.elapsed().as_nanos(), 0, n);
        }
        Some("use") => {
            let path = PathBuf::from(&args[1]);
            let n: usize = args[2].parse().expect("count");
            let start = Instant::now();
            let store = RecoveryStore::open(&path).expect("open");
            let open = start.elapsed();
            let (reads, writes) = (100_000, 100);
            let now = at_secs(5_000);
            for j in 0..reads {
                let k = key(j * 7919 % n);
                std::hint::black_box(store.status(&k, now).expect("status"));
            }
            for j in 0..writes {
                let k = key(j * 104_729 % n);
                store.record_crash(&k, now).expect("record_crash");
            }
            report(open.as_nanos(), reads, writes);
        }
        other => panic!("unknown child mode {other:?}"),
    }
}

/// This process's peak RSS (VmHWM), in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
