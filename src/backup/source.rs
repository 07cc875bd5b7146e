//! Reading a running cluster's data directory into a backup stream: first a plan (every
//! directory, file and symlink to copy, what PostgreSQL says to leave out already left out), then
//! the stream itself, one item at a time, each file hashed as it is read.
//!
//! The data directory changes under us while the backup runs; that is what the backup's WAL
//! (from its start location on) repairs. So a file that vanished since the plan is skipped, and a
//! file that grew or shrank is cut or zero-padded to its planned size, as pg_basebackup does: the
//! tar header, written before the data, has promised that size.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use walkdir::WalkDir;

use super::{
    DATA_PREFIX, FileEntry, HEADER_ENTRY, MANIFEST_ENTRY, Manifest, StreamHeader,
    TABLESPACE_PREFIX, Tablespace, hex,
};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Top-level directories copied empty: PostgreSQL recreates their contents (or must not see the
/// primary's: replication slots, WAL).
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_stat_tmp",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// Top-level files left out: the running server's, or those a restore writes itself.
const SKIPPED_TOP_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "backup_manifest",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "standby.signal",
    "recovery.signal",
    "promote",
    super::unpack::INCOMPLETE_MARKER,
];

/// One thing to copy. `path` is the stream path (`data/...` or `tablespaces/<oid>/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Dir {
        path: String,
    },
    File {
        path: String,
        source: PathBuf,
        size: u64,
    },
    Symlink {
        path: String,
        target: PathBuf,
    },
}

/// The tablespaces of the data directory `pgdata` (its `pg_tblspc` links), as [`plan`] finds
/// them, without walking the rest: what a standby is prepared for before the backup starts.
pub fn tablespaces(pgdata: &Path) -> Result<Vec<Tablespace>> {
    let dir = pgdata.join("pg_tblspc");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let Some(oid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let target = match std::fs::read_link(e.path()) {
            Ok(t) => t,
            Err(_) => continue,
        };
        let location = target.to_str().ok_or_else(|| {
            Error::usage(format!(
                "tablespace {oid}: location {} is not UTF-8",
                target.display()
            ))
        })?;
        found.push(Tablespace {
            oid,
            location: location.to_string(),
        });
    }
    found.sort_by_key(|t| t.oid);
    Ok(found)
}

#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Item>,
    pub tablespaces: Vec<Tablespace>,
    pub total_bytes: u64,
    pub files: u64,
}

fn skipped_anywhere(name: &str) -> bool {
    name == "pg_internal.init" || name.starts_with("pgsql_tmp")
}

/// Plan the copy of the data directory `pgdata` and of every tablespace its pg_tblspc links to.
pub fn plan(pgdata: &Path) -> Result<Plan> {
    let mut plan = Plan::default();
    walk(pgdata, DATA_PREFIX, true, &mut plan)?;
    Ok(plan)
}

