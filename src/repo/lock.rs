//! The repository lock (FORMAT.md, "Locks"): a file published with the same no-clobber operation
//! as objects, so exactly one holder wins on any backend (a local directory or SFTP, where there
//! is no flock). It records who holds it; a lock whose holder is provably dead (same host, no
//! such process) or that is older than the stale limit is taken over, with a message saying so.

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Repository;
use crate::error::{Error, Result};
use crate::os::{hostname, now, process_alive};
use crate::storage::Publish;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    command: String,
    host: String,
    pid: u32,
    /// Seconds since the Unix epoch.
    started: i64,
    /// Tells this holder's lock from a successor's when releasing.
    token: String,
}

/// A held lock; released (removed) on drop.
pub struct RepoLock<'a> {
    repo: &'a Repository,
    path: String,
    token: String,
}

impl Repository {
    /// Take the lock `name` (a file `<name>.lock` at the repository root) for `command`. Fails
    /// with a conflict naming the holder if a live one has it.
    pub fn lock(&self, name: &str, command: &str, stale_after: Duration) -> Result<RepoLock<'_>> {
        let path = format!("{name}.lock");
        let me = Holder {
            command: command.into(),
            host: hostname(),
            pid: std::process::id(),
            started: now(),
            token: format!("{}-{}-{}", hostname(), std::process::id(), now()),
        };
        let text = toml::to_string(&me).expect("plain struct serializes");
        // Two rounds: the second follows the removal of a stale lock.
        for _ in 0..2 {
            let mut f = self.storage.create(&path)?;
            f.write_all(text.as_bytes())
                .map_err(|e| Error::io(format!("writing {}/{path}", self.describe()), e))?;
            if f.commit()? == Publish::Created {
                return Ok(RepoLock {
                    repo: self,
                    path,
                    token: me.token,
                });
            }
            let Some(holder) = self.read_holder(&path)? else {
                continue; // released meanwhile
            };
            let age = now() - holder.started;
            let stale = if holder.host == me.host {
                !process_alive(holder.pid)
            } else {
                age > stale_after.as_secs() as i64
            };
            if !stale {
                return Err(Error::conflict(format!(
                    "{}/{path} is held by `{}` (pid {} on {}, for {age} s)",
                    self.describe(),
                    holder.command,
                    holder.pid,
                    holder.host
                ))
                .with_hint(format!(
                    "Wait for it to finish. If that process is gone, remove {path} from the \
                     repository; a lock from another host is taken over after {} s.",
                    stale_after.as_secs()
                )));
            }
            crate::log_line!(
                "walship: {command}: taking over the stale lock of `{}` (pid {} on {}, {age} s old)",
                holder.command,
                holder.pid,
                holder.host
            );
            // Remove only the lock we judged stale, not a successor's.
            if self.read_holder(&path)?.as_ref() == Some(&holder) {
                self.storage.remove(&path)?;
                self.storage.sync_directory("")?;
            }
        }
        Err(Error::conflict(format!(
            "could not take {}/{path}: another process keeps taking it",
            self.describe()
        )))
    }

    fn read_holder(&self, path: &str) -> Result<Option<Holder>> {
        self.read_toml(path, "a walship lock")
    }
}

impl Drop for RepoLock<'_> {
    fn drop(&mut self) {
        if let Ok(Some(h)) = self.repo.read_holder(&self.path)
            && h.token == self.token
        {
            let _ = self.repo.storage.remove(&self.path);
            let _ = self.repo.storage.sync_directory("");
        }
    }
}
