//! `postmaster.pid`, as PostgreSQL writes it (pidfile.h): the postmaster's PID, the data
//! directory, the start time, the port, the socket directory, the listen address, ... one per
//! line. The one reader of it in walship.

use std::path::Path;

/// What postmaster.pid says (fields a starting server has not written yet are `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    pub pid: u32,
    /// Seconds since the epoch.
    pub started: Option<i64>,
    pub port: Option<u16>,
    pub socket_dir: Option<String>,
    pub listen: Option<String>,
}

impl PidFile {
    /// The pid file of `pgdata`: `Ok(None)` when there is none.
    pub fn read(pgdata: &Path) -> std::io::Result<Option<PidFile>> {
        match std::fs::read_to_string(pgdata.join("postmaster.pid")) {
            Ok(text) => Ok(PidFile::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `None` when the first line is no PID.
    pub fn parse(text: &str) -> Option<PidFile> {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let field = |i: usize| lines.get(i).copied().filter(|s| !s.is_empty());
        Some(PidFile {
            pid: field(0)?.parse().ok()?,
            started: field(2).and_then(|s| s.parse().ok()),
            port: field(3).and_then(|s| s.parse().ok()),
            socket_dir: field(4).map(str::to_string),
            listen: field(5).map(str::to_string),
        })
    }

    /// The pid file of `pgdata` if its postmaster is alive.
    pub fn live(pgdata: &Path) -> Option<PidFile> {
        PidFile::read(pgdata)
            .ok()
            .flatten()
            .filter(|p| crate::os::process_alive(p.pid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_postgresql_writes_is_read_and_a_starting_server_has_fewer() {
        let p = PidFile::parse(
            "4242\n/srv/pg\n1796109637\n5432\n/var/run/postgresql\n*\n  5432001  32769\nready   \n",
        )
        .unwrap();
        assert_eq!(
            p,
            PidFile {
                pid: 4242,
                started: Some(1_796_109_637),
                port: Some(5432),
                socket_dir: Some("/var/run/postgresql".into()),
                listen: Some("*".into()),
            }
        );
        let starting = PidFile::parse("4242\n/srv/pg\n").unwrap();
        assert_eq!((starting.port, starting.started), (None, None));
        assert_eq!(PidFile::parse("garbage\n"), None);
        assert_eq!(PidFile::parse(""), None);
    }
}
