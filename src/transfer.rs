//! The per-file workers: push one WAL file into a repository, fetch one back out. They take plain
//! arguments and hold no global state, so the push-ahead and prefetch workers of later releases
//! can run many of them in parallel, on any storage backend.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::compress::Compression;
use crate::crypto::{Key, SealWriter};
use crate::error::{Context, Error, Kind, Result};
use crate::hashing::{Digester, HashPipe};
use crate::pg::{WalFileName, WalHeader, WalKind};
use crate::repo::object::{HEADER_LEN, PAYLOAD_DIGEST_LEN, hex};
use crate::repo::read::{Checks, read_verified};
use crate::repo::{Identity, ObjectHeader, Repository};
use crate::storage::{Publish, read_full};

const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    pub compression: Compression,
    pub level: i32,
    /// Compression threads for this one file.
    pub threads: u32,
    /// `push --replace-damaged`: an object of this name whose header records exactly this file
    /// but whose stored bytes fail their checks is replaced by a new object of this file.
    pub replace_damaged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Written, fsynced and published by this call.
    Stored,
    /// Written by this call in place of a damaged object of the same content (`--replace-damaged`).
    Replaced,
    /// The identical file was already in the repository; nothing was written.
    AlreadyArchived,
}

#[derive(Debug, Clone)]
pub struct PushReport {
    pub outcome: PushOutcome,
    pub original_bytes: u64,
    /// Bytes of the object in the repository (header included).
    pub stored_bytes: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct FetchReport {
    pub original_bytes: u64,
    pub compression: Compression,
    pub elapsed: Duration,
}

/// Read the WAL long page header of a segment file, and check it belongs under `name` at the
/// file's length.
pub fn read_segment_header(file: &mut File, name: &WalFileName, what: &str) -> Result<WalHeader> {
    let len = file.metadata().context(format!("stat {what}"))?.len();
    let mut first = [0u8; crate::pg::walheader::LONG_HEADER_LEN];
    let n = read_full(file, &mut first).context(format!("reading {what}"))?;
    let header = WalHeader::parse(&first[..n], what)?;
    header.check_matches(name, len)?;
    file.seek(SeekFrom::Start(0))
        .context(format!("reading {what}"))?;
    Ok(header)
}

/// The identity a segment header implies for a repository.
pub fn identity_of(h: &WalHeader) -> Identity {
    Identity {
        system_identifier: h.system_identifier,
        pg_version: h.pg_version,
        wal_segment_size: h.segment_size,
        key_id: None,
    }
}

/// Refuse a segment that belongs to another cluster, major version or segment size.
pub fn check_identity(h: &WalHeader, repo: &Identity, name: &str, repo_desc: &str) -> Result<()> {
    let hint = "One repository holds one cluster's WAL. Point this server at its own repository; if \
                this server was rebuilt (initdb, or a restored snapshot of another cluster), give it a new one.";
    if h.system_identifier != repo.system_identifier {
        return Err(Error::conflict(format!(
            "{name} belongs to the cluster with system identifier {}, but repository {repo_desc} belongs to {}",
            h.system_identifier, repo.system_identifier
        ))
        .with_hint(hint));
    }
    if h.pg_version != repo.pg_version {
        return Err(Error::conflict(format!(
            "{name} is PostgreSQL {} WAL, but repository {repo_desc} holds PostgreSQL {} WAL",
            h.pg_version, repo.pg_version
        ))
        .with_hint(hint));
    }
    if h.segment_size != repo.wal_segment_size {
        return Err(Error::conflict(format!(
            "{name} is from a cluster with {}-byte segments, but repository {repo_desc} holds {}-byte segments",
            h.segment_size, repo.wal_segment_size
        ))
        .with_hint(hint));
    }
    Ok(())
}

/// Push one file into a repository whose identity is `identity`. Segments and partial segments
/// are checked first (header, name, length, cluster). Returns only when the object is durable in
/// the repository, or when an identical object was already there.
pub fn push_file(
    repo: &Repository,
    identity: &Identity,
    source: &Path,
    name: &WalFileName,
    opts: &PushOptions,
) -> Result<PushReport> {
    let started = Instant::now();
    let what = source.display().to_string();
    let mut file = File::open(source).context(format!("opening {what}"))?;
    let original_bytes = file.metadata().context(format!("stat {what}"))?.len();
    // History and backup files carry no header of their own: a segment beside them in pg_wal
    // tells which cluster they belong to, so another cluster's files never enter the repository.
    let header = if name.has_wal_header() {
        read_segment_header(&mut file, name, &what)?
    } else {
        let dir = source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        header_from_wal_dir(dir)?
    };
    crate::pg::require_supported(header.pg_version, &what)?;
    check_identity(&header, identity, name.as_str(), &repo.describe())?;
    if name.kind() == WalKind::Segment {
        refuse_past_fork(repo, name, identity.wal_segment_size)?;
    }
    // Before anything is compared or written: a configuration whose encryption or key does not
    // match the repository's is refused here.
    let key = repo.sealing_key()?;

    let mut replace = false;
    if let Some(existing) = repo.object_header(name)? {
        let (len, digest) = hash_file(&mut file, &what, repo.opening_key(&existing)?)?;
        match compare_existing(
            &existing,
            len,
            &digest,
            repo,
            name,
            &what,
            started,
            original_bytes,
        ) {
            // Corrupt here means: the header records this very file, the stored bytes are bad.
            Err(e) if opts.replace_damaged && e.kind == Kind::Corrupt => {
                crate::log_line!(
                    "walship: push: {} in {} is damaged; replacing it with {what}, which its header records",
                    name.as_str(),
                    repo.describe()
                );
                file.seek(SeekFrom::Start(0))
                    .context(format!("reading {what}"))?;
                replace = true;
            }
            other => return other,
        }
    }

    let mut object = BufWriter::with_capacity(CHUNK, repo.create_object(name)?);
    let writing = format!("writing {} to {}", name.as_str(), repo.describe());
    // The header is reserved (create_object): an object is only trusted once the real one is
    // written, last (below).
    let hasher = HashPipe::with(CHUNK, digester(key))?;
    let mut header = ObjectHeader {
        compression: opts.compression,
        original_len: original_bytes,
        digest: [0; 32],
        key_id: key.map(Key::id),
        payload_digest: Some([0; PAYLOAD_DIGEST_LEN]),
        name: name.as_str().to_string(),
    };
    let mut payload = DigestWriter {
        inner: &mut object,
        digest: Sha256::new(),
        written: 0,
    };
    {
        // An encrypted object: the compressed bytes are sealed, each chunk authenticating the
        // header's fields that are known now (FORMAT.md, "Encryption").
        let aad = header.sealing_aad();
        let mut sealed = None;
        let sink: &mut dyn Write = match key {
            Some(k) => {
                sealed.insert(SealWriter::new(&mut payload, k, &aad).context(&writing)?) as _
            }
            None => &mut payload,
        };
        let mut encoder = opts
            .compression
            .encoder(sink, opts.level, opts.threads)
            .context(&writing)?;
        loop {
            let mut buf = hasher.buffer();
            if read_chunk(&mut file, &mut buf, CHUNK).context(format!("reading {what}"))? == 0 {
                break;
            }
            encoder.write_all(&buf).context(&writing)?;
            hasher.send(buf);
        }
        encoder.finish().context(&writing)?;
        if let Some(s) = sealed {
            s.finish().context(&writing)?;
        }
    }
    let payload_digest = payload.digest.finalize()[..PAYLOAD_DIGEST_LEN]
        .try_into()
        .expect("16 bytes");
    let (len, digest) = hasher.finish();
    let digest = content_digest(digest, key);
    if len != original_bytes {
        return Err(Error::corrupt(format!(
            "{what} changed size while it was being archived ({original_bytes} -> {len} bytes)"
        )));
    }
    header.digest = digest;
    header.payload_digest = Some(payload_digest);
    let sha = digest;
    let stored_bytes = HEADER_LEN as u64 + payload.written;
    let mut object = object
        .into_inner()
        .map_err(|e| Error::io(&writing, e.into_error()))?;
    object.write_header(&header.encode()).context(&writing)?;
    if replace {
        object.commit_replacing()?;
        return Ok(PushReport {
            outcome: PushOutcome::Replaced,
            original_bytes,
            stored_bytes,
            elapsed: started.elapsed(),
        });
    }
    match object.commit()? {
        Publish::Created => Ok(PushReport {
            outcome: PushOutcome::Stored,
            original_bytes,
            stored_bytes,
            elapsed: started.elapsed(),
        }),
        // Another writer published the same name while we wrote: compare with what won.
        Publish::AlreadyExists => match repo.object_header(name)? {
            Some(existing) => compare_existing(
                &existing,
                len,
                &sha,
                repo,
                name,
                &what,
                started,
                original_bytes,
            ),
            None => Err(Error::unavailable(format!(
                "{} was reported as existing but cannot be read",
                name.as_str()
            ))),
        },
    }
}

/// The archive's fence (FORMAT.md, "Promotions"): a segment of a timeline that lies wholly past
/// the point where a newer timeline forked off it was written by a primary that should no
/// longer exist, a demoted one that came back or a second one. Refused, touching nothing.
fn refuse_past_fork(repo: &Repository, name: &WalFileName, segment_size: u32) -> Result<()> {
    let start = name.segment_number(segment_size)? * u64::from(segment_size);
    if let Some((newer, switch)) = repo.fork_past(name.timeline(), start)? {
        return Err(Error::conflict(format!(
            "{} lies past the point where timeline {newer} forked off timeline {} (at {}): this \
             server's timeline ended there, and another server was promoted",
            name.as_str(),
            name.timeline(),
            crate::pg::timeline::format_lsn(switch)
        ))
        .with_hint(
            "This server must not run as a primary any more: stop it and make it a standby of \
             the new primary (walship rejoin). Its WAL past the fork is kept in its pg_wal, \
             nothing was written to the repository.",
        ));
    }
    Ok(())
}

/// An object named like the file being pushed is there: "already archived" only when its header
/// records this file's length and SHA-256 and its stored bytes pass the checks fetch makes (an
/// intact header over rotted or truncated bytes must not let PostgreSQL recycle the good copy).
#[allow(clippy::too_many_arguments)]
fn compare_existing(
    existing: &ObjectHeader,
    len: u64,
    digest: &[u8; 32],
    repo: &Repository,
    name: &WalFileName,
    what: &str,
    started: Instant,
    original_bytes: u64,
) -> Result<PushReport> {
    if existing.original_len == len && existing.digest == *digest {
        if let Err(e) = read_verified(repo, name, &mut io::sink(), "nowhere", Checks::Payload) {
            if e.kind != Kind::Corrupt {
                return Err(e);
            }
            return Err(Error::corrupt(format!(
                "{} is archived in {} under a header that records this file, but the stored copy is \
                 damaged ({}); nothing was acknowledged and {what} is kept",
                name.as_str(),
                repo.describe(),
                e.message
            ))
            .with_hint(
                "PostgreSQL keeps the file and retries, so the good copy is safe in pg_wal. Replace the damaged \
                 object with it: run `walship push --replace-damaged pg_wal/NAME NAME` as the PostgreSQL user in \
                 the data directory, with the same configuration; it replaces the object only if this file is \
                 exactly what the damaged object's header records.",
            ));
        }
        // The writer of that object may have died between publishing it and syncing its
        // directory: make it durable before reporting it archived.
        repo.make_durable(name)?;
        return Ok(PushReport {
            outcome: PushOutcome::AlreadyArchived,
            original_bytes,
            stored_bytes: 0,
            elapsed: started.elapsed(),
        });
    }
    Err(Error::conflict(format!(
        "{} is already archived in {} with different content: archived {what_digest} {} ({} bytes), this file {what_digest} {} ({} bytes); \
         the archived copy was left untouched",
        name.as_str(),
        repo.describe(),
        hex(&existing.digest),
        existing.original_len,
        hex(digest),
        len,
        what_digest = if existing.key_id.is_some() { "keyed digest" } else { "sha256" }
    ))
    .with_hint(
        "Two servers are archiving into one repository (split brain, or a restored snapshot). Find out which server is \
         the real primary; point the other at a different repository. Never delete the archived copy to make this pass.",
    ))
}

/// Fetch one file into `dest`: decompress into a temporary file beside it, verify it, and only
/// then rename it to `dest`. A missing object is `Kind::NotFound`.
pub fn fetch_file(repo: &Repository, name: &WalFileName, dest: &Path) -> Result<FetchReport> {
    let started = Instant::now();
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    remove_stale_fetch_files(dir);
    let mut temp = tempfile::Builder::new()
        .prefix(FETCH_TEMP_PREFIX)
        .tempfile_in(dir)
        .context(format!("creating a temporary file in {}", dir.display()))?;
    let temp_path = temp.path().display().to_string();
    let header = read_verified(repo, name, &mut temp, &temp_path, Checks::Payload)?;
    // PostgreSQL fsyncs what it keeps (durable_rename); restore_command need not.
    temp.persist(dest).map_err(|e| {
        Error::io(
            format!("moving the fetched file to {}", dest.display()),
            e.error,
        )
    })?;
    Ok(FetchReport {
        original_bytes: header.original_len,
        compression: header.compression,
        elapsed: started.elapsed(),
    })
}

const FETCH_TEMP_PREFIX: &str = ".walship-fetch-";
/// A fetch writes its temporary file within seconds; one untouched this long belongs to a
/// fetch that was killed, and would otherwise stay in pg_wal for good.
const STALE_FETCH_FILE: Duration = Duration::from_secs(3600);

/// Remove the temporary files of killed fetches from `dir` (best effort: failing to tidy up
/// never fails a fetch). Regular files only, never through a symlink.
fn remove_stale_fetch_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(FETCH_TEMP_PREFIX) {
            continue;
        }
        let stale = e.metadata().ok().filter(|m| m.is_file()).and_then(|m| {
            m.modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .map(|age| age > STALE_FETCH_FILE)
        });
        if stale == Some(true) && fs::remove_file(e.path()).is_ok() {
            crate::log_line!(
                "walship: fetch: removed {}, left by a fetch that was killed",
                e.path().display()
            );
        }
    }
}

