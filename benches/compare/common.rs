//! What every comparison shares: keys, timestamps, filling a store, and timing medians.

use std::path::Path;
use std::time::{Duration, Instant};

use recovery_store::{BackendKey, RecoveryStore, Timestamp};

/// 2026-01-01T00:00:00Z, in nanoseconds.
pub const BASE_NANOS: i64 = 1_767_225_600 * 1_000_000_000;
/// Crashes per `record_crashes` transaction when filling a store.
pub const BUILD_BATCH: usize = 10_000;

/// The `i`th backend key: `shared/svc-{i:07}@1.0.0`.
pub fn key(i: usize) -> BackendKey {
    key_text(i).parse().expect("valid key")
}

/// The text of `key(i)`.
pub fn key_text(i: usize) -> String {
    format!("shared/svc-{i:07}@1.0.0")
}

/// `secs` seconds after `BASE_NANOS`, in nanoseconds.
pub fn at_nanos(secs: i64) -> i64 {
    BASE_NANOS + secs * 1_000_000_000
}

/// `secs` seconds after `BASE_NANOS`, as a wall-clock-only timestamp.
pub fn at_secs(secs: i64) -> Timestamp {
    Timestamp::from_parts(at_nanos(secs), None)
}

/// Gives keys `0..n` one crash each, at times spread over 1,000 s, in batches.
pub fn populate_store(store: &RecoveryStore, n: usize) {
    let mut batch = Vec::with_capacity(BUILD_BATCH);
    for i in 0..n {
        batch.push((key(i), at_secs(i as i64 % 1_000)));
        if batch.len() == BUILD_BATCH || i + 1 == n {
            store.record_crashes(&batch).expect("record_crashes");
            batch.clear();
        }
    }
}

/// Times each of `ops` calls separately and returns the median.
pub fn median_of(ops: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..(ops / 20).max(3) {
        f(); // warm up
    }
    let mut times = Vec::with_capacity(ops);
    for _ in 0..ops {
        let start = Instant::now();
        f();
        times.push(start.elapsed());
    }
    median(&mut times)
}

/// Runs the operations round-robin, `ops` rounds after a warm-up, timing each call; returns
/// each operation's median.
pub fn interleaved(ops: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    let mut times = vec![Vec::with_capacity(ops); fs.len()];
    for round in 0..ops + (ops / 20).max(3) {
        for (f, times) in fs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            f();
            if round >= (ops / 20).max(3) {
                times.push(start.elapsed());
            }
        }
    }
    times.iter_mut().map(|t| median(t)).collect()
}

/// The median of `times` (the upper one for an even count); sorts them.
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// The median of `values` (the upper one for an even count); sorts them.
pub fn median_f64(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `path` as text, for a child process's arguments.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}
