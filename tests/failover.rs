//! Promotion, the trigger-file watcher, automatic failover and rejoin on real PostgreSQL 15
//! clusters on loopback. A primary archives through walship; a standby made from its base backup
//! restores through walship (and, for failover, also streams) and archives once promoted.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::ha::*;
use common::*;
use walship::pg::cluster::{Cluster, wait_until};

#[test]
fn a_trigger_file_promotes_smart_once_and_runs_the_hooks() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let hook_out = ws.path().join("hook-ran");
    let cfg = config(
        &ws,
        &repo,
        &format!(
            "hook_timeout = 1\non_promote = [\"echo timeline $WALSHIP_NEW_TIMELINE > {}\", \"sleep 60\", \"exit 7\"]\n",
            hook_out.display()
        ),
    );
    let mut p = primary(&ws, &cfg);
    let mut s = standby(&ws, &p, &cfg, false);
    archive_once_promoted(&ws, &s, &cfg);
    // load the standby has not seen: it is not running yet, and only the archive carries it
    p.pgbench(&["-n", "-t", "500"]).unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    let count = "SELECT count(*) FROM pgbench_history";
    assert_eq!(p.psql(count).unwrap(), "500");
    p.stop_mode("immediate").unwrap();
    s.start().unwrap();

    let trigger = ws.path().join("trigger");
    let log = ws.path().join("watch.log");
    let mut watch = walship_for(&ws, &cfg, &s.data)
        .args(["watch", "--trigger-file"])
        .arg(&trigger)
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    fs::write(&trigger, "smart\n").unwrap();
    let started = Instant::now();
    let code = wait_exit(&mut watch, TIMEOUT, "watch");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    println!(
        "trigger to promoted: {:.1} s\n{text}",
        started.elapsed().as_secs_f64()
    );

    // promoted: writes, timeline 2, every archived transaction replayed
    assert_eq!(s.psql("SELECT pg_is_in_recovery()").unwrap(), "f");
    s.psql("CREATE TABLE after_promotion (x int)").unwrap();
    assert!(
        s.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
            .unwrap()
            .starts_with("00000002")
    );
    assert_eq!(
        s.psql(count).unwrap(),
        "500",
        "smart promotion replayed the whole archive"
    );
    assert!(
        !trigger.exists(),
        "the trigger file is removed after promotion"
    );
    assert!(
        text.contains("smart promotion: every archived segment is replayed"),
        "{text}"
    );
    // the hooks: the first ran with the new timeline, the hanging one was killed, the failing
    // one was reported, and none of them undid the promotion
    assert_eq!(fs::read_to_string(&hook_out).unwrap().trim(), "timeline 2");
    assert!(
        text.contains("`sleep 60` timed out and was killed"),
        "{text}"
    );
    assert!(text.contains("`exit 7` exit 7"), "{text}");
    // the new timeline's history file reaches the archive, and the decision is recorded
    wait_until(TIMEOUT, "00000002.history in the archive", || {
        Ok(repo.join("wal/history/00000002.history").exists())
    })
    .unwrap();
    let record = fs::read_to_string(repo.join("promotions/00000002.toml")).unwrap();
    assert!(record.contains("reason = \"trigger file\""), "{record}");

    // a trigger file that appears a second time promotes nothing
    fs::write(&trigger, "fast").unwrap();
    let (code, text) = output(
        walship_for(&ws, &cfg, &s.data)
            .args(["watch", "--trigger-file"])
            .arg(&trigger),
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("already a primary; removed the trigger file"),
        "{text}"
    );
    assert!(!trigger.exists());
    assert!(
        s.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
            .unwrap()
            .starts_with("00000002")
    );
    // promote refuses on a primary
    let (code, text) = output(walship_for(&ws, &cfg, &s.data).arg("promote"));
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("already a primary"), "{text}");
    s.stop().unwrap();
}

