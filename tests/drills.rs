//! Fault drills: walship's promise ("never lose a segment") as a measured fact. Each drill prints
//! `DRILL | fault | tried | survived | bytes lost` lines, which the README's table quotes.
//!
//! `cargo test --release --test drills -- --nocapture` runs the short version (CI runs it with
//! the rest of the suite); `WALSHIP_DRILLS=full` runs the full one (200 crashes during push, 10
//! primary kills), about 5 minutes on 2 cores.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::drill::{full, push_segment, report, seg};
use common::ha::*;
use common::*;
use walship::pg::cluster::wait_until;

const SYSID: u64 = 7_400_000_000_000_000_007;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Every object of `repo` (by its local path) not checked yet must fetch back to exactly the
/// source segment: a killed writer may leave temporaries, never a visible partial or wrong object.
fn check_visible(repo: &Path, pg_wal: &Path, checked: &mut HashSet<String>) -> Result<(), String> {
    for name in names_below(&repo.join("wal")) {
        if name.starts_with('.') || checked.contains(&name) {
            continue;
        }
        let dest = repo.parent().unwrap().join("check");
        let (code, err) = run(walship()
            .arg("--repo")
            .arg(repo)
            .args(["--prefetch", "0", "fetch", &name])
            .arg(&dest));
        if code != 0 {
            return Err(format!("{name} is visible but does not fetch: {err}"));
        }
        if fs::read(&dest).unwrap() != fs::read(pg_wal.join(&name)).unwrap() {
            return Err(format!("{name} fetched different bytes"));
        }
        checked.insert(name);
    }
    Ok(())
}

/// Push `count` segments one call at a time as the archiver does, SIGKILLing the call, the
/// push-ahead worker or both at a random moment of each call; PostgreSQL's retry follows.
fn crash_during_push(
    label: &str,
    repo_args: &[String],
    repo: &Path,
    root: &Path,
    count: u64,
    seed: u64,
) {
    let pg_wal = root.join("pgdata/pg_wal");
    fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
    for i in 1..=count {
        write_segment(&pg_wal, &seg(i), SYSID, i);
        fs::write(pg_wal.join(format!("archive_status/{}.ready", seg(i))), "").unwrap();
    }
    let call = || {
        let mut c = walship();
        c.args(repo_args)
            .args(["--worker-idle-timeout", "2"])
            .current_dir(root.join("pgdata"));
        c
    };
    let mut rng = Rng(seed);
    let (mut survived, mut kills) = (0, 0);
    let mut checked = HashSet::new();
    for i in 1..=count {
        let name = seg(i);
        let mut child = call()
            .arg("push")
            .arg(format!("pg_wal/{name}"))
            .arg(&name)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        let what = rng.below(3);
        if what != 1 {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            kills += 1;
        }
        if what != 0
            && let Some(pid) = worker_pid(&pg_wal, "push-")
        {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            kills += 1;
        }
        let mut ok = child.wait().unwrap().success();
        let visible = check_visible(repo, &pg_wal, &mut checked);
        if !ok {
            // PostgreSQL calls again until it gets exit 0
            for _ in 0..3 {
                if run(call().arg("push").arg(format!("pg_wal/{name}")).arg(&name)).0 == 0 {
                    ok = true;
                    break;
                }
            }
        }
        let st = pg_wal.join("archive_status");
        if ok {
            fs::rename(
                st.join(format!("{name}.ready")),
                st.join(format!("{name}.done")),
            )
            .unwrap();
        }
        match (ok, visible) {
            (true, Ok(())) => survived += 1,
            (_, Err(e)) => eprintln!("{label}: {name}: {e}"),
            (false, _) => eprintln!("{label}: {name}: the retried push did not succeed"),
        }
    }
    // the end state: every segment fetches back, verify is clean
    let mut lost = 0;
    checked.clear();
    if let Err(e) = check_visible(repo, &pg_wal, &mut checked) {
        eprintln!("{label}: {e}");
    }
    for i in 1..=count {
        if !checked.contains(&seg(i)) {
            lost += u64::from(MIB);
        }
    }
    let verified = verify(repo);
    report(
        &format!("crash during push ({label}; {kills} SIGKILLs)"),
        count,
        survived,
        lost,
    );
    assert_eq!(verified.0, 0, "{}", verified.1);
    assert_eq!((survived, lost), (count, 0), "{label}");
    assert!(kills >= count / 2, "only {kills} kills");
}

#[test]
fn drill_crash_during_push_local_and_ssh() {
    let (local_n, ssh_n) = if full() { (100, 100) } else { (20, 10) };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    fs::create_dir(&repo).unwrap();
    let args = vec!["--repo".to_string(), repo.display().to_string()];
    crash_during_push(
        "local",
        &args,
        &repo,
        dir.path(),
        local_n,
        0x1234_5678_9abc_def1,
    );

    let ws = Workspace::new();
    let sshd = Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    let config = sshd.config(&ws, &repo, "walship.toml");
    let args = vec!["--config".to_string(), config.display().to_string()];
    let root = ws.mkdir("work");
    crash_during_push("SSH", &args, &repo, &root, ssh_n, 0x0fed_cba9_8765_4321);
}

