//! The v1 -> v2 migration, on the committed v1 fixture: the first writable open backs the file
//! up byte for byte and migrates it in one transaction, keeping every entry and the policy;
//! readers read a v1 file as it is and leave it untouched; concurrent first opens by real
//! processes migrate once; and a power cut at any I/O operation of the migration leaves either
//! the whole v1 store or the whole v2 store.
//!
//! `RECOVERY_STORE_FULL_SWEEP=1` checks many more torn images per crash point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use recovery_store::{RecoveryStore, StoreOptions};

use crate::crash::fault_backend::FaultBackend;
use crate::format::{fixture_entries, fixture_of, fixture_policy};
use crate::util::{TempStore, bin, digest, env_flag};

/// Where the migration of the store at `path` from schema `version` keeps its backup.
pub(crate) fn backup_of(path: &Path, version: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".schema-v{version}-backup"));
    PathBuf::from(name)
}

fn v1_copy() -> TempStore {
    let t = TempStore::new();
    std::fs::copy(fixture_of(1), &t.path).unwrap();
    t
}

/// Every table of a redb image, raw: name -> [(key bytes, value bytes)]. The `audit` table's
/// `u64` keys are given as big-endian bytes.
type Dump = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

fn dump_db(db: &impl redb::ReadableDatabase) -> Dump {
    let txn = db.begin_read().unwrap();
    let mut dump = Dump::new();
    for table in txn.list_tables().unwrap() {
        let name = redb::TableHandle::name(&table).to_owned();
        let rows = if name == "audit" {
            let def: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");
            let table = txn.open_table(def).unwrap();
            redb::ReadableTable::iter(&table)
                .unwrap()
                .map(|row| {
                    let (k, v) = row.unwrap();
                    (k.value().to_be_bytes().to_vec(), v.value().to_vec())
                })
                .collect()
        } else {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(&name);
            let table = txn.open_table(def).unwrap();
            redb::ReadableTable::iter(&table)
                .unwrap()
                .map(|row| {
                    let (k, v) = row.unwrap();
                    (k.value().to_vec(), v.value().to_vec())
                })
                .collect()
        };
        dump.insert(name, rows);
    }
    dump
}

fn dump_image(image: &[u8]) -> Result<Dump, String> {
    let db = redb::Builder::new()
        .create_with_backend(FaultBackend::from_image(image))
        .map_err(|e| e.to_string())?;
    Ok(dump_db(&db))
}

fn dump_file(path: &Path) -> Dump {
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open_read_only(path)
        .unwrap();
    dump_db(&db)
}

fn schema_of(dump: &Dump) -> u32 {
    let meta = &dump["meta"];
    let (_, value) = meta
        .iter()
        .find(|(k, _)| k == b"schema_version")
        .expect("schema_version");
    postcard::from_bytes(value).unwrap()
}

// Guards the migration itself: the backup is byte-identical to the v1 file, the migrated store
// holds every entry, count, time and the policy, and it is a whole schema 2 store.
#[test]
fn first_writable_open_backs_up_then_migrates() {
    let t = v1_copy();
    let original = digest(&t.path);
    let store = t.open();
    assert!(
        digest(&backup_of(&t.path, 1)) == original,
        "the backup differs from the v1 file"
    );
    assert_eq!(store.policy().unwrap(), fixture_policy());
    assert_eq!(store.list().unwrap(), fixture_entries());
    // Schema 1 knew no crash detail: each history is the last crash, with none.
    for entry in fixture_entries() {
        let history = store.history(&entry.key).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].at, entry.last_crash);
        assert_eq!(history[0].report(), recovery_store::CrashReport::default());
        assert_eq!((history[0].pid, history[0].uid), (None, None));
    }
    drop(store);
    let dump = dump_file(&t.path);
    assert_eq!(schema_of(&dump), 2);
    assert!(dump["policy_overrides"].is_empty() && dump["audit"].is_empty());
    // The backup is still a v1 store, and opens (read-only: migrating it would defeat it).
    let backup = backup_of(&t.path, 1);
    assert_eq!(schema_of(&dump_file(&backup)), 1);
    let old = RecoveryStore::open_with(&backup, StoreOptions::default().read_only(true)).unwrap();
    assert_eq!(old.list().unwrap(), fixture_entries());
    // A later open finds nothing to migrate and leaves the backup alone.
    let backup_digest = digest(&backup);
    t.open().record_success(&fixture_entries()[0].key).unwrap();
    assert_eq!(digest(&backup), backup_digest);
    assert_eq!(
        std::fs::read_dir(t.dir.path()).unwrap().count(),
        2,
        "only the store and its backup"
    );
}

