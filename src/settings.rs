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

mod table;

pub use table::SETTINGS;

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
