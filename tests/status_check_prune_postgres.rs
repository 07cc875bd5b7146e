//! `status`, `check` and `prune` against real PostgreSQL 15 clusters: a primary archiving through
//! walship with three base backups, a hot standby following through `walship fetch`, and a
//! point-in-time copy restored from the oldest backup that prune kept, which must reach the
//! primary's latest row count from the pruned archive.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use walship::pg::cluster::{Cluster, free_port, wait_until};

const TIMEOUT: Duration = Duration::from_secs(120);

fn walship_out(config: &Path, args: &[&str]) -> (i32, String) {
    output(walship().arg("--config").arg(config).args(args))
}

fn status_json(config: &Path, pgdata: &Path) -> serde_json::Value {
    let (code, out) = walship_out(
        config,
        &["--pgdata", pgdata.to_str().unwrap(), "status", "--json"],
    );
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out[..out.rfind('}').unwrap() + 1])
        .unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Start a copy of a base backup that restores through walship (standby or archive recovery).
fn start_copy(ws: &Workspace, dir: &Path, config: &Path, signal: &str) -> Cluster {
    let bin = ws.walship_bin();
    let mut c = Cluster::existing(&ws.tools, dir, free_port().unwrap()).unwrap();
    c.append_conf(&format!(
        "port = {}\nunix_socket_directories = '{}'\narchive_mode = off\nhot_standby = on\n\
         wal_retrieve_retry_interval = '200ms'\nrestore_command = '{} --config {} fetch %f %p'\n",
        c.port,
        c.socket_dir.display(),
        bin.display(),
        config.display()
    ))
    .unwrap();
    ws.tools.write_file(&dir.join(signal), "").unwrap();
    c.start().unwrap();
    c
}

