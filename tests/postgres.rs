//! End to end on real PostgreSQL 15: a primary archives through `walship push`, a standby made
//! from a base backup without WAL restores through `walship fetch`, on a local and on an SSH
//! repository, and must reach the primary's row counts. Also runs `walship demo`.

mod common;

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
