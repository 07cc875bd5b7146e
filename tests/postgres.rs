//! End to end on real PostgreSQL 15: a primary archives through `walship push`, a standby made
//! from a base backup without WAL restores through `walship fetch`, on a local and on an SSH
//! repository, and must reach the primary's row counts. Also runs `walship demo`.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use walship::pg::cluster::{Cluster, free_port, wait_until};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Primary with archive_command = walship push, base backup, load after the backup, standby with
/// restore_command = walship fetch; returns when the standby matches the primary.
fn primary_and_standby(ws: &Workspace, walship_args: &str, segsize_mb: u32, repo_dir: &Path) {
    let tools = &ws.tools;
    let bin = ws.walship_bin();
    let bin = bin.display();
    let mut primary = Cluster::init(
        tools,
        &ws.path().join("primary"),
        free_port().unwrap(),
        segsize_mb,
    )
    .unwrap();
    primary
        .append_conf(&format!(
            "archive_mode = on\narchive_command = '{bin} {walship_args} push %p %f'\n"
        ))
        .unwrap();
    primary.start().unwrap();
    primary.pgbench(&["-i", "-s", "2", "-q"]).unwrap();
    primary.base_backup(&ws.path().join("standby")).unwrap();

    let mut standby =
        Cluster::existing(tools, &ws.path().join("standby"), free_port().unwrap()).unwrap();
    standby
        .append_conf(&format!(
            "port = {}\nunix_socket_directories = '{}'\narchive_mode = off\nhot_standby = on\n\
             wal_retrieve_retry_interval = '200ms'\nrestore_command = '{bin} {walship_args} fetch %f %p'\n",
            standby.port,
            standby.socket_dir.display()
        ))
        .unwrap();
    tools
        .write_file(&standby.data.join("standby.signal"), "")
        .unwrap();
    standby.start().unwrap();

    // load after the backup: only the archive carries it to the standby
    primary
        .pgbench(&["-n", "-c", "2", "-j", "2", "-t", "1000"])
        .unwrap();
    primary.psql("CREATE TABLE after_backup AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 50000) g").unwrap();
    let last = primary.switch_and_wait_archived(TIMEOUT).unwrap();
    let failed = primary
        .psql("SELECT failed_count FROM pg_stat_archiver")
        .unwrap();
    assert_eq!(
        failed,
        "0",
        "the archiver saw failures; see {}",
        primary.log.display()
    );

    let query = "SELECT (SELECT count(*) FROM pgbench_history) || ' ' || (SELECT sum(abalance) FROM pgbench_accounts) \
                 || ' ' || (SELECT count(*) FROM after_backup)";
    let expected = primary.psql(query).unwrap();
    assert!(expected.starts_with("2000 "), "{expected}");
    wait_until(
        TIMEOUT,
        &format!("the standby to replay through {last}"),
        || {
            Ok(standby
                .psql(query)
                .map(|got| got == expected)
                .unwrap_or(false))
        },
    )
    .unwrap_or_else(|e| panic!("{e}; standby log {}", standby.log.display()));
    assert_eq!(
        standby.psql("SELECT pg_is_in_recovery()").unwrap(),
        "t",
        "a standby stays a standby"
    );

    let primary_log = std::fs::read_to_string(&primary.log).unwrap();
    assert!(
        primary_log.contains("by the push-ahead worker"),
        "the archiver's calls did not go through the push-ahead worker"
    );
    // PostgreSQL's archiver takes every acknowledgement, so no worker ever stops as if archiving
    // had moved to another repository.
    let worker_log = worker_logs(&primary.data.join("pg_wal"), "push-");
    assert!(
        !worker_log.contains("without taking"),
        "a push-ahead worker stopped under PostgreSQL's archiver: {worker_log}"
    );
    let log = std::fs::read_to_string(&standby.log).unwrap();
    assert!(
        log.contains("walship: fetched"),
        "the standby did not restore through walship"
    );
    let errors: Vec<_> = log
        .lines()
        .filter(|l| l.contains("walship:") && l.contains("ERROR:"))
        .collect();
    assert!(
        errors.is_empty(),
        "walship errors in the standby log: {errors:?}"
    );
    let objects = tree(repo_dir)
        .into_iter()
        .filter(|(n, _)| n.starts_with("wal/"))
        .count();
    assert!(objects >= 4, "only {objects} objects in the repository");
    standby.stop().unwrap();
    primary.stop().unwrap();
}

