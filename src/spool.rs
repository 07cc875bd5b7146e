//! The spool: a directory beside the WAL (`pg_wal/walship/<kind>-<repository hash>/`) where the
//! background workers and the foreground calls PostgreSQL makes meet.
//!
//! - push-ahead: the worker writes an acknowledgement `<name>.ok` once `<name>` is durable in the
//!   repository (or `<name>.error` with the message); the foreground call takes it.
//! - prefetch: the worker publishes verified files under their WAL names; the foreground call
//!   renames one to `%p`.
//!
//! One push spool per configuration (every setting a worker is started with) and one fetch spool
//! per repository location, so acknowledgements and prefetched files of one repository are
//! never taken for another's, and a push-ahead worker serves exactly the configuration of the
//! calls that feed it: a call with another one marks the other push spools `superseded`, and
//! their workers stop. pg_basebackup does not copy pg_wal's contents, so a spool never
//! travels into a new standby. `worker.lock` (flock) proves a worker alive: the kernel drops the
//! lock when the worker dies, however it dies.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Context, Error, Result};

/// The file that tells a push-ahead worker its configuration is no longer the one in use.
const SUPERSEDED: &str = "superseded";

/// The fetch spool's file in which the foreground call names the segment it just asked for.
pub const WANT: &str = "want";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolKind {
    Push,
    Fetch,
}

#[derive(Debug, Clone)]
pub struct Spool {
    pub dir: PathBuf,
    pub pg_wal: PathBuf,
}

/// What a push acknowledgement records about the source file, so that an acknowledgement is only
/// ever taken for the very file it was written for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStamp {
    pub len: u64,
    pub mtime_ns: i128,
    pub inode: u64,
}

impl SourceStamp {
    pub fn of(path: &Path) -> Result<SourceStamp> {
        let m = fs::metadata(path).context(format!("stat {}", path.display()))?;
        Ok(SourceStamp {
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            inode: m.ino(),
        })
    }

    fn encode(&self) -> String {
        format!("{} {} {}\n", self.len, self.mtime_ns, self.inode)
    }

    fn decode(s: &str) -> Option<SourceStamp> {
        let mut it = s.split_whitespace();
        Some(SourceStamp {
            len: it.next()?.parse().ok()?,
            mtime_ns: it.next()?.parse().ok()?,
            inode: it.next()?.parse().ok()?,
        })
    }
}

/// A taken acknowledgement.
#[derive(Debug)]
pub enum Ack {
    /// Durable in the repository; the worker's summary of the push.
    Done(String),
    /// The worker failed: the exit code of its error, and the message.
    Failed(i32, String),
}

