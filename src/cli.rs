//! Command-line flags, parsed into plain structs with no I/O (clap also reads the `WALSHIP_*`
//! environment fallbacks here), and the entry point that turns a finished command or an error
//! into an exit code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::error::{EXIT_ABORT_RECOVERY, Error, Kind};

const CONFIG_HELP: &str = "\
CONFIGURATION
  Every key can be set in the TOML file (--config, WALSHIP_CONFIG, default /etc/walship.toml), as an
  environment variable, or as a flag. Flags beat environment variables, which beat the file.

  key                env / flag                               default
  repo               WALSHIP_REPO / --repo                     (required) absolute path, or
                                                               ssh://[user@]host[:port]/path
  compression        WALSHIP_COMPRESSION / --compression       zstd  (zstd, bzip2, none)
  compression_level  WALSHIP_COMPRESSION_LEVEL / ...-level     zstd 1, bzip2 9
  compress_threads   WALSHIP_COMPRESS_THREADS / ...-threads    0 = one per core, at most 4
  ssh_key            WALSHIP_SSH_KEY / --ssh-key               ssh-agent, then ~/.ssh/id_ed25519,
                                                               id_ecdsa, id_rsa
  known_hosts        WALSHIP_KNOWN_HOSTS / --known-hosts       ~/.ssh/known_hosts (never auto-added)
  ssh_timeout        WALSHIP_SSH_TIMEOUT / --ssh-timeout       30 seconds (connect and each I/O)
  fetch_retries      WALSHIP_FETCH_RETRIES / --fetch-retries   2 more tries on a transient error
  pgdata             WALSHIP_PGDATA / --pgdata                 the working directory (PostgreSQL
                                                               runs restore_command in its data
                                                               directory)
  push_ahead         WALSHIP_PUSH_AHEAD / --push-ahead         one per core; threads of the
                                                               background worker that pushes the
                                                               other .ready files (0 = off)
  prefetch           WALSHIP_PREFETCH / --prefetch             8 segments fetched ahead of
                                                               recovery (0 = off)
  worker_idle_timeout  WALSHIP_WORKER_IDLE_TIMEOUT / ...       30 seconds before an idle background
                                                               worker exits
  keep_backups       WALSHIP_KEEP_BACKUPS / prune --keep-backups  (none) newest restorable base
                                                               backups prune keeps
  keep_days          WALSHIP_KEEP_DAYS / prune --keep-days     (none) days of point-in-time
                                                               recovery prune keeps
  pg                 WALSHIP_PG / --pg                         (none) libpq connection string for
                                                               status, check and basebackup;
                                                               without it they use pgdata's
                                                               postmaster.pid. No password here:
                                                               use ~/.pgpass
  [targets.NAME]     (file only) basebackup --to NAME          a standby: host (none: this host),
                                                               port, user, pgdata, pg_bin, walship,
                                                               config, primary_conninfo, and the
                                                               tables tablespace_map and settings
  pg_bin             WALSHIP_PG_BIN (no flag)                  /usr/lib/postgresql/<PG_VERSION>/bin
  on_promote         (file only) list of commands              run (sh -c) after a promotion
  on_failover_refused (file only) list of commands             run when automatic failover
                                                               refuses to promote this standby
  hook_timeout       (file only)                               30 seconds, then a hook is killed
  smart_timeout      (file only)                               300 seconds a smart promotion waits
                                                               for the archive to be replayed
  trigger_file       WALSHIP_TRIGGER_FILE / watch --trigger-file      (none)
  watch_interval     WALSHIP_WATCH_INTERVAL / watch --watch-interval  1 second
  failover_primary   WALSHIP_FAILOVER_PRIMARY / watch --failover-primary  (none: no automatic
                                                               failover) conninfo to health-check
  failover_after     WALSHIP_FAILOVER_AFTER / watch --failover-after  30 seconds
  fence_command      WALSHIP_FENCE_COMMAND / watch --fence-command    (required for failover)
  witness_command    WALSHIP_WITNESS_COMMAND / watch --witness-command  (none) exit 0 = the
                                                               witness still reaches the primary

