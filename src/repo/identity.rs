//! `walship.repo`, the identity file: the format version every command checks first, and the one
//! cluster (system identifier, major version, segment size) the repository belongs to.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const IDENTITY_FILE: &str = "walship.repo";
pub const FORMAT_NAME: &str = "walship";
/// The identity file's version written: 2 adds `min_reader_version`; 3, written only for an
/// encrypted repository, adds `encryption` and `key_id`. Version 1 files (walship 0.1, and 0.2
/// before this) are still read.
pub const FORMAT_VERSION: u32 = 2;
pub const ENCRYPTED_FORMAT_VERSION: u32 = 3;
/// An encrypted repository holds version 3 objects, which walship 0.3.0 introduced.
pub const MIN_ENCRYPTED_READER_VERSION: &str = "0.3.0";
/// The oldest walship that can read everything this walship writes: 0.2.0 introduced object
/// header version 2. A writer that starts writing something older readers cannot read raises it.
pub const MIN_READER_VERSION: &str = "0.2.0";

/// The cluster a repository belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub system_identifier: u64,
    pub pg_version: u32,
    pub wal_segment_size: u32,
    /// An encrypted repository: the id of its first key (`crypto::Key::id_hex`). Later keys
    /// are registered under `keys/` (FORMAT.md, "Encryption").
    pub key_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    format: String,
    version: u32,
    system_identifier: String,
    pg_version: u32,
    wal_segment_size: u32,
    created_by: String,
    /// Version 2: the oldest walship release that may read this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_reader_version: Option<String>,
    /// Version 3: the encryption scheme (`crypto::SCHEME`) and the first key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
}

/// Only the fields that say how to read the rest: checked before anything else is trusted.
#[derive(Deserialize)]
struct FormatProbe {
    format: Option<String>,
    version: Option<u32>,
    min_reader_version: Option<toml::Value>,
}

/// `X.Y.Z` as numbers (a suffix after `-` is ignored).
fn release(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let r = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(r)
}

impl Identity {
    pub fn to_toml(&self) -> String {
        let encrypted = self.key_id.is_some();
        let file = IdentityFile {
            format: FORMAT_NAME.into(),
            version: if encrypted {
                ENCRYPTED_FORMAT_VERSION
            } else {
                FORMAT_VERSION
            },
            system_identifier: self.system_identifier.to_string(),
            pg_version: self.pg_version,
            wal_segment_size: self.wal_segment_size,
            created_by: format!("walship {}", env!("CARGO_PKG_VERSION")),
            min_reader_version: Some(
                if encrypted {
                    MIN_ENCRYPTED_READER_VERSION
                } else {
                    MIN_READER_VERSION
                }
                .into(),
            ),
            encryption: encrypted.then(|| crate::crypto::SCHEME.to_string()),
            key_id: self.key_id.clone(),
        };
        format!(
            "# walship repository. Do not edit: walship refuses a repository whose identity changed.\n{}",
            toml::to_string(&file).expect("plain struct serializes")
        )
    }

