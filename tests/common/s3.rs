//! A real S3-compatible server for the tests: `s3s-fs` (which checks SigV4 signatures) on
//! 127.0.0.1, its data in the workspace, started here and stopped by its PID. tests/run installs
//! it; a test that needs it fails (never skips) when it is missing.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Workspace;
use walship::pg::cluster::free_port;

pub const ACCESS_KEY: &str = "AKWALSHIPTEST";
pub const SECRET_KEY: &str = "walship-test-secret";
pub const BUCKET: &str = "walship";

/// Debian's libfaketime (package faketime), for a store whose clock is wrong.
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    /// The server's data: `root/<bucket>/<key>` are the objects, as plain files.
    pub root: PathBuf,
    log: PathBuf,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return p.into();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo = home.join(".cargo/bin/s3s-fs");
    if cargo.exists() {
        return cargo;
    }
    "s3s-fs".into()
}

impl S3Server {
    pub fn start(ws: &Workspace) -> S3Server {
        let root = ws.path().join("s3-root");
        fs::create_dir_all(root.join(BUCKET)).unwrap();
        let mut s = S3Server {
            child: None,
            port: free_port().unwrap(),
            root,
            log: ws.path().join("s3s-fs.log"),
        };
        s.restart();
        s
    }

    /// Start (again) on the same port and data.
    pub fn restart(&mut self) {
        self.restart_with_clock(None)
    }

    /// Start (again) with its clock `offset` off (libfaketime's FAKETIME, e.g. "+1h"): what a
    /// host whose clock is wrong looks like to the store.
    pub fn restart_with_clock(&mut self, offset: Option<&str>) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(binary());
        if let Some(o) = offset {
            // libfaketime preloaded into s3s-fs itself, not the `faketime` wrapper: the wrapper
            // forks, and stopping it by its PID would leave the server running.
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME", o)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = cmd
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start s3s-fs ({}): {e}; install it with `cargo install s3s-fs --version 0.14.1 --features binary --locked` (tests/run does)",
                    binary().display()
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "s3s-fs did not listen on {}: {}",
                self.port,
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server (SIGKILL, by its PID): what a crash or a cut network looks like.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's process id (the harness stops it by this PID).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the object at `key` (below the bucket) is kept on disk.
    pub fn object(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }

    /// Every object key below `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let base = self.root.join(BUCKET);
        let mut out = Vec::new();
        let mut stack = vec![base.join(prefix)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(&base).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// A walship configuration file for `s3://walship/<prefix>` on this server (credentials go
    /// in the environment: [`S3Server::env`]).
    pub fn config(&self, ws: &Workspace, prefix: &str, file: &str, extra: &str) -> PathBuf {
        let p = ws.path().join(file);
        ws.tools
            .write_file(
                &p,
                &format!(
                    "repo = 's3://{BUCKET}/{prefix}'\ns3_endpoint = '{}'\ns3_region = 'us-east-1'\n\
                     ssh_timeout = 2\nfetch_retries = 0\nworker_idle_timeout = 2\n{extra}",
                    self.endpoint()
                ),
            )
            .unwrap();
        p
    }

    /// The credentials, as the environment carries them (never argv).
    pub fn env(cmd: &mut Command) -> &mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
    }
}

/// A faulty store in front of an [`S3Server`] (tests/common/s3proxy.py), stopped by its PID.
pub struct S3Proxy {
    child: Child,
    pub port: u16,
}

impl S3Proxy {
    /// `mode`: `throttle N` (the first N requests answered 503 SlowDown) or `lie` (a 412 turned
    /// into 200: a store that ignores conditional creates).
    pub fn start(upstream: &S3Server, mode: &[&str]) -> S3Proxy {
        let port = free_port().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/s3proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(upstream.port.to_string())
            .args(mode)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the S3 proxy");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        S3Proxy { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        // SAFETY: kill on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill on our own child's PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// The size of the file at `p`.
pub fn size(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
