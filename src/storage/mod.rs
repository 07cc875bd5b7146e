//! The storage interface every repository backend implements, and the choice of backend from a
//! repository URL. Backends move bytes; they know nothing about WAL or object headers.
//!
//! Every write goes through [`NewObject`]: the bytes go to a temporary name in the target
//! directory, [`NewObject::commit`] fsyncs the file, publishes it under its final name *without
//! overwriting* anything, and fsyncs the directory. That is the whole durability contract, in one
//! place per backend.

pub mod local;
#[cfg(test)]
pub mod memory;
pub mod s3;
pub mod ssh;
pub(crate) mod ssh_session;

use std::io::{Read, Write};

use crate::error::{Error, Result};

/// What a commit found: the object is now published, or the name was already taken (by a
/// concurrent or earlier writer) and the new bytes were discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    Created,
    AlreadyExists,
}

/// A new object being written under a temporary name (object storage: not visible at all until
/// commit). Dropping it without `commit` removes the temporary file (best effort; a leftover is
/// harmless, see FORMAT.md). Written front to back: an object storage upload cannot seek, so a
/// header known only at the end is reserved at creation ([`Storage::create_with_header`]) and
/// given to [`NewObject::write_header`].
pub trait NewObject: Write {
    /// Fill the header reserved by [`Storage::create_with_header`] (exactly its length), after
    /// everything else was written and before `commit`.
    fn write_header(&mut self, header: &[u8]) -> std::io::Result<()>;

    /// fsync the file, publish it under the final name without clobbering, fsync the directory.
    fn commit(self: Box<Self>) -> Result<Publish>;

    /// fsync the file, put it in place of the file at the final name in one atomic step (a
    /// reader sees the old bytes or the new, never neither), fsync the directories. Only for
    /// `push --replace-damaged`, which has proved the object there damaged and this file its
    /// exact original. A backend without an atomic replace refuses.
    fn commit_replacing(self: Box<Self>) -> Result<()> {
        Err(
            Error::usage("this repository backend cannot replace an object in one atomic step")
                .with_hint(
                    "Over SSH, copy the good file to the repository host and run `walship --repo \
             /path/of/the/repository push --replace-damaged FILE NAME` there.",
                ),
        )
    }
}

/// A repository backend. Paths are relative to the repository root and use `/`.
pub trait Storage {
    /// Where this storage is, for messages: a path or an `ssh://` URL.
    fn describe(&self) -> String;

    /// Fail with a clear error if the repository root does not exist or is not a directory.
    fn check_root(&self) -> Result<()>;

    /// Open a file for reading; `None` if it does not exist.
    fn open_read(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>>;

    /// The first `len` bytes of the file at `path` (fewer if it is shorter); `None` if it does
    /// not exist. What answers "already archived?" from an object header: a backend that
    /// can (object storage) asks for just these bytes.
    fn read_prefix(&self, path: &str, len: usize) -> Result<Option<Vec<u8>>> {
        read_prefix_of(self, path, len)
    }

    /// Remove the files at `paths` (prune, under its lock); returns how many were there. A
    /// backend that can (object storage) removes them in batches.
    fn remove_many(&self, paths: &[String]) -> Result<usize> {
        let mut n = 0;
        for p in paths {
            n += usize::from(self.remove(p)?);
        }
        Ok(n)
    }

    /// Fail unless publishing refuses a name that exists (FORMAT.md's no-clobber publish). A
    /// file system's link/rename does by nature; an object store must be asked (the first push
    /// into an empty repository and `walship check` do).
    fn check_conditional_create(&self) -> Result<()> {
        Ok(())
    }

    /// After `open_read` found nothing at `path`: fail if that was damage rather than absence (a
    /// path through a file, a looping symlink). "Not in the archive" ends a point-in-time
    /// recovery, so fetch asks this before saying it. A backend whose open already tells these
    /// apart (the local one: ENOTDIR and ELOOP are errors there) needs nothing more.
    fn confirm_absent(&self, _path: &str) -> Result<()> {
        Ok(())
    }

    /// Start writing a new file at `path`, creating missing directories (mode 0700, each fsynced
    /// into its parent). The file gets mode 0600.
    fn create(&self, path: &str) -> Result<Box<dyn NewObject + '_>>;

    /// As [`Storage::create`], for an object whose first `header_len` bytes are known only when
    /// the rest is written (a WAL object's header records digests of its payload): they are
    /// reserved now and given to [`NewObject::write_header`] before commit. What is written is
    /// the rest. A backend that uploads as it goes keeps such an object whole until commit.
    fn create_with_header(&self, path: &str, header_len: usize) -> Result<Box<dyn NewObject + '_>>;

    /// fsync the file at `path` and every directory from its parent up to the repository root.
    /// Called before reporting an object that was already there as archived: its writer may have
    /// died between publishing it and syncing its directory.
    fn make_durable(&self, path: &str) -> Result<()>;

    /// The entries of directory `dir`, temporary (dot-prefixed) names left out; empty if the
    /// directory does not exist.
    fn list(&self, dir: &str) -> Result<Vec<DirEntry>>;

    /// The temporary files of writers (`.<name>.<random>.tmp`, FORMAT.md) in directory `dir`,
    /// which `list` leaves out; empty if the directory does not exist.
    fn list_temporaries(&self, dir: &str) -> Result<Vec<DirEntry>>;

    /// Remove the file at `path`; `false` if it was not there. Only `prune` (under the repository
    /// lock) and lock release call this. The directory is not synced here: a batch of removals
    /// ends with one [`Storage::sync_directory`].
    fn remove(&self, path: &str) -> Result<bool>;

    /// Remove the directory `dir` if it is empty (temporary files of a writer in progress count as
    /// entries, so a directory a push is writing into stays); `false` if it was kept.
    fn remove_dir_if_empty(&self, dir: &str) -> Result<bool>;

    /// fsync the directory `dir`, so that the removals made in it survive a crash.
    fn sync_directory(&self, dir: &str) -> Result<()>;
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// Last modification, seconds since the Unix epoch, where the backend knows it.
    pub modified: Option<i64>,
}

/// Where a repository lives, parsed from `repo = ...` (a path or `ssh://[user@]host[:port]/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(std::path::PathBuf),
    Ssh(ssh::SshUrl),
    S3(s3::S3Url),
}

