//! Shared test harness: run the real walship binary, make synthetic WAL segments, start a real
//! OpenSSH server on 127.0.0.1 (stopped by its PID), and give PostgreSQL an unprivileged user when
//! the tests run as root.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod drill;
pub mod ha;
pub mod s3;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use walship::pg::cluster::{DEFAULT_PG_BIN, PgTools, RunAs, free_port};

pub const MIB: u32 = 1 << 20;

/// The walship binary under test, with no configuration from the machine it runs on but the
/// PostgreSQL under test.
pub fn walship() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_walship"));
    without_walship_env(&mut c);
    c.env("WALSHIP_CONFIG", "/dev/null");
    c.stdin(Stdio::null());
    c
}

/// Remove the machine's `WALSHIP_*` settings from a walship command's environment, all but
/// WALSHIP_PG_BIN: the PostgreSQL under test (tests/run --pg), which every command must use.
pub fn without_walship_env(c: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("WALSHIP_") && k != "WALSHIP_PG_BIN" {
            c.env_remove(k);
        }
    }
}

/// Run a walship command and return (exit code, stderr).
pub fn run(cmd: &mut Command) -> (i32, String) {
    let out: Output = cmd.output().expect("walship runs");
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The tools for PostgreSQL, as an unprivileged user when running as root
/// (WALSHIP_TEST_USER, default postgres, else nobody).
pub fn pg_tools() -> PgTools {
    let user = std::env::var("WALSHIP_TEST_USER").ok();
    let run_as = match user {
        Some(u) => RunAs::when_root(&u),
        None => RunAs::when_root("postgres").or_else(|_| RunAs::when_root("nobody")),
    }
    .expect("an unprivileged user for PostgreSQL");
    let bin = std::env::var("WALSHIP_PG_BIN").unwrap_or_else(|_| DEFAULT_PG_BIN.into());
    let tools = PgTools::new(bin, run_as)
        .expect("PostgreSQL binaries: WALSHIP_PG_BIN, else /usr/lib/postgresql/15/bin (tests/run installs them)");
    // tests/run --pg N says which major version must be under test: a wrong binary directory
    // fails here instead of testing another version than the one reported.
    if let Ok(want) = std::env::var("WALSHIP_PG_MAJOR") {
        assert_eq!(
            pg_major(&tools).to_string(),
            want,
            "WALSHIP_PG_BIN {}",
            tools.bin.display()
        );
    }
    tools
}

/// The major version of the PostgreSQL programs in `tools` (`postgres --version`).
pub fn pg_major(tools: &PgTools) -> u32 {
    tools.major_version().expect("postgres --version")
}

/// A test that cannot run on this machine says so on stderr (cargo test shows it as passed), and
/// fails under CI (CI=true), where every test must run.
pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI runs every test, and this one could not run: {why}"
    );
}

/// A temporary directory the PostgreSQL user owns (and can therefore reach).
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub tools: PgTools,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace::with_tools(pg_tools())
    }

    /// A workspace owned by the user `tools` runs PostgreSQL as.
    pub fn with_tools(tools: PgTools) -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("walship-test-")
            .tempdir()
            .unwrap();
        tools.chown(dir.path()).unwrap();
        Workspace { dir, tools }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The walship binary under test, copied into the workspace so that the PostgreSQL user can
    /// run it wherever the checkout lives (a clone under /root is not reachable for `postgres`).
    pub fn walship_bin(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = self.path().join("walship");
        if !bin.exists() {
            fs::copy(env!("CARGO_BIN_EXE_walship"), &bin).unwrap();
            fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
            self.tools.chown(&bin).unwrap();
        }
        bin
    }

    /// A subdirectory (mode 0700) owned by the PostgreSQL user.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        self.tools.make_dir(&p).unwrap();
        p
    }
}

/// Field `n` of a /proc/PID/stat line, counting from 0 at the state field (1: parent PID, 16:
/// nice): read after the last ')' because the command name may hold spaces and parentheses.
pub fn proc_stat_field(stat: &str, n: usize) -> Option<&str> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(n)
}

