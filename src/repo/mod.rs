//! A walship repository on any [`Storage`]: the identity check every command makes first, and
//! reading and writing whole objects by WAL file name. The format is FORMAT.md.

pub mod backups;
pub mod drill;
pub mod identity;
pub mod inventory;
pub mod keys;
pub mod lock;
pub mod object;
pub mod promotion;
pub mod read;
pub mod readers;
pub mod retention;
pub mod sealed;

use std::io::{Read, Write};

pub use identity::Identity;
pub use object::ObjectHeader;

use crate::crypto::{Key, Keyring};
use crate::error::{Error, Result};
use crate::pg::{WalFileName, WalKind};
use crate::storage::{NewObject, Storage, read_full};
use identity::IDENTITY_FILE;
use object::HEADER_LEN;

/// An object found by listing the repository.
#[derive(Debug, Clone)]
pub struct ListedObject {
    pub name: WalFileName,
    pub stored_bytes: u64,
    /// Modification time (seconds since the Unix epoch), where the storage knows it.
    pub modified: Option<i64>,
}

/// What a listing found: objects, and paths that do not belong in a walship repository.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub objects: Vec<ListedObject>,
    pub strays: Vec<String>,
}

pub struct Repository {
    storage: Box<dyn Storage>,
    identity: Option<Identity>,
    /// The configuration's keys (`encryption = "aead"`); `None`: it encrypts nothing.
    keys: Option<Keyring>,
}

/// Where the object of WAL file `name` lives in a repository, relative to its root (FORMAT.md,
/// "Layout"): history files under `wal/history/`, everything else in the directory named after
/// the first 16 hex digits of its name (timeline and "log" number).
pub fn object_path(name: &WalFileName) -> String {
    match name.kind() {
        WalKind::TimelineHistory => format!("wal/history/{}", name.as_str()),
        _ => format!("wal/{}/{}", &name.as_str()[0..16], name.as_str()),
    }
}

impl Repository {
    /// Open a repository: the root must exist; if `walship.repo` exists its format version must be
    /// known. A repository without one is empty (nothing pushed yet).
    pub fn open(storage: Box<dyn Storage>) -> Result<Repository> {
        storage.check_root()?;
        let identity = read_identity(storage.as_ref())?;
        Ok(Repository {
            storage,
            identity,
            keys: None,
        })
    }

    /// Use the configuration's keys: objects are sealed under the current one and opened with
    /// whichever their header names. `None` is a configuration with `encryption = "none"`.
    pub fn with_keys(mut self, keys: Option<Keyring>) -> Repository {
        self.keys = keys;
        self
    }

    pub fn keys(&self) -> Option<&Keyring> {
        self.keys.as_ref()
    }

    /// The key a writer seals new objects under: `None` for an unencrypted repository. Refuses
    /// (exit 4, before anything is written) a configuration that does not match the
    /// repository: no key for an encrypted one, a key for an unencrypted one, or a key that is
    /// not one of the repository's (a wrong key file).
    pub fn sealing_key(&self) -> Result<Option<&Key>> {
        let encrypted = match &self.identity {
            Some(id) => id.key_id.is_some(),
            // An empty repository becomes what the first writer's configuration says.
            None => self.keys.is_some(),
        };
        match (&self.keys, encrypted) {
            (None, false) => Ok(None),
            (None, true) => Err(Error::conflict(format!(
                "{} is encrypted, but this configuration has encryption = \"none\"; nothing was written",
                self.describe()
            ))
            .with_hint(ENCRYPTION_HINT)),
            (Some(_), false) => Err(Error::conflict(format!(
                "{} is not encrypted, but this configuration has encryption = \"aead\"; nothing was written",
                self.describe()
            ))
            .with_hint(
                "A repository is encrypted from its first push on, or never. Set encryption = \"none\" for \
                 this repository, or start a new one with encryption = \"aead\" (and take a base backup into it).",
            )),
            (Some(keys), true) => {
                let key = keys.current();
                if self.identity.is_some() && !self.knows_key(key)? {
                    return Err(Error::conflict(format!(
                        "the configured key (id {}) is not a key of {} (its keys: {}); nothing was written",
                        key.id_hex(),
                        self.describe(),
                        self.key_ids()?.join(", ")
                    ))
                    .with_hint(
                        "Check encryption_key_file / encryption_key_command: it names another repository's key, \
                         or a new key that was never added (walship key add).",
                    ));
                }
                Ok(Some(key))
            }
        }
    }

