//! The push-ahead scheduler: the edge cases earlier fixes addressed, then a property test that
//! runs it against a simulated PostgreSQL archiver, pool and spool with random timing.

use super::*;
use crate::schedule::Rng;
use std::collections::{BTreeMap, BTreeSet};

fn seg(n: u64) -> String {
    format!("0000000100000000{n:08X}")
}

fn wal(n: &str) -> WalFileName {
    WalFileName::parse(n).unwrap()
}

fn seen(now: Instant, ready: &[&str], spool: &[&str]) -> Observation {
    Observation {
        now,
        ready: Ok(ready.iter().map(|n| wal(n)).collect()),
        spool: spool.iter().map(|s| s.to_string()).collect(),
        owns_lock: true,
        superseded: false,
    }
}

fn pushes(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Push(n) => Some(n.as_str().to_string()),
            _ => None,
        })
        .collect()
}

fn stop(actions: &[Action]) -> Option<&Stop> {
    match actions.last() {
        Some(Action::Stop(s)) => Some(s),
        _ => None,
    }
}

const MS: Duration = Duration::from_millis(1);

/// One file pushed and acknowledged as done at `t0`; its `.ok` in the spool.
fn pushed_and_acked(t0: Instant, name: &str) -> Scheduler {
    let mut s = Scheduler::new(2, Duration::from_secs(60), t0);
    assert_eq!(pushes(&s.step(&seen(t0, &[name], &[]))), [name]);
    s.acknowledged(t0, name, AckWritten::Done);
    let ok = format!("{name}.ok");
    assert!(pushes(&s.step(&seen(t0, &[name], &[&ok]))).is_empty());
    s
}

#[test]
fn pushes_oldest_first_and_keeps_the_queue_at_twice_the_threads() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(2, Duration::from_secs(60), t0);
    let names: Vec<String> = (1..=9).map(seg).collect();
    let ready: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(pushes(&s.step(&seen(t0, &ready, &[]))), &names[..4]);
    // nothing more while four are in flight
    assert!(pushes(&s.step(&seen(t0 + MS, &ready, &[]))).is_empty());
    s.acknowledged(t0 + MS, &names[0], AckWritten::Done);
    let ok = format!("{}.ok", names[0]);
    assert_eq!(
        pushes(&s.step(&seen(t0 + 2 * MS, &ready, &[&ok]))),
        [names[4].as_str()]
    );
}

#[test]
fn regression_a_just_taken_file_is_not_pushed_again_while_its_ready_lingers() {
    // 2a0b846: between a call taking its acknowledgement and PostgreSQL's rename, the worker saw
    // the .ready without an acknowledgement and hashed the file again.
    let t0 = Instant::now();
    let x = seg(1);
    let mut s = pushed_and_acked(t0, &x);
    let taken = t0 + 100 * MS;
    assert!(pushes(&s.step(&seen(taken, &[&x], &[]))).is_empty());
    assert!(pushes(&s.step(&seen(taken + ACK_TAKEN_GRACE - MS, &[&x], &[]))).is_empty());
    // PostgreSQL never renamed it (restarted?): pushed again so that its next call is answered
    assert_eq!(
        pushes(&s.step(&seen(taken + ACK_TAKEN_GRACE, &[&x], &[]))),
        [x]
    );
}

#[test]
fn regression_the_grace_runs_from_the_take_the_worker_saw_not_from_the_push() {
    // 8cfe073: in a backlog an acknowledgement waits longer than the grace for its call; the
    // grace ran from the push, so the file was pushed again right after its take.
    let t0 = Instant::now();
    let x = seg(1);
    let ok = format!("{x}.ok");
    let mut s = pushed_and_acked(t0, &x);
    assert!(pushes(&s.step(&seen(t0 + 5 * ACK_TAKEN_GRACE, &[&x], &[&ok]))).is_empty());
    let taken = t0 + 6 * ACK_TAKEN_GRACE;
    assert!(pushes(&s.step(&seen(taken, &[&x], &[]))).is_empty());
    assert!(pushes(&s.step(&seen(taken + ACK_TAKEN_GRACE / 2, &[&x], &[]))).is_empty());
}

