//! What differs between the PostgreSQL versions walship supports, on the version under test
//! (WALSHIP_PG_BIN; `tests/run --pg N`): each version's WAL page magic, 18's data checksums, 17's
//! pg_walfile_name() at a segment boundary, the archiver calling archive_command again for a
//! file already archived after a crash; a cluster whose superuser is not named after its OS
//! user, promoted and rejoined through `pg`; and PostgreSQL 14 refused up front by check,
//! basebackup, push and demo (WALSHIP_PG14_BIN).

mod common;

use std::fs;
use std::time::Duration;

use common::ha::*;
use common::*;
use walship::pg::cluster::{Cluster, PgTools, RunAs, free_port, wait_until};

/// XLOG_PAGE_MAGIC of each supported version (src/include/access/xlog_internal.h).
fn page_magic(major: u32) -> u16 {
    match major {
        15 => 0xD110,
        16 => 0xD113,
        17 => 0xD116,
        18 => 0xD118,
        v => panic!("PostgreSQL {v} is not a version walship supports"),
    }
}

#[test]
fn each_version_archives_its_own_wal_switches_when_idle_and_takes_a_file_again_after_a_crash() {
    let ws = Workspace::new();
    let major = pg_major(&ws.tools);
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let mut p = primary(&ws, &cfg);
    // 18 turns data checksums on by default (rejoin's pg_rewind then needs no wal_log_hints)
    let expected = if major >= 18 { "on" } else { "off" };
    assert_eq!(p.psql("SHOW data_checksums").unwrap(), expected);

    let first = p.switch_and_wait_archived(TIMEOUT).unwrap();
    // Nothing written since: pg_switch_wal() returns the segment boundary, which 17 and later
    // name as the segment after it (never archived before the next switch).
    let second = p
        .switch_and_wait_archived(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("an idle switch on PostgreSQL {major}: {e}"));
    assert!(second >= first, "{second} after {first}");

    // the archived segment carries this version's page magic, byte for byte
    let fetched = ws.path().join("fetched");
    let (code, text) = output(
        walship_for(&ws, &cfg, &p.data)
            .arg("fetch")
            .arg(&first)
            .arg(&fetched),
    );
    assert_eq!(code, 0, "{text}");
    let bytes = fs::read(&fetched).unwrap();
    assert_eq!(
        u16::from_le_bytes([bytes[0], bytes[1]]),
        page_magic(major),
        "page magic of PostgreSQL {major}"
    );

    // check reads this version's settings and statistics views
    let (code, text) = output(walship_for(&ws, &cfg, &p.data).arg("check"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("all checks passed"), "{text}");

    // A crash before the archiver records a file as done: the next start archives it again (16
    // does so for files already archived), and walship must take it without a failure.
    let stored = tree(&repo);
    p.stop_mode("immediate").unwrap();
    let status = p.data.join("pg_wal/archive_status");
    fs::rename(
        status.join(format!("{first}.done")),
        status.join(format!("{first}.ready")),
    )
    .unwrap();
    p.start().unwrap();
    wait_until(TIMEOUT, &format!("{first} to be archived again"), || {
        Ok(status.join(format!("{first}.done")).exists())
    })
    .unwrap();
    assert_eq!(
        p.psql("SELECT failed_count FROM pg_stat_archiver").unwrap(),
        "0",
        "see {}",
        p.log.display()
    );
    let log = fs::read_to_string(&p.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&first) && l.contains("already archived")),
        "the second call found the identical object: {log}"
    );
    let after: Vec<_> = tree(&repo)
        .into_iter()
        .filter(|e| stored.iter().any(|s| s.0 == e.0))
        .collect();
    assert_eq!(after, stored, "an archived object changed");
    p.stop().unwrap();
}

/// The tools for PostgreSQL run as an OS user that is not `postgres`: nobody when root, else
/// ourselves (None when we are named postgres).
fn tools_of_another_os_user() -> Option<PgTools> {
    let ours = pg_tools();
    match RunAs::when_root("nobody").unwrap() {
        Some(r) => Some(PgTools::new(&ours.bin, Some(r)).unwrap()),
        None => {
            let me = std::env::var("USER").unwrap_or_default();
            (me != "postgres").then_some(ours)
        }
    }
}

