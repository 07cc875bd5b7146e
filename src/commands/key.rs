//! `walship keygen` and `walship key add|list`: a new key, and the keys of an encrypted
//! repository (FORMAT.md, "Encryption"). A key never appears in argv, in a log line or in
//! output other than keygen's own.

use std::io::Write;
use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};

/// Print a new key, or write it to a new file `output` (mode 0600, never over an existing
/// file, never through a symlink).
pub fn keygen(output: Option<&Path>) -> Result<()> {
    let key = crate::crypto::generate_key()?;
    let Some(path) = output else {
        println!("{key}");
        return Ok(());
    };
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            let exists = e.kind() == std::io::ErrorKind::AlreadyExists;
            let mut err = Error::io(format!("creating {}", path.display()), e);
            if exists {
                err.kind = crate::error::Kind::Conflict;
            }
            err.with_hint("keygen never overwrites a file: an existing key may be the only copy.")
        })?;
    f.write_all(format!("{key}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    let id = crate::crypto::Keyring::parse(&key, "the new key")?
        .current()
        .id_hex();
    crate::log_line!(
        "walship: keygen: wrote key {id} to {} (mode 0600); keep a copy apart from the repository: without it, nothing in it can be read",
        path.display()
    );
    Ok(())
}

/// `walship key add`: register the configuration's current key with the repository, so that
/// new objects are sealed under it (the others stay readable with the older keys).
pub fn add(config: &Config) -> Result<()> {
    let repo = config.open_repository()?;
    let keys = repo.keys().ok_or_else(|| {
        Error::usage("encryption = \"none\": there is no key to add")
            .with_hint("Set encryption = \"aead\" and encryption_key_file with the new key first (older keys on later lines).")
    })?;
    let key = keys.current();
    if repo.add_key(key)? {
        println!(
            "added key {} to {}; new objects are sealed under it",
            key.id_hex(),
            repo.describe()
        );
    } else {
        println!(
            "key {} is already a key of {}",
            key.id_hex(),
            repo.describe()
        );
    }
    Ok(())
}

/// `walship key list`: the repository's keys, and which of them this configuration holds.
pub fn list(config: &Config) -> Result<()> {
    let repo = config.open_repository()?;
    let identity = repo.require_identity()?;
    if identity.key_id.is_none() {
        println!("{} is not encrypted", repo.describe());
        return Ok(());
    }
    for id in repo.key_ids()? {
        let state = match repo.keys() {
            Some(k) if k.current().id_hex() == id => "current (new objects are sealed under it)",
            Some(k) if k.ids().contains(&id) => "configured (opens older objects)",
            _ => "not in this configuration",
        };
        println!("{id}  {state}");
    }
    Ok(())
}
