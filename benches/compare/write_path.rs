//! (a) and (b): a durable `record_crash` against the fsync floor and against SQLite.
//!
//! The fsync floor, the store and SQLite run interleaved op by op so that all of them see the
//! same disk (its flush latency drifts when other programs use it).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use recovery_store::{CrashReport, HISTORY_LIMIT, RecoveryStore};
use rusqlite::Connection;

use crate::Config;
use crate::common::{at_nanos, at_secs, interleaved, key, key_text};
use crate::sqlite;
use crate::table::Table;

/// Adds sections (a) and (b) to `t`, writing to `store` and `sql` (both hold `cfg.entries`).
pub fn run(cfg: &Config, dir: &Path, store: &RecoveryStore, sql: &Connection, t: &mut Table) {
    let floor1 = FloorFile::new(dir, "floor-1");
    let floor2 = FloorFile::new(dir, "floor-2");
    let one = key(cfg.entries + 1);
    let one_text = key_text(cfg.entries + 1);
    let (mut a, mut b, mut c, mut d) = (0i64, 0i64, 0usize, 0usize);
    let m = interleaved(
        cfg.ops,
        &mut [
            &mut || floor1.op(1),
            &mut || floor2.op(2),
            &mut || {
                a += 1;
                store.record_crash(&one, at_secs(a)).expect("record_crash");
            },
            &mut || {
                c += 1;
                let k = key(c * 7919 % cfg.entries);
                store
                    .record_crash(&k, at_secs(1_000 + c as i64))
                    .expect("record_crash");
            },
            &mut || {
                b += 1;
                sqlite::crash(sql, &one_text, at_nanos(b));
            },
            &mut || {
                d += 1;
                let k = key_text(d * 7919 % cfg.entries);
                sqlite::crash(sql, &k, at_nanos(1_000 + d as i64));
            },
        ],
    );
    let [floor, floor2, crash_one, crash_many, sql_one, sql_many] = m[..] else {
        unreachable!()
    };
    t.section("(a) durable record_crash vs the fsync floor (all rows of (a) and (b) interleaved)");
    t.row("fsync floor: 64 B pwrite + fdatasync", floor, None);
    t.row("two-sync floor: 2 x (pwrite + fdatasync)", floor2, None);
    t.row(
        "store record_crash, 1 key",
        crash_one,
        Some(("fsync floor", floor, "<= 2.5x")),
    );
    t.row_ratio("  same, against the two-sync floor", crash_one, floor2);
    t.row(
        &format!("store record_crash, {} keys", cfg.entries),
        crash_many,
        Some(("fsync floor", floor, "<= 2.5x")),
    );
    t.row_ratio("  same, against the two-sync floor", crash_many, floor2);

    t.section("(b) one durable decision: SQLite WAL, synchronous=FULL, BEGIN IMMEDIATE..COMMIT");
    t.row(
        "sqlite decision, 1 key",
        sql_one,
        Some(("fsync floor", floor, "")),
    );
    t.row_ratio("store / sqlite, 1 key", crash_one, sql_one);
    t.row(
        &format!("sqlite decision, {} keys", cfg.entries),
        sql_many,
        Some(("fsync floor", floor, "")),
    );
    t.row_ratio(
        &format!("store / sqlite, {} keys", cfg.entries),
        crash_many,
        sql_many,
    );

    history_rows(cfg, store, t);
}

/// (a2) The crash history keeps commit cost flat: a crash of a key whose history is full (the
/// last 16 kept, so each commit rewrites 16 and drops one) against the first crash of a fresh
/// key (an empty history), interleaved.
fn history_rows(cfg: &Config, store: &RecoveryStore, t: &mut Table) {
    let full = key(cfg.entries + 2);
    let report = CrashReport {
        exit_code: Some(1),
        signal: None,
    };
    for i in 0..HISTORY_LIMIT as i64 {
        store
            .record_crash_with(&full, at_secs(-100_000 + i), report)
            .expect("record_crash_with");
    }
    let (mut a, mut b) = (0i64, 0usize);
    let m = interleaved(
        cfg.ops,
        &mut [
            &mut || {
                a += 1;
                store
                    .record_crash_with(&full, at_secs(a * 100), report)
                    .expect("record_crash_with");
            },
            &mut || {
                b += 1;
                store
                    .record_crash_with(&key(cfg.entries + 10 + b), at_secs(1), report)
                    .expect("record_crash_with");
            },
        ],
    );
    let [with_full, with_empty] = m[..] else {
        unreachable!()
    };
    t.section("(a2) crash history: commit cost with a full history (16) vs an empty one");
    t.row("store record_crash_with, empty history", with_empty, None);
    t.row(
        "store record_crash_with, full history",
        with_full,
        Some(("empty history", with_empty, "<= 1.2x")),
    );
}

/// A file for the fsync floor: each op overwrites 64 bytes in place and calls
/// `File::sync_data`, `syncs` times: the least a durable commit can cost on this file system.
struct FloorFile {
    file: std::fs::File,
    n: std::cell::Cell<u8>,
}

impl FloorFile {
    fn new(dir: &Path, name: &str) -> Self {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(name))
            .expect("floor file");
        file.write_all_at(&[0u8; 4096], 0).expect("write");
        file.sync_all().expect("sync");
        Self {
            file,
            n: Default::default(),
        }
    }

    fn op(&self, syncs: usize) {
        for s in 0..syncs {
            self.n.set(self.n.get().wrapping_add(1));
            let buf = [self.n.get(); 64];
            self.file
                .write_all_at(&buf, (s * 64) as u64)
                .expect("write");
            self.file.sync_data().expect("fdatasync");
        }
    }
}
