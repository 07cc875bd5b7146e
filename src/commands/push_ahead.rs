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

/// How often the worker looks at archive_status when it has nothing in flight: often while WAL
/// flows (a call waits for the worker to notice its file), ...
const SCAN_INTERVAL: Duration = Duration::from_millis(10);
/// ... and less often once nothing has come for `QUIET_AFTER`: a worker on a primary that writes
/// a segment now and then lives on between them, and scanning a large archive_status 100 times a
/// second cost it 2 % of a core (measured: 39 ticks in 20 s with 65 entries). The first file
/// after a quiet spell waits at most this much longer.
const QUIET_SCAN_INTERVAL: Duration = Duration::from_millis(100);
const QUIET_AFTER: Duration = Duration::from_secs(1);
/// A file whose acknowledgement could not be written is pushed again after this long.
const ACK_RETRY: Duration = Duration::from_secs(10);
/// A file whose "done" acknowledgement was taken is not pushed again while its `.ready` lingers
/// this long after the worker noticed the take: a call takes its acknowledgement and exits 0, and
/// only then does PostgreSQL rename the `.ready` (after fsyncs, or after the next command of an
/// `A && B` archive_command). Pushing it again in between would hash the file once more for
/// nothing. After this long (PostgreSQL restarted before the rename? it retries?) the file is
/// pushed again, found already archived, so that the next call is answered.
const ACK_TAKEN_GRACE: Duration = Duration::from_secs(2);

/// What the worker knows of a file it acknowledged, while the file's `.ready` is there.
struct Acked {
    /// The acknowledgement said done, not an error.
    done: bool,
    /// When a scan first found the acknowledgement gone and the `.ready` still there: a call
    /// took it, and PostgreSQL has not renamed the `.ready` yet.
    taken_at: Option<Instant>,
    /// An acknowledgement of this file was taken before. One written after that (the file pushed
    /// again) may rightly be left untaken, so it says nothing about where PostgreSQL archives.
    taken_before: bool,
}

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

    let mut in_flight: HashSet<String> = HashSet::new();
    // Files whose acknowledgement could not be written (pg_wal full?): not retried at once.
    let mut unacked: HashMap<String, Instant> = HashMap::new();
    // Files this worker acknowledged whose `.ready` was still there at the last scan.
    let mut acked: HashMap<String, Acked> = HashMap::new();
    let mut last_work = Instant::now();
    loop {
        for done in pool.finished() {
            settle(done, &mut in_flight, &mut unacked, &mut acked);
        }
        unacked.retain(|_, at| at.elapsed() < ACK_RETRY);
        // archive_status before the spool: a call takes its acknowledgement before it exits 0,
        // and PostgreSQL removes the `.ready` only after that, so an acknowledgement seen after
        // its `.ready` vanished was not taken.
        let ready = match ready_files(pg_wal) {
            Ok(ready) => ready,
            Err(e) => {
                // Not "no .ready files": that would make every acknowledgement look untaken.
                crate::log_line!(
                    "walship push-ahead: cannot read {}/archive_status: {e}; stopping (calls push their files themselves)",
                    pg_wal.display()
                );
                break;
            }
        };
        let ready_names: HashSet<&str> = ready.iter().map(|n| n.as_str()).collect();
        let mut acks: HashSet<String> = HashSet::new();
        let mut archived_elsewhere = None;
        for entry in spool.entries() {
            let Some(n) = entry
                .strip_suffix(".ok")
                .or_else(|| entry.strip_suffix(".error"))
            else {
                continue;
            };
            if ready_names.contains(n) || in_flight.contains(n) {
                acks.insert(n.to_string());
                continue;
            }
            // Its .ready is gone: nobody will ask for it again.
            if acked.get(n).is_some_and(|a| !a.taken_before) {
                archived_elsewhere = Some(n.to_string());
            }
            let _ = fs::remove_file(spool.dir.join(&entry));
        }
        acked.retain(|n, _| ready_names.contains(n.as_str()));
        for (name, a) in acked.iter_mut() {
            if !acks.contains(name) && !in_flight.contains(name) {
                a.taken_before = true;
                a.taken_at.get_or_insert_with(Instant::now);
            }
        }
        if let Some(name) = archived_elsewhere {
            crate::log_line!(
                "walship push-ahead: {name} was marked archived without taking this worker's \
                 acknowledgement: archive_command no longer pushes to {} (or stopped waiting \
                 for this worker). Stopping; the next call to this repository starts a worker again.",
                config.location()
            );
            break;
        }
        // Keep the queue short so the oldest files always go first.
        for name in ready {
            if in_flight.len() >= 2 * threads as usize {
                break;
            }
            if in_flight.contains(name.as_str())
                || unacked.contains_key(name.as_str())
                || acks.contains(name.as_str())
                || acked.get(name.as_str()).is_some_and(|a| {
                    a.done && a.taken_at.is_some_and(|at| at.elapsed() < ACK_TAKEN_GRACE)
                })
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
        if spool.superseded() {
            crate::log_line!(
                "walship push-ahead: archive_command now calls walship with another \
                 configuration; this worker (for {}) stops",
                config.location()
            );
            break;
        }
        let interval = if last_work.elapsed() < QUIET_AFTER {
            SCAN_INTERVAL
        } else {
            QUIET_SCAN_INTERVAL
        };
        if let Some(done) = pool.wait_done(interval) {
            settle(done, &mut in_flight, &mut unacked, &mut acked);
        }
    }
    pool.close();
    Ok(())
}

/// Book-keeping for a finished push.
fn settle(
    (name, ack): (String, AckWritten),
    in_flight: &mut HashSet<String>,
    unacked: &mut HashMap<String, Instant>,
    acked: &mut HashMap<String, Acked>,
) {
    in_flight.remove(&name);
    let done = match ack {
        AckWritten::Done => true,
        AckWritten::Failed => false,
        AckWritten::No => {
            unacked.insert(name, Instant::now());
            return;
        }
    };
    // A file pushed again keeps `taken_before`: its earlier acknowledgement was taken, so this
    // one may rightly stay untaken (see `Acked`).
    acked
        .entry(name)
        .and_modify(|a| {
            a.done = done;
            a.taken_at = None;
        })
        .or_insert(Acked {
            done,
            taken_at: None,
            taken_before: false,
        });
}

/// What a push left in the spool for the call that asks for the file.
enum AckWritten {
    /// "Durable in the repository."
    Done,
    /// The error, for the call to report (the call is retried, so the file is pushed again).
    Failed,
    /// Nothing: the acknowledgement could not be written.
    No,
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
