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
    /// `walship drill`: `[drill]`.
    pub drill: Option<DrillSettings>,
    /// Days within which a drill must have passed, or `check` warns.
    pub drill_max_age: Option<u64>,
    pub encryption: Option<String>,
    pub encryption_key_file: Option<PathBuf>,
    pub encryption_key_command: Option<String>,
}

/// Where an encrypted repository's keys come from (`encryption = "aead"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Command(String),
}

impl KeySource {
    /// Read the keys (the key command runs each time: a vault may rotate them).
    pub fn load(&self) -> Result<crate::crypto::Keyring> {
        match self {
            KeySource::File(p) => crate::crypto::load_key_file(p),
            KeySource::Command(c) => {
                crate::crypto::run_key_command(c, crate::crypto::KEY_COMMAND_TIMEOUT)
            }
        }
    }
}

/// `[drill]`: how `walship drill` restores and what it checks.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DrillSettings {
    /// SQL statements that must each return true on the restored copy.
    #[serde(default)]
    pub checks: Vec<String>,
    /// The database the checks run in [default: postgres].
    pub database: Option<String>,
    /// Where the copy is restored [default: /var/tmp/walship-drill].
    pub scratch: Option<PathBuf>,
    /// Seconds the copy may take to replay and open [default: 21600].
    pub timeout: Option<u64>,
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
    pub drill: DrillSettings,
    /// How old the newest passed drill may be before `check` warns.
    pub drill_max_age: Duration,
    /// `encryption = "aead"`: where the keys come from; `None`: encryption = "none".
    pub encryption: Option<KeySource>,
}

