//! The resolved configuration: flags beat `WALSHIP_*` environment variables (clap reads both),
//! which beat the TOML file (`--config`, `WALSHIP_CONFIG`, default /etc/walship.toml), which beats
//! the built-in defaults. Built once, after flags are parsed, before any command runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::GlobalFlags;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::storage::local::LocalStorage;
use crate::storage::ssh::{SshOptions, SshStorage};
use crate::storage::{Location, Storage};

pub const DEFAULT_CONFIG: &str = "/etc/walship.toml";

/// The configuration file. Every key is optional; unknown keys are an error (a typo must not
/// silently fall back to a default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub repo: Option<String>,
    pub compression: Option<String>,
    pub compression_level: Option<i32>,
    pub compress_threads: Option<u32>,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub ssh_timeout: Option<u64>,
    pub fetch_retries: Option<u32>,
    pub pgdata: Option<PathBuf>,
    pub push_ahead: Option<u32>,
    pub prefetch: Option<u32>,
    pub worker_idle_timeout: Option<u64>,
    pub keep_backups: Option<u32>,
    pub keep_days: Option<u32>,
    pub pg: Option<String>,
    pub pg_bin: Option<PathBuf>,
    pub on_promote: Option<Vec<String>>,
    pub on_failover_refused: Option<Vec<String>>,
    pub hook_timeout: Option<u64>,
    pub trigger_file: Option<PathBuf>,
    pub watch_interval: Option<u64>,
    pub failover_primary: Option<String>,
    pub failover_after: Option<u64>,
    pub witness_command: Option<String>,
    pub fence_command: Option<String>,
    pub smart_timeout: Option<u64>,
    /// Standbys `basebackup --to NAME` can make: `[targets.NAME]` tables.
    pub targets: Option<std::collections::BTreeMap<String, Target>>,
}

/// A standby `basebackup --to` streams into: a data directory on this host (no `host`) or on
/// an SSH host, where `walship restore --from-stdin` unpacks and checks the stream.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// The standby's data directory.
    pub pgdata: PathBuf,
    /// PostgreSQL's programs there (for --start); default from PG_VERSION.
    pub pg_bin: Option<PathBuf>,
    /// The walship program there [default: walship (on PATH); this binary for a local target].
    pub walship: Option<String>,
    /// The walship configuration file there, which its restore_command will use.
    pub config: Option<String>,
    /// Stream from the primary too (the standby's primary_conninfo; no password: use .pgpass).
    pub primary_conninfo: Option<String>,
    /// Tablespace directories to move: { "/old" = "/new" }.
    #[serde(default)]
    pub tablespace_map: std::collections::BTreeMap<String, String>,
    /// Settings for the standby's postgresql.auto.conf (port, ...).
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub repo: Option<String>,
    pub compression: Compression,
    pub compression_level: i32,
    pub compress_threads: u32,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub ssh_timeout: Duration,
    pub fetch_retries: u32,
    pub pgdata: Option<PathBuf>,
    /// Parallel push-ahead workers (0: push only the requested file).
    pub push_ahead: u32,
    /// Segments fetched ahead of recovery (0: fetch only the requested file).
    pub prefetch: u32,
    /// Seconds a background worker stays without work before it exits.
    pub worker_idle_timeout: Duration,
    /// prune's retention, when the command line gives none.
    pub keep_backups: Option<u32>,
    pub keep_days: Option<u32>,
    /// A libpq connection string for status and check (no password: use ~/.pgpass).
    pub pg: Option<String>,
    /// The directory of PostgreSQL's programs (pg_rewind...); default from PG_VERSION.
    pub pg_bin: Option<PathBuf>,
    /// Commands run (sh -c) after a promotion, in order.
    pub on_promote: Vec<String>,
    /// Commands run (sh -c) when automatic failover refuses to promote this standby.
    pub on_failover_refused: Vec<String>,
    /// Seconds a hook (on_promote, fence, witness) may run before it is killed.
    pub hook_timeout: Duration,
    /// The file whose appearance makes `watch` promote.
    pub trigger_file: Option<PathBuf>,
    pub watch_interval: Duration,
    /// Connection string of the primary `watch` health-checks (automatic failover when set).
    pub failover_primary: Option<String>,
    pub failover_after: Duration,
    pub witness_command: Option<String>,
    pub fence_command: Option<String>,
    /// How long a smart promotion waits for the archive to be replayed.
    pub smart_timeout: Duration,
    pub targets: std::collections::BTreeMap<String, Target>,
}

impl ConfigFile {
    /// Read the file named by `--config`/`WALSHIP_CONFIG` (must exist), or the default path (may
    /// be missing).
    pub fn load(explicit: Option<&Path>) -> Result<ConfigFile> {
        let (path, must_exist) = match explicit {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(ConfigFile::default());
            }
            Err(e) => {
                return Err(Error::usage(format!(
                    "configuration file {}: {e}",
                    path.display()
                )));
            }
        };
        toml::from_str(&text).map_err(|e| {
            Error::usage(format!(
                "configuration file {}: {}",
                path.display(),
                e.to_string().trim_end()
            ))
            .with_hint("`walship --help` lists every key.")
        })
    }
}

