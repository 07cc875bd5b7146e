//! Automatic failover never makes two primaries and fails closed, on real PostgreSQL clusters:
//! two standbys with two watchers, health checks that get an answer from a live server, a
//! witness that lies or hangs, a standby that cannot replay the archive.

mod common;

use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::ha::*;
use common::*;
use walship::pg::cluster::{Cluster, wait_until};

fn sigterm(child: &mut Child) {
    // SAFETY: the PID of a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn in_recovery(c: &Cluster) -> bool {
    c.psql("SELECT pg_is_in_recovery()").unwrap() == "t"
}

/// What one cycle found.
struct Cycle {
    primaries: usize,
    rto: Duration,
    /// Rows committed in segments archived before the kill that the new primary lacks.
    lost: usize,
    /// The rows that check covered.
    checked: usize,
    /// The other standby followed the new primary (it replayed a row written after the failover).
    followed: bool,
    logs: String,
}

/// One cycle: a primary under pgbench with two streaming standbys, each with a watcher (the
/// second one's fence takes `slow_fence` seconds), the primary SIGKILLed.
fn two_standbys_one_primary(slow_fence: u64) -> Cycle {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let p = primary(&ws, &cfg);
    p.psql("CREATE TABLE ticks (id bigserial PRIMARY KEY)")
        .unwrap();
    let mut standbys = Vec::new();
    for name in ["s1", "s2"] {
        let mut s = standby_in(&ws, &p, &cfg, true, name);
        archive_once_promoted(&ws, &s, &cfg);
        s.start().unwrap();
        standbys.push(s);
    }
    let mut watchers = Vec::new();
    for (i, s) in standbys.iter().enumerate() {
        let fenced = ws.path().join(format!("fenced-{i}"));
        let fence = if i == 1 {
            format!("sleep {slow_fence}; touch {}", fenced.display())
        } else {
            format!("touch {}", fenced.display())
        };
        let log = ws.path().join(format!("watch-{i}.log"));
        watchers.push((
            spawn_failover_watch(
                &ws,
                &cfg,
                s,
                &p,
                2,
                &fence,
                fs::File::create(&log).unwrap().into(),
            ),
            log,
        ));
    }
    let (ticks, killed) = load_then_kill(&p, Duration::from_secs(3));
    let promoted = wait_until(TIMEOUT, "a watcher to promote its standby", || {
        Ok(standbys
            .iter()
            .any(|s| s.psql("SELECT pg_is_in_recovery()").ok().as_deref() == Some("f")))
    });
    let rto = killed.elapsed();
    // the slower watcher gets the time its fence needs, and more, to make its own decision
    std::thread::sleep(Duration::from_secs(slow_fence + 8));
    let primaries = standbys.iter().filter(|s| !in_recovery(s)).count();
    let mut logs = String::new();
    for (mut w, log) in watchers {
        if w.try_wait().unwrap().is_none() {
            sigterm(&mut w);
        }
        logs += &format!(
            "--- {}\n{}",
            log.display(),
            fs::read_to_string(&log).unwrap()
        );
    }
    promoted.unwrap_or_else(|e| panic!("{e}\n{logs}"));
    let (mut lost, mut checked, mut followed) = (0, 0, false);
    if let Some(winner) = standbys.iter().position(|s| !in_recovery(s)) {
        let (must, missing) =
            archived_rows_lost(&standbys[winner], &ticks, archived_end_of_timeline_1(&repo));
        (lost, checked) = (missing.len(), must.len());
        // the other standby follows the new timeline through the archive
        let new = &standbys[winner];
        new.psql("CREATE TABLE after_failover AS SELECT 1 AS x")
            .unwrap();
        new.psql("SELECT pg_switch_wal()").unwrap();
        let other = &standbys[1 - winner];
        followed = wait_until(
            Duration::from_secs(60),
            "the other standby to follow",
            || {
                Ok(other
                    .psql("SELECT count(*) FROM after_failover")
                    .is_ok_and(|n| n == "1"))
            },
        )
        .is_ok();
    }
    for mut s in standbys {
        s.stop().unwrap();
    }
    Cycle {
        primaries,
        rto,
        lost,
        checked,
        followed,
        logs,
    }
}

