//! Which directories other clusters use: a running postmaster's data directory, tablespaces and
//! pg_wal (from /proc, and from postmaster.pid files above or below a directory), and the
//! `PG_<version>_<catversion>` directories clusters keep in their tablespaces. What a restore
//! ([`super::target`]) must never empty or write into, `--force` or not.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Refuse a directory a postmaster runs on, whatever the flags: its own postmaster.pid, or one
/// in a directory above it.
pub(super) fn refuse_running_postmaster(dir: &Path) -> Result<()> {
    for d in dir.ancestors() {
        let Ok(text) = fs::read_to_string(d.join("postmaster.pid")) else {
            continue;
        };
        if let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            && crate::os::process_alive(pid)
        {
            return Err(Error::conflict(format!(
                "a postmaster (pid {pid}) runs on {}; walship never writes into a running cluster",
                d.display()
            ))
            .with_hint("Stop that server first (pg_ctl stop), or restore somewhere else."));
        }
    }
    Ok(())
}

/// What emptying `dir` would remove must hold no other cluster: no data directory of a running
/// postmaster, no tablespace (`PG_<v>_<cat>`) below its own top level. This catches the
/// clusters of users whose processes /proc does not show us.
pub(super) fn refuse_clusters_inside(dir: &Path, what: &str) -> Result<()> {
    let refused = |found: &Path, why: &str| {
        Err(Error::conflict(format!(
            "{what} {} holds {}, {why}: walship never removes another cluster's files, even with --force",
            dir.display(),
            found.display()
        ))
        .with_hint("Restore somewhere new (--pgdata, --tablespace-map OLD=NEW)."))
    };
    for e in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        let name = e.file_name().to_string_lossy();
        if e.file_type().is_file()
            && name == "postmaster.pid"
            && refuse_running_postmaster(e.path().parent().unwrap_or(dir)).is_err()
        {
            return refused(e.path(), "the data directory of a running postmaster");
        }
        if e.depth() >= 2 && e.file_type().is_dir() && is_version_name(&name) {
            return refused(e.path(), "a cluster's tablespace");
        }
    }
    Ok(())
}

/// A running cluster this user can see: its postmaster's pid, its data directory and every
/// directory it uses (canonical).
pub(super) struct Running {
    pid: u32,
    pgdata: PathBuf,
    uses: Vec<PathBuf>,
}

/// The running postmasters: a postmaster's working directory is its data directory, whose
/// postmaster.pid names it (its backends share the directory, not the pid).
pub(super) fn running_clusters() -> Vec<Running> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cwd = fs::read_link(e.path().join("cwd")).ok()?;
            let text = fs::read_to_string(cwd.join("postmaster.pid")).ok()?;
            if text.lines().next()?.trim().parse::<u32>().ok()? != pid {
                return None;
            }
            let mut uses = vec![fs::canonicalize(&cwd).ok()?];
            let links = fs::read_dir(cwd.join("pg_tblspc"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path());
            uses.extend(
                links
                    .chain([cwd.join("pg_wal")])
                    .filter_map(|p| fs::canonicalize(p).ok()),
            );
            Some(Running {
                pid,
                pgdata: cwd,
                uses,
            })
        })
        .collect()
}

pub(super) fn refuse_in_use(dir: &Path, what: &str, running: &[Running]) -> Result<()> {
    let c = canonical(dir);
    for r in running {
        if let Some(u) = r
            .uses
            .iter()
            .find(|u| c.starts_with(u) || u.starts_with(&c))
        {
            return Err(Error::conflict(format!(
                "{what} {} overlaps {}, which the running cluster in {} (postmaster pid {}) uses: \
                 walship never empties or writes into a running cluster's directories",
                dir.display(),
                u.display(),
                r.pgdata.display(),
                r.pid
            ))
            .with_hint(
                "Restore somewhere new (--pgdata, --tablespace-map OLD=NEW), or stop that server first.",
            ));
        }
    }
    Ok(())
}

/// `dir` with symlinks resolved as far as it exists.
fn canonical(dir: &Path) -> PathBuf {
    let mut rest: Vec<&OsStr> = Vec::new();
    let mut d = dir;
    loop {
        if let Ok(c) = fs::canonicalize(d) {
            return rest.iter().rev().fold(c, |p, n| p.join(n));
        }
        match (d.parent(), d.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                d = parent;
            }
            _ => return dir.to_path_buf(),
        }
    }
}

/// Whether `name` is `PG_<major>_<catversion>`: the directory a cluster keeps in a tablespace.
fn is_version_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("PG_")
        .and_then(|v| v.split_once('_'))
        .is_some_and(|(major, cat)| digits(major) && digits(cat))
}

/// A `PG_<major>_<catversion>` directory in `dir`: a cluster's tablespace.
pub(super) fn version_dir(dir: &Path) -> Option<String> {
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().into_string().ok()?;
        (is_version_name(&name) && e.file_type().ok()?.is_dir()).then_some(name)
    })
}
