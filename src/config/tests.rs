//! The configuration from plain overrides: no clap and no environment, so these tests cannot
//! see the `WALSHIP_*` settings of the machine that runs them.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::error::Kind as ErrorKind;
use crate::settings::{Kind, SETTINGS};

/// Overrides with these flags, and `file` (or /dev/null) as the configuration file.
fn flags(pairs: &[(&str, &str)], file: Option<&Path>) -> Overrides {
    let mut o = Overrides::default();
    o.config = Some(file.unwrap_or(Path::new("/dev/null")).to_path_buf());
    for (k, v) in pairs {
        o.set(k, *v, Source::Flag);
    }
    o
}

fn resolve(pairs: &[(&str, &str)], file: Option<&Path>) -> Result<Config> {
    Config::resolve(&flags(pairs, file))
}

/// A configuration file holding `text`, in a directory that lives as long as the result.
fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn flags_beat_the_environment_which_beats_the_file_which_beats_defaults() {
    let (_d, f) = file("repo = \"/from/file\"\ncompression = \"bzip2\"\nfetch_retries = 5\n");
    let c = resolve(&[], Some(&f)).unwrap();
    assert_eq!(c.repo.as_deref(), Some("/from/file"));
    assert_eq!(
        (c.compression, c.compression_level, c.fetch_retries),
        (Compression::Bzip2, 9, 5)
    );
    let mut o = flags(&[("compression", "zstd")], Some(&f));
    o.add_environment("push", |var| match var {
        "WALSHIP_REPO" => Some("/from/env".into()),
        "WALSHIP_COMPRESSION" => Some("none".into()),
        "WALSHIP_PREFETCH" => Some("".into()), // empty: unset
        _ => None,
    });
    let c = Config::resolve(&o).unwrap();
    assert_eq!(c.repo.as_deref(), Some("/from/env"));
    assert_eq!((c.compression, c.compression_level), (Compression::Zstd, 1));
    assert_eq!(c.prefetch, 8);
    assert_eq!(o.get("repo").map(|(_, s)| s), Some(Source::Env));
    assert_eq!(o.get("compression").map(|(_, s)| s), Some(Source::Flag));
}

#[test]
fn a_commands_own_variables_are_read_by_that_command_only() {
    let env = |var: &str| match var {
        "WALSHIP_WATCH_INTERVAL" => Some(OsString::from("5")),
        "WALSHIP_PG_BIN" => Some(OsString::from("/pg/bin")),
        _ => None,
    };
    let mut push = flags(&[("repo", "/r")], None);
    push.add_environment("push", env);
    let c = Config::resolve(&push).unwrap();
    assert_eq!(
        c.watch_interval,
        Duration::from_secs(1),
        "push reads no watch variable"
    );
    assert_eq!(
        c.pg_bin.as_deref(),
        Some(Path::new("/pg/bin")),
        "everyone reads pg_bin's"
    );
    let mut watch = flags(&[("repo", "/r")], None);
    watch.add_environment("watch", env);
    let c = Config::resolve(&watch).unwrap();
    assert_eq!(c.watch_interval, Duration::from_secs(5));
}

#[test]
fn every_duration_of_zero_is_an_error_that_names_its_key_wherever_it_was_set() {
    let durations: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.kind == Kind::Seconds)
        .map(|s| s.key)
        .collect();
    assert!(durations.contains(&"watch_interval") && durations.contains(&"ssh_timeout"));
    for key in durations {
        let (_d, f) = file(&format!("repo = \"/r\"\n{key} = 0\n"));
        let e = resolve(&[], Some(&f)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage, "{key}: {e}");
        assert!(
            e.message.contains(key) && e.message.contains("w.toml"),
            "{e}"
        );
        let e = resolve(&[("repo", "/r"), (key, "0")], None).unwrap_err();
        assert!(e.message.contains(key), "{e}");
        let c = resolve(&[("repo", "/r"), (key, "7")], None).unwrap();
        assert_eq!(c.value(key), Some("7".into()), "{key}");
    }
    // days count back from now: 0 is today, and allowed
    let c = resolve(&[("drill_max_age", "0")], None).unwrap();
    assert_eq!(c.drill_max_age, Duration::ZERO);
}

#[test]
fn every_setting_has_a_value_and_the_tables_numeric_defaults_are_the_resolved_ones() {
    let c = resolve(&[], None).unwrap();
    for s in SETTINGS {
        let value = c.value(s.key); // panics for a setting Config::value forgot
        if s.default.parse::<u64>().is_ok() {
            assert_eq!(value, Some(s.default.into()), "{}", s.key);
        }
    }
}

