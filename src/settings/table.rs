//! The table of every setting ([`super::SETTINGS`]), apart from the types and the text made
//! from it, so that each file stays readable: adding a setting is one entry here.

use super::{Flag, Kind, Setting};

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
        help: "Repository: an absolute directory, ssh://[user@]host[:port]/path or s3://bucket/prefix",
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
        key: "s3_endpoint",
        env: Some("WALSHIP_S3_ENDPOINT"),
        kind: Kind::Text,
        value_name: "URL",
        default: "AWS S3",
        help: "Object storage endpoint, http:// or https:// (MinIO, Ceph RGW, R2, Garage...)",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "s3_region",
        env: Some("WALSHIP_S3_REGION"),
        kind: Kind::Text,
        value_name: "REGION",
        default: "AWS_REGION, else us-east-1",
        help: "Object storage region",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "s3_uri_style",
        env: Some("WALSHIP_S3_URI_STYLE"),
        kind: Kind::Text,
        value_name: "STYLE",
        default: "path with s3_endpoint, else virtual-host",
        help: "virtual-host (bucket.host/key) or path (host/bucket/key)",
        used_by: REPO,
        worker: true,
        ..BASE
    },
    Setting {
        key: "s3_ca_file",
        env: Some("WALSHIP_S3_CA_FILE"),
        kind: Kind::Path,
        value_name: "FILE",
        default: "the system's CAs",
        help: "PEM file of the CA that signed the object store's certificate",
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
