//! Throwaway local PostgreSQL clusters, run from the installed binaries: used by `walship demo`
//! and by the integration tests. initdb and pg_ctl refuse to run as root, so when walship runs as
//! root every PostgreSQL program runs as an unprivileged user (`runuser -u USER`), and the
//! directories it needs are handed to that user. Servers listen on 127.0.0.1 only and are stopped
//! with pg_ctl, which signals the PID in postmaster.pid.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The default location of the PostgreSQL 15 programs on Debian.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The unprivileged user PostgreSQL programs run as when walship runs as root.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `Some(user)` when this process is root (PostgreSQL refuses root), `None` otherwise.
    pub fn when_root(user: &str) -> Result<Option<RunAs>> {
        if crate::os::euid() != 0 {
            return Ok(None);
        }
        let Some((uid, gid)) = crate::os::user_ids(user) else {
            return Err(Error::usage(format!(
                "user {user:?} does not exist; PostgreSQL cannot run as root"
            ))
            .with_hint(
                "Name an existing unprivileged user with --run-as (e.g. postgres or nobody).",
            ));
        };
        if uid == 0 {
            return Err(Error::usage(format!(
                "user {user:?} is root; PostgreSQL refuses to run as root"
            )));
        }
        Ok(Some(RunAs {
            user: user.to_string(),
            uid,
            gid,
        }))
    }
}

/// How to run PostgreSQL's programs.
#[derive(Debug, Clone)]
pub struct PgTools {
    pub bin: PathBuf,
    pub run_as: Option<RunAs>,
}

impl PgTools {
    pub fn new(bin: impl Into<PathBuf>, run_as: Option<RunAs>) -> Result<PgTools> {
        let bin = bin.into();
        for program in ["initdb", "pg_ctl", "psql", "pgbench", "pg_basebackup"] {
            if !bin.join(program).exists() {
                return Err(Error::usage(format!("{} not found", bin.join(program).display()))
                    .with_hint("Install the PostgreSQL server (Debian: apt-get install postgresql-<major>), or set pg_bin \
                                (configuration file or WALSHIP_PG_BIN; demo and restore: --pg-bin) to the bin directory of its programs."));
            }
        }
        Ok(PgTools { bin, run_as })
    }

