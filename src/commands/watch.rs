//! `walship watch`: a long-running watcher beside a standby (a systemd unit is in
//! `contrib/`). It promotes the standby when the trigger file appears (inotify through notify,
//! a check at start-up, and a poll every `watch_interval` for network file systems), and, with
//! `failover_primary` set, when the primary has failed its health checks for `failover_after`:
//! then only after the witness (if any) cannot reach the primary either, the fence command has
//! succeeded, and a last health check still fails. It exits 0 once its standby is a primary.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use super::promote::{Mode, pgdata_of, promote};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks::run_hook;
use crate::pg::client::PgClient;
use crate::pg::server::LocalServer;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Promote when this file appears ("fast" in it: fast; "smart" or empty: smart)
    #[arg(long, env = "WALSHIP_TRIGGER_FILE", value_name = "FILE")]
    pub trigger_file: Option<PathBuf>,
    /// The primary to health-check, as a libpq connection string (automatic failover)
    #[arg(long, env = "WALSHIP_FAILOVER_PRIMARY", value_name = "CONNINFO")]
    pub failover_primary: Option<String>,
    /// Seconds the primary must fail its health checks before failing over
    #[arg(long, env = "WALSHIP_FAILOVER_AFTER", value_name = "SECONDS")]
    pub failover_after: Option<u64>,
    /// Command that must succeed (exit 0) to fence the old primary before a failover
    #[arg(long, env = "WALSHIP_FENCE_COMMAND", value_name = "COMMAND")]
    pub fence_command: Option<String>,
    /// Command that exits 0 when the witness still reaches the primary (blocks failover)
    #[arg(long, env = "WALSHIP_WITNESS_COMMAND", value_name = "COMMAND")]
    pub witness_command: Option<String>,
    /// Seconds between checks
    #[arg(long, env = "WALSHIP_WATCH_INTERVAL", value_name = "SECONDS")]
    pub watch_interval: Option<u64>,
}

impl WatchArgs {
    /// Flags beat the configuration file.
    pub fn apply(&self, config: &mut Config) {
        if let Some(t) = &self.trigger_file {
            config.trigger_file = Some(t.clone());
        }
        if let Some(p) = &self.failover_primary {
            config.failover_primary = Some(p.clone());
        }
        if let Some(s) = self.failover_after {
            config.failover_after = Duration::from_secs(s);
        }
        if let Some(f) = &self.fence_command {
            config.fence_command = Some(f.clone());
        }
        if let Some(w) = &self.witness_command {
            config.witness_command = Some(w.clone());
        }
        if let Some(s) = self.watch_interval {
            config.watch_interval = Duration::from_secs(s.max(1));
        }
    }
}

