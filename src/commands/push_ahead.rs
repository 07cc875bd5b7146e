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
//! `worker_idle_timeout` without work.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::human_bytes;
use super::push::ensure_identity;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::pg::{WalFileName, WalKind};
use crate::pool::Pool;
use crate::repo::{Identity, Repository};
use crate::spool::{SourceStamp, Spool, SpoolKind};
use crate::transfer::{PushOptions, PushOutcome, push_file};

/// How often the worker looks at archive_status when it has nothing in flight.
const SCAN_INTERVAL: Duration = Duration::from_millis(10);
/// A file whose acknowledgement could not be written is pushed again after this long.
const ACK_RETRY: Duration = Duration::from_secs(10);

/// The `.ready` files of `pg_wal/archive_status`, in the order PostgreSQL archives them.
pub fn ready_files(pg_wal: &Path) -> Vec<WalFileName> {
    let mut names: Vec<WalFileName> = fs::read_dir(pg_wal.join("archive_status"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".ready")
                .and_then(|n| WalFileName::parse(n).ok())
        })
        .collect();
    names.sort_by_key(|n| (n.kind() != WalKind::TimelineHistory, n.as_str().to_string()));
    names
}

pub fn run_worker(config: &Config, pg_wal: &Path) -> Result<()> {
    if !pg_wal.join("archive_status").is_dir() {
        return Err(Error::usage(format!(
            "{} has no archive_status directory; not a pg_wal",
            pg_wal.display()
        )));
    }
    let spool = Spool::open(pg_wal, SpoolKind::Push, config.location())?;
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
    };

    let pool = {
        let (spool, config) = (spool.clone(), config.clone());
        Pool::new(
            threads,
            move |conn: &mut Option<(Repository, Identity)>, name: WalFileName| {
                let acked = push_one(&config, &spool, &opts, conn, &name);
                (name.as_str().to_string(), acked)
            },
        )
    };

    let mut in_flight: HashSet<String> = HashSet::new();
    // Files whose acknowledgement could not be written (pg_wal full?): not retried at once.
    let mut unacked: HashMap<String, Instant> = HashMap::new();
    let mut last_work = Instant::now();
    loop {
        for done in pool.finished() {
            settle(done, &mut in_flight, &mut unacked);
        }
        unacked.retain(|_, at| at.elapsed() < ACK_RETRY);
        let ready = ready_files(pg_wal);
        // Acknowledgements whose .ready is gone were taken, or PostgreSQL archived the file
        // another way: nobody will ask for them again.
        let ready_names: HashSet<&str> = ready.iter().map(|n| n.as_str()).collect();
        for entry in spool.entries() {
            if let Some(n) = entry
                .strip_suffix(".ok")
                .or_else(|| entry.strip_suffix(".error"))
                && !ready_names.contains(n)
                && !in_flight.contains(n)
            {
                let _ = fs::remove_file(spool.dir.join(&entry));
            }
        }
        // Keep the queue short so the oldest files always go first.
        for name in ready {
            if in_flight.len() >= 2 * threads as usize {
                break;
            }
            if in_flight.contains(name.as_str())
                || unacked.contains_key(name.as_str())
                || spool.has_ack(name.as_str())
            {
                continue;
            }
            in_flight.insert(name.as_str().to_string());
            pool.submit(name);
        }
        if !in_flight.is_empty() {
            last_work = Instant::now();
        } else if last_work.elapsed() >= config.worker_idle_timeout {
            break;
        }
        if !spool.still_owns(&lock) {
            break;
        }
        if let Some(done) = pool.wait_done(SCAN_INTERVAL) {
            settle(done, &mut in_flight, &mut unacked);
        }
    }
    pool.close();
    Ok(())
}

/// Book-keeping for a finished push.
fn settle(
    (name, acked): (String, bool),
    in_flight: &mut HashSet<String>,
    unacked: &mut HashMap<String, Instant>,
) {
    in_flight.remove(&name);
    if !acked {
        unacked.insert(name, Instant::now());
    }
}

/// Push one file and acknowledge it; false if the acknowledgement could not be written. A connection that failed is dropped and made again for the
/// next file.
fn push_one(
    config: &Config,
    spool: &Spool,
    opts: &PushOptions,
    conn: &mut Option<(Repository, Identity)>,
    name: &WalFileName,
) -> bool {
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
            PushOutcome::Stored => format!(
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
    let acked = match result {
        Ok((stamp, summary)) => spool.ack_ok(name.as_str(), &stamp, &summary),
        Err(e) => {
            if e.kind == Kind::Unavailable {
                *conn = None;
            }
            crate::log_line!("walship push-ahead: {}: ERROR: {e}", name.as_str());
            spool.ack_error(name.as_str(), e.exit_code(), &e.to_string())
        }
    };
    if let Err(e) = &acked {
        crate::log_line!(
            "walship push-ahead: {}: cannot write the acknowledgement: {e}",
            name.as_str()
        );
    }
    acked.is_ok()
}