#[test]
fn regression_two_standbys_with_two_watchers_make_exactly_one_primary() {
    let cycles = if common::drill::full() { 20 } else { 1 };
    let mut good = 0;
    let mut worst = Duration::ZERO;
    let mut lost = 0;
    for cycle in 0..cycles {
        let c = two_standbys_one_primary(6);
        println!(
            "cycle {cycle}: {} primaries, RTO {:.1} s, {} of {} archived rows lost, other standby followed: {}",
            c.primaries,
            c.rto.as_secs_f64(),
            c.lost,
            c.checked,
            c.followed
        );
        let logs = &c.logs;
        assert_eq!(c.primaries, 1, "cycle {cycle}: two primaries\n{logs}");
        // the other watcher saw why it must not promote: the record, the newer timeline, or a
        // standby that replayed further
        assert!(
            logs.contains("not promoting") || logs.contains("not failing over"),
            "{logs}"
        );
        assert!(
            c.checked > 10,
            "too few archived rows to prove anything: {}",
            c.checked
        );
        assert_eq!(
            c.lost, 0,
            "cycle {cycle}: archived rows missing on the new primary\n{logs}"
        );
        assert!(
            c.followed,
            "cycle {cycle}: the other standby did not follow the new primary\n{logs}"
        );
        good += 1;
        lost += c.lost as u64;
        worst = worst.max(c.rto);
    }
    common::drill::report(
        "two standbys with two watchers, primary SIGKILLed under pgbench (one primary per cycle; rows lost)",
        cycles,
        good,
        lost,
    );
    println!("worst RTO {:.1} s", worst.as_secs_f64());
}

#[test]
fn regression_health_checks_and_the_witness_fail_closed() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let p = primary(&ws, &cfg);
    let mut s = standby(&ws, &p, &cfg, true);
    archive_once_promoted(&ws, &s, &cfg);
    s.start().unwrap();
    let fenced = ws.path().join("fenced");
    let fence = format!("touch {}", fenced.display());
    let watch = |cfg: &Path, primary: &str, witness: Option<&str>, secs: u64| -> String {
        let log = ws.path().join("watch.log");
        let mut c = walship_for(&ws, cfg, &s.data);
        c.args([
            "watch",
            "--failover-primary",
            primary,
            "--failover-after",
            "1",
        ])
        .args(["--fence-command", &fence]);
        if let Some(w) = witness {
            c.args(["--witness-command", w]);
        }
        let mut child = c.stderr(fs::File::create(&log).unwrap()).spawn().unwrap();
        std::thread::sleep(Duration::from_secs(secs));
        if child.try_wait().unwrap().is_none() {
            sigterm(&mut child);
        }
        fs::read_to_string(&log).unwrap()
    };

    // a live primary that refuses this role: the server answered, so it is alive
    let bad_role = format!(
        "host={} port={} user=no_such_role dbname=postgres",
        p.socket_dir.display(),
        p.port
    );
    let text = watch(&cfg, &bad_role, None, 5);
    assert!(
        text.contains("health is unknown") && text.contains("no_such_role"),
        "{text}"
    );
    assert!(!text.contains("does not answer"), "{text}");
    assert!(!fenced.exists(), "a live primary was fenced: {text}");
    assert!(in_recovery(&s));

    // the primary dies; the witness cannot give an answer: no failover, whatever it says
    let pid: i32 = fs::read_to_string(p.data.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: the PID of the test's own postmaster, read from its postmaster.pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let primary = conninfo(&p);
    let hanging = config_named(&ws, &repo, "hanging.toml", "hook_timeout = 1\n");
    for (cfg, witness, says) in [
        (&cfg, "exit 255", "the witness gave no answer (exit 255"),
        (&cfg, "exit 127", "the witness gave no answer (exit 127"),
        (
            &hanging,
            "sleep 30",
            "the witness gave no answer (timed out",
        ),
        (
            &cfg,
            "echo garbage; kill -9 $$",
            "the witness gave no answer (killed by a signal",
        ),
        (&cfg, "exit 0", "the witness still reaches the primary"),
    ] {
        let text = watch(cfg, &primary, Some(witness), 5);
        assert!(
            text.contains("the primary does not answer"),
            "{witness}: {text}"
        );
        assert!(text.contains(says), "{witness}: {text}");
        assert!(!fenced.exists(), "{witness}: fenced: {text}");
        assert!(in_recovery(&s), "{witness}: promoted: {text}");
    }

    // exit 1: the witness cannot reach the primary either: failover
    let log = ws.path().join("watch.log");
    let mut child = walship_for(&ws, &cfg, &s.data)
        .args([
            "watch",
            "--failover-primary",
            &primary,
            "--failover-after",
            "1",
        ])
        .args(["--fence-command", &fence, "--witness-command", "exit 1"])
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, TIMEOUT, "watch");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(fenced.exists(), "{text}");
    assert!(!in_recovery(&s), "{text}");
    s.stop().unwrap();
}

