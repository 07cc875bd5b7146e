//! The promotion marker, `pg_wal/walship/promoting` in a standby's data directory: how a
//! `walship promote` (or `watch`, `switchover`) under way tells `walship fetch`, a separate
//! process PostgreSQL runs for each file, what it is doing. During a fast promotion fetch answers
//! "not in the archive" for WAL segments (history files are still served), so that the
//! promotion does not wait for the rest of the archive to replay. A marker names the walship
//! and the postmaster it was written for, so that one a killed walship left is known as stale.
//! The marker is not part of the repository (FORMAT.md is not concerned).
//!
//! It lives here, beside the server it describes, because both sides use it: the promotion
//! writes it, fetch reads it, and neither command should reach into the other for it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pg::server::{LocalServer, Postmaster};
use crate::pg::{WalFileName, WalKind};

/// Where the marker lives, and its one line: `MODE WALSHIP_PID WALSHIP_START POSTMASTER_PID
/// POSTMASTER_START`.
pub const PROMOTION_MARKER: &str = "pg_wal/walship/promoting";

/// How a standby is promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replay every segment the archive has, then promote.
    Smart,
    /// Promote now: segments not replayed yet are not restored.
    Fast,
}

/// The marker that tells `fetch` a promotion is under way. It names this walship process and
/// the postmaster it was written for; [`promotion_under_way`] treats any other as stale.
pub struct PromotionMarker {
    path: PathBuf,
}

impl PromotionMarker {
    pub fn write(server: &LocalServer, mode: Mode) -> Result<PromotionMarker> {
        let me = std::process::id();
        let pm = Postmaster::of(&server.pgdata).ok_or_else(|| {
            Error::unavailable(format!(
                "PostgreSQL stopped running in {}",
                server.pgdata.display()
            ))
        })?;
        let dir = server.pgdata.join("pg_wal/walship");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let text = format!(
            "{} {me} {} {} {}\n",
            match mode {
                Mode::Fast => "fast",
                Mode::Smart => "smart",
            },
            crate::os::process_start_ticks(me).unwrap_or(0),
            pm.pid,
            pm.started
        );
        server.write_file(PROMOTION_MARKER, &text)?;
        Ok(PromotionMarker {
            path: server.pgdata.join(PROMOTION_MARKER),
        })
    }

    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The promotion under way in `pgdata`, if a live walship is promoting its running postmaster.
/// A marker left by a walship that died, or written for an earlier postmaster, is removed and
/// logged: trusting it would make every later fetch answer "not in the archive".
pub fn promotion_under_way(pgdata: &Path) -> Option<Mode> {
    let path = pgdata.join(PROMOTION_MARKER);
    let text = std::fs::read_to_string(&path).ok()?;
    let f: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    let live = match (f.first(), num(1), num(2), num(3), num(4)) {
        (Some(_), Some(pid), Some(ticks), Some(pm_pid), Some(pm_started)) => {
            crate::os::process_start_ticks(pid as u32).map(|t| t as i64) == Some(ticks)
                && Postmaster::of(pgdata)
                    == Some(Postmaster {
                        pid: pm_pid as u32,
                        started: pm_started,
                    })
        }
        _ => false,
    };
    if !live {
        let _ = std::fs::remove_file(&path);
        crate::log_line!(
            "walship: removed a stale promotion marker {} ({:?}): the walship that wrote it, or its \
             postmaster, is gone",
            path.display(),
            text.trim()
        );
        return None;
    }
    Some(if f[0] == "fast" {
        Mode::Fast
    } else {
        Mode::Smart
    })
}

/// Whether `fetch` must answer "not in the archive" for `name`: a fast promotion is under way
/// in `pgdata` and `name` is WAL (history files are still served: PostgreSQL needs them to
/// choose its new timeline).
pub fn fast_promotion_skips(pgdata: &Path, name: &WalFileName) -> bool {
    matches!(name.kind(), WalKind::Segment | WalKind::Partial)
        && promotion_under_way(pgdata) == Some(Mode::Fast)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory whose "postmaster" is this test process, started at `started`.
    fn data_dir(started: i64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("postmaster.pid"),
            format!(
                "{}\n{}\n{started}\n5432\n",
                std::process::id(),
                dir.path().display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("pg_wal/walship")).unwrap();
        dir
    }

    fn marker(dir: &Path, mode: &str, pid: u32, ticks: u64, pm_started: i64) {
        std::fs::write(
            dir.join(PROMOTION_MARKER),
            format!("{mode} {pid} {ticks} {} {pm_started}\n", std::process::id()),
        )
        .unwrap();
    }

    #[test]
    fn a_fast_promotion_stops_restoring_wal_but_not_history_files() {
        let dir = data_dir(1000);
        let me = std::process::id();
        let ticks = crate::os::process_start_ticks(me).unwrap();
        let seg = WalFileName::parse("000000010000000000000005").unwrap();
        let history = WalFileName::parse("00000002.history").unwrap();
        assert!(!fast_promotion_skips(dir.path(), &seg));
        marker(dir.path(), "fast", me, ticks, 1000);
        assert!(fast_promotion_skips(dir.path(), &seg));
        assert!(!fast_promotion_skips(dir.path(), &history));
        marker(dir.path(), "smart", me, ticks, 1000);
        assert!(!fast_promotion_skips(dir.path(), &seg));
        assert_eq!(promotion_under_way(dir.path()), Some(Mode::Smart));
    }

    #[test]
    fn regression_a_stale_fast_marker_is_removed_and_segments_are_restored_again() {
        let me = std::process::id();
        let ticks = crate::os::process_start_ticks(me).unwrap();
        let seg = WalFileName::parse("000000010000000000000005").unwrap();
        // the walship that wrote it died (another process's start time under its PID)
        let dir = data_dir(1000);
        marker(dir.path(), "fast", me, ticks + 1, 1000);
        assert!(!fast_promotion_skips(dir.path(), &seg));
        assert!(!dir.path().join(PROMOTION_MARKER).exists(), "removed");
        // written for an earlier postmaster (the standby restarted since)
        marker(dir.path(), "fast", me, ticks, 999);
        assert!(!fast_promotion_skips(dir.path(), &seg));
        assert!(!dir.path().join(PROMOTION_MARKER).exists());
        // garbage, and the marker of the earlier format (an empty file)
        for text in ["fast", ""] {
            std::fs::write(dir.path().join(PROMOTION_MARKER), text).unwrap();
            assert!(!fast_promotion_skips(dir.path(), &seg), "{text:?}");
        }
        // no postmaster at all
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pg_wal/walship")).unwrap();
        marker(dir.path(), "fast", me, ticks, 1000);
        assert!(!fast_promotion_skips(dir.path(), &seg));
    }
}
