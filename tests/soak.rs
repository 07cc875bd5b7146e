//! Issue 3's end-to-end measurements, on real PostgreSQL 15 and a real sshd (ignored by default:
//! about 7 minutes; the disk needs about twice the WAL it writes free, and says so before the
//! replay half). Run:
//!   cargo test --release --test soak -- --ignored --nocapture
//! Knobs: WALSHIP_SOAK_SECONDS (300), WALSHIP_SOAK_CLIENTS (4), WALSHIP_SOAK_SCALE (20),
//! WALSHIP_SOAK_INSERT_ROWS (200: each client alternates TPC-B transactions with inserts of this
//! many rows of random text, for a WAL-heavy load; 0: plain TPC-B).
//!
//! 1. A primary under pgbench archives over SSH through `walship push`; every second the test
//!    counts the `.ready` files in pg_wal/archive_status and the peak memory of every walship
//!    process it can see. Goal: at most 4 `.ready` files throughout, every process under 64 MiB.
//! 2. Two copies of a base backup taken before the load recover all of that WAL from the archive:
//!    one through `walship fetch` (SSH repository, prefetch), one through `cp` from a local
//!    directory of plain segments. Goal: walship at most 1.2x cp.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use walship::pg::cluster::{Cluster, free_port, wait_until};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak RSS (VmHWM, KiB) of the live processes running `bin`.
fn walship_peak_kib(bin: &Path) -> u64 {
    let mut peak = 0;
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if fs::read_link(e.path().join("exe")).ok().as_deref() != Some(bin) {
            continue;
        }
        if let Ok(status) = fs::read_to_string(e.path().join("status")) {
            for l in status.lines().filter(|l| l.starts_with("VmHWM:")) {
                peak = peak.max(
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                );
            }
        }
    }
    peak
}

fn count_ready(pg_wal: &Path) -> usize {
    fs::read_dir(pg_wal.join("archive_status"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
                .count()
        })
        .unwrap_or(0)
}

/// Recover a copy of `base` to the end of the archive with `restore_command`; seconds taken.
fn recover(ws: &Workspace, base: &Path, name: &str, restore_command: &str) -> f64 {
    let data = ws.path().join(name);
    let mut cp = ws.tools.command("/bin/cp");
    cp.arg("-a").arg(base).arg(&data);
    ws.tools.run(cp, "copying the base backup").unwrap();
    let mut c = Cluster::existing(&ws.tools, &data, free_port().unwrap()).unwrap();
    c.append_conf(&format!(
        "port = {}\nunix_socket_directories = '{}'\narchive_mode = off\nrestore_command = '{restore_command}'\n",
        c.port,
        c.socket_dir.display()
    ))
    .unwrap();
    ws.tools
        .write_file(&data.join("recovery.signal"), "")
        .unwrap();
    let start = Instant::now();
    c.start().unwrap();
    wait_until(Duration::from_secs(1800), "recovery to finish", || {
        Ok(c.psql("SELECT pg_is_in_recovery()")? == "f")
    })
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    c.stop().unwrap();
    // The recovered cluster is as large as the primary was; the next replay needs the space.
    fs::remove_dir_all(&data).unwrap();
    secs
}

/// Bytes used below `dir` (allocated blocks, as `du` counts them).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