#[test]
fn the_watcher_fails_over_when_the_primary_dies_and_the_old_primary_rejoins() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let p = primary(&ws, &cfg);
    p.psql("CREATE TABLE ticks (id bigserial PRIMARY KEY)")
        .unwrap();
    let mut s = standby(&ws, &p, &cfg, true);
    archive_once_promoted(&ws, &s, &cfg);
    s.start().unwrap();

    let fenced = ws.path().join("fenced");
    let log = ws.path().join("watch.log");
    let mut watch = spawn_failover_watch(
        &ws,
        &cfg,
        &s,
        &p,
        3,
        &format!("touch {}", fenced.display()),
        fs::File::create(&log).unwrap().into(),
    );

    // load: pgbench and numbered rows whose commit position we know; then SIGKILL the
    // postmaster
    let (ticks, killed) = load_then_kill(&p, Duration::from_secs(5));

    let code = wait_exit(&mut watch, TIMEOUT, "watch");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    wait_until(TIMEOUT, "the new primary to accept writes", || {
        Ok(s.psql("INSERT INTO ticks DEFAULT VALUES").is_ok())
    })
    .unwrap();
    let rto = killed.elapsed();
    println!(
        "failover: {} rows before the kill, RTO {:.1} s\n{text}",
        ticks.len(),
        rto.as_secs_f64()
    );
    assert!(
        fenced.exists(),
        "the fence command ran before the promotion: {text}"
    );
    assert!(rto < Duration::from_secs(60), "{rto:?}");
    assert!(
        s.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
            .unwrap()
            .starts_with("00000002")
    );

    // every row whose commit was in a segment archived before the kill is on the new primary
    let archived_end = archived_end_of_timeline_1(&repo);
    let (must, lost) = archived_rows_lost(&s, &ticks, archived_end);
    assert!(
        must.len() > 10,
        "too few archived rows to prove anything: {}",
        must.len()
    );
    assert!(
        lost.is_empty(),
        "rows archived before the kill are missing: {lost:?}"
    );
    // the old timeline's last segment reaches the archive as .partial, with the history file
    wait_until(
        TIMEOUT,
        "a .partial and 00000002.history in the archive",
        || {
            Ok(repo.join("wal/history/00000002.history").exists()
                && names_below(&repo.join("wal"))
                    .iter()
                    .any(|n| n.ends_with(".partial")))
        },
    )
    .unwrap_or_else(|e| {
        let log = fs::read_to_string(&s.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{e}; archive {:?}; standby log (last lines, newest first):\n{}",
            names_below(&repo.join("wal")),
            tail.join("\n")
        )
    });

    // rejoin: refused while the old primary runs (it does not: SIGKILLed); give its backends
    // a moment to notice that their postmaster is gone
    std::thread::sleep(Duration::from_secs(2));
    let (code, text) = output(
        walship_for(&ws, &cfg, &p.data)
            .args(["rejoin", "--stream", "--primary"])
            .arg(conninfo(&s)),
    );
    assert_eq!(code, 0, "{text}");
    println!("{text}");
    let mut old = Cluster::existing(&ws.tools, &p.data, p.port).unwrap();
    // Regression: pg_rewind copies the new primary's configuration files (its port, its socket
    // directory); rejoin puts the server's own back, so it starts on its own port unedited.
    old.start()
        .unwrap_or_else(|e| panic!("{e}\n{}", fs::read_to_string(&old.log).unwrap_or_default()));
    let (code, text) = output(
        walship_for(&ws, &cfg, &p.data)
            .args(["rejoin", "--primary"])
            .arg(conninfo(&s)),
    );
    assert_eq!(code, 4, "rejoin refuses a running server: {text}");
    assert_eq!(old.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
    s.pgbench(&["-n", "-t", "200"]).unwrap();
    let q = "SELECT (SELECT count(*) FROM ticks) || ' ' || (SELECT count(*) FROM pgbench_history)";
    let expected = s.psql(q).unwrap();
    wait_until(TIMEOUT, "the old primary to follow the new one", || {
        Ok(old.psql(q).map(|g| g == expected).unwrap_or(false))
    })
    .unwrap_or_else(|e| panic!("{e}; log {}", old.log.display()));
    old.stop().unwrap();
    s.stop().unwrap();
}

