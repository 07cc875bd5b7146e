//! Where a setting's value comes from, and how it is read: the command line and the environment
//! ([`Overrides`], filled by the CLI, so nothing here knows clap), then the file, then the
//! default in [`crate::settings::SETTINGS`]. Each value is parsed and checked by its setting's
//! [`Kind`], so one kind has one rule whatever the key and wherever the value came from.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::settings::{self, Kind};

/// Where a value given outside the file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
}

/// What the command line and the environment set, by setting key, as given (the CLI has checked
/// the syntax of what it parsed; the kind's rules are checked here, like the file's).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The configuration file (`--config`, `WALSHIP_CONFIG`); none: /etc/walship.toml if present.
    pub config: Option<PathBuf>,
    values: BTreeMap<&'static str, (OsString, Source)>,
}

impl Overrides {
    /// Set `key` (a key of [`settings::SETTINGS`]; another is a bug and panics).
    pub fn set(&mut self, key: &str, value: impl Into<OsString>, source: Source) {
        self.values
            .insert(settings::get(key).key, (value.into(), source));
    }

    pub fn get(&self, key: &str) -> Option<(&OsStr, Source)> {
        self.values.get(key).map(|(v, s)| (v.as_os_str(), *s))
    }

    /// A path-valued setting as given, before any file is read (what fetch falls back on when the
    /// file is broken).
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key).map(|(v, _)| PathBuf::from(v))
    }

    /// Add the environment variables `command` reads that are not set yet (`var` looks one up;
    /// empty counts as unset).
    pub fn add_environment(&mut self, command: &str, var: impl Fn(&str) -> Option<OsString>) {
        for s in settings::SETTINGS {
            let Some(env) = s.env.filter(|_| s.env_read_by(command)) else {
                continue;
            };
            if self.values.contains_key(s.key) {
                continue;
            }
            if let Some(v) = var(env).filter(|v| !v.is_empty()) {
                self.values.insert(s.key, (v, Source::Env));
            }
        }
    }
}

/// Every value, resolved one setting at a time.
pub(super) struct Values<'a> {
    overrides: &'a Overrides,
    file: toml::Table,
    file_path: PathBuf,
}

