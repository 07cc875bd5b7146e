//! `walship fetch %f %p` (restore_command): fetch, verify, hand over, and choose the exit code
//! PostgreSQL needs.
//!
//! "Not in the archive" is exit 1, quietly. Any other failure is retried a bounded number of times
//! if it may be transient, and then:
//! - on a standby (standby.signal), it exits 1..125: PostgreSQL tries streaming and asks again in
//!   a few seconds, and the error is logged loudly each time;
//! - in plain archive recovery (recovery.signal only), it exits 254: PostgreSQL aborts recovery.
//!   Exit 1 there would end recovery early and open a new timeline without the rest of the WAL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::human_bytes;
use crate::config::{Config, Overrides};
use crate::error::{Kind, Result};
use crate::pg::{WalFileName, WalKind};
use crate::spool::{Spool, SpoolKind, WANT, spawn_worker};
use crate::transfer::{FetchReport, fetch_file};

/// What kind of recovery the server calling us is in, from its signal files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    Standby,
    ArchiveRecovery,
    /// No signal file: not called by a recovering PostgreSQL (a script, a person, a benchmark).
    Unknown,
}

impl RecoveryMode {
    pub fn detect(pgdata: &Path) -> RecoveryMode {
        if pgdata.join("standby.signal").exists() {
            RecoveryMode::Standby
        } else if pgdata.join("recovery.signal").exists() {
            RecoveryMode::ArchiveRecovery
        } else {
            RecoveryMode::Unknown
        }
    }
}

pub fn run(overrides: &Overrides, name: &str, dest: &Path, until: Option<&str>) -> Result<()> {
    let config = Config::resolve(overrides);
    // The data directory: `pgdata` (flag, environment or file; the flag alone if the file is
    // broken), else the working directory (PostgreSQL runs restore_command in the data directory).
    let pgdata = match &config {
        Ok(c) => c.pgdata.clone(),
        Err(_) => overrides.path("pgdata"),
    }
    .unwrap_or_else(|| PathBuf::from("."));
    // The working directory first: PostgreSQL runs restore_command in the data directory of the
    // server that is recovering, which need not be the configured one (a point-in-time restore
    // elsewhere on the host).
    let mode = match RecoveryMode::detect(Path::new(".")) {
        RecoveryMode::Unknown => RecoveryMode::detect(&pgdata),
        here => here,
    };
    let mut retries = 0;
    let started = Instant::now();
    let result = (|| -> Result<Option<FetchReport>> {
        crate::pg::server::become_owner_of_workdir(dest.parent().unwrap_or(Path::new(".")))?;
        let config = config?;
        retries = config.fetch_retries;
        let name = WalFileName::parse(name)?;
        if let Some(until) = until
            && beyond(&name, &WalFileName::parse(until)?)
        {
            return Err(crate::error::Error::not_found(format!(
                "{} is after {until}, where this recovery's archive ends",
                name.as_str()
            )));
        }
        if crate::pg::promotion_marker::fast_promotion_skips(&pgdata, &name) {
            return Err(crate::error::Error::not_found(format!(
                "{} is not restored: a fast promotion is under way",
                name.as_str()
            )));
        }
        let prefetcher = Prefetcher::for_request(&config, &name, dest);
        if let Some(p) = &prefetcher {
            let served = p.take(&name, dest);
            // Announce before fetching ourselves, so the worker starts on the next segments
            // while this one is fetched.
            p.announce(&config, &name);
            if served {
                return Ok(None);
            }
        }
        fetch_with_retries(&config, &name, dest).map(Some)
    })();
    match result {
        Ok(Some(report)) => {
            crate::log_line!(
                "walship: fetched {name} ({}, {}) in {} ms",
                human_bytes(report.original_bytes),
                report.compression.name(),
                report.elapsed.as_millis()
            );
            Ok(())
        }
        Ok(None) => {
            crate::log_line!(
                "walship: fetched {name} from the prefetch spool (verified on arrival) in {} ms",
                started.elapsed().as_millis()
            );
            Ok(())
        }
        Err(e) if e.kind == Kind::NotFound => Err(e),
        Err(mut e) => {
            let tries = if e.kind == Kind::Unavailable {
                format!(" after {} attempts", retries + 1)
            } else {
                String::new()
            };
            match mode {
                RecoveryMode::Standby
                    if name.ends_with(".history")
                        && crate::pg::promotion_marker::promotion_under_way(&pgdata).is_some() =>
                {
                    // PostgreSQL chooses its new timeline from the history files it finds: an
                    // error read as "absent" could make it pick a number already archived.
                    e.message = format!(
                        "{}{tries}; stopping the promotion on purpose (exit 254): PostgreSQL \
                         would read this as \"no such timeline\" and could choose a timeline \
                         that is already archived",
                        e.message
                    );
                    e.abort_recovery = true;
                }
                RecoveryMode::Standby => {
                    e.message = format!("{}{tries}; the standby will ask again", e.message);
                }
                RecoveryMode::ArchiveRecovery => {
                    e.message = format!(
                        "{}{tries}; stopping recovery on purpose (exit 254): ending it here would open a new \
                         timeline without the rest of the archive",
                        e.message
                    );
                    e.abort_recovery = true;
                }
                RecoveryMode::Unknown => e.message = format!("{}{tries}", e.message),
            }
            Err(e)
        }
    }
}

