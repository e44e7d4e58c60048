//! Hostile input: arbitrary key text, damaged and foreign files, and a wall clock that jumps.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendStatus, BootTime,
    BrokerInstanceKey, MAX_EXE_HASH_LEN, MAX_KEY_LEN, MAX_NAME_LEN, MAX_VERSION_LEN, RecoveryStore,
    StoreError, Timestamp, status_of,
};
use redb::{ReadableDatabase, TableDefinition};
use sha2::{Digest, Sha256};

use crate::util::{Rng, TempStore, at, base, key};

const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

// ---------------------------------------------------------------------------------------------
// Key parsing

/// Text near the key grammar, so that parsing gets past the first checks often.
fn near_keys() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("shared".to_string()),
            "private:[a-z0-9-]{0,70}",
            "explicit:[a-zA-Z0-9_-]{0,8}",
            "[a-z:]{0,10}",
        ],
        prop_oneof!["[a-z0-9-]{1,64}", "[a-z0-9A-Z-]{0,70}"],
        prop_oneof![
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9.]{1,6})?",
            "[0-9]{0,3}\\.[0-9]{0,3}\\.[0-9]{0,3}(-[a-z0-9.A-Z]{0,6})?",
        ],
        proptest::option::of(prop_oneof!["[0-9a-f]{1,128}", "[0-9a-fA-F]{0,130}"]),
    )
        .prop_map(|(instance, name, version, hash)| match hash {
            Some(hash) => format!("{instance}/{name}@{version}#{hash}"),
            None => format!("{instance}/{name}@{version}"),
        })
}

fn check_key_text(text: &str) {
    if let Ok(key) = text.parse::<BackendKey>() {
        assert_eq!(key.to_string(), text, "a parsed key prints as its input");
        assert_eq!(key.to_string().parse::<BackendKey>().as_ref(), Ok(&key));
        assert!(text.len() <= MAX_KEY_LEN);
    }
    if let Ok(instance) = text.parse::<BrokerInstanceKey>() {
        assert_eq!(instance.to_string(), text);
        assert_eq!(
            instance.to_string().parse::<BrokerInstanceKey>().as_ref(),
            Ok(&instance)
        );
    }
}

proptest! {
    // Guards key parsing against arbitrary text: no panic, and whatever parses prints back to
    // the same text and parses to an equal key.
    #[test]
    fn arbitrary_strings_never_panic_and_parsed_keys_round_trip(text in any::<String>()) {
        check_key_text(&text);
    }

    // The same for raw bytes, decoded the way the store decodes damaged keys.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_key_text(&String::from_utf8_lossy(&bytes));
    }

    // The same for text shaped like keys, most of which parse or fail late.
    #[test]
    fn near_valid_keys_round_trip(text in near_keys()) {
        check_key_text(&text);
    }
}

// Guards the length limits: every part over its limit, and a key over the total limit, is
// refused with the part named.
#[test]
fn over_long_keys_are_rejected() {
    let name = |n| "a".repeat(n);
    let cases = [
        (
            format!("shared/{}@1.0.0", name(MAX_NAME_LEN + 1)),
            "service name",
        ),
        (
            format!("private:{}/svc@1.0.0", name(MAX_NAME_LEN + 1)),
            "private instance name",
        ),
        (
            format!("explicit:{}/svc@1.0.0", name(MAX_NAME_LEN + 1)),
            "explicit instance name",
        ),
        (
            format!("shared/svc@1.0.0-{}", name(MAX_VERSION_LEN)),
            "service version",
        ),
        (
            format!("shared/svc@1.0.0#{}", "f".repeat(MAX_EXE_HASH_LEN + 1)),
            "executable hash",
        ),
        (name(MAX_KEY_LEN + 1), "key"),
        ("x".repeat(1 << 20), "key"),
    ];
    for (text, part) in cases {
        let err = text
            .parse::<BackendKey>()
            .expect_err(&text[..40.min(text.len())]);
        assert_eq!(err.part(), part);
        assert!(
            err.to_string().chars().count() < 400,
            "the message stays short"
        );
    }
    // The longest key of every part at its limit still parses.
    let longest = format!(
        "explicit:{}/{}@1.0.0-{}#{}",
        name(MAX_NAME_LEN),
        name(MAX_NAME_LEN),
        name(MAX_VERSION_LEN - 6),
        "f".repeat(MAX_EXE_HASH_LEN)
    );
    assert_eq!(
        longest
            .parse::<BackendKey>()
            .expect("at the limits")
            .to_string(),
        longest
    );
}

