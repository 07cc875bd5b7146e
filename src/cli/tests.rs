//! The command line against the settings table: every flag that sets a setting is made from its
//! entry, so a drift between them is a failing test rather than a convention.

use clap::CommandFactory;

use super::*;
use crate::settings::{Flag, SETTINGS};

/// The overrides of `args`, with clap reading no environment variable.
fn overrides(args: &[&str]) -> Result<Overrides, clap::Error> {
    use clap::FromArgMatches;
    let cmd = Cli::command().mut_args(|a| a.env(None));
    let matches = cmd.try_get_matches_from(args)?;
    Ok(Cli::from_arg_matches(&matches)?.global.overrides)
}

fn arg<'a>(cmd: &'a clap::Command, id: &str) -> Option<&'a clap::Arg> {
    cmd.get_arguments().find(|a| a.get_id() == id)
}

#[test]
fn every_flag_of_a_setting_is_the_one_its_entry_declares() {
    let cli = Cli::command();
    for s in SETTINGS {
        let (at, long, env) = match s.flag {
            Flag::Global => (&cli, s.key.replace('_', "-"), s.env),
            Flag::Command { command, long } => (
                cli.find_subcommand(command).unwrap(),
                long.to_string(),
                s.env,
            ),
            Flag::CommandFlagOnly { command, long } => (
                cli.find_subcommand(command).unwrap(),
                long.to_string(),
                None,
            ),
            Flag::None => {
                assert!(arg(&cli, s.key).is_none(), "{} is file only", s.key);
                continue;
            }
        };
        let a = arg(at, s.key).unwrap_or_else(|| panic!("no flag for {}", s.key));
        assert_eq!(a.get_long(), Some(long.as_str()), "{}", s.key);
        assert_eq!(a.get_env().and_then(|e| e.to_str()), env, "{}", s.key);
        assert_eq!(
            a.get_help().map(|h| h.to_string()),
            Some(s.help.to_string()),
            "{}",
            s.key
        );
        assert_eq!(
            a.get_value_names().map(|v| v[0].to_string()),
            Some(s.value_name.to_string()),
            "{}",
            s.key
        );
    }
}

#[test]
fn no_flag_reads_a_walship_variable_the_table_does_not_declare() {
    // besides the configuration file itself, and the demo's own PostgreSQL (no configuration)
    let mut known: Vec<&str> = SETTINGS.iter().filter_map(|s| s.env).collect();
    known.extend(["WALSHIP_CONFIG", "WALSHIP_PG_BIN"]);
    let mut cli = Cli::command();
    cli.build();
    fn walk(cmd: &clap::Command, known: &[&str]) {
        for a in cmd.get_arguments() {
            if let Some(e) = a.get_env().and_then(|e| e.to_str()) {
                assert!(known.contains(&e), "{} reads {e}", a.get_id());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, known);
        }
    }
    walk(&cli, &known);
}

#[test]
fn global_flags_before_or_after_the_command_and_a_commands_flags_are_overrides() {
    let o = overrides(&["walship", "--repo", "/r", "status", "--pgdata", "/d"]).unwrap();
    assert_eq!(
        o.path("pgdata").as_deref(),
        Some(std::path::Path::new("/d"))
    );
    assert_eq!(
        o.get("repo").map(|(v, s)| (v.to_owned(), s)),
        Some(("/r".into(), Source::Flag))
    );
    let o = overrides(&["walship", "watch", "--interval", "4", "--primary", "host=p"]).unwrap();
    assert_eq!(
        o.get("watch_interval").map(|(v, _)| v.to_owned()),
        Some("4".into())
    );
    assert!(o.get("failover_primary").is_some());
    // the earlier names still work
    let o = overrides(&["walship", "watch", "--watch-interval", "4"]).unwrap();
    assert!(o.get("watch_interval").is_some());
    let o = overrides(&["walship", "prune", "--keep-days", "3"]).unwrap();
    assert!(o.get("keep_days").is_some());
    let o = overrides(&["walship", "restore", "--pg-bin", "/b", "--pgdata", "/x"]).unwrap();
    assert_eq!(
        o.path("pg_bin").as_deref(),
        Some(std::path::Path::new("/b"))
    );
}

#[test]
fn a_zero_interval_for_watch_is_refused_like_a_zero_ssh_timeout() {
    let o = overrides(&[
        "walship",
        "--config",
        "/dev/null",
        "--repo",
        "/r",
        "watch",
        "--interval",
        "0",
    ])
    .unwrap();
    let e = Config::resolve(&o).unwrap_err();
    assert!(e.message.contains("watch_interval"), "{e}");
    let o = overrides(&[
        "walship",
        "--config",
        "/dev/null",
        "--repo",
        "/r",
        "--ssh-timeout",
        "0",
        "status",
    ])
    .unwrap();
    let e = Config::resolve(&o).unwrap_err();
    assert!(e.message.contains("ssh_timeout"), "{e}");
}

#[test]
fn a_commands_help_shows_the_global_options_the_table_says_it_uses() {
    let shown = |sub: &str| -> Vec<String> {
        let mut cmd = command_for_help(sub);
        let sub = cmd.find_subcommand_mut(sub).unwrap();
        sub.get_arguments()
            .filter(|a| a.is_global_set() && !a.is_hide_set())
            .map(|a| a.get_id().to_string())
            .collect()
    };
    assert!(shown("push").contains(&"push_ahead".to_string()));
    assert!(!shown("fetch").contains(&"push_ahead".to_string()));
    assert!(shown("check").contains(&"drill_max_age".to_string()));
    assert!(shown("demo").is_empty());
    assert!(shown("drill").len() > 10, "drill shows them all");
}
