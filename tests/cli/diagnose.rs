//! `check` on files it cannot open: what is wrong, what can be salvaged, and `--salvage`.

use super::*;

#[test]
fn check_diagnoses_a_truncated_store_and_salvages_what_decodes() {
    let good = populated();
    let bytes = std::fs::read(good.path()).unwrap();
    let cli = Cli::new();
    std::fs::write(cli.path(), &bytes[..bytes.len() / 3]).unwrap();
    let before = crate::util::digest(cli.path());
    let out = cli.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("problem:   truncated"), "{text}");
    assert!(!text.contains("recovery-store check`"), "{text}");
    let doc: Check = cli.json(1, &["check"]);
    let diagnosis = doc.diagnosis.unwrap();
    assert_eq!(diagnosis.problem, "truncated");
    assert!(diagnosis.detail.contains("shorter"), "{}", diagnosis.detail);
    assert!(
        diagnosis.salvageable.is_none() == diagnosis.next_step.starts_with("nothing"),
        "{diagnosis:?}"
    );
    assert_eq!(
        crate::util::digest(cli.path()),
        before,
        "check never writes it"
    );

    // A store with a damaged entry: the salvage holds every entry that decodes.
    let damaged = populated();
    super::transfer::plant_damaged_entry(damaged.path(), b"shared/evil@1.0.0");
    let saved = damaged.tmp.dir.path().join("saved.json");
    let out = damaged.run(&["check", "--salvage", saved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: Export = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(doc.entries.len(), 3);
    let fresh = Cli::new();
    fresh.ok(&["import", saved.to_str().unwrap()]);
    assert_eq!(fresh.json::<List>(0, &["list"]).entries.len(), 3);
}

/// A store cut short in its unused tail: `check` says what a salvage recovers, and
/// `check --salvage` writes every entry, from a padded private copy, leaving the file as it was.
#[test]
fn check_salvages_a_store_cut_short_in_its_tail() {
    let full = Cli::new();
    for i in 0..50 {
        full.ok(&["record-crash", &format!("shared/s{i}@1.0.0")]);
    }
    let bytes = std::fs::read(full.path()).unwrap();
    let cli = Cli::new();
    // Schema 2 stores use one more page than the unused tail it cuts (its last page).
    std::fs::write(cli.path(), &bytes[..bytes.len() - 4096]).unwrap();
    let before = crate::util::digest(cli.path());
    let doc: Check = cli.json(1, &["check"]);
    let diagnosis = doc.diagnosis.expect("diagnosis");
    assert_eq!(
        (diagnosis.problem.as_str(), diagnosis.salvageable),
        ("truncated", Some(50)),
        "{diagnosis:?}"
    );
    assert!(
        diagnosis.next_step.contains("check --salvage"),
        "{diagnosis:?}"
    );
    let saved = cli.tmp.dir.path().join("saved.json");
    let out = cli.run(&["check", "--salvage", saved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("salvaged: 50 entries written to"),
        "{}",
        describe(&out)
    );
    let doc: Export = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(doc.entries.len(), 50);
    assert_eq!(
        crate::util::digest(cli.path()),
        before,
        "the store is untouched"
    );
}

/// Each kind of file `check` cannot open gets its own name, and the file is left as it was.
#[test]
fn check_names_what_is_wrong_with_a_file() {
    let kind = |bytes: &[u8]| {
        let cli = Cli::new();
        std::fs::write(cli.path(), bytes).unwrap();
        let doc: Check = cli.json(1, &["check"]);
        assert_eq!(
            std::fs::read(cli.path()).unwrap(),
            bytes,
            "check wrote the file"
        );
        doc.diagnosis.expect("diagnosis").problem
    };
    assert_eq!(kind(&b"just some text\n".repeat(400)), "foreign");
    let store = populated();
    let mut bytes = std::fs::read(store.path()).unwrap();
    bytes[5] ^= 0xff;
    assert_eq!(kind(&bytes), "bad_header");
    // The magic number is all that is wrong: a salvage writes it back on a copy.
    let cli = Cli::new();
    std::fs::write(cli.path(), &bytes).unwrap();
    let doc: Check = cli.json(1, &["check"]);
    assert_eq!(doc.diagnosis.unwrap().salvageable, Some(3));
    let saved = cli.tmp.dir.path().join("saved.json");
    cli.expect(1, &["check", "--salvage", saved.to_str().unwrap()]);
    let doc: Export = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(doc.entries.len(), 3);
    assert_eq!(
        std::fs::read(cli.path()).unwrap(),
        bytes,
        "the store is untouched"
    );
    let bytes = std::fs::read(store.path()).unwrap();
    assert_eq!(kind(&bytes[..6]), "truncated");
    let newer = populated();
    crate::util::rewrite_meta(
        newer.path(),
        b"schema_version",
        &postcard::to_allocvec(&9u32).unwrap(),
    );
    let doc: Check = newer.json(1, &["check"]);
    let diagnosis = doc.diagnosis.unwrap();
    assert_eq!(diagnosis.problem, "newer_schema");
    assert!(diagnosis.next_step.contains("upgrade recovery-store"));
    assert_eq!(diagnosis.salvageable, None);
}

// A reader who may not write the file (a monitoring account, a read-only mount) still gets a
// check of everything but redb's own integrity pass, which needs write access: exit 0 on a
// sound store, never "integrity failed".
#[test]
fn check_by_a_reader_who_cannot_write_checks_the_rest_and_passes() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/setpriv").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs root and setpriv"
        );
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let base = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = base.path().join("recovery.redb");
    let ok = Command::new(crate::util::bin())
        .arg("--db")
        .arg(&db)
        .args(["--mode", "0644", "record-crash", "shared/a@1.0.0"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", describe(&ok));
    let binary = base.path().join("recovery-store");
    std::fs::copy(crate::util::bin(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = std::fs::read(&db).unwrap();
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .arg("--db")
        .arg(&db)
        .args(["--json", "check"])
        .env_remove("RECOVERY_STORE_DB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc: Check = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc.ok, "{:?}", doc.problems);
    assert_eq!(doc.integrity, "not_checked");
    assert_eq!(doc.entries, 1);
    assert!(
        std::fs::read(&db).unwrap() == before,
        "a reader's check writes nothing"
    );
}
