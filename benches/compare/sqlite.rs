//! SQLite doing the store's work: the same read-modify-write, one durable transaction per
//! decision (WAL, `synchronous=FULL`, `BEGIN IMMEDIATE..COMMIT`).

use std::path::Path;
use std::time::Duration;

use recovery_store::BackendRecoveryPolicy;
use rusqlite::{Connection, OptionalExtension, params};

use crate::common::{at_nanos, key_text};

/// Opens (creating if needed) a database with the `entries` table.
pub fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("sqlite open");
    conn.busy_timeout(Duration::from_secs(30)).expect("busy");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS entries (
            key TEXT PRIMARY KEY,
            window_started INTEGER NOT NULL,
            crashes INTEGER NOT NULL,
            last_crash INTEGER NOT NULL,
            total INTEGER NOT NULL
        ) WITHOUT ROWID;",
    )
    .expect("schema");
    conn
}

/// One decision: BEGIN IMMEDIATE; select; the policy step; upsert; COMMIT.
pub fn crash(conn: &Connection, key: &str, now: i64) -> bool {
    let window = BackendRecoveryPolicy::default().budget_window.as_nanos() as i64;
    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    let row: Option<(i64, i64, i64)> = conn
        .prepare_cached("SELECT window_started, crashes, total FROM entries WHERE key = ?1")
        .expect("prepare")
        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .expect("select");
    let (started, crashes, total) = match row {
        Some((started, crashes, total)) if now - started < window => (started, crashes + 1, total),
        Some((_, _, total)) => (now, 1, total),
        None => (now, 1, 0),
    };
    conn.prepare_cached(
        "INSERT INTO entries (key, window_started, crashes, last_crash, total)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(key) DO UPDATE SET window_started = excluded.window_started,
            crashes = excluded.crashes, last_crash = excluded.last_crash, total = excluded.total",
    )
    .expect("prepare")
    .execute(params![key, started, crashes, now, total + 1])
    .expect("upsert");
    conn.execute_batch("COMMIT").expect("commit");
    crashes == 1
}

/// Gives keys `0..n` one crash each, in one transaction, as `populate_store` does.
pub fn populate(conn: &Connection, n: usize) {
    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    {
        let mut stmt = conn
            .prepare_cached("INSERT OR REPLACE INTO entries VALUES (?1, ?2, 1, ?2, 1)")
            .expect("prepare");
        for i in 0..n {
            stmt.execute(params![key_text(i), at_nanos(i as i64 % 1_000)])
                .expect("insert");
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
}

/// The SQLite counterpart of `status`: one autocommit select, then the same classification.
pub fn status(conn: &Connection, key: &str, now: i64, policy: &BackendRecoveryPolicy) -> bool {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT window_started, crashes FROM entries WHERE key = ?1")
        .expect("prepare")
        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .expect("select");
    match row {
        Some((started, crashes)) => {
            crashes >= 2 && ((now - started) as u128) < policy.budget_window.as_nanos()
        }
        None => false,
    }
}
