//! `walship drill [BACKUP] [--target-time T] [--scratch DIR] [--keep]`: prove that a backup
//! restores. Restore a stored base backup into a scratch directory on this host (restore's own
//! code: every file checked against the manifest), replay the archive as it was when the drill
//! started, open the copy on a private socket with archiving off and no primary, run the checks,
//! stop and remove it, and record the outcome with the measured RTO and RPO in the repository
//! (`drills/<id>.toml`, FORMAT.md "Drills": the only thing a drill writes there).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::drill_scratch::{Copy, Scratch};
use super::human_bytes;
use crate::backup::Manifest;
use crate::backup::unpack::Target;
use crate::config::Config;
use crate::config::{DEFAULT_SCRATCH, DEFAULT_TIMEOUT};
use crate::error::{Error, Kind, Result};
use crate::pg::WalFileName;
use crate::pg::timeline::{format_lsn, parse_lsn};
use crate::repo::Repository;
use crate::repo::drill::{DrillCheck, DrillRecord, Outcome, new_id};

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Backup id (`walship status` lists them) [default: the newest restorable one, or for a
    /// target, the newest that ended before it]
    pub backup: Option<String>,
    /// Recover up to this time instead of the end of the archive (e.g. "2026-11-22 21:00:00+00")
    #[arg(long, value_name = "TIMESTAMP")]
    pub target_time: Option<String>,
    /// Where to restore the copy: a new or empty directory, emptied afterwards [default: the
    /// [drill] scratch setting, else /var/tmp/walship-drill]
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Keep the copy's files (stopped) and its log in the scratch directory
    #[arg(long)]
    pub keep: bool,
}

/// Room for the copy beyond its files and WAL: the prefetch spool, the segment the copy opens
/// on its new timeline, and its log.
fn slack(segment_size: u64, prefetch: u32) -> u64 {
    (u64::from(prefetch) + 2) * segment_size + (16 << 20)
}

/// How many bytes are missing on the scratch file system, if any.
pub fn space_shortfall(needed: u64, free: u64) -> Option<u64> {
    (needed > free).then(|| needed - free)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn run(config: &Config, args: &DrillArgs) -> Result<()> {
    if crate::os::euid() == 0 {
        return Err(
            Error::usage("drill runs as root; run it as the user PostgreSQL runs as").with_hint(
                "The copy's files must belong to that user, and PostgreSQL refuses to run as root.",
            ),
        );
    }
    let scratch_dir = args
        .scratch
        .clone()
        .or_else(|| config.drill.scratch.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SCRATCH));
    // The copy's socket lives in the scratch directory: its path must fit a sockaddr_un.
    if scratch_dir.as_os_str().len() + "/.s.PGSQL.65535".len() > 107 {
        return Err(Error::usage(format!(
            "scratch directory {}: the path is too long for the copy's socket (at most 92 bytes)",
            scratch_dir.display()
        )));
    }
    refuse_scratch_inside(config, &scratch_dir)?;
    if let Some(t) = &args.target_time
        && crate::backup::catalog::parse_pg_time_loose(t).is_none()
    {
        return Err(Error::usage(format!(
            "--target-time {t}: expected YYYY-MM-DD HH:MM:SS[+HH]"
        )));
    }
    let repo = config.open_repository()?;
    let started_at = unix_now();
    let mut record = DrillRecord::new(
        &new_id(&crate::backup::id_for(started_at as i64)),
        started_at,
    );
    record.target_time = args.target_time.clone();
    let result = Scratch::claim(&scratch_dir).and_then(|scratch| {
        let r = drill(config, args, &repo, &scratch, &mut record);
        // The copy is down (drill() owns it); its prefetch worker must not write into the
        // scratch directory while it is removed, nor outlive the drill.
        scratch.stop_workers();
        let cleaned = if args.keep {
            println!(
                "kept: the copy (stopped) in {}, its log {}",
                scratch.pgdata().display(),
                scratch.log().display()
            );
            Ok(())
        } else {
            scratch.remove_contents().and_then(|()| scratch.release())
        };
        match (r, cleaned) {
            (Err(e), Err(c)) => {
                crate::log_line!("walship: drill: WARNING: cleaning up after the failure: {c}");
                Err(e)
            }
            (r, c) => r.and(c),
        }
    });
    record.finished_at = unix_now();
    let failure = match &result {
        Ok(()) => record.checks.iter().find(|c| c.outcome == Outcome::Failed),
        Err(_) => None,
    };
    record.passed = result.is_ok() && failure.is_none();
    record.failure = match (&result, failure) {
        (Err(e), _) => e.message.clone(),
        (Ok(()), Some(c)) => format!("{}: {}", c.name, c.detail),
        (Ok(()), None) => String::new(),
    };
    if record.restore_seconds.is_some() {
        summarize(&record);
    }
    // A fresh connection: an SSH session idle for the whole replay may have been dropped.
    let written = config
        .open_repository()
        .and_then(|repo| repo.write_drill(&record));
    match &written {
        Ok(()) => println!(
            "recorded as drills/{}.toml in {}",
            record.id,
            repo.describe()
        ),
        Err(e) => println!("NOT RECORDED: {e}"),
    }
    result?;
    if !record.passed {
        return Err(
            Error::corrupt(format!("drill failed: {}", record.failure)).with_hint(
                "The backup did not pass: take a new one (`walship basebackup`) and find out why; \
             the FAIL lines above say what failed.",
            ),
        );
    }
    written?;
    println!("drill passed");
    Ok(())
}