#[test]
fn status_check_and_prune_on_a_real_primary_standby_and_restored_backup() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let config = ws.path().join("walship.toml");
    ws.tools
        .write_file(
            &config,
            &format!("repo = '{}'\nworker_idle_timeout = 2\n", repo.display()),
        )
        .unwrap();
    let bin = ws.walship_bin();
    let mut primary = Cluster::init(
        &ws.tools,
        &ws.path().join("primary"),
        free_port().unwrap(),
        1,
    )
    .unwrap();
    primary
        .append_conf(&format!(
            "archive_mode = on\narchive_command = '{} --config {} push %p %f'\n",
            bin.display(),
            config.display()
        ))
        .unwrap();
    primary.start().unwrap();
    primary.pgbench(&["-i", "-s", "1", "-q"]).unwrap();

    // three base backups with load between them: each stored in the repository by `walship
    // basebackup` (what retention counts), then a pg_basebackup copy to start (its record
    // counts for nothing: its data is not in the repository)
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(1100)); // one backup id per second
        let mut bb = ws.tools.command(bin.to_str().unwrap());
        bb.arg("--config")
            .arg(&config)
            .arg("--pgdata")
            .arg(&primary.data)
            .arg("basebackup");
        let (code, out) = output(&mut bb);
        assert_eq!(code, 0, "{out}");
        primary
            .base_backup(&ws.path().join(format!("backup{i}")))
            .unwrap();
        primary.pgbench(&["-n", "-t", "300"]).unwrap();
        primary.switch_and_wait_archived(TIMEOUT).unwrap();
    }
    let count = "SELECT count(*) FROM pgbench_history";
    let expected = primary.psql(count).unwrap();
    assert_eq!(expected, "900");
    wait_until(TIMEOUT, "three restorable backups", || {
        let s = status_json(&config, &primary.data);
        let b = s["backups"].as_array().unwrap();
        Ok(b.len() == 6
            && b.iter().all(|b| b["restorable"] == b["stored"].is_string())
            && s["stored_backups"].as_array().unwrap().len() == 3)
    })
    .unwrap();

    // status: the primary's view
    let s = status_json(&config, &primary.data);
    let pg = &s["postgres"];
    assert_eq!(pg["in_recovery"], false, "{s}");
    assert_eq!(pg["matches_repository"], true, "{s}");
    assert_eq!(pg["archiver_failing"], false, "{s}");
    assert!(pg["archive_behind_segments"].as_u64().unwrap() <= 1, "{s}");
    assert_eq!(pg["system_identifier"], s["system_identifier"]);
    let (code, text) = walship_out(
        &config,
        &[
            "--pgdata",
            primary.data.to_str().unwrap(),
            "status",
            "--prometheus",
        ],
    );
    assert_eq!(code, 0, "{text}");
    for line in [
        "walship_pg_up 1",
        "walship_backups_restorable 3",
        "walship_pg_archiver_failing 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    let (code, text) = walship_out(
        &config,
        &["--pgdata", primary.data.to_str().unwrap(), "status"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("PostgreSQL (") && text.contains("primary"),
        "{text}"
    );
    println!("{text}");

    // check: healthy, then with archive_command pointing elsewhere
    let (code, text) = walship_out(
        &config,
        &["--pgdata", primary.data.to_str().unwrap(), "check"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("switched and archived"), "{text}");
    println!("{text}");
    primary
        .psql("ALTER SYSTEM SET archive_command = '/bin/true'")
        .unwrap();
    primary.psql("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (code, text) = walship_out(
        &config,
        &["--pgdata", primary.data.to_str().unwrap(), "check"],
    );
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("FAIL  archive_command = '/bin/true' does not call walship"),
        "{text}"
    );
    primary.psql("ALTER SYSTEM RESET archive_command").unwrap();
    primary.psql("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // a hot standby from the newest backup: status and check from its side
    let standby = start_copy(&ws, &ws.path().join("backup2"), &config, "standby.signal");
    wait_until(TIMEOUT, "the standby to catch up", || {
        Ok(standby.psql(count).map(|c| c == expected).unwrap_or(false))
    })
    .unwrap();
    let s = status_json(&config, &standby.data);
    assert_eq!(s["postgres"]["in_recovery"], true, "{s}");
    assert!(s["postgres"]["replay_lsn"].is_string(), "{s}");
    let (code, text) = walship_out(
        &config,
        &["--pgdata", standby.data.to_str().unwrap(), "check"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok    restore_command"), "{text}");

    // prune to two backups: a dry run first
    let files = |r: &Path| tree(r).len();
    let before = files(&repo);
    let (code, text) = walship_out(&config, &["prune", "--keep-backups", "2", "--dry-run"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(files(&repo), before, "{text}");
    let (code, text) = walship_out(&config, &["prune", "--keep-backups", "2"]);
    assert_eq!(code, 0, "{text}");
    assert!(files(&repo) < before, "{text}");
    let (code, text) = walship_out(&config, &["verify"]);
    assert_eq!(code, 0, "{text}");
    // the oldest stored backup and the pg_basebackup record before the next one went
    let s = status_json(&config, &primary.data);
    assert_eq!(s["backups"].as_array().unwrap().len(), 4, "{s}");
    assert_eq!(s["stored_backups"].as_array().unwrap().len(), 2, "{s}");

    // more load, archived; then the oldest kept backup, restored from the pruned archive,
    // reaches the latest row count
    primary.pgbench(&["-n", "-t", "200"]).unwrap();
    primary.switch_and_wait_archived(TIMEOUT).unwrap();
    let latest = primary.psql(count).unwrap();
    assert_eq!(latest, "1100");
    let restored = start_copy(&ws, &ws.path().join("backup1"), &config, "recovery.signal");
    wait_until(TIMEOUT, "the restored copy to finish recovery", || {
        Ok(restored
            .psql("SELECT NOT pg_is_in_recovery()")
            .map(|r| r == "t")
            .unwrap_or(false))
    })
    .unwrap_or_else(|e| panic!("{e}; log {}", restored.log.display()));
    assert_eq!(restored.psql(count).unwrap(), latest);
    // and the pruned backup's own WAL is gone: its copy cannot be restored any more
    let (code, _) = walship_out(&config, &["fetch", "000000010000000000000002", "/tmp/x"]);
    assert_eq!(code, 1, "the first segments were pruned");
}
