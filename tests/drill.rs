//! `walship drill` on a real PostgreSQL 15 primary archiving through walship: a drill passes on
//! a healthy repository with RTO and RPO figures that agree with what the test measures itself,
//! and fails, saying why, on a false user check, a damaged backup object, a corrupt segment in
//! the replay range and a scratch disk that is too small. After every outcome the scratch
//! directory is gone, the repository holds nothing new but the drill's record, and the primary
//! saw no connection from the drill. Also: killed and concurrent drills, a repository that goes
//! away mid-replay, data checksums, --target-time, --keep, and a repository over SSH.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::ha::{self, TIMEOUT};
use common::{Workspace, output};
use walship::pg::cluster::{Cluster, wait_until};
use walship::repo::drill::{DrillRecord, Outcome};

use common::walship_as_pg;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every file of the repository with its bytes, drill records left out.
fn repo_files(repo: &Path) -> Vec<(String, Vec<u8>)> {
    common::tree(repo)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("drills"))
        .collect()
}

fn drill_records(repo: &Path) -> Vec<DrillRecord> {
    let mut names: Vec<PathBuf> = fs::read_dir(repo.join("drills"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| toml::from_str(&fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// Processes working in `dir` or naming it on their command line (a copy, a prefetch worker
/// left behind: PostgreSQL runs restore_command in the data directory with a relative %p).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let cwd = fs::read_link(e.path().join("cwd")).unwrap_or_default();
            (cwd.starts_with(dir) || cmdline.contains(&needle)).then_some(cmdline)
        })
        .collect()
}

/// Connections the primary accepted so far (log_connections is on).
fn primary_connections(p: &Cluster) -> usize {
    fs::read_to_string(&p.log)
        .unwrap()
        .matches("connection authorized")
        .count()
}

struct Setup {
    ws: Workspace,
    repo: PathBuf,
    cfg: PathBuf,
    p: Cluster,
    backup: String,
}

/// A primary archiving through walship, a stored base backup, then rows committed after it.
fn setup(drill_conf: &str) -> Setup {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = ha::config(&ws, &repo, drill_conf);
    let p = ha::primary(&ws, &cfg);
    // No commit may follow the test's own: autovacuum's would move the newest archived commit.
    p.psql("ALTER SYSTEM SET autovacuum = off").unwrap();
    p.psql("ALTER SYSTEM SET log_connections = on").unwrap();
    p.psql("SELECT pg_reload_conf()").unwrap();
    // A tablespace: the drill puts it in its scratch directory, never at the primary's path.
    let ts = ws.mkdir("ts");
    p.psql(&format!("CREATE TABLESPACE ts LOCATION '{}'", ts.display()))
        .unwrap();
    p.psql("CREATE TABLE in_ts TABLESPACE ts AS SELECT g FROM generate_series(1, 1000) g")
        .unwrap();
    let (code, out) = output(
        walship_as_pg(&ws, &cfg)
            .arg("--pgdata")
            .arg(&p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 0, "{out}");
    let backup = fs::read_dir(repo.join("backups"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    p.psql(
        "CREATE TABLE orders (id int PRIMARY KEY, pad text); \
         INSERT INTO orders SELECT g, repeat('o', 200) FROM generate_series(1, 20000) g",
    )
    .unwrap();
    Setup {
        ws,
        repo,
        cfg,
        p,
        backup,
    }
}

fn drill(s: &Setup, scratch: &Path, extra: &[&str]) -> (i32, String) {
    output(
        walship_as_pg(&s.ws, &s.cfg)
            .arg("drill")
            .arg("--scratch")
            .arg(scratch)
            .args(extra),
    )
}

#[test]
fn a_drill_passes_and_measures_rto_and_rpo_as_the_test_does() {
    let s = setup(
        "[drill]\nchecks = ['select count(*) = 20001 from orders', \
         'select count(*) = 1000 from in_ts', 'select true']\n",
    );
    let check = |extra: &[&str]| {
        output(
            walship_as_pg(&s.ws, &s.cfg)
                .arg("--pgdata")
                .arg(&s.p.data)
                .args(extra)
                .arg("check"),
        )
    };
    let (code, out) = check(&[]);
    assert_eq!(
        code, 0,
        "a missing drill is a warning, not a failure: {out}"
    );
    assert!(out.contains("WARN  no drill has ever passed"), "{out}");
    // The newest commit, timed by the primary's own clock just before it commits.
    let commit_at: f64 =
        s.p.psql(
            "INSERT INTO orders VALUES (20001, 'last') \
             RETURNING extract(epoch FROM clock_timestamp())",
        )
        .unwrap()
        .parse()
        .unwrap();
    let lsn_after_commit: String = s.p.psql("SELECT pg_current_wal_lsn()").unwrap();
    let checksums_on = s.p.psql("SHOW data_checksums").unwrap() == "on";
    s.p.switch_and_wait_archived(TIMEOUT).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let before = repo_files(&s.repo);
    let connections = primary_connections(&s.p);
    let scratch = s.ws.path().join("scratch");

    let drill_started = unix_now();
    let t = Instant::now();
    let (code, out) = drill(&s, &scratch, &[]);
    let elapsed = t.elapsed().as_secs_f64();
    eprintln!("{out}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("drill passed"), "{out}");
    assert!(!scratch.exists(), "the scratch directory is left: {out}");
    assert_eq!(
        repo_files(&s.repo),
        before,
        "the drill wrote to the repository"
    );
    assert_eq!(
        primary_connections(&s.p),
        connections,
        "the drill connected to the primary"
    );

    let records = drill_records(&s.repo);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert!(r.passed, "{r:?}");
    assert_eq!(r.backup, s.backup);
    for name in ["end of archive", "amcheck", "check `select true`"] {
        let c = r.checks.iter().find(|c| c.name == name).unwrap();
        assert_eq!(c.outcome, Outcome::Passed, "{c:?}");
    }
    let cs = r
        .checks
        .iter()
        .find(|c| c.name == "data checksums")
        .unwrap();
    // initdb enables data checksums by default from PostgreSQL 18 on
    if checksums_on {
        assert_eq!(cs.outcome, Outcome::Passed, "{cs:?}");
        assert!(cs.detail.contains("verified"), "{cs:?}");
    } else {
        assert_eq!(cs.outcome, Outcome::Skipped, "{cs:?}");
        assert!(cs.detail.contains("not enabled"), "{cs:?}");
    }
    // RPO: the age of the test's last commit when the drill started. The test timed the commit
    // (just before it, on the primary's clock) and the drill's start (just before spawning it;
    // the drill's own clock reading comes a process start later, on a loaded machine up to a
    // second or so).
    let rpo = r.rpo_seconds.unwrap();
    let expected_rpo = drill_started - commit_at;
    assert!(
        rpo > expected_rpo - 0.1 && rpo < expected_rpo + 2.0 && rpo > 1.0,
        "RPO {rpo} s, the test measured {expected_rpo:.3} s"
    );
    assert!(
        (rpo - (r.started_at - commit_at)).abs() < 0.1,
        "RPO {rpo} s is not the drill's start ({}) minus the test's commit ({commit_at})",
        r.started_at
    );
    assert!((r.last_commit_at.unwrap() - commit_at).abs() < 0.1);
    // RTO: inside the drill's own run time, after the files and consistency.
    let (restore, consistent, rto) = (
        r.restore_seconds.unwrap(),
        r.consistent_seconds.unwrap(),
        r.rto_seconds.unwrap(),
    );
    assert!(
        0.0 < restore && restore <= consistent && consistent <= rto && rto < elapsed,
        "restore {restore}, consistent {consistent}, RTO {rto}, drill ran {elapsed}"
    );
    assert!(r.started_at >= drill_started && r.finished_at - r.started_at <= elapsed);
    // Bytes: the backup's files, and WAL from its start to past the test's last commit.
    let manifest =
        fs::read_to_string(s.repo.join("backups").join(&s.backup).join("manifest.toml")).unwrap();
    let original: u64 = manifest
        .lines()
        .find_map(|l| l.strip_prefix("original_bytes = "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(r.bytes_restored, original);
    let lsn = |s: &str| {
        let (a, b) = s.split_once('/').unwrap();
        (u64::from_str_radix(a, 16).unwrap() << 32) + u64::from_str_radix(b, 16).unwrap()
    };
    assert!(lsn(r.replayed_to_lsn.as_ref().unwrap()) >= lsn(&lsn_after_commit));
    assert!(r.bytes_replayed > 0);
    assert!(out.contains("RTO ") && out.contains("RPO "), "{out}");

    // verify accepts a repository with drill records.
    let (code, out) = common::verify(&s.repo);
    assert_eq!(code, 0, "{out}");
    // status, status --prometheus and check report it.
    let (code, out) = output(walship_as_pg(&s.ws, &s.cfg).arg("status"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("last drill: backup {} passed", s.backup)),
        "{out}"
    );
    let (code, out) = output(walship_as_pg(&s.ws, &s.cfg).args(["status", "--prometheus"]));
    assert_eq!(code, 0, "{out}");
    let gauge = |name: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("walship_{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .parse()
            .unwrap()
    };
    assert_eq!(gauge("drill_last_success_timestamp_seconds"), r.finished_at);
    assert_eq!(gauge("drill_rto_seconds"), rto);
    assert_eq!(gauge("drill_rpo_seconds"), rpo);
    assert_eq!(gauge("drill_last_passed"), 1.0);
    let (code, out) = check(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok    a drill passed 0.0 days ago"), "{out}");
    let (code, out) = check(&["--drill-max-age", "0"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("WARN  the last drill that passed was"),
        "{out}"
    );
}

#[test]
fn a_failed_drill_says_what_failed_and_leaves_nothing_behind() {
    let s = setup("[drill]\nchecks = ['select count(*) = 0 from orders']\n");
    s.p.switch_and_wait_archived(TIMEOUT).unwrap();
    let before = repo_files(&s.repo);
    let connections = primary_connections(&s.p);
    let scratch = s.ws.path().join("scratch");
    let mut outcomes = 0;
    let mut after = |code: i32, out: &str, want_code: i32, want: &str| {
        eprintln!("{out}");
        assert_eq!(code, want_code, "{out}");
        assert!(out.contains(want), "wanted {want:?} in:\n{out}");
        assert!(!scratch.exists(), "the scratch directory is left: {out}");
        assert_eq!(processes_using(&scratch), Vec::<String>::new());
        outcomes += 1;
        let records = drill_records(&s.repo);
        assert_eq!(records.len(), outcomes, "one record per drill");
        let r = records.last().unwrap();
        assert!(!r.passed && !r.failure.is_empty(), "{r:?}");
        r.failure.clone()
    };

    // 1. A user check that returns false.
    let (code, out) = drill(&s, &scratch, &[]);
    let why = after(
        code,
        &out,
        5,
        "FAIL  check `select count(*) = 0 from orders`: returned",
    );
    assert!(why.contains("returned [\"f\"], not true"), "{why}");

    // 2. The stored backup object damaged: restore's checks refuse it.
    let object = s.repo.join("backups").join(&s.backup).join("data.tar.zst");
    let good = fs::read(&object).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x5a;
    fs::write(&object, &bad).unwrap();
    let (code, out) = drill(&s, &scratch, &[]);
    let why = after(code, &out, 5, "drill: ERROR");
    assert!(why.contains(&s.backup) || why.contains("data.tar"), "{why}");
    fs::write(&object, &good).unwrap();

    // 3. A segment in the replay range damaged: the copy stops, the segment is named.
    let mut segs: Vec<PathBuf> = common::names_below(&s.repo.join("wal"))
        .into_iter()
        .filter(|n| n.len() == 24)
        .map(|n| s.repo.join("wal").join(&n[..16]).join(n))
        .collect();
    segs.sort();
    let victim = segs[segs.len() - 2].clone();
    let victim_name = victim.file_name().unwrap().to_string_lossy().into_owned();
    let good = fs::read(&victim).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - 10;
    bad[at] ^= 0xff;
    fs::write(&victim, &bad).unwrap();
    let (code, out) = drill(&s, &scratch, &[]);
    let why = after(code, &out, 5, &victim_name);
    assert!(why.contains("stopped during recovery"), "{why}");
    fs::write(&victim, &good).unwrap();

    // 3b. A segment missing from the replay range: PostgreSQL ends recovery early and opens;
    // the end-of-archive check names the segment it could not replay.
    let hole = segs[segs.len() - 3].clone();
    let hole_name = hole.file_name().unwrap().to_string_lossy().into_owned();
    let aside = s.ws.path().join("aside");
    fs::rename(&hole, &aside).unwrap();
    let (code, out) = drill(&s, &scratch, &[]);
    let why = after(code, &out, 5, "FAIL  end of archive: replay ended at");
    assert!(
        why.contains(&format!("segment {hole_name} could not be replayed")),
        "{why}"
    );
    fs::rename(&aside, &hole).unwrap();

    // 4. A scratch file system too small for the backup: refused before anything is written.
    if let Some(tmpfs) = common::Tmpfs::try_mount(&s.ws, "small", 8 << 10) {
        let (code, out) = drill(&s, &tmpfs.path, &[]);
        assert_eq!(code, 3, "{out}");
        assert!(out.contains("needed") && out.contains("more)"), "{out}");
        assert_eq!(fs::read_dir(&tmpfs.path).unwrap().count(), 0, "{out}");
        outcomes += 1;
        assert_eq!(drill_records(&s.repo).len(), outcomes);
    }

    // 5. Scratch directories the drill refuses: a symlink, a directory with someone's files.
    let real = s.ws.mkdir("real");
    let link = s.ws.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (code, out) = drill(&s, &link, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is a symbolic link"), "{out}");
    s.ws.tools.write_file(&real.join("precious"), "x").unwrap();
    let (code, out) = drill(&s, &real, &[]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("is not empty (precious)"), "{out}");
    assert_eq!(
        fs::read_dir(&real).unwrap().count(),
        1,
        "only precious stays"
    );
    let (code, out) = drill(&s, &s.repo.join("scratch"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is inside the repository"), "{out}");

    assert_eq!(
        repo_files(&s.repo),
        before,
        "the drill wrote to the repository"
    );
    assert_eq!(primary_connections(&s.p), connections);

    // status and check report the failure.
    let (code, out) = output(walship_as_pg(&s.ws, &s.cfg).arg("status"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("last drill: FAILED") && out.contains("no drill has passed"),
        "{out}"
    );
    let (code, out) = output(walship_as_pg(&s.ws, &s.cfg).args(["status", "--prometheus"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("walship_drill_last_passed 0"), "{out}");
    assert!(
        !out.contains("walship_drill_last_success_timestamp_seconds"),
        "{out}"
    );
    let (code, out) = output(
        walship_as_pg(&s.ws, &s.cfg)
            .arg("--pgdata")
            .arg(&s.p.data)
            .arg("check"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("WARN  the last drill failed: "), "{out}");
    assert!(out.contains("WARN  no drill has ever passed"), "{out}");

    // 6. A damaged index in the backup (damaged on the primary, then backed up as it was):
    // amcheck fails the drill and names the database.
    let mut p = s.p;
    p.psql("CREATE INDEX orders_pad ON orders (pad, id)")
        .unwrap();
    let file = p.psql("SELECT pg_relation_filepath('orders_pad')").unwrap();
    p.psql("CHECKPOINT").unwrap();
    p.stop().unwrap();
    let path = p.data.join(file);
    let mut bytes = fs::read(&path).unwrap();
    // the tuples at the end of the first leaf page (block 1; block 0 is the metapage)
    for b in &mut bytes[2 * 8192 - 3000..2 * 8192 - 100] {
        *b = 0x7f;
    }
    fs::write(&path, &bytes).unwrap();
    p.start().unwrap();
    let (code, out) = output(
        walship_as_pg(&s.ws, &s.cfg)
            .arg("--pgdata")
            .arg(&p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 0, "{out}");
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    let (code, out) = drill_with(&s.ws, &s.cfg, &scratch);
    eprintln!("{out}");
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("FAIL  amcheck: database postgres: "), "{out}");
    assert!(!scratch.exists(), "{out}");
}

fn drill_with(ws: &Workspace, cfg: &Path, scratch: &Path) -> (i32, String) {
    output(
        walship_as_pg(ws, cfg)
            .arg("drill")
            .arg("--scratch")
            .arg(scratch),
    )
}

/// The postmaster PID of the copy in `scratch`, once it runs.
fn copy_postmaster(scratch: &Path) -> Option<i32> {
    fs::read_to_string(scratch.join("pgdata/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| common::proc_stat_field(&s, 0) == Some("Z"))
            .unwrap_or(true)
}

#[test]
fn a_killed_drill_takes_its_copy_along_and_two_drills_never_share_a_scratch_directory() {
    // The check sleeps, so that the first drill is still running when the test acts.
    let s = setup("[drill]\nchecks = ['select true from pg_sleep(3)']\n");
    s.p.switch_and_wait_archived(TIMEOUT).unwrap();
    let scratch = s.ws.path().join("scratch");
    let spawn = || {
        walship_as_pg(&s.ws, &s.cfg)
            .arg("drill")
            .arg("--scratch")
            .arg(&scratch)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // 1. Two at once: the second is refused, the first goes on and passes.
    let first = spawn();
    wait_for("the first drill's copy", || {
        Ok(copy_postmaster(&scratch).is_some())
    });
    let (code, out) = drill(&s, &scratch, &[]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("is in use by another drill (pid "), "{out}");
    let out = first.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!scratch.exists(), "{text}");

    // 2. Killed mid-way (SIGKILL: no handler runs): its copy goes down with it...
    let mut victim = spawn();
    wait_for("the drill's copy", || {
        Ok(copy_postmaster(&scratch).is_some())
    });
    let postmaster = copy_postmaster(&scratch).unwrap();
    for p in common::descendants(victim.id() as i32) {
        let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("walship") && cmdline.contains("drill") {
            // SAFETY: the test's own child process, by PID.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    let _ = victim.wait();
    wait_for("the killed drill's copy to stop", || Ok(!alive(postmaster)));
    assert!(
        scratch.join("pgdata").exists(),
        "the files stay until the next drill"
    );
    // ... and the next drill on that scratch directory removes what it left, then passes.
    let (code, out) = drill(&s, &scratch, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("holds what a drill that did not finish left"),
        "{out}"
    );
    assert!(!scratch.exists(), "{out}");

    // 3. The repository goes away mid-drill: the drill fails with exit 3 and cannot record.
    let mut third = spawn();
    wait_for("the drill's copy", || {
        Ok(copy_postmaster(&scratch).is_some())
    });
    let moved = s.ws.path().join("repo-away");
    fs::rename(&s.repo, &moved).unwrap();
    let code = ha::wait_exit(&mut third, TIMEOUT, "the drill without its repository");
    let mut text = String::new();
    use std::io::Read;
    third
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    third
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    fs::rename(&moved, &s.repo).unwrap();
    eprintln!("{text}");
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("NOT RECORDED"), "{text}");
    assert!(!scratch.exists(), "{text}");
}

#[test]
fn data_checksums_are_verified_and_a_repository_without_stored_backups_is_said_so() {
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = ha::config(&ws, &repo, "");
    let mut p = Cluster::init(
        &ws.tools,
        &ws.path().join("primary"),
        walship::pg::cluster::free_port().unwrap(),
        1,
    )
    .unwrap();
    let mut enable = ws.tools.command("pg_checksums");
    enable.arg("--enable").arg("-D").arg(&p.data);
    // (already on where initdb enables them by default, PostgreSQL 18 on)
    if let Err(e) = ws.tools.run(enable, "pg_checksums --enable") {
        assert!(e.message.contains("already enabled"), "{e}");
    }
    // Debian's layout: the configuration outside the data directory, so not in the backup.
    let etc = ws.mkdir("etc");
    for f in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
        fs::rename(p.data.join(f), etc.join(f)).unwrap();
    }
    let mut conf = fs::read_to_string(etc.join("postgresql.conf")).unwrap();
    conf.push_str(&format!(
        "archive_mode = on\narchive_command = '{} --config {} push %p %f'\nmax_connections = 120\n\
         hba_file = '{etc}/pg_hba.conf'\nident_file = '{etc}/pg_ident.conf'\n",
        ws.walship_bin().display(),
        cfg.display(),
        etc = etc.display()
    ));
    fs::write(etc.join("postgresql.conf"), conf).unwrap();
    let mut start = ws.tools.command("pg_ctl");
    start
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(&p.data)
        .arg("-l")
        .arg(&p.log)
        .arg("-o")
        .arg(format!("-c config_file={}/postgresql.conf", etc.display()));
    ws.tools
        .run(start, "pg_ctl start")
        .unwrap_or_else(|e| panic!("{e}: {}", fs::read_to_string(&p.log).unwrap_or_default()));
    p.adopt_running();
    p.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        .unwrap();
    p.base_backup(&ws.path().join("pg_basebackup")).unwrap();
    let s = Setup {
        ws,
        repo,
        cfg,
        p,
        backup: String::new(),
    };
    let scratch = s.ws.path().join("scratch");
    let (code, out) = drill(&s, &scratch, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("holds no stored base backup"), "{out}");
    assert!(out.contains("pg_basebackup"), "{out}");
    assert!(!scratch.exists(), "{out}");

    let (code, out) = output(
        walship_as_pg(&s.ws, &s.cfg)
            .arg("--pgdata")
            .arg(&s.p.data)
            .arg("basebackup"),
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = drill(&s, &scratch, &[]);
    eprintln!("{out}");
    assert_eq!(code, 0, "{out}");
    let r = drill_records(&s.repo).pop().unwrap();
    let c = r
        .checks
        .iter()
        .find(|c| c.name == "data checksums")
        .unwrap();
    assert_eq!(c.outcome, Outcome::Passed, "{c:?}");
    assert!(c.detail.contains("every page of"), "{c:?}");
    assert!(out.contains("the backup has no postgresql.conf"), "{out}");

    // --target-time: the copy recovers to the target and no further.
    let before: f64 =
        s.p.psql("INSERT INTO t VALUES (-1) RETURNING extract(epoch FROM clock_timestamp())")
            .unwrap()
            .parse()
            .unwrap();
    let target = s.p.psql("SELECT clock_timestamp()").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    s.p.psql("INSERT INTO t VALUES (-2)").unwrap();
    s.p.switch_and_wait_archived(TIMEOUT).unwrap();
    let (code, out) = drill(&s, &scratch, &["--target-time", &target]);
    assert_eq!(code, 0, "{out}");
    let r = drill_records(&s.repo).pop().unwrap();
    assert_eq!(r.target_time.as_deref(), Some(target.as_str()));
    let last = r.last_commit_at.unwrap();
    assert!(
        last >= before && last < before + 1.0,
        "recovered to a commit at {last}, the target row committed at {before}: {out}"
    );
    assert_eq!(r.rpo_seconds, None, "no RPO for a point in time");
    assert!(!scratch.exists());

    // --keep: the copy stays, stopped, with the settings that kept it away from everything.
    let (code, out) = drill(&s, &scratch, &["--keep"]);
    assert_eq!(code, 0, "{out}");
    let pgdata = scratch.join("pgdata");
    assert!(pgdata.join("global/pg_control").exists(), "{out}");
    assert!(
        !pgdata.join("postmaster.pid").exists(),
        "the kept copy still runs"
    );
    let conf = fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
    let after_drill = conf.split("written by walship drill").nth(1).unwrap();
    for setting in [
        "archive_mode = 'off'",
        "primary_conninfo = ''",
        "listen_addresses = ''",
        "archive_cleanup_command = ''",
        "recovery_end_command = ''",
        "fetch --until ",
    ] {
        assert!(after_drill.contains(setting), "{setting} missing:\n{conf}");
    }
    assert!(
        !conf.contains("reader advance"),
        "a drill takes no reader hold:\n{conf}"
    );
    fs::remove_dir_all(&scratch).unwrap();
}

fn wait_for(what: &str, f: impl FnMut() -> walship::error::Result<bool>) {
    wait_until(TIMEOUT, what, f).unwrap();
}

#[test]
fn a_drill_restores_from_an_ssh_repository() {
    let ws = Workspace::new();
    let sshd = common::Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    let cfg = sshd.config(&ws, &repo, "walship-ssh.toml");
    let p = ha::primary(&ws, &cfg);
    ha::basebackup(&ws, &cfg, &p);
    p.psql("CREATE TABLE after_backup AS SELECT g FROM generate_series(1, 5000) g")
        .unwrap();
    p.switch_and_wait_archived(TIMEOUT).unwrap();
    let s = Setup {
        ws,
        repo,
        cfg,
        p,
        backup: String::new(),
    };
    let scratch = s.ws.path().join("scratch");
    // And a PGUSER the cluster has no role for: the drill falls back to postgres.
    let (code, out) = output(
        walship_as_pg(&s.ws, &s.cfg)
            .env("PGUSER", "no_such_role")
            .arg("drill")
            .arg("--scratch")
            .arg(&scratch),
    );
    assert_eq!(code, 0, "{out}");
    let r = drill_records(&s.repo).pop().unwrap();
    assert!(r.passed && r.rto_seconds.is_some(), "{r:?}");
    assert!(!scratch.exists(), "{out}");
    drop(sshd);
}
