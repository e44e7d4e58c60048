//! Backend identity: which broker instance runs which service build.
//!
//! The canonical text form is `INSTANCE/SERVICE@VERSION[#EXE_HASH]`, where `INSTANCE` is
//! `shared`, `private:NAME` or `explicit:NAME`. It is what the store uses as its on-disk key, so
//! it sorts by instance first and then by service.

use std::fmt;
use std::str::FromStr;

use crate::error::KeyError;

/// Longest service or instance name the broker accepts.
pub const MAX_NAME_LEN: usize = 64;
/// Longest service version accepted, suffix included.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest executable hash accepted (a hex SHA-512 is 128 characters).
pub const MAX_EXE_HASH_LEN: usize = 128;
/// Longest canonical key text accepted by [`BackendKey::from_str`].
pub const MAX_KEY_LEN: usize = "explicit:".len()
    + MAX_NAME_LEN
    + 1
    + MAX_NAME_LEN
    + 1
    + MAX_VERSION_LEN
    + 1
    + MAX_EXE_HASH_LEN;

/// The broker instance that owns a backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BrokerInstanceKey {
    /// The host-wide shared broker.
    Shared,
    /// A broker private to one service.
    Private {
        /// The service that owns this private broker.
        service_name: String,
    },
    /// A broker started under an explicit instance name.
    Explicit {
        /// The explicit instance name.
        name: String,
    },
}

impl BrokerInstanceKey {
    /// Checks the instance's name against the broker's rules.
    pub fn validate(&self) -> Result<(), KeyError> {
        match self {
            Self::Shared => Ok(()),
            Self::Private { service_name } => validate_name("private instance name", service_name),
            Self::Explicit { name } => validate_name("explicit instance name", name),
        }
    }
}

impl fmt::Display for BrokerInstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared => f.write_str("shared"),
            Self::Private { service_name } => write!(f, "private:{service_name}"),
            Self::Explicit { name } => write!(f, "explicit:{name}"),
        }
    }
}

impl FromStr for BrokerInstanceKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        let instance = if text == "shared" {
            Self::Shared
        } else if let Some(name) = text.strip_prefix("private:") {
            Self::Private {
                service_name: name.to_owned(),
            }
        } else if let Some(name) = text.strip_prefix("explicit:") {
            Self::Explicit {
                name: name.to_owned(),
            }
        } else {
            return Err(KeyError::new(
                "instance",
                text,
                "expected `shared`, `private:NAME` or `explicit:NAME`",
            ));
        };
        instance.validate()?;
        Ok(instance)
    }
}

/// Identifies one backend: broker instance, service name, service version and executable hash.
///
/// The shape is the broker's own: public fields and an infallible [`new`](Self::new), so code
/// written against the broker's key compiles unchanged. A key built that way is not checked;
/// [`try_new`](Self::try_new), [`FromStr`] and [`validate`](Self::validate) apply the broker's
/// rules, and every [`RecoveryStore`](crate::RecoveryStore) call that takes a key refuses an
/// invalid one with [`StoreError::InvalidKey`](crate::StoreError::InvalidKey) before touching
/// the file. [`BackendRecoveryState`](crate::BackendRecoveryState) accepts any key, as the
/// broker's in-memory module does.
///
/// # Which keys the store accepts
///
/// The store keys its file by the canonical text `INSTANCE/SERVICE@VERSION[#EXE_HASH]`, so it
/// accepts exactly the keys whose text parses back to the same key:
///
/// - service and instance names are 1 to [`MAX_NAME_LEN`] characters of `a-z`, `0-9` and `-`.
///   Upper case is refused rather than folded, because `Svc` and `svc` would otherwise name
///   two backends with one text; separators (`/`, `@`, `#`, `:`) are refused because they
///   would make the text ambiguous;
/// - versions are `MAJOR.MINOR.PATCH` with an optional `-suffix` of `a-z`, `0-9` and `.`, at
///   most [`MAX_VERSION_LEN`] characters;
/// - the executable hash is empty (unknown) or lowercase hex, at most [`MAX_EXE_HASH_LEN`]
///   characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey {
    /// The broker instance that runs this backend.
    pub instance: BrokerInstanceKey,
    /// The service name.
    pub service_name: String,
    /// The service version, `MAJOR.MINOR.PATCH[-suffix]`.
    pub service_version: String,
    /// The lowercase hex hash of the backend's executable, or `""` when unknown.
    pub exe_hash: String,
}

