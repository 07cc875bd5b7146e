//! `walship promote`: make this standby a primary now, and the promotion procedure `watch` and
//! `switchover` use too. In order:
//! 1. refuse on a primary; find the timeline the standby replays (the one it promotes off);
//! 2. automatic failover only: replay the whole archive first, and refuse (publishing nothing)
//!    when replay cannot reach its end: a primary without committed transactions that are in the
//!    archive is worse than no failover;
//! 3. refuse when the repository knows a newer timeline or another node's decision to leave
//!    this timeline; publish the decision (`promotions/off-T.toml`, one per branch point, see
//!    repo/promotion.rs); a person's smart promotion replays the archive now;
//! 4. check the repository again, mark the promotion for `fetch` (tied to this process and this
//!    postmaster, so a marker left by a killed walship is recognised as stale), pg_promote();
//! 5. check that PostgreSQL chose the timeline the record names, then run the `on_promote` hooks.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;

use super::pgdata_of;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks::run_hook;
use crate::os::{hostname, now};
use crate::pg::WalFileName;
use crate::pg::client::PgClient;
use crate::pg::promotion_marker::{Mode, PromotionMarker};
use crate::pg::server::{LocalServer, replay_position};
use crate::pg::timeline::format_lsn;
use crate::pg::walname::segment_name;
use crate::repo::backups::parse_lsn;
use crate::repo::promotion::PromotionRecord;

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Promote now, without replaying the rest of the archive first (default: smart)
    #[arg(long)]
    pub fast: bool,
    /// Promote even when the archive cannot be replayed to its end or the repository says
    /// another server was promoted (the message says what is lost or at risk)
    #[arg(long)]
    pub force: bool,
}

/// Who asks for a promotion, which decides what may be overridden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// `watch` failing over by itself: every check must pass, the record is required.
    Automatic,
    /// A person (`promote`, a trigger file, `switchover`): goes on when the repository cannot
    /// be reached, with a warning.
    Person,
    /// A person with `--force`: every refusal becomes a warning.
    PersonForcing,
}

pub fn run(config: &Config, args: &PromoteArgs) -> Result<()> {
    let pgdata = pgdata_of(config);
    let server =
        LocalServer::open(&pgdata, config.pg_bin.as_deref())?.with_pg(config.pg.as_deref());
    let mode = if args.fast { Mode::Fast } else { Mode::Smart };
    let asker = if args.force {
        Asker::PersonForcing
    } else {
        Asker::Person
    };
    promote(config, &server, mode, "walship promote", asker).map(|_| ())
}

/// Promote the standby `server`; returns its new timeline.
pub fn promote(
    config: &Config,
    server: &LocalServer,
    mode: Mode,
    reason: &str,
    asker: Asker,
) -> Result<u32> {
    let started = Instant::now();
    if server.running_pid().is_none() {
        return Err(Error::unavailable(format!(
            "PostgreSQL is not running in {}",
            server.pgdata.display()
        ))
        .with_hint("Start the standby first: promotion is asked of a running server."));
    }
    let client = server.client()?;
    if client.row("SELECT pg_is_in_recovery()", 1)?[0] != "t" {
        return Err(Error::conflict(format!(
            "{} is already a primary (not in recovery): nothing to promote",
            server.pgdata.display()
        )));
    }
    let node_id = server.node_id()?;
    if asker == Asker::Automatic {
        // Before deciding: a standby that cannot replay the archive must leave the branch point
        // to one that can.
        replay_archive(config, &client, asker)?;
    }
    let (timeline, replay_lsn) = replay_position(&client)?;
    let decided = record_decision(
        config, server, &node_id, timeline, replay_lsn, reason, asker,
    )?;
    if asker != Asker::Automatic && mode == Mode::Smart {
        replay_archive(config, &client, asker)?;
    }
    if decided {
        // The last look before the point of no return: nothing newer may have appeared while
        // the archive was replayed.
        check_blockers(config, &node_id, timeline, asker)?;
    }
    let marker = PromotionMarker::write(server, mode)?;
    if mode == Mode::Fast {
        crate::log_line!("walship: fast promotion: segments not replayed yet will not be restored");
    }
    let promoted = client.row("SELECT pg_promote(true, 120)", 1);
    marker.remove();
    if promoted?[0] != "t" {
        return Err(Error::unavailable(format!(
            "{} did not finish promoting within 120 s",
            server.pgdata.display()
        ))
        .with_hint("See the PostgreSQL log; the promotion may still complete."));
    }
    let current = client.row("SELECT pg_walfile_name(pg_current_wal_lsn())", 1)?[0].clone();
    let new_timeline = WalFileName::parse(&current)
        .map(|n| n.timeline())
        .unwrap_or(0);
    if decided && new_timeline != timeline + 1 {
        return Err(Error::conflict(format!(
            "{} was promoted to timeline {new_timeline}, but its promotion record says timeline {}: \
             another timeline entered the archive while it promoted",
            server.pgdata.display(),
            timeline + 1
        ))
        .with_hint(
            "Check now that no other server is a primary (walship status lists the repository's \
             timelines and promotion records). If another one is, stop this one and rejoin it \
             as a standby (walship rejoin); if not, this server is the only primary and its \
             archiving goes on normally.",
        ));
    }
    crate::log_line!(
        "walship: promoted {}: a primary on timeline {new_timeline}, accepting writes ({:.1} s)",
        server.pgdata.display(),
        started.elapsed().as_secs_f64()
    );
    run_on_promote(config, &server.pgdata, new_timeline, reason);
    Ok(new_timeline)
}

