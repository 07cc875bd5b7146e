//! The push-ahead scheduler: the edge cases earlier fixes addressed.

use super::*;

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
