//! Primary/standby pairs on real PostgreSQL for the failover tests and the drills: a primary
//! archiving through walship, a standby restoring (and optionally streaming) from it, and the
//! small tools the tests drive them with.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Workspace, names_below};
use walship::pg::cluster::{Cluster, free_port};

pub const TIMEOUT: Duration = Duration::from_secs(120);

pub fn conninfo(c: &Cluster) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres",
        c.socket_dir.display(),
        c.port
    )
}

/// The walship copy PostgreSQL runs, with no configuration from the machine.
pub fn walship_copy(ws: &Workspace) -> Command {
    let mut c = Command::new(ws.walship_bin());
    super::without_walship_env(&mut c);
    c.stdin(Stdio::null());
    c
}

/// A primary archiving through walship (config file `config`), with pgbench tables.
pub fn primary(ws: &Workspace, config: &Path) -> Cluster {
    primary_with(ws, config, &ws.walship_bin())
}

/// The same, archiving through `program` (walship, or a wrapper that sets its environment).
pub fn primary_with(ws: &Workspace, config: &Path, program: &Path) -> Cluster {
    let mut p = Cluster::init(
        &ws.tools,
        &ws.path().join("primary"),
        free_port().unwrap(),
        1,
    )
    .unwrap();
    p.append_conf(&format!(
        "archive_mode = on\narchive_command = '{} --config {} push %p %f'\nwal_log_hints = on\n",
        program.display(),
        config.display()
    ))
    .unwrap();
    p.start().unwrap();
    p.pgbench(&["-i", "-s", "1", "-q"]).unwrap();
    p
}

/// A standby from a base backup of `p`: restores through walship, archives through walship once
/// promoted, streams from `p` when `stream`.
pub fn standby(ws: &Workspace, p: &Cluster, config: &Path, stream: bool) -> Cluster {
    standby_in(ws, p, config, stream, "standby")
}

/// The same, in the workspace directory `name` (for several standbys of one primary).
pub fn standby_in(ws: &Workspace, p: &Cluster, config: &Path, stream: bool, name: &str) -> Cluster {
    let dir = ws.path().join(name);
    p.base_backup(&dir).unwrap();
    let s = Cluster::existing(&ws.tools, &dir, free_port().unwrap()).unwrap();
    let bin = ws.walship_bin();
    s.append_conf(&format!(
        "port = {}\nunix_socket_directories = '{}'\nhot_standby = on\nwal_retrieve_retry_interval = '200ms'\n\
         restore_command = '{} --config {} fetch %f %p'\n{}",
        s.port,
        s.socket_dir.display(),
        bin.display(),
        config.display(),
        if stream { format!("primary_conninfo = '{}'\n", conninfo(p)) } else { String::new() }
    ))
    .unwrap();
    ws.tools
        .write_file(&dir.join("standby.signal"), "")
        .unwrap();
    s
}

pub fn config(ws: &Workspace, repo: &Path, extra: &str) -> PathBuf {
    config_named(ws, repo, "walship.toml", extra)
}

/// A configuration file `name` in the workspace (several per test: file-only settings).
pub fn config_named(ws: &Workspace, repo: &Path, name: &str, extra: &str) -> PathBuf {
    let path = ws.path().join(name);
    ws.tools
        .write_file(
            &path,
            &format!(
                "repo = '{}'\nworker_idle_timeout = 2\n{extra}",
                repo.display()
            ),
        )
        .unwrap();
    path
}

pub fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Insert a row and return (id, the WAL position after its commit).
pub fn tick(p: &Cluster) -> Option<(u64, u64)> {
    let mut cmd = p.tools.command("psql");
    cmd.args([
        "-X", "-A", "-t", "-q", "-U", "postgres", "-d", "postgres", "-h",
    ])
    .arg(&p.socket_dir)
    .arg("-p")
    .arg(p.port.to_string())
    .args([
        "-c",
        "INSERT INTO ticks DEFAULT VALUES RETURNING id",
        "-c",
        "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn",
    ]);
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    Some((
        lines.next()?.trim().parse().ok()?,
        lines.next()?.trim().parse().ok()?,
    ))
}

/// walship (the copy PostgreSQL runs) with the test's configuration file and a data directory.
pub fn walship_for(ws: &Workspace, cfg: &Path, pgdata: &Path) -> Command {
    let mut c = walship_copy(ws);
    c.arg("--config").arg(cfg).arg("--pgdata").arg(pgdata);
    c
}

