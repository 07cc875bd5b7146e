//! `walship switchover`: a planned role swap with zero loss, run beside the standby. The primary
//! switches WAL and waits until that segment is archived, stops cleanly (its walsenders send
//! every record, the shutdown checkpoint included, to the streaming standby before it exits);
//! the standby must have received and replayed everything up to that checkpoint; then it is
//! promoted (hooks run), and the old primary, when its data directory is on this host, is rejoined
//! as the new primary's standby and started.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::pgdata_of;
use super::promote::{Asker, promote};
use super::rejoin::rejoin;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks::run_hook;
use crate::pg::WalFileName;
use crate::pg::client::{PgClient, SWITCH_WAL_FILE};
use crate::pg::promotion_marker::Mode;
use crate::pg::server::LocalServer;
use crate::repo::backups::parse_lsn;

#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    /// The current primary, as a libpq connection string
    #[arg(long, value_name = "CONNINFO")]
    pub primary: String,
    /// The primary's data directory, when it is on this host (then walship stops, rejoins and
    /// starts it)
    #[arg(long, value_name = "DIR")]
    pub primary_pgdata: Option<PathBuf>,
    /// Command that stops the primary cleanly, when it is on another host
    #[arg(long, value_name = "COMMAND")]
    pub primary_stop_command: Option<String>,
    /// Seconds allowed for each wait (archiving, shutdown, replay)
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub timeout: u64,
}

pub fn run(config: &Config, args: &SwitchoverArgs) -> Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let standby = LocalServer::open(&pgdata_of(config), config.pg_bin.as_deref())?
        .with_pg(config.pg.as_deref());
    let old_primary = match (&args.primary_pgdata, &args.primary_stop_command) {
        (Some(d), None) => Some(LocalServer::open(d, config.pg_bin.as_deref())?),
        (None, Some(_)) => None,
        _ => {
            return Err(Error::usage(
                "switchover needs exactly one of --primary-pgdata (primary on this host) and --primary-stop-command",
            ));
        }
    };
    let primary = PgClient::from_conninfo(&args.primary)?;
    let standby_client = standby.client()?;

    // 1. the roles and the link are what a switchover needs
    let p = primary.row(
        "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system())::text",
        2,
    )?;
    let s = standby_client.row(
        "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system())::text, \
         coalesce((SELECT status FROM pg_stat_wal_receiver), '')",
        3,
    )?;
    if p[0] != "f" {
        return Err(Error::conflict(format!(
            "{} is not a primary",
            args.primary
        )));
    }
    if s[0] != "t" {
        return Err(Error::conflict(format!(
            "{} is not a standby",
            standby.pgdata.display()
        )));
    }
    if p[1] != s[1] {
        return Err(Error::conflict(format!(
            "the primary (system identifier {}) and the standby ({}) are different clusters",
            p[1], s[1]
        )));
    }
    if s[2] != "streaming" {
        return Err(
            Error::usage("the standby is not streaming from the primary").with_hint(
                "A zero-loss switchover needs primary_conninfo on the standby: the primary's last, \
             incomplete segment and its shutdown checkpoint only reach the standby by streaming.",
            ),
        );
    }
    crate::log_line!(
        "walship: switchover: {} -> {}",
        args.primary,
        standby.pgdata.display()
    );

    // 2. the primary's last complete segment is archived
    let switched = primary.row(&format!("SELECT {SWITCH_WAL_FILE}"), 1)?[0].clone();
    let repo = config.open_repository()?;
    let name = WalFileName::parse(&switched)?;
    wait(timeout, &format!("{switched} to be archived"), || {
        Ok(repo.object_header(&name)?.is_some())
    })?;
    crate::log_line!("walship: switchover: {switched} is archived");

    // 3. stop the primary cleanly
    match (&old_primary, &args.primary_stop_command) {
        (Some(server), _) => {
            let args: [&OsStr; 6] = [
                "stop".as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "-D".as_ref(),
                server.pgdata.as_os_str(),
            ];
            server.run("pg_ctl", &args, "stopping the primary")?;
        }
        (None, Some(cmd)) => {
            let end = run_hook("stop primary", cmd, &[], timeout);
            if !end.ok() {
                return Err(Error::unavailable(format!(
                    "the primary stop command failed ({end}); nothing was promoted"
                )));
            }
        }
        _ => unreachable!("checked above"),
    }
    crate::log_line!("walship: switchover: the primary is stopped");

    // 4. the standby has everything: its replay reaches the primary's shutdown checkpoint (read
    // from pg_controldata when the primary is here), and stops moving
    let shutdown_checkpoint = match &old_primary {
        Some(server) => Some(shutdown_checkpoint(server)?),
        None => None,
    };
    let mut last = None;
    wait(
        timeout,
        "the standby to replay all of the primary's WAL",
        || {
            let r = standby_client.row(
            "SELECT coalesce(pg_last_wal_receive_lsn()::text, ''), coalesce(pg_last_wal_replay_lsn()::text, '')",
            2,
        )?;
            let (received, replayed) = (parse_lsn(&r[0]), parse_lsn(&r[1]));
            let settled = replayed.is_some() && replayed >= received && last == replayed;
            last = replayed;
            Ok(settled && shutdown_checkpoint.is_none_or(|c| replayed > Some(c)))
        },
    )?;
    crate::log_line!("walship: switchover: the standby has replayed everything");

    // 5. promote; 6. the old primary follows
    promote(config, &standby, Mode::Fast, "switchover", Asker::Person)?;
    let new_primary = standby.client()?.describe().to_string();
    match &old_primary {
        Some(server) => {
            rejoin(config, server, &new_primary, true)?;
            let log = server.pgdata.join("walship-switchover.log");
            let args: [&OsStr; 7] = [
                "start".as_ref(),
                "-w".as_ref(),
                "-D".as_ref(),
                server.pgdata.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-s".as_ref(),
            ];
            server.run("pg_ctl", &args, "starting the old primary as a standby")?;
            crate::log_line!(
                "walship: switchover done: {} is the primary, {} its standby",
                standby.pgdata.display(),
                server.pgdata.display()
            );
        }
        None => crate::log_line!(
            "walship: switchover done: {} is the primary. On the old primary's host run: \
             walship --pgdata DIR rejoin --stream --primary '{new_primary}', then start it",
            standby.pgdata.display()
        ),
    }
    Ok(())
}

/// "Latest checkpoint location" of a cleanly stopped server, from pg_controldata.
fn shutdown_checkpoint(server: &LocalServer) -> Result<u64> {
    let out = server.run(
        "pg_controldata",
        &[server.pgdata.as_os_str()],
        "pg_controldata",
    )?;
    let state_ok = out
        .lines()
        .any(|l| l.starts_with("Database cluster state:") && l.ends_with("shut down"));
    if !state_ok {
        return Err(Error::unavailable(format!(
            "{} was not shut down cleanly; not promoting",
            server.pgdata.display()
        )));
    }
    out.lines()
        .find_map(|l| l.strip_prefix("Latest checkpoint location:"))
        .and_then(|v| parse_lsn(v.trim()))
        .ok_or_else(|| Error::unavailable("pg_controldata printed no checkpoint location"))
}

fn wait(timeout: Duration, what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    loop {
        if done()? {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(Error::unavailable(format!(
                "switchover stopped: timed out after {} s waiting for {what}",
                timeout.as_secs()
            ))
            .with_hint("Nothing was promoted after this point; the primary may be stopped: start it again."));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
