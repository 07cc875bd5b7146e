//! The prefetch worker (`walship prefetch`, started in the background by `walship fetch`).
//!
//! Recovery asks restore_command for one segment at a time and replays it before asking for the
//! next. The worker fetches the segments after the last one asked for (`prefetch` of them) on
//! several threads into the spool, each through `fetch_file`: decompressed and checked (FORMAT.md,
//! "What a reader checks"), and only then renamed into the spool under its WAL name. The foreground call for a
//! segment in the spool is a rename into `%p`.
//!
//! Why this never serves a wrong file: a name in a repository is written once, so the spooled
//! file for a name is that name's content; the spool belongs to one repository location; files
//! are published in the spool only after verification; and a worker starting up empties the spool
//! of everything a predecessor left. After a timeline switch recovery asks for names on the new
//! timeline and the guesses for the old one are deleted unused.
//!
//! What to fetch when, and when to stop, is decided by `schedule::prefetch`; this module reads
//! what it needs to see and carries out what it is told.

use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::config::Config;
use crate::error::{Kind, Result};
use crate::pg::WalFileName;
use crate::pool::Pool;
use crate::repo::Repository;
use crate::schedule::prefetch::{Action, Observation, Scheduler};
use crate::spool::{Spool, SpoolKind, WANT};
use crate::transfer::fetch_file;

pub fn run_worker(config: &Config, pg_wal: &Path) -> Result<()> {
    crate::pg::server::become_owner_of_workdir(pg_wal)?;
    let spool = Spool::open(pg_wal, SpoolKind::Fetch, config.location())?;
    let Some(lock) = spool.acquire_worker_lock()? else {
        return Ok(());
    };
    spool.remove_temporaries();
    for entry in spool.entries() {
        if entry != WANT {
            let _ = fs::remove_file(spool.dir.join(entry));
        }
    }
    // Only now may calls take files from the spool: what is in it from here on is this worker's.
    let Some(_serving) = spool.acquire_serving_lock()? else {
        // held past the probes' instant only by an older worker whose lock file was replaced,
        // which stops at its next still_owns check; the next call starts a worker again
        return Ok(());
    };
    let segment_size = {
        let repo = config.open_repository()?;
        match repo.identity() {
            Some(id) => id.wal_segment_size,
            None => return Ok(()), // an empty repository: nothing to fetch ahead
        }
    };

    // Prefetching is background work for PostgreSQL's startup process, which replays on one core
    // and is what recovery waits for: on a machine with few cores the worker's threads (up to 4,
    // each with a hashing thread) must not take that core from it. Ten steps nicer than the
    // caller; Linux keeps niceness per thread and new threads inherit it, so this comes before
    // the pool starts. If the worker falls behind, the startup process waits for it and the CPU
    // is the worker's anyway.
    crate::os::lower_priority(10);
    let threads = config.prefetch.clamp(1, 4);
    let pool = {
        let (spool, config) = (spool.clone(), config.clone());
        Pool::new(
            threads,
            move |repo: &mut Option<Repository>, name: String| {
                let failure = fetch_one(&config, &spool, repo, &name);
                (name, failure)
            },
        )?
    };

    let mut scheduler = Scheduler::new(
        config.prefetch,
        segment_size,
        config.worker_idle_timeout,
        Instant::now(),
    );
    let mut returned: Vec<(String, Option<Kind>)> = Vec::new();
    'scan: loop {
        returned.extend(pool.finished());
        for (name, failure) in returned.drain(..) {
            scheduler.finished(Instant::now(), &name, failure.is_none());
        }
        for action in scheduler.step(&observe(&spool, &lock)) {
            match action {
                Action::Remove(entry) => {
                    let _ = fs::remove_file(spool.dir.join(entry));
                }
                Action::Fetch(name) => pool.submit(name),
                Action::Wait(interval) => returned.extend(pool.wait_done(interval)),
                Action::Stop => break 'scan,
            }
        }
    }
    pool.close();
    Ok(())
}

/// What the worker sees: the segment recovery asked for, the spool, the room left in pg_wal.
fn observe(spool: &Spool, lock: &fs::File) -> Observation {
    Observation {
        now: Instant::now(),
        want: fs::read_to_string(spool.dir.join(WANT))
            .unwrap_or_default()
            .trim()
            .to_string(),
        spool: spool.entries(),
        free_bytes: crate::spool::free_bytes(&spool.dir),
        owns_lock: spool.still_owns(lock),
    }
}

/// Fetch one segment into the spool. Returns the failure kind, if any (not in the archive yet is
/// the common one at the end of the archive). Errors are the foreground's to report: it fetches
/// the segment itself when the spool does not have it.
fn fetch_one(
    config: &Config,
    spool: &Spool,
    repo: &mut Option<Repository>,
    name: &str,
) -> Option<Kind> {
    let marker = spool.in_flight_marker(name);
    let _ = fs::write(&marker, b"");
    let result = (|| {
        let wal = WalFileName::parse(name)?;
        if repo.is_none() {
            *repo = Some(config.open_repository()?);
        }
        fetch_file(
            repo.as_ref().expect("connected above"),
            &wal,
            &spool.dir.join(name),
        )
    })();
    let _ = fs::remove_file(&marker);
    match result {
        Ok(_) => None,
        Err(e) => {
            if e.kind == Kind::Unavailable {
                *repo = None;
            }
            if e.kind != Kind::NotFound {
                crate::log_line!("walship prefetch: {name}: {e}");
            }
            Some(e.kind)
        }
    }
}
