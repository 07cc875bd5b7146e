//! `walship drill [BACKUP] [--target-time T] [--scratch DIR] [--keep]`: prove that a backup
//! restores. Restore a stored base backup into a scratch directory on this host (restore's own
//! code: every file checked against the manifest), replay the archive as it was when the drill
//! started, open the copy on a private socket with archiving off and no primary, run the checks,
//! stop and remove it, and record the outcome with the measured RTO and RPO in the repository
//! (`drills/<id>.toml`, FORMAT.md "Drills": the only thing a drill writes there).
//!
//! This file is the drill's order and its record; `setup` decides what to restore where,
//! `scratch` owns the scratch directory and the copy's process, `replay` waits for the copy to
//! open, `checks` are what is asked of it then.

mod checks;
mod replay;
mod scratch;
mod setup;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use self::scratch::{Copy, Scratch};
use self::setup::{
    archive_end, choose, copy_settings, refuse_scratch_inside, slack, space_shortfall,
};
use super::human_bytes;
use crate::backup::unpack::Target;
use crate::config::{Config, DEFAULT_SCRATCH};
use crate::error::{Error, Result};
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
    if scratch::write_missing_postgresql_conf(&pg_bin, &pgdata)? {
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
    let client = replay::wait_until_open(config, &mut copy, &scratch.log(), t0, record)?;
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
    let (outcome, detail) =
        checks::end_of_archive(args.target_time.as_deref(), replayed, seg, &end, end_segno);
    check("end of archive", outcome, detail);
    let (outcome, detail) = checks::amcheck(&copy);
    check("amcheck", outcome, detail);
    let db = config.drill.database.as_deref().unwrap_or("postgres");
    for sql in &config.drill.checks {
        let (outcome, detail) = checks::user_check(&copy, db, sql);
        check(&format!("check `{sql}`"), outcome, detail);
    }
    copy.stop()?;
    let (outcome, detail) = if row[2] == "on" {
        checks::pg_checksums(&pg_bin, &pgdata)
    } else {
        (
            Outcome::Skipped,
            "not enabled in this cluster (initdb --data-checksums enables them)".into(),
        )
    };
    check("data checksums", outcome, detail);
    Ok(())
}

fn started_at_minus(started_at: f64, t: f64) -> f64 {
    ((started_at - t) * 1000.0).round() / 1000.0
}
