use super::*;
use crate::pg::walname::segment_name;

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

const SEG: u32 = 16 << 20;
const MS: Duration = Duration::from_millis(1);

fn seen(now: Instant, want: &str, spool: &[&str], free_segments: u64) -> Observation {
    Observation {
        now,
        want: want.to_string(),
        spool: spool.iter().map(|s| s.to_string()).collect(),
        free_bytes: Some(free_segments * u64::from(SEG)),
        owns_lock: true,
    }
}

fn fetches(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fetch(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn fetches_the_segments_after_the_one_asked_for_and_removes_what_recovery_passed() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(3, SEG, Duration::from_secs(60), t0);
    let want = segment_name(1, 10, SEG);
    let next = next_segments(&want, 3, SEG);
    assert_eq!(fetches(&s.step(&seen(t0, &want, &[WANT], 100))), next);
    for n in &next {
        s.finished(t0 + MS, n, true);
    }
    // recovery moves on by one: the one it took is gone, the passed one and a stray go
    let want2 = next[0].clone();
    let stray = segment_name(2, 11, SEG);
    let actions = s.step(&seen(
        t0 + 2 * MS,
        &want2,
        &[WANT, &next[1], &next[2], &want, &stray],
        100,
    ));
    assert_eq!(
        actions,
        [
            Action::Remove(want.clone()),
            Action::Remove(stray),
            Action::Fetch(segment_name(1, 14, SEG)),
            Action::Wait(SCAN_INTERVAL),
        ]
    );
}

#[test]
fn regression_prefetch_leaves_two_segments_of_room_in_pg_wal_for_recovery() {
    // fde8bb2, the full-pg_wal drill: prefetched segments took the space back as soon as it
    // returned, and the segment recovery asked for failed with ENOSPC for ever.
    let t0 = Instant::now();
    let mut s = Scheduler::new(8, SEG, Duration::from_secs(60), t0);
    let want = segment_name(1, 10, SEG);
    // room for 5: three fetched, two kept free
    assert_eq!(fetches(&s.step(&seen(t0, &want, &[WANT], 5))).len(), 3);
    // the first one that found no room is not asked for at every scan
    assert!(fetches(&s.step(&seen(t0 + MS, &want, &[WANT], 5))).is_empty());
    let mut s = Scheduler::new(8, SEG, Duration::from_secs(60), t0);
    assert!(fetches(&s.step(&seen(t0, &want, &[WANT], 2))).is_empty());
    // free space unknown: fetched
    let mut o = seen(t0, &want, &[WANT], 0);
    o.free_bytes = None;
    let mut s = Scheduler::new(2, SEG, Duration::from_secs(60), t0);
    assert_eq!(fetches(&s.step(&o)).len(), 2);
}

#[test]
fn a_missing_segment_is_asked_for_again_after_a_while_and_retries_are_not_activity() {
    let t0 = Instant::now();
    let idle = Duration::from_secs(5);
    let mut s = Scheduler::new(1, SEG, idle, t0);
    let want = segment_name(1, 10, SEG);
    let next = next_segments(&want, 1, SEG);
    assert_eq!(fetches(&s.step(&seen(t0, &want, &[WANT], 100))), next);
    s.finished(t0 + MS, &next[0], false);
    assert!(fetches(&s.step(&seen(t0 + MISSING_RETRY, &want, &[WANT], 100))).is_empty());
    let later = t0 + MS + MISSING_RETRY;
    assert_eq!(fetches(&s.step(&seen(later, &want, &[WANT], 100))), next);
    s.finished(later, &next[0], false);
    // the standby is at the end of the archive: the worker stops once idle
    let actions = s.step(&seen(t0 + idle, &want, &[WANT], 100));
    assert_eq!(actions.last(), Some(&Action::Stop));
    // and when its spool is no longer its own
    let mut s = Scheduler::new(1, SEG, idle, t0);
    let mut o = seen(t0, &want, &[WANT], 100);
    o.owns_lock = false;
    assert_eq!(s.step(&o).last(), Some(&Action::Stop));
}

// The property test. The world: a pg_wal of random size with PostgreSQL's own WAL in it, and the
// one segment recovery is replaying; an archive that grows (a standby near its end); recovery
// asking for the next segment (sometimes jumping to a new timeline), taking it from the spool
// when it is there and fetching it itself otherwise; fetches that take random time and may
// fail.

struct World {
    rng: crate::schedule::Rng,
    now: Instant,
    /// Segments up to this number are archived (on every timeline).
    archive_end: u64,
    timeline: u32,
    segno: u64,
    spooled: std::collections::BTreeSet<String>,
    /// (name, done at)
    jobs: Vec<(String, Instant)>,
    /// pg_wal's size and what PostgreSQL's own WAL and the segment replayed take, in segments.
    capacity: u64,
    own: u64,
    served: u64,
}

impl World {
    fn want(&self) -> String {
        segment_name(self.timeline, self.segno, SEG)
    }

    fn free(&self) -> u64 {
        self.capacity - self.own - self.spooled.len() as u64
    }

    fn observe(&self) -> Observation {
        let mut spool: Vec<String> = self.spooled.iter().cloned().collect();
        spool.push(WANT.to_string());
        Observation {
            now: self.now,
            want: self.want(),
            spool,
            free_bytes: Some(self.free() * u64::from(SEG)),
            owns_lock: true,
        }
    }

    fn archived(&self, name: &str) -> bool {
        WalFileName::parse(name)
            .unwrap()
            .segment_number(SEG)
            .unwrap()
            <= self.archive_end
    }

    fn returned_fetches(&mut self, s: &mut Scheduler, ctx: &str, floor: u64) {
        self.jobs.sort_by_key(|j| j.1);
        while self.jobs.first().is_some_and(|j| j.1 <= self.now) {
            let (name, _) = self.jobs.remove(0);
            let ok = self.archived(&name) && !self.rng.chance(5);
            if ok {
                self.spooled.insert(name.clone());
                assert!(self.free() >= floor, "{ctx}: {name} filled pg_wal");
            }
            s.finished(self.now, &name, ok);
        }
    }

    /// Recovery replays its segment and asks for the next one.
    fn recovery(&mut self, ctx: &str) {
        if self.rng.chance(20) {
            self.archive_end += 1 + self.rng.below(3);
        }
        if !self.rng.chance(40) {
            return;
        }
        if self.rng.chance(3) {
            self.timeline += 1;
        }
        let next = segment_name(self.timeline, self.segno + 1, SEG);
        if self.spooled.remove(&next) {
            self.served += 1;
        } else if self.archived(&next) {
            // fetched by the call itself, beside the one being replayed
            assert!(
                self.free() >= 1,
                "{ctx}: no room for {next}, which recovery asks for"
            );
        } else {
            return; // not archived yet: asked again later
        }
        self.segno += 1;
    }
}

#[test]
fn property_prefetch_fetches_only_what_recovery_will_ask_for_and_never_fills_pg_wal() {
    let t0 = Instant::now();
    let mut seeds = crate::schedule::Rng(0x5eed_f37c_0000_0001);
    let mut served = 0;
    for case in 0..300 {
        let seed = seeds.next();
        let mut rng = crate::schedule::Rng(seed);
        let count = 1 + rng.below(10) as u32;
        let capacity = 2 + rng.below(20);
        let own = 1 + rng.below(capacity - 1);
        let segno = 10 + rng.below(100);
        let mut w = World {
            rng,
            now: t0,
            archive_end: segno + 5,
            timeline: 1,
            segno,
            spooled: Default::default(),
            jobs: Vec::new(),
            capacity,
            own,
            served: 0,
        };
        // prefetching never takes pg_wal below two free segments, or below what it had
        let floor = w.free().min(2);
        let mut s = Scheduler::new(count, SEG, Duration::from_secs(3600), t0);
        for round in 0..300 {
            let ctx = format!("case {case} (seed {seed:#x}) round {round}");
            w.returned_fetches(&mut s, &ctx, floor);
            w.recovery(&ctx);
            let o = w.observe();
            let targets = next_segments(&o.want, count, SEG);
            let actions = s.step(&o);
            for a in &actions {
                match a {
                    Action::Fetch(n) => {
                        assert!(
                            targets.contains(n),
                            "{ctx}: fetched {n}, not asked for next"
                        );
                        assert!(!w.spooled.contains(n), "{ctx}: {n} is spooled");
                        assert!(w.jobs.iter().all(|j| &j.0 != n), "{ctx}: {n} twice");
                        let done = w.now + Duration::from_millis(w.rng.below(300));
                        w.jobs.push((n.clone(), done));
                    }
                    Action::Remove(e) => {
                        assert!(e != WANT && !targets.contains(e), "{ctx}: removed {e}");
                        assert!(w.jobs.iter().all(|j| &j.0 != e), "{ctx}: {e} in flight");
                        w.spooled.remove(e);
                    }
                    Action::Wait(d) => w.now += *d,
                    Action::Stop => panic!("{ctx}: stopped"),
                }
            }
            // what is in flight lands within the bound
            let landing = w.jobs.len() as u64;
            assert!(
                fetches(&actions).is_empty() || w.free() >= landing + 2,
                "{ctx}: {landing} in flight with {} segments free",
                w.free()
            );
            w.now += Duration::from_millis(w.rng.below(100)) + MS;
        }
        served += w.served;
    }
    assert!(served > 5_000, "{served}");
}
