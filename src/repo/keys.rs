//! Which keys an encrypted repository knows (FORMAT.md, "Encryption"): the identity file names
//! the first; each later one is a write-once `keys/<id>.toml`, published by `walship key add`.
//! A writer seals only under a known key, so a wrong key file is refused before it writes
//! anything a reader could not open; a reader needs nothing from here (an object header names
//! its key).

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::Repository;
use crate::crypto::{Key, SCHEME};
use crate::error::{Error, Result};
use crate::storage::Publish;

pub const KEYS_DIR: &str = "keys";

/// A registered key: its id and when and where it was added. Never the key itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: String,
    pub scheme: String,
    pub added_at: i64,
    pub added_by: String,
}

fn path(id: &str) -> String {
    format!("{KEYS_DIR}/{id}.toml")
}

impl Repository {
    /// Every key id this repository knows, the identity file's first.
    pub fn key_ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self.require_identity()?.key_id.iter().cloned().collect();
        let mut later: Vec<String> = self
            .storage()
            .list(KEYS_DIR)?
            .into_iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| e.name.strip_suffix(".toml").map(str::to_string))
            .filter(|id| !ids.contains(id))
            .collect();
        later.sort();
        ids.append(&mut later);
        Ok(ids)
    }

    /// Whether `key` is one of this repository's keys.
    pub fn knows_key(&self, key: &Key) -> Result<bool> {
        let id = key.id_hex();
        if self.require_identity()?.key_id.as_deref() == Some(id.as_str()) {
            return Ok(true);
        }
        Ok(self
            .read_toml::<KeyRecord>(&path(&id), "a walship key record")?
            .is_some_and(|r| r.id == id))
    }

    /// Register `key` (write-once). Returns false when it was known already.
    pub fn add_key(&self, key: &Key) -> Result<bool> {
        let identity = self.require_identity()?;
        if identity.key_id.is_none() {
            return Err(Error::conflict(format!(
                "{} is not encrypted: it has no keys to add to",
                self.describe()
            ))
            .with_hint(
                "A repository is encrypted from its first push on. To encrypt an archive, start a new \
                 repository with encryption = \"aead\" and take a new base backup into it.",
            ));
        }
        if self.knows_key(key)? {
            return Ok(false);
        }
        let record = KeyRecord {
            id: key.id_hex(),
            scheme: SCHEME.into(),
            added_at: crate::os::now(),
            added_by: crate::os::hostname(),
        };
        let text = toml::to_string(&record).expect("plain struct serializes");
        let mut f = self.storage().create(&path(&record.id))?;
        f.write_all(text.as_bytes()).map_err(|e| {
            Error::io(
                format!("writing {}/{}", self.describe(), path(&record.id)),
                e,
            )
        })?;
        Ok(matches!(f.commit()?, Publish::Created))
    }
}
