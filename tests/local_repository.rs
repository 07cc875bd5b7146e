//! The walship binary against a local repository and synthetic WAL: every bad input gets a clear
//! error and the right exit code, and nothing in the repository is lost or overwritten.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const SYSID: u64 = 7_441_234_567_890_123_456;
const SEG: &str = "000000010000000000000003";

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    pg_wal: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let repo = root.join("repo");
        fs::create_dir(&repo).unwrap();
        let pg_wal = root.join("pgdata/pg_wal");
        fs::create_dir_all(&pg_wal).unwrap();
        Env {
            _dir: dir,
            root,
            repo,
            pg_wal,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = walship();
        c.arg("--repo")
            .arg(&self.repo)
            .current_dir(self.root.join("pgdata"));
        c
    }

    fn push(&self, name: &str) -> (i32, String) {
        run(self
            .cmd()
            .arg("push")
            .arg(format!("pg_wal/{name}"))
            .arg(name))
    }

    fn fetch(&self, name: &str, dest: &Path) -> (i32, String) {
        run(self.cmd().arg("fetch").arg(name).arg(dest))
    }

    /// The same, failing at the first error (no retry inside the call).
    fn fetch_once(&self, name: &str, dest: &Path) -> (i32, String) {
        run(self
            .cmd()
            .args(["--fetch-retries", "0", "fetch", name])
            .arg(dest))
    }

    fn object(&self, name: &str) -> PathBuf {
        self.repo.join("wal").join(&name[0..16]).join(name)
    }
}

#[test]
fn push_then_fetch_round_trips_every_kind_and_compression() {
    for compression in ["zstd", "bzip2", "none"] {
        let env = Env::new();
        let seg = write_segment(&env.pg_wal, SEG, SYSID, 1);
        let files = [
            (SEG.to_string(), fs::read(&seg).unwrap()),
            (
                "00000002.history".to_string(),
                b"1\t0/3000000\tno recovery target specified\n".to_vec(),
            ),
            (
                format!("{SEG}.00000028.backup"),
                b"START WAL LOCATION: 0/3000028\n".to_vec(),
            ),
            (
                "000000010000000000000004.partial".to_string(),
                segment_bytes("000000010000000000000004", SYSID, MIB, 2),
            ),
        ];
        for (name, bytes) in &files {
            fs::write(env.pg_wal.join(name), bytes).unwrap();
            let (code, err) = run(env
                .cmd()
                .args(["--compression", compression, "push"])
                .arg(format!("pg_wal/{name}"))
                .arg(name));
            assert_eq!(code, 0, "{compression} push {name}: {err}");
            assert!(
                err.contains(&format!("pushed {name}")),
                "one log line per call: {err}"
            );
        }
        for (name, bytes) in &files {
            let dest = env.root.join("RECOVERYXLOG");
            let (code, err) = env.fetch(name, &dest);
            assert_eq!(code, 0, "{compression} fetch {name}: {err}");
            assert_eq!(
                &fs::read(&dest).unwrap(),
                bytes,
                "{compression} {name} came back different"
            );
        }
        let id = fs::read_to_string(env.repo.join("walship.repo")).unwrap();
        assert!(
            id.contains(&format!("system_identifier = \"{SYSID}\""))
                && id.contains("wal_segment_size = 1048576"),
            "{id}"
        );
    }
}

#[test]
fn repository_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.object(SEG)), 0o600);
    assert_eq!(mode(&env.repo.join("walship.repo")), 0o600);
    assert_eq!(mode(&env.repo.join("wal")), 0o700);
    assert_eq!(mode(&env.repo.join("wal/0000000100000000")), 0o700);
}

#[test]
fn missing_file_is_exit_1_and_quiet() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let dest = env.root.join("RECOVERYXLOG");
    let (code, err) = env.fetch("000000010000000000000009", &dest);
    assert_eq!((code, err.as_str()), (1, ""));
    let (code, _) = env.fetch("00000005.history", &dest);
    assert_eq!(code, 1);
    assert!(!dest.exists());
}

#[test]
fn identical_repush_succeeds_and_different_content_is_refused_untouched() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let before = tree(&env.repo);
    let (code, err) = env.push(SEG);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("already archived") && err.contains("identical"),
        "{err}"
    );
    // same name, same cluster, different bytes (split brain)
    write_segment(&env.pg_wal, SEG, SYSID, 99);
    let (code, err) = env.push(SEG);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("different content") && err.matches("sha256").count() >= 2,
        "{err}"
    );
    assert!(err.contains("HINT:"), "{err}");
    assert_eq!(
        tree(&env.repo),
        before,
        "the archived copy must be untouched"
    );
}

