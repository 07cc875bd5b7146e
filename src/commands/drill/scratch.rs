//! What `walship drill` owns on this host: the scratch directory, claimed with a lock for the
//! drill's life, and the throwaway copy running in it.
//!
//! The copy is the drill's own child (`postgres -D`, not `pg_ctl`), started with
//! `PR_SET_PDEATHSIG`: a drill that is killed takes its copy with it (immediate shutdown), so a
//! copy never outlives its drill. What a killed drill leaves on disk is removed by the next drill
//! given the same scratch directory (its lock file is there and nobody holds it).

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pg::client::PgClient;

const LOCK: &str = "walship-drill.lock";

/// A scratch directory this drill holds: empty but for what the drill puts there.
pub struct Scratch {
    pub dir: PathBuf,
    /// The drill made the directory, so it removes the directory too.
    created: bool,
    /// flock(2) held while the drill runs: the kernel releases it when the drill dies.
    _lock: File,
}

impl Scratch {
    pub fn claim(dir: &Path) -> Result<Scratch> {
        if !dir.is_absolute() {
            return Err(Error::usage(format!(
                "--scratch {}: give an absolute path",
                dir.display()
            )));
        }
        let created = match fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::usage(format!(
                    "scratch directory {} is a symbolic link: the drill empties its scratch \
                     directory, so it takes only a real one",
                    dir.display()
                ))
                .with_hint("Give the directory the link points to, or a new path."));
            }
            Ok(m) if !m.is_dir() => {
                return Err(Error::usage(format!(
                    "scratch directory {} is not a directory",
                    dir.display()
                )));
            }
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match fs::DirBuilder::new().mode(0o700).create(dir) {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                    Err(e) => {
                        return Err(Error::io(format!("creating {}", dir.display()), e)
                            .with_hint("The scratch directory's parent must exist and be writable by this user."));
                    }
                }
            }
            Err(e) => return Err(Error::io(format!("stat {}", dir.display()), e)),
        };
        let lock_path = dir.join(LOCK);
        let left_by_dead_drill = lock_path.exists();
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        if !crate::os::try_flock_exclusive(&lock) {
            let holder = crate::os::flock_holder(&lock_path)
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            return Err(Error::conflict(format!(
                "scratch directory {} is in use by another drill{holder}",
                dir.display()
            ))
            .with_hint("Wait for it to finish, or give each drill its own --scratch."));
        }
        // The lock file says whether a drill made the directory, so that the drill that
        // cleans up after a killed one removes it too.
        const MADE: &[u8] = b"directory made by walship drill\n";
        let made_by_dead_drill =
            left_by_dead_drill && fs::read(&lock_path).is_ok_and(|t| t.starts_with(MADE));
        if created {
            use std::io::Write;
            (&lock)
                .write_all(MADE)
                .map_err(|e| Error::io(format!("writing {}", lock_path.display()), e))?;
        }
        let scratch = Scratch {
            dir: dir.to_path_buf(),
            created: created || made_by_dead_drill,
            _lock: lock,
        };
        let others = scratch.entries()?;
        if !others.is_empty() {
            if !left_by_dead_drill {
                let mut names: Vec<String> = others
                    .iter()
                    .take(3)
                    .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into())
                    .collect();
                if others.len() > 3 {
                    names.push("...".into());
                }
                // The lock file just made must not turn this directory into "a drill's".
                let _ = fs::remove_file(&lock_path);
                return Err(Error::conflict(format!(
                    "scratch directory {} is not empty ({})",
                    dir.display(),
                    names.join(", ")
                ))
                .with_hint(
                    "The drill removes everything in its scratch directory when it ends: give \
                     an empty directory or a new path.",
                ));
            }
            crate::log_line!(
                "walship: drill: {} holds what a drill that did not finish left; removing it",
                dir.display()
            );
            stop_leftover(&scratch.pgdata());
            scratch.stop_workers();
            scratch.remove_contents()?;
        }
        Ok(scratch)
    }

    pub fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    /// Stop the walship workers (prefetch) of the copy's pg_wal.
    pub fn stop_workers(&self) {
        let pg_wal = self.pgdata().join("pg_wal");
        if let Err(e) = crate::spool::stop_workers_and_clear(&pg_wal, Duration::from_secs(5)) {
            crate::log_line!("walship: drill: WARNING: {e}");
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn entries(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("reading {}", self.dir.display()), e))?
        {
            let e = e.map_err(|e| Error::io(format!("reading {}", self.dir.display()), e))?;
            if e.file_name() != LOCK {
                out.push(e.path());
            }
        }
        Ok(out)
    }

    /// Remove everything the drill put in the scratch directory.
    pub fn remove_contents(&self) -> Result<()> {
        for p in self.entries()? {
            let r = match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
                Ok(_) => fs::remove_file(&p),
                Err(e) => Err(e),
            };
            r.map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
        }
        Ok(())
    }

    /// The drill is over: the lock goes, and the directory if the drill made it.
    pub fn release(self) -> Result<()> {
        let lock = self.dir.join(LOCK);
        fs::remove_file(&lock).map_err(|e| Error::io(format!("removing {}", lock.display()), e))?;
        if self.created {
            fs::remove_dir(&self.dir)
                .map_err(|e| Error::io(format!("removing {}", self.dir.display()), e))?;
        }
        Ok(())
    }
}

