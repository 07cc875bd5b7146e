//! Objects other than WAL in an encrypted repository (FORMAT.md, "Encryption"): a base
//! backup's data stream and its manifest are sealed whole, behind a 24-byte envelope that
//! names the key. Each chunk authenticates the envelope and the object's path, so a stream
//! cannot be moved to another backup or name. In an unencrypted repository these are the plain
//! storage objects they always were.

use std::io::{self, Read, Write};

use super::Repository;
use crate::crypto::{KEY_ID_LEN, OpenReader, SealWriter};
use crate::error::{Error, Result};
use crate::storage::{NewObject, Publish, read_full};

pub const ENVELOPE_MAGIC: [u8; 8] = *b"WALSHIPS";
pub const ENVELOPE_VERSION: u16 = 1;
pub const ENVELOPE_LEN: usize = 24;

fn envelope(key_id: &[u8; KEY_ID_LEN]) -> [u8; ENVELOPE_LEN] {
    let mut e = [0u8; ENVELOPE_LEN];
    e[..8].copy_from_slice(&ENVELOPE_MAGIC);
    e[8..10].copy_from_slice(&ENVELOPE_VERSION.to_le_bytes());
    e[10..18].copy_from_slice(key_id);
    e
}

fn aad(envelope: &[u8; ENVELOPE_LEN], path: &str) -> Vec<u8> {
    let mut a = envelope.to_vec();
    a.extend_from_slice(path.as_bytes());
    a
}

/// A content object being written: sealed in an encrypted repository, plain otherwise.
/// Nothing is visible until [`ContentWriter::commit`].
pub struct ContentWriter<'r> {
    inner: Inner<'r>,
}

enum Inner<'r> {
    Plain(Box<dyn NewObject + 'r>),
    Sealed(SealWriter<Box<dyn NewObject + 'r>>),
}

impl ContentWriter<'_> {
    /// Finish the stream, then publish it as [`NewObject::commit`] does (no-clobber, durable).
    pub fn commit(self) -> Result<Publish> {
        match self.inner {
            Inner::Plain(o) => o.commit(),
            Inner::Sealed(s) => s
                .finish()
                .map_err(|e| Error::io("sealing the last chunk", e))?
                .commit(),
        }
    }
}

impl Write for ContentWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(o) => o.write(buf),
            Inner::Sealed(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(o) => o.flush(),
            Inner::Sealed(s) => s.flush(),
        }
    }
}