#[test]
fn bad_names_and_paths_are_usage_errors_and_write_nothing() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    let cases: &[(&str, &str)] = &[
        ("../../etc/passwd", "../../etc/passwd"),
        (
            "pg_wal/000000010000000000000003",
            "../000000010000000000000003",
        ),
        (
            "pg_wal/000000010000000000000003",
            "000000010000000000000003/",
        ),
        (
            "pg_wal/000000010000000000000003",
            "00000001000000000000000z",
        ),
        ("pg_wal/000000010000000000000003", "RECOVERYXLOG"),
        ("pg_wal/000000010000000000000003", ""),
        (
            "pg_wal/000000010000000000000003",
            "000000010000000000000003.tmp",
        ),
        // %p and %f disagree: a wrongly written archive_command
        (
            "pg_wal/000000010000000000000003",
            "000000010000000000000004",
        ),
    ];
    for (path, name) in cases {
        let (code, err) = run(env.cmd().arg("push").arg(path).arg(name));
        assert_eq!(code, 2, "push {path} {name}: {err}");
        assert!(err.contains("ERROR:"), "{err}");
    }
    for name in [
        "../walship.repo",
        "/etc/passwd",
        "wal/0000000100000000/000000010000000000000003",
        "x.history",
    ] {
        let (code, err) = env.fetch(name, &env.root.join("out"));
        assert_eq!(code, 2, "fetch {name}: {err}");
    }
    assert!(
        tree(&env.repo).is_empty(),
        "nothing may be written for a bad name"
    );
}

#[test]
fn wal_of_postgresql_14_is_refused_naming_the_supported_versions_and_leaves_no_identity() {
    let env = Env::new();
    let mut seg = segment_bytes(SEG, SYSID, MIB, 1);
    seg[0..2].copy_from_slice(&0xD10Du16.to_le_bytes()); // PostgreSQL 14's XLOG_PAGE_MAGIC
    fs::write(env.pg_wal.join(SEG), &seg).unwrap();
    let (code, err) = env.push(SEG);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("PostgreSQL 14 is not supported: walship supports PostgreSQL 15 to 18"),
        "{err}"
    );
    assert!(err.contains(SEG), "the message names the file: {err}");
    let left: Vec<String> = tree(&env.repo).into_iter().map(|(n, _)| n).collect();
    assert!(
        left.is_empty(),
        "nothing of an unsupported cluster stays in the repository: {left:?}"
    );
    // a history file beside it is refused the same way (its version comes from that segment)
    fs::write(
        env.pg_wal.join("00000002.history"),
        "1\t0/3000000\tno recovery target\n",
    )
    .unwrap();
    let (code, err) = env.push("00000002.history");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("PostgreSQL 14 is not supported"), "{err}");
}

#[test]
fn bad_wal_files_are_refused_before_anything_is_written() {
    let env = Env::new();
    let good = segment_bytes(SEG, SYSID, MIB, 1);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated segment",
            good[..good.len() - 8192].to_vec(),
            "truncated",
        ),
        (
            "shorter than a page header",
            good[..20].to_vec(),
            "too short",
        ),
        ("empty file", Vec::new(), "too short"),
        ("not WAL at all", noise(5, MIB as usize), "magic"),
        (
            "another segment's bytes",
            segment_bytes("000000010000000000000002", SYSID, MIB, 1),
            "page address",
        ),
        (
            "newer timeline in header",
            segment_bytes("000000020000000000000003", SYSID, MIB, 1),
            "timeline",
        ),
    ];
    for (what, bytes, expect) in cases {
        fs::write(env.pg_wal.join(SEG), &bytes).unwrap();
        let (code, err) = env.push(SEG);
        assert_eq!(code, 5, "{what}: {err}");
        assert!(err.contains(expect), "{what}: expected {expect:?} in {err}");
    }
    // exit 1 is fetch's "not in the archive"; a push of a file that is not there is a wrongly
    // set up call (the drills' bad-input corpus found that this exited 1)
    let (code, err) = env.push("000000010000000000000007");
    assert_eq!(code, 2, "a missing %p: {err}");
    assert!(
        err.contains("No such file") && err.contains("HINT"),
        "{err}"
    );
    assert!(tree(&env.repo).is_empty());
}

#[test]
fn a_second_cluster_is_refused_and_the_archive_is_unchanged() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let before = tree(&env.repo);
    write_segment(&env.pg_wal, "000000010000000000000004", SYSID + 1, 2);
    let (code, err) = env.push("000000010000000000000004");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("system identifier") && err.contains(&SYSID.to_string()),
        "{err}"
    );
    // a different segment size is another cluster too
    let big = segment_bytes("000000010000000000000004", SYSID, 2 * MIB, 2);
    fs::write(env.pg_wal.join("000000010000000000000004"), big).unwrap();
    let (code, err) = env.push("000000010000000000000004");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("-byte segments"), "{err}");
    assert_eq!(tree(&env.repo), before);
}