/// `encryption`, `encryption_key_file`, `encryption_key_command` as one decision: aead needs
/// exactly one key source, and a key source without aead is a mistake worth saying.
fn resolve_encryption(
    kind: Option<String>,
    file: Option<PathBuf>,
    command: Option<String>,
) -> Result<Option<KeySource>> {
    let file = file.filter(|p| !p.as_os_str().is_empty());
    let command = command.filter(|c| !c.trim().is_empty());
    match (kind.as_deref().unwrap_or("none"), file, command) {
        ("none", None, None) => Ok(None),
        ("none", _, _) => Err(Error::usage(
            "encryption_key_file or encryption_key_command is set, but encryption = \"none\"",
        )
        .with_hint("Set encryption = \"aead\" to use the key, or remove the key setting.")),
        ("aead", Some(_), Some(_)) => Err(Error::usage(
            "both encryption_key_file and encryption_key_command are set; give one",
        )),
        ("aead", Some(f), None) => {
            if !f.is_absolute() {
                return Err(Error::usage(format!(
                    "encryption_key_file {} is not an absolute path",
                    f.display()
                )));
            }
            Ok(Some(KeySource::File(f)))
        }
        ("aead", None, Some(c)) => Ok(Some(KeySource::Command(c))),
        ("aead", None, None) => Err(Error::usage(
            "encryption = \"aead\" needs encryption_key_file or encryption_key_command",
        )
        .with_hint(
            "Generate a key with `walship keygen --output FILE` and keep a copy somewhere safe.",
        )),
        (other, _, _) => Err(Error::usage(format!(
            "encryption {other:?} is not one of none, aead"
        ))),
    }
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
            .unwrap_or_else(|| crate::os::home_dir().join(".ssh/known_hosts"));
        let encryption = resolve_encryption(
            flags.encryption.clone().or(file.encryption),
            flags
                .encryption_key_file
                .clone()
                .or(file.encryption_key_file),
            flags
                .encryption_key_command
                .clone()
                .or(file.encryption_key_command),
        )?;
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
            drill: file.drill.unwrap_or_default(),
            drill_max_age: Duration::from_secs(
                flags.drill_max_age.or(file.drill_max_age).unwrap_or(7) * 86_400,
            ),
            encryption,
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

    /// What identifies a push spool: every setting its worker runs with. A worker started by
    /// a call reproduces it exactly (it is started with [`Config::flag_args`]).
    pub fn spool_key(&self) -> String {
        self.flag_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("\0")
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
        // Where the key is, never the key: workers and restore_command read it themselves.
        match &self.encryption {
            None => flag("encryption", "none".into()),
            Some(source) => {
                flag("encryption", "aead".into());
                match source {
                    KeySource::File(p) => flag("encryption-key-file", p.into()),
                    KeySource::Command(c) => flag("encryption-key-command", c.into()),
                }
            }
        }
        a
    }

    /// `restore_command` for a server this walship sets up (restore, rejoin): this binary with
    /// every setting as a flag, so the server restores from the same repository whatever its
    /// environment.
    ///
    /// Each word is shell-quoted (PostgreSQL runs the command through `sh -c`) and then has its
    /// `%` doubled, since PostgreSQL replaces `%f`, `%p`, `%r` and `%%` before the shell sees it.
    /// The result still needs [`crate::pg::server::conf_string`] to go into a configuration file.
    pub fn restore_command(&self) -> Result<String> {
        self.server_command("fetch %f %p")
    }

    /// A command line for a server this walship sets up: this binary with every setting as a
    /// flag, then `tail` (a subcommand and its arguments, already quoted for the shell).
    pub fn server_command(&self, tail: &str) -> Result<String> {
        use crate::remote::shell_quote;
        let exe =
            std::env::current_exe().map_err(|e| Error::io("finding the walship binary", e))?;
        // A path that is not UTF-8 would come out changed (and name another file).
        let word = |s: &std::ffi::OsStr| {
            s.to_str()
                .map(|s| shell_quote(s).replace('%', "%%"))
                .ok_or_else(|| {
                    Error::usage(format!(
                        "{}: not UTF-8, so it cannot go into restore_command",
                        s.to_string_lossy()
                    ))
                    .with_hint("Use paths that are UTF-8 for the walship binary, the SSH key and known_hosts.")
                })
        };
        let mut words = vec![word(exe.as_os_str())?];
        for a in self.flag_args() {
            words.push(word(&a)?);
        }
        words.push(tail.into());
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
        let keys = self.encryption.as_ref().map(KeySource::load).transpose()?;
        Ok(Repository::open(storage)?.with_keys(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration from `args` alone: no WALSHIP_* variable of the machine running the
    /// tests, and /dev/null instead of /etc/walship.toml unless the test names a file.
    fn resolve<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<Config> {
        use clap::{CommandFactory, FromArgMatches};
        let mut args: Vec<std::ffi::OsString> =
            args.iter().map(|a| a.as_ref().to_os_string()).collect();
        if !args.iter().any(|a| a == "--config") {
            args.splice(1..1, ["--config".into(), "/dev/null".into()]);
        }
        let cmd = crate::cli::Cli::command().mut_args(|a| a.env(None));
        let cli =
            crate::cli::Cli::from_arg_matches(&cmd.try_get_matches_from(args).unwrap()).unwrap();
        Config::resolve(&cli.global)
    }

    #[test]
    fn regression_the_configuration_tests_ignore_the_machines_walship_settings() {
        if std::env::var_os("WALSHIP_TEST_HOSTILE_CHILD").is_some() {
            return;
        }
        // the configuration tests again, in a process whose environment sets walship up
        // otherwise: their results must not change
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["config::tests::", "--test-threads", "1"])
            .env("WALSHIP_TEST_HOSTILE_CHILD", "1")
            .env("WALSHIP_REPO", "/from/the/environment")
            .env("WALSHIP_COMPRESSION", "bogus")
            .env("WALSHIP_FETCH_RETRIES", "77")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("passed"));
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
    fn drill_settings_are_read_and_a_typo_in_them_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(
            &file,
            "repo = \"/r\"\ndrill_max_age = 3\n[drill]\nchecks = [\"select true\"]\ndatabase = \"shop\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = resolve(&["walship", "--config", f, "status"]).unwrap();
        assert_eq!(c.drill.checks, vec!["select true".to_string()]);
        assert_eq!(c.drill.database.as_deref(), Some("shop"));
        assert_eq!(c.drill_max_age, Duration::from_secs(3 * 86_400));
        let c = resolve(&["walship", "--config", f, "--drill-max-age", "1", "status"]).unwrap();
        assert_eq!(c.drill_max_age, Duration::from_secs(86_400));
        let c = resolve(&["walship", "--repo", "/r", "status"]).unwrap();
        assert_eq!(c.drill_max_age, Duration::from_secs(7 * 86_400));
        assert!(c.drill.checks.is_empty() && c.drill.scratch.is_none());
        std::fs::write(&file, "repo = \"/r\"\n[drill]\ncheck = [\"select true\"]\n").unwrap();
        let e = resolve(&["walship", "--config", f, "status"]).unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Usage);
        assert!(e.message.contains("check"), "{e}");
    }

    #[test]
    fn restore_command_doubles_the_percent_signs_of_paths_not_of_its_placeholders() {
        let c = resolve(&["walship", "--repo", "/srv/100%p 'x'", "fetch", "X", "Y"]).unwrap();
        let rc = c.restore_command().unwrap();
        assert!(rc.contains(r#" '/srv/100%%p '\''x'\''' "#), "{rc}");
        assert!(rc.ends_with(" fetch %f %p"), "{rc}");
        assert_eq!(rc.replace("%%", "").matches('%').count(), 2, "{rc}");
    }

    #[test]
    fn restore_command_refuses_a_path_that_is_not_utf8_rather_than_change_it() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let args = [
            OsStr::new("walship"),
            OsStr::new("--repo"),
            OsStr::new("/r"),
            OsStr::new("--ssh-key"),
            OsStr::from_bytes(b"/keys/\xff"),
            OsStr::new("fetch"),
            OsStr::new("X"),
            OsStr::new("Y"),
        ];
        let c = resolve(&args).unwrap();
        let e = c.restore_command().unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Usage, "{e}");
        assert!(e.message.contains("not UTF-8"), "{e}");
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
        let w = resolve(&args).unwrap();
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
