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

use super::{
    DATA_PREFIX, HEADER_ENTRY, MANIFEST_ENTRY, Manifest, StoredData, StreamHeader,
    TABLESPACE_PREFIX, Tablespace, check_entry_path, hex,
};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Present in a data directory while a restore writes it (and after one that died).
pub const INCOMPLETE_MARKER: &str = "walship-restore.incomplete";
const PG_CONTROL: &str = "global/pg_control";
const TABLESPACE_MAP: &str = "tablespace_map";

/// Where a restore writes.
#[derive(Debug, Clone)]
pub struct Target {
    pub pgdata: PathBuf,
    /// Tablespace locations to move: (old, new), as pg_basebackup's -T.
    pub tablespace_map: Vec<(String, String)>,
    /// Empty a non-empty target (saying what is removed) instead of refusing.
    pub force: bool,
}

/// A restored directory, checked, whose pg_control is not yet written.
pub struct Restored {
    pub manifest: Manifest,
    pub pgdata: PathBuf,
    /// (oid, directory) of each tablespace as restored.
    pub tablespaces: Vec<(u32, PathBuf)>,
    pub stream_bytes: u64,
    pg_control: Vec<u8>,
}

fn write_err(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("writing {}", path.display()), e)
}

/// Refuse a directory a postmaster runs on, whatever the flags.
pub fn refuse_running_postmaster(pgdata: &Path) -> Result<()> {
    let Ok(text) = fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return Ok(());
    };
    if let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
        && crate::repo::lock::process_alive(pid)
    {
        return Err(Error::conflict(format!(
            "a postmaster (pid {pid}) runs on {}; walship never writes into a running cluster",
            pgdata.display()
        ))
        .with_hint("Stop that server first (pg_ctl stop), or restore somewhere else."));
    }
    Ok(())
}

/// Make `dir` an empty directory (mode 0700) to restore into. A non-empty one is refused unless
/// `force` or `ours` (our own interrupted restore); then its contents are removed, and said.
fn prepare_dir(dir: &Path, force: bool, ours: bool, what: &str) -> Result<()> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        Ok(entries) => {
            let names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            if !names.is_empty() {
                if !force && !ours {
                    return Err(Error::conflict(format!(
                        "{what} {} is not empty ({} entries)",
                        dir.display(),
                        names.len()
                    ))
                    .with_hint("Restore into an empty or new directory, or add --force to remove what is there."));
                }
                let (files, bytes) = count_tree(dir);
                crate::log_line!(
                    "walship: restore: removing {files} files ({}) from {} ({})",
                    crate::commands::human_bytes(bytes),
                    dir.display(),
                    if ours {
                        "left by an interrupted restore"
                    } else {
                        "--force"
                    }
                );
                for p in names {
                    let r = if p.is_dir() && !p.is_symlink() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    r.map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
                }
            }
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // PostgreSQL refuses a data directory others can read.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))
}

