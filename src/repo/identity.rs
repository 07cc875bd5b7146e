//! `walship.repo`, the identity file: the format version every command checks first, and the one
//! cluster (system identifier, major version, segment size) the repository belongs to.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const IDENTITY_FILE: &str = "walship.repo";
pub const FORMAT_NAME: &str = "walship";
pub const FORMAT_VERSION: u32 = 1;

/// The cluster a repository belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub system_identifier: u64,
    pub pg_version: u32,
    pub wal_segment_size: u32,
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
}

/// Only the fields that say how to read the rest: checked before anything else is trusted.
#[derive(Deserialize)]
struct FormatProbe {
    format: Option<String>,
    version: Option<u32>,
}

impl Identity {
    pub fn to_toml(&self) -> String {
        let file = IdentityFile {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            system_identifier: self.system_identifier.to_string(),
            pg_version: self.pg_version,
            wal_segment_size: self.wal_segment_size,
            created_by: format!("walship {}", env!("CARGO_PKG_VERSION")),
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
        match probe.version {
            Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::conflict(format!(
                    "{repo} has repository format version {v}; this walship {} reads version {FORMAT_VERSION} only",
                    env!("CARGO_PKG_VERSION")
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
        Ok(Identity {
            system_identifier,
            pg_version: file.pg_version,
            wal_segment_size: file.wal_segment_size,
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
        };
        assert_eq!(Identity::parse(&id.to_toml(), "r").unwrap(), id);
    }

    #[test]
    fn refuses_unknown_versions_and_foreign_files() {
        let id = Identity {
            system_identifier: 1,
            pg_version: 15,
            wal_segment_size: 1 << 24,
        };
        let newer = id.to_toml().replace("version = 1", "version = 2");
        let e = Identity::parse(&newer, "r").unwrap_err();
        assert!(e.message.contains("format version 2"), "{e}");
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
}
