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
  pg                 WALSHIP_PG / --pg                         (none) libpq connection string of
                                                               the local server (status, check,
                                                               basebackup, promote, watch, rejoin,
                                                               switchover); without it they use
                                                               pgdata's postmaster.pid. No
                                                               password here: use ~/.pgpass
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
  watch_interval     WALSHIP_WATCH_INTERVAL / watch --interval        1 second
  failover_primary   WALSHIP_FAILOVER_PRIMARY / watch --primary       (none: no automatic
                                                               failover) conninfo to health-check
  failover_after     WALSHIP_FAILOVER_AFTER / watch --failover-after  30 seconds
  fence_command      WALSHIP_FENCE_COMMAND / watch --fence-command    (required for failover)
  witness_command    WALSHIP_WITNESS_COMMAND / watch --witness-command  (none) exit 0 = the
                                                               witness still reaches the primary,
                                                               1 = it does not, else unknown
  encryption         WALSHIP_ENCRYPTION / --encryption         none (none, aead): aead encrypts a
                                                               new repository (FORMAT.md)
  encryption_key_file  WALSHIP_ENCRYPTION_KEY_FILE / ...       (none) the key, 64 hex digits (mode
                                                               0600; older keys on later lines)
  encryption_key_command  WALSHIP_ENCRYPTION_KEY_COMMAND / ... (none) prints the key (a vault)
  drill_max_age      WALSHIP_DRILL_MAX_AGE / --drill-max-age   7 days: check warns when no drill
                                                               passed within them
  [drill]            (file only)                               walship drill: checks (SQL, each
                                                               must return true), database
                                                               (postgres), scratch
                                                               (/var/tmp/walship-drill), timeout
                                                               (21600 seconds)

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

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `walship --version`: the version, the commit it was built from and the libssh2 it uses.
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{VERSION} (commit {}, libssh2 {}, patched: vendor/libssh2-sys/WALSHIP.md)",
            env!("WALSHIP_COMMIT"),
            crate::os::libssh2_version()
        )
    })
}

#[derive(Debug, Parser)]
#[command(name = "walship", version = VERSION, long_version = long_version(), about = "PostgreSQL WAL archiving, restore and standby toolkit", after_help = CONFIG_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts; each also has a config file key of the same name. Each
/// command's `--help` shows, under "Global options", only the ones it uses ([`USES`]); the
/// others are still accepted.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
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
    /// Print only errors and warnings
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print debugging detail too (where an SSH connection's time goes, its ciphers)
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// libpq connection string of the local server (status, check, basebackup, promote, watch,
    /// rejoin, switchover), e.g. "host=/var/run/postgresql port=5432 user=postgres"
    #[arg(long, global = true, env = "WALSHIP_PG", value_name = "CONNINFO")]
    pub pg: Option<String>,
    /// Days within which a drill must have passed, or check warns
    #[arg(
        long,
        global = true,
        env = "WALSHIP_DRILL_MAX_AGE",
        value_name = "DAYS"
    )]
    pub drill_max_age: Option<u64>,
    /// none or aead: encrypt a new repository (an existing one stays as it is)
    #[arg(long, global = true, env = "WALSHIP_ENCRYPTION", value_name = "KIND")]
    pub encryption: Option<String>,
    /// File holding the repository's key (64 hex digits; older keys on later lines)
    #[arg(
        long,
        global = true,
        env = "WALSHIP_ENCRYPTION_KEY_FILE",
        value_name = "FILE"
    )]
    pub encryption_key_file: Option<PathBuf>,
    /// Command (sh -c) that prints the repository's key, e.g. from a vault
    #[arg(
        long,
        global = true,
        env = "WALSHIP_ENCRYPTION_KEY_COMMAND",
        value_name = "COMMAND"
    )]
    pub encryption_key_command: Option<String>,
}

/// `status --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusOutput {
    Text,
    Json,
    Prometheus,
}

