//! `walship watch`: a long-running watcher beside a standby (a systemd unit is in `contrib/`). It
//! promotes the standby when the trigger file appears (inotify through notify, a check at start-up,
//! and a poll every `watch_interval` for network file systems; see `watch/trigger.rs` for what
//! makes a trigger file trustworthy), and, with `failover_primary` set, when the primary has been
//! *down* for `failover_after`: then only if no live watcher of a standby that replayed further is
//! willing to promote instead, the witness (if any) says it cannot reach the primary either, the
//! fence command has succeeded, and a last health check still finds the primary down. Every check
//! fails closed: an answer walship cannot read is never a reason to promote. It exits 0 once its
//! standby is a primary.

mod trigger;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use self::trigger::Trigger;
use super::pgdata_of;
use super::promote::{Asker, promote};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks::{HookEnd, run_hook};
use crate::os::{hostname, now};
use crate::pg::client::{Health, PgClient};
use crate::pg::promotion_marker::Mode;
use crate::pg::server::LocalServer;
use crate::pg::server::replay_position;
use crate::repo::Repository;
use crate::repo::promotion::WatcherBeat;
use crate::settings::{env, help, long, value_name};

/// The whole health check of the primary, connecting included.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags of `watch`. Each sets a setting of the same name, declared (flag, variable, help)
/// in [`crate::settings`]; the CLI hands them to the configuration, which checks them like the
/// file's values.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[arg(long = long("trigger_file"), env = env("trigger_file"), help = help("trigger_file"),
          value_name = value_name("trigger_file"))]
    pub trigger_file: Option<PathBuf>,
    #[arg(long = long("failover_primary"), visible_alias = "failover-primary",
          env = env("failover_primary"), help = help("failover_primary"),
          value_name = value_name("failover_primary"))]
    pub failover_primary: Option<String>,
    #[arg(long = long("failover_after"), env = env("failover_after"), help = help("failover_after"),
          value_name = value_name("failover_after"))]
    pub failover_after: Option<u64>,
    #[arg(long = long("fence_command"), env = env("fence_command"), help = help("fence_command"),
          value_name = value_name("fence_command"))]
    pub fence_command: Option<String>,
    #[arg(long = long("witness_command"), env = env("witness_command"),
          help = help("witness_command"), value_name = value_name("witness_command"))]
    pub witness_command: Option<String>,
    #[arg(long = long("watch_interval"), visible_alias = "watch-interval",
          env = env("watch_interval"), help = help("watch_interval"),
          value_name = value_name("watch_interval"))]
    pub watch_interval: Option<u64>,
}