impl Spool {
    /// The spool for `kind` and repository `location`, beside the WAL in `pg_wal`. Created (0700)
    /// if missing.
    pub fn open(pg_wal: &Path, kind: SpoolKind, location: &str) -> Result<Spool> {
        // Absolute, because a worker started from here runs in another directory.
        let pg_wal =
            std::path::absolute(pg_wal).context(format!("resolving {}", pg_wal.display()))?;
        let hash: String = Sha256::digest(location.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let prefix = match kind {
            SpoolKind::Push => "push",
            SpoolKind::Fetch => "fetch",
        };
        let dir = pg_wal.join("walship").join(format!("{prefix}-{hash}"));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .context(format!("creating spool {}", dir.display()))?;
        Ok(Spool { dir, pg_wal })
    }

    /// Try to become the worker: `Some(lock)` while held, `None` if another worker holds it.
    pub fn try_lock_worker(&self) -> Result<Option<File>> {
        self.try_lock("worker.lock")
    }

    /// Try to declare the spool's contents this worker's own. A prefetch worker takes this lock
    /// only after it has emptied the spool of what an earlier worker left (spool files are not
    /// fsynced: after a crash of the machine one may be torn), and holds it until it exits; a
    /// call takes a file from the spool only while someone holds it (`serving`). The worker lock
    /// alone would not do: it is taken before the spool is emptied.
    pub fn try_lock_serving(&self) -> Result<Option<File>> {
        self.try_lock("worker.serving.lock")
    }

    /// Become the worker for this spool, waiting briefly (`wait_for_lock`). The PID goes into the
    /// lock file, for people, tests and `stop_workers_and_clear` (the lock itself is what proves
    /// the worker alive).
    pub fn acquire_worker_lock(&self) -> Result<Option<File>> {
        let lock = wait_for_lock(|| self.try_lock_worker())?;
        if let Some(mut lock) = lock.as_ref() {
            let _ = lock.set_len(0);
            let _ = writeln!(lock, "{}", std::process::id());
        }
        Ok(lock)
    }

    /// `try_lock_serving`, waiting briefly (`wait_for_lock`).
    pub fn acquire_serving_lock(&self) -> Result<Option<File>> {
        wait_for_lock(|| self.try_lock_serving())
    }

    fn try_lock(&self, name: &str) -> Result<Option<File>> {
        let path = self.dir.join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(format!("opening {}", path.display()))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
    }

    /// Whether `lock` (held by this worker) is still this spool's lock file. If someone removed
    /// the spool, a new worker may have started with a new lock file: this one must stop.
    pub fn still_owns(&self, lock: &File) -> bool {
        match (fs::metadata(self.dir.join("worker.lock")), lock.metadata()) {
            (Ok(path), Ok(held)) => path.ino() == held.ino() && path.dev() == held.dev(),
            _ => false,
        }
    }

    /// Tell the workers of every other push spool in this pg_wal to stop (a `superseded` file,
    /// which they look for at every scan), and take back a stop meant for this one earlier.
    pub fn supersede_others(&self) {
        let _ = fs::remove_file(self.dir.join(SUPERSEDED));
        let Ok(entries) = fs::read_dir(self.pg_wal.join("walship")) else {
            return;
        };
        for e in entries.flatten() {
            let dir = e.path();
            if dir != self.dir
                && e.file_name().to_string_lossy().starts_with("push-")
                && !dir.join(SUPERSEDED).exists()
            {
                let _ = fs::write(dir.join(SUPERSEDED), "");
            }
        }
    }

    /// Whether a call with another configuration has arrived since this spool's worker started.
    pub fn superseded(&self) -> bool {
        self.dir.join(SUPERSEDED).exists()
    }

    /// Whether a worker holds the lock right now.
    pub fn worker_alive(&self) -> bool {
        matches!(self.try_lock_worker(), Ok(None))
    }

    /// Whether a live worker has emptied the spool and serves from it (`try_lock_serving`).
    pub fn serving(&self) -> bool {
        matches!(self.try_lock_serving(), Ok(None))
    }

    /// Write a file in the spool atomically (temp + rename; no fsync: a spool is a cache whose
    /// loss only costs time).
    pub fn write_atomic(&self, name: &str, contents: &str) -> Result<()> {
        let final_path = self.dir.join(name);
        let mut t = tempfile::Builder::new()
            .prefix(".ack-")
            .tempfile_in(&self.dir)
            .context(format!("writing {}", final_path.display()))?;
        t.write_all(contents.as_bytes())
            .context(format!("writing {}", final_path.display()))?;
        t.persist(&final_path)
            .map_err(|e| Error::io(format!("writing {}", final_path.display()), e.error))?;
        Ok(())
    }

    /// Acknowledge that `name` is durable in the repository; `summary` is for the log line.
    pub fn ack_ok(&self, name: &str, stamp: &SourceStamp, summary: &str) -> Result<()> {
        let _ = fs::remove_file(self.dir.join(format!("{name}.error")));
        self.write_atomic(
            &format!("{name}.ok"),
            &format!("{}{summary}\n", stamp.encode()),
        )
    }

    /// Record that pushing `name` failed, with the exit code its error maps to.
    pub fn ack_error(&self, name: &str, exit_code: i32, message: &str) -> Result<()> {
        self.write_atomic(&format!("{name}.error"), &format!("{exit_code}\n{message}"))
    }

    /// Take (read and remove) the acknowledgement for `name`, if there is one that belongs to
    /// this exact source file. An acknowledgement for another file of the same name (the stamp
    /// differs) is removed and ignored.
    pub fn take_ack(&self, name: &str, stamp: &SourceStamp) -> Option<Ack> {
        let ok = self.dir.join(format!("{name}.ok"));
        if let Ok(text) = fs::read_to_string(&ok) {
            let _ = fs::remove_file(&ok);
            let (first, summary) = text.split_once('\n').unwrap_or((&text, ""));
            if SourceStamp::decode(first).as_ref() == Some(stamp) {
                return Some(Ack::Done(summary.trim().to_string()));
            }
        }
        let err = self.dir.join(format!("{name}.error"));
        if let Ok(text) = fs::read_to_string(&err) {
            let _ = fs::remove_file(&err);
            let (code, message) = text.split_once('\n').unwrap_or(("3", &text));
            return Some(Ack::Failed(
                code.trim().parse().unwrap_or(3),
                message.to_string(),
            ));
        }
        None
    }

    /// The marker that says the prefetch worker is fetching `name` right now (dot-prefixed: a
    /// temporary, swept away by the next worker if this one dies). A call waits for it rather
    /// than fetching the segment a second time.
    pub fn in_flight_marker(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.inflight"))
    }

    /// Remove leftovers of a worker that died: temporary files (dot-prefixed).
    pub fn remove_temporaries(&self) {
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Names of the files in the spool (not temporaries, not the worker's lock and logs).
    pub fn entries(&self) -> Vec<String> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.') && !n.starts_with("worker."))
            .collect()
    }

    /// The log file a detached worker writes its stderr to.
    pub fn log_file(&self) -> Result<File> {
        let path = self.dir.join("worker.log");
        // Keep the log small: a worker that logs only starts, stops and errors rarely reaches
        // this, and a fresh log is better than an unbounded one.
        if fs::metadata(&path)
            .map(|m| m.len() > 4 << 20)
            .unwrap_or(false)
        {
            let _ = fs::rename(&path, self.dir.join("worker.log.1"));
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .context(format!("opening {}", path.display()))
    }
}

/// Start `walship <args>` detached from the caller (own session, no terminal, stderr to the
/// spool's log), so that it outlives the archive_command or restore_command call.
pub fn spawn_worker(spool: &Spool, args: &[std::ffi::OsString]) -> Result<std::process::Child> {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().context("locating the walship binary")?;
    let log = spool.log_file()?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .current_dir(&spool.pg_wal);
    crate::os::in_new_session(&mut cmd);
    cmd.spawn().context("starting a background worker")
}

pub use crate::os::free_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_is_taken_once_and_only_for_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("000000010000000000000001");
        fs::write(&src, b"x").unwrap();
        let spool = Spool::open(dir.path(), SpoolKind::Push, "/repo").unwrap();
        let stamp = SourceStamp::of(&src).unwrap();
        spool
            .ack_ok("000000010000000000000001", &stamp, "16 MiB")
            .unwrap();
        assert!(
            matches!(spool.take_ack("000000010000000000000001", &stamp), Some(Ack::Done(s)) if s == "16 MiB")
        );
        assert!(spool.take_ack("000000010000000000000001", &stamp).is_none());
        // an ack written for another file of the same name is not taken
        let other = SourceStamp {
            inode: stamp.inode + 1,
            ..stamp.clone()
        };
        spool
            .ack_ok("000000010000000000000001", &other, "")
            .unwrap();
        assert!(spool.take_ack("000000010000000000000001", &stamp).is_none());
        spool
            .ack_error("000000010000000000000001", 4, "boom\nHINT: x")
            .unwrap();
        assert!(
            matches!(spool.take_ack("000000010000000000000001", &stamp), Some(Ack::Failed(4, m)) if m == "boom\nHINT: x")
        );
        // another repository, another spool
        assert_ne!(
            Spool::open(dir.path(), SpoolKind::Push, "/other")
                .unwrap()
                .dir,
            spool.dir
        );
    }

    #[test]
    fn one_worker_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolKind::Fetch, "/repo").unwrap();
        assert!(!spool.worker_alive());
        let lock = spool.try_lock_worker().unwrap().expect("free");
        assert!(spool.try_lock_worker().unwrap().is_none());
        assert!(spool.worker_alive());
        assert!(spool.still_owns(&lock));
        fs::remove_dir_all(&spool.dir).unwrap();
        assert!(
            !spool.still_owns(&lock),
            "a worker whose spool was removed must stop"
        );
        drop(lock);
    }

    #[test]
    fn a_worker_serves_only_once_it_says_so_and_the_lock_is_not_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolKind::Fetch, "/repo").unwrap();
        let worker = spool.try_lock_worker().unwrap().expect("free");
        assert!(spool.worker_alive() && !spool.serving());
        let serving = spool.try_lock_serving().unwrap().expect("free");
        assert!(spool.serving());
        // a worker sweeping its spool's entries must not delete the lock it serves under
        assert!(spool.entries().is_empty(), "{:?}", spool.entries());
        drop(serving);
        assert!(!spool.serving());
        drop(worker);
    }
}

