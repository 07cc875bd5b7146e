//! The primary's virtual IP moves with the primary role (contrib/walship-vip as on_promote hook
//! and as part of the fence), on real PostgreSQL in network namespaces this test makes: a node
//! for the primary, one for the standby, one for a client, joined by a bridge in a fourth. The
//! addresses are private and exist only inside these namespaces. A client that connects through
//! the VIP reaches the new primary after a failover, and at no moment do both nodes hold it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::ha::*;
use common::*;
use walship::pg::cluster::{Cluster, free_port, wait_until};

const VIP: &str = "192.168.77.100";

/// The namespaces, removed on drop (after the test stopped what ran in them).
struct Net {
    prefix: String,
}

impl Net {
    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    fn ip(&self, node: &str, args: &str) {
        let mut c = Command::new("ip");
        c.arg("-n").arg(self.ns(node)).args(args.split_whitespace());
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "ip -n {} {args}: {}",
            self.ns(node),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn new() -> Net {
        let net = Net {
            prefix: format!("walship{}", std::process::id()),
        };
        for node in ["br", "a", "b", "c"] {
            let ok = Command::new("ip")
                .args(["netns", "add", &net.ns(node)])
                .status()
                .unwrap();
            assert!(ok.success(), "ip netns add (needs root)");
        }
        net.ip("br", "link add br0 type bridge");
        net.ip("br", "link set br0 up");
        for (i, node) in ["a", "b", "c"].iter().enumerate() {
            let peer = format!("to-{node}");
            net.ip(
                "br",
                &format!(
                    "link add {peer} type veth peer name eth0 netns {}",
                    net.ns(node)
                ),
            );
            net.ip("br", &format!("link set {peer} master br0"));
            net.ip("br", &format!("link set {peer} up"));
            net.ip(node, &format!("addr add 192.168.77.{}/24 dev eth0", i + 1));
            net.ip(node, "link set eth0 up");
            net.ip(node, "link set lo up");
        }
        net
    }

    /// Which of the two database nodes hold the VIP right now.
    fn holders(&self) -> (bool, bool) {
        let has = |node: &str| {
            let out = Command::new("ip")
                .args(["-n", &self.ns(node), "-o", "addr", "show", "dev", "eth0"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/24 "))
        };
        (has("a"), has("b"))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for node in ["a", "b", "c", "br"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(node)])
                .status();
        }
    }
}

/// pg_ctl start for `c`, inside namespace `ns`.
fn start_in(ns: &str, c: &Cluster) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    let inner = c.tools.command("pg_ctl");
    cmd.arg(inner.get_program()).args(inner.get_args());
    cmd.args(["start", "-w", "-t", "120", "-D"])
        .arg(&c.data)
        .arg("-l")
        .arg(&c.log)
        .current_dir(&c.data)
        .stdout(Stdio::null());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pg_ctl start in {ns}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(&c.log).unwrap_or_default()
    );
}

fn stop(c: &Cluster, mode: &str) {
    let mut cmd = c.tools.command("pg_ctl");
    cmd.args(["stop", "-w", "-m", mode, "-D"])
        .arg(&c.data)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _ = cmd.status();
}

