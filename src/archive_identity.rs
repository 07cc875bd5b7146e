//! The repository's identity as a push needs it: taken from the first WAL file pushed into an
//! empty repository, and checked against every later one. Shared by `push` and the push-ahead
//! worker.

use std::fs::File;
use std::path::Path;

use crate::error::{Context, Result};
use crate::pg::WalFileName;
use crate::repo::{Identity, Repository};
use crate::transfer::{check_identity, identity_of, read_segment_header};

/// The repository's identity, creating it in an empty repository from this file (a segment) or,
/// for history and backup files, from a segment in the same pg_wal directory: after a promotion
/// the first file archived is a history file, and a new repository must not stall on it.
pub fn ensure_identity(repo: &mut Repository, path: &Path, name: &WalFileName) -> Result<Identity> {
    if let Some(id) = repo.identity() {
        return Ok(id.clone());
    }
    let header = if name.has_wal_header() {
        let mut f = File::open(path).context(format!("opening {}", path.display()))?;
        read_segment_header(&mut f, name, &path.display().to_string())?
    } else {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        crate::transfer::header_from_wal_dir(dir)?
    };
    // Before the repository takes this cluster's identity: nothing of an unsupported one stays.
    crate::pg::require_supported(header.pg_version, &path.display().to_string())?;
    let id = repo.initialize(&identity_of(&header))?.clone();
    check_identity(&header, &id, name.as_str(), &repo.describe())?;
    Ok(id)
}
