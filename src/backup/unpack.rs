//! Turning a backup stream into a data directory, checking everything on the way: every entry
//! path (nothing may land outside the target), every file against the manifest (size and
//! SHA-256), the whole stream against the repository's record of it.
//!
//! A half-restored directory must never start. So a marker file goes in first, and
//! `global/pg_control` — without which no postmaster starts — is held back in memory and written
//! last, after every other byte is on disk and checked. A rerun finds the marker and starts over
//! without `--force`: the directory is its own leftover, not somebody's data.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use super::target::{INCOMPLETE_MARKER, Prepared, READY, Target, prepare};
use super::{
    DATA_PREFIX, HEADER_ENTRY, MANIFEST_ENTRY, Manifest, StoredData, StreamHeader,
    TABLESPACE_PREFIX, check_entry_path, hex,
};
use crate::compress::Compression;
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

fn write_err(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("writing {}", path.display()), e)
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The compression of a stream, from its first bytes.
fn sniff(first: &[u8]) -> Compression {
    if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if first.starts_with(b"BZh") {
        Compression::Bzip2
    } else {
        Compression::None
    }
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
    let mut hashing = Hashing {
        inner: input,
        hasher: Sha256::new(),
        bytes: 0,
    };
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
        let kind = e.header().entry_type();
        if kind.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dest)
                .map_err(|e| write_err(&dest, e))?;
        } else if kind.is_symlink() {
            // Only a declared tablespace's link, to the directory prepared for it: a link the
            // stream chose could point into another cluster (a `global` link to its pg_control,
            // a postgresql.auto.conf the recovery settings would then be appended to).
            let link = e.link_name().ok().flatten().map(|l| l.into_owned());
            let link = link
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
                .to_string();
            let oid = path.strip_prefix("data/pg_tblspc/");
            match oid.and_then(|o| tablespaces.get(&o.parse().ok()?)) {
                Some(_) if symlinks.iter().any(|(l, _)| *l == dest) => {
                    return Err(Error::corrupt(format!(
                        "backup stream: symlink {path} twice"
                    )));
                }
                // Created at the end, so that no file of the stream is ever written through one.
                Some(to) => symlinks.push((dest, to.clone())),
                None if oid.is_some() => {
                    return Err(Error::corrupt(format!(
                        "backup stream: symlink {path} -> {link} is the link of a tablespace the \
                         header does not declare"
                    ))
                    .with_hint(
                        "The stream was not written by walship basebackup, or was altered.",
                    ));
                }
                // A link on the primary (a certificate, a configuration file kept elsewhere):
                // not made, and said, so that the DBA recreates it if the server needs it.
                None => skipped_links.push(format!("{path} -> {link}")),
            }
        } else if kind.is_file() {
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
        } else {
            return Err(Error::corrupt(format!(
                "backup stream: entry {path} is neither a file, a directory nor a symlink"
            )));
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
        let out = rewrite_tablespace_map(&map, &tablespaces);
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

/// `tablespace_map` with each restored tablespace's path replaced by the directory it was
/// restored to. The file is PostgreSQL's: one `<oid> <path>` entry per line, where a backslash
/// makes the next character literal (so a path may hold a line break, a backslash); read and
/// written that way, or PostgreSQL would link a tablespace to another path at startup.
fn rewrite_tablespace_map(map: &[u8], tablespaces: &HashMap<u32, PathBuf>) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::with_capacity(map.len());
    let mut entry: Vec<u8> = Vec::new(); // raw bytes, escapes kept
    let mut escaped = false;
    let finish = |entry: &mut Vec<u8>, out: &mut Vec<u8>| {
        if entry.is_empty() {
            return;
        }
        let oid = entry
            .iter()
            .position(|&b| b == b' ')
            .and_then(|sp| std::str::from_utf8(&entry[..sp]).ok()?.parse::<u32>().ok());
        match oid.and_then(|oid| Some((oid, tablespaces.get(&oid)?))) {
            Some((oid, dir)) => {
                out.extend_from_slice(format!("{oid} ").as_bytes());
                for &b in dir.as_os_str().as_bytes() {
                    if matches!(b, b'\\' | b'\n' | b'\r') {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
            }
            None => out.extend_from_slice(entry),
        }
        out.push(b'\n');
        entry.clear();
    };
    for &b in map {
        if !escaped && (b == b'\n' || b == b'\r') {
            finish(&mut entry, &mut out);
            continue;
        }
        escaped = !escaped && b == b'\\';
        entry.push(b);
    }
    finish(&mut entry, &mut out);
    out
}

fn stream_err(e: &std::io::Error) -> Error {
    Error::corrupt(format!("backup stream: {e}"))
        .with_hint("The stream is damaged or was cut short; nothing restored from it can start.")
}

fn entry_path<R: Read>(e: &tar::Entry<R>) -> Result<String> {
    let p = e.path().map_err(|e| stream_err(&e))?;
    let s = p
        .to_str()
        .ok_or_else(|| Error::corrupt("backup stream: an entry path that is not UTF-8"))?
        .trim_end_matches('/')
        .to_string();
    check_entry_path(&s)?;
    Ok(s)
}

fn read_small(r: &mut impl Read, max: u64) -> Result<String> {
    String::from_utf8(read_bytes(r, max)?)
        .map_err(|_| Error::corrupt("backup stream: a walship entry that is not UTF-8"))
}

fn read_bytes(r: &mut impl Read, max: u64) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    r.take(max)
        .read_to_end(&mut b)
        .map_err(|e| stream_err(&e))?;
    Ok(b)
}

/// Where an entry goes. Nothing below a pg_tblspc link: tablespace files come as
/// `tablespaces/<oid>/...` and are written to the tablespace's own directory.
fn destination(path: &str, pgdata: &Path, tablespaces: &HashMap<u32, PathBuf>) -> Result<PathBuf> {
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

fn write_file(r: &mut impl Read, dest: &Path, progress: &Progress) -> Result<(u64, String)> {
    if let Some(parent) = dest.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| write_err(parent, e))?;
    }
    let mut f = create_new(dest)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream_err(&e)),
        };
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(|e| write_err(dest, e))?;
        size += n as u64;
        progress.add(n as u64);
    }
    Ok((size, hex(&hasher.finalize())))
}