impl BackendKey {
    /// Builds a key from its parts without checking them, as the broker's `BackendKey::new`
    /// does; `exe_hash` is `""` when unknown.
    ///
    /// ```
    /// use recovery_store::{BackendKey, BrokerInstanceKey};
    /// let key = BackendKey::new(BrokerInstanceKey::Shared, "zccache", "1.11.20", "");
    /// assert_eq!(key.to_string(), "shared/zccache@1.11.20");
    /// assert!(BackendKey::new(BrokerInstanceKey::Shared, "Bad Name", "1.0.0", "")
    ///     .validate()
    ///     .is_err());
    /// ```
    pub fn new(
        instance: BrokerInstanceKey,
        service_name: impl Into<String>,
        service_version: impl Into<String>,
        exe_hash: impl Into<String>,
    ) -> Self {
        Self {
            instance,
            service_name: service_name.into(),
            service_version: service_version.into(),
            exe_hash: exe_hash.into(),
        }
    }

    /// Builds a key and checks every part against the broker's rules.
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the first part that failed (`instance`, `service name`, …).
    ///
    /// ```
    /// use recovery_store::{BackendKey, BrokerInstanceKey};
    /// let key = BackendKey::try_new(BrokerInstanceKey::Shared, "zccache", "1.11.20", "")?;
    /// assert_eq!(key.to_string(), "shared/zccache@1.11.20");
    /// let err = BackendKey::try_new(BrokerInstanceKey::Shared, "a/b", "1.0.0", "").unwrap_err();
    /// assert_eq!(err.part(), "service name");
    /// # Ok::<(), recovery_store::KeyError>(())
    /// ```
    pub fn try_new(
        instance: BrokerInstanceKey,
        service_name: impl Into<String>,
        service_version: impl Into<String>,
        exe_hash: impl Into<String>,
    ) -> Result<Self, KeyError> {
        let key = Self::new(instance, service_name, service_version, exe_hash);
        key.validate()?;
        Ok(key)
    }

    /// Checks every part against the broker's rules, so that the key's canonical text parses
    /// back to an equal key.
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the first part that failed.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.instance.validate()?;
        validate_name("service name", &self.service_name)?;
        validate_version(&self.service_version)?;
        validate_exe_hash(&self.exe_hash)
    }
}

impl fmt::Display for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}@{}",
            self.instance, self.service_name, self.service_version
        )?;
        if !self.exe_hash.is_empty() {
            write!(f, "#{}", self.exe_hash)?;
        }
        Ok(())
    }
}

impl FromStr for BackendKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        if text.len() > MAX_KEY_LEN {
            return Err(KeyError::new(
                "key",
                text,
                format!("longer than {MAX_KEY_LEN} bytes"),
            ));
        }
        let form = "expected INSTANCE/SERVICE@VERSION[#EXE_HASH], e.g. shared/zccache@1.11.20";
        let (instance, rest) = text
            .split_once('/')
            .ok_or_else(|| KeyError::new("key", text, form))?;
        let (service, rest) = rest
            .split_once('@')
            .ok_or_else(|| KeyError::new("key", text, form))?;
        let (version, hash) = match rest.split_once('#') {
            Some((version, hash)) if !hash.is_empty() => (version, hash),
            Some(_) => {
                return Err(KeyError::new(
                    "executable hash",
                    "",
                    "empty after `#`; omit the `#` when the hash is unknown",
                ));
            }
            None => (rest, ""),
        };
        Self::try_new(instance.parse()?, service, version, hash)
    }
}

