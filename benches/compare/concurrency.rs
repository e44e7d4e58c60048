//! (d) eight threads on distinct keys: the store's one shared handle (group commit) against
//! SQLite with a connection per thread, in durable decisions per second.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use recovery_store::{BackendKey, RecoveryStore, StoreOptions};

use crate::Config;
use crate::common::{at_nanos, at_secs, key, key_text, median_f64};
use crate::counting::CountingBackend;
use crate::sqlite;
use crate::table::{Table, verdict};

/// Writer threads in each round.
const THREADS: usize = 8;

/// Adds section (d) to `t`. Rounds alternate between the store and SQLite, so that both see
/// the same disk.
pub fn run(cfg: &Config, dir: &Path, t: &mut Table) {
    let (mut store_rates, mut syncs_per, mut sql_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..cfg.mt_rounds {
        let (rate, syncs) = store_threads(dir, round, cfg.mt_ops);
        store_rates.push(rate);
        syncs_per.push(syncs);
        sql_rates.push(sqlite_threads(dir, round, cfg.mt_ops));
    }
    let store_rate = median_f64(&mut store_rates);
    let sql_rate = median_f64(&mut sql_rates);
    t.section(&format!(
        "(d) {THREADS} threads, distinct keys, {} decisions x {} rounds: durable decisions/s",
        cfg.mt_ops, cfg.mt_rounds
    ));
    t.text(&format!(
        "store (one shared handle, group commit)   {store_rate:>10.0} /s   {:.2} fdatasyncs per decision",
        median_f64(&mut syncs_per)
    ));
    t.text(&format!(
        "sqlite (a connection per thread)          {sql_rate:>10.0} /s"
    ));
    t.text(&format!(
        "store / sqlite                            {:>10.2}x  target >= 2x: {}",
        store_rate / sql_rate,
        verdict(store_rate >= 2.0 * sql_rate)
    ));
}

/// Eight threads on one shared handle; returns decisions/s and fdatasyncs per decision.
fn store_threads(dir: &Path, round: usize, total: usize) -> (f64, f64) {
    let path = dir.join(format!("mt-{round}.redb"));
    let (backend, counters) = CountingBackend::create(&path);
    let store = Arc::new(
        RecoveryStore::open_with_backend(backend, &path, StoreOptions::default())
            .expect("open store"),
    );
    let per = total / THREADS;
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let keys: Vec<BackendKey> = (0..4).map(|k| key(t * 100 + k)).collect();
                barrier.wait();
                for i in 0..per {
                    store
                        .record_crash(&keys[i % keys.len()], at_secs(i as i64))
                        .expect("record_crash");
                }
            })
        })
        .collect();
    barrier.wait();
    let syncs_before = counters.syncs.load(Relaxed);
    let start = Instant::now();
    for h in handles {
        h.join().expect("thread");
    }
    let elapsed = start.elapsed();
    let syncs = counters.syncs.load(Relaxed) - syncs_before;
    let done = (per * THREADS) as f64;
    (done / elapsed.as_secs_f64(), syncs as f64 / done)
}

/// Eight threads, each with its own connection; returns decisions/s.
fn sqlite_threads(dir: &Path, round: usize, total: usize) -> f64 {
    let path = dir.join(format!("mt-{round}.db"));
    drop(sqlite::open(&path));
    let per = total / THREADS;
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = sqlite::open(&path);
                let keys: Vec<String> = (0..4).map(|k| key_text(t * 100 + k)).collect();
                barrier.wait();
                for i in 0..per {
                    sqlite::crash(&conn, &keys[i % keys.len()], at_nanos(i as i64));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("thread");
    }
    (per * THREADS) as f64 / start.elapsed().as_secs_f64()
}
