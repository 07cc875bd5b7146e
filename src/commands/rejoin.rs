//! `walship rejoin`: make a failed former primary a standby of the new one. pg_rewind rewinds it
//! to the point where the timelines diverged, fetching the WAL it lacks through `walship fetch`
//! (`--restore-target-wal`); then it gets `standby.signal` and a restore_command, and, with
//! `--stream`, the new primary as primary_conninfo. Refuses while the server runs.

use std::ffi::OsStr;

use clap::Args;

use super::promote::pgdata_of;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::server::LocalServer;

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
    let server = LocalServer::open(&pgdata_of(config), config.pg_bin.as_deref())?;
    rejoin(config, &server, &args.primary, args.stream)
}

/// Rewind the stopped `server` onto the timeline of `primary_conninfo` and make it a standby.
pub fn rejoin(
    config: &Config,
    server: &LocalServer,
    primary_conninfo: &str,
    stream: bool,
) -> Result<()> {
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
    let restore = restore_command(config)?;
    // pg_rewind runs restore_command from the target's configuration to fetch the WAL it lacks;
    // without prefetch, so that no worker writes into pg_wal while pg_rewind walks it.
    let mut no_prefetch = config.clone();
    no_prefetch.prefetch = 0;
    server.append_auto_conf(&format!(
        "# walship rejoin (for pg_rewind)\nrestore_command = '{}'\n",
        restore_command(&no_prefetch)?.replace('\'', "''")
    ))?;
    let mut rewind: Vec<&OsStr> = vec![
        OsStr::new("--target-pgdata"),
        pgdata.as_os_str(),
        OsStr::new("--source-server"),
        OsStr::new(primary_conninfo),
        OsStr::new("--restore-target-wal"),
    ];
    if stream {
        rewind.push(OsStr::new("--write-recovery-conf"));
    }
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
    // pg_rewind copies the configuration files of the new primary too: restore through
    // walship again (later lines win).
    server.append_auto_conf(&format!(
        "# walship rejoin\nrestore_command = '{}'\n",
        restore.replace('\'', "''")
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

/// `restore_command` for a server this walship sets up: this binary with every setting as a flag,
/// so the server restores from the same repository whatever its environment.
pub fn restore_command(config: &Config) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding the walship binary", e))?;
    let mut words = vec![shell_quote(&exe.display().to_string())];
    for a in config.flag_args() {
        words.push(shell_quote(&a.to_string_lossy()));
    }
    words.push("fetch %f %p".into());
    Ok(words.join(" "))
}

/// Quote a word for sh when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@%+,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("/usr/bin/walship"), "/usr/bin/walship");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
