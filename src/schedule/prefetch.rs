//! What the prefetch worker does next, from what it sees (`commands::prefetch` is the loop around
//! it).
//!
//! The worker fetches the `count` segments after the one recovery last asked for (the spool's
//! `want` file) into the spool, and removes from the spool whatever recovery has gone past (or
//! a guess for another timeline). The rules, each kept by `step` and checked by the property
//! test in `tests.rs`:
//!
//! - only the `count` segments after `want` on its timeline are fetched, each once at a time;
//! - prefetching never fills pg_wal past its bound: a fetch starts only with room for it, for
//!   those in flight (which have not taken their space yet), and two segments more for what
//!   recovery asks for itself (the full-pg_wal drill: prefetched segments took the space back as
//!   soon as it returned, and the wanted one failed with ENOSPC for ever);
//! - nothing in flight and not `want` is removed;
//! - a segment not in the archive yet is asked for again only after `MISSING_RETRY`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::pg::walname::segment_name;
use crate::pg::{WalFileName, WalKind};
use crate::spool::WANT;

/// A segment not in the archive yet is asked for again after this long.
pub const MISSING_RETRY: Duration = Duration::from_millis(500);
/// How often the worker looks at the spool while nothing returns.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(10);

/// What the worker sees at one scan.
#[derive(Debug, Clone)]
pub struct Observation {
    pub now: Instant,
    /// The segment recovery asked for last (the `want` file), or "".
    pub want: String,
    /// The spool's entries (`Spool::entries`).
    pub spool: Vec<String>,
    /// Free bytes in the spool's file system (pg_wal's), if they can be read.
    pub free_bytes: Option<u64>,
    /// The worker still holds its spool's lock file (`Spool::still_owns`).
    pub owns_lock: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove this spool entry: behind recovery, or a guess for another timeline.
    Remove(String),
    /// Fetch this segment into the spool (on a pool thread); report it with `finished`.
    Fetch(String),
    /// Look again after this long, or as soon as a fetch returns.
    Wait(Duration),
    /// Stop: idle for `worker_idle_timeout`, or the spool is no longer this worker's.
    Stop,
}

/// The prefetch worker's state between scans.
#[derive(Debug)]
pub struct Scheduler {
    count: u32,
    segment_size: u32,
    idle_timeout: Duration,
    in_flight: HashSet<String>,
    /// Segments not in the archive (or failed, or no room for them), and when.
    missing: HashMap<String, Instant>,
    want: String,
    last_activity: Instant,
}

impl Scheduler {
    pub fn new(count: u32, segment_size: u32, idle_timeout: Duration, now: Instant) -> Scheduler {
        Scheduler {
            count,
            segment_size,
            idle_timeout,
            in_flight: HashSet::new(),
            missing: HashMap::new(),
            want: String::new(),
            last_activity: now,
        }
    }

    /// A fetch returned: a success is activity, a failure is retried later.
    pub fn finished(&mut self, now: Instant, name: &str, fetched: bool) {
        self.in_flight.remove(name);
        if fetched {
            self.last_activity = now;
        } else {
            self.missing.insert(name.to_string(), now);
        }
    }

    /// One scan: what to remove, what to fetch, and whether to go on. `Stop`, when it comes, is
    /// the last action.
    pub fn step(&mut self, seen: &Observation) -> Vec<Action> {
        let now = seen.now;
        if seen.want != self.want {
            self.want = seen.want.clone();
            self.last_activity = now;
        }
        let targets = next_segments(&self.want, self.count, self.segment_size);
        let mut actions = Vec::new();
        // Anything else in the spool is behind recovery, or a guess for another timeline.
        for entry in &seen.spool {
            if entry != WANT && !targets.contains(entry) && !self.in_flight.contains(entry) {
                actions.push(Action::Remove(entry.clone()));
            }
        }
        for t in &targets {
            let recently_missing = self
                .missing
                .get(t)
                .is_some_and(|at| now.saturating_duration_since(*at) < MISSING_RETRY);
            if self.in_flight.contains(t) || recently_missing || seen.spool.contains(t) {
                continue;
            }
            if !self.room_for_one_more(seen.free_bytes) {
                self.missing.insert(t.clone(), now);
                break;
            }
            self.in_flight.insert(t.clone());
            actions.push(Action::Fetch(t.clone()));
        }
        // Idle: recovery asked for nothing new and nothing arrived. Retrying segments that are
        // not in the archive yet (a standby at its end) does not count as work.
        if now.saturating_duration_since(self.last_activity) >= self.idle_timeout || !seen.owns_lock
        {
            actions.push(Action::Stop);
        } else {
            actions.push(Action::Wait(SCAN_INTERVAL));
        }
        actions
    }

    /// Is there room for one more prefetched segment beside those in flight (which have not
    /// taken their space yet), and still two segments' room for what recovery asks for itself?
    fn room_for_one_more(&self, free_bytes: Option<u64>) -> bool {
        match free_bytes {
            Some(free) => free >= u64::from(self.segment_size) * (self.in_flight.len() as u64 + 3),
            None => true,
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

#[cfg(test)]
mod tests;