#[test]
fn regression_an_untaken_acknowledgement_whose_ready_vanished_stops_the_worker() {
    // 2a0b846: after archive_command moved to another repository the worker pushed every new
    // file into the old one for as long as WAL came.
    let t0 = Instant::now();
    let (x, y) = (seg(1), seg(2));
    let ok = format!("{x}.ok");
    let mut s = pushed_and_acked(t0, &x);
    let actions = s.step(&seen(t0 + MS, &[&y], &[&ok]));
    assert!(pushes(&actions).is_empty(), "{actions:?}");
    assert!(actions.contains(&Action::RemoveAck(ok.clone())));
    assert_eq!(stop(&actions), Some(&Stop::ArchivedElsewhere(x)));
}

#[test]
fn regression_a_re_push_after_a_take_is_never_read_as_archiving_elsewhere() {
    // 8cfe073: a file pushed again after its take (a rename slower than the grace) got a second
    // acknowledgement that rightly stayed untaken, and the worker stopped.
    let t0 = Instant::now();
    let x = seg(1);
    let ok = format!("{x}.ok");
    let mut s = pushed_and_acked(t0, &x);
    s.step(&seen(t0 + MS, &[&x], &[])); // taken
    let again = t0 + MS + ACK_TAKEN_GRACE;
    assert_eq!(pushes(&s.step(&seen(again, &[&x], &[]))), vec![x.clone()]);
    s.acknowledged(again, &x, AckWritten::Done);
    let actions = s.step(&seen(again + MS, &[], &[&ok]));
    assert_eq!(
        actions,
        [Action::RemoveAck(ok), Action::Wait(SCAN_INTERVAL)]
    );
}

#[test]
fn regression_a_rename_while_the_file_is_pushed_again_is_not_read_as_archiving_elsewhere() {
    // Found by the property test below: PostgreSQL renamed the .ready later than the grace after
    // the take, the worker had pushed the file again by then, and the rename came while that push
    // was running. The worker forgot the take with the .ready, the push's acknowledgement then
    // looked like one PostgreSQL had archived past, and the worker stopped, logging that
    // archive_command had moved.
    let t0 = Instant::now();
    let x = seg(1);
    let ok = format!("{x}.ok");
    let mut s = pushed_and_acked(t0, &x);
    s.step(&seen(t0 + MS, &[&x], &[])); // taken
    let again = t0 + MS + ACK_TAKEN_GRACE;
    assert_eq!(pushes(&s.step(&seen(again, &[&x], &[]))), vec![x.clone()]);
    // renamed while the push runs
    assert_eq!(
        s.step(&seen(again + MS, &[], &[])),
        [Action::Wait(SCAN_INTERVAL)]
    );
    s.acknowledged(again + 2 * MS, &x, AckWritten::Done);
    assert_eq!(
        s.step(&seen(again + 3 * MS, &[], &[&ok])),
        [Action::RemoveAck(ok), Action::Wait(SCAN_INTERVAL)]
    );
    // a first push of a file archived elsewhere meanwhile still stops the worker
    let y = seg(2);
    let y_ok = format!("{y}.ok");
    let later = again + 10 * MS;
    assert_eq!(pushes(&s.step(&seen(later, &[&y], &[]))), vec![y.clone()]);
    s.step(&seen(later + MS, &[], &[]));
    s.acknowledged(later + 2 * MS, &y, AckWritten::Done);
    let actions = s.step(&seen(later + 3 * MS, &[], &[&y_ok]));
    assert_eq!(stop(&actions), Some(&Stop::ArchivedElsewhere(y)));
}

#[test]
fn regression_an_unreadable_archive_status_stops_the_worker_and_removes_nothing() {
    // 8cfe073: a failed read looked like "no .ready files", which made every acknowledgement
    // look untaken.
    let t0 = Instant::now();
    let x = seg(1);
    let mut s = pushed_and_acked(t0, &x);
    let mut o = seen(t0 + MS, &[], &[&format!("{x}.ok")]);
    o.ready = Err("permission denied".into());
    assert_eq!(
        s.step(&o),
        [Action::Stop(Stop::ArchiveStatusUnreadable(
            "permission denied".into()
        ))]
    );
}

