//! Where `walship restore` may write, on a real PostgreSQL 15 primary with a tablespace: a
//! restore on the primary's own host never empties or writes into the live cluster's
//! directories, `--force` or not.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::ha::{self, TIMEOUT};
use common::{Workspace, names_below, output};

/// walship run as the PostgreSQL user (restore refuses root, as PostgreSQL does).
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
fn restore_force_on_the_primarys_host_never_touches_its_live_tablespace() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let ts = ws.mkdir("ts");
    let cfg = ha::config(&ws, &repo, "");
    let p = ha::primary(&ws, &cfg);
    p.psql(&format!("CREATE TABLESPACE ts LOCATION '{}'", ts.display()))
        .unwrap();
    p.psql(
        "CREATE TABLE in_ts (id int) TABLESPACE ts; \
         INSERT INTO in_ts SELECT generate_series(1, 10000)",
    )
    .unwrap();
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 0, "{out}");
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    p.psql("CHECKPOINT").unwrap();
    let before = names_below(&ts);
    assert!(
        std::fs::read_dir(&ts)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("PG_15_")),
        "no PG_15_ directory in the tablespace"
    );
    assert!(!before.is_empty());

    // The point-in-time restore next to the primary: the tablespace defaults to its old place.
    let new = ws.path().join("new");
    ws.tools.make_dir(&new).unwrap();
    ws.tools.write_file(&new.join("old_file"), "x").unwrap();
    for force in [true, false] {
        let mut c = walship_as_pg(&ws, &cfg);
        c.arg("--pgdata").arg(&new).arg("restore");
        if force {
            c.arg("--force");
        }
        let (code, out) = output(&mut c);
        assert_eq!(code, 4, "force={force}: {out}");
        assert!(out.contains(&ts.display().to_string()), "{out}");
        assert!(out.contains("--tablespace-map"), "{out}");
        assert!(!out.contains("removing"), "{out}");
        assert_eq!(
            names_below(&ts),
            before,
            "force={force}: the live tablespace changed"
        );
        assert!(
            new.join("old_file").exists(),
            "the refused restore emptied its data directory"
        );
    }
    assert_eq!(p.psql("SELECT count(*) FROM in_ts").unwrap(), "10000");

    // With the tablespace somewhere new, --force goes ahead.
    let moved = ws.path().join("ts_new");
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&new)
            .args(["restore", "--force", "--tablespace-map"])
            .arg(format!("{}={}", ts.display(), moved.display())),
    );
    assert_eq!(code, 0, "{out}");
    assert!(!new.join("old_file").exists());
    let link = std::fs::read_dir(new.join("pg_tblspc"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(std::fs::read_link(link).unwrap(), moved);
    assert_eq!(names_below(&ts), before);
    assert_eq!(p.psql("SELECT count(*) FROM in_ts").unwrap(), "10000");
}
