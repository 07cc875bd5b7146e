//! A repository on another host, reached over SSH with SFTP (libssh2 through the ssh2 crate).
//!
//! Security: the connection is opened by `ssh_session` (host key checked against known_hosts,
//! never trusted on first use). Durability: a temp file is written, `fsync@openssh.com`'d,
//! published with the SFTP v3 `rename` (OpenSSH's sftp-server implements it as link + unlink,
//! which fails if the target exists: a no-clobber publish), and the directory is opened read-only
//! and fsynced the same way.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType, Session, Sftp};

use super::ssh_session::{FX_NO_SUCH_FILE, Timing, open_session, ssh_err};
pub use super::ssh_session::{SshOptions, SshUrl};
use super::{
    DirEntry, DurableDirs, NewObject, Publish, Storage, is_temporary, split_path, temp_name,
};
use crate::error::{Error, Result};

pub struct SshStorage {
    url: SshUrl,
    // Keep the session alive as long as the SFTP channel.
    _session: Session,
    sftp: Sftp,
    /// Directories this connection has seen durable in their parents (see `sync_dirs`).
    durable_dirs: DurableDirs,
    /// `ssh_timeout`, in the unit libssh2 takes.
    timeout_ms: u32,
}

/// How long the clean-up after a failed transfer (closing the handle, removing the temporary,
/// closing the session) may wait for the server. A link that just stalled for a whole
/// `ssh_timeout` would otherwise cost that timeout again for every clean-up step: the stalled-link
/// drill measured 6 x ssh_timeout before this.
const CLEANUP_TIMEOUT_MS: u32 = 300;

impl SshStorage {
    /// A transfer failed: whatever follows on this connection is clean-up, and must not wait a
    /// whole `ssh_timeout` per step on a link that may be dead.
    fn cut_short(&self) {
        self._session.set_timeout(CLEANUP_TIMEOUT_MS);
    }

    /// The clean-up is over: back to `ssh_timeout` for whatever the connection does next.
    fn restore_timeout(&self) {
        self._session.set_timeout(self.timeout_ms);
    }
}

impl Drop for SshStorage {
    fn drop(&mut self) {
        // Everything durable is already durable; closing SFTP and the session is courtesy.
        self.cut_short();
    }
}

/// A file read over SFTP; a failed read cuts the closing of the handle short (see `cut_short`).
struct SshReader<'a> {
    storage: &'a SshStorage,
    file: Option<ssh2::File>,
    failed: bool,
}

impl Read for SshReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.file.as_mut().expect("open until dropped").read(buf);
        if r.is_err() {
            self.failed = true;
        }
        r
    }
}

impl Drop for SshReader<'_> {
    fn drop(&mut self) {
        if self.failed {
            self.storage.cut_short();
            drop(self.file.take());
            self.storage.restore_timeout();
        }
    }
}

