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

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Kind, Result};
use crate::pg::walname::segment_name;
use crate::pg::{WalFileName, WalKind};
use crate::pool::Pool;
use crate::repo::Repository;
use crate::spool::{Spool, SpoolKind};
use crate::transfer::fetch_file;

/// The spool file in which the foreground call names the segment it just asked for.
pub const WANT: &str = "want";

/// The marker that says the worker is fetching `name` right now (dot-prefixed: a temporary, swept
/// away by the next worker if this one dies).
pub fn in_flight_marker(spool: &Spool, name: &str) -> std::path::PathBuf {
    spool.dir.join(format!(".{name}.inflight"))
}
/// A segment not in the archive yet is asked for again after this long.
const MISSING_RETRY: Duration = Duration::from_millis(500);

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

    let mut in_flight: HashSet<String> = HashSet::new();
    let mut missing: HashMap<String, Instant> = HashMap::new();
    let mut want = String::new();
    let mut last_activity = Instant::now();
    loop {
        for done in pool.finished() {
            finished(done, &mut in_flight, &mut missing, &mut last_activity);
        }
        let now_want = fs::read_to_string(spool.dir.join(WANT))
            .unwrap_or_default()
            .trim()
            .to_string();
        if now_want != want {
            want = now_want;
            last_activity = Instant::now();
        }
        let targets = next_segments(&want, config.prefetch, segment_size);
        // Anything else in the spool is behind recovery, or a guess for another timeline.
        for entry in spool.entries() {
            if entry != WANT && !targets.contains(&entry) && !in_flight.contains(&entry) {
                let _ = fs::remove_file(spool.dir.join(&entry));
            }
        }
        for t in &targets {
            let recently_missing = missing
                .get(t)
                .is_some_and(|at| at.elapsed() < MISSING_RETRY);
            if in_flight.contains(t) || recently_missing || spool.dir.join(t).exists() {
                continue;
            }
            // pg_wal nearly full: the room left is for the segment recovery asks for next, not
            // for guesses (the full-pg_wal drill: prefetched segments took the space back as
            // soon as it returned, and the wanted one failed with ENOSPC for ever).
            if !room_to_prefetch(&spool.dir, segment_size, in_flight.len()) {
                missing.insert(t.clone(), Instant::now());
                break;
            }
            in_flight.insert(t.clone());
            pool.submit(t.clone());
        }
        // Idle: recovery asked for nothing new and nothing arrived. Retrying segments that are
        // not in the archive yet (a standby at its end) does not count as work.
        if last_activity.elapsed() >= config.worker_idle_timeout || !spool.still_owns(&lock) {
            break;
        }
        if let Some(done) = pool.wait_done(Duration::from_millis(10)) {
            finished(done, &mut in_flight, &mut missing, &mut last_activity);
        }
    }
    pool.close();
    Ok(())
}

/// Is there room for one more prefetched segment beside those in flight (which have not taken
/// their space yet), and still two segments' room for what recovery asks for itself?
fn room_to_prefetch(dir: &Path, segment_size: u32, in_flight: usize) -> bool {
    match crate::spool::free_bytes(dir) {
        Some(free) => free >= u64::from(segment_size) * (in_flight as u64 + 3),
        None => true,
    }
}

/// Book-keeping for a finished fetch: a success is activity, a failure is retried later.
fn finished(
    (name, failure): (String, Option<Kind>),
    in_flight: &mut HashSet<String>,
    missing: &mut HashMap<String, Instant>,
    last_activity: &mut Instant,
) {
    in_flight.remove(&name);
    match failure {
        None => *last_activity = Instant::now(),
        Some(_) => {
            missing.insert(name, Instant::now());
        }
    }
}

/// The `count` segment names after `want` on its timeline (empty if `want` is not a segment).
pub fn next_segments(want: &str, count: u32, segment_size: u32) -> Vec<String> {
    let Ok(name) = WalFileName::parse(want) else {
        return Vec::new();
    };
    if name.kind() != WalKind::Segment {
        return Vec::new();
    }
    let Ok(segno) = name.segment_number(segment_size) else {
        return Vec::new();
    };
    (1..=u64::from(count))
        .map(|i| segment_name(name.timeline(), segno + i, segment_size))
        .collect()
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
    let marker = in_flight_marker(spool, name);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicts_the_next_segments_on_the_same_timeline() {
        assert_eq!(
            next_segments("0000000200000001000000FE", 3, 16 << 20),
            vec![
                "0000000200000001000000FF",
                "000000020000000200000000",
                "000000020000000200000001"
            ]
        );
        assert!(next_segments("00000002.history", 3, 16 << 20).is_empty());
        assert!(next_segments("", 3, 16 << 20).is_empty());
    }
}