    /// The key that opens an object with header `header`: `None` for an unencrypted object.
    /// An object whose encryption differs from the repository's is refused as corrupt (an
    /// encrypted repository's writers never write a plain object: one there was put there by
    /// someone else); a key the configuration lacks is exit 4, never "not in the archive".
    pub fn opening_key(&self, header: &ObjectHeader) -> Result<Option<&Key>> {
        let repo_encrypted = self.identity.as_ref().is_some_and(|i| i.key_id.is_some());
        let Some(id) = header.key_id else {
            if repo_encrypted {
                return Err(Error::corrupt(format!(
                    "repository object {} in {} is not encrypted, but the repository is; refused",
                    header.name,
                    self.describe()
                ))
                .with_hint(
                    "walship never writes a plain object into an encrypted repository: this one was put \
                     there by something else. Nothing was handed to PostgreSQL.",
                ));
            }
            return Ok(None);
        };
        if !repo_encrypted {
            return Err(Error::corrupt(format!(
                "repository object {} in {} is encrypted, but the repository is not; refused",
                header.name,
                self.describe()
            )));
        }
        self.key_by_id(&id, &format!("repository object {}", header.name))
            .map(Some)
    }

    /// The configured key with id `id`, which `what` is sealed under.
    pub(crate) fn key_by_id(
        &self,
        id: &[u8; crate::crypto::KEY_ID_LEN],
        what: &str,
    ) -> Result<&Key> {
        let keys = self.keys.as_ref().ok_or_else(|| {
            Error::conflict(format!(
                "{what} in {} is encrypted (key id {}), and this configuration has no key",
                self.describe(),
                crate::repo::object::hex(id)
            ))
            .with_hint(ENCRYPTION_HINT)
        })?;
        keys.get(id).ok_or_else(|| {
            Error::conflict(format!(
                "{what} in {} is sealed under key id {}, which the configured keys ({}) do not include",
                self.describe(),
                crate::repo::object::hex(id),
                keys.ids().join(", ")
            ))
            .with_hint(
                "After a key rotation, keep the old keys as further lines of the key file (the current key \
                 first) until no object needs them.",
            )
        })
    }