fn walk(root: &Path, prefix: &str, is_data_dir: bool, plan: &mut Plan) -> Result<()> {
    let mut it = WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = it.next() {
        let entry = match entry {
            Ok(e) => e,
            // A directory dropped while we walk (DROP TABLE, DROP DATABASE): nothing to copy.
            Err(e) if e.io_error().map(|e| e.kind()) == Some(std::io::ErrorKind::NotFound) => {
                continue;
            }
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "reading {}: {e}",
                    e.path().unwrap_or(root).display()
                )));
            }
        };
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir stays below its root")
            .to_str()
            .ok_or_else(|| {
                Error::usage(format!(
                    "{}: a file name that is not UTF-8",
                    entry.path().display()
                ))
            })?
            .to_string();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{rel}");
        let top = is_data_dir && entry.depth() == 1;
        let ft = entry.file_type();
        if skipped_anywhere(&name) {
            if ft.is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if top && rel == "pg_wal" && (ft.is_dir() || ft.is_symlink()) {
            // A pg_wal elsewhere (initdb -X) comes back as a plain directory.
            plan.items.push(Item::Dir { path: path.clone() });
            plan.items.push(Item::Dir {
                path: format!("{path}/archive_status"),
            });
            if ft.is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if ft.is_dir() {
            plan.items.push(Item::Dir { path });
            if top && EMPTY_DIRS.contains(&name.as_str()) {
                it.skip_current_dir();
            }
        } else if ft.is_symlink() {
            let target = match std::fs::read_link(entry.path()) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("reading {}", entry.path().display()), e)),
            };
            let tablespace_oid = is_data_dir
                .then(|| rel.strip_prefix("pg_tblspc/"))
                .flatten()
                .and_then(|oid| oid.parse::<u32>().ok());
            plan.items.push(Item::Symlink {
                path,
                target: target.clone(),
            });
            if let Some(oid) = tablespace_oid {
                let location = target.to_str().ok_or_else(|| {
                    Error::usage(format!(
                        "tablespace {oid}: location {} is not UTF-8",
                        target.display()
                    ))
                })?;
                plan.tablespaces.push(Tablespace {
                    oid,
                    location: location.to_string(),
                });
                walk(&target, &format!("{TABLESPACE_PREFIX}{oid}/"), false, plan)?;
            }
        } else if ft.is_file() {
            if top && SKIPPED_TOP_FILES.contains(&name.as_str()) {
                continue;
            }
            let size = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if e.io_error().map(|e| e.kind()) == Some(std::io::ErrorKind::NotFound) => {
                    continue;
                }
                Err(e) => {
                    return Err(Error::unavailable(format!(
                        "stat {}: {e}",
                        entry.path().display()
                    )));
                }
            };
            plan.total_bytes += size;
            plan.files += 1;
            plan.items.push(Item::File {
                path,
                source: entry.path().to_path_buf(),
                size,
            });
        }
        // sockets, fifos: not part of a cluster
    }
    Ok(())
}

/// Writes the stream: the header entry, then items, then the manifest entry.
pub struct StreamWriter<W: Write> {
    tar: tar::Builder<W>,
    files: Vec<FileEntry>,
    dirs: Vec<String>,
    mtime: u64,
}

fn tar_err(what: &str, e: std::io::Error) -> Error {
    Error::io(format!("writing the backup stream ({what})"), e)
}

impl<W: Write> StreamWriter<W> {
    pub fn new(w: W, header: &StreamHeader) -> Result<StreamWriter<W>> {
        let mtime = u64::try_from(crate::os::now()).unwrap_or(0);
        let mut s = StreamWriter {
            tar: tar::Builder::new(w),
            files: Vec::new(),
            dirs: Vec::new(),
            mtime,
        };
        let text = toml::to_string(header).expect("a header always serializes");
        s.append_bytes(HEADER_ENTRY, text.as_bytes())?;
        Ok(s)
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h
    }

    fn append_bytes(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let mut h = self.header(tar::EntryType::Regular, 0o600, bytes.len() as u64);
        self.tar
            .append_data(&mut h, path, bytes)
            .map_err(|e| tar_err(path, e))
    }

    /// Copy one planned item. Returns the bytes of file data it added.
    pub fn add(&mut self, item: &Item, progress: &Progress) -> Result<u64> {
        match item {
            Item::Dir { path } => {
                let mut h = self.header(tar::EntryType::Directory, 0o700, 0);
                self.tar
                    .append_data(&mut h, path, std::io::empty())
                    .map_err(|e| tar_err(path, e))?;
                self.dirs.push(path.clone());
                Ok(0)
            }
            Item::Symlink { path, target } => {
                let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
                self.tar
                    .append_link(&mut h, path, target)
                    .map_err(|e| tar_err(path, e))?;
                Ok(0)
            }
            Item::File { path, source, size } => {
                let file = match File::open(source) {
                    Ok(f) => f,
                    // dropped since the plan: WAL replay drops it too
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                    Err(e) => return Err(Error::io(format!("reading {}", source.display()), e)),
                };
                let mut reader = PaddedReader {
                    file,
                    remaining: *size,
                    source: source.clone(),
                    hasher: Sha256::new(),
                    progress,
                };
                let mut h = self.header(tar::EntryType::Regular, 0o600, *size);
                let mut buffered = BufReader::with_capacity(256 * 1024, &mut reader);
                self.tar
                    .append_data(&mut h, path, &mut buffered)
                    .map_err(|e| tar_err(path, e))?;
                drop(buffered);
                self.files.push(FileEntry {
                    path: path.clone(),
                    size: *size,
                    sha256: hex(&reader.hasher.finalize()),
                });
                progress.file_done();
                Ok(*size)
            }
        }
    }

