//! The push-ahead and prefetch workers: they make serial calls fast without bending the contract.
//! Every call still exits 0 only for its own durable (push) or verified (fetch) file; a worker's
//! error reaches the call; a worker killed at any point loses nothing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SYSID: u64 = 7_200_000_000_000_000_002;

fn seg(n: u64) -> String {
    format!("0000000100000000{n:08X}")
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    pg_wal: PathBuf,
}

/// Wait (at most 20 s) until no walship worker of this kind runs on `pg_wal`: idle workers exit.
fn wait_workers_gone(pg_wal: &Path, prefix: &str) {
    let start = Instant::now();
    while worker_pid(pg_wal, prefix).is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "an idle {prefix} worker did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Env {
    /// A pg_wal with `count` segments, all `.ready`, as PostgreSQL leaves a backlog.
    fn new(count: u64) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let repo = root.join("repo");
        fs::create_dir(&repo).unwrap();
        let pg_wal = root.join("pgdata/pg_wal");
        fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
        for i in 1..=count {
            write_segment(&pg_wal, &seg(i), SYSID, i);
            fs::write(
                pg_wal
                    .join("archive_status")
                    .join(format!("{}.ready", seg(i))),
                "",
            )
            .unwrap();
        }
        Env {
            _dir: dir,
            root,
            repo,
            pg_wal,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = walship();
        c.arg("--repo")
            .arg(&self.repo)
            .args(["--worker-idle-timeout", "1"])
            .current_dir(self.root.join("pgdata"));
        c
    }

    /// What PostgreSQL's archiver does for one file: call, and on exit 0 mark it done.
    fn archive(&self, name: &str) -> (i32, String) {
        self.archive_with(self.cmd(), name)
    }

    /// `archive`, with the call's options (repository, worker settings) given by `cmd`.
    fn archive_with(&self, mut cmd: Command, name: &str) -> (i32, String) {
        let r = run(cmd.arg("push").arg(format!("pg_wal/{name}")).arg(name));
        if r.0 == 0 {
            let st = self.pg_wal.join("archive_status");
            fs::rename(
                st.join(format!("{name}.ready")),
                st.join(format!("{name}.done")),
            )
            .unwrap();
        }
        r
    }

    /// The PID of the live worker of this kind, if any.
    fn worker_pid(&self, prefix: &str) -> Option<i32> {
        worker_pid(&self.pg_wal, prefix)
    }

    /// Push segments 1..=`count` without the push-ahead worker.
    fn push_directly(&self, count: u64) {
        for i in 1..=count {
            let (code, err) = run(self
                .cmd()
                .args(["--push-ahead", "0", "push"])
                .arg(format!("pg_wal/{}", seg(i)))
                .arg(seg(i)));
            assert_eq!(code, 0, "{}: {err}", seg(i));
        }
    }

    fn wait_workers_gone(&self, prefix: &str) {
        wait_workers_gone(&self.pg_wal, prefix);
    }

    /// Every segment fetched back without the workers equals the original.
    fn assert_archive_complete(&self, count: u64) {
        for i in 1..=count {
            let dest = self.root.join("check");
            let (code, err) = run(self
                .cmd()
                .args(["--prefetch", "0", "fetch", &seg(i)])
                .arg(&dest));
            assert_eq!(code, 0, "{}: {err}", seg(i));
            assert_eq!(
                fs::read(&dest).unwrap(),
                fs::read(self.pg_wal.join(seg(i))).unwrap(),
                "{}",
                seg(i)
            );
        }
        // no published object is anything but a whole segment: only walship.repo, objects, and
        // (dot-prefixed) temporaries of writers that were killed
        for (rel, _) in tree(&self.repo) {
            let name = Path::new(&rel)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            assert!(
                rel == "walship.repo" || name.starts_with('.') || name.len() == 24,
                "unexpected {rel}"
            );
        }
    }
}

