//! Talking to a running PostgreSQL for `status` and `check`, through psql (that is, libpq), so
//! that every way a DBA already connects works unchanged: ~/.pgpass, PGSERVICE, sslmode, peer
//! authentication over the socket. The connection is a libpq connection string from `pg`, or
//! found from a data directory's postmaster.pid. Passwords are refused in `pg`: it ends up in
//! psql's argv, which every user of the machine can read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::error::{Error, Result};

/// Field and record separators psql is told to use: bytes no setting or WAL name contains.
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';

#[derive(Debug, Clone)]
pub struct PgClient {
    pub(crate) psql: PathBuf,
    pub(crate) conninfo: String,
}

impl PgClient {
    /// From a connection string. A `password` key is refused.
    pub fn from_conninfo(conninfo: &str) -> Result<PgClient> {
        let lower = conninfo.to_ascii_lowercase();
        if lower.contains("password") || lower.contains(":@") || has_url_password(&lower) {
            return Err(Error::usage("the `pg` connection string contains a password").with_hint(
                "Put the password in ~/.pgpass (or PGPASSWORD in the environment): a connection \
                 string is passed on psql's command line, which every user can read.",
            ));
        }
        Ok(PgClient {
            psql: find_psql()?,
            conninfo: conninfo.to_string(),
        })
    }

    /// The connection `status` and `check` use: `pg`, else `pgdata`'s server, else none.
    pub fn for_config(config: &crate::config::Config) -> Result<Option<PgClient>> {
        match (&config.pg, &config.pgdata) {
            (Some(c), _) => PgClient::from_conninfo(c).map(Some),
            (None, Some(d)) => PgClient::from_pgdata(d).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// From a data directory whose server is running: postmaster.pid gives the port and the
    /// socket directory; the role is the directory's owner (initdb's default superuser name).
    pub fn from_pgdata(pgdata: &Path) -> Result<PgClient> {
        let pidfile = pgdata.join("postmaster.pid");
        let text = std::fs::read_to_string(&pidfile).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::unavailable(format!(
                    "PostgreSQL is not running in {} (no postmaster.pid)",
                    pgdata.display()
                ))
                .with_hint(
                    "Start it, or point --pgdata at the running cluster, or give --pg CONNINFO.",
                )
            } else {
                Error::io(format!("reading {}", pidfile.display()), e)
            }
        })?;
        // Lines: pid, data directory, start time, port, socket directory, listen address.
        let lines: Vec<&str> = text.lines().collect();
        let port = lines.get(3).map(|s| s.trim()).filter(|s| !s.is_empty());
        let socket = lines.get(4).map(|s| s.trim()).filter(|s| !s.is_empty());
        let listen = lines.get(5).map(|s| s.trim()).filter(|s| !s.is_empty());
        let Some(port) = port else {
            return Err(Error::unavailable(format!(
                "{} has no port line: the server is still starting or not a PostgreSQL 10+ server",
                pidfile.display()
            )));
        };
        let host = match (socket, listen) {
            (Some(s), _) => s.to_string(),
            (None, Some("*")) | (None, None) => "127.0.0.1".to_string(),
            (None, Some(l)) => l
                .split(',')
                .next()
                .unwrap_or("127.0.0.1")
                .trim()
                .to_string(),
        };
        let user = owner_name(pgdata)?;
        PgClient::from_conninfo(&format!(
            "host='{host}' port={port} user='{user}' dbname=postgres"
        ))
    }

    /// For messages: the connection string (which never holds a password).
    pub fn describe(&self) -> &str {
        &self.conninfo
    }

    /// Run one statement and return its rows, each a list of fields (NULL reads as "").
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let out = Command::new(&self.psql)
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg("-F")
            .arg(FIELD.to_string())
            .arg("-R")
            .arg(RECORD.to_string())
            .arg("-d")
            .arg(&self.conninfo)
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "walship")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", self.psql.display()), e))?;
        if !out.status.success() {
            return Err(Error::unavailable(format!(
                "PostgreSQL ({}): {}",
                self.conninfo,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .trim_end_matches('\n')
            .split(RECORD)
            .filter(|r| !r.is_empty())
            .map(|r| r.split(FIELD).map(str::to_string).collect())
            .collect())
    }

    /// One row of `width` fields, or an error.
    pub fn row(&self, sql: &str, width: usize) -> Result<Vec<String>> {
        let rows = self.query(sql)?;
        match rows.into_iter().next() {
            Some(r) if r.len() == width => Ok(r),
            other => Err(Error::unavailable(format!(
                "PostgreSQL ({}) answered {other:?} to a {width}-column query",
                self.conninfo
            ))),
        }
    }
}

fn has_url_password(lower: &str) -> bool {
    // postgresql://user:secret@host/...
    lower
        .strip_prefix("postgresql://")
        .or_else(|| lower.strip_prefix("postgres://"))
        .and_then(|rest| rest.split('@').next().filter(|_| rest.contains('@')))
        .is_some_and(|userinfo| userinfo.contains(':'))
}

/// psql from PATH, else the newest /usr/lib/postgresql/*/bin/psql (Debian's layout).
fn find_psql() -> Result<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("psql");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let p = e.path().join("bin/psql");
            p.is_file().then_some((v, p))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).ok_or_else(|| {
        Error::usage("psql not found (status and check talk to PostgreSQL through it)")
            .with_hint("Install the PostgreSQL client (apt-get install postgresql-client) or add its bin directory to PATH.")
    })
}

