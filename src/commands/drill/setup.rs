//! What `walship drill` settles before it restores a byte: which backup, whether the scratch
//! directory is a safe place for it (not inside the repository or a live data directory) and has
//! room for it, where the archive it replays ends, and the settings that keep the copy private
//! (no TCP, no archiving, no primary, the archive cut at that end).

use std::path::Path;

use super::DrillArgs;
use super::scratch::Scratch;
use crate::backup::Manifest;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::pg::WalFileName;
use crate::repo::Repository;

/// Room for the copy beyond its files and WAL: the prefetch spool, the segment the copy opens
/// on its new timeline, and its log.
pub(super) fn slack(segment_size: u64, prefetch: u32) -> u64 {
    (u64::from(prefetch) + 2) * segment_size + (16 << 20)
}

/// How many bytes are missing on the scratch file system, if any.
pub(super) fn space_shortfall(needed: u64, free: u64) -> Option<u64> {
    (needed > free).then(|| needed - free)
}

/// The scratch directory must not lie inside the repository (the drill would write there) or
/// inside the configured data directory (it would restore into a live cluster's tree).
pub(super) fn refuse_scratch_inside(config: &Config, scratch: &Path) -> Result<()> {
    // what a path resolves to, for a scratch directory that does not exist yet too
    let resolved = |p: &Path| {
        p.canonicalize().unwrap_or_else(|_| {
            match (
                p.parent().and_then(|d| d.canonicalize().ok()),
                p.file_name(),
            ) {
                (Some(d), Some(n)) => d.join(n),
                _ => p.to_path_buf(),
            }
        })
    };
    let repo = match config.repo.as_deref().map(crate::storage::Location::parse) {
        Some(Ok(crate::storage::Location::Local(p))) => Some(p),
        _ => None,
    };
    let scratch = resolved(scratch);
    for (what, dir) in [
        ("the repository", repo),
        ("the data directory", config.pgdata.clone()),
    ] {
        if let Some(dir) = dir
            && scratch.starts_with(resolved(&dir))
        {
            return Err(Error::usage(format!(
                "scratch directory {} is inside {what} {}",
                scratch.display(),
                dir.display()
            ))
            .with_hint(
                "Give the drill a directory of its own, on a file system with room for the copy.",
            ));
        }
    }
    Ok(())
}

/// The last segment archived now, on the newest timeline that has one: the end of the archive
/// this drill replays to (later segments are refused by its restore_command).
pub(super) fn archive_end(repo: &Repository, segment_size: u32) -> Result<WalFileName> {
    let listing = repo.list_objects()?;
    crate::repo::inventory::summarize(&listing, segment_size)
        .into_iter()
        .filter(|t| !t.last.is_empty())
        .max_by_key(|t| t.timeline)
        .map(|t| WalFileName::parse(&t.last))
        .transpose()?
        .ok_or_else(|| Error::not_found(format!("{} holds no WAL segment", repo.describe())))
}

/// The backup to drill: restore's choice; a repository whose backups all live elsewhere
/// (pg_basebackup) is told apart from one with none.
pub(super) fn choose(repo: &Repository, args: &DrillArgs) -> Result<Manifest> {
    crate::backup::catalog::choose(
        repo,
        args.backup.as_deref(),
        args.target_time.as_deref(),
        None,
    )
    .map_err(|e| {
        if e.kind != Kind::NotFound || args.backup.is_some() {
            return e;
        }
        let stored = crate::backup::stored_backups(repo)
            .map(|(s, _)| s.len())
            .unwrap_or(0);
        if stored == 0 {
            Error::not_found(format!(
                "{} holds no stored base backup: nothing a drill can restore",
                repo.describe()
            ))
            .with_hint(
                "Backups taken with pg_basebackup (or basebackup --to) leave only their backup \
                 history file in the repository, not their data; take one with \
                 `walship basebackup`.",
            )
        } else {
            e
        }
    })
}

/// The copy's settings, after restore's: a private socket, no TCP, archiving off, no primary,
/// no reader hold (a drill writes nothing to the repository but its record), and the archive cut
/// at `end`.
pub(super) fn copy_settings(
    config: &Config,
    args: &DrillArgs,
    scratch: &Scratch,
    end: &WalFileName,
    port: u16,
) -> Result<String> {
    let q = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let mut s = format!(
        "\n# written by walship drill: a throwaway copy that nothing may reach or follow\n\
         restore_command = {}\n\
         archive_mode = 'off'\narchive_command = ''\narchive_cleanup_command = ''\n\
         recovery_end_command = ''\nprimary_conninfo = ''\nprimary_slot_name = ''\n\
         synchronous_standby_names = ''\nrecovery_target_timeline = 'latest'\n\
         hot_standby = 'on'\nlisten_addresses = ''\nport = {port}\n\
         unix_socket_directories = {}\nunix_socket_permissions = '0700'\nhba_file = {}\n\
         logging_collector = 'off'\nlog_destination = 'stderr'\ncluster_name = 'walship-drill'\n",
        q(&config.server_command(&format!("fetch --until {} %f %p", end.as_str()))?),
        q(&scratch.dir.display().to_string()),
        q(&scratch.dir.join("pg_hba.conf").display().to_string()),
    );
    if let Some(t) = &args.target_time {
        s.push_str(&format!(
            "recovery_target_time = {}\nrecovery_target_action = 'promote'\n",
            q(t)
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_space_check_refuses_exactly_when_more_is_needed_than_is_free() {
        assert_eq!(space_shortfall(100, 100), None);
        assert_eq!(space_shortfall(100, 1000), None);
        assert_eq!(space_shortfall(101, 100), Some(1));
        assert_eq!(space_shortfall(8 << 20, 0), Some(8 << 20));
        // the working room grows with the prefetch window
        assert!(slack(16 << 20, 8) > slack(16 << 20, 0));
    }
}
