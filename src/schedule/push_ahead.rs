//! What the push-ahead worker does next, from what it sees (`commands::push_ahead` is the loop
//! around it).
//!
//! The worker pushes the `.ready` files of archive_status, oldest first, a few at a time, and
//! acknowledges each in the spool once its push returned (`.ok` once durable, `.error` with the
//! failure otherwise); the call PostgreSQL makes for the file takes the acknowledgement. The
//! rules, each kept by `step` and checked by the property test in `tests.rs`:
//!
//! - a file is acknowledged as done only after its push returned durable (`AckWritten`);
//! - a file is pushed only while archive_status says PostgreSQL still wants it archived;
//! - once PostgreSQL marks a file archived without taking this worker's acknowledgement for it,
//!   archive_command archives elsewhere (or stopped waiting for the worker): the worker stops
//!   and pushes nothing more;
//! - an acknowledgement a call took is not mistaken for that (a slow rename after the call);
//! - a file whose acknowledgement was just taken is not pushed again while PostgreSQL renames
//!   its `.ready` (`ACK_TAKEN_GRACE`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::pg::WalFileName;

/// How often the worker looks at archive_status when it has nothing in flight: often while WAL
/// flows (a call waits for the worker to notice its file), ...
pub const SCAN_INTERVAL: Duration = Duration::from_millis(10);
/// ... and less often once nothing has come for `QUIET_AFTER`: a worker on a primary that writes
/// a segment now and then lives on between them, and scanning a large archive_status 100 times a
/// second cost it 2 % of a core (measured: 39 ticks in 20 s with 65 entries). The first file
/// after a quiet spell waits at most this much longer.
pub const QUIET_SCAN_INTERVAL: Duration = Duration::from_millis(100);
pub const QUIET_AFTER: Duration = Duration::from_secs(1);
/// A file whose acknowledgement could not be written is pushed again after this long.
pub const ACK_RETRY: Duration = Duration::from_secs(10);
/// A file whose "done" acknowledgement was taken is not pushed again while its `.ready` lingers
/// this long after the worker noticed the take: a call takes its acknowledgement and exits 0, and
/// only then does PostgreSQL rename the `.ready` (after fsyncs, or after the next command of an
/// `A && B` archive_command). Pushing it again in between would hash the file once more for
/// nothing. After this long (PostgreSQL restarted before the rename? it retries?) the file is
/// pushed again, found already archived, so that the next call is answered.
pub const ACK_TAKEN_GRACE: Duration = Duration::from_secs(2);

/// What the worker sees at one scan. The loop reads archive_status before the spool: a call
/// takes its acknowledgement before it exits 0, and PostgreSQL removes the `.ready` only after
/// that, so an acknowledgement seen after its `.ready` vanished was not taken.
#[derive(Debug, Clone)]
pub struct Observation {
    pub now: Instant,
    /// The `.ready` files in the order PostgreSQL archives them, or why archive_status could not
    /// be read.
    pub ready: std::result::Result<Vec<WalFileName>, String>,
    /// The spool's entries (`Spool::entries`), read after archive_status.
    pub spool: Vec<String>,
    /// The worker still holds its spool's lock file (`Spool::still_owns`).
    pub owns_lock: bool,
    /// A call with another configuration has arrived (`Spool::superseded`).
    pub superseded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove this spool entry: an acknowledgement nobody will ask for (its `.ready` is gone).
    RemoveAck(String),
    /// Push this file (on a pool thread); report it with `acknowledged` when it returns.
    Push(WalFileName),
    /// Nothing more to do now: look again after this long, or as soon as a push returns.
    Wait(Duration),
    /// Stop the worker (the pushes under way finish and are acknowledged first).
    Stop(Stop),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// archive_status could not be read. Not "no `.ready` files": that would make every
    /// acknowledgement look untaken.
    ArchiveStatusUnreadable(String),
    /// This file was marked archived without taking the worker's acknowledgement.
    ArchivedElsewhere(String),
    /// Nothing to do for `worker_idle_timeout`.
    Idle,
    /// The spool's lock file is not the one this worker holds (the spool was removed).
    LostLock,
    /// archive_command now calls walship with another configuration.
    Superseded,
}

/// What a push that returned left in the spool for the call that asks for the file. The loop
/// writes an acknowledgement only from a returned push's result, so `Done` means durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckWritten {
    /// "Durable in the repository."
    Done,
    /// The error, for the call to report (the call is retried, so the file is pushed again).
    Failed,
    /// Nothing: the acknowledgement could not be written.
    No,
}

/// What the worker knows of a file it acknowledged, while the file's `.ready` is there.
#[derive(Debug, Clone)]
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