#[test]
fn a_taken_error_is_pushed_again_at_once_and_an_unwritten_acknowledgement_after_a_while() {
    let t0 = Instant::now();
    let (x, y) = (seg(1), seg(2));
    let mut s = Scheduler::new(2, Duration::from_secs(60), t0);
    assert_eq!(
        pushes(&s.step(&seen(t0, &[&x, &y], &[]))),
        vec![x.clone(), y.clone()]
    );
    s.acknowledged(t0, &x, AckWritten::Failed);
    s.acknowledged(t0, &y, AckWritten::No);
    // the call took x's error; y's acknowledgement could not be written
    assert_eq!(
        pushes(&s.step(&seen(t0 + MS, &[&x, &y], &[]))),
        vec![x.clone()]
    );
    s.acknowledged(t0 + MS, &x, AckWritten::Failed);
    let err = format!("{x}.error");
    assert!(pushes(&s.step(&seen(t0 + ACK_RETRY - MS, &[&x, &y], &[&err]))).is_empty());
    assert_eq!(
        pushes(&s.step(&seen(t0 + ACK_RETRY, &[&x, &y], &[&err]))),
        vec![y.clone()]
    );
}

#[test]
fn scans_less_often_after_a_quiet_second_and_stops_when_idle() {
    // 46c34a3: scanning archive_status 100 times a second between segments cost 2 % of a core.
    let t0 = Instant::now();
    let idle = Duration::from_secs(5);
    let mut s = Scheduler::new(1, idle, t0);
    assert_eq!(s.step(&seen(t0, &[], &[])), [Action::Wait(SCAN_INTERVAL)]);
    assert_eq!(
        s.step(&seen(t0 + QUIET_AFTER, &[], &[])),
        [Action::Wait(QUIET_SCAN_INTERVAL)]
    );
    assert_eq!(
        s.step(&seen(t0 + idle, &[], &[])),
        [Action::Stop(Stop::Idle)]
    );
}

#[test]
fn regression_a_superseded_worker_or_one_whose_spool_was_replaced_stops() {
    // 089cbff: after archive_command was switched to another configuration the previous
    // worker went on pushing into the previous repository.
    let t0 = Instant::now();
    let mut s = Scheduler::new(1, Duration::from_secs(60), t0);
    let mut o = seen(t0, &[], &[]);
    o.superseded = true;
    assert_eq!(s.step(&o), [Action::Stop(Stop::Superseded)]);
    o.owns_lock = false;
    assert_eq!(s.step(&o), [Action::Stop(Stop::LostLock)]);
}

// The property test. The world: PostgreSQL adds segments to archive_status; its archiver calls
// archive_command for the oldest `.ready` file, one at a time. A call takes the worker's
// acknowledgement when there is one (waiting for it otherwise: a call that gives up and pushes
// itself is archiving elsewhere as far as the worker can tell), and PostgreSQL renames the
// `.ready` some time after the call returned, sometimes later than the grace. Part way through,
// archive_command may move to another repository: from then on calls ignore the worker. Pushes
// take random time and may fail; writing an acknowledgement may fail.

struct Job {
    name: String,
    done_at: Instant,
    fails: bool,
}

/// The archiver's call for one file.
struct Call {
    name: String,
    /// When the call returned 0 (took an ok acknowledgement, or archived elsewhere), and when
    /// PostgreSQL renames the `.ready`.
    returned: Option<(Instant, Instant)>,
}