impl Config {
    pub fn resolve(flags: &GlobalFlags) -> Result<Config> {
        let file = ConfigFile::load(flags.config.as_deref())?;
        let compression = match flags.compression.as_deref().or(file.compression.as_deref()) {
            Some(c) => Compression::parse(c)?,
            None => Compression::Zstd,
        };
        let compression_level = flags
            .compression_level
            .or(file.compression_level)
            .unwrap_or(compression.default_level());
        compression.check_level(compression_level)?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let compress_threads = match flags
            .compress_threads
            .or(file.compress_threads)
            .unwrap_or(0)
        {
            0 => cores.min(4),
            n => n,
        };
        let ssh_timeout = flags.ssh_timeout.or(file.ssh_timeout).unwrap_or(30);
        if ssh_timeout == 0 {
            return Err(Error::usage("ssh_timeout must be at least 1 second"));
        }
        let known_hosts = flags
            .known_hosts
            .clone()
            .or(file.known_hosts)
            .unwrap_or_else(|| home_dir().join(".ssh/known_hosts"));
        let repo = flags.repo.clone().or(file.repo);
        if let Some(r) = &repo {
            Location::parse(r)?; // report a bad location before anything else happens
        }
        Ok(Config {
            repo,
            compression,
            compression_level,
            compress_threads,
            ssh_key: flags.ssh_key.clone().or(file.ssh_key),
            known_hosts,
            ssh_timeout: Duration::from_secs(ssh_timeout),
            fetch_retries: flags.fetch_retries.or(file.fetch_retries).unwrap_or(2),
            pgdata: flags.pgdata.clone().or(file.pgdata),
            push_ahead: flags.push_ahead.or(file.push_ahead).unwrap_or(cores),
            prefetch: flags.prefetch.or(file.prefetch).unwrap_or(8),
            worker_idle_timeout: Duration::from_secs(
                flags
                    .worker_idle_timeout
                    .or(file.worker_idle_timeout)
                    .unwrap_or(30),
            ),
            keep_backups: file.keep_backups,
            keep_days: file.keep_days,
            pg: flags.pg.clone().or(file.pg),
            pg_bin: std::env::var_os("WALSHIP_PG_BIN")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or(file.pg_bin),
            on_promote: file.on_promote.unwrap_or_default(),
            on_failover_refused: file.on_failover_refused.unwrap_or_default(),
            hook_timeout: Duration::from_secs(file.hook_timeout.unwrap_or(30)),
            trigger_file: file.trigger_file,
            watch_interval: Duration::from_secs(file.watch_interval.unwrap_or(1).max(1)),
            failover_primary: file.failover_primary,
            failover_after: Duration::from_secs(file.failover_after.unwrap_or(30)),
            witness_command: file.witness_command,
            fence_command: file.fence_command,
            smart_timeout: Duration::from_secs(file.smart_timeout.unwrap_or(300)),
            targets: file.targets.unwrap_or_default(),
        })
    }

    /// The repository location as configured (for messages and spool names).
    pub fn location(&self) -> &str {
        self.repo.as_deref().unwrap_or("")
    }

    /// Arguments that start a background worker (`subcommand`) with exactly this configuration:
    /// every resolved value as a flag (flags beat the environment and the file), and no file.
    pub fn worker_args(&self, subcommand: &str, pg_wal: &Path) -> Vec<std::ffi::OsString> {
        let mut a = self.flag_args();
        a.push(subcommand.into());
        a.push("--pg-wal".into());
        a.push(pg_wal.into());
        a
    }

    /// Every resolved setting push and fetch use, as flags (with `--config /dev/null`): a
    /// walship command line that behaves exactly like this one whatever its environment.
    pub fn flag_args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = Vec::new();
        let mut flag = |name: &str, value: std::ffi::OsString| {
            a.push(format!("--{name}").into());
            a.push(value);
        };
        flag("config", "/dev/null".into());
        flag("repo", self.location().into());
        flag("compression", self.compression.name().into());
        flag(
            "compression-level",
            self.compression_level.to_string().into(),
        );
        flag("compress-threads", self.compress_threads.to_string().into());
        if let Some(k) = &self.ssh_key {
            flag("ssh-key", k.into());
        }
        flag("known-hosts", self.known_hosts.clone().into());
        flag("ssh-timeout", self.ssh_timeout.as_secs().to_string().into());
        flag("fetch-retries", self.fetch_retries.to_string().into());
        flag("push-ahead", self.push_ahead.to_string().into());
        flag("prefetch", self.prefetch.to_string().into());
        flag(
            "worker-idle-timeout",
            self.worker_idle_timeout.as_secs().to_string().into(),
        );
        a
    }

    /// `restore_command` for a server this walship sets up (restore, rejoin): this binary with
    /// every setting as a flag, so the server restores from the same repository whatever its
    /// environment.
    pub fn restore_command(&self) -> Result<String> {
        use crate::storage::remote::shell_quote;
        let exe =
            std::env::current_exe().map_err(|e| Error::io("finding the walship binary", e))?;
        let mut words = vec![shell_quote(&exe.display().to_string())];
        for a in self.flag_args() {
            words.push(shell_quote(&a.to_string_lossy()));
        }
        words.push("fetch %f %p".into());
        Ok(words.join(" "))
    }

    pub fn ssh_options(&self) -> SshOptions {
        SshOptions {
            key: self.ssh_key.clone(),
            known_hosts: self.known_hosts.clone(),
            timeout: self.ssh_timeout,
        }
    }

    /// Connect to the configured repository and check its format version.
    pub fn open_repository(&self) -> Result<Repository> {
        let repo = self.repo.as_deref().ok_or_else(|| {
            Error::usage("no repository configured").with_hint(format!(
                "Set `repo` in {DEFAULT_CONFIG} (or --config), WALSHIP_REPO, or --repo."
            ))
        })?;
        let storage: Box<dyn Storage> = match Location::parse(repo)? {
            Location::Local(path) => Box::new(LocalStorage::new(path)),
            Location::Ssh(url) => Box::new(SshStorage::connect(&url, &self.ssh_options())?),
        };
        Repository::open(storage)
    }
}

