//! A repository in a local directory (or any mounted file system). Writes are atomic and durable:
//! temp file, fsync, no-clobber publish (renameat2 RENAME_NOREPLACE, or link + unlink where that
//! is missing), fsync of the directory.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use super::{DirEntry, DurableDirs, NewObject, Publish, Storage, is_temporary, split_path};
use crate::error::{Context, Error, Result};

pub struct LocalStorage {
    root: PathBuf,
    /// Directories this connection has seen durable in their parents (see `sync_dirs`).
    durable_dirs: DurableDirs,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> LocalStorage {
        LocalStorage {
            root: root.into(),
            durable_dirs: DurableDirs::default(),
        }
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }

    /// fsync `dir` (relative) and, where needed, its ancestors up to the root: a name is only
    /// durable once every directory on its path is (see [`DurableDirs`]).
    fn sync_dirs(&self, dir: &str) -> Result<()> {
        self.durable_dirs.sync_path(
            dir,
            |d| sync_dir(&self.full(d)),
            |d| {
                use std::os::unix::fs::MetadataExt;
                fs::symlink_metadata(self.full(d))
                    .ok()
                    .map(|m| (m.dev(), m.ino()))
            },
        )
    }

    /// The entries of `dir`: the dot-prefixed ones (`hidden`) or the others.
    fn entries(&self, dir: &str, hidden: bool) -> Result<Vec<DirEntry>> {
        let full = self.full(dir);
        let entries = match fs::read_dir(&full) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", full.display()), e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| Error::io(format!("listing {}", full.display()), e))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') != hidden {
                continue;
            }
            let m = e
                .metadata()
                .map_err(|err| Error::io(format!("stat {}", e.path().display()), err))?;
            out.push(DirEntry {
                name,
                is_dir: m.is_dir(),
                size: m.len(),
                modified: m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64),
            });
        }
        Ok(out)
    }

    /// Create `dir` (relative) and any missing parents below the root, each mode 0700 and fsynced
    /// into its parent so that a published object can never sit in a directory that a crash
    /// forgets.
    fn ensure_dir(&self, dir: &str) -> Result<()> {
        let mut current = self.root.clone();
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            let parent = current.clone();
            current.push(part);
            match DirBuilder::new().mode(0o700).create(&current) {
                Ok(()) => sync_dir(&parent)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("creating directory {}", current.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}

pub use crate::os::sync_dir;

impl Storage for LocalStorage {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn check_root(&self) -> Result<()> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Error::usage(format!(
                "repository {} is not a directory",
                self.root.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::unavailable(format!(
                "repository directory {} does not exist",
                self.root.display()
            ))
            .with_hint(
                "Create it (mkdir -m 700, owned by the PostgreSQL user) or fix `repo`; if it is a \
                 mount point, check that the file system is mounted.",
            )),
            Err(e) => Err(Error::io(format!("repository {}", self.root.display()), e)),
        }
    }

    fn open_read(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>> {
        let full = self.full(path);
        match File::open(&full) {
            Ok(f) => Ok(Some(Box::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("opening {}", full.display()), e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>> {
        self.entries(dir, false)
    }

    fn list_temporaries(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let mut out = self.entries(dir, true)?;
        out.retain(|e| is_temporary(&e.name, e.is_dir));
        Ok(out)
    }

    fn create(&self, path: &str) -> Result<Box<dyn NewObject + '_>> {
        self.create_with_header(path, 0)
    }

    fn create_with_header(&self, path: &str, header_len: usize) -> Result<Box<dyn NewObject + '_>> {
        let (dir, name) = split_path(path);
        self.ensure_dir(dir)?;
        let dir_path = self.full(dir);
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&dir_path)
            .context(format!(
                "creating a temporary file in {}",
                dir_path.display()
            ))?;
        let mut object = LocalNewObject {
            storage: self,
            temp,
            target: self.full(path),
            rel_dir: dir.to_string(),
            header_len,
        };
        object
            .write_all(&vec![0u8; header_len])
            .context(format!("writing {}", dir_path.display()))?;
        Ok(Box::new(object))
    }

    fn make_durable(&self, path: &str) -> Result<()> {
        let full = self.full(path);
        File::open(&full)
            .and_then(|f| f.sync_all())
            .context(format!("fsync of {}", full.display()))?;
        self.sync_dirs(split_path(path).0)
    }

    fn remove(&self, path: &str) -> Result<bool> {
        let full = self.full(path);
        match fs::remove_file(&full) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("removing {}", full.display()), e)),
        }
    }

    fn remove_dir_if_empty(&self, dir: &str) -> Result<bool> {
        let full = self.full(dir);
        match fs::remove_dir(&full) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::io(
                format!("removing directory {}", full.display()),
                e,
            )),
        }
    }

    fn sync_directory(&self, dir: &str) -> Result<()> {
        sync_dir(&self.full(dir))
    }
}

