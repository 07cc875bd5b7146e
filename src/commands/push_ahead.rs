//! The push-ahead worker (`walship push-ahead`, started in the background by `walship push`).
//!
//! PostgreSQL's archiver calls archive_command for one file at a time and waits for it; with a
//! backlog, that serial loop (and an SSH handshake per call) is what fills pg_wal. The worker
//! pushes every `.ready` file of `pg_wal/archive_status`, oldest first (history files before
//! segments, as PostgreSQL orders them), on several threads, each keeping its repository
//! connection open between files. For every file it writes an acknowledgement into the spool only
//! after `push_file` returned, i.e. after the object is durable; the foreground call that
//! PostgreSQL makes for that file takes the acknowledgement and exits 0, or reports the error.
//!
//! Nothing here weakens the push contract: a worker killed at any point leaves at worst a
//! temporary file (never a published partial object, see FORMAT.md) and a missing
//! acknowledgement, and the foreground call then pushes the file itself. The worker exits after
//! `worker_idle_timeout` without work, and as soon as PostgreSQL marks a file archived without
//! taking this worker's acknowledgement for it: archive_command then names another repository
//! (or gave up waiting), and pushing on would double the work and keep writing into a repository
//! the DBA has moved away from.
//!
//! What to push when, and when to stop, is decided by `schedule::push_ahead`; this module reads
//! what it needs to see and carries out what it is told.

use std::fs;
use std::path::Path;
use std::time::Instant;

use super::human_bytes;
use crate::archive_identity::ensure_identity;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::pg::{WalFileName, WalKind};
use crate::pool::Pool;
use crate::repo::{Identity, Repository};
use crate::schedule::push_ahead::{AckWritten, Action, Observation, Scheduler, Stop};
use crate::spool::{SourceStamp, Spool, SpoolKind};
use crate::transfer::{PushOptions, PushOutcome, push_file};

/// The `.ready` files of `pg_wal/archive_status`, in the order PostgreSQL archives them.
pub fn ready_files(pg_wal: &Path) -> std::io::Result<Vec<WalFileName>> {
    let mut names: Vec<WalFileName> = fs::read_dir(pg_wal.join("archive_status"))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".ready")
                .and_then(|n| WalFileName::parse(n).ok())
        })
        .collect();
    names.sort_by_key(|n| (n.kind() != WalKind::TimelineHistory, n.as_str().to_string()));
    Ok(names)
}

pub fn run_worker(config: &Config, pg_wal: &Path) -> Result<()> {
    crate::pg::server::become_owner_of_workdir(pg_wal)?;
    if !pg_wal.join("archive_status").is_dir() {
        return Err(Error::usage(format!(
            "{} has no archive_status directory; not a pg_wal",
            pg_wal.display()
        )));
    }
    let spool = Spool::open(pg_wal, SpoolKind::Push, &config.spool_key())?;
    let pg_wal = spool.pg_wal.clone();
    let pg_wal = pg_wal.as_path();
    let Some(lock) = spool.acquire_worker_lock()? else {
        return Ok(()); // another worker is at it
    };
    spool.remove_temporaries();
    let threads = config.push_ahead.max(1);
    // Parallelism comes from several files at once; each file then needs fewer threads.
    let per_file_threads = (config.compress_threads / threads).max(1);
    let opts = PushOptions {
        compression: config.compression,
        level: config.compression_level,
        threads: per_file_threads,
        replace_damaged: false,
    };

    let pool = {
        let (spool, config) = (spool.clone(), config.clone());
        Pool::new(
            threads,
            move |conn: &mut Option<(Repository, Identity)>, name: WalFileName| {
                let ack = push_one(&config, &spool, &opts, conn, &name);
                (name.as_str().to_string(), ack)
            },
        )?
    };

    let mut scheduler = Scheduler::new(threads, config.worker_idle_timeout, Instant::now());
    let mut returned: Vec<(String, AckWritten)> = Vec::new();
    'scan: loop {
        returned.extend(pool.finished());
        for (name, ack) in returned.drain(..) {
            scheduler.acknowledged(Instant::now(), &name, ack);
        }
        for action in scheduler.step(&observe(&spool, &lock)) {
            match action {
                Action::RemoveAck(entry) => {
                    let _ = fs::remove_file(spool.dir.join(entry));
                }
                Action::Push(name) => pool.submit(name),
                Action::Wait(interval) => returned.extend(pool.wait_done(interval)),
                Action::Stop(why) => {
                    log_stop(config, pg_wal, &why);
                    break 'scan;
                }
            }
        }
    }
    // The pushes under way finish and write their acknowledgements.
    pool.close();
    Ok(())
}

