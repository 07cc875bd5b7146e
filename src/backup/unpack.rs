//! Turning a backup stream into a data directory, checking everything on the way: every entry
//! path (nothing may land outside the target), every file against the manifest (size and
//! SHA-256), the whole stream against the repository's record of it.
//!
//! A half-restored directory must never start. So a marker file goes in first (`target`:
//! preparing the directories, the marker and its lock), and `global/pg_control` — without which
//! no postmaster starts — is held back in memory and written last, after every other byte is on
//! disk and checked. A rerun finds the marker and starts over without `--force`: the directory
//! is its own leftover, not somebody's data.
//!
//! This file is the order of things (header, entries, manifest, the stream's own checksum, then
//! links, tablespace_map and pg_control); what an entry may be and where it may go is in
//! `entry`, how its bytes are written in `write`, the stream below tar in `stream`.

mod entry;
mod stream;
mod tablespace_map;
#[cfg(test)]
mod tests;
mod write;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use self::entry::{Kind, Link, destination, entry_path};
use self::stream::{Hashing, read_bytes, read_small, sniff, stream_err};
use self::write::{create_dirs, create_new, write_err, write_file};
pub use super::target::{INCOMPLETE_MARKER, Prepared, READY, Target, prepare};
use super::{DATA_PREFIX, HEADER_ENTRY, MANIFEST_ENTRY, Manifest, StoredData, StreamHeader, hex};
use crate::error::{Error, Result};
use crate::progress::Progress;

const PG_CONTROL: &str = "global/pg_control";
const TABLESPACE_MAP: &str = "tablespace_map";

/// A restored directory, checked, whose pg_control is not yet written.
pub struct Restored {
    pub manifest: Manifest,
    pub pgdata: PathBuf,
    /// (oid, directory) of each tablespace as restored.
    pub tablespaces: Vec<(u32, PathBuf)>,
    pub stream_bytes: u64,
    pg_control: Vec<u8>,
    /// The marker's lock, held until the marker is removed.
    _lock: File,
}

/// Read a stream into a prepared target. `expected`: the repository's record of the stream
/// (length and SHA-256), checked once it has all been read.
pub fn unpack(
    input: impl Read,
    prepared: Prepared,
    expected: Option<&StoredData>,
    progress: &Progress,
) -> Result<Restored> {
    let Prepared {
        pgdata,
        tablespaces,
        expected: expected_tablespaces,
        lock,
    } = prepared;
    let pgdata = &pgdata;
    let mut hashing = Hashing::new(input);
    let mut buffered = BufReader::with_capacity(1 << 20, &mut hashing);
    let first = buffered
        .fill_buf()
        .map_err(|e| Error::unavailable(format!("reading the backup stream: {e}")))?;
    if first.is_empty() {
        return Err(Error::corrupt("the backup stream is empty")
            .with_hint("The sender stopped before sending anything; see its messages."));
    }
    let compression = sniff(first);
    let decoder = compression
        .decoder(&mut buffered)
        .map_err(|e| Error::corrupt(format!("backup stream: {e}")))?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(|e| stream_err(&e))?;

    // The header first: the tablespaces must be those the target was prepared for.
    let header = {
        let mut e = entries
            .next()
            .ok_or_else(|| Error::corrupt("backup stream: no entries"))?
            .map_err(|e| stream_err(&e))?;
        if entry_path(&e)? != HEADER_ENTRY {
            return Err(Error::corrupt(
                "backup stream: the first entry is not walship's header (not a walship backup?)",
            ));
        }
        StreamHeader::parse(&read_small(&mut e, 1 << 20)?)?
    };
    let mut got = header.tablespaces.clone();
    got.sort_by_key(|t| t.oid);
    if got != expected_tablespaces {
        return Err(Error::corrupt(format!(
            "backup stream: its tablespaces {got:?} are not the {expected_tablespaces:?} the restore prepared for"
        )));
    }

    let mut received: HashMap<String, (u64, String)> = HashMap::new();
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut skipped_links: Vec<String> = Vec::new();
    let mut pg_control = None;
    let mut tablespace_map = None;
    let mut manifest = None;
    for e in entries {
        let mut e = e.map_err(|e| stream_err(&e))?;
        let path = entry_path(&e)?;
        if manifest.is_some() {
            return Err(Error::corrupt(format!(
                "backup stream: entry {path} after the manifest"
            )));
        }
        if path == MANIFEST_ENTRY {
            manifest = Some(Manifest::parse(
                &read_small(&mut e, 256 << 20)?,
                "backup stream manifest",
            )?);
            continue;
        }
        let dest = destination(&path, pgdata, &tablespaces)?;
        match entry::kind(&e, &path)? {
            Kind::Dir => create_dirs(&dest)?,
            Kind::Symlink => match entry::symlink(&e, &path, &dest, &tablespaces, &symlinks)? {
                // Created at the end, so that no file of the stream is ever written through one.
                Link::Tablespace(to) => symlinks.push((dest, to)),
                Link::Skipped(link) => skipped_links.push(link),
            },
            Kind::File => {
                // pg_control is held back to be written last; tablespace_map to be rewritten.
                let rel = path.strip_prefix(DATA_PREFIX);
                let (size, sha) = if rel == Some(PG_CONTROL) || rel == Some(TABLESPACE_MAP) {
                    let bytes = read_bytes(&mut e, 1 << 20)?;
                    let digest = hex(&Sha256::digest(&bytes));
                    let size = bytes.len() as u64;
                    if rel == Some(PG_CONTROL) {
                        pg_control = Some(bytes);
                    } else {
                        tablespace_map = Some(bytes);
                    }
                    (size, digest)
                } else {
                    write_file(&mut e, &dest, progress)?
                };
                progress.file_done();
                received.insert(path, (size, sha));
            }
        }
    }
    let manifest = manifest.ok_or_else(|| {
        Error::corrupt("backup stream ended before its manifest: the backup is incomplete")
            .with_hint(
                "The transfer was cut or the backup never finished. Take or choose another backup.",
            )
    })?;
    check_against_manifest(&manifest, &header, &received)?;
    // Read what the tar reader left (its end blocks, the compressor's trailer), then compare.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|e| stream_err(&e))?;
    std::io::copy(&mut buffered, &mut std::io::sink()).map_err(|e| stream_err(&e))?;
    drop(buffered);
    if let Some(want) = expected {
        let got = hex(&hashing.hasher.clone().finalize());
        if got != want.sha256 || hashing.bytes != want.bytes {
            return Err(Error::corrupt(format!(
                "backup object {}: {} bytes with SHA-256 {got}, the manifest says {} bytes with {}",
                want.object, hashing.bytes, want.bytes, want.sha256
            )));
        }
    }
    for l in &skipped_links {
        crate::log_line!(
            "walship: restore: WARNING: symlink {l} not restored: a restore makes no link but \
             its tablespaces'; recreate it if the server needs it"
        );
    }
    for (link, to) in symlinks {
        // symlink(2) never replaces what is there.
        std::os::unix::fs::symlink(&to, &link).map_err(|e| write_err(&link, e))?;
    }
    if let Some(map) = tablespace_map {
        let p = pgdata.join(TABLESPACE_MAP);
        let out = tablespace_map::rewrite(&map, &tablespaces);
        create_new(&p).and_then(|mut f| f.write_all(&out).map_err(|e| write_err(&p, e)))?;
    }
    let pg_control =
        pg_control.ok_or_else(|| Error::corrupt("backup stream: no global/pg_control"))?;
    let mut tablespaces: Vec<(u32, PathBuf)> = tablespaces.into_iter().collect();
    tablespaces.sort();
    Ok(Restored {
        manifest,
        pgdata: pgdata.clone(),
        tablespaces,
        stream_bytes: hashing.bytes,
        pg_control,
        _lock: lock,
    })
}

