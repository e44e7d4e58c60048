//! What one operation asks of the file, from the counting backend: the syscalls behind one
//! write and one read, and the syncs of every write-side call, with and without anything to
//! change.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use recovery_store::{BackendRecoveryPolicy, RecoveryStore, StoreOptions};

use crate::Config;
use crate::common::{at_secs, key, median, populate_store};
use crate::counting::{Counters, CountingBackend};
use crate::table::{Table, fmt, verdict};

/// Adds the counting-backend sections to `t`.
pub fn run(cfg: &Config, dir: &Path, t: &mut Table) {
    let counts = sync_counts(dir, cfg.ops.min(200));
    t.section("what one operation does to the file (counting StorageBackend)");
    for line in counts {
        t.text(&line);
    }
    let calls = cfg.ops.min(200);
    let counts = write_side_counts(dir, calls);
    t.section(&format!(
        "syncs per call of every write-side call (counting StorageBackend, {calls} calls each, \
         1,000 entries)"
    ));
    t.text(&format!(
        "{:<36} {:>9} {:>7} {:>9} {:>10}",
        "call", "fdatasync", "pwrite", "bytes", "median"
    ));
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

/// The rows of `write_side_counts` whose call has nothing to change.
const NO_CHANGE: [&str; 5] = [
    "record_success, no state",
    "reset, no state",
    "reset_prefix, no match",
    "set_policy, the stored one",
    "prune, nothing ended",
];

/// Per-call syncs, writes and median time of each write-side call of the library, on a store
/// of 1,000 entries. Each row's setup (giving a key state to clear, an entry to prune) runs
/// outside the counted and timed call.
fn write_side_counts(dir: &Path, calls: usize) -> Vec<String> {
    let path = dir.join("write-side.redb");
    let (backend, counters) = CountingBackend::create(&path);
    let store = RecoveryStore::open_with_backend(backend, &path, StoreOptions::default())
        .expect("open counted store");
    populate_store(&store, 1_000);
    let mut lines = Vec::new();
    // A call with nothing to change should run no write transaction: no sync at all.
    let mut row = |what: &str, setup: &mut dyn FnMut(usize), call: &mut dyn FnMut(usize)| {
        let (line, syncs) = count_calls(&counters, calls, what, setup, call);
        lines.push(if NO_CHANGE.contains(&what) {
            format!(
                "{line}   changes nothing; target 0 syncs: {}",
                verdict(syncs == 0.0)
            )
        } else {
            line
        });
    };
    // Keys from 1,000 up are fresh: each row takes its own range of `calls` keys.
    let fresh = |row: usize, i: usize| key(1_000 + row * calls + i);
    let now = at_secs(1_000_000);

    row("record_crash", &mut |_| {}, &mut |i| {
        store
            .record_crash(&key(i % 1_000), now)
            .expect("record_crash");
    });
    row("record_crashes, 10 keys", &mut |_| {}, &mut |i| {
        let batch: Vec<_> = (0..10).map(|j| (key((i * 10 + j) % 1_000), now)).collect();
        store.record_crashes(&batch).expect("record_crashes");
    });
    row(
        "record_success, with state",
        &mut |i| {
            store.record_crash(&fresh(0, i), now).expect("record_crash");
        },
        &mut |i| {
            assert!(store.record_success(&fresh(0, i)).expect("record_success"));
        },
    );
    row("record_success, no state", &mut |_| {}, &mut |i| {
        assert!(!store.record_success(&fresh(0, i)).expect("record_success"));
    });
    row(
        "reset, with state",
        &mut |i| {
            store.record_crash(&fresh(1, i), now).expect("record_crash");
        },
        &mut |i| {
            assert!(store.reset(&fresh(1, i)).expect("reset"));
        },
    );
    row("reset, no state", &mut |_| {}, &mut |i| {
        assert!(!store.reset(&fresh(1, i)).expect("reset"));
    });
    row(
        "reset_prefix, 1 match",
        &mut |i| {
            store.record_crash(&fresh(2, i), now).expect("record_crash");
        },
        &mut |i| {
            let removed = store.reset_prefix(&fresh(2, i).to_string());
            assert_eq!(removed.expect("reset_prefix").len(), 1);
        },
    );
    row("reset_prefix, no match", &mut |_| {}, &mut |i| {
        let removed = store.reset_prefix(&fresh(2, i).to_string());
        assert!(removed.expect("reset_prefix").is_empty());
    });

    let policy = store.policy().expect("policy");
    let other = BackendRecoveryPolicy::new(
        policy.retry_backoff,
        policy.budget_window + Duration::from_secs(1),
    );
    row("set_policy, the stored one", &mut |_| {}, &mut |_| {
        store.set_policy(policy).expect("set_policy");
    });
    row("set_policy, a different one", &mut |_| {}, &mut |i| {
        let next = if i % 2 == 0 { other } else { policy };
        store.set_policy(next).expect("set_policy");
    });
    if calls % 2 == 1 {
        store.set_policy(policy).expect("set_policy");
    }

    // Every window open now, then: nothing to prune, or one ended window to prune.
    store.prune(now).expect("prune");
    let later = now + policy.budget_window / 2;
    row("prune, nothing ended", &mut |_| {}, &mut |_| {
        assert_eq!(store.prune(later).expect("prune"), 0);
    });
    let long_ago = at_secs(0);
    row(
        "prune, 1 window ended",
        &mut |i| {
            store
                .record_crash(&fresh(3, i), long_ago)
                .expect("record_crash");
        },
        &mut |_| {
            assert_eq!(store.prune(later).expect("prune"), 1);
        },
    );

    let entries: Vec<_> = store.list().expect("list").into_iter().take(100).collect();
    store.replace_all(None, &entries).expect("replace_all");
    row(
        "replace_all, the same 100 entries",
        &mut |_| {},
        &mut |_| {
            store.replace_all(None, &entries).expect("replace_all");
        },
    );
    lines
}

/// Runs `setup(i)` then `call(i)` for each `i < calls`, counting and timing only `call`; one
/// line: mean fdatasyncs, pwrites and bytes written per call, and the median call; and the
/// mean fdatasyncs.
fn count_calls(
    counters: &Arc<Counters>,
    calls: usize,
    what: &str,
    setup: &mut dyn FnMut(usize),
    call: &mut dyn FnMut(usize),
) -> (String, f64) {
    let (mut syncs, mut writes, mut bytes) = (0, 0, 0);
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        setup(i);
        let before = counters.snapshot();
        let start = Instant::now();
        call(i);
        times.push(start.elapsed());
        let after = counters.snapshot();
        syncs += after[4] - before[4];
        writes += after[2] - before[2];
        bytes += after[3] - before[3];
    }
    let per = |n: u64| n as f64 / calls as f64;
    let line = format!(
        "{what:<36} {:>9.2} {:>7.1} {:>9.0} {:>10}",
        per(syncs),
        per(writes),
        per(bytes),
        fmt(median(&mut times))
    );
    (line, per(syncs))
}
