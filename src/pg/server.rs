//! A PostgreSQL server on this host, known by its data directory: whether its postmaster runs,
//! who owns it, where its programs are, and a connection to it. The commands that change a
//! server's role (promote, watch, rejoin) start here. PostgreSQL's programs run as the data
//! directory's owner: walship run as root becomes that user first (see [`become_owner`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::client::PgClient;
use super::cluster::{PgTools, RunAs};
use super::timeline::parse_lsn;
use crate::error::{Error, Result};

pub struct LocalServer {
    pub pgdata: PathBuf,
    pub owner: String,
    pub owner_uid: u32,
    pub tools: PgTools,
    /// `pg`: how to connect to this server, when postmaster.pid and the owner's name are not it.
    conninfo: Option<String>,
}

/// The postmaster of a data directory as postmaster.pid names it: its PID and start time (line
/// 3, seconds since the epoch). The pair tells a restarted server from the one a marker was
/// written for, even when the PID was reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Postmaster {
    pub pid: u32,
    pub started: i64,
}

impl Postmaster {
    /// The live postmaster of `pgdata`, if one runs.
    pub fn of(pgdata: &Path) -> Option<Postmaster> {
        let p = super::pidfile::PidFile::live(pgdata)?;
        Some(Postmaster {
            pid: p.pid,
            started: p.started?,
        })
    }
}

/// When walship runs as root, become the owner of the data directory `pgdata` for the rest of
/// the process, before anything in it is touched. The directory is the PostgreSQL user's: as
/// root, a symlink that user planted there (postgresql.auto.conf -> /etc/shadow) would have root
/// read, append to or chown the file it points to. As its owner, walship can do in it exactly
/// what PostgreSQL can. A data directory that belongs to root is refused. No-op for other users.
pub fn become_owner(pgdata: &Path) -> Result<()> {
    if crate::os::euid() != 0 {
        return Ok(());
    }
    let meta = std::fs::metadata(pgdata)
        .map_err(|e| Error::io(format!("stat {}", pgdata.display()), e))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        return Err(Error::usage(format!(
            "{} belongs to root: walship works in a data directory only as its owner, and \
             PostgreSQL never runs as root",
            pgdata.display()
        ))
        .with_hint(
            "Give --pgdata the server's data directory (it belongs to the user PostgreSQL runs as).",
        ));
    }
    let name = crate::os::user_name(uid).ok_or_else(|| {
        Error::usage(format!(
            "the owner (uid {uid}) of {} has no name",
            pgdata.display()
        ))
    })?;
    crate::os::become_user(&name, uid, gid).map_err(|(what, e)| {
        Error::io(
            format!(
                "becoming {name} (the owner of {}): {what}",
                pgdata.display()
            ),
            e,
        )
    })?;
    let home = crate::os::user_home(uid).unwrap_or_else(|| "/".into());
    // At the start of a command, before it starts any thread: what PostgreSQL's programs and
    // libpq (~/.pgpass) read must be the owner's, not root's.
    crate::os::set_env_at_start(&[
        ("HOME", std::ffi::OsStr::new(&home)),
        ("USER", std::ffi::OsStr::new(&name)),
        ("LOGNAME", std::ffi::OsStr::new(&name)),
    ]);
    Ok(())
}

/// [`become_owner`] of `dir` (the pg_wal push, fetch and their workers work in) when walship
/// runs as root and `dir` belongs to someone else: as root, what they write into a PostgreSQL
/// user's pg_wal (spools) and repository (objects, directories) would be root's, and the next
/// push by PostgreSQL could not write there. A directory of root's is no PostgreSQL user's
/// (`sudo walship fetch X /tmp/x`): then walship stays root.
pub fn become_owner_of_workdir(dir: &Path) -> Result<()> {
    if crate::os::euid() != 0 {
        return Ok(());
    }
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.uid() != 0 => become_owner(dir),
        _ => Ok(()),
    }
}

impl LocalServer {
    /// The server whose data directory is `pgdata`; `pg_bin` is the directory of its programs
    /// (default: /usr/lib/postgresql/<PG_VERSION>/bin, Debian's layout). As root, walship first
    /// becomes the directory's owner ([`become_owner`]).
    pub fn open(pgdata: &Path, pg_bin: Option<&Path>) -> Result<LocalServer> {
        become_owner(pgdata)?;
        let version = std::fs::read_to_string(pgdata.join("PG_VERSION")).map_err(|e| {
            Error::usage(format!(
                "{} is not a PostgreSQL data directory (PG_VERSION: {e})",
                pgdata.display()
            ))
            .with_hint("Give --pgdata the data directory of the server.")
        })?;
        let uid = std::fs::metadata(pgdata)
            .map_err(|e| Error::io(format!("stat {}", pgdata.display()), e))?
            .uid();
        let owner = crate::os::user_name(uid).ok_or_else(|| {
            Error::usage(format!(
                "the owner (uid {uid}) of {} has no name",
                pgdata.display()
            ))
        })?;
        let bin = pg_bin.map(Path::to_path_buf).unwrap_or_else(|| {
            PathBuf::from(format!("/usr/lib/postgresql/{}/bin", version.trim()))
        });
        // When root, run PostgreSQL's programs as the owner; otherwise as ourselves (who must be
        // the owner, or PostgreSQL refuses).
        let tools = PgTools::new(&bin, RunAs::when_root(&owner)?)?;
        Ok(LocalServer {
            pgdata: pgdata.to_path_buf(),
            owner,
            owner_uid: uid,
            tools,
            conninfo: None,
        })
    }