    /// The storage under the repository, for what is not a WAL object (base backups).
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    pub fn describe(&self) -> String {
        self.storage.describe()
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Write the identity file of an empty repository (no-clobber). If another writer won the
    /// race, its identity is read back: the caller compares, never this function.
    /// An encrypted configuration makes an encrypted repository, its current key the first.
    pub fn initialize(&mut self, identity: &Identity) -> Result<&Identity> {
        if self.identity.is_none() {
            let mut identity = identity.clone();
            if let Some(keys) = &self.keys {
                identity.key_id = Some(keys.current().id_hex());
            }
            // The no-clobber publish everything relies on: an object store that ignores
            // conditional creates is refused before the repository exists.
            self.storage.check_conditional_create()?;
            let mut f = self.storage.create(IDENTITY_FILE)?;
            f.write_all(identity.to_toml().as_bytes()).map_err(|e| {
                Error::io(format!("writing {}/{IDENTITY_FILE}", self.describe()), e)
            })?;
            f.commit()?;
            self.identity = read_identity(self.storage.as_ref())?;
        }
        self.identity.as_ref().ok_or_else(|| {
            Error::unavailable(format!(
                "{}/{IDENTITY_FILE} vanished after it was written",
                self.describe()
            ))
        })
    }

    /// The header of the object archived under `name`, if any. Reads 128 bytes, nothing more.
    pub fn object_header(&self, name: &WalFileName) -> Result<Option<ObjectHeader>> {
        let Some(bytes) = self.storage.read_prefix(&object_path(name), HEADER_LEN)? else {
            return Ok(None);
        };
        ObjectHeader::decode(&bytes, name.as_str()).map(Some)
    }

    /// After `open_object` found nothing: fail if that was a damaged repository path, not an
    /// absent object (`Storage::confirm_absent`).
    pub fn confirm_absent(&self, name: &WalFileName) -> Result<()> {
        self.storage.confirm_absent(&object_path(name))
    }

    /// Open the object archived under `name`: its checked header and a reader positioned at the
    /// start of the (still compressed) payload.
    pub fn open_object(
        &self,
        name: &WalFileName,
    ) -> Result<Option<(ObjectHeader, Box<dyn Read + '_>)>> {
        let Some(mut r) = self.storage.open_read(&object_path(name))? else {
            return Ok(None);
        };
        let mut buf = [0u8; HEADER_LEN];
        let got = read_full(&mut r, &mut buf).map_err(|e| {
            Error::io(
                format!("reading {} in {}", name.as_str(), self.describe()),
                e,
            )
        })?;
        let header = ObjectHeader::decode(&buf[..got], name.as_str())?;
        Ok(Some((header, r)))
    }

    /// Every object in the repository, in name order: history files, then the segment
    /// directories. Names that are not WAL file names are returned as errors in `strays`.
    pub fn list_objects(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        let mut dirs = self.storage.list("wal")?;
        dirs.sort_by(|a, b| a.name.cmp(&b.name));
        for dir in dirs {
            let path = format!("wal/{}", dir.name);
            if !dir.is_dir {
                listing.strays.push(path);
                continue;
            }
            for e in self.storage.list(&path)? {
                match WalFileName::parse(&e.name) {
                    Ok(n) if !e.is_dir && object_path(&n) == format!("{path}/{}", e.name) => {
                        listing.objects.push(ListedObject {
                            name: n,
                            stored_bytes: e.size,
                            modified: e.modified,
                        })
                    }
                    _ => listing.strays.push(format!("{path}/{}", e.name)),
                }
            }
        }
        listing
            .objects
            .sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        Ok(listing)
    }

    /// Make an existing object durable (file and directories), see [`Storage::make_durable`].
    pub fn make_durable(&self, name: &WalFileName) -> Result<()> {
        self.storage.make_durable(&object_path(name))
    }

    /// The identity, or an error if there is none: a root without `walship.repo` may be an
    /// unmounted file system or a wrong path, and must never read as "nothing archived".
    pub fn require_identity(&self) -> Result<&Identity> {
        self.identity.as_ref().ok_or_else(|| {
            Error::unavailable(format!("{} has no {IDENTITY_FILE}: nothing was ever pushed to it", self.describe())).with_hint(
                "Check `repo`: if it is on a mount point, check that the file system is mounted. A new repository \
                 is initialized by the first push.",
            )
        })
    }

    /// Remove the object `name` (prune only, under the prune lock). The directory is synced by
    /// [`Repository::sync_object_dir`] after a batch.
    pub fn remove_object(&self, name: &WalFileName) -> Result<bool> {
        self.storage.remove(&object_path(name))
    }

    /// Remove the objects `names` (prune only, under the prune lock), in one batch where the
    /// storage can; returns how many were there. Sync their directory after.
    pub fn remove_objects(&self, names: &[&WalFileName]) -> Result<usize> {
        let paths: Vec<String> = names.iter().map(|n| object_path(n)).collect();
        self.storage.remove_many(&paths)
    }

    /// fsync the directory holding `name`'s object, so that removals there survive a crash.
    pub fn sync_object_dir(&self, name: &WalFileName) -> Result<()> {
        self.storage
            .sync_directory(crate::storage::split_path(&object_path(name)).0)
    }

    /// Remove the segment directory of `name` if nothing (not even a writer's temporary file) is
    /// left in it, and sync its parent.
    pub fn remove_object_dir_if_empty(&self, name: &WalFileName) -> Result<bool> {
        let dir = crate::storage::split_path(&object_path(name)).0.to_string();
        let removed = self.storage.remove_dir_if_empty(&dir)?;
        if removed {
            self.storage
                .sync_directory(crate::storage::split_path(&dir).0)?;
        }
        Ok(removed)
    }

    /// Remove writers' temporary files last modified before `before` (seconds since the epoch)
    /// from every directory of the repository: FORMAT.md lets any command delete one older than
    /// a day (its writer died). Returns the paths removed; each directory is synced after.
    pub fn remove_stale_temporaries(&self, before: i64) -> Result<Vec<String>> {
        let mut dirs = vec![String::new()];
        for top in ["wal", "backups", "readers", "promotions", "drills", "keys"] {
            dirs.push(top.to_string());
            for e in self.storage.list(top)? {
                if e.is_dir {
                    dirs.push(format!("{top}/{}", e.name));
                }
            }
        }
        let mut removed = Vec::new();
        for dir in dirs {
            let mut here = false;
            for t in self.storage.list_temporaries(&dir)? {
                if t.modified.is_some_and(|m| m < before) {
                    let path = if dir.is_empty() {
                        t.name.clone()
                    } else {
                        format!("{dir}/{}", t.name)
                    };
                    if self.storage.remove(&path)? {
                        here = true;
                        removed.push(path);
                    }
                }
            }
            if here {
                self.storage.sync_directory(&dir)?;
            }
        }
        Ok(removed)
    }

    /// Start writing the object for `name` (see [`Storage::create`]).
    /// The 128-byte header is reserved: it is given last, to `NewObject::write_header`.
    pub fn create_object(&self, name: &WalFileName) -> Result<Box<dyn NewObject + '_>> {
        self.storage
            .create_with_header(&object_path(name), HEADER_LEN)
    }
}