// Guards value decoding: whatever bytes sit under a key in the entries table, reading gives a
// `CorruptEntry` naming the key (or a valid entry), never a panic, and the entry can be reset.
#[test]
fn arbitrary_stored_values_decode_to_errors_not_panics() {
    let tmp = TempStore::new();
    drop(tmp.open());
    let k = key("shared/victim@1.0.0");
    let mut rng = Rng::new(0xDEC0DE);
    let mut corrupt = 0;
    for round in 0..64 {
        let len = rng.below(if round < 8 { 4 } else { 80 }) as usize;
        let value: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        {
            let db = redb::Database::open(&tmp.path).expect("redb open");
            let txn = db.begin_write().expect("begin");
            txn.open_table(ENTRIES)
                .expect("table")
                .insert(k.to_string().as_bytes(), value.as_slice())
                .expect("insert");
            txn.commit().expect("commit");
        }
        let store = tmp.open();
        match store.get(&k) {
            Ok(_) => {}
            Err(StoreError::CorruptEntry { key, path, .. }) => {
                assert_eq!(key, k.to_string());
                assert_eq!(path, tmp.path);
                corrupt += 1;
                let (good, bad) = store.scan_all().expect("scan");
                assert!(good.is_empty() && bad.len() == 1);
                assert!(store.list().is_err());
            }
            Err(other) => panic!("value {value:?}: unexpected error {other}"),
        }
        assert!(store.reset(&k).expect("reset"));
    }
    assert!(corrupt > 32, "most random values are damaged: {corrupt}");
}

// ---------------------------------------------------------------------------------------------
// Damaged files

fn sha(path: &Path) -> [u8; 32] {
    Sha256::digest(std::fs::read(path).expect("read file")).into()
}

/// A real store with a few entries, as bytes.
fn good_store_bytes() -> Vec<u8> {
    let tmp = TempStore::new();
    let store = tmp.open();
    for (i, k) in ["shared/a@1.0.0", "shared/b@1.0.0", "private:c/c@2.0.0"]
        .iter()
        .enumerate()
    {
        store.record_crash(&key(k), at(i as f64)).expect("record");
    }
    drop(store);
    std::fs::read(&tmp.path).expect("read store")
}

fn variant(err: &StoreError) -> &'static str {
    match err {
        StoreError::NotFound { .. } => "NotFound",
        StoreError::NotAStore { .. } => "NotAStore",
        StoreError::NewerSchema { .. } => "NewerSchema",
        StoreError::Corrupt { .. } => "Corrupt",
        StoreError::CorruptEntry { .. } => "CorruptEntry",
        StoreError::Io { .. } => "Io",
        StoreError::Locked { .. } => "Locked",
        StoreError::Storage { .. } => "Storage",
        _ => "other",
    }
}

/// Writes `bytes` at a store path, opens it, and checks the refusal: one of `allowed`
/// variants, a message naming the path, and the file left byte-identical.
fn refused(case: &str, bytes: &[u8], allowed: &[&str]) -> StoreError {
    let tmp = TempStore::new();
    std::fs::write(&tmp.path, bytes).expect("write damaged file");
    let before = sha(&tmp.path);
    let err = RecoveryStore::open(&tmp.path).expect_err(case);
    assert!(
        allowed.contains(&variant(&err)),
        "{case}: {} error: {err}",
        variant(&err)
    );
    assert!(
        err.to_string().contains(&tmp.path.display().to_string()),
        "{case}: the message names the file: {err}"
    );
    assert!(err.is_bad_file() || variant(&err) == "Io", "{case}: {err}");
    assert_eq!(sha(&tmp.path), before, "{case}: the file was modified");
    eprintln!("{case}: {} error: {err}", variant(&err));
    let listed: Vec<_> = std::fs::read_dir(tmp.dir.path())
        .expect("list dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        listed.len(),
        1,
        "{case}: files left beside the store: {listed:?}"
    );
    err
}