/// Whether segment `name` lies after segment `until`, on any timeline: the log and segment
/// digits (the last 16) sort like WAL locations whatever the segment size.
fn beyond(name: &WalFileName, until: &WalFileName) -> bool {
    name.kind() == WalKind::Segment
        && until.kind() == WalKind::Segment
        && name.as_str()[8..24] > until.as_str()[8..24]
}

/// How long a call waits for a segment the prefetch worker is fetching before fetching it itself.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(60);

/// The foreground's side of prefetching: segments only, and only when `prefetch` > 0 and the
/// spool beside `%p` can be used.
struct Prefetcher {
    spool: Spool,
}

impl Prefetcher {
    fn for_request(config: &Config, name: &WalFileName, dest: &Path) -> Option<Prefetcher> {
        if config.prefetch == 0 || name.kind() != WalKind::Segment {
            return None;
        }
        let pg_wal = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Spool::open(pg_wal, SpoolKind::Fetch, config.location())
            .ok()
            .map(|spool| Prefetcher { spool })
    }

    /// Move a prefetched (already verified) segment to `%p`; false if the spool does not have it
    /// or no worker owns the spool.
    /// A segment the worker is fetching right now is waited for (while the worker lives) rather
    /// than fetched a second time.
    fn take(&self, name: &WalFileName, dest: &Path) -> bool {
        // Only files published by the live worker are trusted: a worker empties the spool when it
        // starts and only then says it serves, so what is there while one serves is its own,
        // complete and verified. Otherwise (after a crash, say, or while a new worker is still
        // emptying the spool) a spooled file could be a torn leftover: fetch instead.
        if !self.spool.serving() {
            return false;
        }
        let started = Instant::now();
        let marker = self.spool.in_flight_marker(name.as_str());
        loop {
            if std::fs::rename(self.spool.dir.join(name.as_str()), dest).is_ok() {
                return true;
            }
            if !marker.exists() || started.elapsed() > IN_FLIGHT_WAIT || !self.spool.serving() {
                // one last look: the worker may have published it just now
                return std::fs::rename(self.spool.dir.join(name.as_str()), dest).is_ok();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Tell the worker which segment recovery is at, starting a worker if none runs. Failing to
    /// start one only costs speed, so it is logged, not returned.
    fn announce(&self, config: &Config, name: &WalFileName) {
        if let Err(e) = self.spool.write_atomic(WANT, name.as_str()) {
            crate::log_line!(
                "walship: fetch {}: prefetch disabled for this call: {e}",
                name.as_str()
            );
            return;
        }
        if !self.spool.worker_alive()
            && let Err(e) = spawn_worker(
                &self.spool,
                &config.worker_args("prefetch", &self.spool.pg_wal),
            )
        {
            crate::log_line!(
                "walship: fetch {}: cannot start the prefetch worker: {e}",
                name.as_str()
            );
        }
    }
}

fn fetch_with_retries(config: &Config, name: &WalFileName, dest: &Path) -> Result<FetchReport> {
    let mut attempt = 0;
    loop {
        let result = config
            .open_repository()
            .and_then(|repo| fetch_file(&repo, name, dest));
        match result {
            Err(e) if e.kind == Kind::Unavailable && attempt < config.fetch_retries => {
                attempt += 1;
                crate::log_line!(
                    "walship: fetch {}: {}; retrying ({attempt}/{})",
                    name.as_str(),
                    e.message,
                    config.fetch_retries
                );
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_cuts_segments_after_it_on_every_timeline_and_nothing_else() {
        let p = |n| WalFileName::parse(n).unwrap();
        let until = p("000000010000000000000010");
        assert!(!beyond(&p("000000010000000000000010"), &until));
        assert!(!beyond(&p("00000002000000000000000F"), &until));
        assert!(beyond(&p("000000020000000000000011"), &until));
        assert!(beyond(&p("000000010000000100000000"), &until));
        assert!(!beyond(&p("00000002.history"), &until));
    }
}
