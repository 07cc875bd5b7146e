//! `walship rejoin`: make a failed former primary a standby of the new one. pg_rewind rewinds it
//! to the point where the timelines diverged, fetching the WAL it lacks through `walship fetch`
//! (`--restore-target-wal`); then it gets `standby.signal` and a restore_command, and, with
//! `--stream`, the new primary as primary_conninfo. Refuses while the server runs.

use std::ffi::OsStr;

use clap::Args;

use super::pgdata_of;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::client::{conninfo_user, with_default_user};
use crate::pg::server::{LocalServer, conf_string};

#[derive(Debug, Args)]
pub struct RejoinArgs {
    /// The new primary, as a libpq connection string (no password: use ~/.pgpass)
    #[arg(long, value_name = "CONNINFO")]
    pub primary: String,
    /// Also stream from the new primary (primary_conninfo), not only restore from the archive
    #[arg(long)]
    pub stream: bool,
}

pub fn run(config: &Config, args: &RejoinArgs) -> Result<()> {
    let server = LocalServer::open(&pgdata_of(config), config.pg_bin.as_deref())?
        .with_pg(config.pg.as_deref());
    rejoin(config, &server, &args.primary, args.stream)
}

/// Rewind the stopped `server` onto the timeline of `primary_conninfo` and make it a standby.
pub fn rejoin(
    config: &Config,
    server: &LocalServer,
    primary_conninfo: &str,
    stream: bool,
) -> Result<()> {
    let primary_conninfo = &primary_role(
        primary_conninfo,
        std::env::var("PGUSER").ok(),
        config.pg.as_deref(),
    );
    // Refuse a password before it reaches pg_rewind's command line.
    let primary = crate::pg::client::PgClient::from_conninfo(primary_conninfo)?;
    let pgdata = server.pgdata.clone();
    if let Some(pid) = server.running_pid() {
        return Err(Error::conflict(format!(
            "PostgreSQL runs in {} (pid {pid}): a running server cannot be rewound",
            pgdata.display()
        ))
        .with_hint("Stop it first (pg_ctl stop -m fast); rejoin never touches a running server."));
    }
    // Workers of the server's previous life (push-ahead, prefetch) must not touch pg_wal while
    // pg_rewind rewrites it; their spools go with them.
    crate::spool::stop_workers_and_clear(
        &pgdata.join("pg_wal"),
        std::time::Duration::from_secs(5),
    )?;
    // pg_rewind copies the new primary's configuration files over this server's (its port, its
    // settings): a rejoined server keeps its own, put back after the rewind.
    let own_config: Vec<(&str, String)> = OWN_CONFIG
        .iter()
        .filter_map(|f| Some((*f, std::fs::read_to_string(pgdata.join(f)).ok()?)))
        .collect();
    let restore = config.restore_command()?;
    // pg_rewind runs restore_command from the target's configuration to fetch the WAL it lacks;
    // without prefetch, so that no worker writes into pg_wal while pg_rewind walks it.
    let mut no_prefetch = config.clone();
    no_prefetch.prefetch = 0;
    server.append_auto_conf(&format!(
        "# walship rejoin (for pg_rewind)\nrestore_command = {}\n",
        conf_string(&no_prefetch.restore_command()?)
    ))?;
    let rewind: Vec<&OsStr> = vec![
        OsStr::new("--target-pgdata"),
        pgdata.as_os_str(),
        OsStr::new("--source-server"),
        OsStr::new(primary_conninfo),
        OsStr::new("--restore-target-wal"),
    ];
    // A just-promoted primary writes its new timeline into pg_control only at its first
    // checkpoint; before that pg_rewind sees both servers on the old timeline and rewinds
    // nothing ("no rewind required").
    primary.query("CHECKPOINT")?;
    crate::log_line!(
        "walship: rewinding {} to follow {primary_conninfo}",
        pgdata.display()
    );
    let out = server
        .tools
        .command("pg_rewind")
        .current_dir(&pgdata)
        .args(&rewind)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io("starting pg_rewind", e))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("backend>"))
    {
        crate::log_line!("walship: pg_rewind: {line}");
    }
    if !out.status.success() {
        return Err(
            Error::unavailable(format!("pg_rewind failed ({})", out.status)).with_hint(
                "pg_rewind needs wal_log_hints = on (or data checksums) on every server, and a \
             superuser connection to the new primary. If it cannot work, make this server a new \
             standby from a base backup: on the new primary, `walship basebackup --to <this host> \
             --force --start`.",
            ),
        );
    }
    for (name, text) in &own_config {
        server.write_file(name, text)?;
    }
    server.append_auto_conf(&standby_settings(
        &restore,
        stream.then_some(primary_conninfo),
    ))?;
    server.write_file("standby.signal", "")?;
    let _ = std::fs::remove_file(pgdata.join("recovery.signal"));
    crate::log_line!(
        "walship: {} is a standby of {primary_conninfo}: start it (it restores through walship fetch{})",
        pgdata.display(),
        if stream { " and streams" } else { "" }
    );
    Ok(())
}