// Guards an empty file at the store path met by a reader: refused as not a store, untouched.
// (A writable open makes it a store in place: see `ownership::an_empty_file_becomes_a_store_*`.)
#[test]
fn empty_file_is_refused_untouched_by_a_reader() {
    let tmp = TempStore::new();
    std::fs::write(&tmp.path, b"").expect("write empty file");
    let err = RecoveryStore::open_with(
        &tmp.path,
        recovery_store::StoreOptions::default().read_only(true),
    )
    .expect_err("an empty file is no store to read");
    assert_eq!(variant(&err), "NotAStore", "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(err.to_string().contains("makes it a new store"), "{err}");
    assert_eq!(std::fs::read(&tmp.path).expect("read"), b"");
}

// Guards random bytes at the store path.
#[test]
fn random_bytes_are_refused_untouched() {
    let mut rng = Rng::new(42);
    for len in [1, 8, 9, 100, 4096, 70_000] {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        refused(&format!("{len} random bytes"), &bytes, &["NotAStore"]);
    }
}

// Guards a store cut short at several points: refused, untouched.
#[test]
fn truncated_stores_are_refused_untouched() {
    let good = good_store_bytes();
    for cut in [
        1,
        5,
        9,
        10,
        64,
        320,
        511,
        512,
        4096,
        8192,
        good.len() / 2,
        good.len() - 1,
    ] {
        refused(
            &format!("store truncated to {cut} of {} bytes", good.len()),
            &good[..cut],
            &["NotAStore", "Corrupt"],
        );
    }
}

// Guards a file that starts like a redb database and continues with garbage.
#[test]
fn redb_header_followed_by_garbage_is_refused_untouched() {
    let good = good_store_bytes();
    let mut rng = Rng::new(7);
    for keep in [9, 64, 320, 512] {
        let mut bytes = good[..keep].to_vec();
        bytes.extend((keep..good.len()).map(|_| rng.next_u64() as u8));
        refused(
            &format!("{keep} header bytes then garbage"),
            &bytes,
            &["NotAStore", "Corrupt"],
        );
    }
}

// Guards a redb database that some other program wrote.
#[test]
fn foreign_redb_database_is_refused_untouched() {
    let tmp = TempStore::new();
    let other: TableDefinition<u64, &str> = TableDefinition::new("inventory");
    {
        let db = redb::Database::create(&tmp.path).expect("create foreign db");
        let txn = db.begin_write().expect("begin");
        txn.open_table(other)
            .expect("table")
            .insert(1, "widget")
            .expect("insert");
        txn.commit().expect("commit");
    }
    let bytes = std::fs::read(&tmp.path).expect("read");
    let err = refused("foreign redb database", &bytes, &["NotAStore"]);
    assert!(err.to_string().contains("not a recovery store"), "{err}");
}

// Guards a store written by a newer schema: refused with both versions named, untouched.
#[test]
fn newer_schema_is_refused_untouched() {
    let tmp = TempStore::new();
    drop(tmp.open());
    let newer = postcard::to_allocvec(&3u32).expect("encode");
    crate::util::rewrite_meta(&tmp.path, b"schema_version", &newer);
    let bytes = std::fs::read(&tmp.path).expect("read");
    match refused("newer schema", &bytes, &["NewerSchema"]) {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(found, 3);
            assert_eq!(supported, recovery_store::SCHEMA_VERSION);
        }
        other => panic!("{other}"),
    }
    // The data is still readable by redb: nothing was migrated or rewritten.
    let db = redb::ReadOnlyDatabase::open(&tmp.path).expect("still a redb database");
    assert!(db.begin_read().expect("read").open_table(META).is_ok());
}

