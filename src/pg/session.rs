//! One PostgreSQL session kept open across several statements, for what must happen in a single
//! session: `pg_backup_start` … `pg_backup_stop` (PostgreSQL aborts a non-exclusive backup when
//! its session ends). It is psql reading statements from a pipe, so it connects exactly as
//! [`PgClient`] does (libpq: ~/.pgpass, sockets, sslmode). Each statement is followed by an
//! `\echo` of a marker, so the answer ends where the marker is.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::client::PgClient;
use crate::error::{Error, Result};

const DONE: &str = "__walship_statement_done__";

pub struct PgSession {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    conninfo: String,
}

impl PgSession {
    pub fn open(client: &PgClient) -> Result<PgSession> {
        let mut child = Command::new(&client.psql)
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "|"])
            .arg("-d")
            .arg(&client.conninfo)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "walship basebackup")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("running {}", client.psql.display()), e))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(PgSession {
            child,
            stdin,
            stdout,
            conninfo: client.conninfo.clone(),
        })
    }

    /// Run one statement; its output lines (fields separated by `|`).
    pub fn query(&mut self, sql: &str) -> Result<Vec<String>> {
        let sent = writeln!(self.stdin, "{sql};\n\\echo {DONE}").and_then(|_| self.stdin.flush());
        if sent.is_err() {
            return Err(self.died());
        }
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(self.died()),
                Ok(_) => {}
            }
            let line = line.trim_end_matches('\n');
            if line == DONE {
                return Ok(lines);
            }
            lines.push(line.to_string());
        }
    }

    /// One row of `width` fields (separated by `|`), or an error.
    pub fn row(&mut self, sql: &str, width: usize) -> Result<Vec<String>> {
        let lines = self.query(sql)?;
        match lines.as_slice() {
            [line] if line.split('|').count() == width => {
                Ok(line.split('|').map(str::to_string).collect())
            }
            other => Err(Error::unavailable(format!(
                "PostgreSQL ({}) answered {other:?} to a {width}-column query",
                self.conninfo
            ))),
        }
    }

    /// psql ended (a failed statement stops it, ON_ERROR_STOP): its stderr says why.
    fn died(&mut self) -> Error {
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        Error::unavailable(format!("PostgreSQL ({}): {}", self.conninfo, err.trim()))
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        // Ending psql ends the session, and PostgreSQL aborts a backup it left running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