#[test]
fn corrupt_objects_never_reach_postgres_and_stop_archive_recovery() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let object = env.object(SEG);
    let good = fs::read(&object).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    let mut header_flip = good.clone();
    header_flip[30] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("payload byte flipped", flipped),
        ("header byte flipped", header_flip),
        ("truncated payload", good[..good.len() - 100].to_vec()),
        ("truncated header", good[..60].to_vec()),
        ("empty object", Vec::new()),
        (
            "trailing garbage",
            [good.clone(), b"garbage".to_vec()].concat(),
        ),
    ];
    let pgdata = env.root.join("pgdata");
    for (what, bytes) in cases {
        fs::write(&object, &bytes).unwrap();
        let dest = env.root.join("pgdata/pg_wal/RECOVERYXLOG");
        // called by hand (no signal file): the plain corrupt code
        let (code, err) = env.fetch(SEG, &dest);
        assert_eq!(code, 5, "{what}: {err}");
        assert!(
            err.contains("damaged") || err.contains("header"),
            "{what}: {err}"
        );
        // plain archive recovery: stop recovery rather than end it early
        fs::write(pgdata.join("recovery.signal"), "").unwrap();
        let (code, err) = env.fetch(SEG, &dest);
        assert_eq!(code, 254, "{what}: {err}");
        assert!(err.contains("stopping recovery"), "{err}");
        // a standby: 1..125 so PostgreSQL retries, loudly
        fs::write(pgdata.join("standby.signal"), "").unwrap();
        let (code, err) = env.fetch(SEG, &dest);
        assert_eq!(code, 5, "{what}: {err}");
        assert!(err.contains("will ask again"), "{err}");
        fs::remove_file(pgdata.join("standby.signal")).unwrap();
        fs::remove_file(pgdata.join("recovery.signal")).unwrap();
        assert!(!dest.exists(), "{what}: a damaged object reached %p");
        // nothing beside the segment but the prefetch spool, and nothing of this segment in it
        let leftovers: Vec<_> = fs::read_dir(&env.pg_wal)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != SEG && n != "walship")
            .collect();
        let spooled: Vec<_> = tree(&env.pg_wal.join("walship"))
            .into_iter()
            .filter(|(n, _)| n.contains(SEG))
            .collect();
        assert!(spooled.is_empty(), "{what}: in the spool: {spooled:?}");
        assert!(
            leftovers.is_empty(),
            "{what}: temporary files left: {leftovers:?}"
        );
    }
}

#[test]
fn a_missing_repository_is_an_error_not_an_empty_archive() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    fs::remove_dir(&env.repo).unwrap();
    let (code, err) = env.push(SEG);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("does not exist") && err.contains("HINT:"),
        "{err}"
    );
    assert!(
        !env.repo.exists(),
        "push must not create a missing repository (an unmounted file system)"
    );
    let dest = env.root.join("out");
    let (code, _) = env.fetch(SEG, &dest);
    assert_eq!(code, 3);
    fs::write(env.root.join("pgdata/recovery.signal"), "").unwrap();
    let (code, err) = env.fetch_once(SEG, &dest);
    assert_eq!(code, 254, "{err}");
}

#[test]
fn an_unknown_repository_format_version_is_refused() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let id = env.repo.join("walship.repo");
    let text = fs::read_to_string(&id).unwrap();
    fs::write(&id, text.replace("\nversion = 2", "\nversion = 7")).unwrap();
    write_segment(&env.pg_wal, "000000010000000000000004", SYSID, 2);
    let (code, err) = env.push("000000010000000000000004");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("format version 7"), "{err}");
    let (code, err) = env.fetch(SEG, &env.root.join("out"));
    assert_eq!(code, 4, "{err}");
    assert!(!env.object("000000010000000000000004").exists());
}

#[test]
fn a_history_file_can_initialize_an_empty_repository_from_pg_wal() {
    let env = Env::new();
    fs::write(
        env.pg_wal.join("00000002.history"),
        "1\t0/3000000\tno recovery target specified\n",
    )
    .unwrap();
    // nothing in pg_wal tells which cluster: refuse, clearly
    let (code, err) = env.push("00000002.history");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no WAL segment"), "{err}");
    // a recycled segment (old page address under a new name) still identifies the cluster
    fs::write(
        env.pg_wal.join("000000020000000000000009"),
        segment_bytes(SEG, SYSID, MIB, 1),
    )
    .unwrap();
    let (code, err) = env.push("00000002.history");
    assert_eq!(code, 0, "{err}");
    let id = fs::read_to_string(env.repo.join("walship.repo")).unwrap();
    assert!(id.contains(&SYSID.to_string()));
}