/// Make a standby archive through walship once it is promoted (archive_mode = on archives only
/// on a primary).
pub fn archive_once_promoted(ws: &Workspace, s: &Cluster, cfg: &Path) {
    s.append_conf(&format!(
        "archive_mode = on\narchive_command = '{} --config {} push %p %f'\n",
        ws.walship_bin().display(),
        cfg.display()
    ))
    .unwrap();
}

/// Load `p` with pgbench and numbered rows (table `ticks`) for `load`, then SIGKILL its
/// postmaster. Returns every row inserted as (id, WAL position after its commit), and the
/// moment of the kill.
pub fn load_then_kill(p: &Cluster, load: Duration) -> (Vec<(u64, u64)>, Instant) {
    let mut bench = p.tools.command("pgbench");
    bench
        .args(["-n", "-c", "2", "-T", "60", "-U", "postgres", "-h"])
        .arg(&p.socket_dir)
        .arg("-p")
        .arg(p.port.to_string())
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut bench = bench.spawn().unwrap();
    let started = Instant::now();
    let mut ticks = Vec::new();
    while started.elapsed() < load {
        if let Some(t) = tick(p) {
            ticks.push(t);
        }
    }
    let pid: i32 = fs::read_to_string(p.data.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: the PID of the test's own postmaster, read from its postmaster.pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = Instant::now();
    let _ = bench.kill();
    let _ = bench.wait();
    (ticks, killed)
}

/// The end (byte position) of the last timeline-1 segment in a repository of 1 MiB segments.
pub fn archived_end_of_timeline_1(repo: &Path) -> u64 {
    names_below(&repo.join("wal"))
        .into_iter()
        .filter_map(|name| {
            (name.len() == 24 && name.starts_with("00000001")).then(|| {
                let segno = u64::from_str_radix(&name[8..16], 16).unwrap() * 4096
                    + u64::from_str_radix(&name[16..24], 16).unwrap();
                (segno + 1) << 20
            })
        })
        .max()
        .unwrap_or(0)
}

/// `walship watch` beside standby `s`, failing over from primary `p` after `after_secs` with
/// `fence` as the fence command; its log goes to `stderr`.
pub fn spawn_failover_watch(
    ws: &Workspace,
    cfg: &Path,
    s: &Cluster,
    p: &Cluster,
    after_secs: u64,
    fence: &str,
    stderr: Stdio,
) -> Child {
    walship_for(ws, cfg, &s.data)
        .arg("watch")
        .arg("--failover-primary")
        .arg(conninfo(p))
        .arg("--failover-after")
        .arg(after_secs.to_string())
        .arg("--fence-command")
        .arg(fence)
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Of the rows in `ticks` (id, WAL position after its commit), those whose commit lay within
/// the archive (`archived_end`), and of these the ones missing from `s`'s `ticks` table.
pub fn archived_rows_lost(
    s: &Cluster,
    ticks: &[(u64, u64)],
    archived_end: u64,
) -> (Vec<u64>, Vec<u64>) {
    let present: std::collections::HashSet<u64> = s
        .psql("SELECT id FROM ticks")
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let must: Vec<u64> = ticks
        .iter()
        .filter(|(_, lsn)| *lsn <= archived_end)
        .map(|(id, _)| *id)
        .collect();
    let lost = must
        .iter()
        .filter(|id| !present.contains(id))
        .copied()
        .collect();
    (must, lost)
}

/// `walship basebackup` of `p` into the repository of `cfg`, as the PostgreSQL user; it must
/// succeed.
pub fn basebackup(ws: &Workspace, cfg: &Path, p: &Cluster) {
    let (code, out) = super::output(
        super::walship_as_pg(ws, cfg)
            .arg("--pgdata")
            .arg(&p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 0, "{out}");
}

/// `walship restore --start` of the newest stored backup into the new directory `dir`, with
/// `walship` (the binary with its configuration and environment), and wait until the copy has
/// replayed the archive and opened read-write.
pub fn restore_and_open(ws: &Workspace, mut walship: Command, dir: &Path) -> Cluster {
    let mut r = Cluster::existing(&ws.tools, dir, free_port().unwrap()).unwrap();
    let (code, out) = super::output(
        walship
            .arg("--pgdata")
            .arg(dir)
            .args(["restore", "--set"])
            .arg(format!("port={}", r.port))
            .arg("--set")
            .arg(format!(
                "unix_socket_directories={}",
                r.socket_dir.display()
            ))
            .arg("--start"),
    );
    assert_eq!(code, 0, "{out}");
    r.adopt_running();
    walship::pg::cluster::wait_until(TIMEOUT, "the restored copy to open", || {
        Ok(r.psql("SELECT pg_is_in_recovery()").ok().as_deref() == Some("f"))
    })
    .unwrap();
    r
}