pub fn run(config: &Config) -> Result<()> {
    let pgdata = pgdata_of(config);
    let server =
        LocalServer::open(&pgdata, config.pg_bin.as_deref())?.with_pg(config.pg.as_deref());
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
    if let Some(t) = &config.trigger_file {
        trigger::check_path(t, server.owner_uid)?;
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
    let mut w = Watcher {
        config,
        server: &server,
        node_id: server.node_id()?,
        repo: None,
        seq: 0,
        peers: HashMap::new(),
        said: HashMap::new(),
    };
    let mut down_since: Option<Instant> = None;
    // Why automatic failover stopped for good (another server was promoted), if it did.
    let mut failover_off: Option<String> = None;
    loop {
        if server.running_pid().is_none() {
            w.say_once(
                "standby",
                format!(
                    "walship: the standby in {} is not running; waiting for it",
                    pgdata.display()
                ),
            );
            w.beat(
                "blind",
                primary.is_some(),
                (0, 0),
                "the standby is not running",
            );
            wait(&events, config.watch_interval);
            continue;
        }
        let observed = server.client().and_then(|c| {
            let in_recovery = c.row("SELECT pg_is_in_recovery()", 1)?[0] == "t";
            let pos = if in_recovery {
                replay_position(&c)?
            } else {
                (0, 0)
            };
            Ok((in_recovery, pos))
        });
        let (in_recovery, position) = match observed {
            Ok(o) => o,
            Err(e) => {
                // Loud: a watcher that cannot see its standby can neither fail over nor obey
                // the trigger file, and nobody would know.
                w.say_once(
                    "standby",
                    format!(
                        "walship: ERROR: cannot observe the standby: {e}; this watcher is blind: \
                         neither the trigger file nor automatic failover can promote until it \
                         can connect (set `pg` to the standby's connection string if its role \
                         is not the data directory's owner)"
                    ),
                );
                w.beat("blind", primary.is_some(), (0, 0), &e.to_string());
                down_since = None;
                wait(&events, config.watch_interval);
                continue;
            }
        };
        w.said.remove("standby");
        if !in_recovery {
            // Promoted (by us before a restart, or by someone else): a trigger file left over
            // must not promote anything later.
            if let Some(t) = &config.trigger_file
                && trigger::read(t, server.owner_uid) != Trigger::Absent
            {
                trigger::remove(t);
                crate::log_line!(
                    "walship: {} is already a primary; removed the trigger file",
                    pgdata.display()
                );
            }
            w.beat("primary", false, (0, 0), "");
            crate::log_line!(
                "walship: {} is a primary: nothing left to watch",
                pgdata.display()
            );
            return Ok(());
        }
        if let Some(t) = &config.trigger_file {
            match trigger::read(t, server.owner_uid) {
                Trigger::Absent => {}
                Trigger::Refused(why) => w.say_once(
                    "trigger",
                    format!(
                        "walship: ERROR: not obeying the trigger file {}: {why}",
                        t.display()
                    ),
                ),
                Trigger::Promote(mode) => {
                    crate::log_line!(
                        "walship: trigger file {} appeared: {mode:?} promotion",
                        t.display()
                    );
                    w.beat("promoting", primary.is_some(), position, "trigger file");
                    let result = promote(config, &server, mode, "trigger file", Asker::Person);
                    // Removed only once the server is promoted: after a failure the file
                    // stays, and the next round tries again.
                    if result.is_ok() {
                        trigger::remove(t);
                    }
                    return result.map(|_| ());
                }
            }
        }
        let Some(p) = primary.as_ref().filter(|_| failover_off.is_none()) else {
            match &failover_off {
                Some(why) => w.beat("refused", false, position, why),
                None => w.beat("watching", false, position, ""),
            }
            wait(&events, config.watch_interval);
            continue;
        };
        match p.probe(HEALTH_TIMEOUT) {
            Health::Up => {
                if down_since.take().is_some() {
                    crate::log_line!("walship: the primary answers again; no failover");
                }
                w.said.remove("unknown");
                w.beat("watching", true, position, "");
            }
            Health::Unknown(why) => {
                // Alive as far as anyone can tell: the streak of "down" answers ends.
                if down_since.take().is_some() {
                    crate::log_line!("walship: the primary is no longer down: {why}");
                }
                w.say_once(
                    "unknown",
                    format!(
                        "walship: the primary's health is unknown ({why}); not counted as down"
                    ),
                );
                w.beat("watching", true, position, "");
            }
            Health::Down(why) => {
                let since = *down_since.get_or_insert_with(|| {
                    crate::log_line!("walship: the primary does not answer: {why}");
                    Instant::now()
                });
                w.beat("watching", true, position, "the primary is down");
                w.observe_peers();
                if since.elapsed() >= config.failover_after {
                    match w.try_failover(p, position)? {
                        Failover::Promoted => return Ok(()),
                        Failover::NotNow => {}
                        Failover::Refused { why, for_good } => {
                            w.beat("refused", !for_good, position, &why);
                            run_refused_hooks(config, &pgdata, &why);
                            if for_good {
                                // Another server was promoted: failing over from the old
                                // primary can never be right again. The trigger file still
                                // works (a person may know better).
                                crate::log_line!(
                                    "walship: automatic failover from {} is off for this watcher: \
                                     {why}. Make this standby follow the new primary and point \
                                     failover_primary at it.",
                                    p.describe()
                                );
                                failover_off = Some(why);
                            }
                            // Watching goes on, but the streak starts again, so the alert is
                            // not repeated every round.
                            down_since = None;
                        }
                    }
                }
            }
        }
        wait(&events, config.watch_interval);
    }
}

/// What an attempt to fail over came to.
enum Failover {
    Promoted,
    /// A check said no (logged); the next round asks again.
    NotNow,
    /// This standby must not be promoted automatically: alert, keep watching. `for_good`: the
    /// repository says another server was promoted (no later round can change that); otherwise
    /// it cannot replay the archive now (a repaired archive may let a later round through).
    Refused {
        why: String,
        for_good: bool,
    },
}

/// The watcher's state between rounds.
struct Watcher<'a> {
    config: &'a Config,
    server: &'a LocalServer,
    node_id: String,
    /// The repository, kept open between rounds (an SSH session per round would be costly).
    repo: Option<Repository>,
    seq: u64,
    /// Other watchers' heartbeats: the newest seen, and when (our clock) its sequence moved.
    peers: HashMap<String, (WatcherBeat, Instant)>,
    /// Messages said once until the condition clears.
    said: HashMap<&'static str, String>,
}

