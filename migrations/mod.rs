//! The schema history of the store file.
//!
//! Each schema version has a module holding its frozen record types, exactly as they were
//! encoded by that version. A migration step turns the records of version N into those of
//! version N+1. The storage layer runs each step in one write transaction after copying the file
//! to a backup; files from a newer schema than [`CURRENT_VERSION`] are refused untouched.
//!
//! postcard is not self-describing: never reorder, retype or remove a field or enum variant of a
//! frozen type. Change the schema by adding a version.

pub(crate) mod v1;
pub(crate) mod v2;

/// What the `meta` table's `format` key holds in every recovery store.
pub(crate) const FORMAT_NAME: &[u8] = b"recovery-store";

/// The schema this build writes.
pub(crate) const CURRENT_VERSION: u32 = 2;

/// The oldest schema this build can open (directly or by migrating).
pub(crate) const OLDEST_VERSION: u32 = 1;

/// The records this build reads and writes.
pub(crate) use v2 as current;

/// Converts one stored record of schema `from` into schema `from + 1`.
pub(crate) type Convert = fn(&[u8]) -> Result<Vec<u8>, postcard::Error>;

/// One step of the schema history: `from` to `from + 1`.
pub(crate) struct Step {
    /// The version this step reads.
    pub from: u32,
    /// Converts an `entries` value.
    pub entry: Convert,
    /// Converts the `meta` table's policy value.
    pub policy: Convert,
}

/// Every step, in order. `STEPS[i].from == OLDEST_VERSION + i`, and the last step ends at
/// [`CURRENT_VERSION`].
pub(crate) const STEPS: &[Step] = &[Step {
    from: 1,
    entry: convert::<v1::Entry, v2::Entry>,
    policy: convert::<v1::Policy, v2::Policy>,
}];

/// Decodes a whole `Old` record (trailing bytes are an error) and re-encodes it as `New`.
fn convert<Old, New>(bytes: &[u8]) -> Result<Vec<u8>, postcard::Error>
where
    Old: serde::de::DeserializeOwned,
    New: From<Old> + serde::Serialize,
{
    let (old, rest): (Old, _) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(postcard::Error::DeserializeBadEncoding);
    }
    postcard::to_allocvec(&New::from(old))
}

/// The steps that bring a file at `version` up to [`CURRENT_VERSION`].
pub(crate) fn steps_from(version: u32) -> &'static [Step] {
    let start = version.saturating_sub(OLDEST_VERSION) as usize;
    STEPS.get(start..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_form_a_chain_to_the_current_version() {
        for (i, step) in STEPS.iter().enumerate() {
            assert_eq!(step.from, OLDEST_VERSION + i as u32);
        }
        assert_eq!(OLDEST_VERSION + STEPS.len() as u32, CURRENT_VERSION);
        assert!(steps_from(CURRENT_VERSION).is_empty());
    }
}
