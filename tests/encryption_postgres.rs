//! An encrypted repository under real PostgreSQL: the primary archives through encryption, a
//! base backup is stored sealed, a standby replays the archive through encryption, and a
//! restore of the sealed backup opens with every row.

mod common;

use std::fs;

use common::ha::{self, TIMEOUT};
use common::{Workspace, output, walship, walship_as_pg};
use walship::pg::cluster::wait_until;

#[test]
fn a_standby_and_a_restore_fetch_through_an_encrypted_repository() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let keys = ws.mkdir("keys");
    let key = keys.join("repo.key");
    let (code, out) = output(walship().arg("keygen").arg("--output").arg(&key));
    assert_eq!(code, 0, "{out}");
    ws.tools.chown(&key).unwrap();
    let cfg = ha::config(
        &ws,
        &repo,
        &format!(
            "encryption = 'aead'\nencryption_key_file = '{}'\n",
            key.display()
        ),
    );
    let p = ha::primary(&ws, &cfg);
    p.psql("CREATE TABLE rows (id int PRIMARY KEY, pad text); INSERT INTO rows SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
        .unwrap();
    ha::basebackup(&ws, &cfg, &p);
    p.psql("INSERT INTO rows SELECT g, 'after the backup' FROM generate_series(20001, 30000) g")
        .unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();

    // sealed on disk: neither the manifest nor the stream is readable
    let backup = fs::read_dir(repo.join("backups"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let manifest = fs::read(backup.join("manifest.toml")).unwrap();
    assert_eq!(&manifest[..8], b"WALSHIPS", "the manifest is sealed");
    assert!(!String::from_utf8_lossy(&manifest).contains("pg_control"));

    // a standby that only replays the archive, through encryption
    let mut s = ha::standby(&ws, &p, &cfg, false);
    s.start().unwrap();
    wait_until(TIMEOUT, "the standby to replay the archived rows", || {
        Ok(s.psql("SELECT count(*) FROM rows").ok().as_deref() == Some("30000"))
    })
    .unwrap();

    // restore the sealed backup to the end of the archive and open it
    let r = ha::restore_and_open(&ws, walship_as_pg(&ws, &cfg), &ws.path().join("restored"));
    assert_eq!(r.psql("SELECT count(*) FROM rows").unwrap(), "30000");
    let (code, out) = output(walship_as_pg(&ws, &cfg).arg("verify"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 stored backups") && out.contains("encrypted:"),
        "{out}"
    );
    // without the key, the repository gives nothing away and says why
    let plain = ha::config_named(&ws, &repo, "plain.toml", "");
    let (code, out) = output(walship_as_pg(&ws, &plain).arg("status"));
    assert_eq!(code, 4, "{out}");
    drop(s);
}