/// `walship key ...`
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Add the configured current key (the first line of encryption_key_file) to the
    /// repository: new objects are sealed under it, older ones stay readable with the old keys
    Add,
    /// List the repository's key ids and which of them this configuration holds
    List,
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
        /// Replace an archived object whose stored bytes are damaged with this file, when its
        /// header records exactly this file (by hand, never in archive_command)
        #[arg(long)]
        replace_damaged: bool,
    },
    /// Restore one WAL file (restore_command = 'walship fetch %f %p')
    Fetch {
        /// The WAL file name PostgreSQL asks for (%f)
        name: String,
        /// Where to put it (%p)
        path: PathBuf,
        /// Answer "not in the archive" for segments after this one, whatever the repository
        /// holds (a drill replays the archive as it was when the drill started)
        #[arg(long, hide = true, value_name = "SEGMENT")]
        until: Option<String>,
    },
    /// What the repository holds, per timeline: first and last segment, gaps, bytes, ratio
    Status {
        /// text, json (schema in docs/guide/monitoring.md) or prometheus (node_exporter's
        /// textfile collector)
        #[arg(long, value_enum, default_value_t = StatusOutput::Text)]
        output: StatusOutput,
        /// The same as --output json
        #[arg(long, conflicts_with_all = ["prometheus", "output"])]
        json: bool,
        /// The same as --output prometheus
        #[arg(long, conflicts_with = "output")]
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
    /// Prove a backup restores: restore it into scratch space, replay, open, check, measure RTO/RPO
    Drill(crate::commands::drill::DrillArgs),
    /// Check the pipeline end to end: settings, archiver, a forced segment switch archived
    Check(crate::commands::check::CheckArgs),
    /// Remove expired backups and the WAL no kept backup needs (plan first; --dry-run prints it)
    Prune(crate::commands::prune::PruneArgs),
    /// A restored server's hold on the WAL it still needs (set up by restore: archive_cleanup_command, recovery_end_command)
    Reader(crate::commands::reader::ReaderArgs),
    /// Print the resolved configuration, each value with its source (flag, environment, file,
    /// default), after validating it (a bad value exits 2 naming its key)
    Config {
        /// text or json
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        output: String,
        /// The same as --output json
        #[arg(long, conflicts_with = "output")]
        json: bool,
    },
    /// Print a new encryption key (64 hex digits), or write it to a new file (mode 0600)
    Keygen {
        /// A new file to write the key to (never over an existing one)
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The keys of an encrypted repository: add the configured key (rotation), or list them
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Print a shell completion script (walship completions bash > /etc/bash_completion.d/walship)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page of walship, or of one command (walship man > walship.1)
    Man {
        /// The command (default: walship itself)
        command: Option<String>,
    },
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
            Command::Config { .. } => "config".into(),
            Command::Completions { .. } => "completions".into(),
            Command::Keygen { .. } => "keygen".into(),
            Command::Key { .. } => "key".into(),
            Command::Man { .. } => "man".into(),
            Command::Status { .. } => "status".into(),
            Command::Verify => "verify".into(),
            Command::Prune(_) => "prune".into(),
            Command::Reader(_) => "reader".into(),
            Command::Check(_) => "check".into(),
            Command::Basebackup(_) => "basebackup".into(),
            Command::Restore(_) => "restore".into(),
            Command::Drill(_) => "drill".into(),
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
/// The global options `command` uses, for its `--help` (ids as clap names them); `None` for a
/// command whose help shows them all.
fn uses(command: &str) -> Option<Vec<&'static str>> {
    const REPO: &[&str] = &[
        "config",
        "repo",
        "encryption",
        "encryption_key_file",
        "encryption_key_command",
        "ssh_key",
        "known_hosts",
        "ssh_timeout",
        "quiet",
        "verbose",
    ];
    const PUSH: &[&str] = &[
        "compression",
        "compression_level",
        "compress_threads",
        "push_ahead",
        "worker_idle_timeout",
    ];
    const FETCH: &[&str] = &["fetch_retries", "pgdata", "prefetch", "worker_idle_timeout"];
    const SERVER: &[&str] = &["pgdata", "pg"];
    const COMPRESS: &[&str] = &["compression", "compression_level", "compress_threads"];
    let parts: &[&[&str]] = match command {
        "push" => &[REPO, PUSH],
        "fetch" => &[REPO, FETCH],
        "verify" | "prune" | "reader" => &[REPO],
        "status" | "promote" | "watch" | "check" => &[REPO, SERVER],
        // they write a restore_command that carries the fetch settings
        "switchover" | "rejoin" | "restore" => &[REPO, SERVER, FETCH],
        "basebackup" => &[REPO, SERVER, COMPRESS],
        "demo" => &[],
        "config" => &[REPO, PUSH, FETCH, SERVER],
        "completions" | "man" | "keygen" => &[],
        "key" => &[REPO],
        _ => return None,
    };
    Some(parts.concat())
}

/// The command line for the help of `sub`: the global options it does not use are hidden.
/// (Hiding them per subcommand of one command is not possible: clap propagates global options
/// with their settings, so the help is rendered from a command made for it.) Not built yet:
/// see [`command_for_help`].
pub fn help_command(sub: &str) -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    if let Some(used) = uses(sub) {
        let globals: Vec<String> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().to_string())
            .collect();
        for g in globals.iter().filter(|g| !used.contains(&g.as_str())) {
            cmd = cmd.mut_arg(g, |a| a.hide(true));
        }
    }
    cmd
}

