//! (c) `status` reads against SQLite, the in-memory reference and an empty redb read
//! transaction.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use recovery_store::{
    BackendKey, BackendRecoveryPolicy, BackendRecoveryState, BackendStatus, RecoveryEntry,
    RecoveryStore, status_of,
};
use rusqlite::Connection;

use crate::Config;
use crate::common::{at_secs, key, key_text, median_of};
use crate::sqlite;
use crate::table::Table;

/// Adds section (c) to `t`, reading from `store` and `sql` (both hold `cfg.entries`).
pub fn run(cfg: &Config, dir: &Path, store: &RecoveryStore, sql: &Connection, t: &mut Table) {
    let reads = cfg.ops * 20;
    let now = at_secs(2_000_000);
    let mut j = 0usize;
    let store_read = median_of(reads, || {
        j += 1;
        let k = key(j * 7919 % cfg.entries);
        std::hint::black_box(store.status(&k, now).expect("status"));
    });
    let policy = BackendRecoveryPolicy::default();
    let mut j = 0usize;
    let sql_read = median_of(reads, || {
        j += 1;
        let k = key_text(j * 7919 % cfg.entries);
        std::hint::black_box(sqlite::status(sql, &k, now.unix_nanos(), &policy));
    });
    // The in-memory reference has no read: its only per-key operations are record_crash and
    // record_success. Measured twice: its record_crash (hash lookup + policy step + update), an
    // upper bound for a lookup, and a HashMap of entries with the crate's `status_of`, which is
    // exactly the in-memory counterpart of `status`.
    let mut mem = BackendRecoveryState::new();
    let start = Instant::now();
    let keys: Vec<BackendKey> = (0..cfg.entries).map(key).collect();
    for k in &keys {
        mem.record_crash(k.clone(), start);
    }
    let mut j = 0usize;
    let mem_crash = median_of(reads, || {
        j += 1;
        let k = &keys[j * 7919 % cfg.entries];
        std::hint::black_box(mem.record_crash(k.clone(), start + Duration::from_secs(60)));
    });
    let map: HashMap<BackendKey, RecoveryEntry> = store
        .list()
        .expect("list")
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect();
    let mut j = 0usize;
    let mem_status = median_of(reads, || {
        j += 1;
        let k = &keys[j * 7919 % cfg.entries];
        let status = map
            .get(k)
            .map_or(BackendStatus::Healthy, |e| status_of(e, now, &policy));
        std::hint::black_box(status);
    });
    // The floor under any read: one empty redb read transaction on the same file, in the
    // store's MultiWriter mode and, for scale, in redb's default ExclusiveWriter mode.
    let begin_read_floor = |mode: redb::ConcurrencyMode| {
        let path = dir.join(format!("floor-{mode:?}.redb"));
        let db = redb::Builder::new()
            .set_concurrency_mode(mode)
            .create(&path)
            .expect("redb create");
        let floor = median_of(reads, || {
            std::hint::black_box(redb::ReadableDatabase::begin_read(&db).expect("begin_read"));
        });
        drop(db);
        let _ = std::fs::remove_file(&path);
        floor
    };
    let floor_multi = begin_read_floor(redb::ConcurrencyMode::MultiWriter);
    let floor_exclusive = begin_read_floor(redb::ConcurrencyMode::ExclusiveWriter);
    t.section(&format!("(c) status reads, {} entries", cfg.entries));
    t.row("store status", store_read, None);
    t.target(
        "  target: median <= 5 us",
        store_read <= Duration::from_micros(5),
    );
    t.row("sqlite select (autocommit, cached stmt)", sql_read, None);
    t.row_ratio("store / sqlite", store_read, sql_read);
    t.row("in-memory: HashMap get + status_of", mem_status, None);
    t.row(
        "in-memory: BackendRecoveryState::record_crash",
        mem_crash,
        None,
    );
    t.row_ratio("store / in-memory status_of", store_read, mem_status);
    t.row(
        "redb empty read txn, MultiWriter (floor)",
        floor_multi,
        None,
    );
    t.row_ratio("store status / that floor", store_read, floor_multi);
    t.row(
        "redb empty read txn, ExclusiveWriter",
        floor_exclusive,
        None,
    );
}
