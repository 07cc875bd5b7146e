//! `walship restore [BACKUP] --pgdata DIR [--standby | --target-time T | --target-lsn L]`: a data
//! directory from a base backup in the repository (or, with `--from-stdin`, from the stream
//! `basebackup --to` sends), set up to recover through `walship fetch`: a standby, a
//! point-in-time recovery, or a recovery to the end of the archive.
//!
//! The stream is checked as it is written (`backup::unpack`); the recovery settings go in before
//! pg_control, so a directory that can start is a directory that is complete and configured.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::backup::unpack::{self, Target};
use crate::backup::{self, Manifest, Tablespace};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::server::conf_string as quote;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::backups::parse_lsn;
use crate::settings::{help, long, value_name};
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup id (`walship status` lists them) [default: the newest restorable one, or for a
    /// time or LSN target, the newest that ended before it]
    pub backup: Option<String>,
    /// Make a standby (standby.signal): it follows the archive, and the primary with --primary
    #[arg(long, conflicts_with_all = ["target_time", "target_lsn", "target_name", "target_xid"])]
    pub standby: bool,
    /// Recover up to this time (recovery_target_time, e.g. "2026-11-22 21:00:00+00")
    #[arg(long, value_name = "TIMESTAMP", conflicts_with_all = ["target_lsn", "target_name", "target_xid"])]
    pub target_time: Option<String>,
    /// Recover up to this WAL location (recovery_target_lsn)
    #[arg(long, value_name = "LSN", conflicts_with_all = ["target_name", "target_xid"])]
    pub target_lsn: Option<String>,
    /// Recover up to this restore point (recovery_target_name, made by pg_create_restore_point)
    #[arg(long, value_name = "NAME", conflicts_with = "target_xid")]
    pub target_name: Option<String>,
    /// Recover up to this transaction id (recovery_target_xid)
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<u64>,
    /// Whether the target itself is recovered (recovery_target_inclusive) [default: true, as
    /// PostgreSQL]
    #[arg(long, value_name = "BOOL")]
    pub target_inclusive: Option<bool>,
    /// What the server does at the target (recovery_target_action): promote (walship's
    /// default: the copy opens for writes), pause (PostgreSQL's default: read-only, until
    /// pg_wal_replay_resume()), shutdown
    #[arg(long, value_name = "ACTION", default_value = "promote", value_parser = ["promote", "pause", "shutdown"])]
    pub target_action: String,
    /// The primary the standby streams from as well as the archive (its primary_conninfo; no
    /// password here; --primary-conninfo: the earlier name, still accepted)
    #[arg(
        long = "primary",
        alias = "primary-conninfo",
        value_name = "CONNINFO",
        requires = "standby"
    )]
    pub primary_conninfo: Option<String>,
    /// Put a tablespace elsewhere, as pg_basebackup -T (repeatable)
    #[arg(long = "tablespace-map", value_name = "OLD=NEW")]
    pub tablespace_map: Vec<String>,
    /// A setting for the restored server's postgresql.auto.conf, e.g. port=5433 (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,
    /// Empty a non-empty data directory first (what is removed is said)
    #[arg(long)]
    pub force: bool,
    /// Start the server when the restore is complete
    #[arg(long)]
    pub start: bool,
    // the setting pg_bin (crate::settings), which the configuration resolves; for --start
    #[arg(long = long("pg_bin"), help = help("pg_bin"), value_name = value_name("pg_bin"))]
    pub pg_bin: Option<PathBuf>,
    /// Read the backup stream from standard input (what `basebackup --to` runs on the standby)
    #[arg(long, hide = true, conflicts_with = "backup")]
    pub from_stdin: bool,
    /// With --from-stdin: a tablespace the stream holds, OID=DIR (as on the primary)
    #[arg(long, hide = true, requires = "from_stdin", value_name = "OID=DIR")]
    pub expect_tablespace: Vec<String>,
}

