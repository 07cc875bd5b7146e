//! `walship demo`: the whole cycle on throwaway clusters, printed step by step. A primary
//! archives through `walship push` into a local repository; `walship basebackup` stores a base
//! backup there and `walship restore --standby` makes a hot standby of it, which follows through
//! `walship fetch` and must reach the same row counts; the primary
//! crashes and `walship watch` promotes the standby on a trigger file; `walship rejoin` makes the
//! old primary its standby; `walship switchover` gives the roles back without losing a row.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::human_bytes;
use crate::error::{Error, Result};
use crate::pg::cluster::{Cluster, DEFAULT_PG_BIN, PgTools, RunAs, free_port, wait_until};
use crate::repo::Repository;
use crate::storage::local::LocalStorage;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the workspace (clusters, repository, logs) instead of removing it
    #[arg(long)]
    pub keep: bool,
    /// Directory of the PostgreSQL programs
    #[arg(long, env = "WALSHIP_PG_BIN", default_value = DEFAULT_PG_BIN, value_name = "DIR")]
    pub pg_bin: PathBuf,
    /// When run as root: the unprivileged user PostgreSQL runs as [default: postgres, else nobody]
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(180);

struct Steps {
    n: usize,
    total: usize,
}

impl Steps {
    fn run<T>(&mut self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.n += 1;
        println!("[{}/{}] {what}", self.n, self.total);
        let start = Instant::now();
        let r = f();
        match &r {
            Ok(_) => println!("      ok ({:.1} s)", start.elapsed().as_secs_f64()),
            Err(e) => println!("      FAILED: {e}"),
        }
        r
    }
}

fn run_as_user(args: &DemoArgs) -> Result<Option<RunAs>> {
    match &args.run_as {
        Some(u) => RunAs::when_root(u),
        None => RunAs::when_root("postgres").or_else(|_| RunAs::when_root("nobody")),
    }
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let tools = PgTools::new(&args.pg_bin, run_as_user(args)?)?;
    crate::pg::require_supported(tools.major_version()?, &args.pg_bin.display().to_string())?;
    let workspace = tempfile::Builder::new()
        .prefix("walship-demo-")
        .tempdir()
        .map_err(|e| Error::io("creating the demo workspace", e))?;
    let ws = workspace.path().to_path_buf();
    tools.chown(&ws)?;
    println!(
        "walship demo: a throwaway primary archives through walship, a standby follows from the archive, then\n  a crash, a trigger-file promotion, a rejoin and a switchover"
    );
    println!(
        "  workspace {}{}",
        ws.display(),
        if args.keep {
            " (kept)"
        } else {
            " (removed at the end; --keep keeps it)"
        }
    );
    if let Some(r) = &tools.run_as {
        println!(
            "  running PostgreSQL as {:?} (initdb and pg_ctl refuse root)",
            r.user
        );
    }
    let result = demo(&tools, &ws);
    if args.keep {
        let _ = workspace.keep();
    }
    result
}

