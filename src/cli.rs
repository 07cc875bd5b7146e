//! Command-line flags, parsed into plain structs with no I/O (clap also reads the `WALSHIP_*`
//! environment fallbacks here), and the entry point that turns a finished command or an error
//! into an exit code. The settings among the flags, and their variables, become
//! [`Overrides`]: the configuration below resolves from those and never sees clap. The global
//! flags are made from [`crate::settings::SETTINGS`] rather than declared here, so they cannot
//! drift from the file's keys and the help table.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Parser, Subcommand};

use crate::config::{Config, Overrides, Source};
use crate::error::{EXIT_ABORT_RECOVERY, Error, Kind};
use crate::settings::{self, Flag, SETTINGS, Setting};

/// What `walship --help` prints after the options: the settings table (from
/// [`crate::settings`]), then how PostgreSQL and cron call walship, and the exit codes.
fn config_help() -> String {
    format!("{}\n{AFTER_SETTINGS}", settings::help_table())
}

const AFTER_SETTINGS: &str = "\
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
            "{VERSION} (commit {}, libssh2 {}, {})",
            env!("WALSHIP_COMMIT"),
            crate::os::libssh2_version(),
            if cfg!(feature = "unpatched-libssh2") {
                "unpatched"
            } else {
                "patched: vendor/libssh2-sys/WALSHIP.md"
            }
        )
    })
}