#[test]
fn regression_a_corrupt_segment_in_the_replay_range_stops_automatic_failover() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let refused = ws.path().join("refused");
    let cfg = config(
        &ws,
        &repo,
        &format!(
            "smart_timeout = 6\non_failover_refused = [\"echo \\\"$WALSHIP_REASON\\\" > {}\"]\n",
            refused.display()
        ),
    );
    let mut p = primary(&ws, &cfg);
    // the standby follows the archive only, and is not running while the primary works
    let mut s = standby(&ws, &p, &cfg, false);
    archive_once_promoted(&ws, &s, &cfg);
    p.psql("CREATE TABLE t (x int)").unwrap();
    for _ in 0..4 {
        p.pgbench(&["-n", "-t", "300"]).unwrap();
        p.switch_and_wait_archived(TIMEOUT).unwrap();
    }
    p.stop_mode("immediate").unwrap();
    // damage an archived segment in the middle of what the standby has to replay
    let mut segs: Vec<_> = names_below(&repo.join("wal"))
        .into_iter()
        .filter(|n| n.len() == 24 && n.starts_with("00000001"))
        .collect();
    segs.sort();
    let victim = segs[segs.len() - 2].clone();
    let path = repo.join("wal").join(&victim[..16]).join(&victim);
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xFF;
    fs::write(&path, bytes).unwrap();
    s.start().unwrap();

    let log = ws.path().join("watch.log");
    let fenced = ws.path().join("fenced");
    let mut watch = spawn_failover_watch(
        &ws,
        &cfg,
        &s,
        &p,
        1,
        &format!("touch {}", fenced.display()),
        fs::File::create(&log).unwrap().into(),
    );
    let started = Instant::now();
    wait_until(TIMEOUT, "the refusal hook", || Ok(refused.exists()))
        .unwrap_or_else(|e| panic!("{e}\n{}", fs::read_to_string(&log).unwrap()));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watcher keeps watching"
    );
    sigterm(&mut watch);
    let text = fs::read_to_string(&log).unwrap();
    println!(
        "refused after {:.1} s\n{text}",
        started.elapsed().as_secs_f64()
    );
    assert!(text.contains("automatic failover refused"), "{text}");
    assert!(
        text.contains("archived segments are not replayed"),
        "{text}"
    );
    let reason = fs::read_to_string(&refused).unwrap();
    assert!(reason.contains("not replayed"), "{reason}");
    assert!(
        in_recovery(&s),
        "a standby missing archived WAL was promoted: {text}"
    );
    // nothing was recorded: another standby that can replay everything may still be promoted
    assert!(
        !repo.join("promotions").exists()
            || fs::read_dir(repo.join("promotions"))
                .unwrap()
                .next()
                .is_none()
    );

    // a person is refused too, and told what is missing; --force promotes
    let (code, text) = output(walship_for(&ws, &cfg, &s.data).arg("promote"));
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("archived segments are not replayed") && text.contains("--force"),
        "{text}"
    );
    assert!(in_recovery(&s));
    let (code, text) = output(walship_for(&ws, &cfg, &s.data).args(["promote", "--force"]));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("promoting anyway (--force)"), "{text}");
    assert!(!in_recovery(&s));
    s.stop().unwrap();
}

#[test]
fn regression_watch_honours_pg_and_says_loudly_when_it_is_blind() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let mut p = primary(&ws, &cfg);
    let mut s = standby(&ws, &p, &cfg, true);
    s.start().unwrap();
    // an unsafe trigger path is refused at start
    let (code, text) = output(walship_for(&ws, &cfg, &s.data).args([
        "watch",
        "--trigger-file",
        "/tmp/pg_failover_trigger",
    ]));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("can be written by other users"), "{text}");

    // `pg` names a role the standby does not have: the watcher says it is blind, every time
    // it is asked, and does not obey the trigger file it cannot act on
    let trigger = ws.path().join("trigger");
    let log = ws.path().join("watch.log");
    let mut watch = walship_for(&ws, &cfg, &s.data)
        .arg("--pg")
        .arg(format!(
            "host={} port={} user=no_such_role dbname=postgres",
            s.socket_dir.display(),
            s.port
        ))
        .args(["watch", "--trigger-file"])
        .arg(&trigger)
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    fs::write(&trigger, "fast").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    sigterm(&mut watch);
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("this watcher is blind") && text.contains("no_such_role"),
        "{text}"
    );
    assert!(in_recovery(&s), "{text}");
    // status and check show the blind watcher from its heartbeat
    let (code, status) = output(walship_for(&ws, &cfg, &s.data).arg("status"));
    assert!(status.contains("blind"), "{code}: {status}");
    let (code, check) = output(walship_for(&ws, &cfg, &s.data).arg("check"));
    assert_eq!(code, 3, "{check}");
    assert!(
        check.contains("FAIL") && check.contains("is blind"),
        "{check}"
    );

    // with `pg` right (the harness's role), the trigger file promotes
    let mut watch = walship_for(&ws, &cfg, &s.data)
        .arg("--pg")
        .arg(conninfo(&s))
        .args(["watch", "--trigger-file"])
        .arg(&trigger)
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut watch, TIMEOUT, "watch");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(!in_recovery(&s), "{text}");
    s.stop().unwrap();
    p.stop().unwrap();
}