/// The login name of the effective user (for SSH logins without `user@`).
pub fn current_user() -> String {
    passwd_field(|pw| pw.pw_name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".into())
}

/// The effective user's home directory: $HOME, else the password database.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| passwd_field(|pw| pw.pw_dir).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The login name of user `uid`, from the password database.
pub fn user_name(uid: u32) -> Option<String> {
    passwd_field_of(uid, |pw| pw.pw_name)
}

fn passwd_field(field: impl Fn(&libc::passwd) -> *mut libc::c_char) -> Option<String> {
    // SAFETY: geteuid cannot fail.
    passwd_field_of(unsafe { libc::geteuid() }, field)
}

fn passwd_field_of(uid: u32, field: impl Fn(&libc::passwd) -> *mut libc::c_char) -> Option<String> {
    // getpwuid_r with a buffer of our own: pool threads look users up while opening SSH
    // sessions, and getpwuid's static result would be shared between them.
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: every pointer is to storage we own and that outlives the call; the result
        // points into `pw` and `buf`, which we copy out of before they go away.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 || result.is_null() {
                return None;
            }
            let p = field(&pw);
            if p.is_null() {
                return None;
            }
            return Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn regression_user_lookups_from_many_threads_at_once_agree() {
        let me = unsafe { libc::geteuid() };
        let name = user_name(me);
        assert!(name.is_some());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || (0..200).map(|_| user_name(me)).collect::<Vec<_>>())
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap().iter().all(|n| *n == name));
        }
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    fn resolve(args: &[&str]) -> Result<Config> {
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        Config::resolve(&cli.global)
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(
            &file,
            "repo = \"/from/file\"\ncompression = \"bzip2\"\nfetch_retries = 5\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = resolve(&["walship", "--config", f, "fetch", "X", "Y"]).unwrap();
        assert_eq!(c.repo.as_deref(), Some("/from/file"));
        assert_eq!(
            (c.compression, c.compression_level, c.fetch_retries),
            (Compression::Bzip2, 9, 5)
        );
        let c = resolve(&[
            "walship",
            "--config",
            f,
            "--repo",
            "/from/flag",
            "--compression",
            "zstd",
            "fetch",
            "X",
            "Y",
        ])
        .unwrap();
        assert_eq!(c.repo.as_deref(), Some("/from/flag"));
        assert_eq!((c.compression, c.compression_level), (Compression::Zstd, 1));
    }

    #[test]
    fn worker_args_reproduce_the_configuration() {
        let c = resolve(&[
            "walship",
            "--repo",
            "/r",
            "--compression",
            "bzip2",
            "--push-ahead",
            "3",
            "--ssh-key",
            "/k",
            "fetch",
            "X",
            "Y",
        ])
        .unwrap();
        let mut args: Vec<std::ffi::OsString> = vec!["walship".into()];
        args.extend(c.worker_args("push-ahead", Path::new("/pg/pg_wal")));
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        let w = Config::resolve(&cli.global).unwrap();
        assert_eq!(format!("{c:?}"), format!("{w:?}"));
    }

    #[test]
    fn bad_files_and_values_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(&file, "repository = \"/typo\"\n").unwrap();
        let e = resolve(&[
            "walship",
            "--config",
            file.to_str().unwrap(),
            "fetch",
            "X",
            "Y",
        ])
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let missing = dir.path().join("nope.toml");
        let e = resolve(&[
            "walship",
            "--config",
            missing.to_str().unwrap(),
            "fetch",
            "X",
            "Y",
        ])
        .unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Usage);
        let e = resolve(&[
            "walship",
            "--config",
            missing.to_str().unwrap(),
            "fetch",
            "X",
            "Y",
        ])
        .unwrap_err();
        assert!(e.message.contains("nope.toml"));
        std::fs::write(&file, "compression_level = 40\n").unwrap();
        assert!(
            resolve(&[
                "walship",
                "--config",
                file.to_str().unwrap(),
                "fetch",
                "X",
                "Y"
            ])
            .is_err()
        );
    }
}
