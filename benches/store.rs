//! Criterion benches on temporary files: `cargo bench -p recovery-store-benches --bench store`.
//!
//! Durable single operations, reads, scans and opens at scale, and batches. Sample sizes and
//! measurement times are kept small so the whole run takes a few minutes on a small machine;
//! big files are built once, in `record_crashes` batches.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use recovery_store::{BackendKey, RecoveryStore, Timestamp};
use tempfile::TempDir;

/// 2026-01-01T00:00:00Z, in nanoseconds.
const BASE_NANOS: i64 = 1_767_225_600 * 1_000_000_000;
const BUILD_BATCH: usize = 10_000;

fn key(i: usize) -> BackendKey {
    format!("shared/svc-{i:07}@1.0.0")
        .parse()
        .expect("valid key")
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_parts(BASE_NANOS + secs * 1_000_000_000, None)
}

/// A store with `n` entries, one crash each, at times spread over 1,000 s.
fn build(dir: &TempDir, name: &str, n: usize) -> PathBuf {
    let path = dir.path().join(name);
    let store = RecoveryStore::open(&path).expect("open");
    let mut batch = Vec::with_capacity(BUILD_BATCH);
    for i in 0..n {
        batch.push((key(i), at((i % 1_000) as i64)));
        if batch.len() == BUILD_BATCH || i + 1 == n {
            store.record_crashes(&batch).expect("record_crashes");
            batch.clear();
        }
    }
    path
}

fn copy_of(path: &Path, dir: &TempDir, name: &str) -> PathBuf {
    let copy = dir.path().join(name);
    std::fs::copy(path, &copy).expect("copy");
    copy
}

/// Removes its file when dropped.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn durable_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = build(&dir, "writes.redb", 10_000);
    let store = RecoveryStore::open(&path).expect("open");
    let mut g = c.benchmark_group("record_crash");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    let one = key(0);
    let mut t = 10_000;
    g.bench_function("durable, one key", |b| {
        b.iter(|| {
            t += 1;
            store.record_crash(&one, at(t)).expect("record_crash")
        })
    });
    let mut i = 0usize;
    g.bench_function("durable, 10k keys", |b| {
        b.iter(|| {
            i += 1;
            t += 1;
            store
                .record_crash(&key(i * 7919 % 10_000), at(t))
                .expect("record_crash")
        })
    });
    for size in [10usize, 100, 1_000] {
        g.throughput(Throughput::Elements(size as u64));
        let mut round = 0usize;
        g.bench_function(format!("record_crashes, batch of {size}"), |b| {
            b.iter_batched(
                || {
                    round += 1;
                    t += 1;
                    (0..size)
                        .map(|j| (key((round * size + j) % 10_000), at(t)))
                        .collect::<Vec<_>>()
                },
                |batch| store.record_crashes(&batch).expect("record_crashes"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = build(&dir, "reads.redb", 100_000);
    let store = RecoveryStore::open(&path).expect("open");
    let now = at(2_000);
    let mut g = c.benchmark_group("read");
    g.sample_size(50).measurement_time(Duration::from_secs(3));
    let keys: Vec<BackendKey> = (0..1_000).map(|i| key(i * 97 % 100_000)).collect();
    let mut i = 0usize;
    g.bench_function("status, 100k entries", |b| {
        b.iter(|| {
            i += 1;
            store.status(&keys[i % keys.len()], now).expect("status")
        })
    });
    let missing = key(9_999_999);
    g.bench_function("status, missing key", |b| {
        b.iter(|| store.status(&missing, now).expect("status"))
    });
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("list, 100k entries", |b| {
        b.iter(|| store.list().expect("list").len())
    });
    g.finish();

    // Prune changes the file, so each iteration works on a fresh copy; every window has ended.
    let mut g = c.benchmark_group("prune");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(100_000));
    let mut n = 0usize;
    g.bench_function("prune, 100k entries, all ended", |b| {
        b.iter_batched(
            || {
                n += 1;
                let copy = copy_of(&path, &dir, &format!("prune-{n}.redb"));
                (RecoveryStore::open(&copy).expect("open"), copy)
            },
            // The store and its copy are dropped, and the copy removed, outside the measurement.
            |(store, copy)| {
                let pruned = store.prune(at(100_000)).expect("prune");
                (pruned, store, Removed(copy))
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn opens(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = build(&dir, "open-10k.redb", 10_000);
    let big = build(&dir, "open-1m.redb", 1_000_000);
    let mut g = c.benchmark_group("open");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for (name, path) in [("10k entries", &small), ("1M entries", &big)] {
        g.bench_function(format!("open, cleanly closed, {name}"), |b| {
            b.iter_batched(
                || (),
                |()| RecoveryStore::open(path).expect("open"),
                // The drop (close) is outside the measurement.
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, durable_writes, reads, opens);
criterion_main!(benches);
