//! Where `walship restore` may write, on a real PostgreSQL 15 primary with a tablespace: a
//! restore on the primary's own host never empties or writes into the live cluster's
//! directories, `--force` or not.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::ha::{self, TIMEOUT};
use common::{Workspace, names_below, output};

use common::walship_as_pg;

#[test]
fn restore_force_on_the_primarys_host_never_touches_its_live_tablespace() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let ts = ws.mkdir("ts");
    let cfg = ha::config(&ws, &repo, "");
    let p = ha::primary(&ws, &cfg);
    p.psql(&format!("CREATE TABLESPACE ts LOCATION '{}'", ts.display()))
        .unwrap();
    p.psql(
        "CREATE TABLE in_ts (id int) TABLESPACE ts; \
         INSERT INTO in_ts SELECT generate_series(1, 10000)",
    )
    .unwrap();
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 0, "{out}");
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    p.psql("CHECKPOINT").unwrap();
    let before = names_below(&ts);
    assert!(
        std::fs::read_dir(&ts)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("PG_")),
        "no PG_<version>_ directory in the tablespace"
    );
    assert!(!before.is_empty());

    // The point-in-time restore next to the primary: the tablespace defaults to its old place.
    let new = ws.path().join("new");
    ws.tools.make_dir(&new).unwrap();
    ws.tools.write_file(&new.join("old_file"), "x").unwrap();
    for force in [true, false] {
        let mut c = walship_as_pg(&ws, &cfg);
        c.arg("--pgdata").arg(&new).arg("restore");
        if force {
            c.arg("--force");
        }
        let (code, out) = output(&mut c);
        assert_eq!(code, 4, "force={force}: {out}");
        assert!(out.contains(&ts.display().to_string()), "{out}");
        assert!(out.contains("--tablespace-map"), "{out}");
        assert!(!out.contains("removing"), "{out}");
        assert_eq!(
            names_below(&ts),
            before,
            "force={force}: the live tablespace changed"
        );
        assert!(
            new.join("old_file").exists(),
            "the refused restore emptied its data directory"
        );
    }
    assert_eq!(p.psql("SELECT count(*) FROM in_ts").unwrap(), "10000");

    // With the tablespace somewhere new, --force goes ahead.
    let moved = ws.path().join("ts_new");
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&new)
            .args(["restore", "--force", "--tablespace-map"])
            .arg(format!("{}={}", ts.display(), moved.display())),
    );
    assert_eq!(code, 0, "{out}");
    assert!(!new.join("old_file").exists());
    let link = std::fs::read_dir(new.join("pg_tblspc"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(std::fs::read_link(link).unwrap(), moved);
    assert_eq!(names_below(&ts), before);
    assert_eq!(p.psql("SELECT count(*) FROM in_ts").unwrap(), "10000");
}

/// postgres itself, without pg_ctl (which puts the data directory in a shell command line in
/// double quotes, where `$HOME` and `"` cannot survive); stopped by the PID in postmaster.pid.
struct Postmaster {
    child: std::process::Child,
    pgdata: std::path::PathBuf,
}

impl Postmaster {
    fn start(ws: &Workspace, pgdata: &Path, log: &Path) -> Postmaster {
        let log = std::fs::File::create(log).unwrap();
        let child = ws
            .tools
            .command("postgres")
            .arg("-D")
            .arg(pgdata)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Postmaster {
            child,
            pgdata: pgdata.to_path_buf(),
        }
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.pgdata.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            // SAFETY: a signal to the postmaster this test started (fast shutdown).
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let _ = ha::wait_exit(&mut self.child, TIMEOUT, "the postmaster to stop");
    }
}

#[test]
fn a_restore_command_survives_quotes_percent_dollar_backslash_and_line_breaks_in_paths() {
    let ws = Workspace::new();
    let odd = ws.path().join("it's \"a\" 100% $HOME\\dir");
    ws.tools.make_dir(&odd).unwrap();
    // %p and %f in the repository's name: PostgreSQL would put its own paths there
    let repo = odd.join("repo\n%p %f 'x'");
    ws.tools.make_dir(&repo).unwrap();
    let cfg = ws.path().join("walship.toml");
    ws.tools
        .write_file(
            &cfg,
            &format!(
                "repo = {}\nworker_idle_timeout = 2\n",
                toml::Value::String(repo.display().to_string())
            ),
        )
        .unwrap();
    let p = ha::primary(&ws, &cfg);
    let ts = ws.mkdir("ts");
    p.psql(&format!("CREATE TABLESPACE ts LOCATION '{}'", ts.display()))
        .unwrap();
    p.psql("CREATE TABLE in_ts TABLESPACE ts AS SELECT generate_series(1, 1000) AS id")
        .unwrap();
    ha::basebackup(&ws, &cfg, &p);
    p.psql("CREATE TABLE after_backup AS SELECT 42 AS x")
        .unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();

    // the restored server's restore_command runs this copy of walship, at an odd path too
    let bin = odd.join("walship");
    std::fs::copy(ws.walship_bin(), &bin).unwrap();
    ws.tools.chown(&bin).unwrap();
    let pgdata = odd.join("pgdata");
    let port = walship::pg::cluster::free_port().unwrap();
    let socket = ws.mkdir("sock");
    // a --set value that tries to add a setting of its own
    let prefix = "it's \"a\" 100% $HOME\\dir\nlisten_addresses = '*'";
    let mut restore = ws.tools.command(bin.to_str().unwrap());
    restore
        .env_remove("WALSHIP_CONFIG")
        .arg("--config")
        .arg(&cfg)
        .arg("--pgdata")
        .arg(&pgdata)
        .args(["restore", "--tablespace-map"])
        // the tablespace_map PostgreSQL reads at startup holds this path, escaped its way
        .arg(format!(
            "{}={}",
            ts.display(),
            odd.join("ts\\new\nline").display()
        ))
        .arg("--set")
        .arg(format!("port={port}"))
        .arg("--set")
        .arg(format!("unix_socket_directories={}", socket.display()))
        .arg("--set")
        .arg(format!("log_line_prefix={prefix}"))
        .stdin(Stdio::null());
    let (code, out) = output(&mut restore);
    assert_eq!(code, 0, "{out}");
    let _pm = Postmaster::start(&ws, &pgdata, &ws.path().join("odd.log"));
    let mut c =
        walship::pg::cluster::Cluster::existing(&ws.tools, &ws.path().join("q"), port).unwrap();
    c.data = socket.clone();
    c.socket_dir = socket.clone();
    let opened = walship::pg::cluster::wait_until(TIMEOUT, "the restored copy to open", || {
        Ok(c.psql("SELECT pg_is_in_recovery()")
            .map(|r| r == "f")
            .unwrap_or(false))
    });
    let log = std::fs::read_to_string(ws.path().join("odd.log")).unwrap_or_default();
    opened.unwrap_or_else(|e| panic!("{e}\n{log}"));
    // the WAL after the backup came through restore_command, from the odd repository
    assert_eq!(c.psql("SELECT x FROM after_backup").unwrap(), "42", "{log}");
    assert_eq!(c.psql("SHOW log_line_prefix").unwrap(), prefix);
    assert_eq!(
        c.psql("SELECT count(*) FROM in_ts").unwrap(),
        "1000",
        "{log}"
    );
    let link = std::fs::read_dir(pgdata.join("pg_tblspc"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(std::fs::read_link(link).unwrap(), odd.join("ts\\new\nline"));
    assert_eq!(c.psql("SHOW listen_addresses").unwrap(), "127.0.0.1");
}

#[test]
fn restore_stops_at_a_restore_point_then_promotes_or_pauses_as_asked() {
    use walship::pg::cluster::{Cluster, free_port, wait_until};
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = ha::config(&ws, &repo, "");
    let p = ha::primary(&ws, &cfg);
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 0, "{out}");
    p.psql("CREATE TABLE marks (n int); INSERT INTO marks VALUES (1)")
        .unwrap();
    p.psql("SELECT pg_create_restore_point('before_two')")
        .unwrap();
    p.psql("INSERT INTO marks VALUES (2)").unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();

    // the flags that only make sense with a target are refused without one
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(ws.path().join("nowhere"))
            .args(["restore", "--target-action", "pause"]),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("need a target"), "{out}");

    for (name, action, in_recovery) in [("promoted", "promote", "f"), ("paused", "pause", "t")] {
        let dir = ws.path().join(name);
        let c = Cluster::existing(&ws.tools, &dir, free_port().unwrap()).unwrap();
        let (code, out) = output(
            walship_as_pg(&ws, &cfg)
                .arg("--pgdata")
                .arg(&dir)
                .args([
                    "restore",
                    "--target-name",
                    "before_two",
                    "--target-action",
                    action,
                ])
                .arg("--set")
                .arg(format!("port={}", c.port))
                .arg("--set")
                .arg(format!(
                    "unix_socket_directories={}",
                    c.socket_dir.display()
                ))
                .arg("--start"),
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("recovery_target_name before_two"), "{out}");
        let settled = wait_until(TIMEOUT, "the copy to reach its target", || {
            Ok(match action {
                "pause" => c
                    .psql("SELECT pg_get_wal_replay_pause_state()")
                    .is_ok_and(|s| s == "paused"),
                _ => c.psql("SELECT pg_is_in_recovery()").is_ok_and(|s| s == "f"),
            })
        });
        settled.unwrap_or_else(|e| {
            panic!(
                "{e}\n{}",
                std::fs::read_to_string(&c.log).unwrap_or_default()
            )
        });
        assert_eq!(c.psql("SELECT pg_is_in_recovery()").unwrap(), in_recovery);
        // the restore point lies between the two inserts: the copy has the first only
        assert_eq!(
            c.psql("SELECT string_agg(n::text, ',') FROM marks")
                .unwrap(),
            "1"
        );
        let mut stop = ws.tools.command("pg_ctl");
        stop.args(["stop", "-w", "-m", "fast", "-D"]).arg(&dir);
        let _ = stop.status();
    }
}