/// A new file, mode 0600: never through a symlink, never over something already there.
fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| write_err(path, e))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::source::{Item, StreamWriter, plan};
    use crate::backup::{FORMAT_NAME, FORMAT_VERSION};

    fn header() -> StreamHeader {
        StreamHeader {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: "20261122T210000Z".into(),
            system_identifier: "1".into(),
            pg_version: 15,
            tablespaces: Vec::new(),
        }
    }

    fn manifest() -> Manifest {
        toml::from_str(&format!(
            "format = '{FORMAT_NAME}'\nversion = {FORMAT_VERSION}\nid = '20261122T210000Z'\nlabel = 'l'\n\
             system_identifier = '1'\npg_version = 15\nwal_segment_size = 16777216\ntimeline = 1\n\
             start_lsn = '0/2000028'\nstop_lsn = '0/2000100'\nstart_segment = '000000010000000000000002'\n\
             stop_segment = '000000010000000000000002'\nbackup_record = 'x'\nstarted_at = 0\nstopped_at = 0\n\
             compression = 'zstd'\noriginal_bytes = 0\nfiles = []\n"
        ))
        .unwrap()
    }

    /// A small data directory and its backup stream.
    fn stream_in(dir: &Path, compression: Compression) -> Vec<u8> {
        for (f, n) in [
            ("PG_VERSION", 3usize),
            ("base/1/1259", 20000),
            ("global/pg_control", 8192),
        ] {
            let p = dir.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, (0..n).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
        }
        let plan = plan(dir).unwrap();
        let enc = compression
            .stream_encoder(Vec::new(), compression.default_level(), 1)
            .unwrap();
        let mut w = StreamWriter::new(enc, &header()).unwrap();
        let progress = Progress::silent();
        for item in &plan.items {
            w.add(item, &progress).unwrap();
        }
        w.add_generated("data/backup_label", b"START WAL LOCATION: 0/2000028\n")
            .unwrap();
        w.finish(&mut manifest()).unwrap().finish().unwrap()
    }

    fn stream_of(dir: &Path) -> Vec<u8> {
        stream_in(dir, Compression::Zstd)
    }

    fn target(dir: &Path) -> Target {
        Target {
            pgdata: dir.to_path_buf(),
            tablespace_map: Vec::new(),
            force: false,
        }
    }

    fn restore(stream: &[u8], out: &Path, expected: Option<&StoredData>) -> Result<Restored> {
        let prepared = prepare(&target(out), "test", &[])?;
        unpack(stream, prepared, expected, &Progress::silent())
    }

    #[test]
    fn a_stream_restores_byte_for_byte_and_pg_control_comes_last() {
        let d = tempfile::tempdir().unwrap();
        let stream = stream_of(&d.path().join("src"));
        let out = d.path().join("out");
        let r = restore(&stream, &out, None).unwrap();
        assert!(
            !out.join("global/pg_control").exists(),
            "pg_control before complete()"
        );
        assert!(out.join(INCOMPLETE_MARKER).exists());
        r.complete().unwrap();
        for f in ["PG_VERSION", "base/1/1259", "global/pg_control"] {
            assert_eq!(
                fs::read(out.join(f)).unwrap(),
                fs::read(d.path().join("src").join(f)).unwrap()
            );
        }
        assert!(!out.join(INCOMPLETE_MARKER).exists());
        // a second restore into the now complete directory is refused without --force
        let e = restore(&stream, &out, None).err().unwrap();
        assert_eq!(e.kind, crate::error::Kind::Conflict, "{e}");
    }

    #[test]
    fn a_cut_or_damaged_stream_never_yields_a_startable_directory() {
        let d = tempfile::tempdir().unwrap();
        let stream = stream_of(&d.path().join("src"));
        for (i, damaged) in [
            stream[..stream.len() / 2].to_vec(),
            stream[..stream.len() - 8].to_vec(),
            {
                let mut s = stream.clone();
                let n = s.len();
                s[n / 3] ^= 1;
                s
            },
        ]
        .into_iter()
        .enumerate()
        {
            let out = d.path().join(format!("out{i}"));
            match restore(&damaged, &out, None) {
                Ok(_) => panic!("case {i}: a damaged stream was accepted"),
                Err(e) => assert_eq!(e.kind, crate::error::Kind::Corrupt, "case {i}: {e}"),
            }
            assert!(!out.join("global/pg_control").exists(), "case {i}");
        }
        // the repository's length and checksum are checked too
        let out = d.path().join("outsum");
        let wrong = StoredData {
            object: "data.tar.zst".into(),
            bytes: stream.len() as u64,
            sha256: "00".into(),
        };
        let e = restore(&stream, &out, Some(&wrong)).err().unwrap();
        assert!(e.message.contains("SHA-256"), "{e}");
    }

    #[test]
    fn entries_outside_the_target_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let h = toml::to_string(&header()).unwrap();
        let mut th = tar::Header::new_gnu();
        th.set_size(h.len() as u64);
        th.set_mode(0o600);
        b.append_data(&mut th, HEADER_ENTRY, h.as_bytes()).unwrap();
        let mut evil = tar::Header::new_gnu();
        evil.set_size(1);
        evil.set_mode(0o600);
        // tar refuses to *write* "..", so the name is set in the raw header
        evil.as_old_mut().name[..16].copy_from_slice(b"data/../../evilX");
        evil.set_cksum();
        b.append(&evil, &b"x"[..]).unwrap();
        let stream = b.into_inner().unwrap();
        let out = d.path().join("out");
        let e = restore(&stream, &out, None).err().unwrap();
        assert_eq!(e.kind, crate::error::Kind::Corrupt, "{e}");
        assert!(!d.path().join("evilX").exists());
    }

    /// The source stream with `extra` items put in before its last file.
    fn stream_with(dir: &Path, extra: Vec<Item>) -> Vec<u8> {
        stream_of(dir);
        let mut plan = plan(dir).unwrap();
        let last = plan.items.pop().unwrap();
        plan.items.extend(extra);
        plan.items.push(last);
        let mut w = StreamWriter::new(Vec::new(), &header()).unwrap();
        for item in &plan.items {
            w.add(item, &Progress::silent()).unwrap();
        }
        w.finish(&mut manifest()).unwrap()
    }

    #[test]
    fn a_symlink_from_the_stream_never_leads_a_restore_into_another_cluster() {
        let d = tempfile::tempdir().unwrap();
        let other = d.path().join("other");
        fs::create_dir_all(other.join("global")).unwrap();
        fs::write(other.join("global/pg_control"), b"the other cluster's").unwrap();
        fs::write(
            other.join("postgresql.auto.conf"),
            b"the other's settings\n",
        )
        .unwrap();
        // links from the stream are not made (the restore says so): everything is written into
        // the restored directory itself
        for (i, (path, to)) in [
            ("data/global", other.join("global")),
            (
                "data/postgresql.auto.conf",
                other.join("postgresql.auto.conf"),
            ),
            ("data/base/1/evil", other.clone()),
        ]
        .into_iter()
        .enumerate()
        {
            let link = Item::Symlink {
                path: path.into(),
                target: to,
            };
            let stream = stream_with(&d.path().join(format!("src{i}")), vec![link]);
            let out = d.path().join(format!("out{i}"));
            let r = restore(&stream, &out, None).unwrap_or_else(|e| panic!("{path}: {e}"));
            crate::pg::server::append_auto_conf(&out, "restore_command = 'x'\n").unwrap();
            r.complete().unwrap();
            assert!(
                !out.join(path.strip_prefix("data/").unwrap()).is_symlink(),
                "{path}"
            );
            assert!(out.join("global/pg_control").is_file());
        }
        assert_eq!(
            fs::read(other.join("global/pg_control")).unwrap(),
            b"the other cluster's"
        );
        assert_eq!(
            fs::read(other.join("postgresql.auto.conf")).unwrap(),
            b"the other's settings\n"
        );
        assert_eq!(fs::read_dir(&other).unwrap().count(), 2);
        // a tablespace link the header does not declare: the stream is not what it says
        let link = Item::Symlink {
            path: "data/pg_tblspc/16999".into(),
            target: other.clone(),
        };
        let stream = stream_with(&d.path().join("src_ts"), vec![link]);
        let out = d.path().join("out_ts");
        let e = restore(&stream, &out, None)
            .err()
            .unwrap_or_else(|| panic!("an undeclared tablespace link was restored"));
        assert_eq!(e.kind, crate::error::Kind::Corrupt, "{e}");
        assert!(e.message.contains("pg_tblspc/16999"), "{e}");
        assert!(!out.join("pg_tblspc/16999").is_symlink());
    }

    #[test]
    fn pg_control_is_never_written_over_a_file_that_is_there() {
        let d = tempfile::tempdir().unwrap();
        let stream = stream_of(&d.path().join("src"));
        let out = d.path().join("out");
        let r = restore(&stream, &out, None).unwrap();
        // something put a pg_control there meanwhile (a link to another cluster's, say)
        let other = d.path().join("other_pg_control");
        fs::write(&other, b"the other cluster's").unwrap();
        std::os::unix::fs::symlink(&other, out.join("global/pg_control")).unwrap();
        let e = r
            .complete()
            .err()
            .unwrap_or_else(|| panic!("pg_control replaced what was there"));
        assert!(e.message.contains("pg_control"), "{e}");
        assert_eq!(fs::read(&other).unwrap(), b"the other cluster's");
    }

    #[test]
    fn tablespace_map_paths_with_backslashes_and_line_breaks_survive_the_rewrite() {
        let map = b"16384 /srv/ts\\\n1\n16385 /srv/a\\\\b\n\n99 /kept/as\\\nit was\n";
        let dirs: HashMap<u32, PathBuf> = [
            (16384, PathBuf::from("/new/it's \"a\" 100% $HOME\\dir\nx")),
            (16385, PathBuf::from("/new/b")),
        ]
        .into_iter()
        .collect();
        let out = rewrite_tablespace_map(map, &dirs);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "16384 /new/it's \"a\" 100% $HOME\\\\dir\\\nx\n16385 /new/b\n99 /kept/as\\\nit was\n"
        );
    }
}