enum Raw<'a> {
    Given(&'a OsStr, Source),
    File(&'a toml::Value),
}

impl<'a> Values<'a> {
    /// `file` is the file's table, already checked to hold only known keys.
    pub fn new(overrides: &'a Overrides, file: toml::Table, file_path: &Path) -> Values<'a> {
        Values {
            overrides,
            file,
            file_path: file_path.to_path_buf(),
        }
    }

    fn raw(&self, key: &str, kind: Kind) -> Option<Raw<'_>> {
        let s = settings::get(key);
        assert_eq!(s.kind, kind, "{key} is read as the wrong kind");
        match self.overrides.get(key) {
            Some((v, source)) => Some(Raw::Given(v, source)),
            None => self.file.get(key).map(Raw::File),
        }
    }

    /// Where a value came from, for its error message.
    fn origin(&self, key: &str, raw: &Raw) -> String {
        let s = settings::get(key);
        match raw {
            Raw::Given(_, Source::Flag) => s.flag_text().unwrap_or_default(),
            Raw::Given(_, Source::Env) => s.env.unwrap_or_default().to_string(),
            Raw::File(_) => format!("configuration file {}", self.file_path.display()),
        }
    }

    fn bad(&self, key: &str, raw: &Raw, expected: &str) -> Error {
        let shown = match raw {
            Raw::Given(v, _) => format!("{:?}", v.to_string_lossy()),
            Raw::File(v) => v.to_string(),
        };
        Error::usage(format!(
            "{}: {key}: expected {expected}, not {shown}",
            self.origin(key, raw)
        ))
        .with_hint("`walship --help` lists every key and what it takes.")
    }

    fn string(&self, key: &str, kind: Kind) -> Result<Option<String>> {
        let Some(raw) = self.raw(key, kind) else {
            return Ok(None);
        };
        match &raw {
            Raw::Given(v, _) => v
                .to_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.bad(key, &raw, "UTF-8 text")),
            Raw::File(toml::Value::String(s)) => Ok(Some(s.clone())),
            Raw::File(_) => Err(self.bad(key, &raw, "a string")),
        }
    }

    /// A [`Kind::Text`], [`Kind::Location`] or [`Kind::Compression`] value, as text (the caller
    /// parses the last two with the type that owns their rules).
    pub fn text(&self, key: &str) -> Result<Option<String>> {
        self.string(key, settings::get(key).kind)
    }

    pub fn path(&self, key: &str) -> Result<Option<PathBuf>> {
        if let Some(Raw::Given(v, _)) = self.raw(key, Kind::Path) {
            return Ok(Some(PathBuf::from(v)));
        }
        Ok(self.string(key, Kind::Path)?.map(PathBuf::from))
    }

    fn integer(&self, key: &str, kind: Kind, expected: &str) -> Result<Option<(i64, Raw<'_>)>> {
        let Some(raw) = self.raw(key, kind) else {
            return Ok(None);
        };
        let n = match &raw {
            Raw::Given(v, _) => v.to_str().and_then(|s| s.trim().parse::<i64>().ok()),
            Raw::File(toml::Value::Integer(n)) => Some(*n),
            Raw::File(_) => None,
        };
        match n {
            Some(n) => Ok(Some((n, raw))),
            None => Err(self.bad(key, &raw, expected)),
        }
    }

    fn whole(&self, key: &str, kind: Kind, min: u32) -> Result<Option<u32>> {
        let expected = match min {
            0 => "a whole number".to_string(),
            m => format!("a whole number of at least {m}"),
        };
        match self.integer(key, kind, &expected)? {
            None => Ok(None),
            Some((n, raw)) => match u32::try_from(n) {
                Ok(n) if n >= min => Ok(Some(n)),
                _ if n == 0 && kind == Kind::Seconds => Err(Error::usage(format!(
                    "{key} must be at least 1 second, not 0 ({})",
                    self.origin(key, &raw)
                ))
                .with_hint("A timeout or an interval of 0 would give up at once or never pause.")),
                _ => Err(self.bad(key, &raw, &expected)),
            },
        }
    }

    /// A [`Kind::Count`]: a whole number, 0 included.
    pub fn count(&self, key: &str) -> Result<Option<u32>> {
        self.whole(key, Kind::Count, 0)
    }

    /// A [`Kind::Days`]: a whole number of days, 0 included.
    pub fn days(&self, key: &str) -> Result<Option<u32>> {
        self.whole(key, Kind::Days, 0)
    }

    /// A [`Kind::Seconds`]: at least 1; the table's default when unset.
    pub fn seconds(&self, key: &str) -> Result<Duration> {
        let secs = match self.whole(key, Kind::Seconds, 1)? {
            Some(n) => n,
            None => default(key),
        };
        Ok(Duration::from_secs(secs.into()))
    }

    /// A [`Kind::Level`]: any integer (the compression checks its range).
    pub fn level(&self, key: &str) -> Result<Option<i32>> {
        match self.integer(key, Kind::Level, "an integer")? {
            None => Ok(None),
            Some((n, raw)) => i32::try_from(n)
                .map(Some)
                .map_err(|_| self.bad(key, &raw, "a compression level")),
        }
    }

    /// A [`Kind::Commands`]: a list of strings (file only).
    pub fn commands(&self, key: &str) -> Result<Vec<String>> {
        let Some(raw) = self.raw(key, Kind::Commands) else {
            return Ok(Vec::new());
        };
        let list = match &raw {
            Raw::File(toml::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        list.ok_or_else(|| self.bad(key, &raw, "a list of strings"))
    }

    /// A [`Kind::Table`], as its own type (file only).
    pub fn table<T: serde::de::DeserializeOwned + Default>(&self, key: &str) -> Result<T> {
        let Some(raw) = self.raw(key, Kind::Table) else {
            return Ok(T::default());
        };
        let Raw::File(v) = &raw else {
            return Err(self.bad(key, &raw, "a table in the configuration file"));
        };
        toml::Value::try_into((*v).clone()).map_err(|e: toml::de::Error| {
            Error::usage(format!(
                "{}: {key}: {}",
                self.origin(key, &raw),
                e.to_string().trim_end()
            ))
            .with_hint("`walship --help` lists every key.")
        })
    }
}

/// A setting's default from the table, for the kinds whose default is a number.
pub(super) fn default<T: std::str::FromStr>(key: &str) -> T {
    let text = settings::get(key).default;
    text.parse()
        .unwrap_or_else(|_| panic!("the default of {key}, {text:?}, is not a number"))
}

/// The file's table, with every key checked against the settings (a typo must not silently fall
/// back to a default).
pub(super) fn check_keys(table: &toml::Table, path: &Path) -> Result<()> {
    for key in table.keys() {
        if !settings::SETTINGS.iter().any(|s| s.key == key) {
            return Err(Error::usage(format!(
                "configuration file {}: unknown field `{key}`",
                path.display()
            ))
            .with_hint("`walship --help` lists every key."));
        }
    }
    Ok(())
}
