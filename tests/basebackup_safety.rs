//! `walship basebackup` on a real PostgreSQL 15 primary: backups started at once get ids of
//! their own, and a `--to` the backup cannot reach is refused before PostgreSQL is asked for a
//! backup.

mod common;

use std::process::Stdio;

use common::ha::{self, TIMEOUT};
use common::{Workspace, output, verify};

use common::walship_as_pg;

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

fn requested_checkpoints(p: &walship::pg::cluster::Cluster) -> u64 {
    // PostgreSQL 17 moved the checkpoint counters to pg_stat_checkpointer
    let sql = if p
        .psql("SHOW server_version_num")
        .unwrap()
        .parse::<u32>()
        .unwrap()
        >= 170000
    {
        "SELECT num_requested FROM pg_stat_checkpointer"
    } else {
        "SELECT checkpoints_req FROM pg_stat_bgwriter"
    };
    p.psql(sql).unwrap().parse().unwrap()
}

#[test]
fn basebackup_to_a_local_path_keeps_its_config_and_a_refused_target_costs_no_checkpoint() {
    let ws = Workspace::new();
    let sshd = common::Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    let cfg = ha::config(
        &ws,
        &repo,
        &format!(
            "ssh_key = '{key}'\nknown_hosts = '{kh}'\nssh_timeout = 10\n\n\
             [targets.nowalship]\nhost = '127.0.0.1'\nport = {port}\nuser = '{user}'\n\
             pgdata = '{w}/remote'\nwalship = '/nonexistent/walship'\n",
            key = sshd.client_key.display(),
            kh = sshd.known_hosts.display(),
            port = sshd.port,
            user = sshd.user,
            w = ws.path().display(),
        ),
    );
    let p = ha::primary(&ws, &cfg);
    // a directory the PostgreSQL user cannot create anything in, and one that is not empty
    let locked = ws.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let busy = ws.mkdir("busy");
    ws.tools.write_file(&busy.join("keep"), "x").unwrap();
    let before = requested_checkpoints(&p);
    let basebackup_to = |to: &str| {
        output(walship_as_pg(&ws, &cfg).arg("--pgdata").arg(&p.data).args([
            "basebackup",
            "--to",
            to,
        ]))
    };
    for (to, exit, says) in [
        (
            format!("{}/standby", locked.display()),
            3,
            "Permission denied",
        ),
        (busy.display().to_string(), 4, "is not empty"),
        ("nowalship".to_string(), 3, "/nonexistent/walship"),
    ] {
        let (code, out) = basebackup_to(&to);
        assert_eq!(code, exit, "--to {to}: {out}");
        assert!(out.contains(says), "--to {to}: {out}");
        assert!(!out.contains("started at"), "--to {to}: {out}");
        assert_eq!(
            requested_checkpoints(&p),
            before,
            "--to {to}: the primary checkpointed for a refused target: {out}"
        );
    }
    assert!(busy.join("keep").exists());

    // --to a local path: the restore there uses this command's repository (--config)
    let standby = ws.path().join("standby");
    let (code, out) = basebackup_to(standby.to_str().unwrap());
    assert_eq!(code, 0, "{out}");
    assert!(
        requested_checkpoints(&p) > before,
        "no checkpoint seen: {out}"
    );
    assert!(standby.join("standby.signal").exists());
    let auto = std::fs::read_to_string(standby.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains(&format!("--repo {}", repo.display())),
        "{auto}"
    );
}

#[test]
fn a_data_object_already_in_the_backup_directory_stops_the_backup_before_its_manifest() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = ha::config(&ws, &repo, "");
    let p = ha::primary(&ws, &cfg);
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    // directories left without a claim (by a walship before claims) for the next two minutes,
    // each already holding a data object
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for s in 0..120 {
        let dir = repo.join("backups").join(walship::backup::id_for(now + s));
        ws.tools.make_dir(&dir).unwrap();
        ws.tools
            .write_file(&dir.join("data.tar.zst"), "another backup's stream")
            .unwrap();
    }
    ws.tools.chown(&repo.join("backups")).unwrap();
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("already exists"), "{out}");
    for e in std::fs::read_dir(repo.join("backups")).unwrap().flatten() {
        assert!(
            !e.path().join("manifest.toml").exists(),
            "a manifest was written over another backup's stream: {}",
            e.path().display()
        );
        assert_eq!(
            std::fs::read_to_string(e.path().join("data.tar.zst")).unwrap(),
            "another backup's stream"
        );
    }
}