struct World {
    rng: Rng,
    now: Instant,
    ready: BTreeSet<String>,
    next_segment: u64,
    spool: BTreeSet<String>,
    /// Durable in the worker's repository.
    durable: BTreeSet<String>,
    jobs: Vec<Job>,
    call: Option<Call>,
    elsewhere: bool,
    /// Files an acknowledgement of which a call took.
    taken: BTreeSet<String>,
    /// Files whose done acknowledgement a call took since they were last pushed.
    ok_taken: BTreeSet<String>,
    /// The first scan after such a take that still saw the `.ready`: the grace runs from there.
    take_seen: BTreeMap<String, Instant>,
    /// Calls that returned 0 having taken the worker's acknowledgement.
    answered: u64,
    /// A file PostgreSQL marked archived elsewhere while the worker's acknowledgement for it
    /// waited untaken: the worker must stop at its next scan.
    must_stop: Option<String>,
}

impl World {
    fn new(seed: u64, t0: Instant) -> World {
        let mut w = World {
            rng: Rng(seed),
            now: t0,
            ready: BTreeSet::new(),
            next_segment: 1,
            spool: BTreeSet::new(),
            durable: BTreeSet::new(),
            jobs: Vec::new(),
            call: None,
            elsewhere: false,
            taken: BTreeSet::new(),
            ok_taken: BTreeSet::new(),
            take_seen: BTreeMap::new(),
            answered: 0,
            must_stop: None,
        };
        let backlog = w.rng.below(20);
        for _ in 0..backlog {
            w.new_segment();
        }
        w
    }

    fn new_segment(&mut self) {
        self.ready.insert(seg(self.next_segment));
        self.next_segment += 1;
    }

    fn has_ack(&self, name: &str) -> bool {
        self.spool.contains(&format!("{name}.ok")) || self.spool.contains(&format!("{name}.error"))
    }

    /// Pushes that returned by now, in the order they returned: what `push_one` leaves in the
    /// spool, reported to the scheduler as the loop does.
    fn returned_pushes(&mut self, s: &mut Scheduler, ctx: &str) {
        self.jobs.sort_by_key(|j| j.done_at);
        while self.jobs.first().is_some_and(|j| j.done_at <= self.now) {
            let job = self.jobs.remove(0);
            if !job.fails {
                self.durable.insert(job.name.clone()); // push_file returned
            }
            let ack = if self.rng.chance(5) {
                AckWritten::No
            } else if job.fails {
                self.spool.insert(format!("{}.error", job.name));
                AckWritten::Failed
            } else {
                self.spool.remove(&format!("{}.error", job.name));
                self.spool.insert(format!("{}.ok", job.name));
                AckWritten::Done
            };
            s.acknowledged(self.now, &job.name, ack);
        }
        for entry in &self.spool {
            if let Some(n) = entry.strip_suffix(".ok") {
                assert!(self.durable.contains(n), "{ctx}: {entry} before durable");
            }
        }
    }

    /// PostgreSQL: new WAL, the archiver's calls and renames.
    fn postgres(&mut self, ctx: &str) {
        if self.rng.chance(30) {
            self.new_segment();
        }
        if self.call.is_none()
            && let Some(oldest) = self.ready.first()
        {
            self.call = Some(Call {
                name: oldest.clone(),
                returned: None,
            });
        }
        let Some(call) = &mut self.call else {
            return;
        };
        let name = call.name.clone();
        match call.returned {
            Some((_, rename_at)) if rename_at <= self.now => {
                if self.elsewhere && self.has_ack(&name) && !self.taken.contains(&name) {
                    self.must_stop = Some(name.clone());
                }
                self.ready.remove(&name);
                self.call = None;
            }
            Some(_) => {}
            None if self.elsewhere => {
                // archived elsewhere: the call ignores the worker's acknowledgements
                let delay = Duration::from_millis(self.rng.below(3000));
                call.returned = Some((self.now, self.now + delay));
            }
            None => {
                let ok = format!("{name}.ok");
                let err = format!("{name}.error");
                if self.spool.remove(&ok) {
                    assert!(
                        self.durable.contains(&name),
                        "{ctx}: took {ok}, not durable"
                    );
                    self.taken.insert(name.clone());
                    self.ok_taken.insert(name.clone());
                    self.answered += 1;
                    // sometimes slower than the grace
                    let delay = Duration::from_millis(self.rng.below(4000));
                    call.returned = Some((self.now, self.now + delay));
                } else if self.spool.remove(&err) {
                    // the call fails; the archiver calls again later
                    self.taken.insert(name.clone());
                    self.call = None;
                }
            }
        }
    }

