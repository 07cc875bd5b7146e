//! Fault drills, part two: full disks and bad links. Like `drills.rs`, each prints
//! `DRILL | fault | tried | survived | bytes lost` lines for the README's table.
//!
//! - a repository on a real, small tmpfs that fills up (local and over SSH): pushes fail with
//!   exit 3 and the disk-full hint, leave nothing half-written, and succeed once space returns;
//! - a real standby whose pg_wal is on a full tmpfs: `walship fetch` fails cleanly, PostgreSQL
//!   waits, and the standby catches up once space returns;
//! - an SSH link throttled to 300 KB/s (pushes and fetches complete), and a link that stalls
//!   mid-transfer (the call gives up within its configured timeout; nothing partial is visible;
//!   the retry succeeds).
//!
//! Mounting tmpfs needs root: those drills are `#[ignore]`d, so that cargo counts them as ignored
//! for other users, and tests/run runs them as root (CI does). `WALSHIP_DRILLS=full` runs more segments.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::drill::{full, push_segment, report, seg};
use common::ha::{self, TIMEOUT};
use common::*;
use walship::pg::cluster::wait_until;

const SYSID: u64 = 7_400_000_000_000_000_011;

/// A 1 MiB segment with noise all through it: it does not compress, so it fills a disk.
fn incompressible_segment(pg_wal: &Path, n: u64) {
    let mut b = segment_bytes(&seg(n), SYSID, MIB, n);
    let tail = noise(n.wrapping_mul(0x9e37_79b9) | 1, MIB as usize / 2);
    b[MIB as usize / 2..].copy_from_slice(&tail);
    fs::create_dir_all(pg_wal).unwrap();
    fs::write(pg_wal.join(seg(n)), b).unwrap();
}