/// A postmaster still running on a dead drill's copy (started by another tool, or one that
/// survived its parent somehow): stopped at once, by the PID its postmaster.pid names, and only
/// if that PID is a postgres.
fn stop_leftover(pgdata: &Path) {
    let Some(pm) = crate::pg::server::Postmaster::of(pgdata) else {
        return;
    };
    let exe = fs::read_link(format!("/proc/{}/exe", pm.pid)).unwrap_or_default();
    if exe.file_name().is_none_or(|n| n != "postgres") {
        return;
    }
    crate::os::signal(pm.pid as i32, libc::SIGQUIT);
    let started = Instant::now();
    while crate::os::process_alive(pm.pid) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A backup of a cluster whose configuration lives outside its data directory (Debian's
/// /etc/postgresql) has no postgresql.conf, without which PostgreSQL does not start: the copy
/// gets one with what a hot standby must have at least the primary's values of, from
/// pg_control (which records them), and runs on defaults and the drill's settings otherwise.
pub fn write_missing_postgresql_conf(pg_bin: &Path, pgdata: &Path) -> Result<bool> {
    let conf = pgdata.join("postgresql.conf");
    if conf.exists() {
        return Ok(false);
    }
    let out = Command::new(pg_bin.join("pg_controldata"))
        .arg(pgdata)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| Error::io(format!("running {}/pg_controldata", pg_bin.display()), e))?;
    if !out.status.success() {
        return Err(Error::unavailable(format!(
            "pg_controldata {} failed: {}",
            pgdata.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = String::from(
        "# written by walship drill: the backup has no postgresql.conf (it lives outside the\n\
         # data directory); the primary's values of the settings a hot standby needs, from pg_control\n",
    );
    for (label, setting) in [
        ("max_connections setting:", "max_connections"),
        ("max_worker_processes setting:", "max_worker_processes"),
        ("max_wal_senders setting:", "max_wal_senders"),
        ("max_prepared_xacts setting:", "max_prepared_transactions"),
        ("max_locks_per_xact setting:", "max_locks_per_transaction"),
    ] {
        if let Some(v) = text.lines().find_map(|l| l.strip_prefix(label)) {
            s.push_str(&format!("{setting} = {}\n", v.trim()));
        }
    }
    fs::write(&conf, s).map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
    Ok(true)
}

/// The restored copy, running as this process's child.
pub struct Copy {
    child: Child,
    pub socket_dir: PathBuf,
    pub port: u16,
    /// The role the drill connects as.
    role: String,
    exited: Option<ExitStatus>,
}

impl Copy {
    pub fn start(
        postgres: &Path,
        pgdata: &Path,
        socket_dir: &Path,
        port: u16,
        log: &Path,
    ) -> Result<Copy> {
        let out =
            File::create(log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
        let mut cmd = Command::new(postgres);
        cmd.arg("-D")
            .arg(pgdata)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("LC_MESSAGES", "C");
        crate::os::die_with_parent(&mut cmd, libc::SIGQUIT);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", postgres.display()), e))?;
        Ok(Copy {
            child,
            socket_dir: socket_dir.to_path_buf(),
            port,
            role: match std::env::var("PGUSER") {
                Ok(u) if !u.is_empty() => u,
                _ => crate::os::current_user(),
            },
            exited: None,
        })
    }

    /// A client for database `db` of the copy (over its socket only).
    pub fn client(&self, db: &str) -> Result<PgClient> {
        let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        PgClient::from_conninfo(&format!(
            "host={} port={} user={} dbname={}",
            q(&self.socket_dir.display().to_string()),
            self.port,
            q(&self.role),
            q(db)
        ))
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    pub fn set_role(&mut self, role: &str) {
        self.role = role.to_string();
    }

    /// How the postmaster ended, if it did.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Fast shutdown (a clean one, which pg_checksums needs), immediate after two minutes.
    pub fn stop(&mut self) -> Result<()> {
        for (signal, wait) in [
            (libc::SIGINT, 120),
            (libc::SIGQUIT, 30),
            (libc::SIGKILL, 30),
        ] {
            if self.exited().is_some() {
                return Ok(());
            }
            // our own child, not reaped yet (exited() is None): its PID is still its own
            crate::os::signal(self.child.id() as i32, signal);
            let started = Instant::now();
            while self.exited().is_none() && started.elapsed() < Duration::from_secs(wait) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        match self.exited() {
            Some(_) => Ok(()),
            None => Err(Error::unavailable(format!(
                "the drill's copy (pid {}) does not stop",
                self.child.id()
            ))),
        }
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        if self.exited().is_none() {
            crate::os::signal(self.child.id() as i32, libc::SIGQUIT);
            let _ = self.child.wait();
        }
    }
}