impl Repository {
    /// Start writing the content object at `path` (a backup's stream or manifest).
    pub fn create_content(&self, path: &str) -> Result<ContentWriter<'_>> {
        let key = self.sealing_key()?;
        let mut object = self.storage().create(path)?;
        let inner = match key {
            None => Inner::Plain(object),
            Some(k) => {
                let env = envelope(&k.id());
                object
                    .write_all(&env)
                    .map_err(|e| Error::io(format!("writing {path}"), e))?;
                Inner::Sealed(
                    SealWriter::new(object, k, &aad(&env, path))
                        .map_err(|e| Error::io(format!("writing {path}"), e))?,
                )
            }
        };
        Ok(ContentWriter { inner })
    }

    /// Open the content object at `path`; `None` if absent. In an encrypted repository the
    /// bytes are authenticated chunk by chunk as they are read: an altered object fails with
    /// `InvalidData` (corrupt) before any of its bytes are handed out.
    pub fn open_content(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>> {
        let Some(mut r) = self.storage().open_read(path)? else {
            return Ok(None);
        };
        let encrypted = self.identity().is_some_and(|i| i.key_id.is_some());
        if !encrypted {
            return Ok(Some(r));
        }
        let mut env = [0u8; ENVELOPE_LEN];
        let n = read_full(&mut r, &mut env).map_err(|e| Error::io(format!("reading {path}"), e))?;
        if n < ENVELOPE_LEN || env[..8] != ENVELOPE_MAGIC {
            return Err(Error::corrupt(format!(
                "{}/{path} is not encrypted, but the repository is; refused",
                self.describe()
            ))
            .with_hint("walship never writes a plain object into an encrypted repository: this one was put there by something else."));
        }
        let version = u16::from_le_bytes([env[8], env[9]]);
        if version != ENVELOPE_VERSION || env[18..].iter().any(|&b| b != 0) {
            return Err(Error::conflict(format!(
                "{}/{path}: sealed object version {version} is unknown to this walship",
                self.describe()
            ))
            .with_hint("Upgrade walship."));
        }
        let id: [u8; KEY_ID_LEN] = env[10..18].try_into().expect("8 bytes");
        let key = self.key_by_id(&id, path)?;
        Ok(Some(Box::new(OpenReader::new(r, key, &aad(&env, path)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keyring;
    use crate::repo::Identity;
    use crate::storage::memory::MemoryStorage;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    fn repo(storage: &MemoryStorage, key: Option<&str>) -> Repository {
        let mut r = Repository::open(Box::new(storage.clone()))
            .unwrap()
            .with_keys(key.map(|k| Keyring::parse(k, "t").unwrap()));
        r.initialize(&Identity {
            system_identifier: 1,
            pg_version: 15,
            wal_segment_size: 1 << 24,
            key_id: None,
        })
        .unwrap();
        r
    }

    fn read(r: &Repository, path: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        r.open_content(path)?
            .expect("present")
            .read_to_end(&mut out)
            .map_err(|e| Error::io(path, e))?;
        Ok(out)
    }

    #[test]
    fn a_sealed_backup_object_round_trips_and_cannot_be_moved_or_altered() {
        let storage = MemoryStorage::default();
        let r = repo(&storage, Some(K1));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let path = "backups/20261201T000000Z/data.tar.zst";
        let mut w = r.create_content(path).unwrap();
        w.write_all(&data).unwrap();
        assert_eq!(w.commit().unwrap(), Publish::Created);
        assert_eq!(read(&r, path).unwrap(), data);
        let stored = storage.files.borrow()[path].clone();
        assert!(!stored.windows(64).any(|w| w == &data[1000..1064]));
        // moved to another backup: refused
        let other = "backups/20261202T000000Z/data.tar.zst";
        storage
            .files
            .borrow_mut()
            .insert(other.into(), stored.clone());
        assert_eq!(
            read(&r, other).unwrap_err().kind,
            crate::error::Kind::Corrupt
        );
        // a flipped byte in the middle
        let mut bad = stored.clone();
        bad[150_000] ^= 1;
        storage.files.borrow_mut().insert(path.into(), bad);
        let e = read(&r, path).unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Corrupt);
        assert!(e.message.contains("failed authentication"), "{}", e.message);
        // without the key, or with another: exit 4
        storage.files.borrow_mut().insert(path.into(), stored);
        for key in [None, Some(K2)] {
            let r = Repository::open(Box::new(storage.clone()))
                .unwrap()
                .with_keys(key.map(|k| Keyring::parse(k, "t").unwrap()));
            assert_eq!(
                read(&r, path).unwrap_err().kind,
                crate::error::Kind::Conflict
            );
        }
        // a plain object in an encrypted repository
        storage.files.borrow_mut().insert(path.into(), data.clone());
        let e = read(&r, path).unwrap_err();
        assert!(e.message.contains("not encrypted"), "{}", e.message);
    }

    #[test]
    fn an_unencrypted_repository_stores_content_as_it_is() {
        let storage = MemoryStorage::default();
        let r = repo(&storage, None);
        let mut w = r.create_content("backups/x/manifest.toml").unwrap();
        w.write_all(b"id = 1\n").unwrap();
        w.commit().unwrap();
        assert_eq!(
            storage.files.borrow()["backups/x/manifest.toml"],
            b"id = 1\n"
        );
        assert_eq!(read(&r, "backups/x/manifest.toml").unwrap(), b"id = 1\n");
    }
}
