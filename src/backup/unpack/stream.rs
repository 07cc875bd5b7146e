//! Reading the backup stream itself, below the tar layer: its compression told from its first
//! bytes, a hash and count of every byte (compared with the repository's record once the stream
//! is read to its end), and bounded reads of the small entries held in memory. Every read error
//! here is a damaged or cut stream, and says so.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::compress::Compression;
use crate::error::{Error, Result};

/// A reader that hashes and counts what passes through it.
pub(super) struct Hashing<R> {
    pub inner: R,
    pub hasher: Sha256,
    pub bytes: u64,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
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
pub(super) fn sniff(first: &[u8]) -> Compression {
    if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if first.starts_with(b"BZh") {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

pub(super) fn stream_err(e: &std::io::Error) -> Error {
    Error::corrupt(format!("backup stream: {e}"))
        .with_hint("The stream is damaged or was cut short; nothing restored from it can start.")
}

/// A walship entry (header, manifest) as text, at most `max` bytes of it.
pub(super) fn read_small(r: &mut impl Read, max: u64) -> Result<String> {
    String::from_utf8(read_bytes(r, max)?)
        .map_err(|_| Error::corrupt("backup stream: a walship entry that is not UTF-8"))
}

/// An entry held in memory rather than written (pg_control, tablespace_map), at most `max` bytes.
pub(super) fn read_bytes(r: &mut impl Read, max: u64) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    r.take(max)
        .read_to_end(&mut b)
        .map_err(|e| stream_err(&e))?;
    Ok(b)
}
