//! Every configuration setting, declared once.
//!
//! [`SETTINGS`] is the single place a setting is described: its TOML key, its flag (global, or
//! one command's), its `WALSHIP_*` variable, its kind (which fixes how it is parsed and
//! validated), which commands use it, whether background workers and the `restore_command`s walship
//! writes carry it, its default and its help line. From it come the global options clap parses
//! (`src/cli.rs`), the command flags that set a setting (their clap attributes look the entry
//! up), the configuration table of `walship --help`, the keys the file may hold, the validation
//! of each value (`src/config/values.rs`, one rule per kind), `walship config`, the worker
//! argument list and `restore_command`; `tests/docs.rs` checks docs/guide/configuration.md
//! against it. Before this table each of those kept its own copy, and they drifted.
//!
//! Nothing here knows clap or reads anything: it is data, and text made from it.

/// How a setting's value is written and checked. One rule per kind, whatever the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text (a connection string, a shell command).
    Text,
    /// The repository: an absolute path or `ssh://[user@]host[:port]/path`.
    Location,
    /// `zstd`, `bzip2` or `none`.
    Compression,
    /// A compression level (an integer; negative zstd levels are fast levels).
    Level,
    /// A path.
    Path,
    /// A whole number, 0 included (what 0 means is in the help line).
    Count,
    /// A number of seconds something waits or may take, at least 1: a timeout or an interval of
    /// 0 would give up at once or spin, which no one means.
    Seconds,
    /// A number of days back from now, 0 included (0: now).
    Days,
    /// A list of shell commands (file only).
    Commands,
    /// A TOML table with keys of its own (file only).
    Table,
}

/// Where a setting can be given besides the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `--KEY` (underscores as dashes), accepted before or after any command.
    Global,
    /// A flag of one command only, and its environment variable read by that command only: a
    /// bad value for `watch` must not stop `archive_command`.
    Command {
        command: &'static str,
        long: &'static str,
    },
    /// A flag of one command, while the environment variable is read by every command.
    CommandFlagOnly {
        command: &'static str,
        long: &'static str,
    },
    /// The file (and the environment variable, if any) only.
    None,
}

#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The TOML key, and the clap id of its flag.
    pub key: &'static str,
    pub flag: Flag,
    pub env: Option<&'static str>,
    pub kind: Kind,
    /// The flag's value name in help.
    pub value_name: &'static str,
    /// The default, as `--help` shows it.
    pub default: &'static str,
    /// One line: the flag's help, and the meaning column of `--help`'s table.
    pub help: &'static str,
    /// The commands whose `--help` shows its flag (and that read it).
    pub used_by: &'static [&'static str],
    /// Carried, as a flag, to background workers and to the `restore_command` that restore and
    /// rejoin write: the settings that decide what is read and written, and how.
    pub worker: bool,
}

/// Commands that talk to the repository.
const REPO: &[&str] = &[
    "push",
    "fetch",
    "verify",
    "prune",
    "reader",
    "status",
    "promote",
    "watch",
    "check",
    "switchover",
    "rejoin",
    "restore",
    "basebackup",
    "key",
    "config",
];
const COMPRESSING: &[&str] = &["push", "basebackup", "config"];
/// Commands that fetch, or write a restore_command that carries the fetch settings.
const FETCHING: &[&str] = &["fetch", "switchover", "rejoin", "restore", "config"];
const WORKERS: &[&str] = &["push", "fetch", "switchover", "rejoin", "restore", "config"];
const SERVER: &[&str] = &[
    "status",
    "promote",
    "watch",
    "check",
    "switchover",
    "rejoin",
    "restore",
    "basebackup",
    "config",
];
const LOCAL_DATA: &[&str] = &[
    "fetch",
    "status",
    "promote",
    "watch",
    "check",
    "switchover",
    "rejoin",
    "restore",
    "basebackup",
    "config",
];

/// What a setting is unless its entry says otherwise: a global flag, no variable, not carried
/// to workers.
const BASE: Setting = Setting {
    key: "",
    flag: Flag::Global,
    env: None,
    kind: Kind::Text,
    value_name: "",
    default: "",
    help: "",
    used_by: &[],
    worker: false,
};

const fn watch(long: &'static str) -> Flag {
    Flag::Command {
        command: "watch",
        long,
    }
}