pub fn run(config: &Config) -> Result<()> {
    let pgdata = pgdata_of(config);
    let server = LocalServer::open(&pgdata, config.pg_bin.as_deref())?;
    let primary = match &config.failover_primary {
        Some(c) => {
            if config.fence_command.is_none() {
                return Err(Error::usage("automatic failover needs fence_command").with_hint(
                    "Without fencing, a primary that is only unreachable from here would go on \
                     taking writes beside the new one. Set fence_command (it must make sure the \
                     old primary cannot write, e.g. power it off), or leave failover_primary unset.",
                ));
            }
            Some(PgClient::from_conninfo(c)?)
        }
        None => None,
    };
    if config.trigger_file.is_none() && primary.is_none() {
        return Err(Error::usage("watch has nothing to watch").with_hint(
            "Set trigger_file (--trigger-file) and/or failover_primary with fence_command.",
        ));
    }
    let events = config.trigger_file.as_deref().and_then(watch_file);
    crate::log_line!(
        "walship: watching {}{}{}",
        pgdata.display(),
        config
            .trigger_file
            .as_ref()
            .map(|t| format!("; trigger file {}", t.display()))
            .unwrap_or_default(),
        primary
            .as_ref()
            .map(|p| format!(
                "; failover after {} s without primary {}",
                config.failover_after.as_secs(),
                p.describe()
            ))
            .unwrap_or_default()
    );
    let mut down_since: Option<Instant> = None;
    let mut said_not_running = false;
    loop {
        if server.running_pid().is_none() {
            if !said_not_running {
                crate::log_line!(
                    "walship: the standby in {} is not running; waiting for it",
                    pgdata.display()
                );
                said_not_running = true;
            }
            wait(&events, config.watch_interval);
            continue;
        }
        said_not_running = false;
        let in_recovery = match server
            .client()
            .and_then(|c| c.row("SELECT pg_is_in_recovery()", 1))
        {
            Ok(r) => r[0] == "t",
            Err(e) => {
                crate::log_line!("walship: cannot ask the standby: {e}");
                wait(&events, config.watch_interval);
                continue;
            }
        };
        if !in_recovery {
            // Promoted (by us before a restart, or by someone else): a trigger file left over
            // must not promote anything later.
            if let Some(t) = &config.trigger_file
                && t.exists()
            {
                remove_trigger(t);
                crate::log_line!(
                    "walship: {} is already a primary; removed the trigger file",
                    pgdata.display()
                );
            }
            crate::log_line!(
                "walship: {} is a primary: nothing left to watch",
                pgdata.display()
            );
            return Ok(());
        }
        if let Some(t) = &config.trigger_file
            && let Some(mode) = read_trigger(t)
        {
            crate::log_line!(
                "walship: trigger file {} appeared: {mode:?} promotion",
                t.display()
            );
            let result = promote(config, &server, mode, "trigger file", false);
            // Removed only once the server is promoted: after a failure the file stays, and
            // the next round tries again.
            if result.is_ok() {
                remove_trigger(t);
            }
            return result.map(|_| ());
        }
        if let Some(p) = &primary {
            match p.row("SELECT 1", 1) {
                Ok(_) => {
                    if down_since.take().is_some() {
                        crate::log_line!("walship: the primary answers again; no failover");
                    }
                }
                Err(e) => {
                    let since = *down_since.get_or_insert_with(|| {
                        crate::log_line!("walship: the primary does not answer: {e}");
                        Instant::now()
                    });
                    if since.elapsed() >= config.failover_after && try_failover(config, &server, p)?
                    {
                        return Ok(());
                    }
                }
            }
        }
        wait(&events, config.watch_interval);
    }
}

/// The failover decision, in order; `Ok(false)`: not now (logged why), the watch goes on.
fn try_failover(config: &Config, server: &LocalServer, primary: &PgClient) -> Result<bool> {
    let env = [("WALSHIP_PGDATA", server.pgdata.display().to_string())];
    if let Some(w) = &config.witness_command {
        let end = run_hook("witness", w, &env, config.hook_timeout);
        if end.ok() {
            crate::log_line!(
                "walship: the witness still reaches the primary: no failover (a network split, not a dead primary)"
            );
            return Ok(false);
        }
    }
    let fence = config.fence_command.as_deref().expect("checked at start");
    let end = run_hook("fence", fence, &env, config.hook_timeout);
    if !end.ok() {
        crate::log_line!(
            "walship: ERROR: fencing the old primary failed ({end}): not promoting; trying again"
        );
        return Ok(false);
    }
    if primary.row("SELECT 1", 1).is_ok() {
        crate::log_line!("walship: ERROR: the primary answers after it was fenced: not promoting");
        return Ok(false);
    }
    crate::log_line!(
        "walship: the primary has not answered for {} s and is fenced: failing over",
        config.failover_after.as_secs()
    );
    promote(config, server, Mode::Smart, "automatic failover", true)?;
    Ok(true)
}

/// The promotion the trigger file asks for: "fast", or "smart" (also empty, as pg_standby).
/// Anything else is read as smart, the mode that loses nothing, with a warning.
fn read_trigger(path: &Path) -> Option<Mode> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "fast" => Mode::Fast,
        "smart" | "" => Mode::Smart,
        other => {
            crate::log_line!(
                "walship: WARNING: trigger file says {other:?}; expected smart or fast; promoting smart"
            );
            Mode::Smart
        }
    })
}

fn remove_trigger(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        crate::log_line!(
            "walship: WARNING: could not remove the trigger file {}: {e}; remove it by hand",
            path.display()
        );
    }
}

/// File system events in the trigger file's directory, if inotify works there.
fn watch_file(path: &Path) -> Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher;
    let dir: PathBuf = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())?
        .to_path_buf();
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |_event| {
        let _ = tx.send(());
    })
    .ok()?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .ok()?;
    Some((watcher, rx))
}

/// Sleep until the next round: `interval`, or sooner when the trigger file's directory changes.
fn wait(events: &Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)>, interval: Duration) {
    match events {
        Some((_, rx)) => {
            let _ = rx.recv_timeout(interval);
            while rx.try_recv().is_ok() {}
        }
        None => std::thread::sleep(interval),
    }
}