impl Location {
    pub fn parse(repo: &str) -> Result<Location> {
        if repo.is_empty() {
            return Err(Error::usage("the repository location is empty"));
        }
        if let Some(rest) = repo.strip_prefix("ssh://") {
            return Ok(Location::Ssh(ssh::SshUrl::parse(rest, repo)?));
        }
        if let Some(rest) = repo.strip_prefix("s3://") {
            return Ok(Location::S3(s3::S3Url::parse(rest, repo)?));
        }
        if repo.contains("://") {
            return Err(Error::usage(format!(
                "repository {repo:?}: unknown scheme; use a local path, ssh://[user@]host[:port]/path or s3://bucket/prefix"
            )));
        }
        if !repo.starts_with('/') {
            // archive_command runs in the data directory: a relative path would put the archive
            // inside the cluster it is meant to protect.
            return Err(Error::usage(format!(
                "repository {repo:?} is a relative path; give an absolute path"
            )));
        }
        Ok(Location::Local(repo.into()))
    }
}

/// Split a repository-relative path into its parent directory and file name.
pub(crate) fn split_path(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", path),
    }
}

/// The directories to fsync for an object in `dir` (relative): `dir` itself, then each ancestor,
/// ending with the root ("").
pub(crate) fn dir_chain(dir: &str) -> Vec<String> {
    let mut chain = Vec::new();
    let mut current = dir.trim_matches('/').to_string();
    while !current.is_empty() {
        chain.push(current.clone());
        current = current
            .rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
    }
    chain.push(String::new());
    chain
}

/// What identifies a directory for [`DurableDirs`]: local, its device and inode (a directory
/// removed and made again is another one); `None` where the backend cannot tell (SFTP).
pub(crate) type DirId = Option<(u64, u64)>;

/// The directories whose entries in their parents one connection has seen durable: it fsynced
/// the parent after the directory existed. Keyed by the directory, not by the parent synced: a
/// parent synced before another writer (thread or process) created a directory in it says
/// nothing about that directory, which a crash can still lose with everything published in it.
#[derive(Default)]
pub(crate) struct DurableDirs(std::cell::RefCell<std::collections::HashMap<String, DirId>>);