    /// The major version of these programs, from `postgres --version`.
    pub fn major_version(&self) -> Result<u32> {
        let path = self.bin.join("postgres");
        let out = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {} --version", path.display()), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_major(&text).ok_or_else(|| {
            Error::usage(format!(
                "{} --version answered {:?}: not a PostgreSQL server",
                path.display(),
                text.trim()
            ))
            .with_hint("Point pg_bin (or --pg-bin) at the bin directory of a PostgreSQL server.")
        })
    }

    /// A command for a PostgreSQL program (or any program, if `program` contains a '/'), run as
    /// the unprivileged user when needed.
    pub fn command(&self, program: &str) -> Command {
        let path = if program.contains('/') {
            PathBuf::from(program)
        } else {
            self.bin.join(program)
        };
        let mut c = match &self.run_as {
            Some(r) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(&r.user).arg("--").arg(path);
                c
            }
            None => Command::new(path),
        };
        if let Some(lib) = self.own_libpq_dir() {
            c.env(
                "LD_LIBRARY_PATH",
                prepend_path(&lib, std::env::var_os("LD_LIBRARY_PATH")),
            );
        }
        c
    }

    /// `<bin>/../lib` when it holds a libpq of its own (a relocatable build, not Debian's
    /// layout). Such builds' programs find it through their run path, but the server's
    /// libpqwalreceiver.so has none: without this the walreceiver loads the system's older libpq,
    /// which rejects options the build's pg_rewind and pg_basebackup write into
    /// primary_conninfo ("invalid connection option \"sslnegotiation\"").
    fn own_libpq_dir(&self) -> Option<PathBuf> {
        let lib = self.bin.parent()?.join("lib");
        lib.join("libpq.so.5").exists().then_some(lib)
    }

    /// Give `path` to the unprivileged user (no-op when not root).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if let Some(r) = &self.run_as {
            std::os::unix::fs::chown(path, Some(r.uid), Some(r.gid))
                .map_err(|e| Error::io(format!("chown {} to {}", path.display(), r.user), e))?;
        }
        Ok(())
    }

    /// Create a directory (mode 0700) owned by the user PostgreSQL runs as.
    pub fn make_dir(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        self.chown(path)
    }

    /// Write a file owned by the user PostgreSQL runs as.
    pub fn write_file(&self, path: &Path, contents: &str) -> Result<()> {
        fs::write(path, contents)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        self.chown(path)
    }

    /// Run to completion; an error carries the command's stderr.
    pub fn run(&self, mut cmd: Command, what: &str) -> Result<String> {
        let out: Output = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("{what}: starting {:?}", cmd.get_program()), e))?;
        if !out.status.success() {
            return Err(Error::unavailable(format!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// The major version in `postgres --version`'s answer: "postgres (PostgreSQL) 18.6", or on
/// Debian "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)".
fn parse_major(version_output: &str) -> Option<u32> {
    let version = version_output
        .split_whitespace()
        .skip_while(|w| *w != "(PostgreSQL)")
        .nth(1)?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `dir` before the entries of a PATH-like variable.
fn prepend_path(dir: &Path, rest: Option<std::ffi::OsString>) -> std::ffi::OsString {
    let mut v = dir.as_os_str().to_os_string();
    if let Some(r) = rest.filter(|r| !r.is_empty()) {
        v.push(":");
        v.push(r);
    }
    v
}

/// A free TCP port on 127.0.0.1 (asked of the kernel; free at the time of asking).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("finding a free port", e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io("finding a free port", e))?
        .port())
}

/// A local PostgreSQL cluster: data directory, port, socket directory.
#[derive(Debug)]
pub struct Cluster {
    pub tools: PgTools,
    pub data: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
    running: bool,
}

impl Cluster {
    /// initdb a new cluster in `data` (which must not exist), listening on 127.0.0.1:`port`, with
    /// `wal_segsize_mb` MiB segments.
    pub fn init(tools: &PgTools, data: &Path, port: u16, wal_segsize_mb: u32) -> Result<Cluster> {
        let parent = data
            .parent()
            .ok_or_else(|| Error::usage("data directory needs a parent"))?;
        let mut cmd = tools.command("initdb");
        cmd.current_dir(parent).arg("-D").arg(data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        cmd.arg(format!("--wal-segsize={wal_segsize_mb}"));
        tools.run(cmd, "initdb")?;
        let cluster = Cluster::existing(tools, data, port)?;
        cluster.append_conf(&format!(
            "# written by walship\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             wal_level = replica\nlogging_collector = off\nmax_wal_senders = 4\nshared_buffers = 64MB\n",
            cluster.socket_dir.display()
        ))?;
        Ok(cluster)
    }

    /// A cluster whose data directory already exists (e.g. made by pg_basebackup). Its socket
    /// directory is created beside the data directory.
    pub fn existing(tools: &PgTools, data: &Path, port: u16) -> Result<Cluster> {
        let parent = data
            .parent()
            .ok_or_else(|| Error::usage("data directory needs a parent"))?;
        let name = data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let socket_dir = parent.join(format!("{name}.sock"));
        tools.make_dir(&socket_dir)?;
        Ok(Cluster {
            tools: tools.clone(),
            data: data.to_path_buf(),
            port,
            log: parent.join(format!("{name}.log")),
            socket_dir,
            running: false,
        })
    }

    /// Append settings to postgresql.conf (later lines win).
    pub fn append_conf(&self, text: &str) -> Result<()> {
        use std::io::Write;
        let path = self.data.join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    pub fn start(&mut self) -> Result<()> {
        let mut cmd = self.tools.command("pg_ctl");
        cmd.current_dir(&self.data)
            .arg("start")
            .arg("-w")
            .arg("-t")
            .arg("120")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log);
        self.tools
            .run(cmd, "pg_ctl start")
            .map_err(|e| e.context(format!("see {}", self.log.display())))?;
        self.running = true;
        Ok(())
    }

    /// A server something else started on this data directory (walship restore --start): stop
    /// it when this handle is dropped.
    pub fn adopt_running(&mut self) {
        self.running = true;
    }

    /// Stop with the given shutdown mode (smart, fast, immediate).
    pub fn stop_mode(&mut self, mode: &str) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.tools.command("pg_ctl");
        cmd.current_dir(&self.data)
            .arg("stop")
            .arg("-w")
            .arg("-t")
            .arg("120")
            .arg("-m")
            .arg(mode)
            .arg("-D")
            .arg(&self.data);
        self.tools.run(cmd, "pg_ctl stop")?;
        self.running = false;
        Ok(())
    }

    pub fn stop(&mut self) -> Result<()> {
        self.stop_mode("fast")
    }

    /// Run SQL through psql and return its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let mut cmd = self.tools.command("psql");
        cmd.current_dir(&self.data).args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]);
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql);
        self.tools.run(cmd, &format!("psql {sql:?}"))
    }

    pub fn pgbench(&self, args: &[&str]) -> Result<()> {
        let mut cmd = self.tools.command("pgbench");
        cmd.current_dir(&self.data)
            .args(["-U", "postgres"])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string());
        cmd.args(args).arg("postgres");
        self.tools.run(cmd, "pgbench").map(|_| ())
    }

    /// Take a base backup into `target` with pg_basebackup, without WAL (-X none): the copy
    /// gets its WAL from the archive through restore_command. pg_basebackup returns once the WAL
    /// the backup needs has been archived.
    pub fn base_backup(&self, target: &Path) -> Result<()> {
        let mut cmd = self.tools.command("pg_basebackup");
        cmd.current_dir(&self.data).args([
            "-U",
            "postgres",
            "-X",
            "none",
            "-c",
            "fast",
            "--no-sync",
        ]);
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-D")
            .arg(target);
        self.tools.run(cmd, "pg_basebackup").map(|_| ())
    }

    /// Switch to a new WAL segment and wait until the switched-out one is archived. Returns its
    /// name.
    pub fn switch_and_wait_archived(&self, timeout: Duration) -> Result<String> {
        let seg = self.psql(&format!("SELECT {}", super::client::SWITCH_WAL_FILE))?;
        wait_until(timeout, &format!("{seg} to be archived"), || {
            let last = self.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")?;
            // Names of one timeline sort in WAL order; a .partial or .backup sorts after its segment.
            Ok(!last.is_empty() && last.as_str() >= seg.as_str())
        })?;
        Ok(seg)
    }

    pub fn is_running(&self) -> bool {
        self.running
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_mode("immediate");
        }
    }
}

