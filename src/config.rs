//! The resolved configuration: flags beat `WALSHIP_*` environment variables, which beat the TOML
//! file (`--config`, `WALSHIP_CONFIG`, default /etc/walship.toml), which beats the built-in
//! defaults. Built once, after flags are parsed, before any command runs, from [`Overrides`] (what
//! the CLI found on the command line and in the environment): nothing here knows clap.
//!
//! What each setting is, its kind and default, is declared in [`crate::settings`]; this module
//! turns those values into typed fields, and back into flags for the workers and the
//! `restore_command` walship starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::settings;
use crate::storage::local::LocalStorage;
use crate::storage::ssh::{SshOptions, SshStorage};
use crate::storage::{Location, Storage};

mod values;
use values::Values;
pub use values::{Overrides, Source};

pub const DEFAULT_CONFIG: &str = "/etc/walship.toml";

/// Where `walship drill` restores its copy when `[drill] scratch` does not say.
pub const DEFAULT_SCRATCH: &str = "/var/tmp/walship-drill";
/// Seconds the copy may take to replay and open (`[drill] timeout`).
pub const DEFAULT_TIMEOUT: u64 = 21_600;

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
    /// The local server's libpq connection string (no password: use ~/.pgpass).
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
    /// Object storage (`repo = "s3://..."`).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_uri_style: Option<String>,
    pub s3_ca_file: Option<PathBuf>,
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
        ("aead", Some(f), None) if !f.is_absolute() => Err(Error::usage(format!(
            "encryption_key_file {} is not an absolute path",
            f.display()
        ))),
        ("aead", Some(f), None) => Ok(Some(KeySource::File(f))),
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

/// Read the file named by `--config`/`WALSHIP_CONFIG` (must exist), or the default path (may be
/// missing): its table of settings, every key checked.
pub fn load_file(explicit: Option<&Path>) -> Result<toml::Table> {
    let (path, must_exist) = match explicit {
        Some(p) => (p, true),
        None => (Path::new(DEFAULT_CONFIG), false),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            return Ok(toml::Table::new());
        }
        Err(e) => {
            return Err(Error::usage(format!(
                "configuration file {}: {e}",
                path.display()
            )));
        }
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "configuration file {}: {}",
            path.display(),
            e.to_string().trim_end()
        ))
        .with_hint("`walship --help` lists every key.")
    })?;
    values::check_keys(&table, path)?;
    Ok(table)
}

/// The file `overrides` name, or the default one.
pub fn file_path(overrides: &Overrides) -> PathBuf {
    overrides
        .config
        .clone()
        .unwrap_or_else(|| DEFAULT_CONFIG.into())
}

impl Config {
    pub fn resolve(overrides: &Overrides) -> Result<Config> {
        let file = load_file(overrides.config.as_deref())?;
        let v = Values::new(overrides, file, &file_path(overrides));
        let compression = match v.text("compression")? {
            Some(c) => Compression::parse(&c)?,
            None => Compression::Zstd,
        };
        let compression_level = v
            .level("compression_level")?
            .unwrap_or(compression.default_level());
        compression.check_level(compression_level)?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let compress_threads = match v.count("compress_threads")?.unwrap_or(0) {
            0 => cores.min(4),
            n => n,
        };
        let repo = v.text("repo")?;
        if let Some(r) = &repo {
            Location::parse(r)?; // report a bad location before anything else happens
        }
        let count =
            |key| -> Result<u32> { Ok(v.count(key)?.unwrap_or_else(|| values::default(key))) };
        Ok(Config {
            repo,
            compression,
            compression_level,
            compress_threads,
            ssh_key: v.path("ssh_key")?,
            known_hosts: v
                .path("known_hosts")?
                .unwrap_or_else(|| crate::os::home_dir().join(".ssh/known_hosts")),
            ssh_timeout: v.seconds("ssh_timeout")?,
            fetch_retries: count("fetch_retries")?,
            pgdata: v.path("pgdata")?,
            push_ahead: v.count("push_ahead")?.unwrap_or(cores),
            prefetch: count("prefetch")?,
            worker_idle_timeout: v.seconds("worker_idle_timeout")?,
            keep_backups: v.count("keep_backups")?,
            keep_days: v.days("keep_days")?,
            pg: v.text("pg")?,
            pg_bin: v.path("pg_bin")?,
            on_promote: v.commands("on_promote")?,
            on_failover_refused: v.commands("on_failover_refused")?,
            hook_timeout: v.seconds("hook_timeout")?,
            trigger_file: v.path("trigger_file")?,
            watch_interval: v.seconds("watch_interval")?,
            failover_primary: v.text("failover_primary")?,
            failover_after: v.seconds("failover_after")?,
            witness_command: v.text("witness_command")?,
            fence_command: v.text("fence_command")?,
            smart_timeout: v.seconds("smart_timeout")?,
            targets: v.table("targets")?,
            drill: v.table("drill")?,
            drill_max_age: Duration::from_secs(
                u64::from(
                    v.days("drill_max_age")?
                        .unwrap_or_else(|| values::default("drill_max_age")),
                ) * 86_400,
            ),
            encryption: resolve_encryption(
                v.text("encryption")?,
                v.path("encryption_key_file")?,
                v.text("encryption_key_command")?,
            )?,
            s3_endpoint: v.text("s3_endpoint")?,
            s3_region: v.text("s3_region")?,
            s3_uri_style: match v.text("s3_uri_style")? {
                Some(s) if s != "path" && s != "virtual-host" => {
                    return Err(Error::usage(format!(
                        "s3_uri_style {s:?} is not one of virtual-host, path"
                    )));
                }
                s => s,
            },
            s3_ca_file: v.path("s3_ca_file")?,
        })
    }