pub fn run(config: &Config, args: &RestoreArgs) -> Result<()> {
    if crate::os::euid() == 0 {
        return Err(
            Error::usage("restore runs as root; run it as the user PostgreSQL runs as").with_hint(
                "The files must belong to that user, and PostgreSQL refuses to run as root.",
            ),
        );
    }
    let pgdata = config
        .pgdata
        .clone()
        .ok_or_else(|| Error::usage("restore needs --pgdata: the data directory to create"))?;
    if !pgdata.is_absolute() {
        return Err(Error::usage(format!(
            "--pgdata {}: give an absolute path",
            pgdata.display()
        )));
    }
    // restore_command needs the repository: fail before writing anything.
    if config.repo.is_none() {
        return Err(Error::usage(
            "no repository configured: the restored server could not fetch WAL",
        )
        .with_hint("Set `repo` in the configuration, WALSHIP_REPO, or --repo."));
    }
    let mut recovery = recovery_settings(config, args)?;
    let target = Target {
        pgdata: pgdata.clone(),
        tablespace_map: args
            .tablespace_map
            .iter()
            .map(|m| {
                m.split_once('=')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::usage(format!("--tablespace-map {m}: expected OLD=NEW")))
            })
            .collect::<Result<_>>()?,
        force: args.force,
    };
    // The reader hold of a restore from the repository, released if the restore fails.
    let mut hold: Option<(Repository, String)> = None;
    let result = restore_into(config, args, &pgdata, target, &mut recovery, &mut hold);
    if result.is_err()
        && let Some((repo, id)) = &hold
        && let Err(e) = repo.remove_reader_versions(id, None)
    {
        crate::log_line!("walship: restore: WARNING: could not release reader {id}: {e}");
    }
    result?;
    // From here on the directory is complete: its hold stays until its recovery ends.
    if args.start {
        start(&pgdata, config.pg_bin.as_deref())?;
    }
    Ok(())
}