/// Every setting, in the order `--help` and `walship config` list them. The order of the
/// `worker` ones is also their order on a worker's command line, which names its spool: keep it.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "repo",
        env: Some("WALSHIP_REPO"),
        kind: Kind::Location,
        value_name: "LOCATION",
        default: "(required)",
        help: "Repository: an absolute directory or ssh://[user@]host[:port]/path",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "compression",
        env: Some("WALSHIP_COMPRESSION"),
        kind: Kind::Compression,
        value_name: "KIND",
        default: "zstd",
        help: "zstd, bzip2 or none",
        used_by: COMPRESSING,
        worker: true,
        ..BASE
    },
    Setting {
        key: "compression_level",
        env: Some("WALSHIP_COMPRESSION_LEVEL"),
        kind: Kind::Level,
        value_name: "N",
        default: "zstd 1, bzip2 9",
        help: "Compression level (zstd 1..22 and negative fast levels, bzip2 1..9)",
        used_by: COMPRESSING,
        worker: true,
        ..BASE
    },
    Setting {
        key: "compress_threads",
        env: Some("WALSHIP_COMPRESS_THREADS"),
        kind: Kind::Count,
        value_name: "N",
        default: "one per core, at most 4",
        help: "Threads compressing one file (0: one per core, at most 4)",
        used_by: COMPRESSING,
        worker: true,
        ..BASE
    },
    Setting {
        key: "ssh_key",
        env: Some("WALSHIP_SSH_KEY"),
        kind: Kind::Path,
        value_name: "FILE",
        default: "ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa",
        help: "SSH private key file (an encrypted key: use ssh-agent)",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "known_hosts",
        env: Some("WALSHIP_KNOWN_HOSTS"),
        kind: Kind::Path,
        value_name: "FILE",
        default: "~/.ssh/known_hosts",
        help: "known_hosts file the SSH host key must be in (never added to)",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "ssh_timeout",
        env: Some("WALSHIP_SSH_TIMEOUT"),
        kind: Kind::Seconds,
        value_name: "SECONDS",
        default: "30",
        help: "Seconds allowed for the SSH connection and for each read or write",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "fetch_retries",
        env: Some("WALSHIP_FETCH_RETRIES"),
        kind: Kind::Count,
        value_name: "N",
        default: "2",
        help: "Extra attempts when fetch meets a transient error",
        used_by: FETCHING,
        worker: true,
        ..BASE
    },
    Setting {
        key: "pgdata",
        env: Some("WALSHIP_PGDATA"),
        kind: Kind::Path,
        value_name: "DIR",
        default: "the working directory",
        help: "The PostgreSQL data directory (fetch reads standby.signal / recovery.signal \
               there)",
        used_by: LOCAL_DATA,
        ..BASE
    },
    Setting {
        key: "push_ahead",
        env: Some("WALSHIP_PUSH_AHEAD"),
        kind: Kind::Count,
        value_name: "N",
        default: "one per core",
        help: "Background threads pushing the other .ready files ahead (0: off)",
        used_by: &["push", "config"],
        worker: true,
        ..BASE
    },
    Setting {
        key: "prefetch",
        env: Some("WALSHIP_PREFETCH"),
        kind: Kind::Count,
        value_name: "N",
        default: "8",
        help: "Segments fetched ahead of recovery into the spool (0: off)",
        used_by: FETCHING,
        worker: true,
        ..BASE
    },
    Setting {
        key: "worker_idle_timeout",
        env: Some("WALSHIP_WORKER_IDLE_TIMEOUT"),
        kind: Kind::Seconds,
        value_name: "SECONDS",
        default: "30",
        help: "Seconds an idle background worker waits for work before it exits",
        used_by: WORKERS,
        worker: true,
        ..BASE
    },
    Setting {
        key: "encryption",
        env: Some("WALSHIP_ENCRYPTION"),
        kind: Kind::Text,
        value_name: "KIND",
        default: "none",
        help: "none or aead: aead encrypts a new repository; an existing one must match",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "encryption_key_file",
        env: Some("WALSHIP_ENCRYPTION_KEY_FILE"),
        kind: Kind::Path,
        value_name: "FILE",
        default: "(none)",
        help: "File holding the repository's key (64 hex digits, mode 0600; older keys on later lines)",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "encryption_key_command",
        env: Some("WALSHIP_ENCRYPTION_KEY_COMMAND"),
        kind: Kind::Text,
        value_name: "COMMAND",
        default: "(none)",
        help: "Command (sh -c) that prints the repository's key, e.g. from a vault; killed after 30 s",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "keep_backups",
        flag: Flag::Command {
            command: "prune",
            long: "keep-backups",
        },
        env: Some("WALSHIP_KEEP_BACKUPS"),
        kind: Kind::Count,
        value_name: "N",
        default: "(none)",
        help: "Keep this many of the newest restorable base backups (and the WAL they need)",
        used_by: &["prune"],
        ..BASE
    },
    Setting {
        key: "keep_days",
        flag: Flag::Command {
            command: "prune",
            long: "keep-days",
        },
        env: Some("WALSHIP_KEEP_DAYS"),
        kind: Kind::Days,
        value_name: "D",
        default: "(none)",
        help: "Keep what point-in-time recovery to any moment of the last D days needs",
        used_by: &["prune"],
        ..BASE
    },
    Setting {
        key: "pg",
        env: Some("WALSHIP_PG"),
        kind: Kind::Text,
        value_name: "CONNINFO",
        default: "(none)",
        help: "libpq connection string of the local server (status, promote, watch, check, \
               switchover, rejoin, restore, basebackup), e.g. \"host=/var/run/postgresql \
               port=5432 user=postgres\"; without it, pgdata's postmaster.pid; no password: use ~/.pgpass",
        used_by: SERVER,
        ..BASE
    },
    Setting {
        key: "pg_bin",
        flag: Flag::CommandFlagOnly {
            command: "restore",
            long: "pg-bin",
        },
        env: Some("WALSHIP_PG_BIN"),
        kind: Kind::Path,
        value_name: "DIR",
        default: "/usr/lib/postgresql/<PG_VERSION>/bin",
        help: "Directory of PostgreSQL's programs (pg_ctl, pg_controldata, pg_rewind, \
               postgres)",
        used_by: &["restore"],
        ..BASE
    },
    Setting {
        key: "on_promote",
        flag: Flag::None,
        kind: Kind::Commands,
        default: "(none)",
        help: "Commands run (sh -c), in order, after a promotion",
        ..BASE
    },
    Setting {
        key: "on_failover_refused",
        flag: Flag::None,
        kind: Kind::Commands,
        default: "(none)",
        help: "Commands run (sh -c) when automatic failover refuses to promote this standby",
        ..BASE
    },
    Setting {
        key: "hook_timeout",
        flag: Flag::None,
        kind: Kind::Seconds,
        default: "30",
        help: "Seconds a hook (on_promote, fence, witness) may run before it is killed",
        ..BASE
    },
    Setting {
        key: "smart_timeout",
        flag: Flag::None,
        kind: Kind::Seconds,
        default: "300",
        help: "Seconds a smart promotion waits for the archive to be replayed",
        ..BASE
    },
    Setting {
        key: "trigger_file",
        flag: watch("trigger-file"),
        env: Some("WALSHIP_TRIGGER_FILE"),
        kind: Kind::Path,
        value_name: "FILE",
        default: "(none)",
        help: "Promote when this file appears (\"fast\" in it: fast; \"smart\" or empty: \
               smart)",
        used_by: &["watch"],
        ..BASE
    },
    Setting {
        key: "watch_interval",
        flag: watch("interval"),
        env: Some("WALSHIP_WATCH_INTERVAL"),
        kind: Kind::Seconds,
        value_name: "SECONDS",
        default: "1",
        help: "Seconds between checks",
        used_by: &["watch"],
        ..BASE
    },
    Setting {
        key: "failover_primary",
        flag: watch("primary"),
        env: Some("WALSHIP_FAILOVER_PRIMARY"),
        kind: Kind::Text,
        value_name: "CONNINFO",
        default: "(none: no automatic failover)",
        help: "The primary to health-check, as a libpq connection string (automatic \
               failover)",
        used_by: &["watch"],
        ..BASE
    },
    Setting {
        key: "failover_after",
        flag: watch("failover-after"),
        env: Some("WALSHIP_FAILOVER_AFTER"),
        kind: Kind::Seconds,
        value_name: "SECONDS",
        default: "30",
        help: "Seconds the primary must be down before failing over",
        used_by: &["watch"],
        ..BASE
    },
    Setting {
        key: "fence_command",
        flag: watch("fence-command"),
        env: Some("WALSHIP_FENCE_COMMAND"),
        kind: Kind::Text,
        value_name: "COMMAND",
        default: "(none; required for automatic failover)",
        help: "Command that must succeed (exit 0) to fence the old primary before a \
               failover",
        used_by: &["watch"],
        ..BASE
    },
    Setting {
        key: "witness_command",
        flag: watch("witness-command"),
        env: Some("WALSHIP_WITNESS_COMMAND"),
        kind: Kind::Text,
        value_name: "COMMAND",
        default: "(none)",
        help: "Command asking a witness about the primary: exit 0 = it reaches the primary \
               (no failover), 1 = it cannot (failover allowed), anything else = unknown (no \
               failover)",
        used_by: &["watch"],
        ..BASE
    },
    Setting {
        key: "targets",
        flag: Flag::None,
        kind: Kind::Table,
        default: "(none)",
        help: "Standbys basebackup --to NAME makes: host (none: this host), port, user, \
               pgdata, pg_bin, walship, config, primary_conninfo, and the tables \
               tablespace_map and settings",
        ..BASE
    },
    Setting {
        key: "drill_max_age",
        env: Some("WALSHIP_DRILL_MAX_AGE"),
        kind: Kind::Days,
        value_name: "DAYS",
        default: "7",
        help: "Days within which a drill must have passed, or check warns",
        used_by: &["check", "config"],
        ..BASE
    },
    Setting {
        key: "drill",
        flag: Flag::None,
        kind: Kind::Table,
        help: "walship drill: checks (SQL, each must return true), database (postgres), \
               scratch (/var/tmp/walship-drill), timeout (21600 seconds)",
        ..BASE
    },
];

