//! `walship promote`: make this standby a primary now, and the promotion procedure `watch` uses
//! too: refuse on a primary; record the decision in the repository (one promotion per new
//! timeline, see repo/promotion.rs); for a smart promotion wait until every archived segment is
//! replayed, for a fast one stop restoring; pg_promote(); wait until the server accepts writes;
//! run the `on_promote` hooks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks::run_hook;
use crate::pg::client::PgClient;
use crate::pg::server::LocalServer;
use crate::pg::{WalFileName, WalKind};
use crate::repo::backups::parse_lsn;
use crate::repo::lock::{hostname, now};
use crate::repo::promotion::PromotionRecord;

/// The marker that tells `walship fetch` a fast promotion is under way: restore no more segments.
pub const FAST_MARKER: &str = "pg_wal/walship/promote-fast";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replay every segment the archive has, then promote.
    Smart,
    /// Promote now: segments not replayed yet are not restored.
    Fast,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Promote now, without replaying the rest of the archive first (default: smart)
    #[arg(long)]
    pub fast: bool,
}

pub fn run(config: &Config, args: &PromoteArgs) -> Result<()> {
    let pgdata = pgdata_of(config);
    let server = LocalServer::open(&pgdata, config.pg_bin.as_deref())?;
    let mode = if args.fast { Mode::Fast } else { Mode::Smart };
    promote(config, &server, mode, "walship promote", false).map(|_| ())
}

/// The data directory: `pgdata`, else the working directory.
pub fn pgdata_of(config: &Config) -> PathBuf {
    config.pgdata.clone().unwrap_or_else(|| PathBuf::from("."))
}

/// Promote the standby `server`; returns its new timeline. With `decision_required` (automatic
/// failover) the promotion record must be published first; a person's `promote` goes ahead
/// with a warning when the repository cannot be reached.
pub fn promote(
    config: &Config,
    server: &LocalServer,
    mode: Mode,
    reason: &str,
    decision_required: bool,
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
    record_decision(config, server, reason, decision_required)?;
    match mode {
        Mode::Smart => replay_archive(config, &client)?,
        Mode::Fast => {
            let marker = server.pgdata.join(FAST_MARKER);
            if let Some(dir) = marker.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            }
            std::fs::write(&marker, "")
                .map_err(|e| Error::io(format!("writing {}", marker.display()), e))?;
            crate::log_line!(
                "walship: fast promotion: segments not replayed yet will not be restored"
            );
        }
    }
    let promoted = client.row("SELECT pg_promote(true, 120)", 1);
    let _ = std::fs::remove_file(server.pgdata.join(FAST_MARKER));
    if promoted?[0] != "t" {
        return Err(Error::unavailable(format!(
            "{} did not finish promoting within 120 s",
            server.pgdata.display()
        ))
        .with_hint("See the PostgreSQL log; the promotion may still complete."));
    }
    let current = client.row("SELECT pg_walfile_name(pg_current_wal_lsn())", 1)?[0].clone();
    let timeline = WalFileName::parse(&current)
        .map(|n| n.timeline())
        .unwrap_or(0);
    crate::log_line!(
        "walship: promoted {}: a primary on timeline {timeline}, accepting writes ({:.1} s)",
        server.pgdata.display(),
        started.elapsed().as_secs_f64()
    );
    run_on_promote(config, &server.pgdata, timeline, reason);
    Ok(timeline)
}

/// Publish the promotion record. Someone else's record for the same new timeline means another
/// standby was promoted off this one's timeline: promoting too would make two primaries.
fn record_decision(
    config: &Config,
    server: &LocalServer,
    reason: &str,
    required: bool,
) -> Result<()> {
    let attempt = (|| {
        let repo = config.open_repository()?;
        let record = PromotionRecord {
            new_timeline: repo.newest_timeline()? + 1,
            host: hostname(),
            pgdata: server.pgdata.display().to_string(),
            reason: reason.to_string(),
            decided_at: now(),
        };
        Ok::<_, Error>((repo.record_promotion(&record)?, record))
    })();
    match attempt {
        Ok((None, record)) => {
            crate::log_line!(
                "walship: recorded the promotion to timeline {} in the repository",
                record.new_timeline
            );
            Ok(())
        }
        Ok((Some(existing), record))
            if existing.host == record.host && existing.pgdata == record.pgdata =>
        {
            // Our own record: a watcher restarted in the middle of its promotion.
            crate::log_line!(
                "walship: the promotion to timeline {} was decided here before; going on",
                record.new_timeline
            );
            Ok(())
        }
        Ok((Some(existing), _)) => Err(Error::conflict(format!(
            "timeline {} was already promoted: {} on {} ({}) decided it {} s ago",
            existing.new_timeline,
            existing.pgdata,
            existing.host,
            existing.reason,
            now() - existing.decided_at
        ))
        .with_hint(
            "Promoting this standby too would make two primaries. Make it a standby of the new \
             primary (walship rejoin) instead.",
        )),
        Err(e) if !required => {
            crate::log_line!(
                "walship: WARNING: could not record the promotion in the repository ({e}); promoting anyway, as asked"
            );
            Ok(())
        }
        Err(e) => Err(e.context("automatic failover needs its promotion record")),
    }
}

/// Wait until the standby has replayed every segment the repository has (smart promotion): its
/// replay position is in or past the newest archived segment and has stopped moving.
fn replay_archive(config: &Config, client: &PgClient) -> Result<()> {
    let repo = config.open_repository()?;
    let Some(identity) = repo.identity().cloned() else {
        return Ok(());
    };
    let seg = u64::from(identity.wal_segment_size);
    let started = Instant::now();
    let mut last_pos = None;
    let mut logged = Instant::now() - Duration::from_secs(60);
    loop {
        let newest = repo.newest_segment(identity.wal_segment_size)?;
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
            crate::log_line!(
                "walship: WARNING: smart promotion: after {} s replay is at {replay}, the archive \
                 goes to segment {newest}; promoting anyway (PostgreSQL replays what it can \
                 restore before it finishes promoting)",
                config.smart_timeout.as_secs()
            );
            return Ok(());
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

/// Whether `fetch` must answer "not in the archive" for `name`: a fast promotion is under way
/// in `pgdata` and `name` is WAL (history files are still served: PostgreSQL needs them to
/// choose its new timeline).
pub fn fast_promotion_skips(pgdata: &Path, name: &WalFileName) -> bool {
    matches!(name.kind(), WalKind::Segment | WalKind::Partial) && pgdata.join(FAST_MARKER).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_promotion_stops_restoring_wal_but_not_history_files() {
        let dir = tempfile::tempdir().unwrap();
        let seg = WalFileName::parse("000000010000000000000005").unwrap();
        let history = WalFileName::parse("00000002.history").unwrap();
        assert!(!fast_promotion_skips(dir.path(), &seg));
        std::fs::create_dir_all(dir.path().join("pg_wal/walship")).unwrap();
        std::fs::write(dir.path().join(FAST_MARKER), "").unwrap();
        assert!(fast_promotion_skips(dir.path(), &seg));
        assert!(!fast_promotion_skips(dir.path(), &history));
    }
}