/// Every process below `pid` (children, their children, ...), found by parent PID in /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some(ppid) = proc_stat_field(&stat, 1).and_then(|p| p.parse::<i32>().ok()) {
            parent_of.push((child, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree.split_off(1)
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Bytes of a synthetic WAL segment: a PostgreSQL 15 long page header for `name` and `sysid`,
/// then `fill` (half noise, half zeros by default, like real WAL).
pub fn segment_bytes(name: &str, sysid: u64, seg_size: u32, seed: u64) -> Vec<u8> {
    let tli = u32::from_str_radix(&name[0..8], 16).unwrap();
    let log = u64::from_str_radix(&name[8..16], 16).unwrap();
    let seg = u64::from_str_radix(&name[16..24], 16).unwrap();
    let per_log = 0x1_0000_0000u64 / u64::from(seg_size);
    let addr = (log * per_log + seg) * u64::from(seg_size);
    let mut b = noise(seed, seg_size as usize / 2);
    b.resize(seg_size as usize, 0);
    b[0..40].fill(0);
    b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    b[2..4].copy_from_slice(&2u16.to_le_bytes());
    b[4..8].copy_from_slice(&tli.to_le_bytes());
    b[8..16].copy_from_slice(&addr.to_le_bytes());
    b[24..32].copy_from_slice(&sysid.to_le_bytes());
    b[32..36].copy_from_slice(&seg_size.to_le_bytes());
    b[36..40].copy_from_slice(&8192u32.to_le_bytes());
    b
}

/// Write a synthetic segment into `pg_wal` and return its path.
pub fn write_segment(pg_wal: &Path, name: &str, sysid: u64, seed: u64) -> PathBuf {
    fs::create_dir_all(pg_wal).unwrap();
    let p = pg_wal.join(name);
    fs::write(&p, segment_bytes(name, sysid, MIB, seed)).unwrap();
    p
}

/// Run a command; (exit code, stdout and stderr).
pub fn output(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `walship verify` of the repository at `repo` (a local path): (exit code, output).
pub fn verify(repo: &Path) -> (i32, String) {
    output(walship().arg("--repo").arg(repo).arg("verify"))
}

/// File names below `dir`, tolerating files that vanish meanwhile (a killed writer's
/// temporaries are removed by the next one).
pub fn names_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => out.push(e.file_name().to_string_lossy().into_owned()),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// The walship spool directories in `pg_wal` whose names start with `prefix` ("push-",
/// "fetch-", or "" for any), sorted; none when `pg_wal/walship` does not exist.
pub fn spool_dirs(pg_wal: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(pg_wal.join("walship"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// The PID of the live walship worker whose spool in `pg_wal` starts with `prefix`, read from
/// its lock file while it holds it.
pub fn worker_pid(pg_wal: &Path, prefix: &str) -> Option<i32> {
    for dir in spool_dirs(pg_wal, prefix) {
        let lock = dir.join("worker.lock");
        let Ok(f) = fs::File::open(&lock) else {
            continue;
        };
        if f.try_lock().is_err() {
            return fs::read_to_string(&lock).ok()?.trim().parse().ok();
        }
    }
    None
}

/// The `worker.log` of every walship spool in `pg_wal` whose name starts with `prefix`, one
/// after the other (empty when there is none).
pub fn worker_logs(pg_wal: &Path, prefix: &str) -> String {
    spool_dirs(pg_wal, prefix)
        .iter()
        .map(|d| fs::read_to_string(d.join("worker.log")).unwrap_or_default())
        .collect()
}

/// Give `path` and everything below it to the PostgreSQL user (the SSH login user in the
/// tests), when running as root.
pub fn chown_to_pg_user(ws: &Workspace, path: &Path) {
    if let Some(r) = &ws.tools.run_as {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:", r.user))
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown -R {}", path.display());
    }
}

/// Copy every file below `from` into `to` (a writable copy of a fixture).
pub fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let p = to.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

/// Every file below `dir`, relative, sorted (for "nothing changed" assertions).
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A real OpenSSH server on 127.0.0.1, public-key only, with its own host key; stopped (by PID)
/// when dropped. It logs in `user` (the PostgreSQL user when root, else whoever runs the tests).
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub user: String,
    pub dir: PathBuf,
    /// Client private key whose public half is authorized.
    pub client_key: PathBuf,
    /// A known_hosts file that trusts this server's host key.
    pub known_hosts: PathBuf,
    pub host_pub: String,
}

fn ssh_keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "walship-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(st.success());
}

impl Sshd {
    /// Cut every open connection: SIGKILL every descendant of the listening sshd (the
    /// per-connection monitor, its unprivileged network process and sftp-server), found by
    /// their parent PIDs in /proc. Returns how many were killed.
    pub fn cut_connections(&self) -> usize {
        let below = descendants(self.child.id() as i32);
        for pid in &below {
            // SAFETY: a descendant of the test's own sshd, by PID.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        below.len()
    }

    /// Start sshd with its files in `ws/<name>`.
    pub fn start(ws: &Workspace, name: &str) -> Sshd {
        Sshd::start_with(ws, name, "")
    }

    /// Start sshd with extra lines for its sshd_config (e.g. to allow only some ciphers).
    pub fn start_with(ws: &Workspace, name: &str, extra_config: &str) -> Sshd {
        let sshd_bin = Path::new("/usr/sbin/sshd");
        assert!(
            sshd_bin.exists(),
            "/usr/sbin/sshd is missing: apt-get install openssh-server (tests/run does it)"
        );
        let dir = ws.mkdir(name);
        let user = match &ws.tools.run_as {
            Some(r) => r.user.clone(),
            None => walship::os::current_user(),
        };
        ssh_keygen(&dir.join("host_key"));
        ssh_keygen(&dir.join("client_key"));
        ws.tools.chown(&dir.join("client_key")).unwrap();
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = free_port().unwrap();
        let host_pub = fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let host_pub: String = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let known_hosts = dir.join("known_hosts");
        fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}\n")).unwrap();
        ws.tools.chown(&known_hosts).unwrap();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM {pam}\nAllowUsers {user}\n\
                 AllowTcpForwarding no\nX11Forwarding no\nPermitTTY no\nSubsystem sftp internal-sftp\n{extra_config}",
                d = dir.display(),
                pam = if unsafe { libc::geteuid() } == 0 { "yes" } else { "no" }
            ),
        )
        .unwrap();
        if unsafe { libc::geteuid() } == 0 {
            fs::create_dir_all("/run/sshd").unwrap(); // privilege separation directory
        }
        let child = Command::new(sshd_bin)
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("sshd starts");
        let sshd = Sshd {
            child,
            port,
            user,
            client_key: dir.join("client_key"),
            known_hosts,
            host_pub,
            dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not listen; see {}/sshd.log",
                sshd.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    /// `ssh://user@127.0.0.1:port/<path>`
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// A walship config file for this server and `repo_path`, readable by the PostgreSQL user.
    pub fn config(&self, ws: &Workspace, repo_path: &Path, file: &str) -> PathBuf {
        let p = ws.path().join(file);
        let mut f = fs::File::create(&p).unwrap();
        writeln!(
            f,
            "repo = \"{}\"\nssh_key = \"{}\"\nknown_hosts = \"{}\"\nssh_timeout = 10\nfetch_retries = 1\nworker_idle_timeout = 2",
            self.url(repo_path),
            self.client_key.display(),
            self.known_hosts.display()
        )
        .unwrap();
        ws.tools.chown(&p).unwrap();
        p
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // SAFETY: kill on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A tmpfs of a fixed size, unmounted when dropped. Mounting needs root: a test that needs one is
/// `#[ignore = "needs root: ..."]`, which tests/run runs as root (CI does).
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(ws: &Workspace, name: &str, size_kib: u64) -> Tmpfs {
        assert_eq!(
            walship::os::euid(),
            0,
            "mounting a tmpfs needs root: run this test as root (tests/run does in CI)"
        );
        Tmpfs::try_mount(ws, name, size_kib).expect("root")
    }

    /// `mount`, or `None` (said on stdout) when not root: for one step of a longer test.
    pub fn try_mount(ws: &Workspace, name: &str, size_kib: u64) -> Option<Tmpfs> {
        if walship::os::euid() != 0 {
            println!("DRILL | {name}: skipped, mounting a tmpfs needs root | 0 | 0 | 0");
            return None;
        }
        let path = ws.mkdir(name);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_kib}k,mode=0700"))
            .arg("tmpfs")
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", path.display());
        ws.tools.chown(&path).unwrap();
        Some(Tmpfs { path })
    }

    pub fn resize(&self, size_kib: u64) {
        let ok = Command::new("mount")
            .args(["-o"])
            .arg(format!("remount,size={size_kib}k"))
            .arg(&self.path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {}", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// walship run as the PostgreSQL user with configuration `cfg` (restore and drill refuse root,
/// as PostgreSQL does): the machine's walship settings go, the PostgreSQL under test
/// (WALSHIP_PG_BIN) stays.
pub fn walship_as_pg(ws: &Workspace, cfg: &Path) -> Command {
    let mut c = ws.tools.command(ws.walship_bin().to_str().unwrap());
    without_walship_env(&mut c);
    c.arg("--config").arg(cfg).stdin(Stdio::null());
    c
}