/// Temporary (dot) files anywhere below `dir`: a failed writer must not leave them behind
/// on a full disk, where they would keep it full.
fn temporaries(dir: &Path) -> Vec<String> {
    names_below(dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// Push segments 1..=n into a repository on a tmpfs that fills up, then grow it and push the
/// rest. `walship` builds a command for the repository.
fn fill_the_repository(
    what: &str,
    fs_: &Tmpfs,
    repo: &Path,
    pg_wal: &Path,
    n: u64,
    walship: &dyn Fn() -> Command,
) {
    let (mut tried, mut survived, mut refused) = (0, 0, 0);
    let mut failed = Vec::new();
    for i in 1..=n {
        incompressible_segment(pg_wal, i);
        let (code, err) = output(push_segment(&mut walship(), i));
        match code {
            0 => {}
            3 if err.contains("No space left on device") || err.contains("failure") => {
                refused += 1;
                failed.push(i);
                assert!(err.contains("HINT") || what.contains("SSH"), "{err}");
            }
            _ => panic!("{what}: push {} exited {code}: {err}", seg(i)),
        }
        let temps = temporaries(repo);
        assert!(
            temps.is_empty(),
            "{what}: temporaries left on a full disk: {temps:?}"
        );
    }
    assert!(refused > 0, "{what}: the file system never filled up");
    let (code, out) = output(walship().arg("verify"));
    assert_eq!(code, 0, "{what}: verify on the full repository: {out}");
    // space returns; PostgreSQL's retries go through
    fs_.resize(64 * 1024);
    for i in &failed {
        let (code, err) = output(push_segment(&mut walship(), *i));
        assert_eq!(code, 0, "{what}: retry of {}: {err}", seg(*i));
    }
    let mut lost = 0;
    for i in 1..=n {
        tried += 1;
        let dest = pg_wal.parent().unwrap().join("back");
        let (code, _) = output(walship().args(["fetch", &seg(i)]).arg(&dest));
        let want = fs::read(pg_wal.join(seg(i))).unwrap();
        if code == 0 && fs::read(&dest).unwrap() == want {
            survived += 1;
        } else {
            lost += want.len() as u64;
        }
    }
    let (code, out) = output(walship().arg("verify"));
    assert_eq!(code, 0, "{what}: verify after space returned: {out}");
    report(
        &format!(
            "{what}: repository on a full tmpfs ({refused} pushes refused with exit 3, no temporary left; all pushed once space returned)"
        ),
        tried,
        survived,
        lost,
    );
    assert_eq!((survived, lost), (tried, 0));
}

#[test]
#[ignore = "needs root: mounts a tmpfs (tests/run runs it as root, as CI does)"]
fn drill_full_repository_file_system_local_and_ssh() {
    let n = if full() { 40 } else { 24 };
    let ws = Workspace::new();
    let work = ws.mkdir("work");
    let pgdata = work.join("pgdata");
    let pg_wal = pgdata.join("pg_wal");
    // local: 16 MiB holds about 15 of the 1 MiB segments
    let local = Tmpfs::mount(&ws, "repo_local", 16 * 1024);
    let repo = local.path.clone();
    let local_cmd = || {
        let mut c = walship();
        c.arg("--repo")
            .arg(&repo)
            .args(["--push-ahead", "0", "--prefetch", "0"])
            .current_dir(&pgdata);
        c
    };
    fill_the_repository("local", &local, &repo, &pg_wal, n, &local_cmd);

    // SSH: the same through sftp-server, which reports the full disk as an SFTP failure
    let sshd = Sshd::start(&ws, "sshd");
    let remote = Tmpfs::mount(&ws, "repo_ssh", 16 * 1024);
    let config = sshd.config(&ws, &remote.path, "ssh.toml");
    let ssh_cmd = || {
        let mut c = walship();
        c.arg("--config")
            .arg(&config)
            .args(["--push-ahead", "0", "--prefetch", "0"])
            .current_dir(&pgdata);
        c
    };
    fill_the_repository("SSH", &remote, &remote.path, &pg_wal, n, &ssh_cmd);
}

#[test]
#[ignore = "needs root: mounts a tmpfs (tests/run runs it as root, as CI does)"]
fn drill_standby_pg_wal_full() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = ha::config(&ws, &repo, "");
    let mut p = ha::primary(&ws, &cfg);
    let mut s = ha::standby(&ws, &p, &cfg, false);
    // The standby's pg_wal on a tmpfs nearly filled by ballast. Big enough, once the ballast is
    // gone, for the segments PostgreSQL keeps after restoring them (until its next restartpoint):
    // at 8 MiB those alone filled it again and recovery could not go on, walship or not.
    let wal_fs = Tmpfs::mount(&ws, "standby_wal", 64 * 1024);
    for e in fs::read_dir(s.data.join("pg_wal")).unwrap().flatten() {
        let _ = Command::new("cp")
            .arg("-a")
            .arg(e.path())
            .arg(&wal_fs.path)
            .status();
    }
    fs::remove_dir_all(s.data.join("pg_wal")).unwrap();
    std::os::unix::fs::symlink(&wal_fs.path, s.data.join("pg_wal")).unwrap();
    s.start().unwrap();
    wait_until(TIMEOUT, "the standby to accept connections", || {
        Ok(s.psql("SELECT 1").is_ok())
    })
    .unwrap();
    let ballast = wal_fs.path.join("ballast");
    {
        // fill it: whatever is left, minus less than one segment
        let mut f = fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    ws.tools.chown(&ballast).unwrap();
    let before: u64 = s
        .psql("SELECT count(*) FROM pgbench_history")
        .unwrap()
        .parse()
        .unwrap();
    p.pgbench(&["-t", "300", "-c", "2"]).unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    let want: u64 = p
        .psql("SELECT count(*) FROM pgbench_history")
        .unwrap()
        .parse()
        .unwrap();
    // recovery cannot proceed: every fetch fails for want of space, and the standby waits
    std::thread::sleep(Duration::from_secs(3));
    let stuck: u64 = s
        .psql("SELECT count(*) FROM pgbench_history")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        stuck < want,
        "the standby replayed with a full pg_wal ({stuck} of {want})"
    );
    assert!(s.is_running(), "a full pg_wal stopped the standby");
    // Temporaries of fetches in flight come and go (PostgreSQL retries every 200 ms); one that
    // is still there 1.5 s later was left behind.
    let temporaries = || -> Vec<String> {
        names_below(&wal_fs.path)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    let first = temporaries();
    std::thread::sleep(Duration::from_millis(1500));
    let temps: Vec<String> = temporaries()
        .into_iter()
        .filter(|n| first.contains(n))
        .collect();
    assert!(
        temps.is_empty(),
        "partial files left in the full pg_wal: {temps:?}\n{}",
        String::from_utf8_lossy(
            &Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "date +%T.%N; ls -laR --time-style=+%T.%N {}; ps -eo pid,etime,args | grep -E 'walship (prefetch|fetch|--config)' | grep -v grep",
                    wal_fs.path.display()
                ))
                .output()
                .unwrap()
                .stdout
        )
    );
    // space returns: the standby catches up by itself
    fs::remove_file(&ballast).unwrap();
    if let Err(e) = wait_until(
        TIMEOUT,
        "the standby to catch up once space returned",
        || {
            Ok(s.psql("SELECT count(*) FROM pgbench_history")
                .map(|c| c == want.to_string())
                .unwrap_or(false))
        },
    ) {
        let log = fs::read_to_string(&s.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        let space = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "df -k {p}; du -ak {p} | sort -n | tail -15",
                p = wal_fs.path.display()
            ))
            .output()
            .unwrap();
        panic!(
            "{e}\n{}\nstandby log (last lines, newest first):\n{}",
            String::from_utf8_lossy(&space.stdout),
            tail.join("\n")
        );
    }
    let log = fs::read_to_string(&s.log).unwrap_or_default();
    let said_full = log.contains("No space left on device");
    report(
        &format!(
            "standby pg_wal full (tmpfs): fetches failed with exit 3 and the disk-full error in PostgreSQL's log ({said_full}), the standby stayed up at {stuck} of {want} rows ({before} before), {} temporaries, caught up once space returned",
            temps.len()
        ),
        1,
        1,
        0,
    );
    assert!(said_full, "PostgreSQL's log does not show why fetch failed");
    s.stop().unwrap();
    p.stop().unwrap();
}