// Guards readers: a read-only open of a v1 store reads it as it is, and writes nothing at all.
#[test]
fn read_only_opens_read_v1_as_it_is_untouched() {
    let t = v1_copy();
    let before = digest(&t.path);
    let store = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true)).unwrap();
    assert_eq!(store.policy().unwrap(), fixture_policy());
    assert_eq!(store.list().unwrap(), fixture_entries());
    assert_eq!(
        store.get(&fixture_entries()[1].key).unwrap().as_ref(),
        Some(&fixture_entries()[1])
    );
    let k = &fixture_entries()[1];
    assert_eq!(store.history(&k.key).unwrap()[0].at, k.last_crash);
    drop(store);
    // The CLI's reading commands open read-only too.
    let out = Command::new(bin())
        .arg("--db")
        .arg(&t.path)
        .args(["--json", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digest(&t.path), before);
    assert!(!backup_of(&t.path, 1).exists());
}

// Guards "migrate once": processes opening a v1 store for writing at the same moment all
// succeed, the backup is the v1 file (a second migration would back up the v2 file under the
// v1 name) and the contents are migrated exactly once.
#[test]
fn concurrent_first_opens_migrate_once() {
    let rounds = if env_flag("RECOVERY_STORE_FULL_SWEEP") {
        20
    } else {
        3
    };
    let original = digest(&fixture_of(1));
    for _ in 0..rounds {
        let t = v1_copy();
        let children: Vec<_> = (0..6)
            .map(|_| {
                Command::new(bin())
                    .arg("--db")
                    .arg(&t.path)
                    .arg("prune")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .map(crate::util::Reaped::new)
            .collect();
        for child in children {
            let out = child.into_inner().wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            digest(&backup_of(&t.path, 1)) == original,
            "the backup differs from the v1 file"
        );
        assert_eq!(schema_of(&dump_file(&t.path)), 2);
        let store =
            RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true)).unwrap();
        assert_eq!(store.policy().unwrap(), fixture_policy());
        // Prune keeps entries whose windows have not ended: only the one at the end of time.
        let (kept, _) = store.scan_all().unwrap();
        assert_eq!(kept, fixture_entries()[2..]);
        let files: Vec<_> = std::fs::read_dir(t.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 2, "only the store and its backup: {files:?}");
    }
}

