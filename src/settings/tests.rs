//! The table's own consistency; the CLI and the guide are checked against it elsewhere
//! (src/cli/tests.rs, tests/docs.rs).

use super::*;

#[test]
fn keys_are_unique_and_flags_belong_to_commands_that_use_them() {
    for (i, s) in SETTINGS.iter().enumerate() {
        assert!(
            SETTINGS[..i].iter().all(|o| o.key != s.key),
            "{} twice",
            s.key
        );
        if let Flag::Command { command, .. } | Flag::CommandFlagOnly { command, .. } = s.flag {
            assert!(s.used_by.contains(&command), "{}", s.key);
        }
        if s.flag == Flag::None {
            assert!(s.used_by.is_empty() && s.value_name.is_empty(), "{}", s.key);
        } else {
            assert!(!s.value_name.is_empty(), "{}", s.key);
        }
        assert!(!s.help.is_empty() && !s.help.ends_with('.'), "{}", s.key);
    }
}

#[test]
fn the_pg_help_line_names_the_commands_that_use_pg() {
    let pg = get("pg");
    let named: Vec<&str> = pg
        .used_by
        .iter()
        .copied()
        .filter(|c| *c != "config")
        .collect();
    let listed = pg
        .help
        .split_once('(')
        .unwrap()
        .1
        .split_once(')')
        .unwrap()
        .0;
    let listed: Vec<&str> = listed.split(", ").collect();
    assert_eq!(listed, named);
}

#[test]
fn the_help_table_fits_in_100_columns_and_names_every_key() {
    let t = help_table();
    for l in t.lines() {
        assert!(l.chars().count() <= 100, "{l}");
    }
    for s in SETTINGS {
        assert!(t.contains(&format!("\n  {} ", s.shown_key())), "{}", s.key);
    }
}