/// The setting with this key. Panics on a key no entry has: that is a bug in the caller, which
/// names keys as literals, and every key is exercised by the tests.
pub fn get(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("no setting {key:?} in src/settings.rs"))
}

/// For the clap attributes of a command's own flags: `#[arg(long = settings::long("..."))]`.
pub fn long(key: &str) -> &'static str {
    match get(key).flag {
        Flag::Command { long, .. } | Flag::CommandFlagOnly { long, .. } => long,
        _ => panic!("setting {key:?} is not a command's flag"),
    }
}

pub fn env(key: &str) -> Option<&'static str> {
    get(key).env
}

pub fn help(key: &str) -> &'static str {
    get(key).help
}

pub fn value_name(key: &str) -> &'static str {
    get(key).value_name
}

impl Setting {
    /// The key as the file writes it (`[targets.NAME]` for a table of tables).
    pub fn shown_key(&self) -> String {
        match (self.kind, self.key) {
            (Kind::Table, "targets") => "[targets.NAME]".into(),
            (Kind::Table, k) => format!("[{k}]"),
            _ => self.key.into(),
        }
    }

    /// The long flag, as written on a command line (`--repo`, `watch --interval`).
    pub fn flag_text(&self) -> Option<String> {
        match self.flag {
            Flag::Global => Some(format!("--{}", self.key.replace('_', "-"))),
            Flag::Command { command, long } | Flag::CommandFlagOnly { command, long } => {
                Some(format!("{command} --{long}"))
            }
            Flag::None => None,
        }
    }