/// Checks a service name as a key's `service_name` is checked (for per-service policies).
pub(crate) fn validate_service_name(name: &str) -> Result<(), KeyError> {
    validate_name("service name", name)
}

fn validate_name(part: &'static str, name: &str) -> Result<(), KeyError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(KeyError::new(
            part,
            name,
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(KeyError::new(part, name, "may hold only a-z, 0-9 and -"));
    }
    Ok(())
}

fn validate_version(version: &str) -> Result<(), KeyError> {
    const PART: &str = "service version";
    if version.len() > MAX_VERSION_LEN {
        return Err(KeyError::new(
            PART,
            version,
            format!("longer than {MAX_VERSION_LEN} characters"),
        ));
    }
    let (core, suffix) = match version.split_once('-') {
        Some((core, suffix)) => (core, Some(suffix)),
        None => (version, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let numeric = |n: &&str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    if numbers.len() != 3 || !numbers.iter().all(numeric) {
        return Err(KeyError::new(
            PART,
            version,
            "expected MAJOR.MINOR.PATCH with an optional -suffix, e.g. 1.11.20",
        ));
    }
    if let Some(suffix) = suffix
        && (suffix.is_empty()
            || !suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.'))
    {
        return Err(KeyError::new(
            PART,
            version,
            "the suffix after - must be non-empty and hold only a-z, 0-9 and .",
        ));
    }
    Ok(())
}

fn validate_exe_hash(hash: &str) -> Result<(), KeyError> {
    const PART: &str = "executable hash";
    if hash.len() > MAX_EXE_HASH_LEN {
        return Err(KeyError::new(
            PART,
            hash,
            format!("longer than {MAX_EXE_HASH_LEN} characters"),
        ));
    }
    if !hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(KeyError::new(
            PART,
            hash,
            "must be lowercase hex (0-9, a-f)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Result<BackendKey, KeyError> {
        text.parse()
    }

    #[test]
    fn canonical_forms_round_trip() {
        for text in [
            "shared/zccache@1.11.20",
            "private:zccache/zccache@1.11.20",
            "explicit:ci/zccache@1.11.20#9f2c",
            "shared/a-b@0.0.0-rc.1",
        ] {
            assert_eq!(key(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn parts_are_reported_by_name() {
        let cases = [
            ("nowhere/svc@1.0.0", "instance"),
            ("private:/svc@1.0.0", "private instance name"),
            ("explicit:UP/svc@1.0.0", "explicit instance name"),
            ("shared/Svc@1.0.0", "service name"),
            ("shared/svc@1.0", "service version"),
            ("shared/svc@1.0.0-", "service version"),
            ("shared/svc@1.0.0-RC", "service version"),
            ("shared/svc@1.0.0#ABC", "executable hash"),
            ("shared/svc@1.0.0#", "executable hash"),
            ("shared-svc", "key"),
        ];
        for (text, part) in cases {
            let err = key(text).unwrap_err();
            assert_eq!(err.part(), part, "{text}: {err}");
        }
    }

    #[test]
    fn name_length_limits_hold() {
        let ok = "a".repeat(MAX_NAME_LEN);
        assert!(key(&format!("shared/{ok}@1.0.0")).is_ok());
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            key(&format!("shared/{long}@1.0.0")).unwrap_err().part(),
            "service name"
        );
        let huge = "a".repeat(10_000);
        assert_eq!(key(&huge).unwrap_err().part(), "key");
    }

    #[test]
    fn sort_order_groups_by_instance_then_service() {
        let mut keys: Vec<String> = ["shared/b@1.0.0", "private:a/z@1.0.0", "shared/a@1.0.0"]
            .iter()
            .map(|s| key(s).unwrap().to_string())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            ["private:a/z@1.0.0", "shared/a@1.0.0", "shared/b@1.0.0"]
        );
    }
}
