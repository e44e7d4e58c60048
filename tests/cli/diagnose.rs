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
