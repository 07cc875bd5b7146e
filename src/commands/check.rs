//! `walship check`: the pipeline end to end. On a primary: force a segment switch and wait until
//! that segment is in the repository, and check that archive_mode and archive_command point at
//! walship and that the archiver is not failing. On a standby: check restore_command and that
//! the repository is the cluster's. Each check prints one line; any failure exits 3.

use std::time::{Duration, Instant};

use clap::Args;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::WalFileName;
use crate::pg::client::{PgClient, PgView, SWITCH_WAL_FILE};
use crate::repo::Repository;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Seconds to wait for the switched segment to reach the repository
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
}

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: impl AsRef<str>) {
        println!("  ok    {}", what.as_ref());
    }
    fn fail(&mut self, what: impl AsRef<str>) {
        println!("  FAIL  {}", what.as_ref());
        self.problems += 1;
    }
    /// Worth acting on, but the pipeline works: not a reason to exit non-zero.
    fn warn(&self, what: impl AsRef<str>) {
        println!("  WARN  {}", what.as_ref());
    }
}

pub fn run(config: &Config, args: &CheckArgs) -> Result<()> {
    let client =
        PgClient::for_local(config.pg.as_deref(), config.pgdata.as_deref())?.ok_or_else(|| {
            Error::usage("check needs a PostgreSQL connection").with_hint(
                "Give --pgdata DIR (a running cluster's data directory) or --pg CONNINFO.",
            )
        })?;
    let repo = config.open_repository()?;
    println!(
        "walship check: repository {}, PostgreSQL {}",
        repo.describe(),
        client.describe()
    );
    let major = client.row(
        "SELECT current_setting('server_version_num')::int / 10000",
        1,
    )?[0]
        .parse()
        .unwrap_or(0);
    crate::pg::require_supported(major, &format!("the server ({})", client.describe()))?;
    let mut report = Report { problems: 0 };
    let view = PgView::read(&client)?;
    report.ok(format!(
        "PostgreSQL answers: {}, system identifier {}",
        if view.in_recovery {
            "standby"
        } else {
            "primary"
        },
        view.system_identifier
    ));
    match repo.identity() {
        Some(id) if id.system_identifier.to_string() == view.system_identifier => {
            report.ok("the repository belongs to this cluster")
        }
        Some(id) => report.fail(format!(
            "the repository belongs to cluster {}, not this one ({})",
            id.system_identifier, view.system_identifier
        )),
        None if view.in_recovery => report.fail("the repository is empty: nothing to restore from"),
        None => report.ok("the repository is empty; the switch below initializes it"),
    }
    match repo.storage().check_conditional_create() {
        Ok(()) => {
            report.ok("the repository refuses to overwrite an existing name (no-clobber publish)")
        }
        Err(e) => report.fail(e.to_string()),
    }
    check_drills(&repo, config.drill_max_age, &report)?;
    if view.in_recovery {
        check_standby(&view, &mut report);
        check_watchers(&repo, &mut report)?;
    } else {
        check_primary(
            &client,
            &repo,
            &view,
            Duration::from_secs(args.timeout),
            &mut report,
        )?;
    }
    if report.problems > 0 {
        return Err(
            Error::unavailable(format!("check found {} problem(s)", report.problems))
                .with_hint("Each FAIL line says what to fix."),
        );
    }
    println!("all checks passed");
    Ok(())
}

fn check_standby(view: &PgView, report: &mut Report) {
    if calls_walship(&view.restore_command, &["fetch", "restore"]) {
        report.ok(format!("restore_command = '{}'", view.restore_command));
    } else {
        report.fail(format!(
            "restore_command = '{}' does not call walship (restore_command = 'walship fetch %f %p')",
            view.restore_command
        ));
    }
    match &view.replay_lsn {
        Some(lsn) => report.ok(format!("replaying: at {lsn}")),
        None => report.fail("the standby reports no replay position"),
    }
}

/// Watchers sharing this repository that cannot do their job: one that cannot observe its
/// standby is blind (it would neither fail over nor obey its trigger file), and one whose
/// heartbeat stopped may be dead. FORMAT.md, "Watchers".
fn check_watchers(repo: &Repository, report: &mut Report) -> Result<()> {
    let now = crate::os::now();
    for w in repo.watcher_beats()? {
        let age = now - w.updated_at;
        let who = format!("watcher of {} on {}", w.pgdata, w.host);
        match w.state.as_str() {
            "primary" => {}
            "blind" => report.fail(format!("{who} is blind: {}", w.detail)),
            "refused" => report.fail(format!("{who}: automatic failover refused: {}", w.detail)),
            _ if age > 60 => report.fail(format!(
                "{who}: no heartbeat for {age} s (is `walship watch` running?)"
            )),
            state => report.ok(format!("{who}: {state}, heartbeat {age} s ago")),
        }
    }
    Ok(())
}