/// The scratch directory must not lie inside the repository (the drill would write there) or
/// inside the configured data directory (it would restore into a live cluster's tree).
fn refuse_scratch_inside(config: &Config, scratch: &Path) -> Result<()> {
    // what a path resolves to, for a scratch directory that does not exist yet too
    let resolved = |p: &Path| {
        p.canonicalize().unwrap_or_else(|_| {
            match (
                p.parent().and_then(|d| d.canonicalize().ok()),
                p.file_name(),
            ) {
                (Some(d), Some(n)) => d.join(n),
                _ => p.to_path_buf(),
            }
        })
    };
    let repo = match config.repo.as_deref().map(crate::storage::Location::parse) {
        Some(Ok(crate::storage::Location::Local(p))) => Some(p),
        _ => None,
    };
    let scratch = resolved(scratch);
    for (what, dir) in [
        ("the repository", repo),
        ("the data directory", config.pgdata.clone()),
    ] {
        if let Some(dir) = dir
            && scratch.starts_with(resolved(&dir))
        {
            return Err(Error::usage(format!(
                "scratch directory {} is inside {what} {}",
                scratch.display(),
                dir.display()
            ))
            .with_hint(
                "Give the drill a directory of its own, on a file system with room for the copy.",
            ));
        }
    }
    Ok(())
}

fn line(ok: Outcome, what: &str) {
    let tag = match ok {
        Outcome::Passed => "ok  ",
        Outcome::Failed => "FAIL",
        Outcome::Skipped => "skip",
    };
    println!("  {tag}  {what}");
}

fn summarize(r: &DrillRecord) {
    let secs = |v: Option<f64>| v.map(|s| format!("{s:.1} s")).unwrap_or("-".into());
    println!(
        "RTO {} (files restored {}, consistent {}, everything replayed and open {}); RPO {}; {} restored, {} of WAL replayed",
        secs(r.rto_seconds),
        secs(r.restore_seconds),
        secs(r.consistent_seconds),
        secs(r.rto_seconds),
        match (r.rpo_seconds, &r.target_time) {
            (Some(s), _) =>
                format!("{s:.1} s (newest archived commit {s:.1} s before the drill started)"),
            (None, Some(t)) => format!("not measured (recovered to the target {t})"),
            (None, None) => "unknown (no commit was replayed)".into(),
        },
        human_bytes(r.bytes_restored),
        human_bytes(r.bytes_replayed)
    );
}

/// The last segment archived now, on the newest timeline that has one: the end of the archive
/// this drill replays to (later segments are refused by its restore_command).
fn archive_end(repo: &Repository, segment_size: u32) -> Result<WalFileName> {
    let listing = repo.list_objects()?;
    crate::repo::inventory::summarize(&listing, segment_size)
        .into_iter()
        .filter(|t| !t.last.is_empty())
        .max_by_key(|t| t.timeline)
        .map(|t| WalFileName::parse(&t.last))
        .transpose()?
        .ok_or_else(|| Error::not_found(format!("{} holds no WAL segment", repo.describe())))
}

