//! Domain records and their stored (postcard, current schema) form.

use std::time::Duration;

use crate::error::StoreError;
use crate::key::BackendKey;
use crate::migrations::current as stored;
use crate::policy::BackendRecoveryPolicy;
use crate::time::{BootTime, Timestamp};

/// One backend's recovery state as kept in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryEntry {
    /// The backend.
    pub key: BackendKey,
    /// When the current budget window began.
    pub window_started_at: Timestamp,
    /// Crashes recorded in the current window.
    pub crashes_in_window: u32,
    /// When the most recent crash was recorded.
    pub last_crash: Timestamp,
    /// Crashes recorded since the state was last cleared.
    pub total_crashes: u64,
}

/// The longest policy duration the file format holds (`u64::MAX` nanoseconds, about 584 years).
pub const MAX_POLICY_DURATION: Duration = Duration::from_nanos(u64::MAX);

pub(crate) fn encode_entry(entry: &RecoveryEntry) -> Result<Vec<u8>, postcard::Error> {
    let record = stored::Entry {
        window_started_at: stamp(&entry.window_started_at),
        crashes_in_window: entry.crashes_in_window,
        last_crash: stamp(&entry.last_crash),
        total_crashes: entry.total_crashes,
    };
    encode(&record)
}

/// Decodes a stored entry; `raw_key` and `value` come straight from the file.
pub(crate) fn decode_entry(
    raw_key: &[u8],
    value: &[u8],
    path: &std::path::Path,
) -> Result<RecoveryEntry, StoreError> {
    let key = std::str::from_utf8(raw_key)
        .map_err(|_| "key is not UTF-8".to_owned())
        .and_then(|text| text.parse::<BackendKey>().map_err(|e| e.to_string()))
        .map_err(|detail| corrupt_entry(raw_key, path, detail))?;
    decode_entry_of(key, value, path)
}

/// Decodes the value stored under `key`, which the caller already holds, so the stored key
/// text need not be parsed again (the read path of `get` and `status`).
pub(crate) fn decode_entry_of(
    key: BackendKey,
    value: &[u8],
    path: &std::path::Path,
) -> Result<RecoveryEntry, StoreError> {
    let corrupt = |detail: String| corrupt_entry(key.to_string().as_bytes(), path, detail);
    let record: stored::Entry = decode(value).map_err(|e| corrupt(format!("value: {e}")))?;
    if record.crashes_in_window == 0 {
        return Err(corrupt(
            "value: an entry with no crash in its window".into(),
        ));
    }
    Ok(RecoveryEntry {
        key,
        window_started_at: timestamp(&record.window_started_at),
        crashes_in_window: record.crashes_in_window,
        last_crash: timestamp(&record.last_crash),
        total_crashes: record.total_crashes,
    })
}

fn corrupt_entry(raw_key: &[u8], path: &std::path::Path, detail: String) -> StoreError {
    StoreError::CorruptEntry {
        path: path.to_owned(),
        key: String::from_utf8_lossy(raw_key).into_owned(),
        detail,
    }
}

pub(crate) fn encode_policy(
    policy: &BackendRecoveryPolicy,
    path: &std::path::Path,
) -> Result<Vec<u8>, StoreError> {
    let nanos = |what: &str, d: Duration| {
        u64::try_from(d.as_nanos()).map_err(|_| StoreError::InvalidPolicy {
            detail: format!(
                "{what} {d:?} is longer than the {MAX_POLICY_DURATION:?} a store can hold: choose a shorter duration"
            ),
        })
    };
    policy.validate()?;
    encode(&stored::Policy {
        retry_backoff_nanos: nanos("retry backoff", policy.retry_backoff)?,
        budget_window_nanos: nanos("budget window", policy.budget_window)?,
    })
    .map_err(|e| StoreError::Storage {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

pub(crate) fn decode_policy(value: &[u8]) -> Result<BackendRecoveryPolicy, postcard::Error> {
    let record: stored::Policy = decode(value)?;
    Ok(BackendRecoveryPolicy::new(
        Duration::from_nanos(record.retry_backoff_nanos),
        Duration::from_nanos(record.budget_window_nanos),
    ))
}

pub(crate) fn encode_version(version: u32) -> Result<Vec<u8>, postcard::Error> {
    encode(&version)
}

pub(crate) fn decode_version(value: &[u8]) -> Result<u32, postcard::Error> {
    decode(value)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

// Trailing bytes mean the value is not what we wrote: refuse it rather than guess.
fn decode<'a, T: serde::Deserialize<'a>>(value: &'a [u8]) -> Result<T, postcard::Error> {
    let (record, rest) = postcard::take_from_bytes(value)?;
    if rest.is_empty() {
        Ok(record)
    } else {
        Err(postcard::Error::DeserializeBadEncoding)
    }
}

fn stamp(ts: &Timestamp) -> stored::Stamp {
    stored::Stamp {
        unix_nanos: ts.unix_nanos(),
        boot: ts.boot().map(|b| stored::Boot {
            boot_id: b.boot_id,
            since_boot_nanos: u64::try_from(b.since_boot.as_nanos()).unwrap_or(u64::MAX),
        }),
    }
}

fn timestamp(stamp: &stored::Stamp) -> Timestamp {
    Timestamp::from_parts(
        stamp.unix_nanos,
        stamp.boot.map(|b| BootTime {
            boot_id: b.boot_id,
            since_boot: Duration::from_nanos(b.since_boot_nanos),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn entries_round_trip() {
        let at = Timestamp::from_parts(
            -5,
            Some(BootTime {
                boot_id: u128::MAX,
                since_boot: Duration::from_secs(9),
            }),
        );
        let entry = RecoveryEntry {
            key: "explicit:ci/svc@1.2.3-rc.1#ab".parse().unwrap(),
            window_started_at: at,
            crashes_in_window: 2,
            last_crash: at + Duration::from_secs(1),
            total_crashes: 7,
        };
        let bytes = encode_entry(&entry).unwrap();
        let key = entry.key.to_string();
        assert_eq!(
            decode_entry(key.as_bytes(), &bytes, Path::new("x")).unwrap(),
            entry
        );
    }

    #[test]
    fn damaged_values_name_their_key() {
        let entry = RecoveryEntry {
            key: "shared/svc@1.0.0".parse().unwrap(),
            window_started_at: Timestamp::from_parts(1, None),
            crashes_in_window: 1,
            last_crash: Timestamp::from_parts(1, None),
            total_crashes: 1,
        };
        let good = encode_entry(&entry).unwrap();
        for bad in [
            &good[..good.len() - 1],
            &[good.as_slice(), &[0]].concat(),
            &[],
        ] {
            let err = decode_entry(b"shared/svc@1.0.0", bad, Path::new("x")).unwrap_err();
            assert!(
                matches!(&err, StoreError::CorruptEntry { key, .. } if key == "shared/svc@1.0.0"),
                "{err}"
            );
        }
        let err = decode_entry(b"\xff", &good, Path::new("x")).unwrap_err();
        assert!(matches!(err, StoreError::CorruptEntry { .. }));
    }

    #[test]
    fn policies_round_trip_and_refuse_what_the_format_cannot_hold() {
        let p = BackendRecoveryPolicy::new(Duration::from_millis(3), Duration::from_secs(4));
        let path = Path::new("x");
        assert_eq!(decode_policy(&encode_policy(&p, path).unwrap()).unwrap(), p);
        let huge = BackendRecoveryPolicy::new(Duration::from_secs(1), Duration::MAX);
        assert!(matches!(
            encode_policy(&huge, path),
            Err(StoreError::InvalidPolicy { .. })
        ));
    }
}