/// The postgresql.auto.conf lines of a rejoined standby: one line per setting, whatever the
/// paths in restore_command or the conninfo hold.
fn standby_settings(restore_command: &str, primary_conninfo: Option<&str>) -> String {
    let mut s = format!(
        "# walship rejoin\nrestore_command = {}\n",
        conf_string(restore_command)
    );
    if let Some(c) = primary_conninfo {
        s.push_str(&format!("primary_conninfo = {}\n", conf_string(c)));
    }
    s
}

/// The configuration files a rejoined server keeps (pg_rewind would copy the new primary's).
const OWN_CONFIG: &[&str] = &[
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
];

/// The connection to the new primary with its role: the one it names, else libpq's PGUSER, else
/// the role `pg` names (a standby has its primary's roles: a cluster made with `initdb -U
/// postgres` by another OS user has no role named after that user), else libpq's default (the
/// OS user). The role is written out: the restarted server's walreceiver has neither PGUSER nor
/// `pg`.
fn primary_role(primary_conninfo: &str, pguser: Option<String>, pg: Option<&str>) -> String {
    match pguser
        .filter(|u| !u.is_empty())
        .or_else(|| pg.and_then(conninfo_user))
    {
        Some(user) => with_default_user(primary_conninfo, &user),
        None => primary_conninfo.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejoin_settings_stay_one_line_each_whatever_the_paths_hold() {
        let restore = r#"'/srv/it'\''s "a" 100%% $HOME\dir/walship' --repo '/r
restore_command = evil' fetch %f %p"#;
        let s = standby_settings(restore, Some("host=/tmp/x\\ y' dbname=z\nport=1"));
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert_eq!(
            lines[1],
            r#"restore_command = '''/srv/it''\\''''s "a" 100%% $HOME\\dir/walship'' --repo ''/r\nrestore_command = evil'' fetch %f %p'"#
        );
        assert_eq!(
            lines[2],
            r#"primary_conninfo = 'host=/tmp/x\\ y'' dbname=z\nport=1'"#
        );
    }

    #[test]
    fn the_new_primarys_role_comes_from_it_then_pguser_then_pg() {
        let pg = Some("host=/run/pg port=5432 user=postgres");
        assert_eq!(
            primary_role("host=db2 user=repl", Some("app".into()), pg),
            "host=db2 user=repl"
        );
        assert_eq!(
            primary_role("host=db2", Some("app".into()), pg),
            "user='app' host=db2"
        );
        assert_eq!(
            primary_role("host=db2", None, pg),
            "user='postgres' host=db2"
        );
        assert_eq!(
            primary_role("host=db2", Some(String::new()), pg),
            "user='postgres' host=db2"
        );
        // without any of them, libpq's default as before
        assert_eq!(
            primary_role("host=db2", None, Some("host=/run/pg")),
            "host=db2"
        );
        assert_eq!(primary_role("host=db2", None, None), "host=db2");
    }
}