fn restore_into(
    config: &Config,
    args: &RestoreArgs,
    pgdata: &std::path::Path,
    target: Target,
    recovery: &mut Recovery,
    hold: &mut Option<(Repository, String)>,
) -> Result<()> {
    let restored = if args.from_stdin {
        let tablespaces = args
            .expect_tablespace
            .iter()
            .map(|t| {
                t.split_once('=')
                    .and_then(|(oid, location)| {
                        Some(Tablespace {
                            oid: oid.parse().ok()?,
                            location: location.to_string(),
                        })
                    })
                    .ok_or_else(|| {
                        Error::usage(format!("--expect-tablespace {t}: expected OID=DIR"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let prepared = unpack::prepare(&target, "a backup stream", &tablespaces)?;
        // The sender waits for this line before it streams (see unpack::READY).
        println!("{}", unpack::READY);
        std::io::stdout()
            .flush()
            .map_err(|e| Error::io("writing to standard output", e))?;
        let r = unpack::unpack(std::io::stdin().lock(), prepared, None, &Progress::silent())?;
        // A standby made by `basebackup --to` fetches from the backup's start on, too. Its
        // data is here already: a repository that cannot take the hold now costs the hold,
        // not the copy.
        match config
            .open_repository()
            .and_then(|repo| hold_wal(&repo, &r.manifest, pgdata, false).map(|id| (repo, id)))
        {
            Ok((repo, id)) => {
                recovery.settings.push_str(&reader_settings(config, &id)?);
                *hold = Some((repo, id));
            }
            Err(e) => crate::log_line!(
                "walship: restore: WARNING: no reader hold in the repository ({e}); prune may remove WAL this standby still needs"
            ),
        }
        r
    } else {
        let repo = config.open_repository()?;
        let m = backup::catalog::choose(
            &repo,
            args.backup.as_deref(),
            args.target_time.as_deref(),
            args.target_lsn.as_deref(),
        )?;
        let id = hold_wal(&repo, &m, pgdata, true)?;
        recovery.settings.push_str(&reader_settings(config, &id)?);
        *hold = Some((repo, id));
        let repo = &hold.as_ref().expect("just set").0;
        backup::stored::unpack_stored(repo, &m, &target)?
    };
    let m = restored.finish(&recovery.settings, recovery.signal)?;
    crate::log_line!(
        "walship: restore: backup {} restored into {}: {} files, {}; {}",
        m.id,
        pgdata.display(),
        m.files.len(),
        human_bytes(m.original_bytes),
        recovery.describe
    );
    Ok(())
}

/// Publish a reader hold for restoring `m` into `pgdata` (FORMAT.md, "Readers"), so that prune
/// keeps the WAL from the backup's start while the restore and the recovery after it run; then
/// check, for a `stored` backup, that it and its first segment are still there: a prune may
/// have removed them before it saw the hold.
fn hold_wal(
    repo: &Repository,
    m: &Manifest,
    pgdata: &std::path::Path,
    stored: bool,
) -> Result<String> {
    use crate::pg::WalFileName;
    use crate::repo::readers::{ReaderRecord, new_id};
    let id = new_id(&m.id);
    let start = WalFileName::parse(&m.start_segment)?;
    repo.write_reader(&ReaderRecord::new(
        &id,
        &pgdata.display().to_string(),
        &m.id,
        &start,
    ))?;
    // A stream's first segment may still be on its way into the repository: only a stored
    // backup is checked.
    let still_there = !stored
        || (backup::stored_backups(repo)?.0.iter().any(|s| s.id == m.id)
            && repo.object_header(&start)?.is_some());
    if !still_there {
        repo.remove_reader_versions(&id, None)?;
        return Err(Error::unavailable(format!(
            "backup {} was pruned while this restore began",
            m.id
        ))
        .with_hint("Run the restore again: it chooses among the backups that are there now."));
    }
    crate::log_line!(
        "walship: restore: reader {id} holds WAL from {} until recovery ends",
        m.start_segment
    );
    Ok(id)
}

/// The restored server renews its hold at each restartpoint and releases it when recovery ends.
fn reader_settings(config: &Config, id: &str) -> Result<String> {
    Ok(format!(
        "archive_cleanup_command = {}
recovery_end_command = {}
",
        quote(&config.server_command(&format!("reader advance {id} %r"))?),
        quote(&config.server_command(&format!("reader end {id}"))?)
    ))
}

/// A restored copy that opens on a new timeline must not archive into the repository it came
/// from by default: standbys following `latest` would follow the copy. The DBA turns it back on
/// when the copy becomes the primary.
const ARCHIVE_OFF: &str = "# archiving off: this copy opens on a new timeline; when it becomes the primary:\n\
     # ALTER SYSTEM SET archive_mode = on; then restart\narchive_mode = 'off'\n";

struct Recovery {
    signal: &'static str,
    settings: String,
    describe: String,
}

fn recovery_settings(config: &Config, args: &RestoreArgs) -> Result<Recovery> {
    let mut s = format!(
        "\n# written by walship restore\nrestore_command = {}\n",
        quote(&config.restore_command()?)
    );
    let (signal, describe) = if args.standby {
        if let Some(c) = &args.primary_conninfo {
            crate::pg::client::PgClient::from_conninfo(c)?; // refuses a password
            s.push_str(&format!("primary_conninfo = {}\n", quote(c)));
        }
        s.push_str("recovery_target_timeline = 'latest'\n");
        ("standby.signal", "a standby of the archive".to_string())
    } else if let Some((setting, value)) = recovery_target(args)? {
        s.push_str(ARCHIVE_OFF);
        s.push_str(&format!("{setting} = {}\n", quote(&value)));
        if let Some(inclusive) = args.target_inclusive {
            s.push_str(&format!(
                "recovery_target_inclusive = {}\n",
                if inclusive { "on" } else { "off" }
            ));
        }
        s.push_str(&format!(
            "recovery_target_action = {}\n",
            quote(&args.target_action)
        ));
        let then = match args.target_action.as_str() {
            "pause" => "pauses there (read-only; pg_wal_replay_resume() ends recovery)",
            "shutdown" => "shuts down there",
            _ => "then opens with archive_mode off",
        };
        (
            "recovery.signal",
            format!("recovers to {setting} {value}, {then}"),
        )
    } else if args.target_inclusive.is_some() || args.target_action != "promote" {
        return Err(Error::usage(
            "--target-inclusive and --target-action need a target (--target-time, --target-lsn, \
             --target-name or --target-xid)",
        ));
    } else {
        s.push_str(ARCHIVE_OFF);
        (
            "recovery.signal",
            "recovers to the end of the archive, then opens with archive_mode off".to_string(),
        )
    };
    for kv in &args.settings {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            })
            .ok_or_else(|| Error::usage(format!("--set {kv}: expected NAME=VALUE")))?;
        s.push_str(&format!("{k} = {}\n", quote(v)));
    }
    Ok(Recovery {
        signal,
        settings: s,
        describe: describe + &format!(" ({signal})"),
    })
}

/// The recovery target the flags name, as PostgreSQL's setting and its value.
fn recovery_target(args: &RestoreArgs) -> Result<Option<(&'static str, String)>> {
    Ok(if let Some(t) = &args.target_time {
        Some(("recovery_target_time", t.clone()))
    } else if let Some(l) = &args.target_lsn {
        parse_lsn(l).ok_or_else(|| Error::usage(format!("--target-lsn {l}: expected X/Y")))?;
        Some(("recovery_target_lsn", l.clone()))
    } else if let Some(n) = &args.target_name {
        if n.is_empty() || n.len() > 63 {
            return Err(Error::usage(format!(
                "--target-name {n:?}: a restore point name has 1 to 63 bytes"
            )));
        }
        Some(("recovery_target_name", n.clone()))
    } else {
        args.target_xid
            .map(|x| ("recovery_target_xid", x.to_string()))
    })
}

fn start(pgdata: &std::path::Path, pg_bin: Option<&std::path::Path>) -> Result<()> {
    let server = crate::pg::server::LocalServer::open(pgdata, pg_bin)?;
    let log = pgdata.join("walship-postmaster.log");
    server.run(
        "pg_ctl",
        &[
            "start".as_ref(),
            "-w".as_ref(),
            "-t".as_ref(),
            "300".as_ref(),
            "-D".as_ref(),
            pgdata.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
        ],
        "starting the restored server",
    )?;
    crate::log_line!(
        "walship: restore: server started on {} (log: {})",
        pgdata.display(),
        log.display()
    );
    Ok(())
}