/// One kill-the-primary cycle: a primary under pgbench with a streaming standby watched by
/// `walship watch`; SIGKILL of the postmaster at a random moment. Returns (rows that had to
/// survive, rows lost, RPO bytes, RTO).
fn kill_the_primary(seed: u64) -> (usize, usize, u64, Duration) {
    let mut rng = Rng(seed);
    let ws = Workspace::new();
    let repo = ws.mkdir("repo");
    let cfg = config(&ws, &repo, "");
    let p = primary(&ws, &cfg);
    p.psql("CREATE TABLE ticks (id bigserial PRIMARY KEY)")
        .unwrap();
    let mut s = standby(&ws, &p, &cfg, true);
    s.start().unwrap();
    let mut watch = spawn_failover_watch(&ws, &cfg, &s, &p, 2, "true", Stdio::null());
    let load = Duration::from_millis(1000 + rng.below(3000));
    let (ticks, killed) = load_then_kill(&p, load);
    assert_eq!(wait_exit(&mut watch, TIMEOUT, "watch"), 0);
    wait_until(TIMEOUT, "the new primary to accept writes", || {
        Ok(s.psql("INSERT INTO ticks DEFAULT VALUES").is_ok())
    })
    .unwrap();
    let rto = killed.elapsed();
    let archived_end = archived_end_of_timeline_1(&repo);
    let (must, lost) = archived_rows_lost(&s, &ticks, archived_end);
    let lost = lost.len();
    let last_written = ticks.iter().map(|t| t.1).max().unwrap_or(0);
    s.stop().unwrap();
    (
        must.len(),
        lost,
        last_written.saturating_sub(archived_end),
        rto,
    )
}

#[test]
fn drill_kill_the_primary_under_load() {
    let cycles = if full() { 10 } else { 2 };
    let (mut tried, mut survived, mut lost_rows) = (0, 0, 0);
    for c in 0..cycles {
        let (must, lost, rpo, rto) = kill_the_primary(0x5151_0000 + c);
        println!(
            "kill the primary, cycle {}: {must} archived rows checked, {lost} lost; RPO {rpo} bytes of WAL not yet archived; RTO {:.1} s",
            c + 1,
            rto.as_secs_f64()
        );
        tried += 1;
        if lost == 0 && must > 0 {
            survived += 1;
        }
        lost_rows += lost;
    }
    report(
        "SIGKILL of the primary under pgbench, watch fails over",
        tried,
        survived,
        lost_rows as u64,
    );
    assert_eq!(lost_rows, 0);
    assert_eq!(survived, tried);
}

/// One bad input: what is run, the exit code and the words the message must contain.
struct Case {
    what: &'static str,
    args: Vec<String>,
    code: i32,
    says: &'static str,
}

fn case(what: &'static str, args: &[impl AsRef<str>], code: i32, says: &'static str) -> Case {
    Case {
        what,
        args: args.iter().map(|s| s.as_ref().to_string()).collect(),
        code,
        says,
    }
}