// Guards atomicity: a power cut at every mutating I/O operation of the migration (of a store
// kept by a caller's backend, which has no backup) leaves an image that is exactly the v1 store
// or exactly the migrated v2 store, and that then opens with the fixture's contents.
#[test]
fn power_loss_during_migration_leaves_v1_or_v2() {
    let torn = if env_flag("RECOVERY_STORE_FULL_SWEEP") {
        32
    } else {
        3
    };
    let v1 = std::fs::read(fixture_of(1)).unwrap();
    let old = dump_image(&v1).unwrap();
    let open = |backend: FaultBackend| {
        RecoveryStore::open_with_backend(backend, "simulated-disk", StoreOptions::default())
    };
    let whole = FaultBackend::from_image(&v1);
    drop(open(whole.clone()).unwrap());
    let new = dump_image(&whole.durable_image()).unwrap();
    assert_eq!((schema_of(&old), schema_of(&new)), (1, 2));
    let total = whole.ops();
    assert!(total > 2, "the migration wrote {total} times");
    let (mut saw_old, mut saw_new) = (0, 0);
    for point in 0..total {
        let backend = FaultBackend::from_image(&v1).crash_at(point);
        // The open fails or succeeds; either way the disk is then cut.
        drop(open(backend.clone()));
        let images = std::iter::once(backend.durable_image())
            .chain((0..torn).map(|seed| backend.torn_image(seed)));
        for (i, image) in images.enumerate() {
            let dump = dump_image(&image)
                .unwrap_or_else(|e| panic!("cut at op {point}, image {i}: unreadable: {e}"));
            if dump == old {
                saw_old += 1;
            } else if dump == new {
                saw_new += 1;
            } else {
                panic!("cut at op {point}, image {i}: neither the v1 nor the v2 store: {dump:?}");
            }
            let store = open(FaultBackend::from_image(&image)).unwrap();
            assert_eq!(store.list().unwrap(), fixture_entries());
            assert_eq!(store.policy().unwrap(), fixture_policy());
        }
    }
    println!(
        "migration power-loss sweep: {total} I/O operations, {} images: {saw_old} v1, {saw_new} v2",
        saw_old + saw_new
    );
    assert!(saw_old > 0 && saw_new > 0, "old {saw_old}, new {saw_new}");
}

// Guards the refusal of the future: a v2 build leaves a v3 store byte-for-byte untouched, for
// writable and read-only opens alike, and makes no backup.
#[test]
fn newer_schema_is_refused_untouched_without_backup() {
    let t = TempStore::new();
    std::fs::copy(fixture_of(2), &t.path).unwrap();
    crate::util::rewrite_meta(
        &t.path,
        b"schema_version",
        &postcard::to_allocvec(&3u32).unwrap(),
    );
    let before = digest(&t.path);
    for read_only in [false, true] {
        let err = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(read_only))
            .unwrap_err();
        assert!(
            matches!(
                err,
                recovery_store::StoreError::NewerSchema {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(digest(&t.path), before);
    assert_eq!(std::fs::read_dir(t.dir.path()).unwrap().count(), 1);
}

// Guards the backup of a v1 store whose last writer died mid-write: redb must recover it before
// it can be migrated, and the backup is still the file byte for byte as it was left (which a
// v1 release, or a read-only open, recovers as it reads), never skipped.
#[test]
fn a_v1_store_left_by_a_dead_writer_is_backed_up_then_migrated() {
    let t = v1_copy();
    let dirty = t.dir.path().join("dirty.redb");
    {
        // A schema 1 writer's image while it holds the file open: redb marks it as needing
        // recovery until a clean close, and no process holds the copy.
        let db = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .open(&t.path)
            .unwrap();
        std::fs::copy(&t.path, &dirty).unwrap();
        drop(db);
    }
    let probe = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open_read_only(&dirty);
    assert!(
        matches!(probe, Err(redb::DatabaseError::RepairAborted)),
        "the copy must need recovery: {:?}",
        probe.err()
    );
    let original = digest(&dirty);
    let store = RecoveryStore::open(&dirty).unwrap();
    assert_eq!(store.list().unwrap(), fixture_entries());
    drop(store);
    assert_eq!(schema_of(&dump_file(&dirty)), 2);
    // The backup is the file as the dead writer left it, before redb's recovery touched it.
    let backup = backup_of(&dirty, 1);
    assert!(
        digest(&backup) == original,
        "the backup differs from the v1 file"
    );
    let old = RecoveryStore::open_with(&backup, StoreOptions::default().read_only(true)).unwrap();
    assert_eq!(old.list().unwrap(), fixture_entries());
    assert_eq!(old.policy().unwrap(), fixture_policy());
}
