//! Per-service and per-key policies: which stored policy judges a backend.
//!
//! A store holds a default [`RecoveryPolicy`] and any number of overrides, each for one scope:
//! a service (every key whose `service_name` is that name, whatever its instance, version or
//! hash) or one key (its canonical text, exactly). The most specific decides: the key's
//! override, then its service's, then the default. Nothing here touches the file; the storage
//! layer reads the overrides and this module picks one.

use std::fmt;

use crate::error::StoreError;
use crate::key::{BackendKey, validate_service_name};
use crate::migrations::current as schema;
use crate::policy::RecoveryPolicy;

/// What a policy override applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyScope {
    /// Every key of one service, e.g. `zccache`.
    Service(String),
    /// One key, by its canonical text (a key without its hash matches only that key).
    Key(BackendKey),
}

impl PolicyScope {
    /// The scope of every key of `name`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] when `name` is not a valid service name (1 to 64 of a-z, 0-9
    /// and -).
    pub fn service(name: &str) -> Result<Self, StoreError> {
        validate_service_name(name)?;
        Ok(Self::Service(name.to_owned()))
    }

    /// The scope of one key.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] when the key is not valid ([`BackendKey::validate`]).
    pub fn key(key: BackendKey) -> Result<Self, StoreError> {
        key.validate()?;
        Ok(Self::Key(key))
    }

    /// Parses the stored text, `service:NAME` or `key:KEY`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidPolicy`] for any other text, [`StoreError::InvalidKey`] for a bad
    /// name or key.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        if let Some(name) = text.strip_prefix(schema::SCOPE_SERVICE) {
            Self::service(name)
        } else if let Some(key) = text.strip_prefix(schema::SCOPE_KEY) {
            Self::key(key.parse()?)
        } else {
            Err(StoreError::InvalidPolicy {
                detail: format!("{text:?} is not a policy scope: write service:NAME or key:KEY"),
            })
        }
    }

    /// Which scope this is, as `policy --json` and `show` name it: `service` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Service(_) => "service",
            Self::Key(_) => "key",
        }
    }
}

/// The stored text: `service:NAME` or `key:KEY`.
impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(name) => write!(f, "{}{name}", schema::SCOPE_SERVICE),
            Self::Key(key) => write!(f, "{}{key}", schema::SCOPE_KEY),
        }
    }
}

/// The policy that judges one key, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedPolicy {
    /// The policy.
    pub policy: RecoveryPolicy,
    /// The override it came from; `None` for the store's default.
    pub scope: Option<PolicyScope>,
}

/// The scope texts that could hold a policy for `key`, most specific first.
pub(crate) fn scopes_of(key: &BackendKey) -> [String; 2] {
    [
        PolicyScope::Key(key.clone()).to_string(),
        PolicyScope::Service(key.service_name.clone()).to_string(),
    ]
}

/// Every policy of a store at one moment: the default and its overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policies {
    /// The store's default policy.
    pub default: RecoveryPolicy,
    /// Every override, by scope text order.
    pub overrides: Vec<(PolicyScope, RecoveryPolicy)>,
}

impl Policies {
    /// The policy that judges `key`: its key override, else its service's, else the default.
    pub fn for_key(&self, key: &BackendKey) -> AppliedPolicy {
        let find = |wanted: &dyn Fn(&PolicyScope) -> bool| {
            self.overrides
                .iter()
                .find(|(scope, _)| wanted(scope))
                .map(|(scope, policy)| AppliedPolicy {
                    policy: *policy,
                    scope: Some(scope.clone()),
                })
        };
        find(&|s| matches!(s, PolicyScope::Key(k) if k == key))
            .or_else(|| find(&|s| matches!(s, PolicyScope::Service(n) if *n == key.service_name)))
            .unwrap_or(AppliedPolicy {
                policy: self.default,
                scope: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::BackendRecoveryPolicy;

    fn p(ms: u64) -> RecoveryPolicy {
        RecoveryPolicy::new(
            BackendRecoveryPolicy::new(Duration::from_millis(ms), Duration::from_secs(30)),
            1,
        )
    }

    #[test]
    fn the_most_specific_policy_decides() {
        let a: BackendKey = "shared/zccache@1.0.0".parse().unwrap();
        let b: BackendKey = "private:zccache/zccache@2.0.0".parse().unwrap();
        let c: BackendKey = "shared/other@1.0.0".parse().unwrap();
        let policies = Policies {
            default: p(1),
            overrides: vec![
                (PolicyScope::key(a.clone()).unwrap(), p(2)),
                (PolicyScope::service("zccache").unwrap(), p(3)),
            ],
        };
        assert_eq!(policies.for_key(&a).policy, p(2));
        assert_eq!(policies.for_key(&a).scope.unwrap().kind(), "key");
        assert_eq!(policies.for_key(&b).policy, p(3));
        assert_eq!(
            policies.for_key(&c),
            AppliedPolicy {
                policy: p(1),
                scope: None
            }
        );
    }

    #[test]
    fn scopes_round_trip_and_bad_ones_are_refused() {
        for text in ["service:zccache", "key:shared/zccache@1.0.0#00ff"] {
            assert_eq!(PolicyScope::parse(text).unwrap().to_string(), text);
        }
        assert!(PolicyScope::parse("zccache").is_err());
        assert!(PolicyScope::service("Zc Cache").is_err());
        assert!(PolicyScope::parse("key:not a key").is_err());
    }
}