/// [`help_command`], built (global options propagated), ready to render `sub`'s help.
pub fn command_for_help(sub: &str) -> clap::Command {
    let mut cmd = help_command(sub);
    cmd.build();
    cmd
}

/// The subcommand whose help `args` ask for (`walship [options] CMD ... --help`, `walship help
/// CMD`), if that is what they ask.
fn help_asked_for(args: &[std::ffi::OsString]) -> Option<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let is_sub = |a: &str| cmd.get_subcommands().any(|c| c.get_name() == a);
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(w) = words.next() {
        if w == "help" {
            return words.next().map(|s| s.to_string()).filter(|s| is_sub(s));
        }
        if w.starts_with("--") && !w.contains('=') {
            words.next(); // every global option takes a value
            continue;
        }
        if is_sub(&w) {
            let rest: Vec<_> = words.collect();
            return rest
                .iter()
                .any(|r| r == "--help" || r == "-h")
                .then(|| w.to_string());
        }
        return None;
    }
    None
}

/// `walship man [COMMAND]`: the man page, rendered from the clap definitions.
fn print_man(command: Option<&str>) -> Result<(), Error> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    let (page, title) = match command {
        None => (cmd, "walship".to_string()),
        Some(name) => (
            cmd.find_subcommand(name)
                .cloned()
                .ok_or_else(|| Error::usage(format!("no command {name:?}")))?,
            format!("walship-{name}"),
        ),
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .title(title)
        .render(&mut out)
        .map_err(|e| Error::io("rendering the man page", e))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Error::io("writing the man page", e))
}

/// Parse `args` as walship's command line.
pub fn parse(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(args)
}

pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    if let Some(sub) = help_asked_for(&args) {
        let mut cmd = command_for_help(&sub);
        if let Some(s) = cmd.find_subcommand_mut(&sub) {
            let _ = s.print_long_help();
            return 0;
        }
    }
    let cli = match parse(&args) {
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
    if worker {
        crate::log::with_timestamps();
    }
    if cli.global.quiet {
        crate::log::set_quiet();
    }
    if cli.global.verbose {
        crate::log::set_verbose();
    }
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
        Command::Push {
            path,
            name,
            replace_damaged,
        } => crate::commands::push::run(
            &Config::resolve(&cli.global)?,
            &path,
            &name,
            replace_damaged,
        ),
        Command::Fetch { name, path, until } => {
            crate::commands::fetch::run(&cli.global, &name, &path, until.as_deref())
        }
        Command::Demo(args) => crate::commands::demo::run(&args),
        Command::Config { output, json } => {
            crate::commands::config_show::run(&cli.global, json || output == "json")
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // into memory first: clap_complete panics when its writer fails (a closed pipe)
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "walship", &mut out);
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| Error::io("writing the completion script", e))
        }
        Command::Man { command } => print_man(command.as_deref()),
        Command::Keygen { output } => crate::commands::key::keygen(output.as_deref()),
        Command::Key { action } => {
            let config = Config::resolve(&cli.global)?;
            match action {
                KeyAction::Add => crate::commands::key::add(&config),
                KeyAction::List => crate::commands::key::list(&config),
            }
        }
        Command::Status {
            output,
            json,
            prometheus,
        } => {
            use crate::commands::status::Output;
            let output = match (json, prometheus, output) {
                (true, _, _) | (_, _, StatusOutput::Json) => Output::Json,
                (_, true, _) | (_, _, StatusOutput::Prometheus) => Output::Prometheus,
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
        Command::Drill(args) => crate::commands::drill::run(&Config::resolve(&cli.global)?, &args),
        Command::Prune(args) => crate::commands::prune::run(&Config::resolve(&cli.global)?, &args),
        Command::Reader(args) => {
            crate::commands::reader::run(&Config::resolve(&cli.global)?, &args)
        }
        Command::PushAhead { pg_wal } => {
            crate::commands::push_ahead::run_worker(&Config::resolve(&cli.global)?, &pg_wal)
        }
        Command::Prefetch { pg_wal } => {
            crate::commands::prefetch::run_worker(&Config::resolve(&cli.global)?, &pg_wal)
        }
    }
}
