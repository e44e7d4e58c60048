//! Whom a store file and its directory may belong to before they are used, as ssh's
//! `StrictModes` and sudo check their files.
//!
//! The rules, for the store file and the directory holding it:
//! - the owner is the caller (effective uid) or root; for a group store (below), also any
//!   member of its group when the caller is one too: the group is the trust boundary;
//! - others cannot write it;
//! - group write is accepted only where the owner chose it for a group: on the file when others
//!   have no access at all (a group store, mode 0660 or 0640, as `StoreOptions::mode(0o660)`
//!   creates); on the directory when it is setgid (`install -d -m 2770 -g brokers`), so every
//!   file made in it gets that group;
//! - the store path itself is not a symbolic link.
//!
//! `StoreOptions::trust_any_owner(true)` (the CLI's `--trust-owner`) turns all of this off.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::StoreError;

const OTHERS_WRITE: u32 = 0o002;
const OTHERS_ANY: u32 = 0o007;
const GROUP_WRITE: u32 = 0o020;
const SETGID: u32 = 0o2000;

/// What the caller is: its effective uid.
fn caller() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// True when the caller is in group `gid` (effective or supplementary).
fn caller_in_group(gid: u32) -> bool {
    if rustix::process::getegid().as_raw() == gid {
        return true;
    }
    // SAFETY: a null list with size 0 asks only for the count; then the list is filled.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(count) else {
        return false;
    };
    let mut groups = vec![0 as libc::gid_t; len];
    // SAFETY: `groups` has room for `count` entries.
    let filled = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
    usize::try_from(filled).is_ok_and(|n| groups[..n.min(len)].contains(&gid))
}

/// A file its owner made for a group: the group may write, others have no access.
fn is_group_store(meta: &Metadata) -> bool {
    meta.mode() & GROUP_WRITE != 0 && meta.mode() & OTHERS_ANY == 0
}

fn untrusted(path: &Path, meta: &Metadata, problem: &str, remedy: String) -> StoreError {
    StoreError::Untrusted {
        path: path.to_owned(),
        owner: meta.uid(),
        group: meta.gid(),
        mode: meta.mode() & 0o7777,
        problem: problem.into(),
        remedy,
    }
}

/// Checks the directory that holds (or will hold) the store.
pub(super) fn check_dir(dir: &Path, meta: &Metadata) -> Result<(), StoreError> {
    let shown = dir.display();
    check_owner(dir, meta)?;
    let mode = meta.mode();
    if mode & OTHERS_WRITE != 0 {
        return Err(untrusted(
            dir,
            meta,
            "other users can write the directory, so they can plant or replace the store",
            format!(
                "keep the store in a directory only its users can write (e.g. `install -d -m 700 \
                 {shown}/recovery-store`), or chmod o-w {shown}"
            ),
        ));
    }
    if mode & GROUP_WRITE != 0 && mode & SETGID == 0 {
        return Err(untrusted(
            dir,
            meta,
            "its group can write the directory, which was not set up for a group",
            format!(
                "for a store shared by a group make the directory setgid (chmod g+s {shown}); \
                 otherwise chmod g-w {shown}"
            ),
        ));
    }
    Ok(())
}

/// Checks an existing store file, given its `lstat` metadata.
pub(super) fn check_file(path: &Path, meta: &Metadata) -> Result<(), StoreError> {
    let shown = path.display();
    if meta.file_type().is_symlink() {
        return Err(untrusted(
            path,
            meta,
            "the store path is a symbolic link",
            "point at the file itself, or pass --trust-owner \
             (StoreOptions::trust_any_owner) if you trust where it leads"
                .into(),
        ));
    }
    if !(is_group_store(meta) && caller_in_group(meta.gid())) {
        check_owner(path, meta)?;
    }
    let mode = meta.mode();
    if mode & OTHERS_WRITE != 0 {
        return Err(untrusted(
            path,
            meta,
            "other users can write the store",
            format!("chmod o-w {shown}"),
        ));
    }
    if mode & GROUP_WRITE != 0 && !is_group_store(meta) {
        return Err(untrusted(
            path,
            meta,
            "its group can write the store, which was not made for a group",
            format!(
                "for a store shared by a group take others' access away (chmod 0660 {shown}); \
                 otherwise chmod g-w {shown}"
            ),
        ));
    }
    Ok(())
}

fn check_owner(path: &Path, meta: &Metadata) -> Result<(), StoreError> {
    let owner = meta.uid();
    let me = caller();
    if owner == me || owner == 0 {
        return Ok(());
    }
    let to = if me == 0 {
        "root".to_string()
    } else {
        format!("uid {me} or root")
    };
    Err(untrusted(
        path,
        meta,
        "it belongs to another user, who could change or replace it",
        format!(
            "chown it to {to}, or pass --trust-owner (StoreOptions::trust_any_owner) if you \
             trust uid {owner}"
        ),
    ))
}
