//! The first open after a writer died with SIGKILL: its time and peak RSS, through the
//! library (read-write and read-only, in a child of this binary) and through the CLI's
//! `status`, against the same open of a cleanly closed copy.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use recovery_store::{RecoveryStore, StoreOptions, Timestamp};

use crate::common::at_secs;
use crate::hashed_key;
use crate::measure::{Measured, measure, measure_output};
use crate::{Setup, copy_synced};

/// Rows: what, how the child went, and the open's own time where the child reports it.
pub fn run(s: &Setup) -> Vec<(String, Measured, Option<Duration>)> {
    let crashed = s.copy("crashed.redb");
    let exe = std::env::current_exe().expect("current exe");
    let mut writer = Command::new(&exe)
        .args(["--child", "crash-writer"])
        .arg(&crashed)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let mut ready = String::new();
    BufReader::new(writer.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("writer ready");
    assert_eq!(ready.trim(), "ready", "writer failed to start");
    std::thread::sleep(Duration::from_millis(200));
    writer.kill().expect("SIGKILL the writer");
    writer.wait().expect("reap the writer");
    // Every measurement gets its own copy of the crashed file: the first open may repair it.
    let copy = |name: &str| copy_synced(&crashed, &s.dir.join(name));
    let clean = s.copy("clean.redb");
    let open_child = |path: &Path, mode: &str| {
        let mut cmd = Command::new(&exe);
        cmd.args(["--child", "open"]).arg(path).arg(mode);
        let m = measure_output(cmd);
        let open = m
            .stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("nanos=")?.parse().ok())
            .map(Duration::from_nanos);
        (m, open)
    };
    let mut rows = Vec::new();
    let (m, open) = open_child(&clean, "rw");
    rows.push(("open, cleanly closed (library)".to_string(), m, open));
    let (m, open) = open_child(&copy("crashed-rw.redb"), "rw");
    rows.push(("first open after kill -9 (library)".to_string(), m, open));
    let (m, open) = open_child(&copy("crashed-ro.redb"), "ro");
    rows.push((
        "first open after kill -9, read_only (library)".to_string(),
        m,
        open,
    ));
    let status_of_one = |path: &Path| measure(s.cli(path, &["status", &hashed_key(0).to_string()]));
    rows.push((
        "status, cleanly closed (CLI)".to_string(),
        status_of_one(&s.copy("clean-cli.redb")),
        None,
    ));
    rows.push((
        "status after kill -9 (CLI)".to_string(),
        status_of_one(&copy("crashed-cli.redb")),
        None,
    ));
    rows
}

/// The writer that is killed: commits batches of 1,000 crashes across the whole key range
/// without end; says `ready` after the first.
pub fn crash_writer(path: &Path) {
    let store = RecoveryStore::open(path).expect("open store");
    let n = store.len().expect("len").max(1) as usize;
    for round in 0usize.. {
        let batch: Vec<_> = (0..1_000)
            .map(|i| {
                (
                    hashed_key((round * 1_000 + i) * 7_919 % n),
                    Timestamp::now(),
                )
            })
            .collect();
        store.record_crashes(&batch).expect("record_crashes");
        if round == 0 {
            println!("ready");
            std::io::stdout().flush().expect("flush");
        }
    }
}

/// The measured child: opens `path` (`rw` or `ro`), reads one status, prints `nanos=` of the
/// open.
pub fn child(path: &Path, mode: &str) {
    let options = StoreOptions::default()
        .create_if_missing(false)
        .read_only(mode == "ro");
    let start = Instant::now();
    let store = match RecoveryStore::open_with(path, options) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(2);
        }
    };
    let open = start.elapsed();
    std::hint::black_box(store.status(&hashed_key(0), at_secs(0)).expect("status"));
    println!("nanos={}", open.as_nanos());
}