/// Poll `check` every 100 ms until it returns true, or fail after `timeout`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut last_err = None;
    while start.elapsed() < timeout {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::unavailable(format!(
        "timed out after {} s waiting for {what}{}",
        timeout.as_secs(),
        last_err
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library_path(tools: &PgTools) -> Option<std::ffi::OsString> {
        tools
            .command("postgres")
            .get_envs()
            .find(|(k, _)| *k == "LD_LIBRARY_PATH")
            .and_then(|(_, v)| v.map(|v| v.to_os_string()))
    }

    #[test]
    fn regression_a_relocatable_build_runs_with_its_own_libpq_not_the_systems() {
        let dir = tempfile::tempdir().unwrap();
        let build = dir.path().join("postgresql-18");
        fs::create_dir_all(build.join("bin")).unwrap();
        fs::create_dir_all(build.join("lib")).unwrap();
        fs::write(build.join("lib/libpq.so.5"), b"").unwrap();
        let tools = PgTools {
            bin: build.join("bin"),
            run_as: None,
        };
        let path =
            library_path(&tools).expect("LD_LIBRARY_PATH set for a build with its own libpq");
        let first = std::env::split_paths(&path).next().unwrap();
        assert_eq!(first, build.join("lib"));
        // Debian's layout (libpq in the system's library directory) is left alone.
        let debian = dir.path().join("usr/lib/postgresql/15");
        fs::create_dir_all(debian.join("bin")).unwrap();
        fs::create_dir_all(debian.join("lib")).unwrap();
        let tools = PgTools {
            bin: debian.join("bin"),
            run_as: None,
        };
        assert_eq!(library_path(&tools), None);
    }

    #[test]
    fn the_major_version_is_read_from_postgres_version() {
        assert_eq!(parse_major("postgres (PostgreSQL) 18.6\n"), Some(18));
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 19devel"), Some(19));
        assert_eq!(parse_major("bash: postgres: command not found"), None);
        assert_eq!(parse_major(""), None);
    }

    #[test]
    fn a_library_path_is_prepended_to_the_one_in_force() {
        let p = prepend_path(Path::new("/b/lib"), Some("/x:/y".into()));
        assert_eq!(p, "/b/lib:/x:/y");
        assert_eq!(prepend_path(Path::new("/b/lib"), Some("".into())), "/b/lib");
        assert_eq!(prepend_path(Path::new("/b/lib"), None), "/b/lib");
    }
}
