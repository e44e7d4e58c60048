//! What one operation asks of the file: syscalls behind one write and one read, from the
//! counting backend.

use std::path::Path;
use std::time::Instant;

use recovery_store::{RecoveryStore, StoreOptions};

use crate::Config;
use crate::common::{at_secs, key, populate_store};
use crate::counting::CountingBackend;
use crate::table::Table;

/// Adds the counting-backend section to `t`.
pub fn run(cfg: &Config, dir: &Path, t: &mut Table) {
    let counts = sync_counts(dir, cfg.ops.min(200));
    t.section("what one operation does to the file (counting StorageBackend)");
    for line in counts {
        t.text(&line);
    }
}

/// Per-operation backend calls for a durable record_crash and for a status read.
fn sync_counts(dir: &Path, ops: usize) -> Vec<String> {
    let path = dir.join("counted.redb");
    let (backend, counters) = CountingBackend::create(&path);
    let store = RecoveryStore::open_with_backend(backend, &path, StoreOptions::default())
        .expect("open counted store");
    populate_store(&store, 1_000);
    let mut lines = Vec::new();
    let mut measure = |what: &str, f: &mut dyn FnMut(usize)| {
        let before = counters.snapshot();
        let start = Instant::now();
        for i in 0..ops {
            f(i);
        }
        let per_op = start.elapsed() / ops as u32;
        let after = counters.snapshot();
        let d: Vec<f64> = before
            .iter()
            .zip(after)
            .map(|(b, a)| (a - b) as f64 / ops as f64)
            .collect();
        let us = |i: usize| d[i] / 1e3;
        let other = per_op.as_secs_f64() * 1e6 - us(9) - us(10) - us(11) - us(12);
        lines.push(format!(
            "{what:<22} {:>4.1} fdatasync  {:>4.1} pwrite ({:>6.0} B)  {:>4.1} pread ({:>4.0} B)  \
             {:>3.1} set_len  {:>4.1} lock + {:>4.1} unlock + {:>3.1} query",
            d[4], d[2], d[3], d[0], d[1], d[5], d[6], d[7], d[8]
        ));
        lines.push(format!(
            "{:<22} {per_op:>9.2?}/op = fdatasync {:.1} us + pwrite {:.1} us + locks {:.1} us \
             + pread {:.1} us + the rest (CPU) {other:.1} us",
            "",
            us(9),
            us(10),
            us(11),
            us(12)
        ));
    };
    measure("record_crash, 1 key:", &mut |i| {
        store
            .record_crash(&key(0), at_secs(5_000 + i as i64))
            .expect("record_crash");
    });
    measure("record_crash, 1k keys:", &mut |i| {
        store
            .record_crash(&key(i * 7 % 1_000), at_secs(9_000 + i as i64))
            .expect("record_crash");
    });
    let now = at_secs(20_000);
    measure("status:", &mut |i| {
        std::hint::black_box(store.status(&key(i * 7 % 1_000), now).expect("status"));
    });
    lines
}