    /// "WALSHIP_REPO / --repo", "(file only)": the env / flag column of the tables.
    pub fn env_flag_text(&self) -> String {
        match (self.env, self.flag_text()) {
            (Some(e), Some(f)) => format!("{e} / {f}"),
            (Some(e), None) => format!("{e} (no flag)"),
            (None, Some(f)) => format!("(no variable) / {f}"),
            (None, None) => "(file only)".into(),
        }
    }

    /// Whether `command` reads this setting's environment variable.
    pub fn env_read_by(&self, command: &str) -> bool {
        match self.flag {
            Flag::Command { command: c, .. } => c == command,
            _ => self.env.is_some(),
        }
    }
}

/// The CONFIGURATION part of `walship --help`: per setting, its key and env / flag, then its
/// help and default wrapped below.
pub fn help_table() -> String {
    const INDENT: usize = 6;
    const WIDTH: usize = 100;
    let mut out = String::from(
        "CONFIGURATION\n  Every key can be set in the TOML file (--config, WALSHIP_CONFIG, default \
         /etc/walship.toml), as an\n  environment variable, or as a flag. Flags beat environment \
         variables, which beat the file.\n  Durations in seconds must be at least 1.\n\n",
    );
    for s in SETTINGS {
        out.push_str(&format!("  {:<20} {}\n", s.shown_key(), s.env_flag_text()));
        let text = match s.default {
            "" => s.help.to_string(),
            d if d.starts_with('(') => format!("{} {d}", s.help),
            d => format!("{} [default: {d}]", s.help),
        };
        let mut line = String::new();
        for word in text.split_whitespace() {
            if !line.is_empty() && INDENT + line.len() + 1 + word.len() > WIDTH {
                out.push_str(&format!("{:INDENT$}{line}\n", ""));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(&format!("{:INDENT$}{line}\n", ""));
    }
    out
}

#[cfg(test)]
mod tests;
