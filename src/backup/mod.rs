//! Base backups: the backup stream (a compressed tar with a header first and a manifest last),
//! written by `basebackup` ([`source`]) and read by `restore` ([`unpack`]), stored in the
//! repository as `backups/<id>/` (FORMAT.md, "Base backups").
//!
//! One stream format serves both destinations: the repository stores it as one object, and
//! `basebackup --to` pipes it over SSH into `walship restore --from-stdin` on the standby. So a
//! standby made directly and one restored from the repository went through the same checks.

pub mod catalog;
mod live;
pub mod source;
pub mod stored;
pub mod target;
pub mod unpack;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The first entry of every stream: what the backup is and where its tablespaces lived, so that
/// a restore can check every target directory before it writes a byte.
pub const HEADER_ENTRY: &str = "walship/header.toml";
/// The last entry: every file with its size and SHA-256. A stream without it is incomplete.
pub const MANIFEST_ENTRY: &str = "walship/manifest.toml";
/// Entries below this prefix are the data directory.
pub const DATA_PREFIX: &str = "data/";
/// Entries below `tablespaces/<oid>/` are the contents of tablespace `oid`.
pub const TABLESPACE_PREFIX: &str = "tablespaces/";

/// Where a backup lives in the repository.
pub fn backup_dir(id: &str) -> String {
    format!("backups/{id}")
}
pub const MANIFEST_OBJECT: &str = "manifest.toml";
/// Written first into `backups/<id>/`, before PostgreSQL is asked for a backup: the id is this
/// backup's alone (FORMAT.md, "Base backups").
pub const CLAIM_OBJECT: &str = "claim.toml";

/// How many later seconds a backup tries when the id of its start second is taken.
const CLAIM_TRIES: i64 = 60;

/// Reserve the id of a backup that starts at `started_at`: publish `backups/<id>/claim.toml`
/// with the no-clobber publish, so that of two backups started within the same second exactly
/// one gets the id; the other takes the next second that is free. `who` (TOML lines) says who
/// took it.
pub fn claim_id(
    storage: &dyn crate::storage::Storage,
    started_at: i64,
    who: &str,
) -> Result<String> {
    use std::io::Write;
    for later in 0..CLAIM_TRIES {
        let id = id_for(started_at + later);
        let path = format!("{}/{CLAIM_OBJECT}", backup_dir(&id));
        let mut o = storage.create(&path)?;
        o.write_all(format!("# the backup that took this id\nid = \"{id}\"\n{who}").as_bytes())
            .map_err(|e| Error::io(format!("writing {path}"), e))?;
        if o.commit()? == crate::storage::Publish::Created {
            return Ok(id);
        }
    }
    Err(Error::conflict(format!(
        "backup ids {} to {} are all taken in the repository",
        id_for(started_at),
        id_for(started_at + CLAIM_TRIES - 1)
    ))
    .with_hint("Something starts backups faster than one a second; wait and run basebackup again."))
}

/// A tablespace: its OID (the name of its symlink in pg_tblspc) and its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tablespace {
    pub oid: u32,
    pub location: String,
}

/// The header entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamHeader {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub system_identifier: String,
    pub pg_version: u32,
    #[serde(default)]
    pub tablespaces: Vec<Tablespace>,
}

/// One file of the backup, as read from the primary (and padded or cut to the size it had when
/// it was listed: WAL replay from the backup's start repairs what changed meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The stored data object of a backup in the repository (absent in a `--to` stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredData {
    pub object: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The manifest: the stream's last entry, and `backups/<id>/manifest.toml` (with `stored`),
/// written last, in the repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub label: String,
    pub system_identifier: String,
    pub pg_version: u32,
    pub wal_segment_size: u32,
    pub timeline: u32,
    pub start_lsn: String,
    pub stop_lsn: String,
    /// First segment recovery needs (holds the start location).
    pub start_segment: String,
    /// Last segment recovery needs to be consistent (holds the stop location).
    pub stop_segment: String,
    /// The backup history file PostgreSQL archives for this backup.
    pub backup_record: String,
    /// Seconds since the Unix epoch.
    pub started_at: i64,
    pub stopped_at: i64,
    pub compression: String,
    /// Sum of the file sizes.
    pub original_bytes: u64,
    pub stored: Option<StoredData>,
    #[serde(default)]
    pub tablespaces: Vec<Tablespace>,
    #[serde(default)]
    pub directories: Vec<String>,
    pub files: Vec<FileEntry>,
}

pub const FORMAT_NAME: &str = "walship-backup";
pub const FORMAT_VERSION: u32 = 1;

/// The header and the manifest both name the format; a reader refuses one it does not know.
fn check_format(format: &str, version: u32, what: &str) -> Result<()> {
    if format != FORMAT_NAME || version != FORMAT_VERSION {
        return Err(Error::conflict(format!(
            "{what}: format {format:?} version {version}; this walship reads {FORMAT_NAME} version {FORMAT_VERSION}"
        )));
    }
    Ok(())
}

impl Manifest {
    pub fn parse(text: &str, what: &str) -> Result<Manifest> {
        let m: Manifest = toml::from_str(text).map_err(|e| {
            Error::corrupt(format!("{what}: not a backup manifest: {}", e.message()))
        })?;
        check_format(&m.format, m.version, what)?;
        Ok(m)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a manifest always serializes")
    }
}

impl StreamHeader {
    pub fn parse(text: &str) -> Result<StreamHeader> {
        let h: StreamHeader = toml::from_str(text).map_err(|e| {
            Error::corrupt(format!(
                "backup stream: damaged header entry: {}",
                e.message()
            ))
        })?;
        check_format(&h.format, h.version, "backup stream")?;
        Ok(h)
    }
}