POSTGRESQL
  archive_command = 'walship push %p %f'
  restore_command = 'walship fetch %f %p'
  archive_cleanup_command = 'walship prune --before %r'   (a standby's own archive only)

CRON
  15 3 * * *  postgres  walship prune --keep-backups 7 --keep-days 14

EXIT CODES
  0 success; 1 not in the archive (fetch); 2 usage or configuration error; 3 repository unavailable
  (network, disk full: retrying can help); 4 conflict (different content already archived, another
  cluster's repository, unknown format); 5 corrupt data (damaged object, truncated or foreign WAL).
  254: fetch during plain archive recovery (recovery.signal without standby.signal) failed for a
  reason other than \"not in the archive\"; above 125, so PostgreSQL stops recovery instead of
  ending it early and opening a new timeline without the rest of the WAL.";

#[derive(Debug, Parser)]
#[command(name = "walship", version, about = "PostgreSQL WAL archiving, restore and standby toolkit", after_help = CONFIG_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts; each also has a config file key of the same name.
#[derive(Debug, Args)]
pub struct GlobalFlags {
    /// Configuration file [default: /etc/walship.toml]
    #[arg(long, global = true, env = "WALSHIP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Repository: an absolute directory or ssh://[user@]host[:port]/path
    #[arg(long, global = true, env = "WALSHIP_REPO", value_name = "LOCATION")]
    pub repo: Option<String>,
    /// zstd, bzip2 or none
    #[arg(long, global = true, env = "WALSHIP_COMPRESSION", value_name = "KIND")]
    pub compression: Option<String>,
    /// Compression level (zstd 1..22, bzip2 1..9)
    #[arg(
        long,
        global = true,
        env = "WALSHIP_COMPRESSION_LEVEL",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub compression_level: Option<i32>,
    /// Threads compressing one file (0: one per core, at most 4)
    #[arg(
        long,
        global = true,
        env = "WALSHIP_COMPRESS_THREADS",
        value_name = "N"
    )]
    pub compress_threads: Option<u32>,
    /// SSH private key file
    #[arg(long, global = true, env = "WALSHIP_SSH_KEY", value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file the SSH host key must be in
    #[arg(long, global = true, env = "WALSHIP_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Seconds allowed for the SSH connection and for each read or write
    #[arg(
        long,
        global = true,
        env = "WALSHIP_SSH_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub ssh_timeout: Option<u64>,
    /// Extra attempts when fetch meets a transient error
    #[arg(long, global = true, env = "WALSHIP_FETCH_RETRIES", value_name = "N")]
    pub fetch_retries: Option<u32>,
    /// The PostgreSQL data directory (fetch reads standby.signal / recovery.signal there)
    #[arg(long, global = true, env = "WALSHIP_PGDATA", value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// Background threads pushing the other .ready files ahead (0: off)
    #[arg(long, global = true, env = "WALSHIP_PUSH_AHEAD", value_name = "N")]
    pub push_ahead: Option<u32>,
    /// Segments fetched ahead of recovery into the spool (0: off)
    #[arg(long, global = true, env = "WALSHIP_PREFETCH", value_name = "N")]
    pub prefetch: Option<u32>,
    /// Seconds an idle background worker waits for work before it exits
    #[arg(
        long,
        global = true,
        env = "WALSHIP_WORKER_IDLE_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub worker_idle_timeout: Option<u64>,
    /// libpq connection string for status and check, e.g. "host=/var/run/postgresql port=5432"
    #[arg(long, global = true, env = "WALSHIP_PG", value_name = "CONNINFO")]
    pub pg: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive one WAL file (archive_command = 'walship push %p %f')
    #[command(visible_alias = "archive")]
    Push {
        /// Path of the file (%p, relative to the data directory)
        path: PathBuf,
        /// Its WAL file name (%f)
        name: String,
    },
    /// Restore one WAL file (restore_command = 'walship fetch %f %p')
    Fetch {
        /// The WAL file name PostgreSQL asks for (%f)
        name: String,
        /// Where to put it (%p)
        path: PathBuf,
    },
    /// What the repository holds, per timeline: first and last segment, gaps, bytes, ratio
    Status {
        /// Machine-readable output (schema in the README)
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Prometheus text format, for node_exporter's textfile collector
        #[arg(long)]
        prometheus: bool,
    },
    /// Read every object back and check it (length, payload digest, SHA-256) and every timeline's continuity
    Verify,
    /// Promote this standby now (smart: after replaying the whole archive; --fast: at once)
    Promote(crate::commands::promote::PromoteArgs),
    /// Watch a standby: promote on a trigger file, or fail over when the primary is gone
    Watch(crate::commands::watch::WatchArgs),
    /// Make a failed former primary a standby of the new primary (pg_rewind)
    Rejoin(crate::commands::rejoin::RejoinArgs),
    /// Planned role swap with zero loss: stop the primary cleanly, promote this standby, rejoin
    Switchover(crate::commands::switchover::SwitchoverArgs),
    /// Take a base backup of the running primary into the repository, or --to a standby
    Basebackup(crate::commands::basebackup::BasebackupArgs),
    /// Make a data directory from a base backup: a standby, or point-in-time recovery
    Restore(crate::commands::restore::RestoreArgs),
    /// Check the pipeline end to end: settings, archiver, a forced segment switch archived
    Check(crate::commands::check::CheckArgs),
    /// Remove expired backups and the WAL no kept backup needs (plan first; --dry-run prints it)
    Prune(crate::commands::prune::PruneArgs),
    /// Show walship at work on a throwaway PostgreSQL primary and a recovering copy
    Demo(crate::commands::demo::DemoArgs),
    /// Background worker started by push: pushes the .ready files of a pg_wal directory ahead
    #[command(hide = true)]
    PushAhead {
        #[arg(long)]
        pg_wal: PathBuf,
    },
    /// Background worker started by fetch: fetches the segments after the last one asked for
    #[command(hide = true)]
    Prefetch {
        #[arg(long)]
        pg_wal: PathBuf,
    },
}