/// Refuse (or, for a forcing person, warn) when the repository forbids promoting off `timeline`.
fn check_blockers(config: &Config, node_id: &str, timeline: u32, asker: Asker) -> Result<()> {
    let found = config
        .open_repository()
        .and_then(|repo| repo.promotion_blocker(timeline, node_id));
    match (found, asker) {
        (Ok(None), _) => Ok(()),
        (Ok(Some(why)), Asker::PersonForcing) => {
            crate::log_line!("walship: WARNING: {why}; promoting anyway (--force)");
            Ok(())
        }
        (Ok(Some(why)), _) => Err(Error::conflict(format!("not promoting: {why}")).with_hint(
            "Promoting this standby too would make two primaries. Make it a standby of the new \
             primary (walship rejoin) instead. If you know the other promotion never happened \
             (walship status shows the records), walship promote --force overrides this.",
        )),
        (Err(e), Asker::Automatic) => Err(e.context("automatic failover needs the repository")),
        (Err(e), _) => {
            crate::log_line!(
                "walship: WARNING: could not check the repository before promoting ({e}); promoting anyway, as asked"
            );
            Ok(())
        }
    }
}

/// Publish the promotion record keyed on `timeline`, the one this standby leaves. `Ok(true)`:
/// the decision is recorded (ours); `Ok(false)`: a person promotes without a record (the
/// repository cannot be reached, or --force over someone else's record).
fn record_decision(
    config: &Config,
    server: &LocalServer,
    node_id: &str,
    timeline: u32,
    replay_lsn: u64,
    reason: &str,
    asker: Asker,
) -> Result<bool> {
    if timeline == 0 {
        return Err(Error::unavailable(format!(
            "cannot tell which timeline {} replays",
            server.pgdata.display()
        )));
    }
    check_blockers(config, node_id, timeline, asker)?;
    let record = PromotionRecord {
        new_timeline: timeline + 1,
        from_timeline: Some(timeline),
        replay_lsn: Some(format_lsn(replay_lsn)),
        node_id: Some(node_id.to_string()),
        host: hostname(),
        pgdata: server.pgdata.display().to_string(),
        reason: reason.to_string(),
        decided_at: now(),
    };
    let published = config
        .open_repository()
        .and_then(|repo| repo.record_promotion(&record));
    match published {
        Ok(None) => {
            crate::log_line!(
                "walship: recorded the promotion off timeline {timeline} (to timeline {}) in the repository",
                timeline + 1
            );
            Ok(true)
        }
        Ok(Some(existing)) if existing.is_from(node_id) => {
            // Our own record: a watcher restarted in the middle of its promotion.
            crate::log_line!(
                "walship: the promotion off timeline {timeline} was decided here before; going on"
            );
            Ok(true)
        }
        Ok(Some(existing)) => {
            let why = format!(
                "{} on {} ({}) already decided the promotion off timeline {timeline} {} s ago",
                existing.pgdata,
                existing.host,
                existing.reason,
                now() - existing.decided_at
            );
            if asker == Asker::PersonForcing {
                crate::log_line!("walship: WARNING: {why}; promoting anyway (--force)");
                return Ok(false);
            }
            Err(Error::conflict(format!("not promoting: {why}")).with_hint(
                "Promoting this standby too would make two primaries. Make it a standby of the \
                 new primary (walship rejoin) instead.",
            ))
        }
        Err(e) if asker != Asker::Automatic => {
            crate::log_line!(
                "walship: WARNING: could not record the promotion in the repository ({e}); promoting anyway, as asked"
            );
            Ok(false)
        }
        Err(e) => Err(e.context("automatic failover needs its promotion record")),
    }
}