// Guards a directory where the store file should be.
#[test]
fn directory_at_the_store_path_is_refused() {
    let tmp = TempStore::new();
    std::fs::create_dir(&tmp.path).expect("mkdir");
    std::fs::write(tmp.path.join("inside"), b"keep").expect("write");
    let err = RecoveryStore::open(&tmp.path).expect_err("a directory");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains(&tmp.path.display().to_string()));
    assert!(err.to_string().contains("directory"), "{err}");
    assert!(tmp.path.is_dir());
    assert_eq!(
        std::fs::read(tmp.path.join("inside")).expect("read"),
        b"keep"
    );
}

// ---------------------------------------------------------------------------------------------
// Permissions. Root ignores permission bits, so under root each check runs in a child process
// (this test binary again) that first drops to an unprivileged user.

const PRIV_WORKER_VAR: &str = "RECOVERY_STORE_HOSTILE_WORKER";
const PRIV_PATH_VAR: &str = "RECOVERY_STORE_HOSTILE_PATH";
const NOBODY: libc::uid_t = 65534;

// Not a test of its own: the body of the unprivileged child, a no-op unless
// `RECOVERY_STORE_HOSTILE_WORKER` is set. Prints `result VARIANT MESSAGE`.
#[test]
fn unprivileged_worker_entry() {
    if std::env::var_os(PRIV_WORKER_VAR).is_none() {
        return;
    }
    let path = PathBuf::from(std::env::var_os(PRIV_PATH_VAR).expect("path"));
    // SAFETY: plain system calls on this single-threaded child before it does anything else.
    unsafe {
        if libc::geteuid() == 0 {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
            assert_eq!(libc::setgid(NOBODY), 0, "setgid");
            assert_eq!(libc::setuid(NOBODY), 0, "setuid");
        }
    }
    let outcome = match RecoveryStore::open(&path) {
        Ok(_) => "result Ok opened".to_string(),
        Err(e) => format!("result {} {e}", variant(&e)),
    };
    println!("\n{outcome}");
}