/// What the worker sees: archive_status first, then the spool (see `Observation`).
fn observe(spool: &Spool, lock: &fs::File) -> Observation {
    let ready = ready_files(&spool.pg_wal).map_err(|e| e.to_string());
    Observation {
        now: Instant::now(),
        ready,
        spool: spool.entries(),
        owns_lock: spool.still_owns(lock),
        superseded: spool.superseded(),
    }
}

fn log_stop(config: &Config, pg_wal: &Path, why: &Stop) {
    match why {
        Stop::ArchiveStatusUnreadable(e) => crate::log_line!(
            "walship push-ahead: cannot read {}/archive_status: {e}; stopping (calls push their files themselves)",
            pg_wal.display()
        ),
        Stop::ArchivedElsewhere(name) => crate::log_line!(
            "walship push-ahead: {name} was marked archived without taking this worker's \
             acknowledgement: archive_command no longer pushes to {} (or stopped waiting \
             for this worker). Stopping; the next call to this repository starts a worker again.",
            config.location()
        ),
        Stop::Superseded => crate::log_line!(
            "walship push-ahead: archive_command now calls walship with another \
             configuration; this worker (for {}) stops",
            config.location()
        ),
        Stop::Idle | Stop::LostLock => {}
    }
}

/// Push one file and acknowledge it. A connection that failed is dropped and made again for the
/// next file.
fn push_one(
    config: &Config,
    spool: &Spool,
    opts: &PushOptions,
    conn: &mut Option<(Repository, Identity)>,
    name: &WalFileName,
) -> AckWritten {
    let path = spool.pg_wal.join(name.as_str());
    let result = (|| -> Result<(SourceStamp, String)> {
        let stamp = SourceStamp::of(&path)?;
        if conn.is_none() {
            let mut repo = config.open_repository()?;
            let identity = ensure_identity(&mut repo, &path, name)?;
            *conn = Some((repo, identity));
        }
        let (repo, identity) = conn.as_ref().expect("connected above");
        let report = push_file(repo, identity, &path, name, opts)?;
        let summary = match report.outcome {
            PushOutcome::Stored | PushOutcome::Replaced => format!(
                "{} -> {}, ratio {:.2}, {}-{}, {} ms",
                human_bytes(report.original_bytes),
                human_bytes(report.stored_bytes),
                report.original_bytes as f64 / report.stored_bytes.max(1) as f64,
                opts.compression.name(),
                opts.level,
                report.elapsed.as_millis()
            ),
            PushOutcome::AlreadyArchived => "already archived with identical content".to_string(),
        };
        Ok((stamp, summary))
    })();
    let (written, kind) = match result {
        Ok((stamp, summary)) => (
            spool.ack_ok(name.as_str(), &stamp, &summary),
            AckWritten::Done,
        ),
        Err(e) => {
            if e.kind == Kind::Unavailable {
                *conn = None;
            }
            crate::log_line!("walship push-ahead: {}: ERROR: {e}", name.as_str());
            (
                spool.ack_error(name.as_str(), e.exit_code(), &e.to_string()),
                AckWritten::Failed,
            )
        }
    };
    match written {
        Ok(()) => kind,
        Err(e) => {
            crate::log_line!(
                "walship push-ahead: {}: cannot write the acknowledgement: {e}",
                name.as_str()
            );
            AckWritten::No
        }
    }
}