#[test]
fn drill_bad_input_corpus() {
    let ws = Workspace::new();
    let root = ws.path();
    let repo = root.join("repo");
    fs::create_dir(&repo).unwrap();
    let pgdata = root.join("pgdata");
    let pg_wal = pgdata.join("pg_wal");
    let r = repo.display().to_string();
    // a repository with segment 1 of this cluster
    write_segment(&pg_wal, &seg(1), SYSID, 1);
    let first = run(walship()
        .args(["--repo", &r, "push"])
        .arg(format!("pg_wal/{}", seg(1)))
        .arg(seg(1))
        .current_dir(&pgdata));
    assert_eq!(first.0, 0, "{}", first.1);
    // bad WAL files
    write_segment(&pg_wal, &seg(2), SYSID, 2);
    let good = fs::read(pg_wal.join(seg(2))).unwrap();
    fs::write(pg_wal.join(seg(3)), &good[..good.len() / 2]).unwrap();
    let mut b = good.clone();
    b[0] ^= 0xFF;
    fs::write(pg_wal.join(seg(4)), &b).unwrap();
    fs::write(pg_wal.join(seg(5)), &good).unwrap(); // segment 2's page address under name 5
    write_segment(&pg_wal, &seg(7), SYSID + 1, 7); // another cluster
    fs::write(pg_wal.join(seg(8)), vec![0u8; MIB as usize]).unwrap();
    let mut big = segment_bytes(&seg(9), SYSID, MIB, 9);
    big.extend_from_slice(&vec![0u8; MIB as usize]);
    fs::write(pg_wal.join(seg(9)), big).unwrap();
    fs::write(pg_wal.join(seg(10)), b"").unwrap();
    fs::write(pg_wal.join(format!("{}.partial", seg(11))), &good).unwrap();
    // configuration files
    let cfg = |name: &str, text: &str| {
        let p = root.join(name);
        fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let unknown_key = cfg(
        "unknown.toml",
        &format!("repo = '{r}'\ncompresion = 'zstd'\n"),
    );
    let bad_toml = cfg("bad.toml", "repo = [unterminated\n");
    let lz4 = cfg("lz4.toml", &format!("repo = '{r}'\ncompression = 'lz4'\n"));
    let level = cfg(
        "level.toml",
        &format!("repo = '{r}'\ncompression = 'bzip2'\ncompression_level = 12\n"),
    );
    let timeout = cfg("timeout.toml", &format!("repo = '{r}'\nssh_timeout = 0\n"));
    let typed = cfg("typed.toml", &format!("repo = '{r}'\nprefetch = 'many'\n"));
    let missing_cfg = root.join("nope.toml").display().to_string();
    // repositories in bad shape
    let not_a_dir = cfg("file-repo", "x");
    let gone = root.join("gone").display().to_string();
    let future = root.join("future");
    fs::create_dir(&future).unwrap();
    fs::write(
        future.join("walship.repo"),
        "format = \"walship\"\nversion = 99\n",
    )
    .unwrap();
    let future = future.display().to_string();
    let newer = root.join("newer");
    fs::create_dir(&newer).unwrap();
    fs::write(
        newer.join("walship.repo"),
        "format = \"walship\"\nversion = 2\nmin_reader_version = \"42.0.0\"\n",
    )
    .unwrap();
    let newer = newer.display().to_string();
    let identity_dir = |name: &str, text: &str| {
        let d = root.join(name);
        fs::create_dir(&d).unwrap();
        fs::write(d.join("walship.repo"), text).unwrap();
        d.display().to_string()
    };
    let no_minimum = identity_dir(
        "no-minimum",
        "format = \"walship\"\nversion = 2\nsystem_identifier = \"1\"\npg_version = 15\n\
         wal_segment_size = 16777216\ncreated_by = \"walship 0.2.0\"\n",
    );
    let bad_minimum = identity_dir(
        "bad-minimum",
        "format = \"walship\"\nversion = 2\nmin_reader_version = \"soon\"\n",
    );
    let foreign = root.join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::write(
        foreign.join("walship.repo"),
        "format = \"something-else\"\nversion = 1\n",
    )
    .unwrap();
    let foreign = foreign.display().to_string();
    let empty = root.join("empty");
    fs::create_dir(&empty).unwrap();
    let empty = empty.display().to_string();
    let damaged = |case: &str| {
        let to = root.join(format!("damaged-{case}"));
        let from =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/damaged/{case}/repo"));
        copy_tree(&from, &to);
        to.display().to_string()
    };
    let flipped = damaged("flipped-byte");
    let truncated = damaged("truncated-object");
    let header = damaged("damaged-header");
    let renamed = damaged("flipped-byte");
    fs::copy(
        Path::new(&renamed).join("wal/0000000100000000/000000010000000000000003"),
        Path::new(&renamed).join("wal/0000000100000000/000000010000000000000005"),
    )
    .unwrap();
    // SSH: a real server, a known_hosts without it, and one with another key for it
    let sshd = Sshd::start(&ws, "sshd");
    let url = sshd.url(&repo);
    let key = sshd.client_key.display().to_string();
    let empty_kh = cfg("empty_known_hosts", "");
    let client_pub = fs::read_to_string(format!("{key}.pub")).unwrap();
    let other_key = client_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let changed_kh = cfg(
        "changed_known_hosts",
        &format!("[127.0.0.1]:{} {other_key}\n", sshd.port),
    );
    // the same, hashed as `ssh-keyscan -H` writes it; and only a key of another type (ecdsa)
    let hashed_changed_kh = {
        use base64::Engine;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let salt = b"twenty bytes of salt";
        let mac =
            walship::hashing::hmac_sha1(salt, format!("[127.0.0.1]:{}", sshd.port).as_bytes());
        cfg(
            "hashed_changed_known_hosts",
            &format!("|1|{}|{} {other_key}\n", b64.encode(salt), b64.encode(mac)),
        )
    };
    let ecdsa = root.join("ecdsa_key");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
            .arg(&ecdsa)
            .status()
            .unwrap()
            .success()
    );
    let ecdsa_pub = fs::read_to_string(ecdsa.with_extension("pub")).unwrap();
    let ecdsa_pub: Vec<&str> = ecdsa_pub.split_whitespace().take(2).collect();
    let other_type_kh = cfg(
        "other_type_known_hosts",
        &format!("[127.0.0.1]:{} {}\n", sshd.port, ecdsa_pub.join(" ")),
    );
    // a data directory that belongs to root (when the drill runs as root)
    let rooted = root.join("rooted");
    fs::create_dir(&rooted).unwrap();
    fs::write(rooted.join("PG_VERSION"), "15\n").unwrap();
    let rooted = rooted.display().to_string();

    // a restored snapshot of this cluster: same system identifier, other bytes under a name
    // already archived
    let snapshot = root.join("snapshot/pg_wal");
    write_segment(&snapshot, &seg(1), SYSID, 99);
    let snapshot_seg = snapshot.join(seg(1)).display().to_string();
    // an archived copy of segment 2 whose payload rotted under an intact header
    let rotted = root.join("rotted");
    fs::create_dir(&rotted).unwrap();
    let rotted_r = rotted.display().to_string();
    for n in [1, 2] {
        let (code, out) = run(walship()
            .args(["--repo", &rotted_r, "push"])
            .arg(format!("pg_wal/{}", seg(n)))
            .arg(seg(n))
            .current_dir(&pgdata));
        assert_eq!(code, 0, "{out}");
    }
    let rotted_object = rotted.join(format!("wal/{}/{}", &seg(2)[..16], seg(2)));
    let mut bytes = fs::read(&rotted_object).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&rotted_object, bytes).unwrap();
    // an object whose (consistent) header claims a terabyte
    let oversize = root.join("oversize");
    copy_tree(&rotted, &oversize);
    let oversize_object = oversize.join(format!("wal/{}/{}", &seg(1)[..16], seg(1)));
    let mut bytes = fs::read(&oversize_object).unwrap();
    let mut h = walship::repo::ObjectHeader::decode(&bytes, &seg(1)).unwrap();
    h.original_len = 1 << 40;
    bytes[..128].copy_from_slice(&h.encode());
    fs::write(&oversize_object, bytes).unwrap();
    let oversize = oversize.display().to_string();
    // a reader record that cannot be read
    let bad_reader = root.join("bad-reader");
    copy_tree(&rotted, &bad_reader);
    fs::create_dir(bad_reader.join("readers")).unwrap();
    fs::write(bad_reader.join("readers/r-1.1.toml"), "id = [").unwrap();
    let bad_reader = bad_reader.display().to_string();
    let rotted_ssh = root.join("rotted-ssh");
    copy_tree(&rotted, &rotted_ssh);
    chown_to_pg_user(&ws, &rotted_ssh);
    let rotted_url = sshd.url(&rotted_ssh);
    let good_kh = sshd.known_hosts.display().to_string();
    let s = |n: u64| seg(n);
    let p = |n: &str| format!("pg_wal/{n}");
    let names: Vec<String> = (1..=11).map(s).collect();
    let push = |name: &str| {
        vec![
            "--repo".to_string(),
            r.clone(),
            "push".into(),
            p(name),
            name.into(),
        ]
    };
    let mut cases: Vec<Case> = vec![
        // names
        case(
            "empty %f",
            &["--repo", &r, "push", "pg_wal/x", ""],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f with ..",
            &[
                "--repo",
                &r,
                "push",
                "pg_wal/x",
                "../000000010000000000000001",
            ],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f with a slash",
            &[
                "--repo",
                &r,
                "push",
                "pg_wal/x",
                "a/000000010000000000000001",
            ],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f lower case",
            &["--repo", &r, "push", "pg_wal/x", "00000001000000000000000a"],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f too short",
            &["--repo", &r, "push", "pg_wal/x", "0000000100000000000001"],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f with .tmp",
            &[
                "--repo",
                &r,
                "push",
                "pg_wal/x",
                "000000010000000000000001.tmp",
            ],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f history compressed",
            &["--repo", &r, "push", "pg_wal/x", "00000002.history.gz"],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f partial with a suffix",
            &[
                "--repo",
                &r,
                "push",
                "pg_wal/x",
                "000000010000000000000001.partial.1",
            ],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f absolute path",
            &["--repo", &r, "push", "/etc/passwd", "/etc/passwd"],
            2,
            "is not a WAL file name",
        ),
        case(
            "%f backup offset 7 digits",
            &[
                "--repo",
                &r,
                "push",
                "pg_wal/x",
                "000000010000000000000001.0000028.backup",
            ],
            2,
            "is not a WAL file name",
        ),
        case(
            "fetch ../",
            &["--repo", &r, "fetch", "../x", "/tmp/x"],
            2,
            "is not a WAL file name",
        ),
        case(
            "fetch RECOVERYXLOG",
            &["--repo", &r, "fetch", "RECOVERYXLOG", "/tmp/x"],
            2,
            "is not a WAL file name",
        ),
        case(
            "fetch upper-case suffix",
            &["--repo", &r, "fetch", "00000002.HISTORY", "/tmp/x"],
            2,
            "is not a WAL file name",
        ),
        // paths
        case(
            "%p not ending in %f",
            &["--repo", &r, "push", &p(&names[1]), &names[0]],
            2,
            "does not end in the file name",
        ),
        // regression: this exited 1, which the exit code table reserves for fetch's "not in the archive"
        case(
            "%p missing",
            &["--repo", &r, "push", &p(&s(40)), &s(40)],
            2,
            "No such file",
        ),
        case(
            "relative repository",
            &["--repo", "archive/wal", "status"],
            2,
            "relative path",
        ),
        case(
            "empty repository location",
            &["--repo", "", "status"],
            2,
            "empty",
        ),
        case(
            "repository is a file",
            &["--repo", &not_a_dir, "status"],
            2,
            "not a directory",
        ),
        case(
            "repository missing",
            &["--repo", &gone, "fetch", &names[0], "/tmp/x"],
            3,
            "does not exist",
        ),
        // WAL headers
        case("truncated segment", &push(&names[2]), 5, "bytes"),
        case("wrong magic", &push(&names[3]), 5, "magic"),
        case(
            "page address of another segment",
            &push(&names[4]),
            5,
            "page address",
        ),
        case(
            "another cluster's segment",
            &push(&names[6]),
            4,
            "system identifier",
        ),
        case("zero-filled segment", &push(&names[7]), 5, "magic"),
        case(
            "segment longer than its header says",
            &push(&names[8]),
            5,
            "bytes",
        ),
        case("empty segment", &push(&names[9]), 5, "bytes"),
        case(
            "partial with the wrong page address",
            &[
                "--repo",
                &r,
                "push",
                &p(&format!("{}.partial", names[10])),
                &format!("{}.partial", names[10]),
            ],
            5,
            "page address",
        ),
        case(
            "a restored snapshot re-archiving another version of a segment",
            &["--repo", &r, "push", &snapshot_seg, &names[0]],
            4,
            "different content",
        ),
        // configuration
        case(
            "misspelled key",
            &["--config", &unknown_key, "status"],
            2,
            "unknown field",
        ),
        case(
            "broken TOML",
            &["--config", &bad_toml, "status"],
            2,
            "configuration file",
        ),
        case(
            "unknown compression",
            &["--config", &lz4, "status"],
            2,
            "lz4",
        ),
        case(
            "compression level out of range",
            &["--config", &level, "status"],
            2,
            "level",
        ),
        case(
            "ssh_timeout 0",
            &["--config", &timeout, "status"],
            2,
            "ssh_timeout",
        ),
        case(
            "a key of the wrong type",
            &["--config", &typed, "status"],
            2,
            "prefetch",
        ),
        case(
            "explicit config file missing",
            &["--config", &missing_cfg, "status"],
            2,
            "nope.toml",
        ),
        // URLs
        case(
            "unknown scheme",
            &["--repo", "gs://bucket/wal", "status"],
            2,
            "unknown scheme",
        ),
        case(
            "an S3 bucket name with capitals",
            &["--repo", "s3://Bucket/wal", "status"],
            2,
            "is not an S3 bucket name",
        ),
        case(
            "an S3 prefix with ..",
            &["--repo", "s3://bucket/a/../b", "status"],
            2,
            "'..' component",
        ),
        case(
            "an S3 endpoint without a scheme",
            &[
                "--repo",
                "s3://bucket/wal",
                "--s3-endpoint",
                "127.0.0.1:9000",
                "status",
            ],
            2,
            "must start with http://",
        ),
        case(
            "an unknown S3 URI style",
            &[
                "--repo",
                "s3://bucket/wal",
                "--s3-uri-style",
                "dns",
                "status",
            ],
            2,
            "is not one of virtual-host, path",
        ),
        case(
            "ssh without a host",
            &["--repo", "ssh:///srv/wal", "status"],
            2,
            "ssh://",
        ),
        case(
            "ssh without a path",
            &["--repo", "ssh://host", "status"],
            2,
            "ssh://",
        ),
        case(
            "ssh port out of range",
            &["--repo", "ssh://host:99999/srv", "status"],
            2,
            "port",
        ),
        case(
            "ssh port not a number",
            &["--repo", "ssh://u@host:abc/srv", "status"],
            2,
            "port",
        ),
        case(
            "ssh host that refuses connections",
            &[
                "--repo",
                "ssh://127.0.0.1:1/srv",
                "--ssh-timeout",
                "3",
                "status",
            ],
            3,
            "127.0.0.1",
        ),
        // repository objects and format
        case(
            "flipped byte in an object",
            &[
                "--repo",
                &flipped,
                "fetch",
                "000000010000000000000002",
                "/tmp/walship-x",
            ],
            5,
            "damaged",
        ),
        case(
            "truncated object",
            &[
                "--repo",
                &truncated,
                "fetch",
                "000000010000000000000003",
                "/tmp/walship-x",
            ],
            5,
            "damaged",
        ),
        case(
            "damaged object header",
            &[
                "--repo",
                &header,
                "fetch",
                "00000002.history",
                "/tmp/walship-x",
            ],
            5,
            "header",
        ),
        case(
            "object stored under another name",
            &[
                "--repo",
                &renamed,
                "fetch",
                "000000010000000000000005",
                "/tmp/walship-x",
            ],
            5,
            "name",
        ),
        case(
            "unknown format version",
            &["--repo", &future, "status"],
            4,
            "version 99",
        ),
        case(
            "not a walship repository",
            &["--repo", &foreign, "status"],
            4,
            "something-else",
        ),
        case(
            "root without walship.repo",
            &["--repo", &empty, "fetch", &names[0], "/tmp/walship-x"],
            3,
            "walship.repo",
        ),
        // host keys
        case(
            "unknown host key",
            &[
                "--repo",
                &url,
                "--ssh-key",
                &key,
                "--known-hosts",
                &empty_kh,
                "status",
            ],
            4,
            "ssh-keyscan",
        ),
        case(
            "changed host key",
            &[
                "--repo",
                &url,
                "--ssh-key",
                &key,
                "--known-hosts",
                &changed_kh,
                "status",
            ],
            4,
            "ssh-keygen -R",
        ),
        // destructive paths: a root without walship.repo is unavailable for the
        // commands a cron job runs, never "empty, nothing to do"
        case(
            "verify on a root without walship.repo",
            &["--repo", &empty, "verify"],
            3,
            "walship.repo",
        ),
        case(
            "prune on a root without walship.repo",
            &["--repo", &empty, "prune", "--keep-backups", "1"],
            3,
            "walship.repo",
        ),
        case(
            "re-push over an archived copy whose payload rotted",
            &["--repo", &rotted_r, "push", &p(&names[1]), &names[1]],
            5,
            "stored copy is damaged",
        ),
        case(
            "--replace-damaged with other content than the archived copy",
            &[
                "--repo",
                &r,
                "push",
                "--replace-damaged",
                &snapshot_seg,
                &names[0],
            ],
            4,
            "different content",
        ),
        case(
            "repository that needs a newer walship",
            &["--repo", &newer, "fetch", &names[0], "/tmp/walship-x"],
            4,
            "needs walship 42.0.0 or newer",
        ),
        case(
            "object whose header claims more than a segment",
            &[
                "--repo",
                &oversize,
                "fetch",
                &names[0],
                "/tmp/walship-oversize",
            ],
            5,
            "no WAL file of this repository is larger",
        ),
        case(
            "identity version 2 without min_reader_version",
            &["--repo", &no_minimum, "status"],
            5,
            "version 2 without min_reader_version",
        ),
        case(
            "min_reader_version that is not a release",
            &["--repo", &bad_minimum, "status"],
            5,
            "is not \"X.Y.Z\"",
        ),
        case(
            "prune with a reader record that cannot be read",
            &["--repo", &bad_reader, "prune", "--keep-backups", "1"],
            5,
            "every reader record must be readable",
        ),
        case(
            "--replace-damaged over SSH (no atomic replace)",
            &[
                "--repo",
                &rotted_url,
                "--ssh-key",
                &key,
                "--known-hosts",
                &good_kh,
                "push",
                "--replace-damaged",
                &p(&names[1]),
                &names[1],
            ],
            2,
            "cannot replace an object in one atomic step",
        ),
        case(
            "reader hold with an id that is a path",
            &["--repo", &r, "reader", "advance", "../wal", &names[0]],
            2,
            "reader id",
        ),
        case(
            "reader hold from a history file",
            &["--repo", &r, "reader", "advance", "r-1", "00000002.history"],
            2,
            "give a WAL segment name",
        ),
        case(
            "reader end with an id that is a path",
            &["--repo", &r, "reader", "end", "a/../b"],
            2,
            "reader id",
        ),
        // host keys: hashed known_hosts, key types, a data directory as root
        case(
            "changed host key, hashed known_hosts line",
            &[
                "--repo",
                &url,
                "--ssh-key",
                &key,
                "--known-hosts",
                &hashed_changed_kh,
                "status",
            ],
            4,
            "HOST KEY CHANGED",
        ),
        case(
            "known_hosts holds only another key type for the host",
            &[
                "--repo",
                &url,
                "--ssh-key",
                &key,
                "--known-hosts",
                &other_type_kh,
                "status",
            ],
            4,
            "holds only ecdsa-sha2-nistp256",
        ),
    ];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // as root, a data directory that belongs to root is nobody's
        // PostgreSQL's; every command that works in one refuses it before touching it
        for (what, args) in [
            (
                "promote as root in a root-owned data directory",
                vec!["promote"],
            ),
            (
                "rejoin as root in a root-owned data directory",
                vec!["rejoin", "--primary", "host=/tmp"],
            ),
            (
                "watch as root in a root-owned data directory",
                vec!["watch"],
            ),
            (
                "switchover as root in a root-owned data directory",
                vec![
                    "switchover",
                    "--primary",
                    "host=/tmp",
                    "--primary-stop-command",
                    "true",
                ],
            ),
            (
                "basebackup as root in a root-owned data directory",
                vec!["basebackup"],
            ),
        ] {
            let mut a = vec!["--repo", &r, "--pgdata", &rooted];
            a.extend(args);
            cases.push(case(what, &a, 2, "belongs to root"));
        }
    }
    // failover and the command line: the archive's fence, the trigger file's rules, watch and
    // promote refusing what they cannot do safely, unknown values
    {
        let forked = root.join("forked");
        fs::create_dir(&forked).unwrap();
        let f = forked.display().to_string();
        let pushed = run(walship()
            .args(["--repo", &f, "push"])
            .arg(format!("pg_wal/{}", seg(1)))
            .arg(seg(1))
            .current_dir(&pgdata));
        assert_eq!(pushed.0, 0, "{}", pushed.1);
        // timeline 2 forked off timeline 1 inside segment 1 (1 MiB segments)
        fs::write(
            pg_wal.join("00000002.history"),
            "1\t0/180000\tno recovery target specified\n",
        )
        .unwrap();
        let pushed = run(walship()
            .args([
                "--repo",
                &f,
                "push",
                "pg_wal/00000002.history",
                "00000002.history",
            ])
            .current_dir(&pgdata));
        assert_eq!(pushed.0, 0, "{}", pushed.1);
        let data = ws.mkdir("a_standby");
        ws.tools
            .write_file(&data.join("PG_VERSION"), "15\n")
            .unwrap();
        let d = data.display().to_string();
        let not_data = ws.mkdir("not_data").display().to_string();
        let private = ws.mkdir("private");
        let link = root.join("private_link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        let via_link = link.join("trigger").display().to_string();
        let dir_t = private.join("trigger").display().to_string();
        let w = |extra: &[&str]| -> Vec<String> {
            let mut a: Vec<String> = ["--repo", &r, "--pgdata", &d]
                .iter()
                .map(|s| s.to_string())
                .collect();
            a.push("watch".into());
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let seg2 = format!("pg_wal/{}", seg(2));
        cases.extend([
            case(
                "a demoted primary pushes past a newer timeline's fork",
                &["--repo", &f, "push", &seg2, &seg(2)],
                4,
                "forked off timeline 1",
            ),
            case(
                "a trigger file in /tmp",
                &w(&["--trigger-file", "/tmp/pg_failover_trigger"]),
                2,
                "can be written by other users",
            ),
            case(
                "a relative trigger path",
                &w(&["--trigger-file", "trigger"]),
                2,
                "not an absolute path",
            ),
            case(
                "a trigger path through a symlinked directory",
                &w(&["--trigger-file", &via_link]),
                2,
                "is a symlink",
            ),
            case(
                "automatic failover without a fence",
                &w(&["--primary", "host=db1"]),
                2,
                "needs fence_command",
            ),
            case(
                "watch with nothing to watch",
                &w(&[]),
                2,
                "nothing to watch",
            ),
            case(
                "watch's interval is not a number",
                &w(&["--interval", "soon", "--trigger-file", &dir_t]),
                2,
                "invalid value",
            ),
            case(
                "a password in the primary's connection string",
                &w(&[
                    "--primary",
                    "host=db1 password=x",
                    "--fence-command",
                    "true",
                ]),
                2,
                "password",
            ),
            case(
                "promote a directory that is no data directory",
                &["--repo", &r, "--pgdata", &not_data, "promote"],
                2,
                "not a PostgreSQL data directory",
            ),
            case(
                "promote a standby that is not running",
                &["--repo", &r, "--pgdata", &d, "promote"],
                3,
                "not running",
            ),
            case(
                "status --output yaml",
                &["--repo", &r, "status", "--output", "yaml"],
                2,
                "invalid value",
            ),
            case(
                "config with an unknown compression",
                &["--repo", &r, "--compression", "lz5", "config"],
                2,
                "unknown compression",
            ),
            case(
                "the man page of no command",
                &["man", "nosuch"],
                2,
                "no command",
            ),
            case(
                "completions for an unknown shell",
                &["completions", "tcsh"],
                2,
                "invalid value",
            ),
        ]);
        fs::remove_file(pg_wal.join("00000002.history")).unwrap();
    }
    {
        // encryption: an encrypted repository with segment 2, and keys good and bad
        use std::os::unix::fs::PermissionsExt;
        let keydir = ws.mkdir("keys");
        let keyfile = |name: &str, text: &str, mode: u32| {
            let path = keydir.join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path.display().to_string()
        };
        let k1 = keyfile("k1", &format!("{}\n", "ab".repeat(32)), 0o600);
        let k2 = keyfile("k2", &format!("{}\n", "cd".repeat(32)), 0o600);
        let readable = keyfile("readable", &format!("{}\n", "ab".repeat(32)), 0o644);
        let short = keyfile("short", &"ab".repeat(31), 0o600);
        let empty_key = keyfile("empty", "# no key yet\n", 0o600);
        let sealed = root.join("sealed");
        fs::create_dir(&sealed).unwrap();
        let e = sealed.display().to_string();
        let enc = |key: &str, tail: &[&str]| -> Vec<String> {
            let mut a: Vec<String> = [
                "--repo",
                &e,
                "--encryption",
                "aead",
                "--encryption-key-file",
                key,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            a.extend(tail.iter().map(|s| s.to_string()));
            a
        };
        let seg2 = format!("pg_wal/{}", seg(2));
        let (code, out) = output(
            walship()
                .args(enc(&k1, &["--push-ahead", "0", "push", &seg2, &seg(2)]))
                .current_dir(&pgdata),
        );
        assert_eq!(code, 0, "{out}");
        let tampered = root.join("sealed-tampered");
        copy_tree(&sealed, &tampered);
        let object = tampered.join(format!("wal/{}/{}", &seg(2)[..16], seg(2)));
        let mut bytes = fs::read(&object).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        fs::write(&object, bytes).unwrap();
        let t = tampered.display().to_string();
        let fetch2 = ["fetch", &seg(2), "pg_wal/RECOVERYXLOG"];
        cases.extend([
            case(
                "fetch with a wrong key",
                &enc(&k2, &fetch2),
                4,
                "do not include",
            ),
            case(
                "fetch from an encrypted repository without a key",
                &["--repo", &e, "fetch", &seg(2), "pg_wal/RECOVERYXLOG"],
                4,
                "has no key",
            ),
            case(
                "a key file others can read",
                &enc(&readable, &fetch2),
                4,
                "readable by group or others",
            ),
            case(
                "a key one digit short",
                &enc(&short, &fetch2),
                4,
                "not a key",
            ),
            case(
                "a key file with no key",
                &enc(&empty_key, &fetch2),
                4,
                "holds no key",
            ),
            case(
                "a missing key file",
                &enc(&keydir.join("nope").display().to_string(), &fetch2),
                4,
                "No such file",
            ),
            case(
                "a key command that fails",
                &[
                    "--repo",
                    &e,
                    "--encryption",
                    "aead",
                    "--encryption-key-command",
                    "exit 3",
                    "fetch",
                    &seg(2),
                    "pg_wal/RECOVERYXLOG",
                ],
                4,
                "encryption_key_command failed",
            ),
            case(
                "a relative key file path",
                &enc("k1", &fetch2),
                2,
                "not an absolute path",
            ),
            case(
                "encryption with neither a key file nor a key command",
                &["--repo", &e, "--encryption", "aead", "status"],
                2,
                "needs encryption_key_file",
            ),
            case(
                "an unknown encryption",
                &["--repo", &e, "--encryption", "rot13", "status"],
                2,
                "is not one of none, aead",
            ),
            case(
                "an unencrypted push into an encrypted repository",
                &["--repo", &e, "push", &seg2, &seg(2)],
                4,
                "is encrypted, but this configuration",
            ),
            case(
                "an encrypted push into an unencrypted repository",
                &[
                    "--repo",
                    &r,
                    "--encryption",
                    "aead",
                    "--encryption-key-file",
                    &k1,
                    "push",
                    &seg2,
                    &seg(2),
                ],
                4,
                "is not encrypted, but this configuration",
            ),
            case(
                "a flipped ciphertext byte",
                &[
                    "--repo",
                    &t,
                    "--encryption",
                    "aead",
                    "--encryption-key-file",
                    &k1,
                    "fetch",
                    &seg(2),
                    "pg_wal/RECOVERYXLOG",
                ],
                5,
                "failed authentication",
            ),
            case(
                "keygen over an existing file",
                &["keygen", "--output", &k2],
                4,
                "never overwrites",
            ),
        ]);
    }
    let before = tree(&repo);
    let mut survived = 0;
    let mut failures = Vec::new();
    for c in &cases {
        let (code, out) = output(walship().args(&c.args).current_dir(&pgdata));
        if code == c.code && out.contains(c.says) {
            survived += 1;
        } else {
            failures.push(format!(
                "{}: exit {code} (want {}), {:?} (want {:?})",
                c.what,
                c.code,
                out.trim(),
                c.says
            ));
        }
    }
    let unchanged = tree(&repo) == before;
    report(
        "bad input corpus (names, paths, headers, config, URLs, objects, host keys)",
        cases.len() as u64,
        survived,
        0,
    );
    assert!(cases.len() >= 40);
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(unchanged, "a bad input changed the repository");
}

#[test]
fn drill_concurrency_push_during_prune_and_two_fetches_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = root.join("repo");
    fs::create_dir(&repo).unwrap();
    let pgdata = root.join("pgdata");
    let pg_wal = pgdata.join("pg_wal");
    let n = if full() { 120 } else { 40 };
    for i in 1..=n {
        write_segment(&pg_wal, &seg(i), SYSID, i);
    }
    let push = |i: u64| {
        run(walship()
            .arg("--repo")
            .arg(&repo)
            .args(["--push-ahead", "0", "push"])
            .arg(format!("pg_wal/{}", seg(i)))
            .arg(seg(i))
            .current_dir(&pgdata))
    };
    for i in 1..=n / 2 {
        assert_eq!(push(i).0, 0);
    }
    // the second half is pushed while prunes remove everything before the middle
    let cutoff = seg(n / 2);
    let (codes, prunes) = std::thread::scope(|scope| {
        let pusher = scope.spawn(|| (n / 2 + 1..=n).map(|i| push(i).0).collect::<Vec<_>>());
        let mut prunes = 0;
        while !pusher.is_finished() {
            let (code, out) = run(walship()
                .arg("--repo")
                .arg(&repo)
                .args(["prune", "--before", &cutoff]));
            assert_eq!(code, 0, "{out}");
            prunes += 1;
        }
        (pusher.join().unwrap(), prunes)
    });
    assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
    let mut checked = HashSet::new();
    check_visible(&repo, &pg_wal, &mut checked).unwrap();
    let second_half_ok = (n / 2 + 1..=n).all(|i| checked.contains(&seg(i)));
    let first_half_gone = (1..n / 2).all(|i| !checked.contains(&seg(i)));
    report(
        &format!(
            "push during prune ({prunes} prunes beside {} pushes)",
            n / 2
        ),
        n / 2,
        if second_half_ok { n / 2 } else { 0 },
        0,
    );
    assert!(second_half_ok && first_half_gone, "{checked:?}");

    // two fetches of the same segment at once through one spool (a standby's restore_command
    // and a person's, say): both get the verified bytes
    fs::write(pgdata.join("standby.signal"), "").unwrap();
    let (mut tried, mut ok) = (0, 0);
    for i in n / 2 + 1..=n.min(n / 2 + 10) {
        let fetch = |dest: &str| {
            walship()
                .arg("--repo")
                .arg(&repo)
                .args(["fetch", &seg(i), dest])
                .current_dir(&pgdata)
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (fetch("pg_wal/RECOVERYXLOG"), fetch("pg_wal/RECOVERYXLOG.2"));
        let both = a.wait().unwrap().success() & b.wait().unwrap().success();
        let want = fs::read(pg_wal.join(seg(i))).unwrap();
        tried += 1;
        if both
            && fs::read(pg_wal.join("RECOVERYXLOG")).unwrap() == want
            && fs::read(pg_wal.join("RECOVERYXLOG.2")).unwrap() == want
        {
            ok += 1;
        }
    }
    report(
        "two fetches of one segment at once, one spool",
        tried,
        ok,
        0,
    );
    assert_eq!(ok, tried);
    let (code, out) = verify(&repo);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn drill_ssh_connection_cut_mid_transfer() {
    let n = if full() { 12 } else { 3 };
    let ws = Workspace::new();
    let sshd = Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    let config = sshd.config(&ws, &repo, "walship.toml");
    let root = ws.mkdir("work");
    let pg_wal = root.join("pgdata/pg_wal");
    fs::create_dir_all(&pg_wal).unwrap();
    // 16 MiB of noise through bzip2: about two seconds of streaming per segment, so a cut
    // lands in the middle of a transfer
    let big = 16 * MIB;
    for i in 1..=n {
        let mut b = segment_bytes(&seg(i), SYSID, big, i);
        let noise = walship_test_noise(i, big as usize / 2);
        b[big as usize / 2..].copy_from_slice(&noise);
        fs::write(pg_wal.join(seg(i)), b).unwrap();
    }
    let cmd = || {
        let mut c = walship();
        c.arg("--config")
            .arg(&config)
            .args([
                "--push-ahead",
                "0",
                "--prefetch",
                "0",
                "--compression",
                "bzip2",
            ])
            .current_dir(root.join("pgdata"));
        c
    };
    let mut rng = Rng(0xc0ff_ee00_1234_5678);
    let (mut tried, mut survived, mut cut) = (0, 0, 0);
    let (mut pushes_cut, mut fetches_cut) = (0, 0);
    let mut checked = HashSet::new();
    for i in 1..=n {
        // push: cut the connection while the segment streams
        let started = Instant::now();
        let child = push_segment(&mut cmd(), i)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
        cut += sshd.cut_connections();
        let out = child.wait_with_output().unwrap();
        let took = started.elapsed();
        let first = out.status.code();
        pushes_cut += usize::from(first != Some(0));
        let visible = check_visible(&repo, &pg_wal, &mut checked);
        let retried = first == Some(0) || run(push_segment(&mut cmd(), i)).0 == 0;
        tried += 1;
        // a cut push fails as "unavailable" (3: PostgreSQL retries), within the SSH timeout
        let clean_failure =
            first == Some(0) || (first == Some(3) && took < Duration::from_secs(20));
        if visible.is_ok() && retried && clean_failure {
            survived += 1;
        } else {
            eprintln!(
                "push {}: first exit {first:?} after {took:?}, {visible:?}, retry ok {retried}: {}",
                seg(i),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // fetch: cut while it downloads; %p must be absent or whole
        let dest = root.join(format!("restored-{i}"));
        let child = cmd()
            // no retry inside the call: PostgreSQL's next call is the retry
            .args(["--fetch-retries", "0", "fetch", &seg(i)])
            .arg(&dest)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(70 + rng.below(90)));
        cut += sshd.cut_connections();
        let out = child.wait_with_output().unwrap();
        let want = fs::read(pg_wal.join(seg(i))).unwrap();
        fetches_cut += usize::from(out.status.code() != Some(0));
        let first_ok = match out.status.code() {
            Some(0) => fs::read(&dest).unwrap() == want,
            _ => !dest.exists(),
        };
        let retry_ok = run(cmd().args(["fetch", &seg(i)]).arg(&dest)).0 == 0
            && fs::read(&dest).unwrap() == want;
        tried += 1;
        if first_ok && retry_ok {
            survived += 1;
        } else {
            eprintln!(
                "fetch {}: first exit {:?} (whole or absent: {first_ok}), retry ok {retry_ok}",
                seg(i),
                out.status.code()
            );
        }
    }
    report(
        &format!(
            "SSH connection cut mid-transfer ({cut} sessions killed; {pushes_cut} pushes and {fetches_cut} fetches interrupted)"
        ),
        tried,
        survived,
        0,
    );
    assert!(pushes_cut + fetches_cut > 0, "no transfer was interrupted");
    let (code, out) = verify(&repo);
    assert_eq!(code, 0, "{out}");
    assert_eq!(survived, tried);
    assert!(cut >= tried as usize / 2, "only {cut} connections were cut");
}

fn walship_test_noise(seed: u64, len: usize) -> Vec<u8> {
    noise(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, len)
}