struct LocalNewObject<'a> {
    storage: &'a LocalStorage,
    temp: tempfile::NamedTempFile,
    target: PathBuf,
    /// The target's directory, relative to the root.
    rel_dir: String,
    /// Bytes reserved at the start for `write_header`.
    header_len: usize,
}

impl Write for LocalNewObject<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.as_file_mut().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.as_file_mut().flush()
    }
}

impl NewObject for LocalNewObject<'_> {
    fn write_header(&mut self, header: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        assert_eq!(header.len(), self.header_len, "the reserved header length");
        self.temp.as_file().write_all_at(header, 0)
    }

    fn commit(self: Box<Self>) -> Result<Publish> {
        let LocalNewObject {
            storage,
            temp,
            target,
            rel_dir,
            ..
        } = *self;
        temp.as_file()
            .sync_all()
            .context(format!("fsync of {}", temp.path().display()))?;
        match temp.persist_noclobber(&target) {
            Ok(_) => {}
            // The temp file is removed when the returned handle drops.
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(Publish::AlreadyExists);
            }
            Err(e) => {
                return Err(Error::io(
                    format!("publishing {}", target.display()),
                    e.error,
                ));
            }
        }
        storage.sync_dirs(&rel_dir)?;
        Ok(Publish::Created)
    }

    fn commit_replacing(self: Box<Self>) -> Result<()> {
        let LocalNewObject {
            storage,
            temp,
            target,
            rel_dir,
            ..
        } = *self;
        temp.as_file()
            .sync_all()
            .context(format!("fsync of {}", temp.path().display()))?;
        // rename(2) replaces the target atomically.
        temp.persist(&target)
            .map_err(|e| Error::io(format!("replacing {}", target.display()), e.error))?;
        storage.sync_dirs(&rel_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(s: &LocalStorage, path: &str, data: &[u8]) -> Publish {
        let mut o = s.create(path).unwrap();
        o.write_all(data).unwrap();
        o.commit().unwrap()
    }

    #[test]
    fn publishes_once_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        assert_eq!(write(&s, "a/b/x", b"first"), Publish::Created);
        assert_eq!(write(&s, "a/b/x", b"second"), Publish::AlreadyExists);
        assert_eq!(fs::read(dir.path().join("a/b/x")).unwrap(), b"first");
        // no temporary file is left behind by either writer
        let names: Vec<_> = fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["x"]);
        let mode = fs::metadata(dir.path().join("a/b/x"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(dir.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn an_uncommitted_object_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        let mut o = s.create("x").unwrap();
        o.write_all(b"partial").unwrap();
        drop(o);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(s.open_read("x").unwrap().is_none());
    }

    #[test]
    fn a_missing_root_is_an_error_not_an_empty_repository() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("nope"));
        let e = s.check_root().unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Unavailable);
        assert!(e.to_string().contains("does not exist"));
    }
}