/// A loopback TCP proxy to `target`, throttled to `rate` bytes per second each way (0: no
/// limit), which can be made to stall: it then holds every byte until unstalled.
struct Proxy {
    port: u16,
    stall: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: u16, rate: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stall = Arc::new(AtomicBool::new(false));
        let st = stall.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let st = st.clone();
                    std::thread::spawn(move || pump(&mut from, &mut to, rate, &st));
                }
            }
        });
        Proxy { port, stall }
    }
}

fn pump(from: &mut TcpStream, to: &mut TcpStream, rate: u64, stall: &AtomicBool) {
    let mut buf = vec![0u8; 8192];
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while stall.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[test]
fn drill_throttled_and_stalled_ssh_links() {
    let ws = Workspace::new();
    let sshd = Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    let work = ws.mkdir("work");
    let pgdata = work.join("pgdata");
    let pg_wal = pgdata.join("pg_wal");
    let n = if full() { 6 } else { 3 };
    for i in 1..=n * 2 {
        write_segment(&pg_wal, &seg(i), SYSID, i); // half noise: about 0.5 MiB on the wire
    }
    let timeout = 3;
    let through = |proxy: &Proxy, name: &str| -> PathBuf {
        let known = ws.path().join(format!("{name}.known_hosts"));
        fs::write(
            &known,
            format!("[127.0.0.1]:{} {}\n", proxy.port, sshd.host_pub),
        )
        .unwrap();
        let p = ws.path().join(format!("{name}.toml"));
        fs::write(
            &p,
            format!(
                "repo = 'ssh://{}@127.0.0.1:{}{}'\nssh_key = '{}'\nknown_hosts = '{}'\nssh_timeout = {timeout}\n\
                 push_ahead = 0\nprefetch = 0\nfetch_retries = 0\n",
                sshd.user,
                proxy.port,
                repo.display(),
                sshd.client_key.display(),
                known.display()
            ),
        )
        .unwrap();
        p
    };
    let cmd = |cfg: &Path| {
        let mut c = walship();
        c.arg("--config").arg(cfg).current_dir(&pgdata);
        c
    };

    // 1. throttled to 300 KB/s: slow, but every transfer completes and checks out
    let slow = Proxy::start(sshd.port, 300_000);
    let cfg = through(&slow, "slow");
    let (mut tried, mut survived) = (0, 0);
    let started = Instant::now();
    for i in 1..=n {
        tried += 2;
        let (code, err) = output(push_segment(&mut cmd(&cfg), i));
        survived += u64::from(code == 0);
        assert_eq!(code, 0, "throttled push: {err}");
        let dest = work.join(format!("slow-{i}"));
        let (code, err) = output(cmd(&cfg).args(["fetch", &seg(i)]).arg(&dest));
        assert_eq!(code, 0, "throttled fetch: {err}");
        let same = fs::read(&dest).unwrap() == fs::read(pg_wal.join(seg(i))).unwrap();
        survived += u64::from(same);
    }
    let secs = started.elapsed().as_secs_f64();
    report(
        &format!(
            "SSH link throttled to 300 KB/s: {n} pushes and {n} fetches of 1 MiB segments completed, identical, in {secs:.1} s"
        ),
        tried,
        survived,
        0,
    );
    assert!(secs > 1.0, "the throttle did not throttle ({secs} s)");

    // 2. a link that stalls mid-transfer: the call gives up within its timeout, exit 3,
    //    nothing visible; the retry (PostgreSQL's next call) succeeds
    let stalling = Proxy::start(sshd.port, 300_000);
    let cfg = through(&stalling, "stall");
    let (mut tried, mut survived) = (0, 0);
    let mut longest = Duration::ZERO;
    for i in n + 1..=n * 2 {
        tried += 2;
        let child = push_segment(&mut cmd(&cfg), i)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        stalling.stall.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let out = child.wait_with_output().unwrap();
        let took = t.elapsed();
        longest = longest.max(took);
        stalling.stall.store(false, Ordering::Relaxed);
        let first = out.status.code();
        let visible = names_below(&repo).contains(&seg(i));
        let retry = output(push_segment(&mut cmd(&cfg), i));
        let ok = (first == Some(0) || (first == Some(3) && !visible)) && retry.0 == 0;
        if !ok {
            eprintln!(
                "stalled push {}: first {first:?} (visible {visible}) after {took:?}: {}; retry: {}",
                seg(i),
                String::from_utf8_lossy(&out.stderr),
                retry.1
            );
        }
        survived += u64::from(ok);

        let dest = work.join(format!("stall-{i}"));
        let child = cmd(&cfg)
            .args(["fetch", &seg(i)])
            .arg(&dest)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stalling.stall.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let out = child.wait_with_output().unwrap();
        longest = longest.max(t.elapsed());
        stalling.stall.store(false, Ordering::Relaxed);
        let want = fs::read(pg_wal.join(seg(i))).unwrap();
        let first_ok = match out.status.code() {
            Some(0) => fs::read(&dest).unwrap() == want,
            _ => !dest.exists(),
        };
        let retry_ok = output(cmd(&cfg).args(["fetch", &seg(i)]).arg(&dest)).0 == 0
            && fs::read(&dest).unwrap() == want;
        survived += u64::from(first_ok && retry_ok);
    }
    report(
        &format!(
            "SSH link stalled mid-transfer (ssh_timeout {timeout} s): calls gave up after at most {:.1} s, exit 3, nothing partial visible; retries succeeded",
            longest.as_secs_f64()
        ),
        tried,
        survived,
        0,
    );
    assert_eq!(survived, tried);
    assert!(
        longest < Duration::from_secs(timeout * 5),
        "a stalled call hung for {longest:?} (ssh_timeout {timeout} s)"
    );
    let (code, out) = verify(&repo);
    assert_eq!(code, 0, "{out}");
}