#[derive(Debug, Parser)]
#[command(name = "walship", version = VERSION, long_version = long_version(), about = "PostgreSQL WAL archiving, restore and standby toolkit", after_help = config_help())]
pub struct Cli {
    #[command(flatten)]
    pub global: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// The options every command accepts: `--config`, `--quiet`, `--verbose`, and one flag for each
/// global setting of [`crate::settings::SETTINGS`], made from its entry (name, variable, help).
/// Each command's `--help` shows, under "Global options", only the ones it uses ([`uses`]); the
/// others are still accepted.
#[derive(Debug, Default)]
pub struct Globals {
    pub quiet: bool,
    pub verbose: bool,
    /// What the command line and the environment set, for [`Config::resolve`].
    pub overrides: Overrides,
    /// The subcommand, whose flags (and their variables) the settings may come from.
    command: String,
}

impl clap::Args for Globals {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.next_help_heading("Global options").arg(
            Arg::new("config")
                .long("config")
                .global(true)
                .env("WALSHIP_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Configuration file [default: /etc/walship.toml]"),
        );
        let settings = SETTINGS.iter().filter(|s| s.flag == Flag::Global);
        cmd.args(settings.map(global_arg))
            .arg(
                Arg::new("quiet")
                    .long("quiet")
                    .short('q')
                    .global(true)
                    .action(ArgAction::SetTrue)
                    .conflicts_with("verbose")
                    .help("Print only errors and warnings"),
            )
            .arg(
                Arg::new("verbose")
                    .long("verbose")
                    .short('v')
                    .global(true)
                    .action(ArgAction::SetTrue)
                    .help(
                        "Print debugging detail too (where an SSH connection's time goes, its \
                         ciphers)",
                    ),
            )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// A global setting's flag. clap checks the syntax of its value (a number where one is due);
/// the configuration checks the rules of its kind, as it does for the file's values.
fn global_arg(s: &'static Setting) -> Arg {
    let arg = Arg::new(s.key)
        .long(s.key.replace('_', "-"))
        .global(true)
        .value_name(s.value_name)
        .help(s.help)
        .action(ArgAction::Set);
    let arg = match s.env {
        Some(e) => arg.env(e),
        None => arg,
    };
    match s.kind {
        settings::Kind::Count | settings::Kind::Days => arg.value_parser(clap::value_parser!(u32)),
        settings::Kind::Seconds => arg.value_parser(clap::value_parser!(u64)),
        settings::Kind::Level => arg
            .value_parser(clap::value_parser!(i32))
            .allow_negative_numbers(true),
        settings::Kind::Path => arg.value_parser(clap::value_parser!(PathBuf)),
        _ => arg, // text: checked by the configuration
    }
}

impl clap::FromArgMatches for Globals {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut g = Globals::default();
        g.update_from_arg_matches(m)?;
        Ok(g)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.quiet = m.get_flag("quiet");
        self.verbose = m.get_flag("verbose");
        self.command = m.subcommand_name().unwrap_or_default().to_string();
        self.overrides = overrides_from(m);
        Ok(())
    }
}

/// Every setting the command line (or an environment variable clap read) gives: the global
/// flags, and the flags of the subcommand that are settings (their clap id is the key).
fn overrides_from(m: &ArgMatches) -> Overrides {
    let mut o = Overrides::default();
    o.config = m.get_one::<PathBuf>("config").cloned();
    for s in SETTINGS {
        let at = match s.flag {
            Flag::Global => Some(m),
            Flag::Command { command, .. } | Flag::CommandFlagOnly { command, .. } => m
                .subcommand()
                .filter(|(name, _)| *name == command)
                .map(|(_, sub)| sub),
            Flag::None => None,
        };
        let Some(at) = at else { continue };
        let source = match at.value_source(s.key) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env,
            _ => continue,
        };
        if let Some(v) = at.get_raw(s.key).and_then(|mut v| v.next()) {
            o.set(s.key, v, source);
        }
    }
    o
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

/// The global options `command` uses, for its `--help` (clap ids: the setting keys, and
/// `config`, `quiet` and `verbose` for a command that reads a repository); `None` for a command
/// whose help shows them all.
fn uses(command: &str) -> Option<Vec<&'static str>> {
    let used: Vec<&'static str> = SETTINGS
        .iter()
        .filter(|s| s.used_by.contains(&command))
        .map(|s| s.key)
        .collect();
    if used.is_empty() && !["demo", "completions", "man", "keygen"].contains(&command) {
        return None;
    }
    let mut used = used;
    if used.contains(&"repo") {
        used.extend(["config", "quiet", "verbose"]);
    }
    Some(used)
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

/// Parse `args` as walship's command line; the settings it does not give may still come from
/// the environment variables this command reads.
pub fn parse(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    let mut cli = Cli::try_parse_from(args)?;
    let command = std::mem::take(&mut cli.global.command);
    cli.global
        .overrides
        .add_environment(&command, |var| std::env::var_os(var));
    Ok(cli)
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
    let overrides = &cli.global.overrides;
    let config = || Config::resolve(overrides);
    match cli.command {
        Command::Push {
            path,
            name,
            replace_damaged,
        } => crate::commands::push::run(&config()?, &path, &name, replace_damaged),
        Command::Fetch { name, path, until } => {
            crate::commands::fetch::run(overrides, &name, &path, until.as_deref())
        }
        Command::Demo(args) => crate::commands::demo::run(&args),
        Command::Config { output, json } => {
            crate::commands::config_show::run(overrides, json || output == "json")
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
        Command::Key { action } => match action {
            KeyAction::Add => crate::commands::key::add(&config()?),
            KeyAction::List => crate::commands::key::list(&config()?),
        },
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
            crate::commands::status::run(&config()?, output)
        }
        Command::Verify => crate::commands::verify::run(&config()?),
        Command::Promote(args) => crate::commands::promote::run(&config()?, &args),
        // watch's flags are settings: they are in the overrides
        Command::Watch(_) => crate::commands::watch::run(&config()?),
        Command::Rejoin(args) => crate::commands::rejoin::run(&config()?, &args),
        Command::Switchover(args) => crate::commands::switchover::run(&config()?, &args),
        Command::Check(args) => crate::commands::check::run(&config()?, &args),
        Command::Basebackup(args) => crate::commands::basebackup::run(&config()?, &args),
        Command::Restore(args) => crate::commands::restore::run(&config()?, &args),
        Command::Drill(args) => crate::commands::drill::run(&config()?, &args),
        Command::Prune(args) => crate::commands::prune::run(&config()?, &args),
        Command::Reader(args) => crate::commands::reader::run(&config()?, &args),
        Command::PushAhead { pg_wal } => {
            crate::commands::push_ahead::run_worker(&config()?, &pg_wal)
        }
        Command::Prefetch { pg_wal } => crate::commands::prefetch::run_worker(&config()?, &pg_wal),
    }
}

#[cfg(test)]
mod tests;
