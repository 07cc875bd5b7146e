//! The per-file workers: push one WAL file into a repository, fetch one back out. They take plain
//! arguments and hold no global state, so the push-ahead and prefetch workers of later releases
//! can run many of them in parallel, on any storage backend.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::compress::Compression;
use crate::error::{Context, Error, Result};
use crate::hashing::HashPipe;
use crate::pg::{WalFileName, WalHeader, WalKind};
use crate::repo::object::{HEADER_LEN, PAYLOAD_DIGEST_LEN, hex};
use crate::repo::{Identity, ObjectHeader, Repository};
use crate::storage::{Publish, read_full};

const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    pub compression: Compression,
    pub level: i32,
    /// Compression threads for this one file.
    pub threads: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Written, fsynced and published by this call.
    Stored,
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

    if let Some(existing) = repo.object_header(name)? {
        let (len, sha) = hash_file(&mut file, &what)?;
        return compare_existing(&existing, len, &sha, repo, name, started, original_bytes);
    }

    let mut object = BufWriter::with_capacity(CHUNK, repo.create_object(name)?);
    let writing = format!("writing {} to {}", name.as_str(), repo.describe());
    // Placeholder header: an object is only trusted once the real one is written last (below).
    object.write_all(&[0u8; HEADER_LEN]).context(&writing)?;
    let hasher = HashPipe::new(CHUNK)?;
    let mut payload = DigestWriter {
        inner: &mut object,
        digest: Sha256::new(),
    };
    {
        let mut encoder = opts
            .compression
            .encoder(&mut payload, opts.level, opts.threads)
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
    }
    let payload_digest = payload.digest.finalize()[..PAYLOAD_DIGEST_LEN]
        .try_into()
        .expect("16 bytes");
    let (len, sha) = hasher.finish();
    if len != original_bytes {
        return Err(Error::corrupt(format!(
            "{what} changed size while it was being archived ({original_bytes} -> {len} bytes)"
        )));
    }
    let header = ObjectHeader {
        compression: opts.compression,
        original_len: len,
        sha256: sha,
        payload_digest: Some(payload_digest),
        name: name.as_str().to_string(),
    };
    let stored_bytes = object.stream_position().context(&writing)?;
    object.seek(SeekFrom::Start(0)).context(&writing)?;
    object.write_all(&header.encode()).context(&writing)?;
    let object = object
        .into_inner()
        .map_err(|e| Error::io(&writing, e.into_error()))?;
    match object.commit()? {
        Publish::Created => Ok(PushReport {
            outcome: PushOutcome::Stored,
            original_bytes,
            stored_bytes,
            elapsed: started.elapsed(),
        }),
        // Another writer published the same name while we wrote: compare with what won.
        Publish::AlreadyExists => match repo.object_header(name)? {
            Some(existing) => {
                compare_existing(&existing, len, &sha, repo, name, started, original_bytes)
            }
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
    let read = |h: &WalFileName| read_small_object(repo, h, 1 << 20);
    if let Some((newer, switch)) = repo.fork_past(name.timeline(), start, &read)? {
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

fn compare_existing(
    existing: &ObjectHeader,
    len: u64,
    sha: &[u8; 32],
    repo: &Repository,
    name: &WalFileName,
    started: Instant,
    original_bytes: u64,
) -> Result<PushReport> {
    if existing.original_len == len && existing.sha256 == *sha {
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
        "{} is already archived in {} with different content: archived sha256 {} ({} bytes), this file sha256 {} ({} bytes); \
         the archived copy was left untouched",
        name.as_str(),
        repo.describe(),
        hex(&existing.sha256),
        existing.original_len,
        hex(sha),
        len
    ))
    .with_hint(
        "Two servers are archiving into one repository (split brain, or a restored snapshot). Find out which server is \
         the real primary; point the other at a different repository. Never delete the archived copy to make this pass.",
    ))
}

/// How much of an object a reader checks (FORMAT.md, "What a reader checks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// The payload digest, the compression's own check and the length; the SHA-256 of the
    /// original only for a version 1 object, which has nothing else. What fetch does.
    Payload,
    /// All of the above and the SHA-256 of the original, whatever the version. What verify does.
    Everything,
}

