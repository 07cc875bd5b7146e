//! `walship demo`: the whole archive-and-restore cycle on throwaway clusters, printed step by step.
//! A primary archives through `walship push` into a local repository; a copy made from a base
//! backup (without WAL) recovers through `walship fetch` and must reach the same row counts.

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
    let workspace = tempfile::Builder::new()
        .prefix("walship-demo-")
        .tempdir()
        .map_err(|e| Error::io("creating the demo workspace", e))?;
    let ws = workspace.path().to_path_buf();
    tools.chown(&ws)?;
    println!(
        "walship demo: a throwaway PostgreSQL primary archives through walship; a copy restores from the archive"
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
    let mut steps = Steps { n: 0, total: 8 };

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
            "# walship demo configuration\nrepo = \"{}\"\ncompression = \"zstd\"\n",
            repo.display()
        ),
    )?;
    let walship_cmd = format!("{} --config {}", walship.display(), config.display());

    let mut primary = steps.run("initdb a primary (16 MiB WAL segments) and start it with archive_command = 'walship push %p %f'", || {
        let mut c = Cluster::init(tools, &ws.join("primary"), free_port()?, 16)?;
        c.append_conf(&format!("archive_mode = on\narchive_command = '{walship_cmd} push %p %f'\n"))?;
        c.start()?;
        println!("      primary on 127.0.0.1:{}, repository {}", c.port, repo.display());
        Ok(c)
    })?;

    steps.run(
        "load data (pgbench -i -s 4) and take a base backup without WAL (pg_basebackup -X none)",
        || {
            primary.pgbench(&["-i", "-s", "4", "-q"])?;
            primary.base_backup(&ws.join("copy"))
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

    primary.stop()?;
    let mut copy = steps.run("start the copy in archive recovery (recovery.signal, restore_command = 'walship fetch %f %p')", || {
        let mut c = Cluster::existing(tools, &ws.join("copy"), free_port()?)?;
        c.append_conf(&format!(
            "port = {}\nunix_socket_directories = '{}'\narchive_mode = off\nrestore_command = '{walship_cmd} fetch %f %p'\n",
            c.port,
            c.socket_dir.display()
        ))?;
        tools.write_file(&c.data.join("recovery.signal"), "")?;
        c.start()?;
        Ok(c)
    })?;

    steps.run("wait until the copy has replayed the whole archive and opened for writes", || {
        wait_until(TIMEOUT, "recovery to finish", || Ok(copy.psql("SELECT pg_is_in_recovery()")? == "f"))?;
        let fetched = fs::read_to_string(&copy.log).map(|l| l.lines().filter(|l| l.starts_with("walship: fetched")).count()).unwrap_or(0);
        println!("      {fetched} WAL files fetched, verified (sha256) and replayed; new timeline {}",
            copy.psql("SELECT timeline_id FROM pg_control_checkpoint()")?);
        Ok(())
    })?;

    steps.run("compare the copy with the primary", || {
        let c_accounts = copy.psql("SELECT sum(abalance) FROM pgbench_accounts")?;
        let c_history = copy.psql("SELECT count(*) FROM pgbench_history")?;
        println!("      copy:    pgbench_history has {c_history} rows, sum(abalance) = {c_accounts}");
        if (c_accounts.as_str(), c_history.as_str()) != (accounts.as_str(), history.as_str()) {
            return Err(Error::corrupt(format!(
                "the copy differs from the primary: history {c_history} vs {history}, sum(abalance) {c_accounts} vs {accounts}"
            )));
        }
        println!("      identical: every transaction reached the copy through the archive");
        Ok(())
    })?;
    copy.stop()?;

    steps.run(
        "look at the repository: walship status, walship verify",
        || {
            for command in ["status", "verify"] {
                let out = tools
                    .command(walship.to_str().unwrap_or_default())
                    .current_dir(ws)
                    .args(["--config", config.to_str().unwrap_or_default(), command])
                    .output()
                    .map_err(|e| Error::io(format!("running walship {command}"), e))?;
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    println!("      {line}");
                }
                if !out.status.success() {
                    return Err(Error::corrupt(format!(
                        "walship {command}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
            }
            Ok(())
        },
    )?;
    println!("demo complete in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
