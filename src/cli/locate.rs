//! Which store file a command uses, and why: `--db`, else `$RECOVERY_STORE_DB`, else the XDG
//! state directory, else `~/.local/state`. `recovery-store path` prints the answer.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The variable that names the store when `--db` is not given.
pub const DB_VAR: &str = "RECOVERY_STORE_DB";

/// Where the store path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The `--db` flag.
    Flag,
    /// `$RECOVERY_STORE_DB`.
    Variable,
    /// `$XDG_STATE_HOME/recovery-store/recovery.redb`.
    Xdg,
    /// `~/.local/state/recovery-store/recovery.redb`.
    Default,
}

impl Source {
    /// How the path was chosen, for messages: `--db`, `$RECOVERY_STORE_DB`, ….
    pub fn describe(self) -> &'static str {
        match self {
            Self::Flag => "--db",
            Self::Variable => "$RECOVERY_STORE_DB",
            Self::Xdg => "$XDG_STATE_HOME",
            Self::Default => "the default under $HOME",
        }
    }
}

/// Resolves the store path from the flag and the environment.
pub fn resolve(flag: Option<PathBuf>) -> anyhow::Result<(PathBuf, Source)> {
    resolve_with(flag, |name| std::env::var_os(name))
}

/// [`resolve`] over any environment, for tests.
pub fn resolve_with(
    flag: Option<PathBuf>,
    env: impl Fn(&str) -> Option<OsString>,
) -> anyhow::Result<(PathBuf, Source)> {
    if let Some(path) = flag {
        return Ok((path, Source::Flag));
    }
    // An empty value counts as unset, as for most variables that name a file.
    if let Some(path) = env(DB_VAR).filter(|v| !v.is_empty()) {
        return Ok((PathBuf::from(path), Source::Variable));
    }
    let tail = Path::new("recovery-store").join("recovery.redb");
    // The XDG spec says to ignore relative values.
    if let Some(state) = env("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok((state.join(tail), Source::Xdg));
    }
    let home = env("HOME")
        .filter(|h| !h.is_empty())
        .context("no store path (HOME is not set): pass --db PATH or set RECOVERY_STORE_DB")?;
    Ok((
        PathBuf::from(home).join(".local/state").join(tail),
        Source::Default,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn each_source_in_order() {
        let all = [
            (DB_VAR, "/v.redb"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        let flag = Some(PathBuf::from("/f.redb"));
        assert_eq!(
            resolve_with(flag, env(&all)).unwrap(),
            (PathBuf::from("/f.redb"), Source::Flag)
        );
        assert_eq!(
            resolve_with(None, env(&all)).unwrap(),
            (PathBuf::from("/v.redb"), Source::Variable)
        );
        assert_eq!(
            resolve_with(None, env(&all[1..])).unwrap(),
            (
                PathBuf::from("/x/recovery-store/recovery.redb"),
                Source::Xdg
            )
        );
        assert_eq!(
            resolve_with(None, env(&all[2..])).unwrap(),
            (
                PathBuf::from("/h/.local/state/recovery-store/recovery.redb"),
                Source::Default
            )
        );
        assert!(resolve_with(None, env(&[])).is_err());
    }

    #[test]
    fn empty_and_relative_values_count_as_unset() {
        let vars = [(DB_VAR, ""), ("XDG_STATE_HOME", "rel"), ("HOME", "/h")];
        assert_eq!(resolve_with(None, env(&vars)).unwrap().1, Source::Default);
    }
}