#[test]
fn disk_full_fails_cleanly_and_the_next_attempt_succeeds() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    // incompressible, so the object is bigger than the limit below
    fs::write(env.pg_wal.join(SEG), {
        let mut b = segment_bytes(SEG, SYSID, MIB, 1);
        let n = noise(3, b.len() - 8192);
        b[8192..].copy_from_slice(&n);
        b
    })
    .unwrap();
    // the identity file first, so that the limit hits the object write
    write_segment(&env.pg_wal, "000000010000000000000002", SYSID, 4);
    assert_eq!(env.push("000000010000000000000002").0, 0);
    let before = tree(&env.repo);
    let mut cmd = env.cmd();
    cmd.arg("push").arg(format!("pg_wal/{SEG}")).arg(SEG);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 256 * 1024,
                rlim_max: 256 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            Ok(())
        });
    }
    let (code, err) = run(&mut cmd);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("File too large") && err.contains("HINT:"),
        "{err}"
    );
    assert_eq!(
        tree(&env.repo),
        before,
        "no partial object and no temporary file may remain"
    );
    let (code, err) = env.push(SEG);
    assert_eq!(code, 0, "{err}");
    let dest = env.root.join("out");
    assert_eq!(env.fetch(SEG, &dest).0, 0);
    assert_eq!(
        fs::read(&dest).unwrap(),
        fs::read(env.pg_wal.join(SEG)).unwrap()
    );
}

#[test]
fn concurrent_pushes_of_one_segment_all_succeed_with_one_object() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    let children: Vec<_> = (0..6)
        .map(|_| {
            env.cmd()
                .arg("push")
                .arg(format!("pg_wal/{SEG}"))
                .arg(SEG)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let files = tree(&env.repo);
    let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "wal/0000000100000000/000000010000000000000003",
            "walship.repo"
        ]
    );
}

#[test]
fn configuration_errors_are_usage_errors() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    let conf = env.root.join("walship.toml");
    let cases: &[(&str, &[&str])] = &[
        ("repo = \"/x\"\nrepository = \"typo\"\n", &[]),
        ("repo = \"relative/path\"\n", &[]),
        ("repo = \"gs://bucket\"\n", &[]),
        ("compression = \"lz4\"\n", &[]),
        ("compression_level = 99\n", &[]),
        ("this is not toml", &[]),
        ("", &[]), // no repository anywhere
        ("repo = \"/x\"\n", &["--ssh-timeout", "0"]),
    ];
    for (text, extra) in cases {
        fs::write(&conf, text).unwrap();
        let mut c = walship();
        c.current_dir(env.root.join("pgdata"))
            .arg("--config")
            .arg(&conf)
            .args(*extra)
            .arg("push")
            .arg(format!("pg_wal/{SEG}"))
            .arg(SEG);
        let (code, err) = run(&mut c);
        assert_eq!(code, 2, "{text:?}: {err}");
        assert!(err.contains("ERROR:"), "{err}");
    }
    let (code, err) = run(walship()
        .arg("--config")
        .arg(env.root.join("missing.toml"))
        .arg("push")
        .arg("a")
        .arg(SEG));
    assert_eq!(code, 2, "{err}");
    // flags beat the environment, which beats the file
    fs::write(&conf, "repo = \"/nonexistent/from-file\"\n").unwrap();
    let mut c = walship();
    c.current_dir(env.root.join("pgdata"))
        .env("WALSHIP_CONFIG", &conf)
        .env("WALSHIP_REPO", &env.repo);
    let (code, err) = run(c.arg("push").arg(format!("pg_wal/{SEG}")).arg(SEG));
    assert_eq!(code, 0, "env must beat the file: {err}");
}

#[test]
fn help_documents_every_configuration_key() {
    let out = walship().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for key in [
        "repo",
        "compression",
        "compression_level",
        "compress_threads",
        "ssh_key",
        "known_hosts",
        "ssh_timeout",
        "fetch_retries",
        "pgdata",
        "drill_max_age",
        "[drill]",
    ] {
        assert!(
            help.contains(&format!("  {key} ")),
            "--help does not document {key}"
        );
    }
    // the names DBAs know are accepted
    assert_eq!(run(walship().args(["archive", "--help"])).0, 0);
    assert_eq!(run(walship().args(["restore", "--help"])).0, 0);
    assert_eq!(run(walship().args(["drill", "--help"])).0, 0);
}

#[test]
fn regression_a_root_without_walship_repo_is_unavailable_not_missing() {
    // An unmounted mount point (an empty directory) must not read as "nothing archived": in
    // plain archive recovery, exit 1 would end recovery early.
    let env = Env::new();
    let dest = env.root.join("out");
    let (code, err) = env.fetch_once(SEG, &dest);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("has no walship.repo") && err.contains("mounted"),
        "{err}"
    );
    fs::write(env.root.join("pgdata/recovery.signal"), "").unwrap();
    let (code, err) = env.fetch_once(SEG, &dest);
    assert_eq!(code, 254, "{err}");
}

#[test]
fn regression_another_clusters_history_file_is_refused() {
    // History and backup files have no WAL header; the segments beside them in pg_wal identify
    // the cluster, so a foreign cluster's timeline history cannot enter the repository.
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let before = tree(&env.repo);
    let foreign = env.root.join("foreign");
    let foreign_wal = foreign.join("pg_wal");
    write_segment(&foreign_wal, "000000010000000000000009", SYSID + 7, 3);
    fs::write(
        foreign_wal.join("00000002.history"),
        "1\t0/9000000\tforeign\n",
    )
    .unwrap();
    let mut c = walship();
    c.arg("--repo").arg(&env.repo).current_dir(&foreign).args([
        "push",
        "pg_wal/00000002.history",
        "00000002.history",
    ]);
    let (code, err) = run(&mut c);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("system identifier"), "{err}");
    assert_eq!(tree(&env.repo), before);
}

