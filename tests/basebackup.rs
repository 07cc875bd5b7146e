//! `walship basebackup` and `walship restore` on a real PostgreSQL 15 primary with a pgbench
//! database (WALSHIP_BASEBACKUP_SCALE, default 70: about 1 GiB) and a tablespace: a backup into
//! the repository restored to a point in time, the same stream sent over a real sshd straight
//! into a hot standby that then follows the primary through `walship fetch`, and the failures
//! that must never leave a startable half-copy (a corrupt backup object, a transfer killed
//! mid-way).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ha::{self, TIMEOUT};
use common::{Sshd, Workspace, descendants, names_below, output, without_walship_env};
use walship::pg::cluster::{Cluster, free_port, wait_until};

fn scale() -> u32 {
    std::env::var("WALSHIP_BASEBACKUP_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(70)
}

/// walship run as the PostgreSQL user (restore refuses root, as PostgreSQL does).
fn walship_as_pg(ws: &Workspace, cfg: &Path) -> Command {
    let mut c = ws.tools.command(ws.walship_bin().to_str().unwrap());
    without_walship_env(&mut c);
    c.arg("--config").arg(cfg).stdin(Stdio::null());
    c
}

fn count(c: &Cluster, table: &str) -> u64 {
    c.psql(&format!("SELECT count(*) FROM {table}"))
        .unwrap()
        .parse()
        .unwrap()
}

/// The one backup directory in the repository.
fn stored_backup(repo: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = fs::read_dir(repo.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.pop().expect("a backup in the repository")
}

fn cannot_start(ws: &Workspace, dir: &Path) {
    assert!(
        !dir.join("global/pg_control").exists(),
        "{} has a pg_control: a half-copy could start",
        dir.display()
    );
    assert!(dir.join("walship-restore.incomplete").exists());
    let mut cmd = ws.tools.command("pg_ctl");
    cmd.args(["start", "-w", "-t", "20", "-D"])
        .arg(dir)
        .arg("-l")
        .arg(dir.with_extension("log"));
    let (code, out) = output(&mut cmd);
    assert_ne!(
        code, 0,
        "PostgreSQL started on a half-restored directory: {out}"
    );
}

#[test]
fn basebackup_restore_to_a_point_in_time_and_a_standby_over_ssh() {
    let ws = Workspace::new();
    let sshd = Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    let ts = ws.mkdir("ts");
    let standby_port = free_port().unwrap();
    let standby_dir = ws.path().join("standby");
    let cfg = ha::config(
        &ws,
        &repo,
        &format!(
            "ssh_key = '{key}'\nknown_hosts = '{kh}'\n\n[targets.standby]\nhost = '127.0.0.1'\nport = {sp}\n\
             user = '{user}'\npgdata = '{sd}'\nwalship = '{bin}'\nconfig = '{cfg}'\npg_bin = '{pg_bin}'\n\
             [targets.standby.tablespace_map]\n'{ts}' = '{w}/ts_standby'\n\
             [targets.standby.settings]\nport = '{port}'\nunix_socket_directories = '{w}/standby.sock'\n\
             hot_standby = 'on'\nwal_retrieve_retry_interval = '200ms'\n\n\
             [targets.cut]\npgdata = '{w}/cut'\nwalship = '{bin}'\nconfig = '{cfg}'\npg_bin = '{pg_bin}'\n\
             [targets.cut.tablespace_map]\n'{ts}' = '{w}/ts_cut'\n",
            key = sshd.client_key.display(),
            kh = sshd.known_hosts.display(),
            sp = sshd.port,
            user = sshd.user,
            sd = standby_dir.display(),
            bin = ws.walship_bin().display(),
            // the standby's PostgreSQL: the version under test (the SSH session has no WALSHIP_PG_BIN)
            pg_bin = ws.tools.bin.display(),
            cfg = ws.path().join("walship.toml").display(),
            ts = ts.display(),
            port = standby_port,
            w = ws.path().display(),
        ),
    );
    let p = ha::primary(&ws, &cfg);
    p.psql(&format!("CREATE TABLESPACE ts LOCATION '{}'", ts.display()))
        .unwrap();
    let started = Instant::now();
    p.pgbench(&["-i", "-s", &scale().to_string(), "-q"])
        .unwrap();
    p.psql(
        "CREATE TABLE in_ts (id int, pad text) TABLESPACE ts; \
         INSERT INTO in_ts SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g; \
         CREATE TABLE marks (what text, at timestamptz DEFAULT clock_timestamp())",
    )
    .unwrap();
    let db_size: u64 = p
        .psql("SELECT sum(pg_database_size(oid)) FROM pg_database")
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "database: {} MiB, made in {:.1} s",
        db_size >> 20,
        started.elapsed().as_secs_f64()
    );
    if scale() >= 70 {
        assert!(
            db_size >= 1 << 30,
            "the database is {db_size} bytes, not 1 GiB"
        );
    }
    let accounts = count(&p, "pgbench_accounts");
    // walship on the primary's host, for its data directory (basebackup)
    let on_primary = || {
        let mut c = walship_as_pg(&ws, &cfg);
        c.arg("--pgdata").arg(&p.data);
        c
    };

    // 1. Into the repository, then a point-in-time restore.
    let (code, out) = output(on_primary().arg("basebackup"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is restorable"), "{out}");
    let backup = stored_backup(&repo);
    assert!(backup.join("manifest.toml").exists() && backup.join("data.tar.zst").exists());
    let id = backup.file_name().unwrap().to_str().unwrap().to_string();
    let (code, out) = output(walship_as_pg(&ws, &cfg).arg("status"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&id) && l.trim_end().ends_with("yes")),
        "status does not list {id} as restorable:\n{out}"
    );
    p.psql("INSERT INTO marks (what) VALUES ('before')")
        .unwrap();
    let target = p.psql("SELECT clock_timestamp()").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    p.psql("INSERT INTO marks (what) VALUES ('after')").unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();

    let pitr_dir = ws.path().join("pitr");
    let mut pitr = Cluster::existing(&ws.tools, &pitr_dir, free_port().unwrap()).unwrap();
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&pitr_dir)
            .args(["restore", "--target-time", &target, "--tablespace-map"])
            .arg(format!("{}={}/ts_pitr", ts.display(), ws.path().display()))
            .arg("--set")
            .arg(format!("port={}", pitr.port))
            .arg("--set")
            .arg(format!(
                "unix_socket_directories={}",
                pitr.socket_dir.display()
            ))
            .arg("--start"),
    );
    assert_eq!(code, 0, "{out}");
    // while it recovers, its hold keeps prune off the WAL it fetches; recovery's end releases it
    assert!(out.contains("holds WAL from"), "{out}");
    let auto_conf = fs::read_to_string(pitr_dir.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto_conf.contains("reader advance") && auto_conf.contains("reader end"),
        "{auto_conf}"
    );
    pitr.adopt_running();
    wait_until(TIMEOUT, "the point-in-time copy to open", || {
        Ok(pitr
            .psql("SELECT pg_is_in_recovery()")
            .map(|r| r == "f")
            .unwrap_or(false))
    })
    .unwrap();
    wait_until(TIMEOUT, "recovery_end_command to release the hold", || {
        Ok(names_below(&repo.join("readers")).is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", names_below(&repo.join("readers"))));
    assert_eq!(
        pitr.psql("SELECT string_agg(what, ',') FROM marks")
            .unwrap(),
        "before"
    );
    assert_eq!(count(&pitr, "pgbench_accounts"), accounts);
    assert_eq!(count(&pitr, "in_ts"), 50000);
    assert_eq!(
        fs::read_link(
            pitr_dir
                .join("pg_tblspc")
                .read_dir()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
        )
        .unwrap(),
        ws.path().join("ts_pitr")
    );
    assert_eq!(
        pitr.psql("SHOW archive_mode").unwrap(),
        "off",
        "a PITR copy must not archive into the repository"
    );
    pitr.stop().unwrap();

    // 2. Straight into a standby over SSH: hot standby, follows the primary.
    let mut standby = Cluster::existing(&ws.tools, &standby_dir, standby_port).unwrap();
    let t = Instant::now();
    let (code, out) = output(on_primary().args(["basebackup", "--to", "standby", "--start"]));
    assert_eq!(code, 0, "{out}");
    standby.adopt_running();
    eprintln!(
        "basebackup --to standby: {:.1} s\n{out}",
        t.elapsed().as_secs_f64()
    );
    // the standby holds the WAL it follows, and moves the hold on at its restartpoints
    let auto_conf = fs::read_to_string(standby_dir.join("postgresql.auto.conf")).unwrap();
    assert!(auto_conf.contains("reader advance"), "{out}\n{auto_conf}");
    assert!(!names_below(&repo.join("readers")).is_empty(), "{out}");
    wait_until(TIMEOUT, "the standby to serve read-only queries", || {
        Ok(standby
            .psql("SELECT pg_is_in_recovery()")
            .map(|r| r == "t")
            .unwrap_or(false))
    })
    .unwrap();
    p.psql("INSERT INTO marks (what) VALUES ('while standing by'); UPDATE pgbench_branches SET bbalance = 7")
        .unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    wait_until(
        TIMEOUT,
        "the standby to replay the primary's new rows",
        || {
            Ok(standby
                .psql("SELECT count(*) FROM marks")
                .map(|r| r == "3")
                .unwrap_or(false))
        },
    )
    .unwrap();
    assert_eq!(count(&standby, "pgbench_accounts"), accounts);
    assert_eq!(count(&standby, "in_ts"), 50000);
    assert_eq!(
        standby
            .psql("SELECT sum(bbalance) FROM pgbench_branches")
            .unwrap(),
        (7 * scale()).to_string()
    );
    assert!(
        standby
            .psql("INSERT INTO marks (what) VALUES ('x')")
            .is_err(),
        "a standby is read-only"
    );
    assert!(standby_dir.join("standby.signal").exists());
    standby.stop().unwrap();
    // Again without --force: the standby's refusal reaches the person at the primary.
    let refused = Instant::now();
    let (code, out) = output(on_primary().args(["basebackup", "--to", "standby"]));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("is not empty") && out.contains("--force"),
        "{out}"
    );
    // at once: not after an SSH timeout spent writing into a channel nobody reads
    assert!(
        refused.elapsed() < Duration::from_secs(15),
        "{:?}",
        refused.elapsed()
    );
    assert!(
        standby_dir.join("global/pg_control").exists(),
        "the refused run touched the standby"
    );

    // 3. A corrupt backup object: a clear error, nothing that can start.
    let object = backup.join("data.tar.zst");
    let mut bytes = fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&object, bytes).unwrap();
    let corrupt_dir = ws.path().join("from_corrupt");
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&corrupt_dir)
            .args(["restore", "--tablespace-map"])
            .arg(format!(
                "{}={}/ts_corrupt",
                ts.display(),
                ws.path().display()
            )),
    );
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("backup stream") || out.contains("SHA-256"),
        "{out}"
    );
    cannot_start(&ws, &corrupt_dir);
    let (code, out) = output(walship_as_pg(&ws, &cfg).arg("verify"));
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains(&format!("PROBLEM: stored backup {id}")),
        "{out}"
    );

    // 4. A transfer killed mid-way leaves a directory that cannot start; a rerun starts over.
    let cut_dir = ws.path().join("cut");
    let mut cmd = on_primary();
    cmd.args(["basebackup", "--wal-timeout", "0", "--to", "cut"])
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_until(TIMEOUT, "the copy to be under way", || {
        Ok(common::names_below(&cut_dir).len() > 200)
    })
    .unwrap();
    // SIGKILL the whole runuser/walship tree: the restore side sees its input end.
    kill_tree(child.id());
    let _ = child.wait();
    wait_until(TIMEOUT, "the restore side to give up", || {
        Ok(!cut_dir.join("postmaster.pid").exists() && restore_gone(&cut_dir))
    })
    .unwrap();
    cannot_start(&ws, &cut_dir);
    // The rerun needs no --force: the directory is its own leftover, and it starts over.
    let (code, out) = output(on_primary().args(["basebackup", "--to", "cut"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("left by an interrupted restore"), "{out}");
    assert!(cut_dir.join("global/pg_control").exists());
    assert!(!cut_dir.join("walship-restore.incomplete").exists());

    // 5. prune removes a stored backup together with its backup history file.
    std::thread::sleep(Duration::from_millis(1100)); // a new backup id (one per second)
    let (code, out) = output(on_primary().arg("basebackup"));
    assert_eq!(code, 0, "{out}");
    let newest = stored_backup(&repo);
    assert_ne!(newest, backup);
    let (code, out) = output(walship_as_pg(&ws, &cfg).args(["prune", "--keep-backups", "1"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("stored backups removed with their records: {id}")),
        "{out}"
    );
    assert!(
        !backup.exists(),
        "the expired backup is still there:\n{out}"
    );
    assert!(newest.join("manifest.toml").exists());
}

/// SIGKILL `pid` and its descendants (found by parent PID in /proc).
fn kill_tree(pid: u32) {
    let mut tree = vec![pid as i32];
    tree.extend(descendants(pid as i32));
    // Kill the producer (runuser, walship basebackup), not the restore it feeds: the restore
    // must notice on its own that its input ended early.
    for p in tree {
        let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("--from-stdin") {
            // SAFETY: our own child process tree, by PID.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

/// No walship restore writes into `dir` any more.
fn restore_gone(dir: &Path) -> bool {
    let needle = dir.to_str().unwrap();
    !fs::read_dir("/proc").unwrap().flatten().any(|e| {
        fs::read(e.path().join("cmdline"))
            .map(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("restore") && c.contains("--from-stdin") && c.contains(needle)
            })
            .unwrap_or(false)
    })
}