    /// A setting's resolved value, the way its flag takes it (`None`: unset). What `walship
    /// config` shows, and what workers and `restore_command` are given. Paths as they are: a key
    /// file need not be UTF-8 to be passed on.
    pub fn value(&self, key: &str) -> Option<std::ffi::OsString> {
        let path = |p: &Option<PathBuf>| p.clone().map(PathBuf::into_os_string);
        let text = |t: &Option<String>| t.clone().map(Into::into);
        let secs = |d: Duration| Some(d.as_secs().to_string().into());
        let n = |n: u32| Some(n.to_string().into());
        let shown = |s: String| Some(s.into());
        match key {
            "repo" => text(&self.repo),
            "compression" => shown(self.compression.name().into()),
            "compression_level" => shown(self.compression_level.to_string()),
            "compress_threads" => n(self.compress_threads),
            "ssh_key" => path(&self.ssh_key),
            "known_hosts" => Some(self.known_hosts.clone().into()),
            "ssh_timeout" => secs(self.ssh_timeout),
            "fetch_retries" => n(self.fetch_retries),
            "pgdata" => path(&self.pgdata),
            "push_ahead" => n(self.push_ahead),
            "prefetch" => n(self.prefetch),
            "worker_idle_timeout" => secs(self.worker_idle_timeout),
            "keep_backups" => self.keep_backups.and_then(n),
            "keep_days" => self.keep_days.and_then(n),
            "pg" => text(&self.pg),
            "pg_bin" => path(&self.pg_bin),
            "on_promote" => shown(format!("{:?}", self.on_promote)),
            "on_failover_refused" => shown(format!("{:?}", self.on_failover_refused)),
            "hook_timeout" => secs(self.hook_timeout),
            "smart_timeout" => secs(self.smart_timeout),
            "trigger_file" => path(&self.trigger_file),
            "watch_interval" => secs(self.watch_interval),
            "failover_primary" => text(&self.failover_primary),
            "failover_after" => secs(self.failover_after),
            "fence_command" => text(&self.fence_command),
            "witness_command" => text(&self.witness_command),
            "targets" => shown(format!("{:?}", self.targets.keys().collect::<Vec<_>>())),
            "drill_max_age" => shown((self.drill_max_age.as_secs() / 86_400).to_string()),
            // Where the key is, never the key: workers and restore_command read it themselves.
            // Unencrypted: no flag, so the command lines (and spool names) stay as they were.
            "encryption" => self.encryption.as_ref().map(|_| "aead".into()),
            "encryption_key_file" => match &self.encryption {
                Some(KeySource::File(p)) => Some(p.clone().into()),
                _ => None,
            },
            "s3_endpoint" => text(&self.s3_endpoint),
            "s3_region" => text(&self.s3_region),
            "s3_uri_style" => text(&self.s3_uri_style),
            "s3_ca_file" => path(&self.s3_ca_file),
            "encryption_key_command" => match &self.encryption {
                Some(KeySource::Command(c)) => Some(c.into()),
                _ => None,
            },
            "drill" => shown(format!(
                "{} checks in {}, scratch {}, timeout {} s",
                self.drill.checks.len(),
                self.drill.database.as_deref().unwrap_or("postgres"),
                self.drill
                    .scratch
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| DEFAULT_SCRATCH.into()),
                self.drill.timeout.unwrap_or(DEFAULT_TIMEOUT)
            )),
            _ => panic!("Config::value has no arm for setting {key:?}"),
        }
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

    /// Every resolved setting the table marks `worker`, as flags (after `--config /dev/null`): a
    /// walship command line that behaves exactly like this one whatever its environment.
    pub fn flag_args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["--config".into(), "/dev/null".into()];
        for s in settings::SETTINGS.iter().filter(|s| s.worker) {
            let value = self.value(s.key);
            if let Some(v) = value {
                a.push(s.flag_text().expect("a worker setting has a flag").into());
                a.push(v);
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
            Location::S3(url) => Box::new(crate::storage::s3::S3Storage::connect(
                &url,
                &crate::storage::s3::S3Options {
                    endpoint: self.s3_endpoint.clone(),
                    region: self.s3_region.clone(),
                    uri_style: self.s3_uri_style.clone(),
                    ca_file: self.s3_ca_file.clone(),
                    timeout: self.ssh_timeout,
                },
            )?),
        };
        let keys = self.encryption.as_ref().map(KeySource::load).transpose()?;
        Ok(Repository::open(storage)?.with_keys(keys))
    }
}

#[cfg(test)]
mod tests;