    /// Parse `walship.repo`; `repo` names the repository in messages.
    pub fn parse(text: &str, repo: &str) -> Result<Identity> {
        let damaged = |why: String| {
            Error::corrupt(format!("{repo}/{IDENTITY_FILE} is damaged: {why}"))
                .with_hint("Restore it from a backup of the repository; walship never rewrites it.")
        };
        let probe: FormatProbe =
            toml::from_str(text).map_err(|e| damaged(e.message().to_string()))?;
        if probe.format.as_deref() != Some(FORMAT_NAME) {
            return Err(Error::conflict(format!(
                "{repo} is not a walship repository ({IDENTITY_FILE} has format {:?})",
                probe.format
            )));
        }
        // First, so that a newer writer's demand is what the reader is told.
        let own = env!("CARGO_PKG_VERSION");
        if let Some(min) = &probe.min_reader_version {
            let min = min
                .as_str()
                .filter(|m| release(m).is_some())
                .ok_or_else(|| damaged(format!("min_reader_version {min} is not \"X.Y.Z\"")))?;
            if release(min) > release(own) {
                return Err(Error::conflict(format!(
                    "{repo} needs walship {min} or newer to read it (its {IDENTITY_FILE} says \
                     min_reader_version = {min:?}); this is walship {own}"
                ))
                .with_hint(format!(
                    "Upgrade walship on this host to {min} or newer before it reads or writes this \
                     repository (upgrade the readers, then the writers)."
                )));
            }
        }
        match probe.version {
            Some(1) => {}
            Some(FORMAT_VERSION | ENCRYPTED_FORMAT_VERSION)
                if probe.min_reader_version.is_some() => {}
            Some(v @ (FORMAT_VERSION | ENCRYPTED_FORMAT_VERSION)) => {
                return Err(damaged(format!("version {v} without min_reader_version")));
            }
            Some(v) => {
                return Err(Error::conflict(format!(
                    "{repo} has repository format version {v}; this walship {own} reads versions 1 to {ENCRYPTED_FORMAT_VERSION} only"
                ))
                .with_hint("Use the walship release that wrote this repository, or a newer one."));
            }
            None => return Err(damaged("no format version".into())),
        }
        let file: IdentityFile =
            toml::from_str(text).map_err(|e| damaged(e.message().to_string()))?;
        let system_identifier = file.system_identifier.parse().map_err(|_| {
            damaged(format!(
                "system_identifier {:?} is not a number",
                file.system_identifier
            ))
        })?;
        let key_id = match (file.version, file.encryption.as_deref(), file.key_id) {
            (ENCRYPTED_FORMAT_VERSION, Some(crate::crypto::SCHEME), Some(id))
                if id.len() == 2 * crate::crypto::KEY_ID_LEN
                    && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Some(id)
            }
            (ENCRYPTED_FORMAT_VERSION, Some(scheme), Some(_))
                if scheme != crate::crypto::SCHEME =>
            {
                return Err(Error::conflict(format!(
                    "{repo} is encrypted with {scheme:?}, which this walship {own} does not know"
                ))
                .with_hint("Upgrade walship."));
            }
            (ENCRYPTED_FORMAT_VERSION, _, _) => {
                return Err(damaged(
                    "version 3 needs `encryption` and a 16-digit hexadecimal `key_id`".into(),
                ));
            }
            (_, None, None) => None,
            (v, _, _) => {
                return Err(damaged(format!(
                    "version {v} has no encryption fields, but this file has them"
                )));
            }
        };
        Ok(Identity {
            system_identifier,
            pg_version: file.pg_version,
            wal_segment_size: file.wal_segment_size,
            key_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = Identity {
            system_identifier: u64::MAX - 5,
            pg_version: 15,
            wal_segment_size: 1 << 24,
            key_id: None,
        };
        assert_eq!(Identity::parse(&id.to_toml(), "r").unwrap(), id);
    }

    #[test]
    fn refuses_unknown_versions_and_foreign_files() {
        let id = Identity {
            system_identifier: 1,
            pg_version: 15,
            wal_segment_size: 1 << 24,
            key_id: None,
        };
        let newer = id.to_toml().replace("\nversion = 2", "\nversion = 4");
        let e = Identity::parse(&newer, "r").unwrap_err();
        assert!(e.message.contains("format version 4"), "{e}");
        assert_eq!(e.kind, crate::error::Kind::Conflict);
        assert!(
            Identity::parse("format = \"pgbackrest\"\nversion = 1\n", "r")
                .unwrap_err()
                .message
                .contains("not a walship")
        );
        assert_eq!(
            Identity::parse("\0\0garbage", "r").unwrap_err().kind,
            crate::error::Kind::Corrupt
        );
    }

    #[test]
    fn regression_a_repository_records_its_minimum_reader_and_a_too_old_reader_refuses_it() {
        let id = Identity {
            system_identifier: 1,
            pg_version: 15,
            wal_segment_size: 1 << 24,
            key_id: None,
        };
        let text = id.to_toml();
        // walship 0.1 refuses any version but 1 before reading anything else; it could not
        // read the version 2 object headers this walship writes
        assert!(text.contains("\nversion = 2\n"), "{text}");
        assert!(text.contains(&format!("min_reader_version = \"{MIN_READER_VERSION}\"")));
        assert_eq!(Identity::parse(&text, "r").unwrap(), id);
        // a newer writer's demand is refused up front, whatever else the file says
        for newer in [
            text.replace(MIN_READER_VERSION, "99.0.0"),
            text.replace(MIN_READER_VERSION, "99.0.0")
                .replace("\nversion = 2", "\nversion = 5"),
        ] {
            let e = Identity::parse(&newer, "r").unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Conflict);
            assert!(e.message.contains("needs walship 99.0.0 or newer"), "{e}");
        }
        // version 1 files (no minimum) are still read; a damaged minimum is corrupt
        let v1 = "format = \"walship\"\nversion = 1\nsystem_identifier = \"1\"\npg_version = 15\n\
             wal_segment_size = 16777216\ncreated_by = \"walship 0.1.0\"\n";
        assert_eq!(Identity::parse(v1, "r").unwrap(), id);
        for bad in ["\"zero\"", "2", "\"1.2\""] {
            let t = text.replace(&format!("\"{MIN_READER_VERSION}\""), bad);
            let e = Identity::parse(&t, "r").unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Corrupt, "{bad}: {e}");
        }
        let none = text.replace(
            &format!("min_reader_version = \"{MIN_READER_VERSION}\"\n"),
            "",
        );
        assert_eq!(
            Identity::parse(&none, "r").unwrap_err().kind,
            crate::error::Kind::Corrupt
        );
        assert_eq!(release("0.2.0"), Some((0, 2, 0)));
        assert!(release("0.10.0") > release("0.9.9"));
    }

    #[test]
    fn an_encrypted_identity_round_trips_and_asks_for_a_reader_that_knows_encryption() {
        let id = Identity {
            system_identifier: 9,
            pg_version: 17,
            wal_segment_size: 1 << 24,
            key_id: Some("00112233445566ff".into()),
        };
        let text = id.to_toml();
        assert!(text.contains("\nversion = 3\n"), "{text}");
        assert!(text.contains("min_reader_version = \"0.3.0\""), "{text}");
        assert!(
            text.contains("encryption = \"xchacha20poly1305-stream\""),
            "{text}"
        );
        assert_eq!(Identity::parse(&text, "r").unwrap(), id);
        // the fields belong together, and to version 3 only
        for bad in [
            text.replace("key_id = \"00112233445566ff\"\n", ""),
            text.replace("00112233445566ff", "short"),
            text.replace("\nversion = 3", "\nversion = 2"),
        ] {
            assert_eq!(
                Identity::parse(&bad, "r").unwrap_err().kind,
                crate::error::Kind::Corrupt,
                "{bad}"
            );
        }
        let other = text.replace("xchacha20poly1305-stream", "rot13");
        assert_eq!(
            Identity::parse(&other, "r").unwrap_err().kind,
            crate::error::Kind::Conflict
        );
    }
}
