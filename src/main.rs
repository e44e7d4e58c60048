//! The `recovery-store` command (being built).
fn main() {}