fn count_tree(dir: &Path) -> (u64, u64) {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .fold((0, 0), |(n, b), e| {
            (n + 1, b + e.metadata().map(|m| m.len()).unwrap_or(0))
        })
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

/// A target checked, emptied where allowed, and marked incomplete: ready for a stream.
pub struct Prepared {
    pgdata: PathBuf,
    /// Each tablespace of the backup and the directory it is restored to.
    tablespaces: HashMap<u32, PathBuf>,
    expected: Vec<Tablespace>,
}

/// The line `walship restore --from-stdin` prints once its target is ready: the sender starts
/// the stream only then, so a refusal (a running postmaster, a non-empty directory) comes back
/// at once, in the restore's own words.
pub const READY: &str = "walship restore: ready for the backup stream";

/// Check and prepare `target` for a backup with these tablespaces (`what` names it in the
/// marker), before a byte of the stream is read.
pub fn prepare(target: &Target, what: &str, tablespaces: &[Tablespace]) -> Result<Prepared> {
    let pgdata = &target.pgdata;
    refuse_running_postmaster(pgdata)?;
    let ours_before = read_marker(pgdata);
    let mut dirs: HashMap<u32, PathBuf> = HashMap::new();
    for ts in tablespaces {
        let new = target
            .tablespace_map
            .iter()
            .find(|(old, _)| old.trim_end_matches('/') == ts.location.trim_end_matches('/'))
            .map(|(_, new)| new.clone())
            .unwrap_or_else(|| ts.location.clone());
        dirs.insert(ts.oid, PathBuf::from(new));
    }
    for (old, _) in &target.tablespace_map {
        if !tablespaces
            .iter()
            .any(|t| t.location.trim_end_matches('/') == old.trim_end_matches('/'))
        {
            return Err(Error::usage(format!(
                "--tablespace-map {old}=...: the backup has no tablespace at {old}"
            )));
        }
    }
    prepare_dir(
        pgdata,
        target.force,
        ours_before.is_some(),
        "data directory",
    )?;
    for dir in dirs.values() {
        let ours = ours_before
            .as_ref()
            .is_some_and(|m| m.contains(&dir.display().to_string()));
        refuse_running_postmaster(dir)?;
        prepare_dir(dir, target.force, ours, "tablespace directory")?;
    }
    write_marker(pgdata, what, dirs.values())?;
    let mut expected = tablespaces.to_vec();
    expected.sort_by_key(|t| t.oid);
    Ok(Prepared {
        pgdata: pgdata.clone(),
        tablespaces: dirs,
        expected,
    })
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
            let link = e.link_name().map_err(|e| stream_err(&e))?.ok_or_else(|| {
                Error::corrupt(format!("backup stream: symlink {path} without a target"))
            })?;
            // Created at the end, so that no file of the stream is ever written through one.
            symlinks.push((dest, link.into_owned()));
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
    for (link, to) in symlinks {
        let to = match link
            .strip_prefix(pgdata.join("pg_tblspc"))
            .ok()
            .and_then(|oid| oid.to_str()?.parse::<u32>().ok())
        {
            Some(oid) => tablespaces.get(&oid).cloned().unwrap_or(to),
            None => to,
        };
        std::os::unix::fs::symlink(&to, &link).map_err(|e| write_err(&link, e))?;
    }
    if let Some(map) = tablespace_map {
        let text = String::from_utf8_lossy(&map);
        let mut out = String::new();
        for line in text.lines() {
            match line
                .split_once(' ')
                .and_then(|(oid, _)| Some((oid, tablespaces.get(&oid.parse().ok()?)?)))
            {
                Some((oid, dir)) => out.push_str(&format!("{oid} {}\n", dir.display())),
                None => out.push_str(&format!("{line}\n")),
            }
        }
        let p = pgdata.join(TABLESPACE_MAP);
        fs::write(&p, out).map_err(|e| write_err(&p, e))?;
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
    })
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
    // create_new: never through a symlink, never over something the stream already wrote.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| write_err(dest, e))?;
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

/// The marker: which tablespace directories this restore writes (a rerun may empty them).
fn write_marker<'a>(
    pgdata: &Path,
    what: &str,
    dirs: impl Iterator<Item = &'a PathBuf>,
) -> Result<()> {
    let mut text = format!(
        "# walship restore of {what} in progress (or interrupted): this directory is incomplete.\n\
         # Run the restore again; it starts over. PostgreSQL cannot start here: global/pg_control is written last.\n"
    );
    for d in dirs {
        text.push_str(&format!("tablespace {}\n", d.display()));
    }
    let p = pgdata.join(INCOMPLETE_MARKER);
    let mut f = File::create(&p).map_err(|e| write_err(&p, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| write_err(&p, e))?;
    crate::storage::local::sync_dir(pgdata)
}

/// The text of the marker if `pgdata` holds one.
fn read_marker(pgdata: &Path) -> Option<String> {
    fs::read_to_string(pgdata.join(INCOMPLETE_MARKER)).ok()
}

impl Restored {
    /// Make it startable: everything written so far durable (syncfs of each file system), then
    /// pg_control (temp, fsync, rename, fsync), then the marker removed.
    pub fn complete(self) -> Result<Manifest> {
        let mut dirs = vec![self.pgdata.clone()];
        dirs.extend(self.tablespaces.iter().map(|(_, d)| d.clone()));
        for d in &dirs {
            let f = File::open(d).map_err(|e| Error::io(format!("opening {}", d.display()), e))?;
            use std::os::fd::AsRawFd;
            // SAFETY: syncfs on a file descriptor we own.
            if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                return Err(Error::io(
                    format!("syncfs {}", d.display()),
                    std::io::Error::last_os_error(),
                ));
            }
        }
        let global = self.pgdata.join("global");
        let tmp = global.join(".pg_control.walship.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| write_err(&tmp, e))?;
        f.write_all(&self.pg_control)
            .and_then(|_| f.sync_all())
            .map_err(|e| write_err(&tmp, e))?;
        fs::rename(&tmp, global.join("pg_control")).map_err(|e| write_err(&tmp, e))?;
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
    use crate::backup::source::{StreamWriter, plan};
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
}