/// What the client in its namespace reaches through the VIP: the data directory of the primary
/// answering there, or None.
fn through_vip(net: &Net, tools_psql: &Path, port: u16) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &net.ns("c")])
        .arg("runuser")
        .args(["-u", "postgres", "--"])
        .arg(tools_psql)
        .args(["-X", "-A", "-t", "-q", "-d"])
        .arg(format!(
            "host={VIP} port={port} user=postgres dbname=postgres connect_timeout=2"
        ))
        .args([
            "-c",
            "SELECT current_setting('data_directory') WHERE NOT pg_is_in_recovery()",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The test's stand-in for `sudo walship-vip`: walship runs hooks and the fence as the
/// PostgreSQL user (it drops root to the data directory's owner), who may not change addresses.
/// The hook writes a request file; a thread of the test (root) runs walship-vip in that node's
/// namespace and writes back its exit code.
struct Sudo {
    script: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<String>>,
}

impl Sudo {
    fn start(ws: &Workspace, net: &Net, vip_script: &Path) -> Sudo {
        let dir = ws.mkdir("sudo");
        let script = ws.path().join("sudo-vip");
        ws.tools
            .write_file(
                &script,
                &format!(
                    "#!/bin/sh\nreq={dir}/$$.$1.$2\necho \"$1 $2\" > \"$req.tmp\" && mv \"$req.tmp\" \"$req.cmd\"\n\
                     i=0\nwhile [ $i -lt 400 ]; do\n  if [ -f \"$req.done\" ]; then exit \"$(cat \"$req.done\")\"; fi\n  sleep 0.05; i=$((i+1))\ndone\nexit 3\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, prefix, vip_script) =
                (stop.clone(), net.prefix.clone(), vip_script.to_path_buf());
            std::thread::spawn(move || {
                let mut log = String::new();
                while !stop.load(Ordering::Relaxed) {
                    for e in fs::read_dir(&dir).unwrap().flatten() {
                        let path = e.path();
                        if path.extension().and_then(|x| x.to_str()) != Some("cmd") {
                            continue;
                        }
                        let req = fs::read_to_string(&path).unwrap_or_default();
                        let mut words = req.split_whitespace();
                        let (Some(node), Some(action)) = (words.next(), words.next()) else {
                            continue;
                        };
                        let code = Command::new("ip")
                            .args(["netns", "exec", &format!("{prefix}-{node}"), "sh"])
                            .arg(&vip_script)
                            .args([action, "eth0", &format!("{VIP}/24")])
                            .status()
                            .ok()
                            .and_then(|s| s.code())
                            .unwrap_or(3);
                        log += &format!("{node} {action}: {code}\n");
                        let done = path.with_extension("done");
                        fs::write(path.with_extension("tmp2"), code.to_string()).unwrap();
                        fs::rename(path.with_extension("tmp2"), done).unwrap();
                        fs::remove_file(&path).unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                log
            })
        };
        Sudo {
            script,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
#[ignore = "needs root: network namespaces (tests/run runs it as root, as CI does)"]
fn the_primary_vip_follows_the_failover_and_is_never_on_two_nodes() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "network namespaces need root (tests/run runs as root in CI)"
    );
    let net = Net::new();
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let vip_script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib/walship-vip");
    let sudo = Sudo::start(&ws, &net, &vip_script);
    let cfg = config(
        &ws,
        &repo,
        &format!("on_promote = [\"sh {} b up\"]\n", sudo.script.display()),
    );
    // one port for both: they live in different namespaces, and clients use one address
    let port = free_port().unwrap();
    let hba = "host all all 192.168.77.0/24 trust\nhost replication all 192.168.77.0/24 trust\n";
    let p = Cluster::init(&ws.tools, &ws.path().join("primary"), port, 1).unwrap();
    p.append_conf(&format!(
        "listen_addresses = '*'\narchive_mode = on\narchive_command = '{} --config {} push %p %f'\nwal_log_hints = on\n",
        ws.walship_bin().display(),
        cfg.display()
    ))
    .unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(p.data.join("pg_hba.conf"))
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(hba.as_bytes())
        })
        .unwrap();
    start_in(&net.ns("a"), &p);
    net.ip("a", &format!("addr add {VIP}/24 dev eth0"));
    p.psql("CREATE TABLE ticks (id bigserial PRIMARY KEY)")
        .unwrap();

    let sdir = ws.path().join("standby");
    p.base_backup(&sdir).unwrap();
    let s = Cluster::existing(&ws.tools, &sdir, port).unwrap();
    s.append_conf(&format!(
        "listen_addresses = '*'\nport = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n\
         wal_retrieve_retry_interval = '200ms'\nrestore_command = '{} --config {} fetch %f %p'\n\
         primary_conninfo = 'host=192.168.77.1 port={port} user=postgres'\n",
        s.socket_dir.display(),
        ws.walship_bin().display(),
        cfg.display()
    ))
    .unwrap();
    ws.tools
        .write_file(&sdir.join("standby.signal"), "")
        .unwrap();
    start_in(&net.ns("b"), &s);
    assert_eq!(
        through_vip(&net, &ws.tools.bin.join("psql"), port).as_deref(),
        Some(p.data.to_str().unwrap())
    );

    // watch both nodes' addresses for the whole failover
    let both = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (both, samples, done) = (both.clone(), samples.clone(), done.clone());
        let net = Net {
            prefix: net.prefix.clone(),
        };
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if net.holders() == (true, true) {
                    both.fetch_add(1, Ordering::Relaxed);
                }
                samples.fetch_add(1, Ordering::Relaxed);
            }
            std::mem::forget(net); // the test's own Net removes the namespaces
        })
    };

    let log = ws.path().join("watch.log");
    let mut watch = Command::new("ip");
    watch.args(["netns", "exec", &net.ns("b")]);
    let inner = walship_for(&ws, &cfg, &s.data);
    watch.arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => watch.env(k, v),
            None => watch.env_remove(k),
        };
    }
    let mut watch = watch
        .args(["watch", "--primary"])
        .arg(format!(
            "host=192.168.77.1 port={port} user=postgres dbname=postgres"
        ))
        .args(["--failover-after", "2", "--fence-command"])
        .arg(format!("sh {} a down", sudo.script.display()))
        .stdin(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (_ticks, killed) = load_then_kill(&p, Duration::from_secs(3));
    let code = wait_exit(&mut watch, TIMEOUT, "watch");
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    let reached = wait_until(
        Duration::from_secs(30),
        "the client to reach the new primary through the VIP",
        || {
            Ok(
                through_vip(&net, &ws.tools.bin.join("psql"), port).as_deref()
                    == Some(s.data.to_str().unwrap()),
            )
        },
    );
    let rto = killed.elapsed();
    done.store(true, Ordering::Relaxed);
    monitor.join().unwrap();
    let sudo_log = sudo.stop();
    let holders = net.holders();
    stop(&s, "fast");
    stop(&p, "immediate");
    reached.unwrap_or_else(|e| panic!("{e}\n{text}"));
    println!(
        "VIP failover: the client reached the new primary {:.1} s after the kill; {} address samples",
        rto.as_secs_f64(),
        samples.load(Ordering::Relaxed)
    );
    assert_eq!(holders, (false, true), "{text}\n{sudo_log}");
    assert!(
        sudo_log.contains("a down: 0") && sudo_log.contains("b up: 0"),
        "{sudo_log}"
    );
    assert!(samples.load(Ordering::Relaxed) > 10);
    assert_eq!(
        both.load(Ordering::Relaxed),
        0,
        "both nodes held the VIP at once\n{text}"
    );
}