#[test]
fn regression_a_log_on_a_full_disk_does_not_turn_a_failure_into_an_abort() {
    // PostgreSQL's log (or a worker's log in pg_wal) on a full disk: writing the error message
    // fails. eprintln! panicked there, and with panic = "abort" a fetch of a missing segment
    // (exit 1, "not yet") became SIGABRT, which makes PostgreSQL abort recovery.
    let env = Env::new();
    // exit code with stderr on /dev/full (every write fails with ENOSPC)
    let exit_with_full_log = |args: &[&str]| {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let status = env.cmd().args(args).stderr(full).status().unwrap();
        assert!(
            status.code().is_some(),
            "{args:?} died of a signal: {status:?}"
        );
        status.code()
    };
    // empty repository: unavailable
    assert_eq!(
        exit_with_full_log(&["fetch", SEG, "pg_wal/RECOVERYXLOG"]),
        Some(3)
    );
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    assert_eq!(
        exit_with_full_log(&["fetch", "000000010000000000000009", "pg_wal/RECOVERYXLOG"]),
        Some(1)
    );
    assert_eq!(
        exit_with_full_log(&["push", "pg_wal/missing", "000000010000000000000002"]),
        Some(2)
    );
}

#[test]
fn regression_a_demoted_primary_cannot_archive_past_the_fork_of_a_newer_timeline() {
    let env = Env::new();
    let seg = |n: u32| format!("000000010000000000000{n:03X}");
    for n in 1..=6 {
        fs::write(
            env.pg_wal.join(seg(n)),
            segment_bytes(&seg(n), SYSID, MIB, n.into()),
        )
        .unwrap();
    }
    for n in 1..=2 {
        let (code, err) = env.push(&seg(n));
        assert_eq!(code, 0, "{err}");
    }
    // a standby was promoted to timeline 2 at 0/380000, inside segment 3 (1 MiB segments)
    fs::write(
        env.pg_wal.join("00000002.history"),
        "1\t0/380000\tno recovery target specified\n",
    )
    .unwrap();
    let (code, err) = env.push("00000002.history");
    assert_eq!(code, 0, "{err}");
    // the old primary comes back: what precedes the fork (and the segment holding it) is
    // still its own timeline's past; everything after is refused, touching nothing
    let (code, err) = env.push(&seg(3));
    assert_eq!(code, 0, "{err}");
    for n in [4, 6] {
        let (code, err) = env.push(&seg(n));
        assert_eq!(code, 4, "{err}");
        assert!(
            err.contains("forked off timeline 1 (at 0/380000)") && err.contains("walship rejoin"),
            "{err}"
        );
        assert!(!env.object(&seg(n)).exists());
    }
    // the new timeline's own segments are welcome
    let t2 = "000000020000000000000004";
    fs::write(env.pg_wal.join(t2), segment_bytes(t2, SYSID, MIB, 9)).unwrap();
    let (code, err) = env.push(t2);
    assert_eq!(code, 0, "{err}");
    // a damaged history file fences instead of opening the gate
    fs::create_dir_all(env.repo.join("wal/history")).unwrap();
    let (code, err) = env.push(&seg(5));
    assert_eq!(code, 4, "{err}");
}

#[test]
fn regression_a_usage_error_in_archive_recovery_stops_recovery_instead_of_ending_it() {
    let env = Env::new();
    let pgdata = env.root.join("pgdata");
    fs::write(pgdata.join("recovery.signal"), "").unwrap();
    let dest = env.pg_wal.join("RECOVERYXLOG");
    // clap's own errors (a bad WALSHIP_* value, an unknown flag) would exit 2: "not there"
    let (code, err) = run(env
        .cmd()
        .env("WALSHIP_FETCH_RETRIES", "abc")
        .arg("fetch")
        .arg(SEG)
        .arg(&dest));
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("stopping recovery on purpose"), "{err}");
    let (code, err) = run(env.cmd().args(["fetch", "--no-such-flag", SEG]).arg(&dest));
    assert_eq!(code, 254, "{err}");
    // the working directory decides, even when the configured pgdata is another cluster's
    let other = env.root.join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("standby.signal"), "").unwrap();
    let broken = env.root.join("broken-repo");
    let (code, err) = run(walship()
        .arg("--repo")
        .arg(&broken)
        .arg("--pgdata")
        .arg(&other)
        .args(["--fetch-retries", "0", "fetch", SEG])
        .arg(&dest)
        .current_dir(&pgdata));
    assert_eq!(code, 254, "{err}");
    // on a standby a usage error is an ordinary failure: the standby asks again
    fs::remove_file(pgdata.join("recovery.signal")).unwrap();
    fs::write(pgdata.join("standby.signal"), "").unwrap();
    let (code, err) = run(env.cmd().args(["fetch", "--no-such-flag", SEG]).arg(&dest));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn regression_a_failing_background_worker_exits_0_so_a_postmaster_reaping_it_does_not_restart() {
    let env = Env::new();
    // the repository is missing: the prefetch worker fails, logs why, and exits 0
    let missing = env.root.join("no-such-repo");
    for worker in ["prefetch", "push-ahead"] {
        let out = walship()
            .arg("--repo")
            .arg(&missing)
            .arg(worker)
            .arg("--pg-wal")
            .arg(&env.pg_wal)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{worker}: {err}");
        assert!(err.contains("ERROR"), "{worker}: {err}");
        // a worker's log is read long after: every line starts with an RFC 3339 time
        for line in err.lines() {
            let b = line.as_bytes();
            assert!(
                b.len() > 25 && b[4] == b'-' && b[10] == b'T' && b[23] == b'Z' && b[24] == b' ',
                "{worker}: no timestamp: {line:?}"
            );
        }
        // a worker started with arguments it cannot parse exits 0 too
        let out = walship().arg(worker).arg("--bogus").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{worker}");
    }
}

