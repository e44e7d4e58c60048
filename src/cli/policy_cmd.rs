//! `policy`, `policy set` and `policy unset`: the store's default policy and its per-service
//! and per-key overrides.
//!
//! A damaged override row never stops these commands: `policy` shows the rows that decode and
//! names each damaged one (text, `--json` `damaged`, stderr; exit 1); `policy set` replaces a
//! damaged row of its scope (fields not given then come from the next most specific policy)
//! and says so instead of showing values it could not read; `policy set --key` over a damaged
//! service row needs every field, as no policy below it can be read; `policy unset` removes a
//! row whatever its value holds (warning when a key then falls back to a damaged row), and
//! `--service` takes a stored name that is not valid, so a row whose scope text was damaged can
//! be removed too.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use recovery_store::{
    AppliedPolicy, BackendKey, BackendRecoveryPolicy, PolicyScope, RecoveryPolicy, StoreError,
};

use super::args::PolicyAction;
use super::commands::check_policy;
use super::sanitize::sanitize;
use super::{Ctx, NEGATIVE, json, render};

/// `default`, or the scope text of the override that applies.
pub fn scope_name(applied: &AppliedPolicy) -> String {
    applied
        .scope
        .as_ref()
        .map_or_else(|| "default".to_owned(), ToString::to_string)
}

fn scope_of(
    service: Option<String>,
    key: Option<BackendKey>,
) -> anyhow::Result<Option<PolicyScope>> {
    Ok(match (service, key) {
        (Some(name), _) => Some(PolicyScope::service(&name).with_context(|| {
            format!("--service {name:?} is not a service name: give one like zccache")
        })?),
        (None, Some(key)) => Some(PolicyScope::key(key)?),
        (None, None) => None,
    })
}

pub fn policy(
    ctx: &Ctx,
    action: Option<PolicyAction>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    match action {
        None => show(ctx, out),
        Some(PolicyAction::Set {
            retry_backoff,
            budget_window,
            yes,
            reason,
            retries,
            service,
            key,
        }) => {
            let scope = scope_of(service, key)?;
            let change = Change {
                retry_backoff,
                budget_window,
                retries,
            };
            set(ctx, scope, change, yes, reason.as_deref(), out)
        }
        Some(PolicyAction::Unset {
            service,
            key,
            reason,
        }) => {
            let scope = match (service, key) {
                // Any stored name, so that a row whose name was damaged can be removed.
                (Some(name), _) if PolicyScope::service(&name).is_err() => {
                    PolicyScope::Service(name)
                }
                (service, key) => {
                    scope_of(service, key)?.context("policy unset needs --service or --key")?
                }
            };
            unset(ctx, &scope, reason.as_deref(), out)
        }
    }
}

fn show(ctx: &Ctx, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let policies = ctx.open_read()?.snapshot(|s| s.stored_policies())?;
    for row in policies.damaged() {
        eprintln!("recovery-store: {}", sanitize(&row.error().to_string()));
    }
    let code = if policies.damaged().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NEGATIVE)
    };
    if ctx.json {
        json::emit(
            out,
            &json::PolicyDoc {
                policy: json::StoredPolicy::of(&policies.default_policy()),
                overrides: policies
                    .overrides()
                    .iter()
                    .map(|(scope, p)| json::Override {
                        scope: scope.to_string(),
                        policy: json::StoredPolicy::of(p),
                    })
                    .collect(),
                damaged: policies
                    .damaged()
                    .iter()
                    .map(|row| json::DamagedOverride {
                        scope: row.scope.clone(),
                        error: row.error().to_string(),
                    })
                    .collect(),
            },
        )?;
    } else {
        render::policy(out, &policies.default_policy())?;
        for (scope, p) in policies.overrides() {
            writeln!(
                out,
                "override {scope}: {}",
                render::stored_policy_text_full(p)
            )?;
        }
        for row in policies.damaged() {
            writeln!(out, "override {}: damaged", sanitize(&row.scope))?;
        }
    }
    Ok(code)
}

struct Change {
    retry_backoff: Option<std::time::Duration>,
    budget_window: Option<std::time::Duration>,
    retries: Option<u32>,
}

impl Change {
    /// The new policy when every field was given.
    fn complete(&self) -> Option<RecoveryPolicy> {
        Some(RecoveryPolicy::new(
            BackendRecoveryPolicy::new(self.retry_backoff?, self.budget_window?),
            self.retries?,
        ))
    }

    /// The fields given, over `base` for the others.
    fn over(&self, base: &RecoveryPolicy) -> RecoveryPolicy {
        RecoveryPolicy::new(
            BackendRecoveryPolicy::new(
                self.retry_backoff.unwrap_or(base.recovery.retry_backoff),
                self.budget_window.unwrap_or(base.recovery.budget_window),
            ),
            self.retries.unwrap_or(base.retries_per_window),
        )
    }
}

/// The scope text of the damaged row a [`StoreError::CorruptOverride`] names.
fn damaged_scope(err: &StoreError) -> Option<String> {
    match err {
        StoreError::CorruptOverride { scope, .. } => Some(scope.clone()),
        _ => None,
    }
}

