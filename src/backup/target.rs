//! The directories a restore writes (the data directory and each tablespace's): checked, emptied
//! where that is allowed, and marked incomplete, before a byte of the stream is read.
//!
//! `--force` empties a directory, so what it may empty is narrow: never a directory a running
//! cluster uses (its data directory, its tablespaces, its pg_wal, anything inside or above them),
//! never a tablespace directory holding another cluster's `PG_<version>_<catversion>` directory.
//! The one cluster `--force` replaces is the stopped one in the target data directory, with the
//! tablespaces its own `pg_tblspc` links name. Every check runs before anything is removed, so a
//! refusal leaves every directory as it was.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Tablespace;
use super::live::{
    refuse_clusters_inside, refuse_in_use, refuse_running_postmaster, running_clusters, version_dir,
};
use crate::error::{Error, Result};

/// Present in a data directory while a restore writes it (and after one that died).
pub const INCOMPLETE_MARKER: &str = "walship-restore.incomplete";

/// The line `walship restore --from-stdin` prints once its target is ready: the sender starts
/// the stream only then, so a refusal (a running postmaster, a non-empty directory) comes back
/// at once, in the restore's own words.
pub const READY: &str = "walship restore: ready for the backup stream";

/// Where a restore writes.
#[derive(Debug, Clone)]
pub struct Target {
    pub pgdata: PathBuf,
    /// Tablespace locations to move: (old, new), as pg_basebackup's -T.
    pub tablespace_map: Vec<(String, String)>,
    /// Empty a non-empty target (saying what is removed) instead of refusing.
    pub force: bool,
}

/// A target checked, emptied where allowed, and marked incomplete: ready for a stream.
pub struct Prepared {
    pub(super) pgdata: PathBuf,
    /// Each tablespace of the backup and the directory it is restored to.
    pub(super) tablespaces: HashMap<u32, PathBuf>,
    pub(super) expected: Vec<Tablespace>,
    /// The marker, locked (flock) for as long as this restore writes: a second restore into
    /// the same directory finds it locked and stays out, rather than empty it under us.
    pub(super) lock: fs::File,
}

