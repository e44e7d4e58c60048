//! Who a store and its directory may belong to (like ssh's StrictModes), symlinks at the store
//! path, and stores shared by a group: through the library as root and through the CLI as
//! other users (`setpriv`). Needs root; without it each test fails under `CI=true` and is
//! skipped (with a reason) elsewhere.

use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use recovery_store::{RecoveryStore, StoreError, StoreOptions, Timestamp};

use crate::util::{bin, digest, key};

const NOBODY: u32 = 65534;
const STRANGER: u32 = 4243;
const BROKERS: u32 = 4242;

/// A check that cannot run here: a failure under `CI`, a printed skip elsewhere.
pub fn unavailable(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "cannot run in CI: {why}");
    eprintln!("skipped: {why}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A world-searchable directory under /tmp, with a copy of the CLI that any user can run.
pub struct Sandbox {
    pub base: tempfile::TempDir,
    pub bin: PathBuf,
}

impl Sandbox {
    /// `None` (after reporting why) where root or setpriv is missing.
    pub fn new() -> Option<Self> {
        if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
            unavailable("needs root and setpriv");
            return None;
        }
        let base = tempfile::Builder::new()
            .tempdir_in("/tmp")
            .expect("tempdir");
        chmod(base.path(), 0o755);
        let copy = base.path().join("recovery-store");
        std::fs::copy(bin(), &copy).expect("copy the CLI");
        chmod(&copy, 0o755);
        Some(Self { base, bin: copy })
    }

    /// A new directory in the sandbox with this owner, group and mode.
    pub fn dir(&self, name: &str, uid: u32, gid: u32, mode: u32) -> PathBuf {
        let dir = self.base.path().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        chown(&dir, Some(uid), Some(gid)).expect("chown");
        chmod(&dir, mode);
        dir
    }

    /// Runs the CLI as `uid`:`gid` with these supplementary groups (root when `uid` is 0).
    pub fn cli(&self, uid: u32, gid: u32, groups: &[u32], db: &Path, args: &[&str]) -> Output {
        let mut cmd = if uid == 0 {
            Command::new(&self.bin)
        } else {
            let mut cmd = Command::new("/usr/bin/setpriv");
            cmd.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"));
            if groups.is_empty() {
                cmd.arg("--clear-groups");
            } else {
                let list: Vec<String> = groups.iter().map(u32::to_string).collect();
                cmd.arg(format!("--groups={}", list.join(",")));
            }
            cmd.arg(&self.bin);
            cmd
        };
        cmd.arg("--db")
            .arg(db)
            .args(args)
            .env_remove("RECOVERY_STORE_DB")
            .stdin(Stdio::null())
            .output()
            .expect("run the CLI")
    }
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A store at `dir/recovery.redb` made by root with one crash recorded, then given this owner,
/// group and mode.
fn store_in(dir: &Path, uid: u32, gid: u32, mode: u32) -> PathBuf {
    let path = dir.join("recovery.redb");
    let store = RecoveryStore::open_with(&path, StoreOptions::default().trust_any_owner(true))
        .expect("create");
    store
        .record_crash(&key("shared/a@1.0.0"), Timestamp::now())
        .expect("record");
    drop(store);
    chown(&path, Some(uid), Some(gid)).expect("chown");
    chmod(&path, mode);
    path
}

fn open(path: &Path, trust: bool) -> Result<RecoveryStore, StoreError> {
    RecoveryStore::open_with(path, StoreOptions::default().trust_any_owner(trust))
}

fn assert_untrusted(result: Result<RecoveryStore, StoreError>, names: &Path, needles: &[&str]) {
    let err = result.expect_err("refused");
    assert!(matches!(err, StoreError::Untrusted { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&names.display().to_string()), "{message}");
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
}

// Guards the library's ownership matrix, seen by root: another owner, others-writable and
// group-writable files and directories are refused naming owner, mode and remedy, untouched;
// a group store (0660) and a setgid group directory are accepted; `trust_any_owner` accepts all.
#[test]
fn the_library_refuses_stores_others_could_have_planted_or_changed() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    type Case = (&'static str, u32, u32, u32, u32, &'static [&'static str]);
    let cases: [Case; 6] = [
        // (case, file owner, file mode, dir owner, dir mode, needles) — `[]`: accepted.
        (
            "another owner",
            STRANGER,
            0o600,
            0,
            0o755,
            &["owner uid 4243", "chown"],
        ),
        (
            "others can write",
            0,
            0o606,
            0,
            0o755,
            &["mode 0606", "chmod o-w"],
        ),
        (
            "group write, others read",
            0,
            0o664,
            0,
            0o755,
            &["mode 0664", "0660"],
        ),
        (
            "others can write the directory",
            0,
            0o600,
            0,
            0o777,
            &["mode 0777", "chmod o-w"],
        ),
        (
            "group write on a plain directory",
            0,
            0o600,
            0,
            0o775,
            &["mode 0775", "g+s"],
        ),
        (
            "a directory of another user",
            0,
            0o600,
            STRANGER,
            0o755,
            &["owner uid 4243"],
        ),
    ];
    for (i, (case, owner, mode, dir_owner, dir_mode, needles)) in cases.into_iter().enumerate() {
        let dir = sandbox.dir(&format!("m{i}"), 0, 0, 0o755);
        let path = store_in(&dir, owner, BROKERS, mode);
        chown(&dir, Some(dir_owner), None).expect("chown dir");
        chmod(&dir, dir_mode);
        let before = digest(&path);
        let refused_path = if dir_mode != 0o755 || dir_owner != 0 {
            dir.clone()
        } else {
            path.clone()
        };
        eprintln!("{case}");
        assert_untrusted(open(&path, false), &refused_path, needles);
        assert_untrusted(
            RecoveryStore::open_with(&path, StoreOptions::default().read_only(true)),
            &refused_path,
            needles,
        );
        assert_eq!(digest(&path), before, "{case}: the file changed");
        let trusted = open(&path, true).unwrap_or_else(|e| panic!("{case}: trusted: {e}"));
        assert_eq!(trusted.len().expect("len"), 1, "{case}");
    }
    for (case, mode, dir_mode) in [
        ("a group store", 0o660, 0o755),
        ("a group store in a setgid group directory", 0o660, 0o2770),
        ("a private store", 0o600, 0o700),
    ] {
        let dir = sandbox.dir(case, 0, BROKERS, 0o755);
        let path = store_in(&dir, 0, BROKERS, mode);
        chmod(&dir, dir_mode);
        let store = open(&path, false).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(store.len().expect("len"), 1, "{case}");
    }
}

// Guards symlinks in the last component: an existing symlinked store is refused unless the
// caller trusts any owner, and creating never follows a symlink (the target is never made).
#[test]
fn a_symlink_at_the_store_path_is_refused_and_never_followed_to_create() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    let dir = sandbox.dir("links", 0, 0, 0o700);
    let real = store_in(&dir, 0, 0, 0o600);
    let link = dir.join("link.redb");
    symlink(&real, &link).expect("symlink");
    assert_untrusted(
        open(&link, false),
        &link,
        &["symbolic link", "--trust-owner"],
    );
    assert_eq!(open(&link, true).expect("trusted").len().expect("len"), 1);

    let target = dir.join("planted-target.redb");
    let dangling = dir.join("dangling.redb");
    symlink(&target, &dangling).expect("symlink");
    assert_untrusted(open(&dangling, false), &dangling, &["symbolic link"]);
    assert!(
        open(&dangling, true).is_err(),
        "a dangling link is no store"
    );
    assert!(!target.exists(), "creation followed the symlink");
    let out = sandbox.cli(0, 0, &[], &dangling, &["record-crash", "shared/a@1.0.0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!target.exists(), "the CLI followed the symlink");
}

// Guards the CLI side of the matrix, as an ordinary user: a store of another user is refused
// (exit 2, naming owner, mode and `--trust-owner`) and accepted with `--trust-owner`; root's
// store is trusted; a group store is shared by a member of its group.
#[test]
fn the_cli_applies_the_ownership_rules_for_each_user() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    let mine = sandbox.dir("nobody", NOBODY, NOBODY, 0o700);
    let planted = store_in(&mine, STRANGER, STRANGER, 0o644);
    let before = digest(&planted);
    let out = sandbox.cli(NOBODY, NOBODY, &[], &planted, &["list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["owner uid 4243", "mode 0644", "--trust-owner"] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    let out = sandbox.cli(NOBODY, NOBODY, &[], &planted, &["--trust-owner", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(digest(&planted), before);

    let roots = sandbox.dir("root-owned", 0, 0, 0o755);
    let root_store = store_in(&roots, 0, 0, 0o644);
    let out = sandbox.cli(
        NOBODY,
        NOBODY,
        &[],
        &root_store,
        &["status", "shared/a@1.0.0"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The README's setup for a group of brokers.
    let shared = sandbox.dir("shared", 0, BROKERS, 0o2770);
    let db = shared.join("recovery.redb");
    let out = sandbox.cli(
        NOBODY,
        NOBODY,
        &[BROKERS],
        &db,
        &["--mode", "0660", "record-crash", "shared/a@1.0.0"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let meta = std::fs::metadata(&db).expect("stat");
    assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o660, BROKERS));
    // Another member of the group shares it; the group is the trust boundary.
    let out = sandbox.cli(
        STRANGER,
        STRANGER,
        &[BROKERS],
        &db,
        &["record-crash", "shared/a@1.0.0"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "second crash: refused: {}",
        text(&out)
    );
    // Outside the group, a member's store is another user's.
    let out = sandbox.cli(STRANGER, STRANGER, &[], &db, &["status", "shared/a@1.0.0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = sandbox.cli(
        0,
        0,
        &[],
        &db,
        &["--trust-owner", "status", "shared/a@1.0.0"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "root sees the group's refusal: {}",
        text(&out)
    );
}

// Guards stores made for a group: `mode(0o660)` creates a 0660 file in a setgid 02770
// directory; the default stays 0600 in 0700; an existing empty file (as `install -m 660 -g
// brokers /dev/null PATH` leaves it) becomes a store keeping its owner, group and mode.
#[test]
fn an_empty_file_becomes_a_store_keeping_owner_group_and_mode() {
    let Some(sandbox) = Sandbox::new() else {
        return;
    };
    let mode_of = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o7777;
    let group_dir = sandbox.base.path().join("made-for-group/sub");
    let grouped = group_dir.join("recovery.redb");
    drop(RecoveryStore::open_with(&grouped, StoreOptions::default().mode(0o660)).expect("create"));
    assert_eq!((mode_of(&grouped), mode_of(&group_dir)), (0o660, 0o2770));
    let private_dir = sandbox.base.path().join("private/sub");
    let private = private_dir.join("recovery.redb");
    drop(RecoveryStore::open(&private).expect("create"));
    assert_eq!((mode_of(&private), mode_of(&private_dir)), (0o600, 0o700));
    let err = RecoveryStore::open_with(
        sandbox.base.path().join("x.redb"),
        StoreOptions::default().mode(0o666),
    )
    .expect_err("0666 is refused");
    assert!(matches!(err, StoreError::InvalidOptions { .. }), "{err}");

    let dir = sandbox.dir("installed", 0, BROKERS, 0o2770);
    let path = dir.join("recovery.redb");
    std::fs::write(&path, b"").expect("touch");
    chown(&path, Some(NOBODY), Some(BROKERS)).expect("chown");
    chmod(&path, 0o660);
    // A reader leaves it alone.
    let out = sandbox.cli(NOBODY, BROKERS, &[], &path, &["list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 0);
    // Two writers race to initialize it; both decide, from one store.
    let writers: Vec<_> = ["shared/a@1.0.0", "shared/b@1.0.0"]
        .into_iter()
        .map(|k| {
            let path = path.clone();
            let bin = sandbox.bin.clone();
            std::thread::spawn(move || {
                Command::new("/usr/bin/setpriv")
                    .args(["--reuid=65534", "--regid=4242", "--clear-groups"])
                    .arg(bin)
                    .arg("--db")
                    .arg(&path)
                    .args(["record-crash", k])
                    .stdin(Stdio::null())
                    .output()
                    .expect("run")
            })
        })
        .collect();
    for writer in writers {
        let out = writer.join().expect("join");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let meta = std::fs::metadata(&path).expect("stat");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (NOBODY, BROKERS, 0o660)
    );
    let store = open(&path, true).expect("open");
    assert_eq!(store.len().expect("len"), 2);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

// Guards in-place initialization cut short: it writes the header page last, so a file left
// with a blank first page (under 1 MiB) is initialized again by the next writer, while a reader
// refuses it untouched.
#[test]
fn an_initialization_cut_short_is_started_over_by_the_next_writer() {
    let t = crate::util::TempStore::new();
    let torn = vec![0u8; 3 * 4096];
    std::fs::write(&t.path, &torn).expect("write");
    let err = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(true))
        .expect_err("no store to read yet");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert_eq!(std::fs::read(&t.path).expect("read"), torn);
    let store = RecoveryStore::open(&t.path).expect("initialized");
    store
        .record_crash(&key("shared/a@1.0.0"), Timestamp::now())
        .expect("record");
    assert_eq!(store.len().expect("len"), 1);
}