/// Fetch one file into `dest`: decompress into a temporary file beside it, verify it, and only
/// then rename it to `dest`. A missing object is `Kind::NotFound`.
pub fn fetch_file(repo: &Repository, name: &WalFileName, dest: &Path) -> Result<FetchReport> {
    let started = Instant::now();
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".walship-fetch-")
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

/// Read the object archived as `name` in full, decompress and check it (length, payload digest
/// and SHA-256 of the original) without keeping the bytes: what `verify` does to every object.
pub fn verify_object(repo: &Repository, name: &WalFileName) -> Result<ObjectHeader> {
    read_verified(repo, name, &mut io::sink(), "nowhere", Checks::Everything)
}

/// Read a small object (a history or backup history file) into memory, checked like any other.
/// Refuses an object whose header records more than `limit` bytes.
pub fn read_small_object(repo: &Repository, name: &WalFileName, limit: u64) -> Result<Vec<u8>> {
    if let Some(h) = repo.object_header(name)?
        && h.original_len > limit
    {
        return Err(Error::corrupt(format!(
            "repository object {} records {} bytes; a file of its kind is at most {limit}",
            name.as_str(),
            h.original_len
        )));
    }
    let mut bytes = Vec::new();
    read_verified(repo, name, &mut bytes, name.as_str(), Checks::Everything)?;
    Ok(bytes)
}

/// Stream the object `name` through decompression into `out`, checking it on the way. `out` must
/// be thrown away if this fails: it then holds unverified bytes. A missing object is
/// `Kind::NotFound`; a damaged one `Kind::Corrupt`; a storage failure `Kind::Unavailable`.
fn read_verified(
    repo: &Repository,
    name: &WalFileName,
    out: &mut dyn Write,
    out_name: &str,
    checks: Checks,
) -> Result<ObjectHeader> {
    repo.require_identity()?;
    let Some((header, payload)) = repo.open_object(name)? else {
        repo.confirm_absent(name)?;
        return Err(Error::not_found(format!(
            "{} is not in {}",
            name.as_str(),
            repo.describe()
        )));
    };
    let storage_failed = Cell::new(false);
    let mut source = PayloadReader {
        inner: payload,
        // Only a version 2 object has a payload digest to compare with.
        digest: header.payload_digest.map(|_| Sha256::new()),
        first: Vec::new(),
        failed: &storage_failed,
    };
    // Small objects (history, backup history, tiny test segments) get small buffers: zero-filling
    // a 1 MiB chunk per object would dominate `verify` on them.
    let chunk = usize::try_from(header.original_len.saturating_add(1))
        .unwrap_or(CHUNK)
        .clamp(4096, CHUNK);
    // The SHA-256 of the original runs on a helper thread, and only when it is asked for.
    let original_hasher = (checks == Checks::Everything || header.payload_digest.is_none())
        .then(|| HashPipe::new(chunk))
        .transpose()?;
    let mut spare = vec![0u8; chunk];
    let mut len = 0u64;
    let corrupt = |why: String| {
        Error::corrupt(format!("repository object {} in {} is damaged: {why}", name.as_str(), repo.describe()))
            .with_hint("Nothing was handed to PostgreSQL. Restore the object from another copy of the archive.")
    };
    {
        let mut decoder = header
            .compression
            .payload_decoder(&mut source)
            .map_err(|e| corrupt(e.to_string()))?;
        loop {
            let mut buf = match &original_hasher {
                Some(h) => h.buffer(),
                None => std::mem::take(&mut spare),
            };
            // Only grows a fresh buffer: a reused one is already `chunk` long.
            buf.resize(chunk, 0);
            let n = match read_full(&mut decoder, &mut buf) {
                Ok(n) => n,
                Err(e) if !storage_failed.get() => {
                    return Err(corrupt(format!("decompression failed: {e}")));
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("reading {} from {}", name.as_str(), repo.describe()),
                        e,
                    ));
                }
            };
            if n == 0 {
                break;
            }
            len += n as u64;
            if len > header.original_len {
                return Err(corrupt(format!(
                    "more than the {} bytes its header records",
                    header.original_len
                )));
            }
            out.write_all(&buf[..n])
                .context(format!("writing {out_name}"))?;
            match &original_hasher {
                Some(h) => {
                    buf.truncate(n);
                    h.send(buf);
                }
                None => spare = buf,
            }
        }
    }
    if len != header.original_len {
        return Err(corrupt(format!(
            "{len} bytes after decompression, header records {}",
            header.original_len
        )));
    }
    if let Some(recorded) = header.payload_digest {
        // A decompressor stops at the end of its stream; the digest covers every stored byte,
        // so anything after that end (nothing, in an intact object) is read and hashed too.
        io::copy(&mut source, &mut io::sink()).map_err(|e| {
            Error::io(
                format!("reading {} from {}", name.as_str(), repo.describe()),
                e,
            )
        })?;
        let digest = source
            .digest
            .take()
            .expect("hashed when the header has a payload digest")
            .finalize();
        if digest[..PAYLOAD_DIGEST_LEN] != recorded {
            return Err(corrupt(format!(
                "the stored bytes hash to {}..., the header records {}...",
                hex(&digest[..PAYLOAD_DIGEST_LEN]),
                hex(&recorded)
            )));
        }
        if !header.compression.payload_checks_itself(&source.first) {
            return Err(corrupt(format!(
                "its {} payload carries no checksum of its own, which a version 2 object must",
                header.compression.name()
            )));
        }
    }
    if let Some(hasher) = original_hasher {
        let (_, sha) = hasher.finish();
        if sha != header.sha256 {
            return Err(corrupt(format!(
                "sha256 {} does not match the recorded {}",
                hex(&sha),
                hex(&header.sha256)
            )));
        }
    }
    Ok(header)
}

