//! `walship config`: the configuration as walship resolves it, each value with where it came
//! from (a flag, the environment, the file, or the default), after the same validation every
//! command makes (a bad value exits 2 naming its key). Passwords never get this far (`pg` and
//! the connection strings refuse them), but anything that looks like one is masked anyway.

use std::path::Path;

use serde::Serialize;

use crate::cli::GlobalFlags;
use crate::config::{Config, DEFAULT_CONFIG};
use crate::error::{Error, Result};

#[derive(Serialize)]
struct Setting {
    key: &'static str,
    value: String,
    source: String,
}

pub fn run(flags: &GlobalFlags, json: bool) -> Result<()> {
    let config = Config::resolve(flags)?;
    let file_path = flags
        .config
        .clone()
        .unwrap_or_else(|| DEFAULT_CONFIG.into());
    let in_file = file_keys(&file_path)?;
    let args: Vec<String> = std::env::args().collect();
    let source = |key: &'static str| -> String {
        let flag = format!("--{}", key.replace('_', "-"));
        if args
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        {
            return "flag".into();
        }
        let env = format!("WALSHIP_{}", key.to_ascii_uppercase());
        if std::env::var_os(&env).is_some_and(|v| !v.is_empty()) {
            return format!("environment ({env})");
        }
        if in_file.iter().any(|k| k == key) {
            return format!("file ({})", file_path.display());
        }
        "default".into()
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "(none)".into());
    let path = |v: &Option<std::path::PathBuf>| opt(v.as_ref().map(|p| p.display().to_string()));
    let secs = |d: std::time::Duration| format!("{} s", d.as_secs());
    let list = |v: &[String]| format!("{v:?}");
    let c = &config;
    let values: Vec<(&'static str, String)> = vec![
        ("repo", opt(c.repo.clone())),
        ("compression", c.compression.name().to_string()),
        ("compression_level", c.compression_level.to_string()),
        ("compress_threads", c.compress_threads.to_string()),
        ("ssh_key", path(&c.ssh_key)),
        ("known_hosts", c.known_hosts.display().to_string()),
        (
            "encryption",
            if c.encryption.is_some() {
                "aead"
            } else {
                "none"
            }
            .to_string(),
        ),
        (
            "encryption_key_file",
            match &c.encryption {
                Some(crate::config::KeySource::File(p)) => p.display().to_string(),
                _ => "(none)".into(),
            },
        ),
        (
            "encryption_key_command",
            match &c.encryption {
                Some(crate::config::KeySource::Command(k)) => k.clone(),
                _ => "(none)".into(),
            },
        ),
        ("ssh_timeout", secs(c.ssh_timeout)),
        ("fetch_retries", c.fetch_retries.to_string()),
        ("pgdata", path(&c.pgdata)),
        ("push_ahead", c.push_ahead.to_string()),
        ("prefetch", c.prefetch.to_string()),
        ("worker_idle_timeout", secs(c.worker_idle_timeout)),
        ("keep_backups", opt(c.keep_backups.map(|n| n.to_string()))),
        ("keep_days", opt(c.keep_days.map(|n| n.to_string()))),
        ("pg", opt(c.pg.clone())),
        ("pg_bin", path(&c.pg_bin)),
        ("on_promote", list(&c.on_promote)),
        ("on_failover_refused", list(&c.on_failover_refused)),
        ("hook_timeout", secs(c.hook_timeout)),
        ("smart_timeout", secs(c.smart_timeout)),
        ("trigger_file", path(&c.trigger_file)),
        ("watch_interval", secs(c.watch_interval)),
        ("failover_primary", opt(c.failover_primary.clone())),
        ("failover_after", secs(c.failover_after)),
        ("fence_command", opt(c.fence_command.clone())),
        ("witness_command", opt(c.witness_command.clone())),
        (
            "targets",
            format!("{:?}", c.targets.keys().collect::<Vec<_>>()),
        ),
        (
            "drill_max_age",
            format!("{} days", c.drill_max_age.as_secs() / 86_400),
        ),
        (
            "drill",
            format!(
                "{} checks in {}, scratch {}, timeout {} s",
                c.drill.checks.len(),
                c.drill.database.as_deref().unwrap_or("postgres"),
                c.drill
                    .scratch
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| crate::commands::drill::DEFAULT_SCRATCH.into()),
                c.drill
                    .timeout
                    .unwrap_or(crate::commands::drill::DEFAULT_TIMEOUT)
            ),
        ),
    ];
    let settings: Vec<Setting> = values
        .into_iter()
        .map(|(key, value)| Setting {
            key,
            value: mask(&value),
            source: source(key),
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&settings).expect("plain struct serializes")
        );
    } else {
        let width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
        for s in &settings {
            println!("{:<width$}  {:<40}  {}", s.key, s.value, s.source);
        }
    }
    Ok(())
}

/// The keys the configuration file sets (none when the default file is absent).
fn file_keys(path: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| Error::usage(format!("configuration file {}: {e}", path.display())))?;
            Ok(table.keys().cloned().collect())
        }
        Err(_) => Ok(Vec::new()),
    }
}

/// Replace what follows `password=` (or a URL's `user:secret@`) with `****`.
fn mask(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    if let Some(i) = lower.find("password") {
        return format!("{}****", &value[..i + "password".len()]);
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn anything_that_looks_like_a_password_is_masked() {
        assert_eq!(
            super::mask("host=db password=s3cret"),
            "host=db password****"
        );
        assert_eq!(super::mask("host=db"), "host=db");
    }
}