/// Check and prepare `target` for a backup with these tablespaces (`what` names it in the
/// marker), before a byte of the stream is read.
pub fn prepare(target: &Target, what: &str, tablespaces: &[Tablespace]) -> Result<Prepared> {
    let pgdata = &target.pgdata;
    let mut dirs: Vec<(u32, &str, PathBuf)> = Vec::new();
    for ts in tablespaces {
        let new = target
            .tablespace_map
            .iter()
            .find(|(old, _)| old.trim_end_matches('/') == ts.location.trim_end_matches('/'))
            .map(|(_, new)| new.clone())
            .unwrap_or_else(|| ts.location.clone());
        let new = PathBuf::from(new);
        if !new.is_absolute() {
            return Err(Error::usage(format!(
                "tablespace {}: {}: give an absolute path",
                ts.oid,
                new.display()
            ))
            .with_hint("--tablespace-map OLD=NEW takes absolute paths, as pg_basebackup -T."));
        }
        dirs.push((ts.oid, &ts.location, new));
    }
    for (old, _) in &target.tablespace_map {
        if !tablespaces
            .iter()
            .any(|t| t.location.trim_end_matches('/') == old.trim_end_matches('/'))
        {
            return Err(Error::usage(format!(
                "--tablespace-map {old}=...: the backup has no tablespace at {old}"
            )));
        }
    }
    let marker = read_marker(pgdata);
    // Held until the new marker is in place: of two restores that find a dead one's marker, one
    // empties the directory, the other finds the lock and stays out.
    let _previous = match marker {
        Some(_) => Some(lock_marker(pgdata, |p| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)
        })?),
        None => None,
    };
    let running = running_clusters();
    // Read before the data directory is emptied: the tablespaces of the cluster --force replaces.
    let replaced: Vec<PathBuf> = fs::read_dir(pgdata.join("pg_tblspc"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::canonicalize(e.path()).ok())
        .collect();

    // Every check first: a refusal must find every directory as it was.
    let mut plan = vec![(pgdata.clone(), marker.is_some(), "data directory")];
    for (_, old, dir) in &dirs {
        let ours = marker.as_ref().is_some_and(|m| names(m, dir));
        plan.push((dir.clone(), ours, "tablespace directory"));
        // The stopped cluster's own tablespace is left to the non-empty check (--force).
        let may_replace = ours || fs::canonicalize(dir).is_ok_and(|c| replaced.contains(&c));
        if !may_replace && let Some(pg) = version_dir(dir) {
            return Err(Error::conflict(format!(
                "tablespace directory {} holds {pg}, another cluster's tablespace: walship never \
                 empties it or writes into it, even with --force",
                dir.display()
            ))
            .with_hint(format!(
                "Restore the tablespace somewhere new: --tablespace-map {old}=NEW_DIR (it defaults \
                 to the backup's location). If that cluster is gone for good, remove {} yourself.",
                dir.display()
            )));
        }
    }
    if marker.is_none()
        && let Some(pg) = version_dir(pgdata)
    {
        return Err(Error::conflict(format!(
            "data directory {} holds {pg}: it is a tablespace directory, not a data directory",
            pgdata.display()
        ))
        .with_hint("Restore into an empty or new directory (--pgdata)."));
    }
    for (dir, ours, what) in &plan {
        refuse_running_postmaster(dir)?;
        refuse_in_use(dir, what, &running)?;
        if !ours && !target.force && !is_empty(dir)? {
            return Err(Error::conflict(format!(
                "{what} {} is not empty",
                dir.display()
            ))
            .with_hint(
                "Restore into an empty or new directory, or add --force to remove what is there \
                 (never a running cluster's).",
            ));
        }
        refuse_clusters_inside(dir, what)?;
    }
    for (dir, ours, what) in &plan {
        empty_dir(dir, *ours, what)?;
    }
    let lock = write_marker(pgdata, what, dirs.iter().map(|(_, _, d)| d))?;
    let mut expected = tablespaces.to_vec();
    expected.sort_by_key(|t| t.oid);
    Ok(Prepared {
        pgdata: pgdata.clone(),
        tablespaces: dirs.into_iter().map(|(oid, _, d)| (oid, d)).collect(),
        expected,
        lock,
    })
}

fn is_empty(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
        Ok(mut entries) => Ok(entries.next().is_none()),
    }
}

/// Make `dir` an empty directory (mode 0700), removing (and saying) what is there.
fn empty_dir(dir: &Path, ours: bool, what: &str) -> Result<()> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        Ok(entries) => {
            let names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            if !names.is_empty() {
                let (files, bytes) = count_tree(dir);
                crate::log_line!(
                    "walship: restore: removing {files} files ({}) from {what} {} ({})",
                    crate::units::human_bytes(bytes),
                    dir.display(),
                    if ours {
                        "left by an interrupted restore"
                    } else {
                        "--force"
                    }
                );
                for p in names {
                    let r = if p.is_dir() && !p.is_symlink() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    r.map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
                }
            }
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // PostgreSQL refuses a data directory others can read.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))
}

fn count_tree(dir: &Path) -> (u64, u64) {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .fold((0, 0), |(n, b), e| {
            (n + 1, b + e.metadata().map(|m| m.len()).unwrap_or(0))
        })
}

/// A path as one marker line: backslash and line breaks escaped, so that no path can add a line.
fn marker_line(dir: &Path) -> Vec<u8> {
    let mut line = b"tablespace ".to_vec();
    for &b in dir.as_os_str().as_bytes() {
        match b {
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            _ => line.push(b),
        }
    }
    line.push(b'\n');
    line
}

/// Whether the marker names `dir` exactly (a whole line, not a part of one).
fn names(marker: &[u8], dir: &Path) -> bool {
    let line = marker_line(dir);
    marker
        .split_inclusive(|&b| b == b'\n')
        .any(|l| l == line.as_slice())
}