/// Wait until the standby has replayed every segment the repository has: its replay position
/// is in or past the newest archived segment and has stopped moving. When it cannot get there
/// within `smart_timeout` (a damaged or missing segment), refuse, naming what is missing; a
/// forcing person gets a warning instead.
fn replay_archive(config: &Config, client: &PgClient, asker: Asker) -> Result<()> {
    let repo = config.open_repository()?;
    let Some(identity) = repo.identity().cloned() else {
        return Ok(());
    };
    let seg_size = identity.wal_segment_size;
    let seg = u64::from(seg_size);
    let started = Instant::now();
    let mut last_pos = None;
    let mut logged = Instant::now() - Duration::from_secs(60);
    loop {
        let newest = repo.newest_segment(seg_size)?;
        let replay =
            client.row("SELECT coalesce(pg_last_wal_replay_lsn()::text, '')", 1)?[0].clone();
        let pos = parse_lsn(&replay);
        let (Some(newest), Some(p)) = (newest, pos) else {
            return Ok(());
        };
        if p / seg >= newest && last_pos == Some(p) {
            crate::log_line!(
                "walship: smart promotion: every archived segment is replayed (at {replay})"
            );
            return Ok(());
        }
        if started.elapsed() > config.smart_timeout {
            let missing = format!(
                "after {} s replay is at {replay} (segment {}), but the archive goes to segment {}: \
                 {} archived segments are not replayed (a damaged or missing segment stops replay; \
                 walship verify finds it)",
                config.smart_timeout.as_secs(),
                &segment_name(1, p / seg, seg_size)[8..],
                &segment_name(1, newest, seg_size)[8..],
                newest.saturating_sub(p / seg)
            );
            if asker == Asker::PersonForcing {
                crate::log_line!(
                    "walship: WARNING: smart promotion: {missing}; promoting anyway (--force): \
                     transactions in those segments will not be on the new primary"
                );
                return Ok(());
            }
            return Err(Error::unavailable(format!("not promoting: {missing}")).with_hint(
                "Repair the archive (walship verify) and promote again, or promote with --force \
                 and lose the transactions in the segments not replayed.",
            ));
        }
        if logged.elapsed() > Duration::from_secs(5) {
            crate::log_line!(
                "walship: smart promotion: replaying the archive ({} segments to go)",
                newest.saturating_sub(p / seg)
            );
            logged = Instant::now();
        }
        last_pos = pos;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Run the on_promote hooks in order; a failing or hanging hook is logged and the next one runs.
fn run_on_promote(config: &Config, pgdata: &Path, timeline: u32, reason: &str) {
    let env = [
        ("WALSHIP_PGDATA", pgdata.display().to_string()),
        ("WALSHIP_NEW_TIMELINE", timeline.to_string()),
        ("WALSHIP_REASON", reason.to_string()),
    ];
    for hook in &config.on_promote {
        let end = run_hook("on_promote", hook, &env, config.hook_timeout);
        if !end.ok() {
            crate::log_line!(
                "walship: WARNING: on_promote hook `{hook}` failed ({end}); the promotion stands"
            );
        }
    }
}
