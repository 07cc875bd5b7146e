//! `walship config`: the configuration as walship resolves it, each value with where it came
//! from (a flag, the environment, the file, or the default), after the same validation every
//! command makes (a bad value exits 2 naming its key). Passwords never get this far (`pg` and
//! the connection strings refuse them), but anything that looks like one is masked anyway.

use serde::Serialize;

use crate::config::{Config, Overrides, Source, file_path, load_file};
use crate::error::Result;
use crate::settings::{Kind, SETTINGS};

#[derive(Serialize)]
struct Setting {
    key: &'static str,
    value: String,
    source: String,
}

pub fn run(overrides: &Overrides, json: bool) -> Result<()> {
    let config = Config::resolve(overrides)?;
    let path = file_path(overrides);
    let in_file = load_file(overrides.config.as_deref())?;
    let settings: Vec<Setting> = SETTINGS
        .iter()
        .map(|s| {
            let value = match config.value(s.key) {
                None => "(none)".to_string(),
                Some(v) => {
                    let v = v.to_string_lossy();
                    match s.kind {
                        Kind::Seconds => format!("{v} s"),
                        Kind::Days => format!("{v} days"),
                        _ => v.into_owned(),
                    }
                }
            };
            let source = match overrides.get(s.key) {
                Some((_, Source::Flag)) => "flag".to_string(),
                Some((_, Source::Env)) => {
                    format!("environment ({})", s.env.unwrap_or_default())
                }
                None if in_file.contains_key(s.key) => format!("file ({})", path.display()),
                None => "default".to_string(),
            };
            Setting {
                key: s.key,
                value: mask(&value),
                source,
            }
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
