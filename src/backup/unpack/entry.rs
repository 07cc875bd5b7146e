//! What an entry of a backup stream may be and where it may land, decided before a byte of it is
//! written: a path that is safe (no `..`, nothing absolute) and maps into the data directory or
//! a declared tablespace's directory; an entry that is a file, a directory or a symlink; and a
//! symlink only where a declared tablespace's link belongs. A stream is data from another host
//! (or from an attacker who can write the repository): it never chooses where a restore writes.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::stream::stream_err;
use crate::backup::target::INCOMPLETE_MARKER;
use crate::backup::{DATA_PREFIX, TABLESPACE_PREFIX, check_entry_path};
use crate::error::{Error, Result};

/// An entry's path, checked: UTF-8, relative, without `.` or `..` components.
pub(super) fn entry_path<R: Read>(e: &tar::Entry<R>) -> Result<String> {
    let p = e.path().map_err(|e| stream_err(&e))?;
    let s = p
        .to_str()
        .ok_or_else(|| Error::corrupt("backup stream: an entry path that is not UTF-8"))?
        .trim_end_matches('/')
        .to_string();
    check_entry_path(&s)?;
    Ok(s)
}

/// The kinds of entry a stream may hold.
pub(super) enum Kind {
    Dir,
    Symlink,
    File,
}

pub(super) fn kind<R: Read>(e: &tar::Entry<R>, path: &str) -> Result<Kind> {
    let kind = e.header().entry_type();
    if kind.is_dir() {
        Ok(Kind::Dir)
    } else if kind.is_symlink() {
        Ok(Kind::Symlink)
    } else if kind.is_file() {
        Ok(Kind::File)
    } else {
        Err(Error::corrupt(format!(
            "backup stream: entry {path} is neither a file, a directory nor a symlink"
        )))
    }
}

/// Where an entry goes. Nothing below a pg_tblspc link: tablespace files come as
/// `tablespaces/<oid>/...` and are written to the tablespace's own directory.
pub(super) fn destination(
    path: &str,
    pgdata: &Path,
    tablespaces: &HashMap<u32, PathBuf>,
) -> Result<PathBuf> {
    if let Some(rel) = path.strip_prefix(DATA_PREFIX) {
        if rel.starts_with("pg_tblspc/") && rel.matches('/').count() > 1 || rel == INCOMPLETE_MARKER
        {
            return Err(Error::corrupt(format!(
                "backup stream: unexpected entry {path}"
            )));
        }
        return Ok(pgdata.join(rel));
    }
    if path == "data" {
        return Ok(pgdata.to_path_buf());
    }
    if let Some(rest) = path.strip_prefix(TABLESPACE_PREFIX) {
        let (oid, rel) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(dir) = oid.parse().ok().and_then(|o: u32| tablespaces.get(&o)) {
            return Ok(if rel.is_empty() {
                dir.clone()
            } else {
                dir.join(rel)
            });
        }
    }
    Err(Error::corrupt(format!(
        "backup stream: unexpected entry {path}"
    )))
}

/// What becomes of a symlink entry.
pub(super) enum Link {
    /// A declared tablespace's link: made, to the directory prepared for that tablespace.
    Tablespace(PathBuf),
    /// Any other link (`path -> target`, for the warning): not made.
    Skipped(String),
}

/// Only a declared tablespace's link, to the directory prepared for it: a link the stream chose
/// could point into another cluster (a `global` link to its pg_control, a postgresql.auto.conf
/// the recovery settings would then be appended to). `made`: the links already accepted, by
/// their place in the target.
pub(super) fn symlink<R: Read>(
    e: &tar::Entry<R>,
    path: &str,
    dest: &Path,
    tablespaces: &HashMap<u32, PathBuf>,
    made: &[(PathBuf, PathBuf)],
) -> Result<Link> {
    let link = e.link_name().ok().flatten().map(|l| l.into_owned());
    let link = link
        .as_deref()
        .unwrap_or(Path::new("?"))
        .display()
        .to_string();
    let oid = path.strip_prefix("data/pg_tblspc/");
    match oid.and_then(|o| tablespaces.get(&o.parse().ok()?)) {
        Some(_) if made.iter().any(|(l, _)| l == dest) => Err(Error::corrupt(format!(
            "backup stream: symlink {path} twice"
        ))),
        Some(to) => Ok(Link::Tablespace(to.clone())),
        None if oid.is_some() => Err(Error::corrupt(format!(
            "backup stream: symlink {path} -> {link} is the link of a tablespace the header \
             does not declare"
        ))
        .with_hint("The stream was not written by walship basebackup, or was altered.")),
        // A link on the primary (a certificate, a configuration file kept elsewhere): not
        // made, and said, so that the DBA recreates it if the server needs it.
        None => Ok(Link::Skipped(format!("{path} -> {link}"))),
    }
}
