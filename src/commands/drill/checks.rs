//! The checks `walship drill` runs on its open copy (the end of the archive, amcheck, the DBA's
//! SQL) and on the stopped one (pg_checksums). Each answers an outcome and one sentence; none
//! returns an error, so that one check that cannot run never hides the others.

use std::path::Path;
use std::process::Command;

use super::scratch::Copy;
use crate::pg::WalFileName;
use crate::pg::timeline::format_lsn;
use crate::repo::drill::Outcome;

/// Every valid B-tree index of every database that takes connections, with amcheck's
/// `bt_index_check` (a read-only check that takes only AccessShareLock). Skipped where the
/// extension is not installed on this host.
pub fn amcheck(copy: &Copy) -> (Outcome, String) {
    let run = || -> crate::error::Result<(Outcome, String)> {
        let postgres = copy.client("postgres")?;
        let available = postgres
            .query("SELECT count(*) FROM pg_available_extensions WHERE name = 'amcheck'")?;
        if available
            .first()
            .and_then(|r| r.first())
            .map(String::as_str)
            != Some("1")
        {
            return Ok((
                Outcome::Skipped,
                "the amcheck extension is not installed on this host (postgresql-contrib)".into(),
            ));
        }
        let dbs = postgres
            .query("SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")?;
        let mut indexes = 0u64;
        for db in dbs.iter().filter_map(|r| r.first()) {
            let c = copy.client(db)?;
            // The copy is thrown away: creating the extension in it changes nothing that stays.
            c.query("CREATE EXTENSION IF NOT EXISTS amcheck")?;
            let rows = c.query(
                "SELECT count(bt_index_check(c.oid)) FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
                 WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready \
                 AND c.relpersistence <> 't'",
            );
            match rows {
                Ok(r) => {
                    indexes += r
                        .first()
                        .and_then(|r| r.first())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                }
                Err(e) => {
                    return Ok((Outcome::Failed, format!("database {db}: {}", e.message)));
                }
            }
        }
        Ok((
            Outcome::Passed,
            format!(
                "{indexes} B-tree indexes in {} databases are consistent",
                dbs.len()
            ),
        ))
    };
    run().unwrap_or_else(|e| (Outcome::Failed, e.message))
}

/// A check from `[drill] checks`: one statement that must return exactly one row, `true`.
pub fn user_check(copy: &Copy, db: &str, sql: &str) -> (Outcome, String) {
    let rows = copy.client(db).and_then(|c| c.query(sql));
    match rows {
        Ok(r) if r.len() == 1 && r[0].len() == 1 && r[0][0] == "t" => {
            (Outcome::Passed, "returned true".into())
        }
        Ok(r) => (
            Outcome::Failed,
            format!(
                "returned {}, not true",
                match r.first() {
                    None => "no row".to_string(),
                    Some(row) if r.len() == 1 => format!("{row:?}"),
                    Some(_) => format!("{} rows", r.len()),
                }
            ),
        ),
        Err(e) => (
            Outcome::Failed,
            format!("failed in database {db}: {}", e.message),
        ),
    }
}

/// `pg_checksums --check` over the stopped copy: every data page's checksum.
pub fn pg_checksums(pg_bin: &Path, pgdata: &Path) -> (Outcome, String) {
    let program = pg_bin.join("pg_checksums");
    let out = Command::new(&program)
        .arg("--check")
        .arg("-D")
        .arg(pgdata)
        .env("LC_MESSAGES", "C")
        .output();
    match out {
        Err(e) => (
            Outcome::Failed,
            format!("cannot run {}: {e}", program.display()),
        ),
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let files = text
                .lines()
                .find(|l| l.starts_with("Files scanned"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
                .unwrap_or_default();
            if o.status.success() {
                (
                    Outcome::Passed,
                    format!("pg_checksums --check: every page of {files} files verified"),
                )
            } else {
                let why: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .take(5)
                    .collect();
                (
                    Outcome::Failed,
                    format!("pg_checksums --check ({}): {}", o.status, why.join("; ")),
                )
            }
        }
    }
}

/// The copy reached the end of the archive as it was at the drill's start: the segment of its
/// last replayed byte is the last archived one (a switch record "ends" at the next segment's
/// first byte, hence the byte before).
pub fn end_of_archive(
    target_time: Option<&str>,
    replayed: u64,
    seg: u32,
    end: &WalFileName,
    end_segno: u64,
) -> (Outcome, String) {
    if let Some(t) = target_time {
        return (
            Outcome::Passed,
            format!(
                "recovered to the target {t} (PostgreSQL opens only once it is reached), at {}",
                format_lsn(replayed)
            ),
        );
    }
    let at = replayed.saturating_sub(1) / u64::from(seg);
    let name = |n: u64| crate::pg::walname::segment_name(end.timeline(), n, seg);
    if at >= end_segno {
        (
            Outcome::Passed,
            format!(
                "replayed to {} in {}, the last segment archived when the drill started",
                format_lsn(replayed),
                end.as_str()
            ),
        )
    } else {
        (
            Outcome::Failed,
            format!(
                "replay ended at {} in segment {}; segment {} could not be replayed, and the \
                 archive goes on to {}",
                format_lsn(replayed),
                name(at),
                name(at + 1),
                end.as_str()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_check_names_the_first_segment_not_replayed() {
        let seg = 1u32 << 20;
        let end = WalFileName::parse("000000010000000000000008").unwrap();
        // a switch record at the end of segment 8 ends at the first byte of 9
        assert_eq!(
            end_of_archive(None, 9 << 20, seg, &end, 8).0,
            Outcome::Passed
        );
        assert_eq!(
            end_of_archive(None, (8 << 20) + 100, seg, &end, 8).0,
            Outcome::Passed
        );
        let (o, why) = end_of_archive(None, (5 << 20) + 40, seg, &end, 8);
        assert_eq!(o, Outcome::Failed);
        assert!(
            why.contains("segment 000000010000000000000006 could not be replayed"),
            "{why}"
        );
    }
}