#[test]
#[ignore]
fn archiving_over_ssh_keeps_up_with_pgbench_and_recovery_through_walship_keeps_pace_with_cp() {
    let seconds = knob("WALSHIP_SOAK_SECONDS", 300);
    let clients = knob("WALSHIP_SOAK_CLIENTS", 4);
    let scale = knob("WALSHIP_SOAK_SCALE", 20);
    let insert_rows = knob("WALSHIP_SOAK_INSERT_ROWS", 200);
    let ws = Workspace::new();
    let sshd = Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    let config = sshd.config(&ws, &repo, "walship.toml");
    let bin = ws.walship_bin();
    let walship_cmd = format!("{} --config {}", bin.display(), config.display());

    let mut primary = Cluster::init(
        &ws.tools,
        &ws.path().join("primary"),
        free_port().unwrap(),
        16,
    )
    .unwrap();
    primary
        .append_conf(&format!(
            "archive_mode = on\narchive_command = '{walship_cmd} push %p %f'\nmax_wal_size = '4GB'\nshared_buffers = '256MB'\n"
        ))
        .unwrap();
    primary.start().unwrap();
    primary
        .pgbench(&["-i", "-s", &scale.to_string(), "-q"])
        .unwrap();
    primary
        .switch_and_wait_archived(Duration::from_secs(300))
        .unwrap();
    primary.base_backup(&ws.path().join("base")).unwrap();
    let lsn_start = primary.psql("SELECT pg_current_wal_lsn()").unwrap();
    let mut scripts: Vec<String> = vec!["-b".into(), "tpcb-like@1".into()];
    if insert_rows > 0 {
        primary
            .psql("CREATE TABLE soak_big (id bigint, payload text)")
            .unwrap();
        let script = ws.path().join("insert.sql");
        ws.tools
            .write_file(
                &script,
                &format!("INSERT INTO soak_big SELECT g, repeat(md5(random()::text), 4) FROM generate_series(1, {insert_rows}) g;\n"),
            )
            .unwrap();
        scripts.push("-f".into());
        scripts.push(format!("{}@1", script.display()));
    }

    let mut load = ws.tools.command("pgbench");
    load.args([
        "-U",
        "postgres",
        "-n",
        "-c",
        &clients.to_string(),
        "-j",
        "2",
        "-T",
        &seconds.to_string(),
    ])
    .args(&scripts)
    .arg("-h")
    .arg(&primary.socket_dir)
    .arg("-p")
    .arg(primary.port.to_string())
    .arg("postgres")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    let mut load = load.spawn().unwrap();
    let pg_wal = primary.data.join("pg_wal");
    let (mut max_ready, mut over_4, mut samples, mut peak_kib) = (0, 0, 0, 0);
    let started = Instant::now();
    while load.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_secs(1));
        let ready = count_ready(&pg_wal);
        max_ready = max_ready.max(ready);
        over_4 += usize::from(ready > 4);
        samples += 1;
        peak_kib = peak_kib.max(walship_peak_kib(&bin));
    }
    let load_secs = started.elapsed().as_secs_f64();
    let tps = {
        use std::io::Read;
        let mut out = String::new();
        load.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out.lines()
            .find(|l| l.starts_with("tps"))
            .unwrap_or("tps ?")
            .to_string()
    };
    let wal_bytes: f64 = primary
        .psql(&format!(
            "SELECT pg_current_wal_lsn() - '{lsn_start}'::pg_lsn"
        ))
        .unwrap()
        .parse()
        .unwrap();
    let last = primary
        .switch_and_wait_archived(Duration::from_secs(600))
        .unwrap();
    let failed = primary
        .psql("SELECT failed_count FROM pg_stat_archiver")
        .unwrap();
    primary.stop().unwrap();
    println!(
        "soak: {load_secs:.0} s of pgbench -c {clients} (scale {scale}, TPC-B + inserts of {insert_rows} rows, {tps}); {:.2} GiB of WAL ({:.1} MiB/s) archived over SSH through {last}",
        wal_bytes / (1u64 << 30) as f64,
        wal_bytes / (1u64 << 20) as f64 / load_secs
    );
    println!(
        "soak: .ready files: max {max_ready}, above 4 in {over_4} of {samples} one-second samples; archiver failures {failed}"
    );
    println!(
        "soak: peak RSS of any walship process seen: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );

    // Replay: the same WAL through walship (SSH, prefetch) and through cp from a local directory.
    let plain = ws.mkdir("plain");
    let segments: Vec<String> = names_below(&repo.join("wal"))
        .into_iter()
        .filter(|n| n.len() == 24)
        .collect();
    // Replay needs the WAL once more uncompressed (for cp) and one recovered cluster at a time,
    // as large as the primary. A full disk would stop every PostgreSQL on the machine and the
    // shell with it, so check before writing, and free the primary first.
    let cluster_bytes = disk_usage(&primary.data);
    let primary_data = primary.data.clone();
    drop(primary);
    fs::remove_dir_all(&primary_data).unwrap();
    let need = segments.len() as u64 * (16 << 20) + cluster_bytes + (2 << 30);
    let free = walship::spool::free_bytes(ws.path()).expect("statvfs of the workspace");
    assert!(
        free >= need,
        "the replay half needs {:.1} GiB free ({} segments uncompressed, a {:.1} GiB cluster, 2 GiB to spare) and {:.1} GiB are: shorten WALSHIP_SOAK_SECONDS",
        need as f64 / (1u64 << 30) as f64,
        segments.len(),
        cluster_bytes as f64 / (1u64 << 30) as f64,
        free as f64 / (1u64 << 30) as f64
    );
    for s in &segments {
        let (code, err) = run(walship()
            .arg("--config")
            .arg(&config)
            .args(["--prefetch", "0", "fetch", s])
            .arg(plain.join(s)));
        assert_eq!(code, 0, "{err}");
        ws.tools.chown(&plain.join(s)).unwrap();
    }
    let base = ws.path().join("base");
    let t_cp = recover(
        &ws,
        &base,
        "replay-cp",
        &format!("cp {}/%f %p", plain.display()),
    );
    let t_walship = recover(
        &ws,
        &base,
        "replay-walship",
        &format!("{walship_cmd} fetch %f %p"),
    );
    println!(
        "replay of {} segments ({:.2} GiB): cp {t_cp:.1} s, walship fetch over SSH {t_walship:.1} s, ratio {:.2}",
        segments.len(),
        segments.len() as f64 / 64.0,
        t_walship / t_cp
    );
    println!(
        "soak: peak RSS of any walship process seen (incl. replay): {:.1} MiB",
        walship_peak_kib(&bin).max(peak_kib) as f64 / 1024.0
    );

    assert_eq!(failed, "0");
    assert!(
        max_ready <= 4,
        "the archive fell behind: {max_ready} .ready files"
    );
    assert!(
        peak_kib < 64 * 1024,
        "a walship process used {peak_kib} KiB"
    );
    assert!(
        t_walship <= 1.2 * t_cp,
        "replay through walship {t_walship:.1} s vs cp {t_cp:.1} s"
    );
}
