//! Talking to a running PostgreSQL for `status` and `check`, through psql (that is, libpq), so
//! that every way a DBA already connects works unchanged: ~/.pgpass, PGSERVICE, sslmode, peer
//! authentication over the socket. The connection is a libpq connection string from `pg`, or
//! found from a data directory's postmaster.pid. Passwords are refused in `pg`: it ends up in
//! psql's argv, which every user of the machine can read.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};

/// Field and record separators psql is told to use: bytes no setting or WAL name contains.
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';

#[derive(Debug, Clone)]
pub struct PgClient {
    pub(crate) psql: PathBuf,
    pub(crate) conninfo: String,
    /// PGCONNECT_TIMEOUT for this client's connections (default 10 s).
    connect_timeout: Option<u64>,
}

/// SQL naming the segment `pg_switch_wal()` just completed, the same on every version:
/// `pg_switch_wal()` returns the segment boundary when nothing was written since the last switch,
/// and from PostgreSQL 17 on `pg_walfile_name()` names the segment that starts there (still being
/// written, never archived before the next switch) instead of the one that ends there. One byte
/// back is always inside the completed segment.
pub const SWITCH_WAL_FILE: &str = "pg_walfile_name(pg_switch_wal() - 1)";

/// How long one statement of `status`, `check`, `promote` may take, connecting included.
const QUERY_TIMEOUT: Duration = Duration::from_secs(150);

/// What a health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// It answered.
    Up,
    /// No connection could be made: refused, unreachable, timed out, no socket.
    Down(String),
    /// Anything else: the server answered with an error (so it is alive), the check hung after
    /// connecting, or the failure is one walship does not know. Never a reason to fail over.
    Unknown(String),
}

/// How a psql run ended.
enum Answer {
    Rows(Vec<Vec<String>>),
    Failed { code: Option<i32>, stderr: String },
    TimedOut,
}

/// libpq's messages (LC_ALL=C) for a connection that could not be made at all. A message from
/// the server itself carries a severity (`FATAL:`), which rules "down" out whatever it says.
const CANNOT_CONNECT: &[&str] = &[
    "Connection refused",
    "timeout expired",
    "Connection timed out",
    "No route to host",
    "Network is unreachable",
    "Host is unreachable",
    "No such file or directory",
];

/// psql's failure as a health answer: exit 2 ("connection to the server was lost or could not be
/// made") with one of libpq's own connect errors and nothing from the server is down.
fn classify_failure(code: Option<i32>, stderr: &str) -> Health {
    let from_server = ["FATAL:", "ERROR:", "PANIC:"]
        .iter()
        .any(|s| stderr.contains(s));
    if code == Some(2) && !from_server && CANNOT_CONNECT.iter().any(|m| stderr.contains(m)) {
        Health::Down(stderr.to_string())
    } else {
        Health::Unknown(format!(
            "psql exit {}: {stderr}",
            code.map(|c| c.to_string())
                .unwrap_or_else(|| "by a signal".into())
        ))
    }
}

