//! FORMAT.md's object reader: an object streamed through decompression with every check a
//! reader must make ("What a reader checks before handing bytes to PostgreSQL") before its
//! bytes count. fetch, verify, push's "already archived?" and the readers of small objects
//! (history and backup history files) all go through [`read_verified`].

use std::cell::Cell;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::Repository;
use super::object::{ObjectHeader, PAYLOAD_DIGEST_LEN, hex};
use crate::crypto::OpenReader;
use crate::error::{Context, Error, Result};
use crate::hashing::{Digester, HashPipe};
use crate::pg::WalFileName;
use crate::storage::read_full;

/// The most a reader holds in memory at once.
const CHUNK: usize = 1 << 20;

/// How much of an object a reader checks (FORMAT.md, "What a reader checks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// The payload digest, the compression's own check and the length; the SHA-256 of the
    /// original only for a version 1 object, which has nothing else. What fetch does.
    Payload,
    /// All of the above and the SHA-256 of the original, whatever the version. What verify does.
    Everything,
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
pub fn read_verified(
    repo: &Repository,
    name: &WalFileName,
    out: &mut dyn Write,
    out_name: &str,
    checks: Checks,
) -> Result<ObjectHeader> {
    let limit = u64::from(repo.require_identity()?.wal_segment_size);
    let Some((header, payload)) = repo.open_object(name)? else {
        repo.confirm_absent(name)?;
        return Err(Error::not_found(format!(
            "{} is not in {}",
            name.as_str(),
            repo.describe()
        )));
    };
    // A header is only checked against itself: a length beyond what PostgreSQL ever writes
    // under this name would have fetch fill pg_wal before any digest could say no.
    if header.original_len > limit {
        return Err(Error::corrupt(format!(
            "repository object {} in {} records {} bytes; no WAL file of this repository is larger than its {limit}-byte segments",
            name.as_str(),
            repo.describe(),
            header.original_len
        ))
        .with_hint("Nothing was written. The object is damaged or was not written by walship: restore it from another copy of the archive."));
    }
    // Before any byte is read: a key the configuration lacks is exit 4, not damage.
    let key = repo.opening_key(&header)?;
    let storage_failed = Cell::new(false);
    let mut source = PayloadReader {
        inner: payload,
        // Only a version 2 or 3 object has a payload digest to compare with.
        digest: header.payload_digest.map(|_| Sha256::new()),
        failed: &storage_failed,
    };
    // An encrypted payload is opened chunk by chunk, each authenticated before its bytes go on.
    let aad = header.sealing_aad();
    let mut opened = None;
    let opening_failed = Cell::new(None);
    let mut plain = PlainPayload {
        inner: match key {
            Some(k) => opened.insert(OpenReader::new(&mut source, k, &aad)) as &mut dyn Read,
            None => &mut source as &mut dyn Read,
        },
        first: Vec::new(),
        failed: &opening_failed,
    };
    // Small objects (history, backup history, tiny test segments) get small buffers: zero-filling
    // a 1 MiB chunk per object would dominate `verify` on them.
    let chunk = usize::try_from(header.original_len.saturating_add(1))
        .unwrap_or(CHUNK)
        .clamp(4096, CHUNK);
    // The SHA-256 of the original runs on a helper thread, and only when it is asked for.
    let original_hasher = (checks == Checks::Everything || header.payload_digest.is_none())
        .then(|| match key {
            Some(k) => HashPipe::with(chunk, Digester::Keyed(k.content_mac())),
            None => HashPipe::new(chunk),
        })
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
            .payload_decoder(&mut plain)
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
                    return Err(corrupt(
                        opening_failed
                            .take()
                            .unwrap_or_else(|| format!("decompression failed: {e}")),
                    ));
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
        // so anything after that end (nothing, in an intact object) is read and hashed too:
        // through the opening of an encrypted payload first, which authenticates its last chunk.
        let reading = format!("reading {} from {}", name.as_str(), repo.describe());
        if let Err(e) = io::copy(&mut plain, &mut io::sink()) {
            return Err(match opening_failed.take() {
                Some(why) if !storage_failed.get() => corrupt(why),
                _ => Error::io(&reading, e),
            });
        }
        let first = std::mem::take(&mut plain.first);
        drop(plain);
        drop(opened);
        io::copy(&mut source, &mut io::sink()).map_err(|e| Error::io(&reading, e))?;
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
        if !header.compression.payload_checks_itself(&first) {
            return Err(corrupt(format!(
                "its {} payload carries no checksum of its own, which a version 2 object must",
                header.compression.name()
            )));
        }
    }
    if let Some(hasher) = original_hasher {
        let (_, digest) = hasher.finish();
        let (digest, what) = match key {
            Some(_) => (crate::crypto::recorded_mac(digest), "keyed digest"),
            None => (digest, "sha256"),
        };
        if digest != header.digest {
            return Err(corrupt(format!(
                "{what} {} does not match the recorded {}",
                hex(&digest),
                hex(&header.digest)
            )));
        }
    }
    Ok(header)
}

/// The payload as it comes from storage: hashed on the way (the payload digest), and a storage
/// failure remembered, so that a decompression error can be told apart from a dropped
/// connection.
struct PayloadReader<'a, R> {
    inner: R,
    digest: Option<Sha256>,
    failed: &'a Cell<bool>,
}

/// The payload after opening (the compressed bytes): its first bytes kept (the compression's
/// frame header), and a failure to open it (authentication) remembered with its message, so
/// that tampering is reported as such and not as a decompression error.
struct PlainPayload<'a, R> {
    inner: R,
    first: Vec<u8>,
    failed: &'a Cell<Option<String>>,
}

impl<R: Read> Read for PlainPayload<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                self.failed.set(Some(e.to_string()));
            }
        })?;
        if self.first.len() < FRAME_HEADER_KEPT {
            let take = n.min(FRAME_HEADER_KEPT - self.first.len());
            self.first.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
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
        Ok(n)
    }
}