/// A backup nobody restored is a hope, not a backup: warn when no drill passed within
/// `drill_max_age`.
fn check_drills(repo: &Repository, max_age: Duration, report: &Report) -> Result<()> {
    let s = repo.drill_summary()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let days = |secs: f64| secs.max(0.0) / 86_400.0;
    let limit = format!("drill_max_age = {:.0} days", days(max_age.as_secs_f64()));
    match &s.last_passed {
        Some(p) if now - p.finished_at <= max_age.as_secs_f64() => report.ok(format!(
            "a drill passed {:.1} days ago (backup {}, RTO {})",
            days(now - p.finished_at),
            p.backup,
            p.rto_seconds
                .map(|r| format!("{r:.1} s"))
                .unwrap_or_else(|| "-".into())
        )),
        Some(p) => report.warn(format!(
            "the last drill that passed was {:.1} days ago ({limit}): run `walship drill`",
            days(now - p.finished_at)
        )),
        None => report.warn(format!(
            "no drill has ever passed ({limit}): run `walship drill` to prove a backup restores"
        )),
    }
    if let Some(last) = &s.last
        && !last.passed
    {
        report.warn(format!("the last drill failed: {}", last.failure));
    }
    Ok(())
}

fn check_primary(
    client: &PgClient,
    repo: &Repository,
    view: &PgView,
    timeout: Duration,
    report: &mut Report,
) -> Result<()> {
    if matches!(view.archive_mode.as_str(), "on" | "always") {
        report.ok(format!("archive_mode = {}", view.archive_mode));
    } else {
        report.fail(format!(
            "archive_mode = {}: nothing is archived (set archive_mode = on and restart)",
            view.archive_mode
        ));
    }
    if calls_walship(&view.archive_command, &["push", "archive"]) {
        report.ok(format!("archive_command = '{}'", view.archive_command));
    } else {
        report.fail(format!(
            "archive_command = '{}' does not call walship (archive_command = 'walship push %p %f')",
            view.archive_command
        ));
    }
    if view.archiver_failing {
        report.fail(format!(
            "the archiver's last attempt failed ({}, {} failures in all); PostgreSQL's log has walship's error",
            view.last_failed_wal.as_deref().unwrap_or("?"),
            view.failed_count
        ));
    }
    if report.problems > 0 {
        return Ok(()); // a switch would only wait for the timeout
    }
    // A restore point writes a WAL record, so the switch always completes a new segment.
    let switched = client.row(
        &format!("SELECT pg_create_restore_point('walship check'), {SWITCH_WAL_FILE}"),
        2,
    )?[1]
        .clone();
    let name = WalFileName::parse(&switched)?;
    let started = Instant::now();
    loop {
        if repo.object_header(&name)?.is_some() {
            report.ok(format!(
                "segment {switched} switched and archived in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        let now = PgView::read(client)?;
        if now.archiver_failing && now.last_failed_wal.as_deref() == Some(switched.as_str()) {
            report.fail(format!(
                "archiving {switched} failed; PostgreSQL's log has walship's error"
            ));
            return Ok(());
        }
        if started.elapsed() > timeout {
            report.fail(format!(
                "{switched} did not reach the repository within {} s (last archived: {})",
                timeout.as_secs(),
                now.last_archived_wal.as_deref().unwrap_or("none")
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a shell command runs walship (any path to it) with one of `commands`, e.g.
/// `/usr/local/bin/walship --config /etc/walship.toml push %p %f`.
fn calls_walship(command: &str, commands: &[&str]) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    words
        .iter()
        .position(|w| w.rsplit('/').next() == Some("walship"))
        .is_some_and(|i| words[i + 1..].iter().any(|w| commands.contains(w)))
}

#[cfg(test)]
mod tests {
    use super::calls_walship;

    #[test]
    fn recognises_walship_by_its_name_anywhere_on_the_command_line() {
        let push = ["push", "archive"];
        assert!(calls_walship("walship push %p %f", &push));
        assert!(calls_walship(
            "/opt/bin/walship --config /etc/w.toml archive %p %f",
            &push
        ));
        assert!(calls_walship("exec walship push %p %f", &push));
        assert!(!calls_walship("rsync -a %p host:/archive/%f", &push));
        assert!(!calls_walship("walship fetch %f %p", &push));
        assert!(!calls_walship("/bin/walship-old push %p %f", &push));
    }
}