    fn observe(&mut self) -> Observation {
        for name in &self.ok_taken {
            if self.ready.contains(name) {
                self.take_seen.entry(name.clone()).or_insert(self.now);
            }
        }
        Observation {
            now: self.now,
            ready: Ok(self.ready.iter().map(|n| wal(n)).collect()),
            spool: self.spool.iter().cloned().collect(),
            owns_lock: true,
            superseded: false,
        }
    }

    /// Carry out one action of the scheduler's, checking it.
    fn carry_out(&mut self, a: &Action, ctx: &str) {
        match a {
            Action::Push(n) => {
                let n = n.as_str().to_string();
                assert!(self.ready.contains(&n), "{ctx}: pushed {n}, not .ready");
                assert!(
                    self.jobs.iter().all(|j| j.name != n),
                    "{ctx}: {n} pushed twice at once"
                );
                assert!(!self.has_ack(&n), "{ctx}: {n} pushed while its ack waits");
                self.ok_taken.remove(&n);
                if let Some(seen_at) = self.take_seen.remove(&n) {
                    assert!(
                        self.now.saturating_duration_since(seen_at) >= ACK_TAKEN_GRACE,
                        "{ctx}: {n} pushed again within the grace of its take"
                    );
                }
                let done_at = self.now + Duration::from_millis(self.rng.below(2500));
                let fails = self.rng.chance(10);
                self.jobs.push(Job {
                    name: n,
                    done_at,
                    fails,
                });
            }
            Action::RemoveAck(e) => {
                let n = e.trim_end_matches(".ok").trim_end_matches(".error");
                assert!(!self.ready.contains(n), "{ctx}: removed {e}, still wanted");
                self.spool.remove(e);
            }
            Action::Wait(d) => self.now += *d,
            Action::Stop(Stop::ArchivedElsewhere(n)) => {
                assert!(self.elsewhere, "{ctx}: false stop for {n}")
            }
            Action::Stop(why) => panic!("{ctx}: stopped: {why:?}"),
        }
    }
}

#[test]
fn property_pushes_only_what_postgresql_still_wants_and_stops_once_it_archives_elsewhere() {
    let t0 = Instant::now();
    let mut seeds = Rng(0x5eed_9a5b_0000_0001);
    let (mut answered, mut stopped) = (0, 0);
    for case in 0..300 {
        let seed = seeds.next();
        let mut w = World::new(seed, t0);
        let threads = 1 + w.rng.below(4) as u32;
        let switch_at = w.rng.chance(50).then(|| w.rng.below(300));
        let mut s = Scheduler::new(threads, Duration::from_secs(3600), t0);
        for round in 0..400u64 {
            let ctx = format!("case {case} (seed {seed:#x}) round {round}");
            if switch_at == Some(round) {
                w.elsewhere = true;
            }
            w.returned_pushes(&mut s, &ctx);
            w.postgres(&ctx);
            let o = w.observe();
            let must_stop = w.must_stop.take();
            let actions = s.step(&o);
            for a in &actions {
                w.carry_out(a, &ctx);
            }
            if let Some(n) = must_stop {
                assert!(
                    matches!(stop(&actions), Some(Stop::ArchivedElsewhere(_))),
                    "{ctx}: {n} archived elsewhere, and the worker goes on: {actions:?}"
                );
            }
            if stop(&actions).is_some() {
                stopped += 1;
                break;
            }
            w.now += Duration::from_millis(match w.rng.below(10) {
                0 => w.rng.below(3000),
                _ => w.rng.below(200),
            });
        }
        answered += w.answered;
    }
    // the cases did something: calls were answered, and workers saw archiving move
    assert!(answered > 5_000 && stopped > 100, "{answered} {stopped}");
}