#[test]
fn a_cluster_whose_superuser_is_not_its_os_user_is_promoted_and_rejoined_through_pg() {
    let Some(tools) = tools_of_another_os_user() else {
        skip("the test runs as an OS user named postgres: initdb -U postgres is its default");
        return;
    };
    let os_user = tools
        .run_as
        .as_ref()
        .map(|r| r.user.clone())
        .unwrap_or_else(|| std::env::var("USER").unwrap());
    // initdb -U postgres run by another OS user: no role is named after the data directory's owner
    let ws = Workspace::with_tools(tools);
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let mut p = primary(&ws, &cfg);
    p.psql("CREATE TABLE ticks (id bigserial PRIMARY KEY)")
        .unwrap();
    let mut s = standby(&ws, &p, &cfg, true);
    archive_once_promoted(&ws, &s, &cfg);
    s.start().unwrap();
    p.psql("INSERT INTO ticks DEFAULT VALUES").unwrap();
    wait_until(TIMEOUT, "the standby to stream the row", || {
        Ok(s.psql("SELECT count(*) FROM ticks").ok().as_deref() == Some("1"))
    })
    .unwrap();
    p.stop().unwrap();

    // without pg, promote connects as the owner, as it always did
    let (code, text) = output(
        walship_for(&ws, &cfg, &s.data)
            .args(["promote", "--fast"])
            .env_remove("PGUSER"),
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(&format!("role \"{os_user}\" does not exist")),
        "{text}"
    );
    // with pg naming the role, it promotes
    let (code, text) = output(
        walship_for(&ws, &cfg, &s.data)
            .arg("--pg")
            .arg(conninfo(&s))
            .args(["promote", "--fast"])
            .env_remove("PGUSER"),
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(s.psql("SELECT pg_is_in_recovery()").unwrap(), "f", "{text}");
    s.psql("INSERT INTO ticks DEFAULT VALUES").unwrap();

    // rejoin: --primary names no role; pg_rewind and the standby's primary_conninfo take pg's
    let primary_without_role = format!(
        "host={} port={} dbname=postgres",
        s.socket_dir.display(),
        s.port
    );
    let (code, text) = output(
        walship_for(&ws, &cfg, &p.data)
            .arg("--pg")
            .arg(conninfo(&p))
            .args(["rejoin", "--stream", "--primary"])
            .arg(&primary_without_role)
            .env_remove("PGUSER"),
    );
    assert_eq!(code, 0, "{text}");
    let mut old = Cluster::existing(&ws.tools, &p.data, p.port).unwrap();
    old.start()
        .unwrap_or_else(|e| panic!("{e}\n{}", fs::read_to_string(&old.log).unwrap_or_default()));
    assert_eq!(old.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
    s.psql("INSERT INTO ticks DEFAULT VALUES").unwrap();
    wait_until(
        TIMEOUT,
        "the rejoined server to stream from the new primary",
        || {
            Ok(
                old.psql("SELECT count(*) FROM ticks").ok().as_deref() == Some("3")
                    && old
                        .psql("SELECT status FROM pg_stat_wal_receiver")
                        .ok()
                        .as_deref()
                        == Some("streaming"),
            )
        },
    )
    .unwrap_or_else(|e| panic!("{e}; log {}", old.log.display()));
    old.stop().unwrap();
    s.stop().unwrap();
}

#[test]
fn postgresql_14_is_refused_up_front_by_check_basebackup_and_push() {
    let Ok(bin) = std::env::var("WALSHIP_PG14_BIN") else {
        skip("WALSHIP_PG14_BIN is not set (tests/run installs PostgreSQL 14 for this test)");
        return;
    };
    let ws = Workspace::new();
    let tools = PgTools::new(bin, ws.tools.run_as.clone()).unwrap();
    assert_eq!(pg_major(&tools), 14);
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let mut p = Cluster::init(&tools, &ws.path().join("pg14"), free_port().unwrap(), 1).unwrap();
    p.append_conf(&format!(
        "archive_mode = on\narchive_command = '{} --config {} push %p %f'\n",
        ws.walship_bin().display(),
        cfg.display()
    ))
    .unwrap();
    p.start().unwrap();
    let refused = "PostgreSQL 14 is not supported: walship supports PostgreSQL 15 to 18";

    // push: the archiver's calls fail, and nothing of the cluster enters the repository
    p.psql("CREATE TABLE t AS SELECT 1 AS x; SELECT pg_switch_wal()")
        .unwrap();
    wait_until(TIMEOUT, "the archiver to fail", || {
        Ok(p.psql("SELECT failed_count FROM pg_stat_archiver")? != "0")
    })
    .unwrap();
    let log = fs::read_to_string(&p.log).unwrap();
    assert!(log.contains(refused), "{log}");
    assert!(names_below(&repo).is_empty(), "{:?}", names_below(&repo));

    for command in ["check", "basebackup"] {
        let (code, text) = output(walship_for(&ws, &cfg, &p.data).arg(command));
        assert_eq!(code, 2, "{command}: {text}");
        assert!(text.contains(refused), "{command}: {text}");
        assert!(text.contains("HINT"), "{command}: {text}");
    }
    assert!(names_below(&repo).is_empty());
    p.stop().unwrap();

    // the demo too, before it makes anything
    let (code, text) = output(walship().arg("demo").arg("--pg-bin").arg(&tools.bin));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(refused), "{text}");
}