/// Every file the manifest lists arrived, with its size and SHA-256, and nothing else did.
fn check_against_manifest(
    manifest: &Manifest,
    header: &StreamHeader,
    received: &HashMap<String, (u64, String)>,
) -> Result<()> {
    if manifest.id != header.id {
        return Err(Error::corrupt(format!(
            "backup stream: the header says backup {}, the manifest {}",
            header.id, manifest.id
        )));
    }
    for f in &manifest.files {
        match received.get(&f.path) {
            None => {
                return Err(Error::corrupt(format!(
                    "backup stream: {} is in the manifest but not in the stream",
                    f.path
                )));
            }
            Some((size, sha)) if *size != f.size || *sha != f.sha256 => {
                return Err(Error::corrupt(format!(
                    "backup stream: {}: {size} bytes with SHA-256 {sha}, the manifest says {} bytes with {}",
                    f.path, f.size, f.sha256
                )));
            }
            Some(_) => {}
        }
    }
    if received.len() != manifest.files.len() {
        return Err(Error::corrupt(format!(
            "backup stream: {} files, the manifest lists {}",
            received.len(),
            manifest.files.len()
        )));
    }
    Ok(())
}

impl Restored {
    /// Make it startable as a server that recovers: recovery `settings` (appended to
    /// postgresql.auto.conf) and the `signal` file go in before pg_control, so a directory that
    /// can start is configured. Both are made durable by [`Restored::complete`]'s syncfs.
    pub fn finish(self, settings: &str, signal: &str) -> Result<Manifest> {
        crate::pg::server::append_auto_conf(&self.pgdata, settings)?;
        let signal = self.pgdata.join(signal);
        fs::write(&signal, b"")
            .map_err(|e| Error::io(format!("writing {}", signal.display()), e))?;
        self.complete()
    }

    /// Make it startable: everything written so far durable (syncfs of each file system), then
    /// pg_control (temp, fsync, rename, fsync), then the marker removed.
    pub fn complete(self) -> Result<Manifest> {
        let mut dirs = vec![self.pgdata.clone()];
        dirs.extend(self.tablespaces.iter().map(|(_, d)| d.clone()));
        for d in &dirs {
            let f = File::open(d).map_err(|e| Error::io(format!("opening {}", d.display()), e))?;
            crate::os::syncfs(&f).map_err(|e| Error::io(format!("syncfs {}", d.display()), e))?;
        }
        let global = self.pgdata.join("global");
        let tmp = global.join(".pg_control.walship.tmp");
        let mut f = create_new(&tmp)?;
        f.write_all(&self.pg_control)
            .and_then(|_| f.sync_all())
            .map_err(|e| write_err(&tmp, e))?;
        // A link, not a rename: it fails rather than replace a pg_control that is there.
        let pg_control = global.join("pg_control");
        fs::hard_link(&tmp, &pg_control).map_err(|e| write_err(&pg_control, e))?;
        fs::remove_file(&tmp).map_err(|e| Error::io(format!("removing {}", tmp.display()), e))?;
        crate::storage::local::sync_dir(&global)?;
        let marker = self.pgdata.join(INCOMPLETE_MARKER);
        fs::remove_file(&marker)
            .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
        crate::storage::local::sync_dir(&self.pgdata)?;
        Ok(self.manifest)
    }
}