/// A backup id: the start time, UTC, `YYYYMMDDTHHMMSSZ` (sorts by time, safe as a file name).
pub fn id_for(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86400);
    let secs = unix_seconds.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Is `id` a backup id (so that it can be used in a path)?
pub fn valid_id(id: &str) -> bool {
    id.len() == 16
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Check a path from a stream: relative, `/`-separated, no `.`/`..`/empty components. A stream
/// is data from elsewhere; nothing in it may name a file outside the directory it restores into.
pub fn check_entry_path(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\0')
        || path
            .trim_end_matches('/')
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::corrupt(format!(
            "backup stream: unsafe entry path {path:?}"
        )));
    }
    Ok(())
}

/// The complete backups in the repository (those with a manifest), oldest first, and the
/// problems found (a damaged manifest). A backup directory without a manifest is a backup that
/// never finished (or is being written): it is not listed.
pub fn stored_backups(repo: &crate::repo::Repository) -> Result<(Vec<Manifest>, Vec<Error>)> {
    let storage = repo.storage();
    let mut found = Vec::new();
    let mut damaged = Vec::new();
    for dir in storage.list("backups")? {
        if !dir.is_dir || !valid_id(&dir.name) {
            continue;
        }
        let path = format!("{}/{MANIFEST_OBJECT}", backup_dir(&dir.name));
        // Sealed in an encrypted repository: its file list holds a digest of every file.
        let Some(mut r) = repo.open_content(&path)? else {
            continue;
        };
        let mut text = String::new();
        let read =
            std::io::Read::read_to_string(&mut std::io::Read::take(&mut r, 256 << 20), &mut text);
        let parsed = read
            .map_err(|e| Error::corrupt(format!("{path}: {e}")))
            .and_then(|_| Manifest::parse(&text, &path))
            .and_then(|m| {
                if m.id != dir.name || m.stored.is_none() {
                    Err(Error::corrupt(format!(
                        "{path}: describes backup {:?}, not {}",
                        m.id, dir.name
                    )))
                } else {
                    Ok(m)
                }
            });
        match parsed {
            Ok(m) => found.push(m),
            Err(e) => damaged.push(e),
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((found, damaged))
}

pub use crate::repo::object::hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_backups_started_in_the_same_second_get_two_ids() {
        let storage = crate::storage::memory::MemoryStorage::default();
        let t = 1_795_000_000;
        let a = claim_id(&storage, t, "pid = 1\n").unwrap();
        let b = claim_id(&storage, t, "pid = 2\n").unwrap();
        assert_eq!(a, id_for(t));
        assert_eq!(b, id_for(t + 1));
        // the first claim is untouched; a backup a second later skips the taken one too
        let first = storage.files.borrow()[&format!("backups/{a}/{CLAIM_OBJECT}")].clone();
        assert!(String::from_utf8(first).unwrap().contains("pid = 1"));
        assert_eq!(claim_id(&storage, t + 1, "").unwrap(), id_for(t + 2));
        // and when every second is taken, an error, not a shared id
        for i in 0..CLAIM_TRIES {
            let _ = claim_id(&storage, t + 100 + i, "");
        }
        let e = claim_id(&storage, t + 100, "").unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Conflict, "{e}");
    }

    #[test]
    fn ids_are_utc_timestamps() {
        assert_eq!(id_for(0), "19700101T000000Z");
        assert_eq!(id_for(1_795_384_800), "20261122T220000Z");
        assert!(valid_id(&id_for(1_795_384_799)));
        for bad in [
            "",
            "2026",
            "20261123T000000",
            "../../etc/passw",
            "2026112XT000000Z",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for ok in [
            "data/base/1/1259",
            "data/pg_wal/",
            "tablespaces/16384/PG_15/x",
        ] {
            check_entry_path(ok).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "data/../../x",
            "data//x",
            "./data",
            "data/./x",
        ] {
            assert!(check_entry_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifests_round_trip_and_versions_are_checked() {
        let m = Manifest {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: "20261122T210000Z".into(),
            label: "walship 20261122T210000Z".into(),
            system_identifier: "7".into(),
            pg_version: 15,
            wal_segment_size: 16 << 20,
            timeline: 1,
            start_lsn: "0/2000028".into(),
            stop_lsn: "0/2000100".into(),
            start_segment: "000000010000000000000002".into(),
            stop_segment: "000000010000000000000002".into(),
            backup_record: "000000010000000000000002.00000028.backup".into(),
            started_at: 1,
            stopped_at: 2,
            compression: "zstd".into(),
            original_bytes: 3,
            stored: Some(StoredData {
                object: "data.tar.zst".into(),
                bytes: 1,
                sha256: "ab".into(),
            }),
            tablespaces: vec![Tablespace {
                oid: 16384,
                location: "/ts".into(),
            }],
            directories: vec!["data/pg_wal".into()],
            files: vec![FileEntry {
                path: "data/PG_VERSION".into(),
                size: 3,
                sha256: "cd".into(),
            }],
        };
        let back = Manifest::parse(&m.to_toml(), "m").unwrap();
        assert_eq!(back.files, m.files);
        assert_eq!(back.stored, m.stored);
        let newer = m.to_toml().replace("version = 1", "version = 2");
        assert_eq!(
            Manifest::parse(&newer, "m").unwrap_err().kind,
            crate::error::Kind::Conflict
        );
        assert_eq!(
            Manifest::parse("files = 3", "m").unwrap_err().kind,
            crate::error::Kind::Corrupt
        );
    }
}