#[test]
fn drill_settings_are_read_and_a_typo_in_them_is_refused() {
    let (_d, f) = file(
        "repo = \"/r\"\ndrill_max_age = 3\n[drill]\nchecks = [\"select true\"]\ndatabase = \"shop\"\n",
    );
    let c = resolve(&[], Some(&f)).unwrap();
    assert_eq!(c.drill.checks, vec!["select true".to_string()]);
    assert_eq!(c.drill.database.as_deref(), Some("shop"));
    assert_eq!(c.drill_max_age, Duration::from_secs(3 * 86_400));
    let c = resolve(&[("drill_max_age", "1")], Some(&f)).unwrap();
    assert_eq!(c.drill_max_age, Duration::from_secs(86_400));
    let c = resolve(&[("repo", "/r")], None).unwrap();
    assert_eq!(c.drill_max_age, Duration::from_secs(7 * 86_400));
    assert!(c.drill.checks.is_empty() && c.drill.scratch.is_none());
    let (_d, f) = file("repo = \"/r\"\n[drill]\ncheck = [\"select true\"]\n");
    let e = resolve(&[], Some(&f)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Usage);
    assert!(e.message.contains("check"), "{e}");
}

#[test]
fn restore_command_doubles_the_percent_signs_of_paths_not_of_its_placeholders() {
    let c = resolve(&[("repo", "/srv/100%p 'x'")], None).unwrap();
    let rc = c.restore_command().unwrap();
    assert!(rc.contains(r#" '/srv/100%%p '\''x'\''' "#), "{rc}");
    assert!(rc.ends_with(" fetch %f %p"), "{rc}");
    assert_eq!(rc.replace("%%", "").matches('%').count(), 2, "{rc}");
}

#[test]
fn restore_command_refuses_a_path_that_is_not_utf8_rather_than_change_it() {
    use std::os::unix::ffi::OsStrExt;
    let mut o = flags(&[("repo", "/r")], None);
    o.set(
        "ssh_key",
        std::ffi::OsStr::from_bytes(b"/keys/\xff"),
        Source::Flag,
    );
    let c = Config::resolve(&o).unwrap();
    let e = c.restore_command().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Usage, "{e}");
    assert!(e.message.contains("not UTF-8"), "{e}");
}

#[test]
fn worker_args_reproduce_the_configuration_and_carry_only_worker_settings() {
    let c = resolve(
        &[
            ("repo", "/r"),
            ("compression", "bzip2"),
            ("push_ahead", "3"),
            ("ssh_key", "/k"),
            ("pg", "host=/tmp"),
        ],
        None,
    )
    .unwrap();
    let args = c.worker_args("push-ahead", Path::new("/pg/pg_wal"));
    let (settings, tail) = args.split_at(args.len() - 3);
    assert_eq!(tail, ["push-ahead", "--pg-wal", "/pg/pg_wal"]);
    let mut o = Overrides::default();
    for pair in settings.chunks(2) {
        let flag = pair[0].to_str().unwrap().strip_prefix("--").unwrap();
        match flag {
            "config" => o.config = Some(PathBuf::from(&pair[1])),
            _ => {
                let s = crate::settings::get(&flag.replace('-', "_"));
                assert!(s.worker, "{flag} is not a worker setting");
                o.set(s.key, pair[1].clone(), Source::Flag);
            }
        }
    }
    let w = Config::resolve(&o).unwrap();
    assert_eq!(w.pg, None);
    assert_eq!(
        format!(
            "{:?}",
            Config {
                pg: c.pg.clone(),
                ..w
            }
        ),
        format!("{c:?}")
    );
}

#[test]
fn bad_files_and_values_are_usage_errors() {
    let (_d, f) = file("repository = \"/typo\"\n");
    let e = resolve(&[], Some(&f)).unwrap_err();
    assert!(e.message.contains("unknown field"), "{e}");
    let missing = Path::new("/nonexistent/nope.toml");
    let e = resolve(&[], Some(missing)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Usage);
    assert!(e.message.contains("nope.toml"));
    for text in [
        "compression_level = 40\n",
        "prefetch = \"many\"\n",
        "prefetch = -1\n",
        "ssh_key = 3\n",
        "on_promote = \"not a list\"\n",
        "targets = 1\n",
    ] {
        let (_d, f) = file(text);
        let e = resolve(&[], Some(&f)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage, "{text}");
        let key = text.split(' ').next().unwrap();
        assert!(e.message.contains(key) || key == "compression_level", "{e}");
    }
}
