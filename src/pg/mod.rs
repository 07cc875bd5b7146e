//! Everything walship knows about PostgreSQL: WAL file names, WAL page headers, and running local
//! clusters (for `walship demo` and the integration tests). Nothing outside this module parses a
//! WAL name or header.

pub mod client;
pub mod cluster;
pub mod pidfile;
pub mod promotion_marker;
pub mod server;
pub mod session;
pub mod timeline;
pub mod walheader;
pub mod walname;

pub use walheader::WalHeader;

use crate::error::{Error, Result};

/// The PostgreSQL major versions walship supports and is tested on. 15 is the first with
/// pg_backup_start/pg_backup_stop, which base backups use; WAL of a version newer than 18 is
/// already refused by its unknown page magic.
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u32> = 15..=18;

/// Refuse a server (or its WAL, `what`) of a major version older than walship supports.
pub fn require_supported(major: u32, what: &str) -> Result<()> {
    if major >= *SUPPORTED_MAJORS.start() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{what}: PostgreSQL {major} is not supported: walship supports PostgreSQL {} to {}",
        SUPPORTED_MAJORS.start(),
        SUPPORTED_MAJORS.end()
    ))
    .with_hint(
        "walship needs pg_backup_start and pg_backup_stop (PostgreSQL 15 and later). Upgrade the \
         server (pg_upgrade), and keep the archiving it has until then.",
    ))
}
pub use walname::{WalFileName, WalKind};