impl Watcher<'_> {
    fn say_once(&mut self, key: &'static str, message: String) {
        if self.said.get(key) != Some(&message) {
            crate::log_line!("{message}");
            self.said.insert(key, message);
        }
    }

    fn repo(&mut self) -> Result<&Repository> {
        if self.repo.is_none() {
            self.repo = Some(self.config.open_repository()?);
        }
        Ok(self.repo.as_ref().expect("just opened"))
    }

    /// Publish this watcher's heartbeat (FORMAT.md, "Watchers"). A repository that cannot be
    /// reached costs only the heartbeat, and is reopened next round.
    fn beat(&mut self, state: &str, willing: bool, (timeline, lsn): (u32, u64), detail: &str) {
        self.seq += 1;
        let beat = WatcherBeat {
            node_id: self.node_id.clone(),
            seq: self.seq,
            host: hostname(),
            pgdata: self.server.pgdata.display().to_string(),
            willing,
            state: state.to_string(),
            timeline,
            replay_lsn: lsn,
            updated_at: now(),
            detail: detail.to_string(),
        };
        let result = self.repo().and_then(|r| r.publish_beat(&beat));
        if let Err(e) = result {
            self.repo = None;
            self.say_once(
                "beat",
                format!("walship: cannot publish the watcher heartbeat: {e}"),
            );
        } else {
            self.said.remove("beat");
        }
    }

    /// Read the other watchers' heartbeats, noting when each one's sequence last moved.
    fn observe_peers(&mut self) {
        let beats = match self.repo().and_then(|r| r.watcher_beats()) {
            Ok(b) => b,
            Err(_) => {
                self.repo = None;
                return;
            }
        };
        for b in beats {
            if b.node_id == self.node_id {
                continue;
            }
            let moved = self
                .peers
                .get(&b.node_id)
                .is_none_or(|(seen, _)| seen.seq != b.seq);
            if moved {
                self.peers.insert(b.node_id.clone(), (b, Instant::now()));
            }
        }
    }

    /// A live watcher, willing to fail over, whose standby has replayed further (or as far,
    /// with the smaller node id: one of two equals must give way), and that has not refused.
    fn better_peer(&self, ours: (u32, u64)) -> Option<&WatcherBeat> {
        let stale_after = (self.config.watch_interval * 4).max(Duration::from_secs(5));
        self.peers
            .values()
            .filter(|(b, moved)| {
                moved.elapsed() < stale_after && b.willing && b.state == "watching"
            })
            .map(|(b, _)| b)
            .filter(|b| {
                let theirs = (b.timeline, b.replay_lsn);
                theirs > ours || (theirs == ours && b.node_id < self.node_id)
            })
            .max_by_key(|b| (b.timeline, b.replay_lsn))
    }

    /// The failover decision, in order.
    fn try_failover(&mut self, primary: &PgClient, position: (u32, u64)) -> Result<Failover> {
        let config = self.config;
        if let Some(peer) = self.better_peer(position) {
            self.say_once(
                "peer",
                format!(
                    "walship: not failing over: the standby {} on {} has replayed to {} on \
                     timeline {} (this one: {} on timeline {}) and is willing to promote",
                    peer.pgdata,
                    peer.host,
                    crate::pg::timeline::format_lsn(peer.replay_lsn),
                    peer.timeline,
                    crate::pg::timeline::format_lsn(position.1),
                    position.0
                ),
            );
            return Ok(Failover::NotNow);
        }
        self.said.remove("peer");
        // Before the witness and the fence: if another server was promoted, there is nothing
        // to fence for, and this standby must not be promoted.
        let node_id = self.node_id.clone();
        match self
            .repo()
            .and_then(|r| r.promotion_blocker(position.0, &node_id))
        {
            Ok(None) => {}
            Ok(Some(why)) => {
                crate::log_line!(
                    "walship: ERROR: automatic failover refused: not promoting: {why}"
                );
                return Ok(Failover::Refused {
                    why: format!("not promoting: {why}"),
                    for_good: true,
                });
            }
            Err(e) => {
                self.repo = None;
                crate::log_line!(
                    "walship: ERROR: cannot read the repository before failing over ({e}): not now"
                );
                return Ok(Failover::NotNow);
            }
        }
        let env = [("WALSHIP_PGDATA", self.server.pgdata.display().to_string())];
        if let Some(w) = &config.witness_command {
            match run_hook("witness", w, &env, config.hook_timeout) {
                HookEnd::Exited(1) => {}
                HookEnd::Exited(0) => {
                    crate::log_line!(
                        "walship: the witness still reaches the primary: no failover (a network split, not a dead primary)"
                    );
                    return Ok(Failover::NotNow);
                }
                other => {
                    crate::log_line!(
                        "walship: ERROR: the witness gave no answer ({other}; exit 0 means it \
                         reaches the primary, 1 that it does not): no failover"
                    );
                    return Ok(Failover::NotNow);
                }
            }
        }
        let fence = config.fence_command.as_deref().expect("checked at start");
        let end = run_hook("fence", fence, &env, config.hook_timeout);
        if !end.ok() {
            crate::log_line!(
                "walship: ERROR: fencing the old primary failed ({end}): not promoting; trying again"
            );
            return Ok(Failover::NotNow);
        }
        match primary.probe(HEALTH_TIMEOUT) {
            Health::Down(_) => {}
            other => {
                crate::log_line!(
                    "walship: ERROR: the primary is not down after it was fenced ({other:?}): not promoting"
                );
                return Ok(Failover::NotNow);
            }
        }
        crate::log_line!(
            "walship: the primary has been down for {} s and is fenced: failing over",
            config.failover_after.as_secs()
        );
        self.beat("promoting", true, position, "automatic failover");
        match promote(
            config,
            self.server,
            Mode::Smart,
            "automatic failover",
            Asker::Automatic,
        ) {
            Ok(_) => Ok(Failover::Promoted),
            Err(e) if e.message.starts_with("not promoting") => {
                crate::log_line!("walship: ERROR: automatic failover refused: {e}");
                Ok(Failover::Refused {
                    why: e.message.clone(),
                    for_good: e.kind == crate::error::Kind::Conflict,
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// Tell someone that automatic failover would have promoted this standby but refused to: the
/// `on_failover_refused` hooks, with the reason.
fn run_refused_hooks(config: &Config, pgdata: &Path, why: &str) {
    let env = [
        ("WALSHIP_PGDATA", pgdata.display().to_string()),
        ("WALSHIP_REASON", why.to_string()),
    ];
    for hook in &config.on_failover_refused {
        let end = run_hook("on_failover_refused", hook, &env, config.hook_timeout);
        if !end.ok() {
            crate::log_line!("walship: WARNING: on_failover_refused hook `{hook}` failed ({end})");
        }
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