/// Take a spool lock, trying for 200 ms: a foreground call probing whether it is held holds it
/// for an instant. `None` if someone else really holds it.
fn wait_for_lock(try_lock: impl Fn() -> Result<Option<File>>) -> Result<Option<File>> {
    for _ in 0..20 {
        if let Some(lock) = try_lock()? {
            return Ok(Some(lock));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(None)
}

/// Stop every walship worker whose spool is in `pg_wal` (their PIDs are in their lock files;
/// SIGTERM, then SIGKILL after `grace`) and remove the spools. For `rejoin`: pg_rewind rewrites
/// `pg_wal`, and a worker of the server's previous life must not read or write there meanwhile.
/// A killed worker leaves nothing half-published (FORMAT.md), and a spool is only a cache.
pub fn stop_workers_and_clear(pg_wal: &Path, grace: std::time::Duration) -> Result<()> {
    let root = pg_wal.join("walship");
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let lock_path = e.path().join("worker.lock");
        let Ok(f) = OpenOptions::new().read(true).write(true).open(&lock_path) else {
            continue;
        };
        if f.try_lock().is_ok() {
            continue; // no worker
        }
        // The holder as the kernel knows it: the PID in the file may still be a dead
        // predecessor's (a new worker writes its own only after taking the lock), and that PID
        // may belong to an unrelated process by now.
        let Some(pid) = crate::os::flock_holder(&lock_path)
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 1)
        else {
            return Err(Error::unavailable(format!(
                "cannot tell which process holds {}; not signalling anything",
                lock_path.display()
            ))
            .with_hint("Stop the walship worker of this spool by hand (it holds the lock file), then try again."));
        };
        crate::log_line!(
            "walship: stopping the walship worker (pid {pid}) of {}",
            e.path().display()
        );
        let started = std::time::Instant::now();
        crate::os::signal(pid, libc::SIGTERM);
        while f.try_lock().is_err() {
            if started.elapsed() > grace {
                crate::os::signal(pid, libc::SIGKILL);
            }
            if started.elapsed() > grace * 2 {
                return Err(Error::unavailable(format!(
                    "the walship worker (pid {pid}) of {} does not stop",
                    e.path().display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    fs::remove_dir_all(&root).context(format!("removing {}", root.display()))
}

#[cfg(test)]
mod stop_tests {
    use super::*;

    #[test]
    fn regression_rejoin_stops_the_lock_holder_not_the_pid_written_in_the_lock_file() {
        // pg_rewind failed with "could not remove file pg_wal/walship/fetch-.../SEG" because a
        // prefetch worker was renaming files in its spool at the same time.
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("pg_wal/walship/fetch-0123456789abcdef");
        fs::create_dir_all(&spool).unwrap();
        let lock = spool.join("worker.lock");
        fs::write(&lock, "").unwrap();
        let mut holder = std::process::Command::new("perl")
            .args(["-e", "use Fcntl ':flock'; open(F, '>>', $ARGV[0]) or die; flock(F, LOCK_EX) or die; sleep 60"])
            .arg(&lock)
            .spawn()
            .unwrap();
        // wait until the stand-in worker holds the lock, then record its PID as workers do
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lock)
            .unwrap();
        while f.try_lock().is_ok() {
            f.unlock().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // the lock file names a process that is not the holder (here: this test itself), as it
        // does between a new worker taking the lock and writing its PID: only the holder is
        // signalled
        fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
        let started = std::time::Instant::now();
        stop_workers_and_clear(
            &dir.path().join("pg_wal"),
            std::time::Duration::from_secs(2),
        )
        .unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(holder.wait().unwrap().signal(), Some(libc::SIGTERM));
        assert!(!dir.path().join("pg_wal/walship").exists());
        // nothing to stop: fine too
        stop_workers_and_clear(
            &dir.path().join("pg_wal"),
            std::time::Duration::from_secs(2),
        )
        .unwrap();
    }

    #[test]
    fn free_space_is_read_from_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
        assert_eq!(free_bytes(&dir.path().join("missing")), None);
    }
}