    /// A file the backup makes itself (backup_label, tablespace_map), in the manifest like any.
    pub fn add_generated(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        self.append_bytes(path, bytes)?;
        self.files.push(FileEntry {
            path: path.to_string(),
            size: bytes.len() as u64,
            sha256: hex(&Sha256::digest(bytes)),
        });
        Ok(())
    }

    /// Complete `manifest` with every file and directory written, append it as the last entry
    /// and end the tar stream. Returns the inner writer (still to be finished by its owner).
    pub fn finish(mut self, manifest: &mut Manifest) -> Result<W> {
        manifest.files = std::mem::take(&mut self.files);
        manifest.directories = std::mem::take(&mut self.dirs);
        manifest.original_bytes = manifest.files.iter().map(|f| f.size).sum();
        self.append_bytes(MANIFEST_ENTRY, manifest.to_toml().as_bytes())?;
        self.tar
            .into_inner()
            .map_err(|e| tar_err("end of archive", e))
    }
}

/// A file's bytes, exactly `remaining` of them: cut if the file grew, zero-padded if it shrank
/// since the plan. Hashes what it hands out.
struct PaddedReader<'p> {
    file: File,
    remaining: u64,
    source: PathBuf,
    hasher: Sha256,
    progress: &'p Progress,
}

impl Read for PaddedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = match self.file.read(&mut buf[..want]) {
            Ok(0) => {
                buf[..want].fill(0); // shrank (truncated by VACUUM): pad, WAL replay truncates
                want
            }
            Ok(n) => n,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", self.source.display()),
                ));
            }
        };
        self.remaining -= n as u64;
        self.hasher.update(&buf[..n]);
        self.progress.add(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_plan_leaves_out_what_postgresql_says_to_and_follows_tablespaces() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        let ts = d.path().join("ts");
        for dir in [
            "base/1",
            "base/pgsql_tmp",
            "global",
            "pg_wal/archive_status",
            "pg_replslot/slot",
            "pg_tblspc",
        ] {
            std::fs::create_dir_all(data.join(dir)).unwrap();
        }
        std::fs::create_dir_all(ts.join("PG_15_1/5")).unwrap();
        for (f, n) in [
            ("PG_VERSION", 3),
            ("postmaster.pid", 10),
            ("base/1/1259", 8192),
            ("base/1/pg_internal.init", 100),
            ("base/pgsql_tmp/pgsql_tmp1.0", 10),
            ("global/pg_control", 8192),
            ("pg_wal/000000010000000000000001", 100),
            ("pg_replslot/slot/state", 10),
        ] {
            std::fs::write(data.join(f), vec![1u8; n]).unwrap();
        }
        std::fs::write(ts.join("PG_15_1/5/16385"), vec![2u8; 8192]).unwrap();
        symlink(&ts, data.join("pg_tblspc/16384")).unwrap();

        let plan = plan(&data).unwrap();
        let paths: Vec<&str> = plan
            .items
            .iter()
            .map(|i| match i {
                Item::Dir { path } | Item::File { path, .. } | Item::Symlink { path, .. } => {
                    path.as_str()
                }
            })
            .collect();
        for want in [
            "data/PG_VERSION",
            "data/base/1/1259",
            "data/global/pg_control",
            "data/pg_wal",
            "data/pg_wal/archive_status",
            "data/pg_replslot",
            "data/pg_tblspc/16384",
            "tablespaces/16384/PG_15_1/5/16385",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        for unwanted in [
            "data/postmaster.pid",
            "data/base/1/pg_internal.init",
            "data/base/pgsql_tmp",
            "data/pg_wal/000000010000000000000001",
            "data/pg_replslot/slot",
        ] {
            assert!(
                !paths.iter().any(|p| p.starts_with(unwanted)),
                "{unwanted} copied"
            );
        }
        assert_eq!(
            plan.tablespaces,
            vec![Tablespace {
                oid: 16384,
                location: ts.to_str().unwrap().into()
            }]
        );
        assert_eq!(plan.total_bytes, 3 + 8192 * 3);
    }
}