fn set(
    ctx: &Ctx,
    scope: Option<PolicyScope>,
    change: Change,
    yes: bool,
    reason: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    // Check the new policy before a missing store is created for it.
    let existing = if ctx.exists() {
        Some(ctx.open_existing()?)
    } else {
        None
    };
    let stored = match &existing {
        Some(store) => store.snapshot(|s| s.stored_policies())?,
        None => recovery_store::StoredPolicies::default(),
    };
    // The damaged row that judged the scope until now, if one did: its values are unknown.
    let damaged_before = match &scope {
        None => None,
        Some(PolicyScope::Key(key)) => stored.judge(key).err().and_then(|e| damaged_scope(&e)),
        Some(service) => {
            let text = service.to_string();
            stored
                .damaged()
                .iter()
                .any(|d| d.scope == text)
                .then_some(text)
        }
    };
    // A damaged row of this scope is replaced: the fields not given come from the policy below.
    let policies = match &scope {
        Some(scope) => stored.without_damaged(scope),
        None => stored,
    };
    // Unspecified fields come from the policy that applies to the scope now.
    let below = match &scope {
        None => Ok(policies.default_policy()),
        Some(PolicyScope::Key(key)) => policies.judge(key).map(|a| a.policy),
        Some(PolicyScope::Service(name)) => Ok(policies
            .overrides()
            .iter()
            .find(|(s, _)| matches!(s, PolicyScope::Service(n) if n == name))
            .map_or(policies.default_policy(), |(_, p)| *p)),
    };
    let old = match (&damaged_before, &below) {
        (None, Ok(p)) => Some(*p),
        _ => None,
    };
    // `previous` stays an object in JSON: under a damaged row (named by `previous_damaged`),
    // the policy below it, else the default.
    let shown_previous = old
        .or_else(|| below.as_ref().ok().copied())
        .unwrap_or_else(|| policies.default_policy());
    let new = match (below, change.complete()) {
        (_, Some(complete)) => complete,
        (Ok(base), None) => change.over(&base),
        (Err(err), None) => {
            let row = damaged_scope(&err).unwrap_or_default();
            return Err(anyhow::Error::new(err).context(format!(
                "the fields not given would come from the damaged override {row}: give \
                 --retry-backoff/--budget-window/--retries, or repair {row} first"
            )));
        }
    };
    check_policy(&new.recovery, yes)?;
    let shown = scope
        .as_ref()
        .map_or_else(|| "default".to_owned(), ToString::to_string);
    // The reference policy on a missing store changes nothing: no store is created for it.
    let nothing_to_record = existing.is_none() && scope.is_none() && new == old.unwrap_or_default();
    let written = if nothing_to_record {
        false
    } else {
        let store = match existing {
            Some(store) => store,
            // Created with the reference policy, then set like any other change: its audit
            // event records who chose the policy.
            None => ctx.open_create()?,
        };
        match &scope {
            None => store
                .set_recovery_policy(new, reason)
                .map(|()| old != Some(new)),
            Some(scope) => store.set_override(scope, new, reason),
        }
        .with_context(|| format!("cannot set the {shown} policy of {}", ctx.shown_path()))?
    };
    if ctx.json {
        json::emit(
            out,
            &json::PolicySet {
                scope: shown,
                policy: json::StoredPolicy::of(&new),
                previous: json::StoredPolicy::of(&shown_previous),
                previous_damaged: damaged_before,
            },
        )?;
    } else {
        if scope.is_some() {
            writeln!(out, "override {shown}:")?;
        }
        match (&old, &damaged_before) {
            (Some(old), _) => render::policy_change(out, old, &new, written)?,
            (None, row) => {
                let row = row.as_deref().unwrap_or_default();
                let how = if row == shown {
                    "it replaces"
                } else {
                    "it was judged by"
                };
                writeln!(
                    out,
                    "{how} the damaged override {} (its values could not be read); now:",
                    sanitize(row)
                )?;
                render::policy(out, &new)?;
                render::policy_change_applies(out)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn unset(
    ctx: &Ctx,
    scope: &PolicyScope,
    reason: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let store = ctx.open_existing()?;
    let removed = store.remove_override(scope, reason).with_context(|| {
        format!(
            "cannot remove the {} policy of {}",
            sanitize(&scope.to_string()),
            ctx.shown_path()
        )
    })?;
    // The next most specific policy may be a damaged row: the key then gets no decision.
    if let PolicyScope::Key(key) = scope {
        let stored = store.snapshot(|s| s.stored_policies())?;
        if let Err(err) = stored.judge(key) {
            eprintln!(
                "recovery-store: warning: {key} is judged by the next most specific override, \
                 which is damaged: it gets no decision until that row is repaired: {}",
                sanitize(&err.to_string())
            );
        }
    }
    if ctx.json {
        json::emit(
            out,
            &json::PolicyUnset {
                scope: scope.to_string(),
                removed,
            },
        )?;
    } else {
        // A stored name that is not a valid one may hold anything: sanitized.
        let shown = sanitize(&scope.to_string()).into_owned();
        if removed {
            writeln!(
                out,
                "removed the {shown} override: its keys are judged by the next most specific \
                 policy from their next decision"
            )?;
        } else {
            writeln!(out, "no {shown} override is stored: nothing was written")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
