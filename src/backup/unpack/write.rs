//! Writing what the stream holds into the target: directories mode 0700, files created new
//! (mode 0600, never through a symlink, never over something already there), each file's bytes
//! hashed as they are written so that the manifest check needs no second read.
//!
//! Nothing here is fsynced: the whole target is made durable at once (syncfs) before
//! pg_control is written (`Restored::complete`), and until then the marker keeps the directory
//! from being taken for a complete one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::stream::stream_err;
use crate::backup::hex;
use crate::error::{Error, Result};
use crate::progress::Progress;

pub(super) fn write_err(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("writing {}", path.display()), e)
}

/// A directory and any missing parents, mode 0700 (PostgreSQL refuses a data directory others
/// can read).
pub(super) fn create_dirs(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| write_err(dir, e))
}

/// Copy one file entry to `dest`; its size and SHA-256.
pub(super) fn write_file(
    r: &mut impl Read,
    dest: &Path,
    progress: &Progress,
) -> Result<(u64, String)> {
    if let Some(parent) = dest.parent() {
        create_dirs(parent)?;
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
pub(super) fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| write_err(path, e))
}