fn demo(tools: &PgTools, ws: &Path) -> Result<()> {
    let started = Instant::now();
    let mut steps = Steps { n: 0, total: 9 };

    // The PostgreSQL user must be able to run walship: copy this binary into the workspace.
    let bin_dir = ws.join("bin");
    tools.make_dir(&bin_dir)?;
    let walship = bin_dir.join("walship");
    let me = std::env::current_exe().map_err(|e| Error::io("locating the walship binary", e))?;
    fs::copy(&me, &walship)
        .map_err(|e| Error::io(format!("copying {} into the workspace", me.display()), e))?;
    tools.chown(&walship)?;
    let repo = ws.join("repo");
    tools.make_dir(&repo)?;
    let config = ws.join("walship.toml");
    tools.write_file(
        &config,
        &format!(
            "# walship demo configuration\nrepo = \"{}\"\ncompression = \"zstd\"\npg_bin = \"{}\"\n\
             on_promote = [\"echo the new primary is on timeline $WALSHIP_NEW_TIMELINE\"]\n",
            repo.display(),
            tools.bin.display()
        ),
    )?;
    let walship_cmd = format!("{} --config {}", walship.display(), config.display());

    let mut primary = steps.run("initdb a primary (16 MiB WAL segments) and start it with archive_command = 'walship push %p %f'", || {
        let mut c = Cluster::init(tools, &ws.join("primary"), free_port()?, 16)?;
        c.append_conf(&format!("archive_mode = on\narchive_command = '{walship_cmd} push %p %f'\nwal_log_hints = on\n"))?;
        c.start()?;
        println!("      primary on 127.0.0.1:{}, repository {}", c.port, repo.display());
        Ok(c)
    })?;

    let walship_out = |args: &[&str]| -> Result<(bool, String)> {
        let out = tools
            .command(walship.to_str().unwrap_or_default())
            .current_dir(ws)
            .args(["--config", config.to_str().unwrap_or_default()])
            .args(args)
            .output()
            .map_err(|e| Error::io(format!("running walship {}", args.join(" ")), e))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        Ok((out.status.success(), text))
    };
    steps.run(
        "load data (pgbench -i -s 4) and take a base backup into the repository (walship basebackup)",
        || {
            primary.pgbench(&["-i", "-s", "4", "-q"])?;
            let (ok, text) = walship_out(&[
                "--pgdata",
                primary.data.to_str().unwrap_or_default(),
                "basebackup",
            ])?;
            if !ok {
                return Err(Error::unavailable(format!("walship basebackup failed: {}", text.trim())));
            }
            for line in text.lines().filter(|l| !l.contains("started at")) {
                println!("      {}", line.trim_start_matches("walship: basebackup: "));
            }
            Ok(())
        },
    )?;

    let (accounts, history) = steps.run("run transactions after the backup (pgbench -c 2 -t 1500), switch WAL, wait for the archiver", || {
        primary.pgbench(&["-n", "-c", "2", "-j", "2", "-t", "1500"])?;
        let last = primary.switch_and_wait_archived(TIMEOUT)?;
        let stats = primary.psql("SELECT archived_count || ' archived, ' || failed_count || ' failed' FROM pg_stat_archiver")?;
        let listing = Repository::open(Box::new(LocalStorage::new(&repo)))?.list_objects()?;
        let (files, bytes) = (listing.objects.len(), listing.objects.iter().map(|o| o.stored_bytes).sum::<u64>());
        println!("      archiver: {stats}; last archived {last}");
        println!("      repository: {files} objects, {} stored", human_bytes(bytes));
        let accounts = primary.psql("SELECT sum(abalance) FROM pgbench_accounts")?;
        let history = primary.psql("SELECT count(*) FROM pgbench_history")?;
        println!("      primary: pgbench_history has {history} rows, sum(abalance) = {accounts}");
        Ok((accounts, history))
    })?;

    steps.run("show the archive's answers: a re-push of the same segment, and a fetch of a missing one", || {
        let seg = primary.psql("SELECT last_archived_wal FROM pg_stat_archiver")?;
        let pg_wal = primary.data.join("pg_wal");
        if pg_wal.join(&seg).exists() {
            let out = tools.command(walship.to_str().unwrap_or_default()).current_dir(&primary.data)
                .args(["--config", config.to_str().unwrap_or_default(), "push"]).arg(format!("pg_wal/{seg}")).arg(&seg).output()
                .map_err(|e| Error::io("running walship push", e))?;
            println!("      push {seg} again -> exit {}: {}", out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).trim());
        }
        let out = tools.command(walship.to_str().unwrap_or_default()).current_dir(ws)
            .args(["--config", config.to_str().unwrap_or_default(), "fetch", "0000000100000000000000FF", "missing"]).output()
            .map_err(|e| Error::io("running walship fetch", e))?;
        println!("      fetch 0000000100000000000000FF (never written) -> exit {} (1 = not in the archive; PostgreSQL ends recovery there)", out.status.code().unwrap_or(-1));
        Ok(())
    })?;

    let show = |text: &str| {
        for line in text
            .lines()
            .filter(|l| !l.starts_with("walship: fetched") && !l.starts_with("walship: pushed"))
        {
            println!("      {line}");
        }
    };
    let conninfo = |c: &Cluster| {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            c.socket_dir.display(),
            c.port
        )
    };
    let counts = "SELECT count(*) || ' rows in pgbench_history, sum(abalance) = ' || (SELECT sum(abalance) FROM pgbench_accounts) FROM pgbench_history";

    let mut copy = steps.run("walship restore --standby: a hot standby from the stored backup (standby.signal, restore_command = 'walship fetch %f %p'); wait until it has every archived transaction", || {
        let mut c = Cluster::existing(tools, &ws.join("copy"), free_port()?)?;
        let (ok, text) = walship_out(&[
            "--pgdata",
            c.data.to_str().unwrap_or_default(),
            "restore",
            "--standby",
            "--set",
            &format!("port={}", c.port),
            "--set",
            &format!("unix_socket_directories={}", c.socket_dir.display()),
            "--set",
            "wal_retrieve_retry_interval=200ms",
        ])?;
        if !ok {
            return Err(Error::unavailable(format!("walship restore failed: {}", text.trim())));
        }
        for line in text.lines().filter(|l| l.contains("restored into")) {
            println!("      {}", line.trim_start_matches("walship: restore: "));
        }
        c.start()?;
        let want = format!("{history} rows in pgbench_history, sum(abalance) = {accounts}");
        wait_until(TIMEOUT, "the standby to catch up", || Ok(c.psql(counts).map(|g| g == want).unwrap_or(false)))?;
        let fetched = fs::read_to_string(&c.log).map(|l| l.lines().filter(|l| l.starts_with("walship: fetched")).count()).unwrap_or(0);
        println!("      standby on 127.0.0.1:{}: {want}, identical to the primary", c.port);
        println!("      {fetched} WAL files fetched, verified and replayed; still in recovery: {}", c.psql("SELECT pg_is_in_recovery()")?);
        Ok(c)
    })?;

    steps.run("the primary crashes (pg_ctl stop -m immediate); walship watch promotes the standby when the trigger file appears", || {
        primary.stop_mode("immediate")?;
        let trigger = ws.join("failover_trigger");
        let watch = tools
            .command(walship.to_str().unwrap_or_default())
            .current_dir(ws)
            .args(["--config", config.to_str().unwrap_or_default(), "--pgdata"])
            .arg(&copy.data)
            .arg("watch")
            .arg("--trigger-file")
            .arg(&trigger)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("starting walship watch", e))?;
        std::thread::sleep(Duration::from_millis(300));
        println!("      echo smart > {}", trigger.display());
        tools.write_file(&trigger, "smart\n")?;
        let out = watch.wait_with_output().map_err(|e| Error::io("waiting for walship watch", e))?;
        show(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(Error::unavailable("walship watch failed"));
        }
        copy.psql("CREATE TABLE written_on_timeline_2 AS SELECT 1 AS x")?;
        println!("      the standby is now a primary and accepts writes: {}", copy.psql(counts)?);
        Ok(())
    })?;

    steps.run("walship rejoin: the crashed primary becomes a standby of the new one (pg_rewind, WAL from the archive)", || {
        let (ok, text) = walship_out(&["--pgdata", primary.data.to_str().unwrap_or_default(), "rejoin", "--stream", "--primary", &conninfo(&copy)])?;
        show(&text);
        if !ok {
            return Err(Error::unavailable("walship rejoin failed"));
        }
        // pg_rewind copies the new primary's configuration; on one host each server keeps its own
        // port and socket directory
        primary.append_conf(&format!("port = {}\nunix_socket_directories = '{}'\n", primary.port, primary.socket_dir.display()))?;
        primary.start()?;
        wait_until(TIMEOUT, "the old primary to follow", || {
            Ok(primary.psql("SELECT count(*) FROM written_on_timeline_2").map(|n| n == "1").unwrap_or(false))
        })?;
        println!("      the old primary is a standby (in recovery: {}) and has the new primary's writes", primary.psql("SELECT pg_is_in_recovery()")?);
        Ok(())
    })?;

    steps.run(
        "walship switchover: give the roles back without losing a row",
        || {
            copy.pgbench(&["-n", "-t", "500"])?;
            let before = copy.psql(counts)?;
            let (ok, text) = walship_out(&[
                "--pgdata",
                primary.data.to_str().unwrap_or_default(),
                "switchover",
                "--primary",
                &conninfo(&copy),
                "--primary-pgdata",
                copy.data.to_str().unwrap_or_default(),
            ])?;
            show(&text);
            if !ok {
                return Err(Error::unavailable("walship switchover failed"));
            }
            let after = primary.psql(counts)?;
            println!("      before: {before}\n      after:  {after}");
            if before != after
                || primary.psql("SELECT pg_is_in_recovery()")? != "f"
                || copy.psql("SELECT pg_is_in_recovery()")? != "t"
            {
                return Err(Error::corrupt(
                    "the switchover lost rows or did not swap the roles",
                ));
            }
            println!("      the original primary is the primary again; the copy is its standby");
            Ok(())
        },
    )?;
    copy.stop()?;
    primary.stop()?;

    steps.run(
        "look at the repository: walship status, walship verify",
        || {
            for command in ["status", "verify"] {
                let (ok, text) = walship_out(&[command])?;
                show(&text);
                if !ok {
                    return Err(Error::corrupt(format!("walship {command} failed")));
                }
            }
            Ok(())
        },
    )?;
    println!("demo complete in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
