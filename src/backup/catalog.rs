//! The backups `restore` can use: PostgreSQL's backup history records (repo::backups) joined
//! with the stored backups (`backups/<id>/`) that they describe. A record alone says that a base
//! backup was taken somewhere (pg_basebackup, a re-seed with `basebackup --to`); only a record
//! with its stored data in the repository is a backup that `restore` can use, so only such a
//! backup is restorable, counts toward retention, and is a reason for prune to remove anything
//! older.
//!
//! Before prune removes a backup because others are kept instead, each of those is checked here
//! (`check_restorable`): a listing says that the names exist, not that the bytes behind them can
//! restore a cluster.
//!
//! `choose` picks the backup a restore (or a drill, which restores the same way) starts from.

use std::io::Read;

use super::{Manifest, backup_dir, stored_backups};
use crate::error::{Error, Result};
use crate::pg::WalFileName;
use crate::pg::walname::segment_name;
use crate::repo::backups::{Backup, parse_lsn, parse_pg_time};
use crate::repo::{ListedObject, Repository};

/// The backup catalog of a repository.
pub struct Catalog {
    /// Every readable backup history record, in start order, with the stored backup it
    /// describes (`Backup::stored`); restorable only with one.
    pub backups: Vec<Backup>,
    /// Every complete stored backup (with a manifest), oldest first.
    pub stored: Vec<Manifest>,
    /// Backup history records that could not be read or parsed.
    pub damaged_records: Vec<Error>,
    /// Stored backups whose manifest could not be read or parsed.
    pub damaged_manifests: Vec<Error>,
}

impl Catalog {
    pub fn read(repo: &Repository, objects: &[ListedObject], segment_size: u32) -> Result<Catalog> {
        let (mut backups, damaged_records) =
            crate::repo::backups::catalog(repo, objects, segment_size)?;
        let (stored, damaged_manifests) = stored_backups(repo)?;
        attach_stored(&mut backups, &stored);
        Ok(Catalog {
            backups,
            stored,
            damaged_records,
            damaged_manifests,
        })
    }

    /// The stored backup a record describes.
    pub fn manifest_of(&self, b: &Backup) -> Option<&Manifest> {
        let id = b.stored.as_deref()?;
        self.stored.iter().find(|m| m.id == id)
    }
}

/// Join records and stored backups: a record is restorable only when a stored backup names it
/// as its `backup_record` (and all its WAL is archived, as `assess` found).
pub fn attach_stored(backups: &mut [Backup], stored: &[Manifest]) {
    for b in backups {
        b.stored = stored
            .iter()
            .rfind(|m| m.backup_record == b.record.name)
            .map(|m| m.id.clone());
        b.restorable &= b.stored.is_some();
    }
}

/// Check that a backup can restore a cluster: its stored data object has the length and
/// SHA-256 its manifest records, and every segment from its start to its stop is present with
/// a valid object header. Reads the whole data object.
pub fn check_restorable(
    repo: &Repository,
    b: &Backup,
    m: &Manifest,
    segment_size: u32,
) -> Result<()> {
    check_stored_object(repo, m)?;
    for n in b.start_segno..=b.stop_segno.max(b.start_segno) {
        let mut found = None;
        for tli in [b.record.start_timeline, b.record.stop_timeline] {
            let name = WalFileName::parse(&segment_name(tli, n, segment_size))?;
            // `object_header` checks the magic, the header check and the name field.
            if repo.object_header(&name)?.is_some() {
                found = Some(name);
                break;
            }
        }
        if found.is_none() {
            return Err(Error::corrupt(format!(
                "backup {}: segment {} of its WAL is missing",
                m.id,
                segment_name(b.record.start_timeline, n, segment_size)
            )));
        }
    }
    Ok(())
}

/// A stored backup's data object has the length and SHA-256 its manifest records.
pub fn check_stored_object(repo: &Repository, m: &Manifest) -> Result<()> {
    use sha2::Digest;
    let Some(stored) = m.stored.as_ref() else {
        return Err(Error::corrupt(format!(
            "stored backup {}: its manifest has no [stored] section",
            m.id
        )));
    };
    let path = format!("{}/{}", backup_dir(&m.id), stored.object);
    let mut r = repo
        .open_content(&path)?
        .ok_or_else(|| Error::corrupt(format!("stored backup {}: {path} is missing", m.id)))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {path}"), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha = super::hex(&hasher.finalize());
    if bytes != stored.bytes || sha != stored.sha256 {
        return Err(Error::corrupt(format!(
            "stored backup {}: {path} is {bytes} bytes with SHA-256 {sha}; its manifest says {} bytes with {}",
            m.id, stored.bytes, stored.sha256
        )));
    }
    Ok(())
}

/// The backup to restore: the one named, else the newest restorable one (ending before the
/// target, if there is one).
pub fn choose(
    repo: &Repository,
    backup: Option<&str>,
    target_time: Option<&str>,
    target_lsn: Option<&str>,
) -> Result<Manifest> {
    let (stored, damaged) = stored_backups(repo)?;
    for e in &damaged {
        crate::log_line!("walship: restore: WARNING: {e}");
    }
    if let Some(id) = backup {
        return stored.into_iter().find(|m| m.id == id).ok_or_else(|| {
            Error::not_found(format!(
                "backup {id} is not in {} (or has no manifest)",
                repo.describe()
            ))
            .with_hint("`walship status` lists the backups.")
        });
    }
    let identity = repo.require_identity()?;
    let listing = repo.list_objects()?;
    let restorable: std::collections::HashSet<String> = {
        let (mut backups, _) =
            crate::repo::backups::catalog(repo, &listing.objects, identity.wal_segment_size)?;
        attach_stored(&mut backups, &stored);
        backups
            .into_iter()
            .filter(|b| b.restorable)
            .map(|b| b.record.name)
            .collect()
    };
    let time_limit = target_time.and_then(parse_pg_time_loose);
    let lsn_limit = target_lsn.and_then(parse_lsn);
    stored.into_iter().rfind(|m| {
        restorable.contains(&m.backup_record)
            && time_limit.is_none_or(|t| m.stopped_at <= t)
            && lsn_limit.is_none_or(|l| parse_lsn(&m.stop_lsn).is_some_and(|s| s <= l))
    })
        .ok_or_else(|| {
            Error::not_found(format!("no restorable backup in {} for this target", repo.describe()))
                .with_hint("Take one with `walship basebackup`; `walship status` shows what is there and what WAL is missing.")
        })
}

/// A recovery_target_time as a DBA writes it: "YYYY-MM-DD HH:MM:SS[.fff][+HH|Z|UTC]".
pub fn parse_pg_time_loose(t: &str) -> Option<i64> {
    let t = t.trim();
    let (date, rest) = t.split_once([' ', 'T'])?;
    let time_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
        .unwrap_or(rest.len());
    let (time, zone) = rest.split_at(time_end);
    let time = time.split('.').next()?;
    let zone = match zone.trim() {
        "" => "UTC",
        z => z,
    };
    parse_pg_time(&format!("{date} {time} {zone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_target_times_are_read_as_dbas_write_them() {
        let t = parse_pg_time_loose("2026-11-22 21:00:00+00").unwrap();
        assert_eq!(parse_pg_time_loose("2026-11-22T21:00:00Z"), Some(t));
        assert_eq!(
            parse_pg_time_loose("2026-11-22 21:00:00.123456 UTC"),
            Some(t)
        );
        assert_eq!(parse_pg_time_loose("2026-11-22 23:00:00+02"), Some(t));
        assert_eq!(parse_pg_time_loose("yesterday"), None);
    }
}