/// The payload as it comes from storage: hashed on the way (the payload digest), its first bytes
/// kept (the compression's frame header), and a storage failure remembered, so that a
/// decompression error can be told apart from a dropped connection.
struct PayloadReader<'a, R> {
    inner: R,
    digest: Option<Sha256>,
    first: Vec<u8>,
    failed: &'a Cell<bool>,
}

/// Bytes of the payload's start kept for the compression's frame header check.
const FRAME_HEADER_KEPT: usize = 16;

impl<R: Read> Read for PayloadReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .inspect_err(|_| self.failed.set(true))?;
        if let Some(d) = &mut self.digest {
            d.update(&buf[..n]);
        }
        if self.first.len() < FRAME_HEADER_KEPT {
            let take = n.min(FRAME_HEADER_KEPT - self.first.len());
            self.first.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
}

/// A writer that hashes what passes through it: the payload digest of an object being written.
struct DigestWriter<W> {
    inner: W,
    digest: Sha256,
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
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

/// SHA-256 and length of a whole file, from its start.
fn hash_file(file: &mut File, what: &str) -> Result<(u64, [u8; 32])> {
    file.seek(SeekFrom::Start(0))
        .context(format!("reading {what}"))?;
    let mut hasher = Sha256::new();
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
    Ok((len, hasher.finalize().into()))
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
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    #[test]
    fn regression_an_object_found_already_archived_is_made_durable_before_success() {
        // A writer killed between publishing an object and syncing its directory leaves a name
        // a crash can still lose; the next push of the same file must not report it archived
        // without making it durable.
        let storage = MemoryStorage::default();
        let mut repo = Repository::open(Box::new(storage.clone())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let name = WalFileName::parse("000000010000000000000001").unwrap();
        let mut bytes = crate::pg::walheader::tests::header_bytes(5, 1 << 20, 1 << 20, 1);
        bytes.resize(1 << 20, 7);
        let src = dir.path().join(name.as_str());
        std::fs::write(&src, &bytes).unwrap();
        let header = WalHeader::parse(&bytes, "x").unwrap();
        let identity = repo.initialize(&identity_of(&header)).unwrap().clone();
        let opts = PushOptions {
            compression: Compression::Zstd,
            level: 1,
            threads: 1,
        };

        let first = push_file(&repo, &identity, &src, &name, &opts).unwrap();
        assert_eq!(first.outcome, PushOutcome::Stored);
        assert!(storage.durable_calls.borrow().is_empty());
        let again = push_file(&repo, &identity, &src, &name, &opts).unwrap();
        assert_eq!(again.outcome, PushOutcome::AlreadyArchived);
        assert_eq!(*storage.durable_calls.borrow(), vec![name.repo_path()]);
    }

    /// A repository in memory holding one 1 MiB segment pushed with `compression`, and the
    /// directory that segment came from (fetches go there too).
    struct Pushed {
        storage: MemoryStorage,
        repo: Repository,
        dir: tempfile::TempDir,
        name: WalFileName,
        original: Vec<u8>,
    }

    fn pushed(compression: Compression) -> Pushed {
        let storage = MemoryStorage::default();
        let mut repo = Repository::open(Box::new(storage.clone())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let name = WalFileName::parse("000000010000000000000001").unwrap();
        let mut original = crate::pg::walheader::tests::header_bytes(5, 1 << 20, 1 << 20, 1);
        original.extend((0..(1u32 << 20) - original.len() as u32).map(|i| (i / 7 % 13) as u8));
        std::fs::write(dir.path().join(name.as_str()), &original).unwrap();
        let header = WalHeader::parse(&original, "x").unwrap();
        let identity = repo.initialize(&identity_of(&header)).unwrap().clone();
        let opts = PushOptions {
            compression,
            level: compression.default_level(),
            threads: 1,
        };
        push_file(
            &repo,
            &identity,
            &dir.path().join(name.as_str()),
            &name,
            &opts,
        )
        .unwrap();
        Pushed {
            storage,
            repo,
            dir,
            name,
            original,
        }
    }

    impl Pushed {
        fn object(&self) -> Vec<u8> {
            self.storage.files.borrow()[&self.name.repo_path()].clone()
        }

        /// Replace the stored object (as damage, or a writer with a defect, would).
        fn replace(&self, header: &ObjectHeader, payload: &[u8]) {
            let mut bytes = header.encode().to_vec();
            bytes.extend_from_slice(payload);
            self.storage
                .files
                .borrow_mut()
                .insert(self.name.repo_path(), bytes);
        }

        fn header(&self) -> ObjectHeader {
            ObjectHeader::decode(&self.object(), self.name.as_str()).unwrap()
        }

        /// Fetch as restore_command does; on failure, check that nothing reached `%p`.
        fn fetch(&self) -> Result<Vec<u8>> {
            let dest = self.dir.path().join("RECOVERYXLOG");
            let _ = std::fs::remove_file(&dest);
            match fetch_file(&self.repo, &self.name, &dest) {
                Ok(_) => Ok(std::fs::read(&dest).unwrap()),
                Err(e) => {
                    assert!(!dest.exists(), "a failed fetch left {}", dest.display());
                    assert_eq!(e.kind, crate::error::Kind::Corrupt, "{}", e.message);
                    Err(e)
                }
            }
        }
    }

    impl Pushed {
        /// Fetch, expecting a refusal whose message contains `because`.
        fn refused(&self, because: &str) {
            let e = self.fetch().unwrap_err();
            assert!(e.message.contains(because), "{}", e.message);
        }
    }

    fn payload_digest(payload: &[u8]) -> [u8; PAYLOAD_DIGEST_LEN] {
        Sha256::digest(payload)[..PAYLOAD_DIGEST_LEN]
            .try_into()
            .unwrap()
    }

    #[test]
    fn a_pushed_object_records_its_payload_digest_and_fetches_byte_for_byte() {
        for c in [Compression::None, Compression::Zstd, Compression::Bzip2] {
            let p = pushed(c);
            let object = p.object();
            let header = p.header();
            assert_eq!(object[8], 2, "{c:?}: header version");
            assert_eq!(
                header.payload_digest,
                Some(payload_digest(&object[HEADER_LEN..])),
                "{c:?}"
            );
            assert!(c.payload_checks_itself(&object[HEADER_LEN..]), "{c:?}");
            assert_eq!(p.fetch().unwrap(), p.original, "{c:?}");
            verify_object(&p.repo, &p.name).unwrap();
        }
    }

    #[test]
    fn fetch_refuses_a_stored_byte_that_changed_even_where_nothing_else_would_notice() {
        // Uncompressed, a flipped byte decodes fine: only the payload digest can see it.
        let p = pushed(Compression::None);
        let mut payload = p.object()[HEADER_LEN..].to_vec();
        payload[300_000] ^= 0x10;
        p.replace(&p.header(), &payload);
        p.refused("the stored bytes hash to");
        assert!(verify_object(&p.repo, &p.name).is_err());
    }

    #[test]
    fn fetch_refuses_bytes_after_the_end_of_the_compressed_stream() {
        // bzip2's decoder stops at the end of its stream and would never read what follows.
        let p = pushed(Compression::Bzip2);
        let mut payload = p.object()[HEADER_LEN..].to_vec();
        payload.extend_from_slice(b"appended");
        p.replace(&p.header(), &payload);
        p.refused("the stored bytes hash to");
    }

    #[test]
    fn fetch_refuses_a_version_2_zstd_payload_without_its_content_checksum() {
        let p = pushed(Compression::Zstd);
        let unchecked = zstd::encode_all(&p.original[..], 1).unwrap();
        let header = ObjectHeader {
            payload_digest: Some(payload_digest(&unchecked)),
            ..p.header()
        };
        p.replace(&header, &unchecked);
        p.refused("no checksum of its own");
    }

    #[test]
    fn regression_only_the_first_zstd_frame_of_a_payload_is_handed_over() {
        // An empty frame with the checksum flag, then every byte in a frame without it: decoding
        // past the first frame would hand over bytes that no checksum covered.
        let p = pushed(Compression::Zstd);
        let mut payload = Compression::Zstd
            .stream_encoder(Vec::new(), 1, 1)
            .unwrap()
            .finish()
            .unwrap();
        assert!(Compression::Zstd.payload_checks_itself(&payload));
        payload.extend(zstd::encode_all(&p.original[..], 1).unwrap());
        let header = ObjectHeader {
            payload_digest: Some(payload_digest(&payload)),
            ..p.header()
        };
        p.replace(&header, &payload);
        p.refused("0 bytes after decompression");
    }

    #[test]
    fn a_version_1_object_is_checked_by_the_sha256_of_its_original() {
        let p = pushed(Compression::Zstd);
        let payload = p.object()[HEADER_LEN..].to_vec();
        let v1 = ObjectHeader {
            payload_digest: None,
            ..p.header()
        };
        p.replace(&v1, &payload);
        assert_eq!(p.fetch().unwrap(), p.original);
        let wrong = ObjectHeader {
            sha256: [0; 32],
            ..v1
        };
        p.replace(&wrong, &payload);
        p.refused("does not match the recorded");
    }

    #[test]
    fn verify_checks_the_sha256_of_the_original_of_a_version_2_object_too() {
        let p = pushed(Compression::Zstd);
        let payload = p.object()[HEADER_LEN..].to_vec();
        let wrong = ObjectHeader {
            sha256: [0; 32],
            ..p.header()
        };
        p.replace(&wrong, &payload);
        let e = verify_object(&p.repo, &p.name).unwrap_err();
        assert!(
            e.message.contains("does not match the recorded"),
            "{}",
            e.message
        );
    }
}