    /// Connect with `pg` (role, host, port) instead of what postmaster.pid and the owner say.
    pub fn with_pg(mut self, pg: Option<&str>) -> LocalServer {
        self.conninfo = pg.map(str::to_string);
        self
    }

    /// The postmaster's PID if one runs on this data directory.
    pub fn running_pid(&self) -> Option<u32> {
        super::pidfile::PidFile::live(&self.pgdata).map(|p| p.pid)
    }

    pub fn client(&self) -> Result<PgClient> {
        match &self.conninfo {
            Some(c) => PgClient::from_conninfo(c),
            None => PgClient::from_pgdata(&self.pgdata),
        }
    }

    /// Run a PostgreSQL program (pg_ctl, pg_rewind...) as the owner; its stderr is in the error.
    pub fn run(&self, program: &str, args: &[&std::ffi::OsStr], what: &str) -> Result<String> {
        let mut cmd = self.tools.command(program);
        cmd.current_dir(&self.pgdata).args(args);
        self.tools.run(cmd, what)
    }

    /// Append settings to postgresql.auto.conf (later lines win), owned by the server's owner.
    pub fn append_auto_conf(&self, text: &str) -> Result<()> {
        let path = append_auto_conf(&self.pgdata, text)?;
        self.tools.chown(&path)
    }

    /// Write a file in the data directory (atomically, fsynced), owned by the server's owner.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<()> {
        let path = self.pgdata.join(name);
        let dir = path.parent().expect("a file in the data directory");
        let file = path.file_name().expect("a file name").to_string_lossy();
        let tmp = dir.join(format!(".{file}.walship.tmp"));
        std::fs::write(&tmp, contents)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        self.tools.chown(&tmp)?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("renaming {}", path.display()), e))?;
        crate::os::sync_dir(dir)
    }
}

/// `v` as a string value in a PostgreSQL configuration file: in single quotes, `'` doubled, and
/// backslash, line feed and carriage return as backslash escapes (the file's lexer reads
/// backslash escapes in strings and ends a string at a line break, so a raw one would end the
/// value there and make the rest of it a setting of its own).
pub fn conf_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('\'');
    for c in v.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Append settings to `pgdata`'s postgresql.auto.conf (later lines win), fsynced; its path.
pub fn append_auto_conf(pgdata: &Path, text: &str) -> Result<PathBuf> {
    use std::io::Write;
    let path = pgdata.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// Where the node id lives: under pg_wal, which neither pg_basebackup nor `walship basebackup`
/// copies, so a new standby never inherits its source's id.
const NODE_ID_FILE: &str = "pg_wal/walship/node-id";

impl LocalServer {
    /// This data directory's persistent node id, made once (FORMAT.md, "Promotions"). The file
    /// also records where it was made (host, path, device and inode of the data directory): a
    /// copy that arrived some other way (pg_rewind copies pg_wal files, a cloned disk) does not
    /// match and gets an id of its own, so two nodes never take each other's records as theirs.
    pub fn node_id(&self) -> Result<String> {
        let path = self.pgdata.join(NODE_ID_FILE);
        let place = node_place(&self.pgdata)?;
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some((id, recorded)) = text.split_once('\n')
            && recorded.trim_end() == place
            && id.len() == 32
            && id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(id.to_string());
        }
        let mut raw = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
            .map_err(|e| Error::io("reading /dev/urandom for a node id", e))?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let dir = path.parent().expect("has a parent");
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        self.tools.chown(dir)?;
        self.write_file(NODE_ID_FILE, &format!("{id}\n{place}\n"))?;
        Ok(id)
    }
}

/// Host, canonical path, device and inode of a data directory, as one line.
fn node_place(pgdata: &Path) -> Result<String> {
    let canonical = pgdata
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", pgdata.display()), e))?;
    let m = std::fs::metadata(&canonical)
        .map_err(|e| Error::io(format!("stat {}", canonical.display()), e))?;
    Ok(format!(
        "{} {} {}:{}",
        crate::os::hostname(),
        canonical.display(),
        m.dev(),
        m.ino()
    ))
}

/// Where a standby's replay is: the timeline it replays (and would promote off) and the
/// position. The timeline is the newest of the last restartpoint's, the minimum recovery
/// point's and the one the WAL receiver streams: pg_walfile_name() cannot be asked in recovery.
pub fn replay_position(client: &PgClient) -> Result<(u32, u64)> {
    let r = client.row(
        "SELECT coalesce(pg_last_wal_replay_lsn()::text, ''), \
         (SELECT timeline_id FROM pg_control_checkpoint()), \
         (SELECT min_recovery_end_timeline FROM pg_control_recovery()), \
         coalesce((SELECT received_tli FROM pg_stat_wal_receiver), 0)",
        4,
    )?;
    let timeline = r[1..]
        .iter()
        .filter_map(|t| t.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    Ok((timeline, parse_lsn(&r[0]).unwrap_or(0)))
}
