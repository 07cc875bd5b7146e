//! Reader holds (FORMAT.md, "Readers"): `readers/<id>.<written>.toml`, published by
//! `walship restore` before it reads a backup, so that prune keeps the WAL a restore in progress
//! will fetch: everything from `needs_from` on. The restored server renews its hold at every
//! restartpoint (archive_cleanup_command `walship reader advance ID %r`) and removes it when
//! recovery ends (recovery_end_command `walship reader end ID`). A hold that is not renewed
//! expires: a reader that crashed or was abandoned stops holding WAL after `HOLD`.
//!
//! A renewal publishes a new version (a new name: the no-clobber publish works on every
//! backend, and SFTP has no atomic replace) and then removes the older ones, so that a hold is
//! never absent; while two versions exist, prune honours the earliest `needs_from`.

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Repository;
use crate::error::{Error, Result};
use crate::os::{hostname, now};
use crate::pg::{WalFileName, WalKind};

/// How long a hold lasts without a renewal. A restore's unpacking and a standby's pauses
/// between restartpoints are hours, not days.
pub const HOLD: Duration = Duration::from_secs(7 * 86_400);
pub const READERS_DIR: &str = "readers";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderRecord {
    pub id: String,
    pub host: String,
    pub pgdata: String,
    /// The backup being restored.
    pub backup: String,
    /// The first segment the reader may still fetch: nothing at or after its segment number is
    /// removed, on any timeline.
    pub needs_from: String,
    /// Seconds since the Unix epoch.
    pub written: i64,
    pub expires: i64,
}

/// A reader id is part of a file name: letters, digits and `-` only.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn check_id(id: &str) -> Result<()> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "reader id {id:?}: only letters, digits and '-' (at most 64)"
        )))
    }
}

/// A new id for a restore of `backup`: unique across hosts and processes.
pub fn new_id(backup: &str) -> String {
    let host: String = hostname()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect();
    format!("{backup}-{host}-{}", std::process::id())
}

impl ReaderRecord {
    pub fn new(id: &str, pgdata: &str, backup: &str, needs_from: &WalFileName) -> ReaderRecord {
        let t = now();
        ReaderRecord {
            id: id.to_string(),
            host: hostname(),
            pgdata: pgdata.to_string(),
            backup: backup.to_string(),
            needs_from: needs_from.as_str().to_string(),
            written: t,
            expires: t + HOLD.as_secs() as i64,
        }
    }

    /// The segment number from which this reader holds WAL.
    pub fn segment_number(&self, segment_size: u32) -> Result<u64> {
        let n = WalFileName::parse(&self.needs_from)?;
        if n.kind() != WalKind::Segment {
            return Err(Error::corrupt(format!(
                "reader record {}: needs_from {} is not a segment",
                self.id, self.needs_from
            )));
        }
        n.segment_number(segment_size)
    }

    fn path(&self) -> String {
        format!("{READERS_DIR}/{}.{}.toml", self.id, self.written)
    }
}

/// One version of a reader's record, as listed.
pub struct ListedReader {
    pub path: String,
    pub record: ReaderRecord,
}

impl Repository {
    /// Publish a version of a reader's hold, then remove its older versions.
    pub fn write_reader(&self, record: &ReaderRecord) -> Result<()> {
        check_id(&record.id)?;
        let path = record.path();
        let mut f = self.storage.create(&path)?;
        f.write_all(
            toml::to_string(record)
                .expect("a reader record serializes")
                .as_bytes(),
        )
        .map_err(|e| Error::io(format!("writing {}/{path}", self.describe()), e))?;
        // AlreadyExists: a version written in the same second; either holds.
        f.commit()?;
        self.remove_reader_versions(&record.id, Some(&path))
    }

    /// Remove every version of reader `id`'s hold but `keep`.
    pub fn remove_reader_versions(&self, id: &str, keep: Option<&str>) -> Result<()> {
        check_id(id)?;
        let prefix = format!("{id}.");
        let mut removed = false;
        for e in self.storage.list(READERS_DIR)? {
            let path = format!("{READERS_DIR}/{}", e.name);
            if !e.is_dir && e.name.starts_with(&prefix) && Some(path.as_str()) != keep {
                removed |= self.storage.remove(&path)?;
            }
        }
        if removed {
            self.storage.sync_directory(READERS_DIR)?;
        }
        Ok(())
    }

    /// Every version of every reader's hold, and the files that are not reader records (each
    /// an error: a hold that cannot be read could be the one that matters).
    pub fn list_readers(&self) -> Result<(Vec<ListedReader>, Vec<Error>)> {
        let mut found = Vec::new();
        let mut damaged = Vec::new();
        for e in self.storage.list(READERS_DIR)? {
            let path = format!("{READERS_DIR}/{}", e.name);
            if e.is_dir || !e.name.ends_with(".toml") {
                damaged.push(Error::corrupt(format!(
                    "{}/{path}: not a reader record",
                    self.describe()
                )));
                continue;
            }
            match self.read_toml::<ReaderRecord>(&path, "a reader record") {
                Ok(Some(r)) if valid_id(&r.id) && e.name.starts_with(&format!("{}.", r.id)) => {
                    found.push(ListedReader { path, record: r })
                }
                Ok(Some(r)) => damaged.push(Error::corrupt(format!(
                    "{}/{path}: names reader {:?}, not the one its name says",
                    self.describe(),
                    r.id
                ))),
                Ok(None) => {} // removed meanwhile
                Err(e) => damaged.push(e),
            }
        }
        Ok((found, damaged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    #[test]
    fn a_renewed_hold_replaces_its_older_versions_and_end_removes_it() {
        let storage = MemoryStorage::default();
        let repo = Repository::open(Box::new(storage.clone())).unwrap();
        let seg = WalFileName::parse("000000010000000000000005").unwrap();
        let mut r = ReaderRecord::new("b-host-1", "/pg", "b", &seg);
        repo.write_reader(&r).unwrap();
        let other = ReaderRecord::new("b-host-2", "/pg2", "b", &seg);
        repo.write_reader(&other).unwrap();
        r.written += 10;
        r.needs_from = "000000010000000000000009".into();
        repo.write_reader(&r).unwrap();
        let (listed, damaged) = repo.list_readers().unwrap();
        assert!(damaged.is_empty());
        let mine: Vec<_> = listed.iter().filter(|l| l.record.id == r.id).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].record.segment_number(16 << 20).unwrap(), 9);
        repo.remove_reader_versions(&r.id, None).unwrap();
        let (listed, _) = repo.list_readers().unwrap();
        assert_eq!(listed.len(), 1, "the other reader's hold stays");
        assert_eq!(listed[0].record.id, other.id);
        // a reader id never leaves readers/
        assert!(repo.remove_reader_versions("../wal", None).is_err());
        storage
            .files
            .borrow_mut()
            .insert("readers/x.1.toml".into(), b"nonsense = [".to_vec());
        assert_eq!(repo.list_readers().unwrap().1.len(), 1);
    }
}