/// Open `pgdata`'s marker with `open` and lock it; a lock another restore holds is a refusal.
fn lock_marker(
    pgdata: &Path,
    open: impl FnOnce(&Path) -> std::io::Result<fs::File>,
) -> Result<fs::File> {
    let p = pgdata.join(INCOMPLETE_MARKER);
    let f = open(&p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(Error::conflict(format!(
            "another walship restore is writing into {} (it holds {INCOMPLETE_MARKER})",
            pgdata.display()
        ))
        .with_hint("Let it finish, or stop it; then run the restore again.")),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", p.display()), e)),
    }
}

/// The marker: which tablespace directories this restore writes (a rerun may empty them),
/// created new and returned locked.
fn write_marker<'a>(
    pgdata: &Path,
    what: &str,
    dirs: impl Iterator<Item = &'a PathBuf>,
) -> Result<fs::File> {
    let mut text = format!(
        "# walship restore of {what} in progress (or interrupted): this directory is incomplete.\n\
         # Run the restore again; it starts over. PostgreSQL cannot start here: global/pg_control is written last.\n"
    )
    .into_bytes();
    for d in dirs {
        text.extend(marker_line(d));
    }
    let p = pgdata.join(INCOMPLETE_MARKER);
    let write_err = |e| Error::io(format!("writing {}", p.display()), e);
    // create_new: a restore that started at the same moment made one first, and is writing.
    let mut f = lock_marker(pgdata, |p| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
    })
    .map_err(|e| match e.message.contains("File exists") {
        true => Error::conflict(format!(
            "another walship restore is writing into {} (it made {INCOMPLETE_MARKER} first)",
            pgdata.display()
        )),
        false => e,
    })?;
    f.write_all(&text)
        .and_then(|_| f.sync_all())
        .map_err(write_err)?;
    crate::storage::local::sync_dir(pgdata)?;
    Ok(f)
}