/// The push-ahead worker's state between scans.
#[derive(Debug)]
pub struct Scheduler {
    /// Pushes queued or running; at most twice the threads, so the oldest files always go first.
    queue_bound: usize,
    idle_timeout: Duration,
    in_flight: HashSet<String>,
    /// Files whose acknowledgement could not be written (pg_wal full?): not retried at once.
    unacked: HashMap<String, Instant>,
    /// Files this worker acknowledged whose `.ready` was still there at the last scan.
    acked: HashMap<String, Acked>,
    last_work: Instant,
}

impl Scheduler {
    pub fn new(threads: u32, idle_timeout: Duration, now: Instant) -> Scheduler {
        Scheduler {
            queue_bound: 2 * threads.max(1) as usize,
            idle_timeout,
            in_flight: HashSet::new(),
            unacked: HashMap::new(),
            acked: HashMap::new(),
            last_work: now,
        }
    }

    /// Pushes submitted and not yet `acknowledged`.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A push returned, and this is what its acknowledgement came to.
    pub fn acknowledged(&mut self, now: Instant, name: &str, ack: AckWritten) {
        self.in_flight.remove(name);
        let done = match ack {
            AckWritten::Done => true,
            AckWritten::Failed => false,
            AckWritten::No => {
                self.unacked.insert(name.to_string(), now);
                return;
            }
        };
        // A file pushed again keeps `taken_before`: its earlier acknowledgement was taken, so this
        // one may rightly stay untaken (see `Acked`).
        self.acked
            .entry(name.to_string())
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

    /// One scan: what to remove, what to push, and whether to go on. `Stop`, when it comes, is
    /// the last action.
    pub fn step(&mut self, seen: &Observation) -> Vec<Action> {
        let now = seen.now;
        self.unacked
            .retain(|_, at| now.saturating_duration_since(*at) < ACK_RETRY);
        let ready = match &seen.ready {
            Ok(ready) => ready,
            Err(e) => return vec![Action::Stop(Stop::ArchiveStatusUnreadable(e.clone()))],
        };
        let ready_names: HashSet<&str> = ready.iter().map(|n| n.as_str()).collect();
        let mut actions = Vec::new();
        // Acknowledgements still waiting for their call.
        let mut acks: HashSet<&str> = HashSet::new();
        let mut archived_elsewhere = None;
        for entry in &seen.spool {
            let Some(n) = entry
                .strip_suffix(".ok")
                .or_else(|| entry.strip_suffix(".error"))
            else {
                continue;
            };
            if ready_names.contains(n) || self.in_flight.contains(n) {
                acks.insert(n);
                continue;
            }
            // Its .ready is gone: nobody will ask for it again.
            if self.acked.get(n).is_some_and(|a| !a.taken_before) {
                archived_elsewhere = Some(n.to_string());
            }
            actions.push(Action::RemoveAck(entry.clone()));
        }
        // Forgotten once its `.ready` is gone, unless it is being pushed again: that push's
        // acknowledgement must still be known as one written after a take.
        let in_flight = &self.in_flight;
        self.acked
            .retain(|n, _| ready_names.contains(n.as_str()) || in_flight.contains(n));
        for (name, a) in self.acked.iter_mut() {
            if !acks.contains(name.as_str()) && !self.in_flight.contains(name) {
                a.taken_before = true;
                a.taken_at.get_or_insert(now);
            }
        }
        if let Some(name) = archived_elsewhere {
            actions.push(Action::Stop(Stop::ArchivedElsewhere(name)));
            return actions;
        }
        for name in ready {
            if self.in_flight.len() >= self.queue_bound {
                break;
            }
            if self.in_flight.contains(name.as_str())
                || self.unacked.contains_key(name.as_str())
                || acks.contains(name.as_str())
                || self.acked.get(name.as_str()).is_some_and(|a| {
                    a.done
                        && a.taken_at
                            .is_some_and(|at| now.saturating_duration_since(at) < ACK_TAKEN_GRACE)
                })
            {
                continue;
            }
            self.in_flight.insert(name.as_str().to_string());
            actions.push(Action::Push(name.clone()));
        }
        let idle = now.saturating_duration_since(self.last_work);
        if !self.in_flight.is_empty() {
            self.last_work = now;
        } else if idle >= self.idle_timeout {
            actions.push(Action::Stop(Stop::Idle));
            return actions;
        }
        if !seen.owns_lock {
            actions.push(Action::Stop(Stop::LostLock));
            return actions;
        }
        if seen.superseded {
            actions.push(Action::Stop(Stop::Superseded));
            return actions;
        }
        let interval = if now.saturating_duration_since(self.last_work) < QUIET_AFTER {
            SCAN_INTERVAL
        } else {
            QUIET_SCAN_INTERVAL
        };
        actions.push(Action::Wait(interval));
        actions
    }
}

#[cfg(test)]
mod tests;