fn drill(
    config: &Config,
    args: &DrillArgs,
    repo: &Repository,
    scratch: &Scratch,
    record: &mut DrillRecord,
) -> Result<()> {
    let identity = repo.require_identity()?.clone();
    let seg = identity.wal_segment_size;
    let m = choose(repo, args)?;
    record.backup = m.id.clone();
    let end = archive_end(repo, seg)?;
    let end_segno = end.segment_number(seg)?;
    let start_segno = WalFileName::parse(&m.start_segment)?.segment_number(seg)?;
    record.end_segment = Some(end.as_str().to_string());
    let wal = (end_segno + 1).saturating_sub(start_segno) * u64::from(seg);
    let needed = m.original_bytes + wal + slack(u64::from(seg), config.prefetch);
    let free = crate::os::free_bytes(&scratch.dir).ok_or_else(|| {
        Error::unavailable(format!(
            "cannot tell the free space of {}",
            scratch.dir.display()
        ))
    })?;
    println!(
        "walship drill: backup {} into {}: {} of files + {} of WAL ({} .. {}) + {} working room = {} needed, {} free",
        m.id,
        scratch.dir.display(),
        human_bytes(m.original_bytes),
        human_bytes(wal),
        m.start_segment,
        end.as_str(),
        human_bytes(slack(u64::from(seg), config.prefetch)),
        human_bytes(needed),
        human_bytes(free)
    );
    if let Some(short) = space_shortfall(needed, free) {
        return Err(Error::unavailable(format!(
            "scratch directory {} has {} free; the drill of backup {} needs {} ({} more)",
            scratch.dir.display(),
            human_bytes(free),
            m.id,
            human_bytes(needed),
            human_bytes(short)
        ))
        .with_hint(
            "Give --scratch a file system with room for the backup's files and its WAL \
             (docs/guide/drills.md, \"Sizing the scratch space\"), or drill a newer backup.",
        ));
    }
    let pg_bin = config
        .pg_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{}/bin", m.pg_version)));
    let postgres = pg_bin.join("postgres");
    if !postgres.exists() {
        return Err(Error::usage(format!(
            "{} not found: the drill needs PostgreSQL {}'s server programs",
            postgres.display(),
            m.pg_version
        ))
        .with_hint("Install them, or set pg_bin in the configuration."));
    }

    // 1. The files, with restore's code; the time origin of every figure is here.
    let t0 = Instant::now();
    let pgdata = scratch.pgdata();
    let target = Target {
        pgdata: pgdata.clone(),
        tablespace_map: m
            .tablespaces
            .iter()
            .map(|t| {
                let dir = scratch.dir.join(format!("tablespace-{}", t.oid));
                (t.location.clone(), dir.display().to_string())
            })
            .collect(),
        force: false,
    };
    let restored = crate::backup::stored::unpack_stored(repo, &m, &target).map_err(|mut e| {
        e.message = format!("restoring backup {}: {}", m.id, e.message);
        e
    })?;
    record.bytes_restored = m.original_bytes;
    let port = crate::pg::cluster::free_port()?;
    let settings = copy_settings(config, args, scratch, &end, port)?;
    // Only the drill's user can connect at all (unix_socket_permissions 0700, no TCP), and
    // that user owns the copy's files: trust adds nothing it does not have, and works whatever
    // role names the cluster has.
    std::fs::write(scratch.dir.join("pg_hba.conf"), "local all all trust\n")
        .map_err(|e| Error::io(format!("writing {}/pg_hba.conf", scratch.dir.display()), e))?;
    restored.finish(&settings, "recovery.signal")?;
    if super::drill_scratch::write_missing_postgresql_conf(&pg_bin, &pgdata)? {
        crate::log_line!(
            "walship: drill: the backup has no postgresql.conf (configuration outside the data \
             directory): the copy runs on defaults and the primary's limits from pg_control"
        );
    }
    record.restore_seconds = Some(t0.elapsed().as_secs_f64());
    line(
        Outcome::Passed,
        &format!(
            "restored {} of files in {:.1} s",
            human_bytes(m.original_bytes),
            t0.elapsed().as_secs_f64()
        ),
    );

    // 2. Replay, until the copy opens.
    let mut copy = Copy::start(&postgres, &pgdata, &scratch.dir, port, &scratch.log())?;
    let timeout = Duration::from_secs(config.drill.timeout.unwrap_or(DEFAULT_TIMEOUT));
    let mut client = copy.client("postgres")?;
    loop {
        if let Some(status) = copy.exited() {
            return Err(replay_failed(config, &scratch.log(), &format!("{status}")));
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
    let rto = t0.elapsed().as_secs_f64();
    record.rto_seconds = Some(rto);
    // Open means consistent; a copy that got there between two polls was consistent by then.
    let consistent = *record.consistent_seconds.get_or_insert(rto);
    line(
        Outcome::Passed,
        &format!("consistent after {consistent:.1} s, open after {rto:.1} s"),
    );

    // 3. The checks.
    let row = client.row(
        "SELECT pg_last_wal_replay_lsn(), extract(epoch FROM pg_last_xact_replay_timestamp()), \
         current_setting('data_checksums')",
        3,
    )?;
    let replayed = parse_lsn(&row[0]).ok_or_else(|| {
        Error::corrupt(format!(
            "the copy reports no replay position ({:?})",
            row[0]
        ))
    })?;
    record.replayed_to_lsn = Some(format_lsn(replayed));
    record.bytes_replayed = replayed.saturating_sub(parse_lsn(&m.start_lsn).unwrap_or(replayed));
    if let Ok(t) = row[1].parse::<f64>() {
        record.last_commit_at = Some(t);
        // Recovered to a target, the newest commit replayed is not the newest archived.
        if args.target_time.is_none() {
            record.rpo_seconds = Some(started_at_minus(record.started_at, t));
        }
    }
    let mut check = |name: &str, outcome: Outcome, detail: String| {
        line(outcome, &format!("{name}: {detail}"));
        record.checks.push(DrillCheck {
            name: name.into(),
            outcome,
            detail,
        });
    };
    let (outcome, detail) = super::drill_checks::end_of_archive(
        args.target_time.as_deref(),
        replayed,
        seg,
        &end,
        end_segno,
    );
    check("end of archive", outcome, detail);
    let (outcome, detail) = super::drill_checks::amcheck(&copy);
    check("amcheck", outcome, detail);
    let db = config.drill.database.as_deref().unwrap_or("postgres");
    for sql in &config.drill.checks {
        let (outcome, detail) = super::drill_checks::user_check(&copy, db, sql);
        check(&format!("check `{sql}`"), outcome, detail);
    }
    copy.stop()?;
    let (outcome, detail) = if row[2] == "on" {
        super::drill_checks::pg_checksums(&pg_bin, &pgdata)
    } else {
        (
            Outcome::Skipped,
            "not enabled in this cluster (initdb --data-checksums enables them)".into(),
        )
    };
    check("data checksums", outcome, detail);
    Ok(())
}

/// A connection error that waiting will not cure (a role the cluster does not have), as
/// opposed to a copy still starting up or replaying towards consistency.
fn refused_for_good(message: &str) -> bool {
    const PASSING: [&str; 4] = [
        "starting up",
        "not yet accepting connections",
        "consistent recovery state",
        "shutting down",
    ];
    message.contains("FATAL:") && !PASSING.iter().any(|p| message.contains(p))
}

fn started_at_minus(started_at: f64, t: f64) -> f64 {
    ((started_at - t) * 1000.0).round() / 1000.0
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

/// The backup to drill: restore's choice; a repository whose backups all live elsewhere
/// (pg_basebackup) is told apart from one with none.
fn choose(repo: &Repository, args: &DrillArgs) -> Result<Manifest> {
    crate::backup::catalog::choose(
        repo,
        args.backup.as_deref(),
        args.target_time.as_deref(),
        None,
    )
    .map_err(|e| {
        if e.kind != Kind::NotFound || args.backup.is_some() {
            return e;
        }
        let stored = crate::backup::stored_backups(repo)
            .map(|(s, _)| s.len())
            .unwrap_or(0);
        if stored == 0 {
            Error::not_found(format!(
                "{} holds no stored base backup: nothing a drill can restore",
                repo.describe()
            ))
            .with_hint(
                "Backups taken with pg_basebackup (or basebackup --to) leave only their backup \
                 history file in the repository, not their data; take one with \
                 `walship basebackup`.",
            )
        } else {
            e
        }
    })
}

/// The copy's settings, after restore's: a private socket, no TCP, archiving off, no primary,
/// no reader hold (a drill writes nothing to the repository but its record), and the archive cut
/// at `end`.
fn copy_settings(
    config: &Config,
    args: &DrillArgs,
    scratch: &Scratch,
    end: &WalFileName,
    port: u16,
) -> Result<String> {
    let q = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let mut s = format!(
        "\n# written by walship drill: a throwaway copy that nothing may reach or follow\n\
         restore_command = {}\n\
         archive_mode = 'off'\narchive_command = ''\narchive_cleanup_command = ''\n\
         recovery_end_command = ''\nprimary_conninfo = ''\nprimary_slot_name = ''\n\
         synchronous_standby_names = ''\nrecovery_target_timeline = 'latest'\n\
         hot_standby = 'on'\nlisten_addresses = ''\nport = {port}\n\
         unix_socket_directories = {}\nunix_socket_permissions = '0700'\nhba_file = {}\n\
         logging_collector = 'off'\nlog_destination = 'stderr'\ncluster_name = 'walship-drill'\n",
        q(&config.server_command(&format!("fetch --until {} %f %p", end.as_str()))?),
        q(&scratch.dir.display().to_string()),
        q(&scratch.dir.join("pg_hba.conf").display().to_string()),
    );
    if let Some(t) = &args.target_time {
        s.push_str(&format!(
            "recovery_target_time = {}\nrecovery_target_action = 'promote'\n",
            q(t)
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_space_check_refuses_exactly_when_more_is_needed_than_is_free() {
        assert_eq!(space_shortfall(100, 100), None);
        assert_eq!(space_shortfall(100, 1000), None);
        assert_eq!(space_shortfall(101, 100), Some(1));
        assert_eq!(space_shortfall(8 << 20, 0), Some(8 << 20));
        // the working room grows with the prefetch window
        assert!(slack(16 << 20, 8) > slack(16 << 20, 0));
    }

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
}