#[test]
fn regression_a_thread_limit_is_an_error_not_a_signal() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    fs::write(env.pg_wal.join(SEG), segment_bytes(SEG, SYSID, MIB, 1)).unwrap();
    // everything readable and the repository writable by the unprivileged user below
    for entry in walkdir::WalkDir::new(&env.root) {
        let e = entry.unwrap();
        let mode = if e.file_type().is_dir() { 0o777 } else { 0o644 };
        fs::set_permissions(e.path(), fs::Permissions::from_mode(mode)).unwrap();
    }
    // RLIMIT_NPROC of 1: the user already has this process, so no thread can start
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "prlimit",
            "--nproc=1",
        ]);
        c
    } else {
        let mut c = Command::new("prlimit");
        c.arg("--nproc=1");
        c
    };
    let out = cmd
        .arg(env!("CARGO_BIN_EXE_walship"))
        .args([
            "--config",
            "/dev/null",
            "--push-ahead",
            "0",
            "--compress-threads",
            "1",
            "--repo",
        ])
        .arg(&env.repo)
        .args(["push", &format!("pg_wal/{SEG}"), SEG])
        .current_dir(env.root.join("pgdata"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "killed by a signal? {:?} {err}",
        out.status
    );
    assert!(err.contains("starting the hashing thread"), "{err}");
    assert!(!env.object(SEG).exists());
}

#[test]
fn a_repush_over_a_rotted_archived_copy_fails_keeps_the_segment_and_replace_damaged_repairs_it() {
    let env = Env::new();
    let seg = write_segment(&env.pg_wal, SEG, SYSID, 3);
    let good = fs::read(&seg).unwrap();
    assert_eq!(env.push(SEG).0, 0);
    // bit rot in the stored payload, and then truncation, both under an intact header
    let object = env.object(SEG);
    let stored = fs::read(&object).unwrap();
    let mut rotted = stored.clone();
    rotted[stored.len() - 10] ^= 0x40;
    let truncated = stored[..stored.len() / 2].to_vec();
    for damaged in [rotted, truncated] {
        fs::write(&object, &damaged).unwrap();
        let (code, out) = env.push(SEG);
        assert_eq!(code, 5, "{out}");
        assert!(
            out.contains("stored copy is damaged") && out.contains("--replace-damaged"),
            "{out}"
        );
        assert_eq!(
            fs::read(&seg).unwrap(),
            good,
            "the segment in pg_wal is kept"
        );
        assert_eq!(fs::read(&object).unwrap(), damaged, "nothing was written");
    }
    // the documented repair, as the hint gives it
    let (code, out) = run(env
        .cmd()
        .args(["push", "--replace-damaged"])
        .arg(format!("pg_wal/{SEG}"))
        .arg(SEG));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replaced the damaged object"), "{out}");
    let dest = env.root.join("restored");
    assert_eq!(env.fetch(SEG, &dest).0, 0);
    assert_eq!(fs::read(&dest).unwrap(), good);
    let (code, out) = verify(&env.repo);
    assert_eq!(code, 0, "{out}");
    assert_eq!(env.push(SEG).0, 0, "now already archived");
    // no temporary file is left beside it
    let dir: Vec<_> = fs::read_dir(object.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(dir.len(), 1, "{dir:?}");
}

#[test]
fn regression_a_repository_that_needs_a_newer_walship_is_refused_up_front() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let id = env.repo.join("walship.repo");
    let text = fs::read_to_string(&id).unwrap();
    // what an older walship checks first: walship 0.1 refuses any version but 1
    assert!(text.contains("\nversion = 2\n"), "{text}");
    assert!(text.contains("min_reader_version = \"0.2.0\""), "{text}");
    // a newer writer raised the minimum: every command refuses before reading an object
    fs::write(&id, text.replace("\"0.2.0\"", "\"99.1.0\"")).unwrap();
    let before = names_below(&env.repo);
    for args in [
        vec!["fetch", SEG, "out"],
        vec!["status"],
        vec!["verify"],
        vec!["prune", "--keep-backups", "1"],
    ] {
        let (code, err) = run(env.cmd().args(&args));
        assert_eq!(code, 4, "{args:?}: {err}");
        assert!(
            err.contains("needs walship 99.1.0 or newer"),
            "{args:?}: {err}"
        );
    }
    let (code, err) = env.push(SEG);
    assert_eq!(code, 4, "{err}");
    assert_eq!(names_below(&env.repo), before, "nothing written");
}