#[test]
fn a_standby_follows_the_primary_through_a_local_repository() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    primary_and_standby(
        &ws,
        &format!(
            "--config /dev/null --worker-idle-timeout 2 --repo {}",
            repo.display()
        ),
        16,
        &repo,
    );
}

#[test]
fn a_standby_follows_the_primary_through_an_ssh_repository_with_1mib_segments() {
    let ws = Workspace::new();
    let sshd = Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    let config = sshd.config(&ws, &repo, "walship.toml");
    primary_and_standby(&ws, &format!("--config {}", config.display()), 1, &repo);
    let id = std::fs::read_to_string(repo.join("walship.repo")).unwrap();
    assert!(id.contains("wal_segment_size = 1048576"), "{id}");
}

#[test]
fn the_demo_runs_the_whole_cycle() {
    let out = walship().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[9/9]") && stdout.contains("identical to the primary"),
        "{stdout}"
    );
    // the switchover kept every row and gave the roles back; three timelines in the archive
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {stdout}"))
    };
    assert_eq!(line("before:"), line("after:"));
    assert!(
        stdout.contains("the original primary is the primary again"),
        "{stdout}"
    );
    assert!(
        stdout.contains("00000002.history, 00000003.history"),
        "{stdout}"
    );
    assert!(stdout.contains("no problems found"), "{stdout}");
    assert!(
        stdout.contains("push 0000") && stdout.contains("-> exit 0"),
        "{stdout}"
    );
}

/// Regression: in the common container images the postmaster is PID 1 and reaps every orphan;
/// any exit code but 0 or 1 of a reaped process reads as a crashed backend and restarts the
/// cluster. A prefetch worker that exited 3 with its repository unreachable restarted a standby
/// at every retry. The standby here is PID 1 of its own PID namespace, and its repository is
/// missing.
#[test]
#[ignore = "needs root: a PID namespace (tests/run runs it as root, as CI does)"]
fn regression_a_failing_worker_does_not_restart_a_standby_whose_postmaster_is_pid_1() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test makes a PID namespace: run it as root (tests/run does in CI)"
    );
    let ws = Workspace::new();
    let mut p = Cluster::init(
        &ws.tools,
        &ws.path().join("primary"),
        free_port().unwrap(),
        1,
    )
    .unwrap();
    p.start().unwrap();
    let data = ws.path().join("standby");
    p.base_backup(&data).unwrap();
    p.stop().unwrap();
    let s = Cluster::existing(&ws.tools, &data, free_port().unwrap()).unwrap();
    let missing = ws.path().join("no-such-repo");
    s.append_conf(&format!(
        "port = {}\nunix_socket_directories = '{}'\nwal_retrieve_retry_interval = '200ms'\n\
         restore_command = '{} --config /dev/null --repo {} --prefetch 4 fetch %f %p'\n",
        s.port,
        s.socket_dir.display(),
        ws.walship_bin().display(),
        missing.display()
    ))
    .unwrap();
    ws.tools
        .write_file(&data.join("standby.signal"), "")
        .unwrap();
    let run_as = ws
        .tools
        .run_as
        .clone()
        .expect("root runs PostgreSQL as another user");
    let log = ws.path().join("pid1.log");
    let mut pm = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "setpriv"])
        .arg(format!("--reuid={}", run_as.uid))
        .arg(format!("--regid={}", run_as.gid))
        .arg("--clear-groups")
        .arg(ws.tools.bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // long enough for dozens of restore_command calls, each starting a worker that fails
    std::thread::sleep(Duration::from_secs(12));
    let text = fs::read_to_string(&log).unwrap();
    // unshare ignores SIGTERM while it waits; the postmaster is its only child, known here by
    // its host PID: a fast shutdown (SIGINT), and unshare exits with it
    let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", pm.id())).unwrap();
    let postmaster: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: the PID of the postmaster this test started (the child of its unshare).
    unsafe { libc::kill(postmaster, libc::SIGINT) };
    let _ = pm.wait();
    wait_until(
        Duration::from_secs(60),
        "the namespace's postmaster to stop",
        || Ok(!data.join("postmaster.pid").exists()),
    )
    .unwrap();
    assert!(
        // the server entered recovery (17 and later say "starting backup recovery")
        text.contains("database system is ready to accept read-only connections")
            || text.contains("entering standby mode")
            || text.contains("starting backup recovery"),
        "{text}"
    );
    assert!(
        text.contains("prefetch") || text.contains("no-such-repo"),
        "the fetches ran: {text}"
    );
    assert!(
        // (18 logs each reaped orphan: "untracked child process ... exited with exit code 0")
        !text.contains("terminating any other active server processes")
            && !text
                .lines()
                .any(|l| l.contains("exited with exit code") && !l.ends_with("exit code 0")),
        "a worker's exit restarted the standby:\n{text}"
    );
}