#[test]
fn the_push_ahead_worker_archives_the_backlog_and_each_call_takes_its_acknowledgement() {
    let env = Env::new(12);
    let mut by_worker = 0;
    let mut workers = Vec::new();
    for i in 1..=12 {
        let (code, err) = env.archive(&seg(i));
        assert_eq!(code, 0, "{err}");
        if err.contains("by the push-ahead worker") {
            by_worker += 1;
        }
        workers.extend(env.worker_pid("push-"));
    }
    assert!(
        by_worker >= 11,
        "only {by_worker} of 12 calls were served by the worker"
    );
    // Regression: between a call taking its acknowledgement and PostgreSQL renaming the `.ready`,
    // the worker pushed the file again (hashing it for nothing) and left an acknowledgement
    // nobody took, which then made it stop as if PostgreSQL archived elsewhere. One worker
    // serves the whole backlog.
    workers.dedup();
    assert_eq!(workers.len(), 1, "workers: {workers:?}");
    assert_no_stop_for_archiving_elsewhere(&env);
    env.assert_archive_complete(12);
    env.wait_workers_gone("push-");
    // acknowledgements do not pile up
    let left: Vec<_> = spool_dirs(&env.pg_wal, "push-")
        .iter()
        .flat_map(|d| fs::read_dir(d).unwrap().flatten())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".ok"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Regression: after archive_command moved to another repository, the old repository's
/// push-ahead worker went on pushing every new `.ready` file into the old repository until it had
/// nothing to do for `worker_idle_timeout`, which on a busy primary is never: twice the work, and
/// writes into a repository the DBA had moved away from. bench/run.sh showed it (the local line's
/// worker hashed the whole corpus again while the SSH line was being timed). The worker must stop
/// once PostgreSQL marks a file archived without taking that worker's acknowledgement.
#[test]
fn regression_a_push_ahead_worker_stops_once_postgresql_archives_elsewhere() {
    let env = Env::new(12);
    let new_repo = env.root.join("new-repo");
    fs::create_dir(&new_repo).unwrap();
    let old_calls = || {
        let mut c = walship();
        c.arg("--repo")
            .arg(&env.repo)
            .args(["--worker-idle-timeout", "60"])
            .current_dir(env.root.join("pgdata"));
        c
    };
    let new_calls = || {
        let mut c = walship();
        c.arg("--repo")
            .arg(&new_repo)
            .args(["--push-ahead", "0"])
            .current_dir(env.root.join("pgdata"));
        c
    };
    for i in 1..=4 {
        let (code, err) = env.archive_with(old_calls(), &seg(i));
        assert_eq!(code, 0, "{err}");
    }
    let old_worker = env.worker_pid("push-").unwrap_or_else(|| {
        panic!(
            "the old repository's worker does not run: {}",
            worker_logs(&env.pg_wal, "push-")
        )
    });
    // archive_command now names the new repository
    for i in 5..=12 {
        let (code, err) = env.archive_with(new_calls(), &seg(i));
        assert_eq!(code, 0, "{err}");
    }
    let start = Instant::now();
    while env.worker_pid("push-") == Some(old_worker) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the old repository's worker still runs 10 s after PostgreSQL archived elsewhere"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = worker_logs(&env.pg_wal, "push-");
    assert!(
        log.contains("without taking this worker's acknowledgement"),
        "the worker did not say why it stopped: {log}"
    );
    for i in 1..=4 {
        assert!(
            names_below(&env.repo).iter().any(|n| n.ends_with(&seg(i))),
            "{} missing from the old repository",
            seg(i)
        );
    }
}

/// No push-ahead worker of `env` said it stopped because PostgreSQL archived elsewhere.
fn assert_no_stop_for_archiving_elsewhere(env: &Env) {
    let log = worker_logs(&env.pg_wal, "push-");
    assert!(
        !log.contains("without taking"),
        "the worker stopped as if PostgreSQL archived elsewhere: {log}"
    );
}

/// Regression (review of the stop rule): with `archive_command = 'walship push ... && other'`,
/// or just slow fsyncs, PostgreSQL renames the `.ready` well after the call took its
/// acknowledgement. The worker pushed the file again in between and then took its own second,
/// rightly untaken acknowledgement for "archived elsewhere" and stopped.
#[test]
fn regression_a_slow_rename_after_the_call_does_not_stop_the_worker() {
    let env = Env::new(4);
    let mut workers = Vec::new();
    for i in 1..=4 {
        let (code, err) = run(walship()
            .arg("--repo")
            .arg(&env.repo)
            .args(["--worker-idle-timeout", "60", "push"])
            .arg(format!("pg_wal/{}", seg(i)))
            .arg(seg(i))
            .current_dir(env.root.join("pgdata")));
        assert_eq!(code, 0, "{err}");
        workers.extend(env.worker_pid("push-"));
        // the second command of `A && B`, longer than the worker's grace
        std::thread::sleep(Duration::from_millis(2500));
        let st = env.pg_wal.join("archive_status");
        fs::rename(
            st.join(format!("{}.ready", seg(i))),
            st.join(format!("{}.done", seg(i))),
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    workers.extend(env.worker_pid("push-"));
    workers.dedup();
    assert_eq!(workers.len(), 1, "workers: {workers:?}");
    assert_no_stop_for_archiving_elsewhere(&env);
}

#[test]
fn a_worker_error_reaches_the_call_that_asks_for_that_file() {
    let env = Env::new(6);
    // the repository already has different bytes for segment 4 (split brain)
    let other = env.root.join("other/pg_wal");
    fs::create_dir_all(&other).unwrap();
    write_segment(&other, &seg(4), SYSID, 99);
    let (code, err) = run(walship()
        .arg("--repo")
        .arg(&env.repo)
        .current_dir(env.root.join("other"))
        .arg("push")
        .arg(format!("pg_wal/{}", seg(4)))
        .arg(seg(4)));
    assert_eq!(code, 0, "{err}");
    for i in 1..=3 {
        assert_eq!(env.archive(&seg(i)).0, 0);
    }
    let (code, err) = env.archive(&seg(4));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("different content") && err.contains("HINT:"),
        "{err}"
    );
    // PostgreSQL retries: same answer, the archived copy untouched
    let (code, _) = env.archive(&seg(4));
    assert_eq!(code, 4);
    let dest = env.root.join("check");
    assert_eq!(run(env.cmd().args(["fetch", &seg(4)]).arg(&dest)).0, 0);
    assert_eq!(
        fs::read(&dest).unwrap(),
        fs::read(other.join(seg(4))).unwrap()
    );
}

#[test]
fn killing_the_push_ahead_worker_at_random_points_loses_nothing() {
    let env = Env::new(16);
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut kills = 0;
    for i in 1..=16 {
        // kill the worker at a pseudo-random moment while this call runs
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 40_000);
        let child = env
            .cmd()
            .arg("push")
            .arg(format!("pg_wal/{}", seg(i)))
            .arg(seg(i))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if let Some(pid) = env.worker_pid("push-") {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        let mut code = out.status.code().unwrap();
        if code != 0 {
            // PostgreSQL would call again; the next call must succeed
            code = env.archive(&seg(i)).0;
        } else {
            let st = env.pg_wal.join("archive_status");
            fs::rename(
                st.join(format!("{}.ready", seg(i))),
                st.join(format!("{}.done", seg(i))),
            )
            .unwrap();
        }
        assert_eq!(
            code,
            0,
            "{}: {}",
            seg(i),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(kills >= 4, "the test killed the worker only {kills} times");
    env.assert_archive_complete(16);
}

#[test]
fn prefetch_serves_verified_segments_and_never_a_damaged_one() {
    let env = Env::new(14);
    env.push_directly(14);
    // damage segment 9 in the repository
    let object = env.repo.join(format!("wal/0000000100000000/{}", seg(9)));
    let mut bytes = fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&object, bytes).unwrap();

    let standby = env.root.join("standby");
    fs::create_dir_all(standby.join("pg_wal")).unwrap();
    fs::write(standby.join("standby.signal"), "").unwrap();
    let mut from_spool = 0;
    for i in 1..=14 {
        // recovery replays for a moment between requests
        std::thread::sleep(Duration::from_millis(20));
        let mut c = walship();
        c.arg("--repo")
            .arg(&env.repo)
            .args([
                "--worker-idle-timeout",
                "1",
                "fetch",
                &seg(i),
                "pg_wal/RECOVERYXLOG",
            ])
            .current_dir(&standby);
        let (code, err) = run(&mut c);
        if i == 9 {
            assert_eq!(code, 5, "a damaged object must not be served: {err}");
            assert!(err.contains("damaged"), "{err}");
            assert!(!standby.join("pg_wal/RECOVERYXLOG").exists());
            continue;
        }
        assert_eq!(code, 0, "{}: {err}", seg(i));
        if err.contains("prefetch spool") {
            from_spool += 1;
        }
        if i == 5 {
            assert_prefetch_yields_the_cpu(&standby.join("pg_wal"));
        }
        let got = fs::read(standby.join("pg_wal/RECOVERYXLOG")).unwrap();
        assert_eq!(
            got,
            fs::read(env.pg_wal.join(seg(i))).unwrap(),
            "{}",
            seg(i)
        );
        fs::rename(
            standby.join("pg_wal/RECOVERYXLOG"),
            standby.join("pg_wal").join(seg(i)),
        )
        .unwrap();
    }
    assert!(
        from_spool >= 9,
        "only {from_spool} segments came from the prefetch spool"
    );
    wait_workers_gone(&standby.join("pg_wal"), "fetch-");
}

/// Every thread of the live prefetch worker (its pool and their hashing threads) runs ten steps
/// nicer than this process, so that replay, which is single-threaded, keeps its core.
fn assert_prefetch_yields_the_cpu(pg_wal: &Path) {
    let nice_of = |stat: &str| -> i64 {
        proc_stat_field(stat, 16)
            .and_then(|n| n.parse().ok())
            .expect("a /proc stat line")
    };
    let own = nice_of(&fs::read_to_string("/proc/self/stat").unwrap());
    let pid = worker_pid(pg_wal, "fetch-").expect("a prefetch worker is running");
    let mut threads = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if let Ok(stat) = fs::read_to_string(task.path().join("stat")) {
            assert_eq!(nice_of(&stat), (own + 10).min(19), "{stat}");
            threads += 1;
        }
    }
    assert!(threads >= 2, "the worker has {threads} threads");
}

#[test]
fn regression_a_spooled_segment_without_a_live_worker_is_not_served() {
    // After a crash the spool may hold a torn file under a segment's name; with no worker that
    // wiped and refilled the spool, the call must fetch and verify the segment itself.
    fetch_with_a_leftover_in_the_spool(false);
}

#[test]
fn regression_a_spooled_segment_is_not_served_before_the_worker_has_emptied_the_spool() {
    // Spool files are not fsynced, so after a crash of the machine one may be torn. A new worker
    // empties the spool after taking its lock; a call in between sees a live worker but must not
    // take what the spool held before.
    fetch_with_a_leftover_in_the_spool(true);
}

/// Leave a damaged file under a segment's name in a standby's fetch spool, optionally hold the
/// worker lock as a worker that has not emptied the spool yet, and fetch that segment: the call
/// must fetch it from the repository, byte for byte, and not take the leftover.
fn fetch_with_a_leftover_in_the_spool(worker_lock_held: bool) {
    let env = Env::new(3);
    env.push_directly(3);
    let standby = env.root.join("standby");
    let spool = walship::spool::Spool::open(
        &standby.join("pg_wal"),
        walship::spool::SpoolKind::Fetch,
        env.repo.to_str().unwrap(),
    )
    .unwrap();
    fs::write(spool.dir.join(seg(2)), vec![0u8; 1 << 20]).unwrap();
    let worker_lock =
        worker_lock_held.then(|| spool.try_lock_worker().unwrap().expect("no worker yet"));
    let mut c = walship();
    c.arg("--repo")
        .arg(&env.repo)
        .args([
            "--prefetch",
            "8",
            "--worker-idle-timeout",
            "1",
            "fetch",
            &seg(2),
            "pg_wal/RECOVERYXLOG",
        ])
        .current_dir(&standby);
    let (code, err) = run(&mut c);
    drop(worker_lock);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("prefetch spool"),
        "a leftover was served: {err}"
    );
    assert_eq!(
        fs::read(standby.join("pg_wal/RECOVERYXLOG")).unwrap(),
        fs::read(env.pg_wal.join(seg(2))).unwrap()
    );
    wait_workers_gone(&standby.join("pg_wal"), "fetch-");
}

#[test]
fn regression_a_worker_stops_once_archive_command_calls_walship_with_another_repository() {
    let env = Env::new(20);
    let (code, err) = env.archive(&seg(1));
    assert_eq!(code, 0, "{err}");
    assert!(
        env.worker_pid("push-").is_some(),
        "the first call started a worker"
    );
    // archive_command now names another repository, which refuses every push (here: it is
    // not a directory), so PostgreSQL marks nothing archived and retries
    let other = env.root.join("other-repo");
    fs::write(&other, "").unwrap();
    let mut cmd = walship();
    cmd.arg("--repo")
        .arg(&other)
        .args(["--worker-idle-timeout", "1"])
        .current_dir(env.root.join("pgdata"));
    let (code, err) = env.archive_with(cmd, &seg(2));
    assert_ne!(code, 0, "{err}");
    // new WAL arrives: only the repository archive_command names now may get it
    std::thread::sleep(Duration::from_millis(500));
    for i in 21..=25 {
        write_segment(&env.pg_wal, &seg(i), SYSID, i);
        fs::write(
            env.pg_wal
                .join("archive_status")
                .join(format!("{}.ready", seg(i))),
            "",
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    let first = names_below(&env.repo.join("wal"));
    for i in 21..=25 {
        assert!(
            !first.contains(&seg(i)),
            "{} reached the old repository: {first:?}",
            seg(i)
        );
    }
    let spools = spool_dirs(&env.pg_wal, "push-");
    assert_eq!(spools.len(), 2, "{spools:?}");
    let logs = worker_logs(&env.pg_wal, "push-");
    assert!(logs.contains("another configuration"), "{logs}");
}

#[test]
fn regression_a_call_for_a_history_file_starts_no_worker_that_pushes_segments() {
    // PostgreSQL's 025_stuck_on_old_timeline test archives history files only, through a
    // wrapper that passes walship nothing else
    let env = Env::new(5);
    fs::write(
        env.pg_wal.join("00000002.history"),
        "1\t0/300000\tno recovery target specified\n",
    )
    .unwrap();
    fs::write(env.pg_wal.join("archive_status/00000002.history.ready"), "").unwrap();
    let (code, err) = env.archive("00000002.history");
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(env.worker_pid("push-"), None);
    let archived = names_below(&env.repo.join("wal"));
    assert_eq!(
        archived,
        vec!["00000002.history".to_string()],
        "{archived:?}"
    );
}