#[test]
fn regression_a_killed_fetchs_temporary_file_is_removed_from_pg_wal_by_the_next_fetch() {
    let env = Env::new();
    write_segment(&env.pg_wal, SEG, SYSID, 1);
    assert_eq!(env.push(SEG).0, 0);
    let age = |p: &Path, hours: u32| {
        let ok = Command::new("touch")
            .args(["-h", "-d", &format!("{hours} hours ago")])
            .arg(p)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let killed = env.pg_wal.join(".walship-fetch-AbC123");
    let running = env.pg_wal.join(".walship-fetch-XyZ789");
    let elsewhere = env.root.join("precious");
    let link = env.pg_wal.join(".walship-fetch-link");
    fs::write(&killed, vec![0u8; 4096]).unwrap();
    fs::write(&running, b"being written").unwrap();
    fs::write(&elsewhere, b"not walship's").unwrap();
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    age(&killed, 2);
    age(&link, 2);
    age(&elsewhere, 2);
    let (code, out) = env.fetch(SEG, &env.pg_wal.join("RECOVERYXLOG"));
    assert_eq!(code, 0, "{out}");
    assert!(!killed.exists(), "{out}");
    assert!(out.contains("left by a fetch that was killed"), "{out}");
    assert!(running.exists(), "a fetch in progress keeps its file");
    assert!(
        link.symlink_metadata().is_ok() && elsewhere.exists(),
        "symlinks are left alone"
    );
}

#[test]
fn regression_a_history_file_that_cannot_be_fetched_during_a_promotion_aborts_instead_of_reading_as_absent()
 {
    let env = Env::new();
    let pgdata = env.root.join("pgdata");
    fs::write(pgdata.join("standby.signal"), "").unwrap();
    // a "postmaster" and a promoting walship that are alive: this test process stands in for both
    let me = std::process::id();
    let ticks = walship::os::process_start_ticks(me).unwrap();
    fs::write(
        pgdata.join("postmaster.pid"),
        format!("{me}\n{}\n1000\n5432\n", pgdata.display()),
    )
    .unwrap();
    fs::create_dir_all(pgdata.join("pg_wal/walship")).unwrap();
    // the repository is not there (an unmounted file system, say): "unavailable"
    let broken = env.root.join("not-mounted");
    let fetch = |name: &str| {
        run(walship()
            .arg("--repo")
            .arg(&broken)
            .args([
                "--fetch-retries",
                "0",
                "fetch",
                name,
                "pg_wal/RECOVERYHISTORY",
            ])
            .current_dir(&pgdata))
    };
    // on a standby, a failed fetch is an ordinary "try again later"
    let (code, err) = fetch("00000002.history");
    assert_eq!(code, 3, "{err}");
    // during a promotion PostgreSQL picks its new timeline from the history files it finds:
    // an error must not read as "no such timeline"
    fs::write(
        pgdata.join("pg_wal/walship/promoting"),
        format!("smart {me} {ticks} {me} 1000\n"),
    )
    .unwrap();
    let (code, err) = fetch("00000002.history");
    assert_eq!(code, 254, "{err}");
    assert!(err.contains("stopping the promotion on purpose"), "{err}");
    // segments are not concerned: the standby asks again
    let (code, err) = fetch(SEG);
    assert_eq!(code, 3, "{err}");
}

#[test]
fn each_commands_help_shows_the_global_options_it_uses_and_no_others() {
    let help = |args: &[&str]| {
        let out = walship().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for form in [
        &["promote", "--help"][..],
        &["--repo", "/x", "help", "promote"][..],
    ] {
        let text = help(form);
        assert!(
            text.contains("Global options") && text.contains("--repo") && text.contains("--pg "),
            "{text}"
        );
        for other in [
            "--compression",
            "--push-ahead",
            "--prefetch",
            "--fetch-retries",
        ] {
            assert!(!text.contains(other), "{form:?} shows {other}:\n{text}");
        }
    }
    let push = help(&["push", "--help"]);
    assert!(
        push.contains("--compression") && push.contains("--push-ahead"),
        "{push}"
    );
    assert!(!push.contains("--prefetch"), "{push}");
    // hidden is not refused: a global option a command does not use is still accepted
    let (code, err) = run(walship().args(["--prefetch", "3", "--repo", "/nonexistent", "verify"]));
    assert_eq!(code, 3, "{err}");
    // the earlier spelling of watch's interval still parses (the error is about the data
    // directory, an empty one here, not about the flag)
    let empty = tempfile::tempdir().unwrap();
    let (code, err) =
        run(walship()
            .arg("--pgdata")
            .arg(empty.path())
            .args(["watch", "--watch-interval", "2"]));
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("unexpected argument"), "{err}");
}

#[test]
fn config_prints_each_value_with_its_source_and_refuses_a_bad_one() {
    let env = Env::new();
    let file = env.root.join("walship.toml");
    fs::write(
        &file,
        format!("repo = '{}'\ncompression_level = 3\n", env.repo.display()),
    )
    .unwrap();
    let out = walship()
        .env("WALSHIP_CONFIG", &file)
        .env("WALSHIP_PREFETCH", "4")
        .args(["--push-ahead", "2", "config"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .to_string()
    };
    assert!(line("repo").contains("file ("), "{text}");
    assert!(line("compression_level").contains(" 3 "), "{text}");
    assert!(line("push_ahead").ends_with("flag"), "{text}");
    assert!(
        line("prefetch").contains("environment (WALSHIP_PREFETCH)"),
        "{text}"
    );
    assert!(line("ssh_timeout").ends_with("default"), "{text}");
    // every key the help's configuration table names is shown
    let help =
        String::from_utf8_lossy(&walship().arg("--help").output().unwrap().stdout).into_owned();
    let table = &help[help.find("CONFIGURATION").unwrap()..help.find("POSTGRESQL").unwrap()];
    let keys: Vec<&str> = table
        .lines()
        .filter(|l| !l.starts_with("   ") && (l.contains("WALSHIP_") || l.contains("(file only)")))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        line(key);
    }
    // a bad value exits 2 and names it
    let (code, err) =
        run(walship()
            .env("WALSHIP_CONFIG", &file)
            .args(["--compression", "bogus", "config"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn version_completions_and_man_pages_come_from_the_same_definitions() {
    let out = |args: &[&str]| {
        let o = walship().args(args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let v = out(&["--version"]);
    assert!(
        v.starts_with("walship 0.") && v.contains("commit ") && v.contains("libssh2 1."),
        "{v}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = out(&["completions", shell]);
        assert!(
            script.contains("basebackup") && script.contains("trigger-file"),
            "{shell}"
        );
    }
    let man = out(&["man"]);
    assert!(
        man.contains(".TH walship") && man.contains("basebackup"),
        "{man}"
    );
    let man = out(&["man", "watch"]);
    assert!(
        man.contains(".TH walship-watch") && man.contains("witness"),
        "{man}"
    );
    let (code, err) = run(walship().args(["man", "nosuch"]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn status_output_json_is_the_same_as_the_json_flag() {
    let env = Env::new();
    fs::write(env.pg_wal.join(SEG), segment_bytes(SEG, SYSID, MIB, 1)).unwrap();
    assert_eq!(env.push(SEG).0, 0);
    let out = |args: &[&str]| {
        let o = env.cmd().args(args).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let json = out(&["status", "--output", "json"]);
    assert_eq!(json, out(&["status", "--json"]));
    assert!(json.contains("\"timelines\""), "{json}");
    // the same metrics (values such as ages may move between two calls)
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split([' ', '{']).next().map(str::to_string))
            .collect()
    };
    let prom = out(&["status", "--output", "prometheus"]);
    assert!(prom.contains("walship_"), "{prom}");
    assert_eq!(names(&prom), names(&out(&["status", "--prometheus"])));
    assert!(out(&["status"]).contains(SEG));
    let (code, err) = run(env.cmd().args(["status", "--output", "yaml"]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn quiet_prints_only_errors_and_warnings() {
    let env = Env::new();
    fs::write(env.pg_wal.join(SEG), segment_bytes(SEG, SYSID, MIB, 1)).unwrap();
    let (code, err) = run(env
        .cmd()
        .args(["--quiet", "push"])
        .arg(format!("pg_wal/{SEG}"))
        .arg(SEG));
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "", "a quiet push that worked says nothing");
    let (code, err) = run(env
        .cmd()
        .args(["push"])
        .arg(format!("pg_wal/{SEG}"))
        .arg(SEG));
    assert_eq!(code, 0);
    assert!(err.contains("already archived"), "{err}");
    // an error still reaches the log
    let (code, err) = run(env.cmd().args([
        "-q",
        "fetch",
        "000000010000000000000009",
        "/nonexistent/dir/x",
    ]));
    assert_eq!(code, 1, "{err}");
    let (code, err) =
        run(env
            .cmd()
            .args(["-q", "push", "pg_wal/nothing", "000000010000000000000002"]));
    assert_eq!(code, 2);
    assert!(err.contains("ERROR"), "{err}");
}