fn owner_name(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .uid();
    crate::config::user_name(uid).ok_or_else(|| {
        Error::usage(format!(
            "the owner (uid {uid}) of {} has no user name",
            path.display()
        ))
        .with_hint("Give --pg CONNINFO with user=...")
    })
}

/// PostgreSQL's side of the pipeline, as status and check report it.
#[derive(Debug, Clone, Serialize)]
pub struct PgView {
    pub connection: String,
    pub in_recovery: bool,
    pub system_identifier: String,
    pub wal_segment_size: u32,
    pub archive_mode: String,
    pub archive_command: String,
    pub restore_command: String,
    pub archived_count: u64,
    pub last_archived_wal: Option<String>,
    pub last_archived_age_seconds: Option<f64>,
    pub failed_count: u64,
    pub last_failed_wal: Option<String>,
    pub last_failed_age_seconds: Option<f64>,
    /// The last archive attempt failed (a failure newer than the last success).
    pub archiver_failing: bool,
    /// Primary: the segment being written, and the current LSN.
    pub current_wal: Option<String>,
    pub current_lsn: Option<String>,
    /// Standby: the last replayed LSN, and seconds since the last replayed transaction committed
    /// on the primary (grows on an idle primary too).
    pub replay_lsn: Option<String>,
    pub replay_lag_seconds: Option<f64>,
}

impl PgView {
    pub fn read(client: &PgClient) -> Result<PgView> {
        let r = client.row(
            "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system())::text, \
             (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), \
             current_setting('archive_mode'), current_setting('archive_command'), \
             current_setting('restore_command'), a.archived_count, coalesce(a.last_archived_wal, ''), \
             coalesce(extract(epoch FROM now() - a.last_archived_time)::text, ''), a.failed_count, \
             coalesce(a.last_failed_wal, ''), coalesce(extract(epoch FROM now() - a.last_failed_time)::text, ''), \
             coalesce(a.last_failed_time > coalesce(a.last_archived_time, '-infinity'), false), \
             CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
             CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_current_wal_lsn()::text END, \
             coalesce(pg_last_wal_replay_lsn()::text, ''), \
             coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::text, '') \
             FROM pg_stat_archiver a",
            17,
        )?;
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let num = |s: &str| s.parse::<f64>().ok();
        Ok(PgView {
            connection: client.describe().to_string(),
            in_recovery: r[0] == "t",
            system_identifier: r[1].clone(),
            wal_segment_size: r[2].parse().unwrap_or(0),
            archive_mode: r[3].clone(),
            archive_command: r[4].clone(),
            restore_command: r[5].clone(),
            archived_count: r[6].parse().unwrap_or(0),
            last_archived_wal: opt(&r[7]),
            last_archived_age_seconds: num(&r[8]),
            failed_count: r[9].parse().unwrap_or(0),
            last_failed_wal: opt(&r[10]),
            last_failed_age_seconds: num(&r[11]),
            archiver_failing: r[12] == "t",
            current_wal: opt(&r[13]),
            current_lsn: opt(&r[14]),
            replay_lsn: opt(&r[15]),
            replay_lag_seconds: num(&r[16]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_refused_in_the_connection_string() {
        for bad in [
            "host=db password=secret",
            "host=db PASSWORD = 'x'",
            "postgresql://app:secret@db/postgres",
        ] {
            let e = PgClient::from_conninfo(bad).unwrap_err();
            assert!(e.to_string().contains("password"), "{bad}: {e}");
        }
        assert!(!has_url_password("postgresql://app@db/postgres"));
    }
}