/// A writer that hashes what passes through it: the payload digest of an object being written.
struct DigestWriter<W> {
    inner: W,
    digest: Sha256,
    written: u64,
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Read up to `size` bytes into `buf` (replacing its contents); 0 at end of file.
fn read_chunk(r: &mut impl Read, buf: &mut Vec<u8>, size: usize) -> io::Result<usize> {
    buf.resize(size, 0);
    let n = read_full(r, buf)?;
    buf.truncate(n);
    Ok(n)
}

/// What names an object's content: the SHA-256 of the original bytes, or under `key` their
/// keyed digest (FORMAT.md, "Encryption"), which says nothing about them without the key.
fn digester(key: Option<&Key>) -> Digester {
    match key {
        Some(k) => Digester::Keyed(k.content_mac()),
        None => Digester::Sha256(Sha256::new()),
    }
}

/// The digest as a header records it: a keyed digest is kept in its first 24 bytes.
fn content_digest(digest: [u8; 32], key: Option<&Key>) -> [u8; 32] {
    match key {
        Some(_) => crate::crypto::recorded_mac(digest),
        None => digest,
    }
}

/// Length and content digest of a whole file, from its start: SHA-256, or keyed under `key`.
fn hash_file(file: &mut File, what: &str, key: Option<&Key>) -> Result<(u64, [u8; 32])> {
    file.seek(SeekFrom::Start(0))
        .context(format!("reading {what}"))?;
    let mut hasher = digester(key);
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = read_full(file, &mut buf).context(format!("reading {what}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, content_digest(hasher.finish(), key)))
}

/// The header of any segment-sized WAL file in `dir` (recycled segments count: they are this
/// cluster's, even if their page addresses are old).
pub fn header_from_wal_dir(dir: &Path) -> Result<WalHeader> {
    let entries = fs::read_dir(dir).context(format!("listing {}", dir.display()))?;
    for entry in entries.flatten() {
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if WalFileName::parse(fname).ok().map(|n| n.kind()) != Some(crate::pg::WalKind::Segment) {
            continue;
        }
        let mut first = [0u8; crate::pg::walheader::LONG_HEADER_LEN];
        let Ok(mut f) = File::open(entry.path()) else {
            continue;
        };
        if crate::storage::read_full(&mut f, &mut first).ok() != Some(first.len()) {
            continue;
        }
        if let Ok(h) = WalHeader::parse(&first, fname)
            && f.metadata().map(|m| m.len()).ok() == Some(u64::from(h.segment_size))
        {
            return Ok(h);
        }
    }
    Err(Error::usage(format!(
        "the repository is empty and no WAL segment in {} tells which cluster this file belongs to",
        dir.display()
    ))
    .with_hint("Push a WAL segment first (SELECT pg_switch_wal() makes the server archive one)."))
}

#[cfg(test)]
mod tests;
