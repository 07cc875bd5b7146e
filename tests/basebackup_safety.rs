//! `walship basebackup` on a real PostgreSQL 15 primary: backups started at once get ids of
//! their own, and a `--to` the backup cannot reach is refused before PostgreSQL is asked for a
//! backup.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::ha::{self, TIMEOUT};
use common::{Workspace, output, verify};

/// walship run as the PostgreSQL user.
fn walship_as_pg(ws: &Workspace, cfg: &Path) -> Command {
    let mut c = ws.tools.command(ws.walship_bin().to_str().unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("WALSHIP_") {
            c.env_remove(k);
        }
    }
    c.arg("--config").arg(cfg).stdin(Stdio::null());
    c
}

#[test]
fn two_base_backups_started_in_the_same_second_get_two_ids_and_both_verify() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = ha::config(&ws, &repo, "");
    let p = ha::primary(&ws, &cfg);
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    for round in 0..2 {
        let children: Vec<_> = (0..2)
            .map(|_| {
                walship_as_pg(&ws, &cfg)
                    .arg("--pgdata")
                    .arg(&p.data)
                    .arg("basebackup")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let mut ids: Vec<String> = std::fs::read_dir(repo.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for id in &ids {
        let m = std::fs::read_to_string(repo.join("backups").join(id).join("manifest.toml"))
            .unwrap_or_else(|e| panic!("backup {id} has no manifest: {e}"));
        assert!(m.contains(&format!("id = \"{id}\"")), "{id}: {m}");
    }
    let (code, out) = verify(&repo);
    assert_eq!(code, 0, "{out}");
    let (code, out) = output(walship_as_pg(&ws, &cfg).arg("status"));
    assert_eq!(code, 0, "{out}");
    for id in &ids {
        assert!(
            out.lines()
                .any(|l| l.starts_with(id.as_str()) && l.trim_end().ends_with("yes")),
            "{id} is not listed as restorable:\n{out}"
        );
    }
}
