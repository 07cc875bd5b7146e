//! A stored backup (`backups/<id>/` with its data object, FORMAT.md "Base backups") read back out
//! of the repository into a target: what `restore` and `drill` both do with the backup they
//! chose. The object is checked against the manifest's `[stored]` length and SHA-256 as it
//! streams, every file against the manifest (`unpack`).

use super::unpack::{self, Restored, Target};
use super::{Manifest, backup_dir};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::units::human_bytes;

/// Unpack stored backup `m` from `repo` into `target`, every file checked against the manifest
/// and the object against `[stored]`; pg_control is not written yet (see [`Restored::finish`]).
pub fn unpack_stored(repo: &Repository, m: &Manifest, target: &Target) -> Result<Restored> {
    let stored = m.stored.clone().ok_or_else(|| {
        Error::not_found(format!(
            "backup {}: its data is not in the repository (no [stored] in its manifest)",
            m.id
        ))
    })?;
    let path = format!("{}/{}", backup_dir(&m.id), stored.object);
    let reader = repo.open_content(&path)?.ok_or_else(|| {
        Error::corrupt(format!(
            "backup {}: {path} is missing from the repository",
            m.id
        ))
    })?;
    crate::log_line!(
        "walship: restore: backup {} ({}, WAL {}..{}) into {}",
        m.id,
        human_bytes(m.original_bytes),
        m.start_segment,
        m.stop_segment,
        target.pgdata.display()
    );
    let prepared = unpack::prepare(target, &format!("backup {}", m.id), &m.tablespaces)?;
    let progress = Progress::new("restore", m.original_bytes);
    let r = unpack::unpack(reader, prepared, Some(&stored), &progress)?;
    progress.finish();
    Ok(r)
}