const ENCRYPTION_HINT: &str = "Set encryption = \"aead\" and encryption_key_file (or encryption_key_command) \
     to the repository's key, in the configuration of every walship that uses this repository.";

impl Repository {
    /// Read a small TOML file of the repository (a lock, a promotion record); `None` if absent.
    /// Anything that does not parse as `T` is corrupt, named with `what`.
    pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Option<T>> {
        let Some(mut r) = self.storage.open_read(path)? else {
            return Ok(None);
        };
        let mut text = String::new();
        (&mut r)
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(format!("reading {}/{path}", self.describe()), e))?;
        toml::from_str(&text).map(Some).map_err(|e| {
            Error::corrupt(format!("{}/{path} is not {what}: {e}", self.describe())).with_hint(
                format!("Remove {path} from the repository if no walship command uses it."),
            )
        })
    }
}

fn read_identity(storage: &dyn Storage) -> Result<Option<Identity>> {
    let Some(mut r) = storage.open_read(IDENTITY_FILE)? else {
        return Ok(None);
    };
    let mut text = String::new();
    // The file is a few hundred bytes; a limit keeps a wrong file from being read whole.
    (&mut r)
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("reading {}/{IDENTITY_FILE}", storage.describe()), e))?;
    Identity::parse(&text, &storage.describe()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_follow_the_layout() {
        let s = WalFileName::parse("00000001000000000000000D").unwrap();
        assert_eq!(
            object_path(&s),
            "wal/0000000100000000/00000001000000000000000D"
        );
        let h = WalFileName::parse("0000000A.history").unwrap();
        assert_eq!(object_path(&h), "wal/history/0000000A.history");
    }
}