/// The marker's bytes if `pgdata` holds one (a regular file, not a link to one).
fn read_marker(pgdata: &Path) -> Option<Vec<u8>> {
    let p = pgdata.join(INCOMPLETE_MARKER);
    fs::symlink_metadata(&p).ok()?.is_file().then_some(())?;
    fs::read(p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    fn ts(oid: u32, dir: &Path) -> Tablespace {
        Tablespace {
            oid,
            location: dir.display().to_string(),
        }
    }

    fn forced(pgdata: &Path) -> Target {
        Target {
            pgdata: pgdata.to_path_buf(),
            tablespace_map: Vec::new(),
            force: true,
        }
    }

    /// A tablespace directory as PostgreSQL 15 fills it.
    fn live_tablespace(dir: &Path) -> PathBuf {
        let f = dir.join("PG_15_202209061/16385/16386");
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, b"rows of the live cluster").unwrap();
        f
    }

    fn old_cluster(pgdata: &Path) -> PathBuf {
        fs::create_dir_all(pgdata.join("global")).unwrap();
        fs::create_dir_all(pgdata.join("pg_tblspc")).unwrap();
        let f = pgdata.join("PG_VERSION");
        fs::write(&f, b"15\n").unwrap();
        f
    }

    #[test]
    fn force_never_empties_a_tablespace_holding_another_clusters_pg_directory() {
        let d = tempfile::tempdir().unwrap();
        let live = live_tablespace(&d.path().join("ts"));
        let pgdata = d.path().join("new");
        let kept = old_cluster(&pgdata);
        let e = prepare(&forced(&pgdata), "t", &[ts(16384, &d.path().join("ts"))])
            .err()
            .unwrap_or_else(|| panic!("the live tablespace was emptied"));
        assert_eq!(e.kind, Kind::Conflict, "{e}");
        assert!(e.message.contains("PG_15_202209061"), "{e}");
        assert!(
            e.hint.as_deref().unwrap().contains("--tablespace-map"),
            "{e:?}"
        );
        // and nothing was removed anywhere, the data directory included
        assert!(live.exists() && kept.exists());
        assert!(!pgdata.join(INCOMPLETE_MARKER).exists());
        // without --force the hint is the same: not "add --force"
        let mut t = forced(&pgdata);
        t.force = false;
        let e = prepare(&t, "t", &[ts(16384, &d.path().join("ts"))])
            .err()
            .unwrap();
        assert!(!e.hint.as_deref().unwrap().contains("add --force"), "{e:?}");
        // a directory that merely sounds like one is emptied as any other with --force
        let other = d.path().join("ts2");
        fs::create_dir_all(other.join("PG_notaversion")).unwrap();
        prepare(&forced(&d.path().join("new2")), "t", &[ts(1, &other)]).unwrap();
        assert!(is_empty(&other).unwrap());
    }

    #[test]
    fn force_replaces_the_tablespace_of_the_stopped_cluster_it_replaces() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ts");
        live_tablespace(&dir);
        let pgdata = d.path().join("old");
        old_cluster(&pgdata);
        std::os::unix::fs::symlink(&dir, pgdata.join("pg_tblspc/16384")).unwrap();
        // without --force, the usual refusal, whose hint is --force
        let mut t = forced(&pgdata);
        t.force = false;
        let e = prepare(&t, "t", &[ts(16384, &dir)]).err().unwrap();
        assert!(e.message.contains("is not empty"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("--force"), "{e:?}");
        let p = prepare(&forced(&pgdata), "t", &[ts(16384, &dir)]).unwrap();
        assert!(is_empty(&dir).unwrap());
        assert_eq!(p.tablespaces[&16384], dir);
        assert!(pgdata.join(INCOMPLETE_MARKER).exists());
    }

    /// A process standing in for a postmaster: its working directory is `pgdata`, whose
    /// postmaster.pid names it.
    struct FakePostmaster(std::process::Child);
    impl FakePostmaster {
        fn start(pgdata: &Path) -> FakePostmaster {
            let child = std::process::Command::new("sleep")
                .arg("600")
                .current_dir(pgdata)
                .spawn()
                .unwrap();
            fs::write(
                pgdata.join("postmaster.pid"),
                format!("{}\n{}\n", child.id(), pgdata.display()),
            )
            .unwrap();
            FakePostmaster(child)
        }
    }
    impl Drop for FakePostmaster {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn force_never_touches_a_directory_a_running_cluster_uses() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("live");
        old_cluster(&live);
        // its tablespace holds no PG_ directory yet: the running cluster alone must stop --force
        let live_ts = d.path().join("live_ts");
        fs::create_dir_all(&live_ts).unwrap();
        fs::write(live_ts.join("kept"), b"x").unwrap();
        std::os::unix::fs::symlink(&live_ts, live.join("pg_tblspc/16384")).unwrap();
        let wal = d.path().join("live_wal");
        fs::create_dir_all(&wal).unwrap();
        fs::write(wal.join("000000010000000000000001"), b"wal").unwrap();
        std::os::unix::fs::symlink(&wal, live.join("pg_wal")).unwrap();
        let _pm = FakePostmaster::start(&live);
        let new = d.path().join("new");
        for (pgdata, tablespaces) in [
            // the point-in-time restore on the primary's host, tablespace at its old place
            (new.clone(), vec![ts(16384, &live_ts)]),
            // a tablespace inside the live data directory, or above it, or its pg_wal
            (new.clone(), vec![ts(1, &live.join("base/sub"))]),
            (new.clone(), vec![ts(1, d.path())]),
            (new.clone(), vec![ts(1, &wal)]),
            // the data directory itself, one above it, one inside it, one through a link
            (live.clone(), vec![]),
            (d.path().to_path_buf(), vec![]),
            (live.join("sub"), vec![]),
            (d.path().join("link/sub"), vec![]),
        ] {
            let _ = std::os::unix::fs::symlink(&live, d.path().join("link"));
            let e = prepare(&forced(&pgdata), "t", &tablespaces)
                .err()
                .unwrap_or_else(|| panic!("{} {tablespaces:?} was prepared", pgdata.display()));
            assert_eq!(e.kind, Kind::Conflict, "{e}");
            assert!(
                e.message.contains("running") || e.message.contains("runs"),
                "{e}"
            );
        }
        assert!(live_ts.join("kept").exists());
        assert!(wal.join("000000010000000000000001").exists());
        assert!(live.join("PG_VERSION").exists());
        assert!(
            !new.exists(),
            "a refused restore created its data directory"
        );
    }

    #[test]
    fn force_never_removes_a_cluster_found_below_the_target() {
        let d = tempfile::tempdir().unwrap();
        // another user's running cluster, seen only through its postmaster.pid (this process)
        let live = d.path().join("srv/live");
        old_cluster(&live);
        fs::write(
            live.join("postmaster.pid"),
            format!("{}\n{}\n", std::process::id(), live.display()),
        )
        .unwrap();
        let e = prepare(&forced(&d.path().join("srv")), "t", &[])
            .err()
            .unwrap_or_else(|| panic!("a running cluster below the target was removed"));
        assert_eq!(e.kind, Kind::Conflict, "{e}");
        assert!(e.message.contains("postmaster.pid"), "{e}");
        assert!(live.join("PG_VERSION").exists());
        // a tablespace one level down
        let file = live_tablespace(&d.path().join("other/ts"));
        let e = prepare(&forced(&d.path().join("other")), "t", &[])
            .err()
            .unwrap_or_else(|| panic!("a tablespace below the target was removed"));
        assert!(e.message.contains("PG_15_202209061"), "{e}");
        assert!(file.exists());
    }

    #[test]
    fn a_second_restore_into_the_same_directory_stays_out_while_the_first_writes() {
        let d = tempfile::tempdir().unwrap();
        let pgdata = d.path().join("new");
        let mut t = forced(&pgdata);
        t.force = false;
        let first = prepare(&t, "t", &[]).unwrap();
        fs::write(pgdata.join("PG_VERSION"), b"15\n").unwrap();
        // its marker says "ours" to a rerun, but the first restore is alive and holds it
        for force in [false, true] {
            t.force = force;
            let e = prepare(&t, "t", &[])
                .err()
                .unwrap_or_else(|| panic!("force={force}: the running restore was emptied"));
            assert_eq!(e.kind, Kind::Conflict, "{e}");
            assert!(e.message.contains("another walship restore"), "{e}");
            assert!(pgdata.join("PG_VERSION").exists());
        }
        // once it is gone (killed: its lock with it), a rerun starts over without --force
        drop(first);
        t.force = false;
        prepare(&t, "t", &[]).unwrap();
        assert!(!pgdata.join("PG_VERSION").exists());
    }

    #[test]
    fn a_marker_naming_ts10_does_not_unlock_ts1() {
        let d = tempfile::tempdir().unwrap();
        let pgdata = d.path().join("new");
        fs::create_dir_all(&pgdata).unwrap();
        let ts10 = d.path().join("ts10");
        // a path with a line break cannot add a line to the marker either
        let forged = PathBuf::from(format!(
            "{}\ntablespace {}/ts1",
            d.path().display(),
            d.path().display()
        ));
        write_marker(&pgdata, "t", [ts10.clone(), forged].iter()).unwrap();
        let ts1 = d.path().join("ts1");
        fs::create_dir_all(&ts1).unwrap();
        fs::write(ts1.join("somebody's"), b"data").unwrap();
        let mut t = forced(&pgdata);
        t.force = false;
        let e = prepare(&t, "t", &[ts(1, &ts1)])
            .err()
            .unwrap_or_else(|| panic!("ts1 was emptied"));
        assert_eq!(e.kind, Kind::Conflict, "{e}");
        assert!(ts1.join("somebody's").exists());
        // the marker's own directory is still its own
        fs::create_dir_all(&ts10).unwrap();
        fs::write(ts10.join("left"), b"by the restore").unwrap();
        prepare(&t, "t", &[ts(1, &ts10)]).unwrap();
        assert!(is_empty(&ts10).unwrap());
    }
}