#[test]
fn no_failover_while_the_primary_comes_back_no_second_primary_and_a_restarted_watcher_finishes() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let mut p = primary(&ws, &cfg);
    let mut s = standby(&ws, &p, &cfg, true);
    s.start().unwrap();
    let fenced = ws.path().join("fenced");
    let log = ws.path().join("watch.log");
    let mut watch = spawn_failover_watch(
        &ws,
        &cfg,
        &s,
        &p,
        5,
        &format!("touch {}", fenced.display()),
        fs::File::create(&log).unwrap().into(),
    );
    // the primary goes away for two seconds and comes back
    std::thread::sleep(Duration::from_millis(1500));
    p.stop().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    p.start().unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watcher goes on watching"
    );
    unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
    let _ = watch.wait();
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("the primary does not answer"), "{text}");
    assert!(
        text.contains("the primary answers again; no failover"),
        "{text}"
    );
    assert!(!fenced.exists(), "nothing was fenced: {text}");
    assert_eq!(s.psql("SELECT pg_is_in_recovery()").unwrap(), "t");

    // another node already decided the promotion to timeline 2 (a record of the earlier
    // format, named after the new timeline): this standby must not follow
    fs::create_dir_all(repo.join("promotions")).unwrap();
    fs::write(
        repo.join("promotions/00000002.toml"),
        "new_timeline = 2\nhost = \"elsewhere\"\npgdata = \"/srv/pg\"\nreason = \"automatic failover\"\ndecided_at = 1\n",
    )
    .unwrap();
    // the repository is the PostgreSQL user's, as promote (which becomes that user) finds it
    ws.tools.chown(&repo.join("promotions")).unwrap();
    ws.tools
        .chown(&repo.join("promotions/00000002.toml"))
        .unwrap();
    p.stop().unwrap();
    let (code, text) = output(walship_for(&ws, &cfg, &s.data).args(["promote", "--fast"]));
    assert_eq!(code, 4, "{text}");
    assert!(
        text.contains(
            "/srv/pg on elsewhere (automatic failover) already decided a promotion off timeline 1"
        ),
        "{text}"
    );
    assert_eq!(
        s.psql("SELECT pg_is_in_recovery()").unwrap(),
        "t",
        "still a standby"
    );

    // a watcher killed after recording its decision and before promoting: the record is its
    // own (this data directory's node id), so the restarted watcher goes on and promotes
    fs::remove_file(repo.join("promotions/00000002.toml")).unwrap();
    let node_id = fs::read_to_string(s.data.join("pg_wal/walship/node-id")).unwrap();
    let node_id = node_id.lines().next().unwrap();
    fs::write(
        repo.join("promotions/off-00000001.toml"),
        format!(
            "new_timeline = 2\nfrom_timeline = 1\nnode_id = \"{node_id}\"\nhost = \"{}\"\npgdata = \"{}\"\nreason = \"trigger file\"\ndecided_at = 1\n",
            walship::os::hostname(),
            s.data.display()
        ),
    )
    .unwrap();
    let trigger = ws.path().join("trigger");
    fs::write(&trigger, "fast").unwrap();
    let (code, text) = output(
        walship_for(&ws, &cfg, &s.data)
            .args(["watch", "--trigger-file"])
            .arg(&trigger),
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("was decided here before; going on"), "{text}");
    assert!(text.contains("fast promotion"), "{text}");
    assert_eq!(s.psql("SELECT pg_is_in_recovery()").unwrap(), "f");
    assert!(!trigger.exists());
    s.stop().unwrap();
}

#[test]
fn switchover_swaps_the_roles_without_losing_a_row() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let mut p = primary(&ws, &cfg);
    let mut s = standby(&ws, &p, &cfg, true);
    archive_once_promoted(&ws, &s, &cfg);
    s.start().unwrap();
    p.pgbench(&["-n", "-c", "2", "-t", "300"]).unwrap();
    let q = "SELECT count(*) || ' ' || sum(abalance) FROM pgbench_history JOIN pgbench_accounts USING (aid)";
    let before = p.psql(q).unwrap();
    // Regression (17 and later): the primary is idle since this switch, so switchover's own
    // pg_switch_wal() returns a segment boundary, which pg_walfile_name() names as the segment
    // still being written; switchover waited for it to be archived until its timeout.
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    let (code, text) = output(
        walship_for(&ws, &cfg, &s.data)
            .args(["switchover", "--primary"])
            .arg(conninfo(&p))
            .arg("--primary-pgdata")
            .arg(&p.data),
    );
    assert_eq!(code, 0, "{text}");
    println!("{text}");
    // roles swapped, nothing lost
    assert_eq!(s.psql("SELECT pg_is_in_recovery()").unwrap(), "f", "{text}");
    assert_eq!(
        s.psql(q).unwrap(),
        before,
        "row count before equals row count after"
    );
    assert_eq!(p.psql("SELECT pg_is_in_recovery()").unwrap(), "t", "{text}");
    // the old primary follows the new one
    s.pgbench(&["-n", "-t", "100"]).unwrap();
    let after = s.psql(q).unwrap();
    wait_until(TIMEOUT, "the old primary to follow", || {
        Ok(p.psql(q).map(|g| g == after).unwrap_or(false))
    })
    .unwrap();
    // a second switchover the other way round is refused while roles do not match
    let (code, text) = output(
        walship_for(&ws, &cfg, &s.data)
            .args(["switchover", "--primary"])
            .arg(conninfo(&p))
            .arg("--primary-pgdata")
            .arg(&p.data),
    );
    assert_eq!(code, 4, "{text}");
    // the old primary was started by walship: stop it through the harness
    p.stop().unwrap();
    s.stop().unwrap();
}