/// Regression: `basebackup --compression-level 19` redrew its bar only every 10-15 s, in steps of
/// 33-40 MiB, with rate and ETA jumping. In a real terminal (tmux), the bar must redraw at least
/// about once a second and its byte count must move during the backup, not only at the end.
#[test]
fn the_basebackup_progress_bar_redraws_in_a_real_terminal_while_compressing_hard() {
    use std::process::Command;
    use std::time::Instant;
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = common::ha::config(&ws, &repo, "");
    let p = common::ha::primary(&ws, &cfg);
    p.pgbench(&["-i", "-s", "4", "-q"]).unwrap();
    let sock = ws.path().join("tmux.sock");
    let tmux = || {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&sock);
        c
    };
    let done = ws.path().join("done");
    let script = format!(
        "{} --config {} --pgdata {} --compress-threads 2 basebackup --compression-level 19; echo $? > {}; sleep 60",
        ws.walship_bin().display(),
        cfg.display(),
        p.data.display(),
        done.display()
    );
    let started = tmux()
        .args([
            "new-session",
            "-d",
            "-s",
            "bb",
            "-x",
            "160",
            "-y",
            "12",
            &script,
        ])
        .status()
        .unwrap();
    assert!(started.success());
    let begun = Instant::now();
    let mut screens: Vec<(Instant, String)> = Vec::new();
    while !done.exists() && begun.elapsed() < TIMEOUT {
        let out = tmux()
            .args(["capture-pane", "-p", "-t", "bb"])
            .output()
            .unwrap();
        let bar = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("basebackup") && l.contains('['))
            .map(str::to_string);
        if let Some(bar) = bar
            && screens.last().is_none_or(|(_, last)| *last != bar)
        {
            screens.push((Instant::now(), bar));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tmux().arg("kill-server").status();
    let code = fs::read_to_string(&done).unwrap_or_default();
    let shown: Vec<&String> = screens.iter().map(|(_, s)| s).collect();
    assert_eq!(code.trim(), "0", "{shown:#?}");
    assert!(screens.len() >= 4, "the bar barely moved: {shown:#?}");
    let longest = screens
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    // it ticks every 500 ms; the margin is for a busy CI machine
    assert!(
        longest < Duration::from_millis(2500),
        "no redraw for {longest:?}: {shown:#?}"
    );
    // the byte count itself moves during the backup: several different values
    let counts: std::collections::BTreeSet<String> = screens
        .iter()
        .filter_map(|(_, s)| {
            s.split(']')
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect();
    assert!(
        counts.len() >= 3,
        "the byte count moved in {} steps: {shown:#?}",
        counts.len()
    );
    println!(
        "{} redraws, longest gap {longest:?}, {} byte counts",
        screens.len(),
        counts.len()
    );
}