impl SshStorage {
    pub fn connect(url: &SshUrl, opts: &SshOptions) -> Result<SshStorage> {
        let mut timing = Timing::start();
        let where_ = format!("ssh://{}:{}", url.host, url.port);
        let session = open_session(url, opts, &mut timing)?;
        let sftp = session
            .sftp()
            .map_err(|e| ssh_err(format!("{where_}: starting SFTP"), e))?;
        timing.mark("sftp");
        timing.report(&where_, &session);
        Ok(SshStorage {
            url: url.clone(),
            _session: session,
            sftp,
            durable_dirs: DurableDirs::default(),
            timeout_ms: u32::try_from(opts.timeout.as_millis()).unwrap_or(u32::MAX),
        })
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            PathBuf::from(&self.url.path)
        } else {
            PathBuf::from(format!("{}/{path}", self.url.path))
        }
    }

    fn stat(&self, path: &Path) -> Result<Option<FileStat>> {
        match self.sftp.stat(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.code() == ErrorCode::SFTP(FX_NO_SUCH_FILE) => Ok(None),
            Err(e) => Err(ssh_err(format!("stat {}", path.display()), e)),
        }
    }

    /// fsync a remote directory: OpenSSH's sftp-server opens it with open(O_RDONLY), and
    /// fsync@openssh.com on that handle is fsync(2) on the directory.
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut d = self
            .sftp
            .open_mode(dir, OpenFlags::READ, 0, OpenType::File)
            .map_err(|e| {
                ssh_err(
                    format!("opening directory {} to fsync it", dir.display()),
                    e,
                )
            })?;
        d.fsync().map_err(|e| {
            ssh_err(format!("fsync of directory {}", dir.display()), e)
                .with_hint("The SSH server must support the fsync@openssh.com extension (OpenSSH 6.5 or later).")
        })
    }

    /// fsync `dir` (relative) and, where needed, its ancestors up to the repository root (see
    /// [`DurableDirs`]; SFTP tells no inode, so a directory is known by its path).
    fn sync_dirs(&self, dir: &str) -> Result<()> {
        self.durable_dirs
            .sync_path(dir, |d| self.sync_dir(&self.full(d)), |_| Some((0, 0)))
    }

    /// The entries of `dir`: the dot-prefixed ones (`hidden`) or the others.
    fn entries(&self, dir: &str, hidden: bool) -> Result<Vec<DirEntry>> {
        let full = self.full(dir);
        let entries = match self.sftp.readdir(&full) {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::SFTP(FX_NO_SUCH_FILE) => return Ok(Vec::new()),
            Err(e) => return Err(ssh_err(format!("listing {}", full.display()), e)),
        };
        Ok(entries
            .into_iter()
            .filter_map(|(path, stat)| {
                let name = path.file_name()?.to_str()?.to_string();
                (name.starts_with('.') == hidden).then(|| DirEntry {
                    name,
                    is_dir: stat.is_dir(),
                    size: stat.size.unwrap_or(0),
                    modified: stat.mtime.map(|t| t as i64),
                })
            })
            .collect())
    }

    fn ensure_dir(&self, dir: &str) -> Result<()> {
        let mut current = PathBuf::from(&self.url.path);
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            let parent = current.clone();
            current.push(part);
            if let Some(st) = self.stat(&current)? {
                if !st.is_dir() {
                    return Err(Error::corrupt(format!(
                        "{} is not a directory",
                        current.display()
                    )));
                }
                continue;
            }
            match self.sftp.mkdir(&current, 0o700) {
                Ok(()) => self.sync_dir(&parent)?,
                // a concurrent writer created it first
                Err(_) if self.stat(&current)?.is_some_and(|s| s.is_dir()) => {}
                Err(e) => {
                    return Err(ssh_err(
                        format!("creating directory {}", current.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Storage for SshStorage {
    fn describe(&self) -> String {
        let user = self
            .url
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!(
            "ssh://{user}{}:{}{}",
            self.url.host, self.url.port, self.url.path
        )
    }

    fn check_root(&self) -> Result<()> {
        match self.stat(&self.full(""))? {
            Some(s) if s.is_dir() => Ok(()),
            Some(_) => Err(Error::usage(format!("repository {} is not a directory", self.describe()))),
            None => Err(Error::unavailable(format!("repository directory {} does not exist", self.describe()))
                .with_hint("Create it on the server (mkdir -m 700, owned by the SSH login user) or fix `repo`.")),
        }
    }

    fn open_read(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>> {
        let full = self.full(path);
        match self.sftp.open(&full) {
            Ok(file) => Ok(Some(Box::new(SshReader {
                storage: self,
                file: Some(file),
                failed: false,
            }))),
            Err(e) if e.code() == ErrorCode::SFTP(FX_NO_SUCH_FILE) => Ok(None),
            Err(e) => Err(ssh_err(format!("opening {}", full.display()), e)),
        }
    }

    /// OpenSSH's sftp-server answers ENOTDIR and ELOOP with "no such file" too, so `path` counts
    /// as absent only if nothing exists there and the nearest thing that exists above it is a
    /// directory. Anything else is a damaged repository.
    fn confirm_absent(&self, path: &str) -> Result<()> {
        let mut rel = Some(path);
        while let Some(r) = rel {
            let full = self.full(r);
            let found = match self.sftp.lstat(&full) {
                Ok(s) => Some(s),
                Err(e) if e.code() == ErrorCode::SFTP(FX_NO_SUCH_FILE) => None,
                Err(e) => return Err(ssh_err(format!("stat {}", full.display()), e)),
            };
            match found {
                None => rel = r.rsplit_once('/').map(|(parent, _)| parent),
                Some(_) if r == path => {
                    return Err(Error::unavailable(format!(
                        "{} exists but cannot be opened (a dangling or looping symlink?)",
                        full.display()
                    )));
                }
                Some(s) if s.is_dir() => return Ok(()),
                // a symlinked directory is a directory: stat follows it
                Some(_) if self.stat(&full)?.is_some_and(|s| s.is_dir()) => return Ok(()),
                Some(_) => {
                    return Err(Error::unavailable(format!(
                        "{} is not a directory; the repository is damaged",
                        full.display()
                    )));
                }
            }
        }
        Ok(()) // up to the root, which `check_root` found to be a directory
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
        let temp = dir_path.join(temp_name(name));
        let file = self
            .sftp
            .open_mode(
                &temp,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                0o600,
                OpenType::File,
            )
            .map_err(|e| ssh_err(format!("creating {}", temp.display()), e))?;
        let mut object = SshNewObject {
            storage: self,
            file: Some(file),
            temp,
            target: self.full(path),
            rel_dir: dir.to_string(),
            done: false,
            header_len,
        };
        object
            .write_all(&vec![0u8; header_len])
            .map_err(|e| Error::io(format!("writing {}", object.temp.display()), e))?;
        Ok(Box::new(object))
    }

    fn make_durable(&self, path: &str) -> Result<()> {
        let full = self.full(path);
        let mut f = self
            .sftp
            .open_mode(&full, OpenFlags::READ, 0, OpenType::File)
            .map_err(|e| ssh_err(format!("opening {} to fsync it", full.display()), e))?;
        f.fsync()
            .map_err(|e| ssh_err(format!("fsync of {}", full.display()), e))?;
        self.sync_dirs(split_path(path).0)
    }

    fn remove(&self, path: &str) -> Result<bool> {
        let full = self.full(path);
        match self.sftp.unlink(&full) {
            Ok(()) => Ok(true),
            Err(e) if e.code() == ErrorCode::SFTP(FX_NO_SUCH_FILE) => Ok(false),
            Err(e) => Err(ssh_err(format!("removing {}", full.display()), e)),
        }
    }

    fn remove_dir_if_empty(&self, dir: &str) -> Result<bool> {
        let full = self.full(dir);
        match self.sftp.rmdir(&full) {
            Ok(()) => Ok(true),
            // SFTP v3 has no "not empty" status: sftp-server answers FX_FAILURE. Whatever the
            // reason, a directory that is still there was kept; one that is gone was removed.
            Err(e) => match self.stat(&full)? {
                None => Ok(false),
                Some(s) if s.is_dir() => Ok(false),
                Some(_) => Err(ssh_err(format!("removing directory {}", full.display()), e)),
            },
        }
    }

    fn sync_directory(&self, dir: &str) -> Result<()> {
        self.sync_dir(&self.full(dir))
    }
}

struct SshNewObject<'a> {
    storage: &'a SshStorage,
    file: Option<ssh2::File>,
    temp: PathBuf,
    target: PathBuf,
    /// The target's directory, relative to the repository root.
    rel_dir: String,
    done: bool,
    /// Bytes reserved at the start for `write_header`.
    header_len: usize,
}

impl SshNewObject<'_> {
    fn file(&mut self) -> &mut ssh2::File {
        self.file.as_mut().expect("file is open until commit")
    }
}

impl Write for SshNewObject<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl NewObject for SshNewObject<'_> {
    fn write_header(&mut self, header: &[u8]) -> io::Result<()> {
        assert_eq!(header.len(), self.header_len, "the reserved header length");
        let f = self.file();
        let end = f.stream_position()?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(header)?;
        f.seek(SeekFrom::Start(end))?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Publish> {
        let mut file = self.file.take().expect("commit once");
        file.fsync().map_err(|e| {
            ssh_err(format!("fsync of {}", self.temp.display()), e)
                .with_hint("The SSH server must support the fsync@openssh.com extension (OpenSSH 6.5 or later).")
        })?;
        file.close()
            .map_err(|e| ssh_err(format!("closing {}", self.temp.display()), e))?;
        let sftp = &self.storage.sftp;
        // SFTP v3 rename: no flags on the wire; OpenSSH refuses an existing target.
        if let Err(e) = sftp.rename(&self.temp, &self.target, None) {
            if self.storage.stat(&self.target)?.is_some() {
                return Ok(Publish::AlreadyExists); // Drop removes the temp file
            }
            return Err(ssh_err(format!("publishing {}", self.target.display()), e));
        }
        self.done = true;
        self.storage.sync_dirs(&self.rel_dir)?;
        Ok(Publish::Created)
    }
}

impl Drop for SshNewObject<'_> {
    fn drop(&mut self) {
        if !self.done {
            // A failed write: removing the temporary is best effort (FORMAT.md: a leftover
            // temporary is harmless), and must not wait long on a dead link.
            self.storage.cut_short();
            drop(self.file.take());
            let _ = self.storage.sftp.unlink(&self.temp);
            self.storage.restore_timeout();
        }
    }
}