/// Opens `path` as an unprivileged user; the variant and message of the outcome.
fn open_unprivileged(path: &Path) -> (String, String) {
    let outcome = if unsafe { libc::geteuid() } == 0 {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "hostile::unprivileged_worker_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PRIV_WORKER_VAR, "1")
            .env(PRIV_PATH_VAR, path)
            .output()
            .expect("run the unprivileged worker");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("result ").map(str::to_owned))
            .unwrap_or_else(|| {
                panic!(
                    "no result from the worker: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    } else {
        match RecoveryStore::open(path) {
            Ok(_) => "Ok opened".to_string(),
            Err(e) => format!("{} {e}", variant(&e)),
        }
    };
    let (variant, message) = outcome.split_once(' ').expect("VARIANT MESSAGE");
    (variant.to_owned(), message.to_owned())
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

// Guards an unreadable store file: an I/O error naming the file, and the file untouched.
#[test]
fn unreadable_file_gives_an_io_error_naming_it() {
    let tmp = TempStore::new();
    drop(tmp.open());
    chmod(tmp.dir.path(), 0o755);
    chmod(&tmp.path, 0o000);
    let before = sha(&tmp.path);
    let (variant, message) = open_unprivileged(&tmp.path);
    chmod(&tmp.path, 0o600);
    assert_eq!(variant, "Io", "{message}");
    assert!(
        message.contains(&tmp.path.display().to_string()),
        "{message}"
    );
    assert!(message.to_lowercase().contains("permission"), "{message}");
    assert_eq!(sha(&tmp.path), before);
}

// Guards creating a store in a read-only directory: an I/O error naming the path, and nothing
// left behind.
#[test]
fn read_only_directory_refuses_creation_cleanly() {
    let tmp = TempStore::new();
    let dir = tmp.dir.path().join("ro");
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(tmp.dir.path(), 0o755);
    chmod(&dir, 0o555);
    let path = dir.join("recovery.redb");
    let (variant, message) = open_unprivileged(&path);
    chmod(&dir, 0o755);
    assert_eq!(variant, "Io", "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Clock faults

const WINDOW: Duration = Duration::from_secs(30);

fn boot(id: u128, secs: f64) -> BootTime {
    BootTime {
        boot_id: id,
        since_boot: Duration::from_secs_f64(secs),
    }
}

/// `secs` (possibly negative) from the base date.
fn wall_at(secs: f64) -> SystemTime {
    if secs >= 0.0 {
        base() + Duration::from_secs_f64(secs)
    } else {
        base() - Duration::from_secs_f64(-secs)
    }
}

/// A wall-clock-only timestamp `secs` (possibly negative) from the base date.
fn wall(secs: f64) -> Timestamp {
    Timestamp::from_wall(wall_at(secs))
}

fn with_boot(wall_secs: f64, id: u128, since: f64) -> Timestamp {
    Timestamp::with_boot(wall_at(wall_secs), boot(id, since))
}

/// Records crashes at `times` in order; checks every bound, and that a refused backend is
/// startable one window after each refusal. Returns how many refusals it checked.
fn check_clock_run(store: &RecoveryStore, k: &BackendKey, times: &[Timestamp]) -> usize {
    store.reset(k).expect("reset");
    let policy = store.policy().expect("policy");
    let mut refusals = 0;
    for (i, now) in times.iter().enumerate() {
        let decision = store.record_crash(k, *now).expect("record crash");
        if let BackendRecoveryDecision::Refuse { retry_after, .. } = decision {
            assert!(
                retry_after <= policy.budget_window,
                "crash {i} at {now:?}: retry_after {retry_after:?}"
            );
        }
        match store.status(k, *now).expect("status") {
            BackendStatus::Refused { retry_after, .. } => {
                refusals += 1;
                assert!(retry_after <= policy.budget_window, "status at crash {i}");
                // A stamp before the window start on the same boot's clock is a late caller
                // (boot clocks do not go back): the store saw the crash no earlier than the
                // window start, so one window is counted from there.
                let start = store.get(k).expect("get").expect("entry").window_started_at;
                let same_boot = matches!((start.boot(), now.boot()),
                    (Some(a), Some(b)) if a.boot_id == b.boot_id);
                let seen = if same_boot && now.duration_since(&start).is_none() {
                    start
                } else {
                    *now
                };
                let later = seen + policy.budget_window;
                assert_eq!(
                    store.status(k, later).expect("status"),
                    BackendStatus::Healthy,
                    "crash {i} at {now:?}: still refused one window later"
                );
                let entry = store.get(k).expect("get").expect("entry");
                assert_eq!(
                    status_of(&entry, later, &policy),
                    BackendStatus::Healthy,
                    "status_of agrees"
                );
            }
            BackendStatus::Recovering {
                window_remaining, ..
            } => assert!(window_remaining <= policy.budget_window),
            BackendStatus::Healthy => {}
        }
    }
    refusals
}

// Guards the named clock faults: steps back of an hour and a day, a step forward, a boot
// change, before 1970 and far in the future. Nothing panics, refusals stay within a window,
// and every refusal has ended one window after it was observed.
#[test]
fn clock_faults_keep_refusals_bounded() {
    let tmp = TempStore::new();
    let store = tmp.open();
    assert_eq!(store.policy().expect("policy").budget_window, WINDOW);
    let k = key("shared/clocky@1.0.0");
    let hour = 3600.0;
    let day = 86_400.0;
    let runs: Vec<(&str, Vec<Timestamp>)> = vec![
        (
            "wall steps back an hour",
            vec![wall(0.0), wall(-hour), wall(-hour + 1.0)],
        ),
        (
            "wall steps back a day",
            vec![wall(0.0), wall(-day), wall(-day + 5.0)],
        ),
        (
            "wall steps forward a day",
            vec![wall(0.0), wall(day), wall(day + 1.0)],
        ),
        (
            "back an hour, boot clock steady",
            vec![
                with_boot(0.0, 1, 100.0),
                with_boot(-hour, 1, 105.0),
                with_boot(-hour, 1, 110.0),
            ],
        ),
        (
            "back a day, boot clock steady",
            vec![with_boot(0.0, 1, 100.0), with_boot(-day, 1, 101.0)],
        ),
        (
            "forward a day, boot clock steady",
            vec![with_boot(0.0, 1, 100.0), with_boot(day, 1, 110.0)],
        ),
        (
            "reboot, wall later",
            vec![
                with_boot(0.0, 1, 5000.0),
                with_boot(5.0, 2, 1.0),
                with_boot(10.0, 2, 6.0),
            ],
        ),
        (
            "reboot, wall stepped back a day",
            vec![
                with_boot(0.0, 1, 5000.0),
                with_boot(-day, 2, 1.0),
                with_boot(-day, 2, 2.0),
            ],
        ),
        (
            "reboot, boot clock behind",
            vec![
                with_boot(0.0, 1, 5000.0),
                with_boot(1.0, 1, 10.0),
                with_boot(2.0, 3, 0.0),
            ],
        ),
        (
            "before 1970",
            vec![
                Timestamp::from_wall(UNIX_EPOCH - Duration::from_secs(1000)),
                Timestamp::from_wall(UNIX_EPOCH - Duration::from_secs(990)),
                Timestamp::from_wall(UNIX_EPOCH - Duration::from_secs(10)),
                Timestamp::from_wall(UNIX_EPOCH + Duration::from_secs(5)),
            ],
        ),
        (
            "far in the future and back",
            vec![
                Timestamp::from_wall(UNIX_EPOCH + Duration::from_secs(200 * 365 * 86_400)),
                wall(0.0),
                wall(1.0),
            ],
        ),
        (
            "the ends of the range",
            vec![
                Timestamp::from_parts(i64::MIN, None),
                Timestamp::from_parts(i64::MIN + 1, None),
                Timestamp::from_parts(0, Some(boot(u128::MAX, 0.0))),
                Timestamp::from_parts(i64::MAX - 60_000_000_000, None),
                Timestamp::from_parts(i64::MIN, Some(boot(9, 1.0))),
            ],
        ),
    ];
    for (name, times) in runs {
        let refusals = check_clock_run(&store, &k, &times);
        eprintln!("clock fault: {name}: {refusals} refusals checked");
        // Every run crashes again within a window somewhere, so the bound is really exercised.
        assert!(refusals >= 1, "{name}: no refusal to check");
    }
    // The saturated end of the range never panics, whatever it decides.
    let end = Timestamp::from_parts(i64::MAX, None);
    store.reset(&k).expect("reset");
    for _ in 0..3 {
        store
            .record_crash(&k, end)
            .expect("record at the end of time");
        store.status(&k, end).expect("status at the end of time");
    }
    let early = Timestamp::from_wall(SystemTime::UNIX_EPOCH - Duration::from_secs(u64::MAX / 4));
    store
        .record_crash(&k, early)
        .expect("record at the start of time");
}

fn timestamps() -> impl Strategy<Value = Timestamp> {
    let wall = prop_oneof![
        // Around the base date, with steps of up to a few days either way.
        (-300_000i64..300_000).prop_map(|s| 1_767_225_600_000_000_000 + s * 1_000_000_000),
        // Anywhere at all, up to the last hour of the range.
        i64::MIN..(i64::MAX - 3_600_000_000_000),
    ];
    let boot = proptest::option::of((0u128..3, 0u64..200_000).prop_map(|(id, ms)| BootTime {
        boot_id: id,
        since_boot: Duration::from_millis(ms),
    }));
    (wall, boot).prop_map(|(wall, boot)| Timestamp::from_parts(wall, boot))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    // Guards arbitrary clock behaviour: any sequence of timestamps (jumps either way, reboots,
    // boot clocks present or not) and any policy keep every refusal within one window, and a
    // refusal has always ended one window after it was observed.
    #[test]
    fn arbitrary_clocks_keep_refusals_bounded(
        times in proptest::collection::vec(timestamps(), 1..10),
        window_ms in 11u64..120_000,
    ) {
        let tmp = TempStore::new();
        let store = tmp.open();
        store
            .set_policy(BackendRecoveryPolicy::new(
                Duration::from_millis(10),
                Duration::from_millis(window_ms),
            ))
            .expect("policy");
        let _refusals = check_clock_run(&store, &key("shared/clocky@1.0.0"), &times);
    }
}
