//! walship run as root on a data directory: it becomes the directory's owner before it touches
//! anything there, so a symlink the PostgreSQL user planted cannot hand it root's files.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{Workspace, output, walship};
use walship::pg::cluster::{Cluster, free_port};

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the scenario is walship run as root: run this test as root (tests/run does in CI)"
    );
}

#[test]
#[ignore = "needs root: the scenario is walship run as root (tests/run runs it as root, as CI does)"]
fn sudo_rejoin_never_hands_a_symlinked_auto_conf_target_to_postgres() {
    assert_root();
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let c = Cluster::init(
        &ws.tools,
        &ws.path().join("old_primary"),
        free_port().unwrap(),
        1,
    )
    .unwrap();
    // root's file, and the data directory's postgresql.auto.conf pointing at it
    let secret = ws.path().join("shadow");
    fs::write(&secret, "root:$6$secret:19000::::::\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let auto = c.data.join("postgresql.auto.conf");
    fs::remove_file(&auto).unwrap();
    std::os::unix::fs::symlink(&secret, &auto).unwrap();
    let run_as_root = |args: &[&str]| {
        output(
            walship()
                .arg("--repo")
                .arg(&repo)
                .arg("--pgdata")
                .arg(&c.data)
                .args(args),
        )
    };
    let (code, out) = run_as_root(&["rejoin", "--primary", "host=127.0.0.1 port=1 user=postgres"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    let m = fs::metadata(&secret).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o777),
        (0, 0o600),
        "root's file changed hands: {out}"
    );
    assert_eq!(
        fs::read_to_string(&secret).unwrap(),
        "root:$6$secret:19000::::::\n",
        "root's file was written: {out}"
    );

    // a data directory that belongs to root is no PostgreSQL user's: refused outright
    let rooted = ws.path().join("rooted");
    fs::create_dir(&rooted).unwrap();
    fs::write(rooted.join("PG_VERSION"), "15\n").unwrap();
    for cmd in [
        &["promote"][..],
        &["rejoin", "--primary", "host=x"],
        &["watch"],
    ] {
        let (code, out) = output(
            walship()
                .arg("--repo")
                .arg(&repo)
                .arg("--pgdata")
                .arg(&rooted)
                .args(cmd),
        );
        assert_eq!(code, 2, "{cmd:?}: {out}");
        assert!(out.contains("belongs to root"), "{cmd:?}: {out}");
    }
}

#[test]
#[ignore = "needs root: the scenario is walship run as root (tests/run runs it as root, as CI does)"]
fn sudo_push_and_fetch_in_a_data_directory_leave_nothing_root_owned_for_postgresql() {
    assert_root();
    let ws = Workspace::new();
    let pg_uid = fs::metadata(ws.path()).unwrap().uid();
    assert_ne!(pg_uid, 0);
    let repo = ws.mkdir("repo");
    let pgdata = ws.mkdir("pgdata");
    let pg_wal = ws.mkdir("pgdata/pg_wal");
    ws.mkdir("pgdata/pg_wal/archive_status");
    let seg = "000000010000000000000001";
    common::write_segment(&pg_wal, seg, 7_000_000_000_000_000_001, 1);
    let (code, out) = output(
        walship()
            .arg("--repo")
            .arg(&repo)
            .args(["--push-ahead", "0", "push", &format!("pg_wal/{seg}"), seg])
            .current_dir(&pgdata),
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = output(
        walship()
            .arg("--repo")
            .arg(&repo)
            .args(["--prefetch", "0", "fetch", seg, "pg_wal/RECOVERYXLOG"])
            .current_dir(&pgdata),
    );
    assert_eq!(code, 0, "{out}");
    // what root wrote into the PostgreSQL user's repository and pg_wal is that user's: the next
    // push or fetch, run by PostgreSQL, can write next to it and read it
    let mut root_owned = Vec::new();
    for top in [&repo, &pg_wal] {
        for e in walkdir::WalkDir::new(top)
            .min_depth(1)
            .into_iter()
            .flatten()
        {
            if e.metadata().unwrap().uid() != pg_uid && e.file_name() != seg {
                root_owned.push(e.path().display().to_string());
            }
        }
    }
    assert!(root_owned.is_empty(), "owned by root: {root_owned:?}");
    assert!(pg_wal.join("RECOVERYXLOG").exists());
}
