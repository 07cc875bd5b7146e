//! An object-storage repository under real PostgreSQL: the primary archives to s3s-fs, a base
//! backup streams into it as a multipart upload, a standby replays the archive from it and is
//! promoted (its promotion record a conditional create in the bucket), a restore of the stored
//! backup opens with every row, and prune keeps what the newest backup needs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::ha::TIMEOUT;
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use common::{Workspace, output, walship_as_pg};
use walship::pg::cluster::{Cluster, free_port, wait_until};

/// The credentials as a shared credentials file (never argv), and a wrapper that points
/// walship at it: what PostgreSQL runs as archive_command and restore_command.
fn credentials(ws: &Workspace) -> (PathBuf, PathBuf) {
    let file = ws.path().join("aws-credentials");
    ws.tools
        .write_file(
            &file,
            &format!("[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
        )
        .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let wrapper = ws.path().join("walship-s3");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport AWS_SHARED_CREDENTIALS_FILE={}\nexport AWS_EC2_METADATA_DISABLED=true\nexec {} \"$@\"\n",
            file.display(),
            ws.walship_bin().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    (file, wrapper)
}

fn as_pg(ws: &Workspace, cfg: &Path, creds: &Path) -> Command {
    let mut c = walship_as_pg(ws, cfg);
    c.env("AWS_SHARED_CREDENTIALS_FILE", creds)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    c
}

#[test]
fn archive_backup_standby_promote_restore_and_prune_on_object_storage() {
    let ws = Workspace::new();
    let s3 = S3Server::start(&ws);
    let (creds, wrapper) = credentials(&ws);
    let cfg = s3.config(&ws, "clusters/main", "walship.toml", "");
    let mut p = common::ha::primary_with(&ws, &cfg, &wrapper);
    p.psql("CREATE TABLE rows (id int PRIMARY KEY, pad text); INSERT INTO rows SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 60000) g")
        .unwrap();
    // a stream well past one 8 MiB part (uncompressed: the whole data directory): a multipart
    // upload
    let (code, out) = output(
        as_pg(&ws, &cfg, &creds)
            .args(["--compression", "none", "--pgdata"])
            .arg(&p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 0, "{out}");
    let keys = s3.keys("clusters/main/backups");
    let data = keys
        .iter()
        .find(|k| k.ends_with("data.tar"))
        .expect("a stored stream");
    assert!(
        common::s3::size(&s3.object(data)) > 8 << 20,
        "{data}: not past one part"
    );
    assert!(
        keys.iter().any(|k| k.ends_with("manifest.toml")),
        "{keys:?}"
    );
    p.psql("INSERT INTO rows SELECT g, 'after' FROM generate_series(60001, 70000) g")
        .unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();

    // a standby replaying from the bucket only, then promoted
    let dir = ws.path().join("standby");
    p.base_backup(&dir).unwrap();
    let mut s = Cluster::existing(&ws.tools, &dir, free_port().unwrap()).unwrap();
    s.append_conf(&format!(
        "port = {}\nunix_socket_directories = '{}'\nhot_standby = on\nwal_retrieve_retry_interval = '200ms'\n\
         restore_command = '{} --config {} fetch %f %p'\n",
        s.port,
        s.socket_dir.display(),
        wrapper.display(),
        cfg.display()
    ))
    .unwrap();
    ws.tools
        .write_file(&dir.join("standby.signal"), "")
        .unwrap();
    s.start().unwrap();
    wait_until(TIMEOUT, "the standby to replay the archived rows", || {
        Ok(s.psql("SELECT count(*) FROM rows").ok().as_deref() == Some("70000"))
    })
    .unwrap();
    p.stop().unwrap();
    let (code, out) = output(
        as_pg(&ws, &cfg, &creds)
            .arg("--pgdata")
            .arg(&dir)
            .arg("promote"),
    );
    assert_eq!(code, 0, "{out}");
    wait_until(TIMEOUT, "the standby to open read-write", || {
        Ok(s.psql("SELECT pg_is_in_recovery()").ok().as_deref() == Some("f"))
    })
    .unwrap();
    let promotions = s3.keys("clusters/main/promotions");
    assert!(
        promotions.iter().any(|k| k.ends_with("off-00000001.toml")),
        "{promotions:?}"
    );

    // the stored backup, restored to the end of the archive
    let mut r =
        common::ha::restore_and_open(&ws, as_pg(&ws, &cfg, &creds), &ws.path().join("restored"));
    assert!(
        r.psql("SELECT count(*) FROM rows")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 70000
    );
    r.stop().unwrap();

    let (code, out) = output(as_pg(&ws, &cfg, &creds).arg("verify"));
    assert_eq!(code, 0, "{out}");
    let (code, out) = output(as_pg(&ws, &cfg, &creds).args(["prune", "--keep-backups", "1"]));
    assert_eq!(code, 0, "{out}");
    let (code, out) = output(as_pg(&ws, &cfg, &creds).arg("status"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("s3://walship/clusters/main"), "{out}");
}