impl DurableDirs {
    /// fsync `dir` (relative), and the parent of every directory on its path up to the root
    /// whose entry this connection has not yet seen durable (or that was made again since, where
    /// `id` can tell), so that a name published in `dir` is durable once this returns.
    pub(crate) fn sync_path(
        &self,
        dir: &str,
        sync: impl Fn(&str) -> Result<()>,
        id: impl Fn(&str) -> DirId,
    ) -> Result<()> {
        let chain = dir_chain(dir);
        sync(&chain[0])?;
        for pair in chain.windows(2) {
            let (child, parent) = (&pair[0], &pair[1]);
            let now = id(child);
            let seen = self.0.borrow().get(child).copied();
            if seen.is_some_and(|s| s == now) {
                continue;
            }
            sync(parent)?;
            self.0.borrow_mut().insert(child.clone(), now);
        }
        Ok(())
    }
}

/// Whether a directory entry is a writer's temporary file (see [`temp_name`]).
pub(crate) fn is_temporary(name: &str, is_dir: bool) -> bool {
    !is_dir && name.starts_with('.') && name.ends_with(".tmp") && name.len() > 5
}

/// A temporary name beside `name`: dot-prefixed so every reader ignores it (FORMAT.md).
pub(crate) fn temp_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.{}-{nanos:08x}-{n}.tmp", std::process::id())
}

pub(crate) use crate::os::read_full;

/// [`Storage::read_prefix`] by reading the start of the whole file: what a backend without
/// ranged reads does, and object storage where a range cannot be asked for (an empty object).
pub(crate) fn read_prefix_of<S: Storage + ?Sized>(
    storage: &S,
    path: &str,
    len: usize,
) -> Result<Option<Vec<u8>>> {
    let Some(mut r) = storage.open_read(path)? else {
        return Ok(None);
    };
    let mut buf = vec![0u8; len];
    let n = read_full(&mut r, &mut buf)
        .map_err(|e| Error::io(format!("reading {path} in {}", storage.describe()), e))?;
    buf.truncate(n);
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn regression_a_directory_another_writer_created_is_synced_into_its_parent_before_use() {
        // T2 synced wal/ earlier (publishing into wal/A); T1 then creates wal/B and has not
        // synced wal/ yet when T2 publishes into wal/B: T2 must sync wal/ itself.
        let synced = RefCell::new(Vec::<String>::new());
        let ids = RefCell::new(std::collections::HashMap::<String, DirId>::new());
        let dirs = DurableDirs::default();
        let sync = |d: &str| {
            synced.borrow_mut().push(d.to_string());
            Ok(())
        };
        let id = |d: &str| ids.borrow().get(d).copied().unwrap_or(Some((1, 1)));
        dirs.sync_path("wal/A", sync, id).unwrap();
        assert_eq!(*synced.borrow(), ["wal/A", "wal", ""]);
        synced.borrow_mut().clear();
        dirs.sync_path("wal/A", sync, id).unwrap();
        assert_eq!(
            *synced.borrow(),
            ["wal/A"],
            "known durable: the directory only"
        );
        synced.borrow_mut().clear();
        dirs.sync_path("wal/B", sync, id).unwrap();
        assert_eq!(
            *synced.borrow(),
            ["wal/B", "wal"],
            "wal/B is new to this connection"
        );
        // wal/A removed by prune and made again by another writer: a new inode
        synced.borrow_mut().clear();
        ids.borrow_mut().insert("wal/A".into(), Some((1, 2)));
        dirs.sync_path("wal/A", sync, id).unwrap();
        assert_eq!(*synced.borrow(), ["wal/A", "wal"]);
        // a file at the root: the root only
        synced.borrow_mut().clear();
        dirs.sync_path("", sync, id).unwrap();
        assert_eq!(*synced.borrow(), [""]);
    }

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("/var/lib/walship").unwrap(),
            Location::Local("/var/lib/walship".into())
        );
        assert!(matches!(
            Location::parse("ssh://u@h:2222/r").unwrap(),
            Location::Ssh(_)
        ));
        assert!(matches!(
            Location::parse("s3://bucket/x").unwrap(),
            Location::S3(_)
        ));
        for bad in ["", "relative/dir", "gs://bucket/x", "s3://B/x", "./x"] {
            assert_eq!(
                Location::parse(bad).unwrap_err().kind,
                crate::error::Kind::Usage,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_dir_chain_ends_at_the_root() {
        assert_eq!(
            dir_chain("wal/0000000100000000"),
            vec!["wal/0000000100000000", "wal", ""]
        );
        assert_eq!(dir_chain(""), vec![""]);
    }

    #[test]
    fn temp_names_are_hidden_and_unique() {
        let a = temp_name("X");
        let b = temp_name("X");
        assert!(a.starts_with(".X.") && a.ends_with(".tmp"));
        assert_ne!(a, b);
    }
}
