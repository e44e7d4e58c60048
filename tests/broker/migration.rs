//! The migration a broker makes is its `use` line and its constructors: `durable.rs` must be
//! `memory.rs` with exactly those swapped.

#[test]
fn one_line_migration() {
    let memory = include_str!("memory.rs");
    let durable = include_str!("durable.rs");
    let migrated = memory
        .replace(
            "use recovery_store::BackendRecoveryState;",
            "use recovery_store::DurableRecoveryState;",
        )
        .replace(
            "BackendRecoveryState::new()",
            "DurableRecoveryState::open(PATH).unwrap()",
        )
        .replace(
            "BackendRecoveryState::with_policy(",
            "DurableRecoveryState::open_with_policy(PATH, ",
        );
    // The durable copy names a temporary directory for PATH and is laid out by rustfmt.
    let normalize = |text: &str| -> String {
        text.lines()
            .filter(|line| !line.contains("tempfile::tempdir()"))
            .collect::<String>()
            .replace("dir.path().join(\"recovery.redb\")", "PATH")
            .replace(".unwrap()", "")
            .split_whitespace()
            .collect::<String>()
            .replace(",)", ")")
    };
    assert_eq!(normalize(&migrated), normalize(durable));
    assert!(!durable.contains("BackendRecoveryState"));
}
