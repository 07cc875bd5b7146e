//! Waiting for the drill's copy to replay the archive and open: how long it took to become
//! consistent and to open (the RTO), and, when it stops or refuses the drill instead, an error
//! that says why from its log, printed before the scratch directory and the log go.

use std::path::Path;
use std::time::{Duration, Instant};

use super::scratch::Copy;
use crate::config::{Config, DEFAULT_TIMEOUT};
use crate::error::{Error, Kind, Result};
use crate::pg::client::PgClient;
use crate::repo::drill::DrillRecord;

/// Poll the copy until it is out of recovery, noting in `record` when it first answered in
/// recovery (consistent); the connection it answered on. `t0`: when the restore began, the
/// origin of every figure.
pub(super) fn wait_until_open(
    config: &Config,
    copy: &mut Copy,
    log: &Path,
    t0: Instant,
    record: &mut DrillRecord,
) -> Result<PgClient> {
    let timeout = Duration::from_secs(config.drill.timeout.unwrap_or(DEFAULT_TIMEOUT));
    let mut client = copy.client("postgres")?;
    loop {
        if let Some(status) = copy.exited() {
            return Err(replay_failed(config, log, &format!("{status}")));
        }
        match client.query("SELECT pg_is_in_recovery()") {
            Ok(rows) if rows.first().and_then(|r| r.first()).map(String::as_str) == Some("f") => {
                break;
            }
            Ok(_) if record.consistent_seconds.is_none() => {
                record.consistent_seconds = Some(t0.elapsed().as_secs_f64());
            }
            // A cluster made by `initdb -U postgres` under another account has no role named
            // after the drill's user: PostgreSQL's usual superuser is the next guess.
            Err(e)
                if e.message.contains("does not exist")
                    && e.message.contains("role")
                    && copy.role() != "postgres" =>
            {
                copy.set_role("postgres");
                client = copy.client("postgres")?;
            }
            Err(e) if refused_for_good(&e.message) => {
                return Err(Error::usage(format!(
                    "the copy refuses the drill's connection: {}",
                    e.message
                ))
                .with_hint(
                    "The drill connects over the copy's private socket as PGUSER, else as the \
                     user it runs as, else as postgres: set PGUSER to a superuser of the cluster.",
                ));
            }
            _ => {}
        }
        if t0.elapsed() > timeout {
            return Err(Error::unavailable(format!(
                "the copy did not finish replaying within {} s",
                timeout.as_secs()
            ))
            .with_hint(
                "Raise [drill] timeout if this machine replays more slowly; `walship drill \
                 --keep` keeps the copy's log.",
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(client)
}

/// A connection error that waiting will not cure (a role the cluster does not have), as
/// opposed to a copy still starting up or replaying towards consistency.
fn refused_for_good(message: &str) -> bool {
    // "in recovery mode": what the postmaster answers while its startup process replays
    // before hot standby accepts connections (seen on PostgreSQL 17 under load).
    const PASSING: [&str; 5] = [
        "starting up",
        "not yet accepting connections",
        "consistent recovery state",
        "in recovery mode",
        "shutting down",
    ];
    message.contains("FATAL:") && !PASSING.iter().any(|p| message.contains(p))
}

/// The copy stopped during recovery: why, from its log (walship's fetch errors first, which
/// name the segment), and the repository's state (an unreachable repository is exit 3). The
/// log's end is printed: the scratch directory, and the log with it, is about to go.
fn replay_failed(config: &Config, log: &Path, status: &str) -> Error {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("the copy's log ({}), last lines:", log.display());
    for l in &lines[lines.len().saturating_sub(15)..] {
        eprintln!("  | {l}");
    }
    let why = lines
        .iter()
        .rfind(|l| l.contains("walship: fetch") && l.contains("ERROR"))
        .or_else(|| {
            lines
                .iter()
                .rfind(|l| l.contains("FATAL") || l.contains("PANIC"))
        })
        .map(|l| l.trim())
        .unwrap_or("no error in its log");
    let kind = match config.open_repository() {
        Err(e) if e.kind == Kind::Unavailable => Kind::Unavailable,
        _ => Kind::Corrupt,
    };
    Error::new(
        kind,
        format!("the copy stopped during recovery ({status}): {why}"),
    )
    .with_hint("`walship drill --keep` keeps the copy and its whole log in the scratch directory.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_waiting_cannot_cure_stop_the_wait_for_the_copy() {
        assert!(refused_for_good(
            "PostgreSQL (host=/s): psql: error: connection to server on socket \"/s/.s.PGSQL.5\" failed: FATAL:  role \"bob\" does not exist"
        ));
        assert!(!refused_for_good(
            "psql: error: connection to server failed: FATAL:  the database system is starting up"
        ));
        assert!(!refused_for_good(
            "FATAL:  the database system is not yet accepting connections\nDETAIL:  Consistent recovery state has not been yet reached."
        ));
        assert!(!refused_for_good(
            "psql: error: connection to server on socket \"/s/.s.PGSQL.5\" failed: No such file or directory"
        ));
    }

    #[test]
    fn regression_a_copy_in_recovery_mode_is_waited_for_not_refused() {
        // a drill on PostgreSQL 17 under load failed with "the copy refuses the drill's
        // connection" while the copy was only replaying
        assert!(!refused_for_good(
            "psql: error: connection to server on socket \"/s/.s.PGSQL.5\" failed: FATAL:  the database system is in recovery mode"
        ));
    }
}