/// Read a pipe to its end on a thread of its own (bounded: a runaway notice cannot fill memory).
/// A thread that cannot be started (a task limit) is an error, not a panic.
fn drain(pipe: Option<impl Read + Send + 'static>) -> Result<std::thread::JoinHandle<Vec<u8>>> {
    std::thread::Builder::new()
        .name("psql-pipe".into())
        .spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(16 << 20).read_to_end(&mut buf);
                let _ = std::io::copy(&mut p, &mut std::io::sink());
            }
            buf
        })
        .map_err(|e| Error::io("starting a thread to read psql's output", e))
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
            connect_timeout: None,
        })
    }

    /// The connection `status`, `check`, `promote`, `watch`, `rejoin` and `switchover` use for
    /// the local server: the `pg` setting (a connection string), else the server of `pgdata`,
    /// else none.
    pub fn for_local(pg: Option<&str>, pgdata: Option<&Path>) -> Result<Option<PgClient>> {
        match (pg, pgdata) {
            (Some(c), _) => PgClient::from_conninfo(c).map(Some),
            (None, Some(d)) => PgClient::from_pgdata(d).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// From a data directory whose server is running: postmaster.pid gives the port and the
    /// socket directory; the role is the directory's owner (initdb's default superuser name).
    pub fn from_pgdata(pgdata: &Path) -> Result<PgClient> {
        let pidfile = pgdata.join("postmaster.pid");
        let pid = super::pidfile::PidFile::read(pgdata)
            .map_err(|e| Error::io(format!("reading {}", pidfile.display()), e))?
            .ok_or_else(|| {
                Error::unavailable(format!(
                    "PostgreSQL is not running in {} (no postmaster.pid)",
                    pgdata.display()
                ))
                .with_hint(
                    "Start it, or point --pgdata at the running cluster, or give --pg CONNINFO.",
                )
            })?;
        let Some(port) = pid.port else {
            return Err(Error::unavailable(format!(
                "{} has no port line: the server is still starting or not a PostgreSQL 10+ server",
                pidfile.display()
            )));
        };
        let host = match (pid.socket_dir.as_deref(), pid.listen.as_deref()) {
            (Some(s), _) => s.to_string(),
            (None, Some("*")) | (None, None) => "127.0.0.1".to_string(),
            (None, Some(l)) => l
                .split(',')
                .next()
                .unwrap_or("127.0.0.1")
                .trim()
                .to_string(),
        };
        // The role: libpq's PGUSER when set, else the directory's owner (initdb's default).
        let user = match std::env::var("PGUSER") {
            Ok(u) if !u.is_empty() => String::new(),
            _ => format!(" user='{}'", owner_name(pgdata)?),
        };
        PgClient::from_conninfo(&format!("host='{host}' port={port}{user} dbname=postgres"))
    }

    /// For messages: the connection string (which never holds a password).
    pub fn describe(&self) -> &str {
        &self.conninfo
    }

    /// Run one statement and return its rows, each a list of fields (NULL reads as "").
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        match self.run(sql, QUERY_TIMEOUT)? {
            Answer::Rows(rows) => Ok(rows),
            Answer::Failed { stderr, .. } => Err(Error::unavailable(format!(
                "PostgreSQL ({}): {stderr}",
                self.conninfo
            ))),
            Answer::TimedOut => Err(Error::unavailable(format!(
                "PostgreSQL ({}) did not answer within {} s",
                self.conninfo,
                QUERY_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The health check of automatic failover: `SELECT 1` with `timeout` for the whole check,
    /// connecting included. Fails closed: only a connection that could not be made (refused,
    /// unreachable, timed out while connecting, no socket) is [`Health::Down`]; an error the
    /// server sent (authentication, too many clients, starting up) proves it is alive, and
    /// anything walship cannot classify is [`Health::Unknown`]. Neither of those may fence it.
    pub fn probe(&self, timeout: Duration) -> Health {
        let connect = timeout.as_secs().clamp(1, 3600);
        let mut c = self.clone();
        // libpq's own connection timeout must end before ours, so that a connection that cannot
        // be made reads as "timeout expired" (down) and not as a check we had to kill (unknown).
        c.connect_timeout = Some((connect / 2).max(1));
        match c.run("SELECT 1", timeout) {
            Ok(Answer::Rows(r))
                if r.first().and_then(|f| f.first()).map(String::as_str) == Some("1") =>
            {
                Health::Up
            }
            Ok(Answer::Rows(r)) => Health::Unknown(format!("SELECT 1 answered {r:?}")),
            Ok(Answer::Failed { code, stderr }) => classify_failure(code, &stderr),
            Ok(Answer::TimedOut) => Health::Unknown(format!(
                "the check did not finish within {} s (connected, but no answer)",
                timeout.as_secs_f64()
            )),
            Err(e) => Health::Unknown(e.to_string()),
        }
    }

    /// Run psql for `sql`, killing it after `timeout`.
    fn run(&self, sql: &str, timeout: Duration) -> Result<Answer> {
        let mut cmd = Command::new(&self.psql);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg("-F")
            .arg(FIELD.to_string())
            .arg("-R")
            .arg(RECORD.to_string())
            .arg("-d")
            .arg(&self.conninfo)
            .arg("-c")
            .arg(sql)
            .env(
                "PGCONNECT_TIMEOUT",
                self.connect_timeout.unwrap_or(10).to_string(),
            )
            .env("PGAPPNAME", "walship")
            // libpq's own messages in English: the health check reads them
            .env("LC_ALL", "C")
            .env_remove("LANGUAGE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("running {}", self.psql.display()), e))?;
        let (out, err) = match (drain(child.stdout.take()), drain(child.stderr.take())) {
            (Ok(o), Ok(e)) => (o, e),
            (Err(e), _) | (_, Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if started.elapsed() >= timeout => {
                    // psql leads its own process group (process_group(0) above)
                    crate::os::signal(-(child.id() as i32), libc::SIGKILL);
                    let _ = child.wait();
                    return Ok(Answer::TimedOut);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(Error::io(format!("waiting for {}", self.psql.display()), e)),
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        if !status.success() {
            return Ok(Answer::Failed {
                code: status.code(),
                stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&stdout);
        Ok(Answer::Rows(
            text.trim_end_matches('\n')
                .split(RECORD)
                .filter(|r| !r.is_empty())
                .map(|r| r.split(FIELD).map(str::to_string).collect())
                .collect(),
        ))
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

/// The role a libpq connection string names (`user=...`, or the user of a postgresql:// URI), if
/// any. Key/value strings follow libpq's quoting: a value may be single-quoted, with `\'` and
/// `\\` inside.
pub fn conninfo_user(conninfo: &str) -> Option<String> {
    let s = conninfo.trim();
    if let Some(rest) = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        let authority = rest.split(['/', '?']).next()?;
        let (userinfo, _) = authority.rsplit_once('@')?;
        let user = userinfo.split(':').next()?;
        return (!user.is_empty()).then(|| user.to_string());
    }
    let mut chars = s.chars().peekable();
    let mut user = None;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            return user;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=')?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
        }
        if key == "user" {
            user = Some(value); // the last one wins, as in libpq
        }
    }
}

/// `conninfo` with `default_user` as its role when it names none: in libpq's key/value form a
/// later key wins, so the default goes first. A URI is returned unchanged (it names its user
/// itself, or relies on PGUSER).
pub fn with_default_user(conninfo: &str, default_user: &str) -> String {
    let t = conninfo.trim_start();
    if conninfo_user(conninfo).is_some()
        || t.starts_with("postgresql://")
        || t.starts_with("postgres://")
    {
        return conninfo.to_string();
    }
    let quoted = default_user.replace('\\', "\\\\").replace('\'', "\\'");
    format!("user='{quoted}' {conninfo}")
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
    crate::os::user_name(uid).ok_or_else(|| {
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
    fn regression_only_a_connection_that_cannot_be_made_counts_as_down() {
        let down = [
            "psql: error: connection to server at \"127.0.0.1\", port 5999 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
            "psql: error: connection to server on socket \"/tmp/.s.PGSQL.5999\" failed: No such file or directory",
            "psql: error: connection to server at \"10.0.0.9\", port 5432 failed: timeout expired",
        ];
        for e in down {
            assert!(
                matches!(classify_failure(Some(2), e), Health::Down(_)),
                "{e}"
            );
        }
        let alive = [
            "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"x\"",
            "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  sorry, too many clients already",
            "psql: error: connection to server on socket \"/tmp/.s.PGSQL.5432\" failed: FATAL:  the database system is starting up",
            "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"x\", database \"postgres\", no encryption",
            "psql: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  role \"x\" does not exist (No such file or directory)",
            "psql: error: could not translate host name \"db1\" to address: Temporary failure in name resolution",
            "server closed the connection unexpectedly",
            "garbage",
            "",
        ];
        for e in alive {
            assert!(
                matches!(classify_failure(Some(2), e), Health::Unknown(_)),
                "{e}"
            );
        }
        // a refused connection with another exit code is not psql's "could not connect"
        assert!(matches!(
            classify_failure(Some(1), down[0]),
            Health::Unknown(_)
        ));
        assert!(matches!(
            classify_failure(None, down[0]),
            Health::Unknown(_)
        ));
    }

    #[test]
    fn the_role_of_a_connection_string_is_found_in_either_form() {
        assert_eq!(
            conninfo_user("host=db user=app port=5432").as_deref(),
            Some("app")
        );
        assert_eq!(
            conninfo_user("host=db user = 'o\\'brien x'").as_deref(),
            Some("o'brien x")
        );
        assert_eq!(conninfo_user("user=a user=b").as_deref(), Some("b"));
        assert_eq!(conninfo_user("host=/tmp port=5432 dbname=postgres"), None);
        assert_eq!(conninfo_user("application_name='user=x'"), None);
        assert_eq!(
            conninfo_user("postgresql://app@db:5432/postgres").as_deref(),
            Some("app")
        );
        assert_eq!(
            conninfo_user("postgresql://db/postgres?sslmode=require"),
            None
        );
        assert_eq!(conninfo_user(""), None);
    }

    #[test]
    fn a_default_role_is_added_only_where_the_connection_string_names_none() {
        assert_eq!(
            with_default_user("host=/tmp port=5432", "postgres"),
            "user='postgres' host=/tmp port=5432"
        );
        assert_eq!(
            with_default_user("host=db user=app", "postgres"),
            "host=db user=app"
        );
        assert_eq!(
            with_default_user("postgresql://db/postgres", "postgres"),
            "postgresql://db/postgres"
        );
        let odd = with_default_user("host=db", "o'b");
        assert_eq!(conninfo_user(&odd).as_deref(), Some("o'b"));
    }

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