impl Command {
    fn label(&self) -> String {
        match self {
            Command::Push { name, .. } => format!("push {name}"),
            Command::Fetch { name, .. } => format!("fetch {name}"),
            Command::Demo(_) => "demo".into(),
            Command::Status { .. } => "status".into(),
            Command::Verify => "verify".into(),
            Command::Prune(_) => "prune".into(),
            Command::Check(_) => "check".into(),
            Command::Basebackup(_) => "basebackup".into(),
            Command::Restore(_) => "restore".into(),
            Command::Promote(_) => "promote".into(),
            Command::Watch(_) => "watch".into(),
            Command::Rejoin(_) => "rejoin".into(),
            Command::Switchover(_) => "switchover".into(),
            Command::PushAhead { .. } => "push-ahead worker".into(),
            Command::Prefetch { .. } => "prefetch worker".into(),
        }
    }
}

/// Run walship with these arguments and return the process exit code. Errors are printed here,
/// once, with their hint.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return 0; // --help, --version
            }
            return match called_as(&args) {
                // A worker's exit code reaches whoever reaps it: in a container that is the
                // postmaster (PID 1), which takes anything but 0 or 1 for a crashed backend.
                Called::Worker => 0,
                Called::FetchInArchiveRecovery => {
                    crate::log_line!(
                        "walship: fetch: stopping recovery on purpose (exit {EXIT_ABORT_RECOVERY}): a \
                         usage error here must not read as \"not in the archive\", which would end \
                         recovery early"
                    );
                    EXIT_ABORT_RECOVERY
                }
                Called::Other => Kind::Usage.exit_code(),
            };
        }
    };
    let label = cli.command.label();
    let worker = matches!(
        cli.command,
        Command::PushAhead { .. } | Command::Prefetch { .. }
    );
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            // "Not in the archive" is the normal end of a restore; PostgreSQL asks every few
            // seconds on a standby, so it stays out of the log.
            if !(e.kind == Kind::NotFound && label.starts_with("fetch")) {
                crate::log_line!("walship: {label}: ERROR: {e}");
            }
            if worker {
                // The error is in the worker's log; its exit code must not restart a server
                // whose postmaster reaps orphans (see above).
                0
            } else {
                e.exit_code()
            }
        }
    }
}

/// How walship was called, as far as arguments that did not parse still tell.
enum Called {
    Worker,
    FetchInArchiveRecovery,
    Other,
}

fn called_as(args: &[std::ffi::OsString]) -> Called {
    let has = |w: &str| args.iter().skip(1).any(|a| a == w);
    if has("push-ahead") || has("prefetch") {
        Called::Worker
    } else if has("fetch")
        && crate::commands::fetch::RecoveryMode::detect(std::path::Path::new("."))
            == crate::commands::fetch::RecoveryMode::ArchiveRecovery
    {
        Called::FetchInArchiveRecovery
    } else {
        Called::Other
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Push { path, name } => {
            crate::commands::push::run(&Config::resolve(&cli.global)?, &path, &name)
        }
        Command::Fetch { name, path } => crate::commands::fetch::run(&cli.global, &name, &path),
        Command::Demo(args) => crate::commands::demo::run(&args),
        Command::Status { json, prometheus } => {
            use crate::commands::status::Output;
            let output = match (json, prometheus) {
                (true, _) => Output::Json,
                (_, true) => Output::Prometheus,
                _ => Output::Table,
            };
            crate::commands::status::run(&Config::resolve(&cli.global)?, output)
        }
        Command::Verify => crate::commands::verify::run(&Config::resolve(&cli.global)?),
        Command::Promote(args) => {
            crate::commands::promote::run(&Config::resolve(&cli.global)?, &args)
        }
        Command::Watch(args) => {
            let mut config = Config::resolve(&cli.global)?;
            args.apply(&mut config);
            crate::commands::watch::run(&config)
        }
        Command::Rejoin(args) => {
            crate::commands::rejoin::run(&Config::resolve(&cli.global)?, &args)
        }
        Command::Switchover(args) => {
            crate::commands::switchover::run(&Config::resolve(&cli.global)?, &args)
        }
        Command::Check(args) => crate::commands::check::run(&Config::resolve(&cli.global)?, &args),
        Command::Basebackup(args) => {
            crate::commands::basebackup::run(&Config::resolve(&cli.global)?, &args)
        }
        Command::Restore(args) => {
            crate::commands::restore::run(&Config::resolve(&cli.global)?, &args)
        }
        Command::Prune(args) => crate::commands::prune::run(&Config::resolve(&cli.global)?, &args),
        Command::PushAhead { pg_wal } => {
            crate::commands::push_ahead::run_worker(&Config::resolve(&cli.global)?, &pg_wal)
        }
        Command::Prefetch { pg_wal } => {
            crate::commands::prefetch::run_worker(&Config::resolve(&cli.global)?, &pg_wal)
        }
    }
}
