//! `walship basebackup [--to STANDBY]`: a base backup of the running primary, streamed (tar,
//! compressed, every file hashed into the manifest) into the repository as `backups/<id>/`, or
//! straight into a standby's data directory through `walship restore --from-stdin` there.
//!
//! Orchestration here; reading files is `backup::source`, writing them `backup::unpack`. The
//! order: `pg_backup_start` in one psql session, the plan and the copy, `pg_backup_stop` (whose
//! backup_label goes into the stream), the manifest last, then a wait until the repository holds
//! every WAL segment the backup needs — only then is it restorable, and the command says so.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use sha2::{Digest, Sha256};

use crate::backup::source::{self, StreamWriter};
use crate::backup::{self, Manifest, StoredData, StreamHeader, Tablespace, unpack};
use crate::config::{Config, Target};
use crate::error::{Error, Result};
use crate::os::now;
use crate::pg::client::PgClient;
use crate::pg::session::PgSession;
use crate::pg::{WalFileName, walname::segment_name};
use crate::progress::Progress;
use crate::remote::{RemoteCommand, shell_quote};
use crate::repo::Repository;
use crate::repo::backups::parse_lsn;
use crate::storage::ssh::SshUrl;
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct BasebackupArgs {
    /// Stream into a standby's data directory instead of the repository: a target from the
    /// configuration ([targets.NAME]), ssh://[user@]host[:port]/path/to/pgdata, or a local path
    #[arg(long, value_name = "STANDBY")]
    pub to: Option<String>,
    /// Start the standby when it is ready (--to)
    #[arg(long, requires = "to")]
    pub start: bool,
    /// Empty a non-empty standby data directory first, saying what is removed (--to)
    #[arg(long, requires = "to")]
    pub force: bool,
    /// Seconds to wait for the backup's WAL to reach the repository (0: do not wait)
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub wal_timeout: u64,
}

/// Where the stream goes.
enum Sink<'r> {
    /// Sealed in an encrypted repository (`Repository::create_content`).
    Repository(crate::repo::sealed::ContentWriter<'r>),
    Local(Child),
    Ssh(RemoteCommand),
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Repository(object) => object.write(buf),
            Sink::Local(child) => child.stdin.as_mut().expect("piped").write(buf),
            Sink::Ssh(remote) => remote.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Repository(object) => object.flush(),
            Sink::Local(child) => child.stdin.as_mut().expect("piped").flush(),
            Sink::Ssh(remote) => remote.flush(),
        }
    }
}

/// Counts and hashes the compressed stream on its way to the sink.
struct Tally<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn run(config: &Config, args: &BasebackupArgs) -> Result<()> {
    // As root, the data directory is read as its owner (a tablespace link to /etc must not put
    // root's files into the repository).
    if let Some(d) = &config.pgdata {
        crate::pg::server::become_owner(d)?;
    }
    let client =
        PgClient::for_local(config.pg.as_deref(), config.pgdata.as_deref())?.ok_or_else(|| {
            Error::usage("basebackup needs the primary: give --pgdata (its data directory) or --pg")
        })?;
    let target = args
        .to
        .as_deref()
        .map(|t| resolve_target(config, t))
        .transpose()?;
    let repo = config.open_repository()?;
    let mut session = PgSession::open(&client)?;
    let f = session.row(
        "SELECT pg_is_in_recovery(), current_setting('archive_mode'), \
         (SELECT system_identifier FROM pg_control_system()), current_setting('data_directory'), \
         (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), \
         current_setting('server_version_num')::int / 10000",
        6,
    )?;
    if f[0] == "t" {
        return Err(
            Error::usage("the server is a standby; take the base backup on the primary")
                .with_hint("A backup from a standby has no backup history file in the archive."),
        );
    }
    if f[1] == "off" {
        return Err(
            Error::usage("archive_mode is off: a base backup needs its WAL archived").with_hint(
                "Set archive_mode = on and archive_command = 'walship push %p %f', and restart.",
            ),
        );
    }
    let (sysid, segment_size): (String, u32) = (f[2].clone(), f[4].parse().unwrap_or(0));
    let pg_version: u32 = f[5].parse().unwrap_or(0);
    crate::pg::require_supported(pg_version, &format!("the server ({})", client.describe()))?;
    match repo.identity() {
        Some(id) if id.system_identifier.to_string() != sysid => {
            return Err(Error::conflict(format!(
                "repository {} belongs to cluster {}, this server is {sysid}",
                repo.describe(),
                id.system_identifier
            )));
        }
        _ => {}
    }
    let pgdata = config
        .pgdata
        .clone()
        .unwrap_or_else(|| PathBuf::from(&f[3]));
    crate::pg::server::become_owner(&pgdata)?;
    std::fs::metadata(pgdata.join("PG_VERSION")).map_err(|e| {
        Error::usage(format!(
            "cannot read the data directory {}: {e}",
            pgdata.display()
        ))
        .with_hint("Run basebackup on the primary's host, as the user PostgreSQL runs as.")
    })?;

    // Where the stream goes is settled before PostgreSQL is asked for a backup (an immediate
    // checkpoint on the primary): a target that refuses, or a repository that cannot take the
    // object, costs the primary nothing.
    let tablespaces = source::tablespaces(&pgdata)?;
    let object_name = format!("data.tar{}", config.compression.suffix());
    let started_at = now();
    let (id, sink) = match &target {
        // Into the repository, the id is claimed there first: two backups started within one
        // second would otherwise share a directory, and one manifest could describe the other's
        // stream.
        None => {
            let id = backup::claim_id(
                repo.storage(),
                started_at,
                &format!(
                    "host = {}\npid = {}\nstarted_at = {started_at}\n",
                    toml::Value::String(crate::os::hostname()),
                    std::process::id()
                ),
            )?;
            let path = format!("{}/{object_name}", backup::backup_dir(&id));
            (id, Sink::Repository(repo.create_content(&path)?))
        }
        Some(t) => (
            backup::id_for(started_at),
            start_restore(config, t, args, &tablespaces)?,
        ),
    };
    let label = format!("walship {id}");
    let start_lsn = session
        .row(&format!("SELECT pg_backup_start('{label}', true)"), 1)?
        .remove(0);
    crate::log_line!("walship: basebackup: backup {id} started at {start_lsn} (checkpoint done)");
    let plan = source::plan(&pgdata)?;
    let sorted = |t: &[Tablespace]| {
        let mut t = t.to_vec();
        t.sort_by_key(|t| t.oid);
        t
    };
    if target.is_some() && sorted(&plan.tablespaces) != sorted(&tablespaces) {
        return Err(Error::conflict(format!(
            "the primary's tablespaces changed while the backup started ({tablespaces:?}, now {:?})",
            plan.tablespaces
        ))
        .with_hint("Run basebackup again; the standby's directory is left incomplete and is started over."));
    }
    let header = StreamHeader {
        format: backup::FORMAT_NAME.into(),
        version: backup::FORMAT_VERSION,
        id: id.clone(),
        system_identifier: sysid.clone(),
        pg_version,
        tablespaces: plan.tablespaces.clone(),
    };
    let dir = backup::backup_dir(&id);
    let progress = Progress::new("basebackup", plan.total_bytes);
    let tally = Tally {
        inner: sink,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let encoder = config
        .compression
        .stream_encoder(
            BufWriter::with_capacity(1 << 20, tally),
            config.compression_level,
            config.compress_threads,
        )
        .map_err(|e| Error::io("starting the compressor", e))?;
    let mut stream = StreamWriter::new(encoder, &header)?;
    for item in &plan.items {
        stream.add(item, &progress)?;
    }
    let stop = session.row(
        "SELECT encode(convert_to(labelfile, 'UTF8'), 'hex'), \
         encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex'), lsn FROM pg_backup_stop(false)",
        3,
    )?;
    drop(session);
    let label_file = unhex(&stop[0])?;
    let tablespace_map = unhex(&stop[1])?;
    stream.add_generated("data/backup_label", label_file.as_bytes())?;
    if !tablespace_map.is_empty() {
        stream.add_generated("data/tablespace_map", tablespace_map.as_bytes())?;
    }
    let mut manifest = manifest_for(
        &id,
        &label,
        &sysid,
        pg_version,
        segment_size,
        &label_file,
        &stop[2],
    )?;
    manifest.started_at = started_at;
    manifest.compression = config.compression.name().into();
    manifest.tablespaces = plan.tablespaces.clone();
    let tally = stream
        .finish(&mut manifest)?
        .finish()
        .and_then(|buffered| buffered.into_inner().map_err(|e| e.into_error()))
        .map_err(|e| Error::io("writing the backup stream", e))?;
    progress.finish();
    let secs = progress.elapsed().as_secs_f64().max(0.001);
    let stored = StoredData {
        object: object_name,
        bytes: tally.bytes,
        sha256: backup::hex(&tally.hasher.finalize()),
    };
    match tally.inner {
        Sink::Repository(object) => {
            if object.commit()? == crate::storage::Publish::AlreadyExists {
                return Err(Error::conflict(format!(
                    "backup {id}: {dir}/{} already exists in the repository; this backup's \
                     stream was not stored and no manifest was written",
                    stored.object
                ))
                .with_hint("Something else wrote into this backup's directory. Run basebackup again; `walship verify` checks the backups there."));
            }
            manifest.stored = Some(stored.clone());
            let mut m = repo.create_content(&format!("{dir}/{}", backup::MANIFEST_OBJECT))?;
            m.write_all(manifest.to_toml().as_bytes())
                .map_err(|e| Error::io("writing the backup manifest", e))?;
            if m.commit()? == crate::storage::Publish::AlreadyExists {
                return Err(Error::conflict(format!(
                    "backup {id} already exists in the repository"
                )));
            }
        }
        Sink::Local(child) => finish_local(child)?,
        Sink::Ssh(remote) => finish_remote(remote)?,
    }
    crate::log_line!(
        "walship: basebackup: backup {id}: {} files, {} read, {} sent ({:.1}x) in {secs:.1} s ({}/s){}",
        manifest.files.len(),
        human_bytes(manifest.original_bytes),
        human_bytes(stored.bytes),
        manifest.original_bytes as f64 / stored.bytes.max(1) as f64,
        human_bytes((manifest.original_bytes as f64 / secs) as u64),
        match &args.to {
            Some(t) => format!(", into {t}"),
            None => format!(", stored in {}/{dir}", repo.describe()),
        }
    );
    wait_for_wal(&repo, &manifest, Duration::from_secs(args.wal_timeout))
}

fn unhex(s: &str) -> Result<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    bytes
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::unavailable("PostgreSQL returned an unreadable backup_label"))
}

/// The manifest's WAL facts, from the backup_label PostgreSQL returned and the stop location.
fn manifest_for(
    id: &str,
    label: &str,
    sysid: &str,
    pg_version: u32,
    segment_size: u32,
    label_file: &str,
    stop_lsn: &str,
) -> Result<Manifest> {
    let field = |key: &str| {
        label_file
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
            .map(str::trim)
    };
    let bad = || {
        Error::unavailable(format!(
            "unexpected backup_label from PostgreSQL:\n{label_file}"
        ))
    };
    let start = field("START WAL LOCATION").ok_or_else(bad)?;
    let (start_lsn, rest) = start.split_once(" (file ").ok_or_else(bad)?;
    let start_segment = rest.trim_end_matches(')').to_string();
    let timeline = match field("START TIMELINE") {
        Some(t) => t.parse().map_err(|_| bad())?,
        None => {
            u32::from_str_radix(start_segment.get(..8).ok_or_else(bad)?, 16).map_err(|_| bad())?
        }
    };
    let start_pos = parse_lsn(start_lsn).ok_or_else(bad)?;
    let stop_pos = parse_lsn(stop_lsn).ok_or_else(bad)?;
    if segment_size == 0 || WalFileName::parse(&start_segment).is_err() {
        return Err(bad());
    }
    let seg = u64::from(segment_size);
    // The stop location is the end of the backup-end record: a stop exactly at a segment
    // boundary still needs the segment before it.
    let stop_segment = segment_name(timeline, stop_pos.saturating_sub(1) / seg, segment_size);
    Ok(Manifest {
        format: backup::FORMAT_NAME.into(),
        version: backup::FORMAT_VERSION,
        id: id.into(),
        label: label.into(),
        system_identifier: sysid.into(),
        pg_version,
        wal_segment_size: segment_size,
        timeline,
        start_lsn: start_lsn.into(),
        stop_lsn: stop_lsn.into(),
        backup_record: format!("{start_segment}.{:08X}.backup", start_pos % seg),
        start_segment,
        stop_segment,
        started_at: 0,
        stopped_at: now(),
        compression: String::new(),
        original_bytes: 0,
        stored: None,
        tablespaces: Vec::new(),
        directories: Vec::new(),
        files: Vec::new(),
    })
}

/// Wait until the repository holds every segment from the backup's start to its stop, and its
/// backup history file: only then can it be restored.
fn wait_for_wal(repo: &Repository, m: &Manifest, timeout: Duration) -> Result<()> {
    let seg = m.wal_segment_size;
    let first = WalFileName::parse(&m.start_segment)?.segment_number(seg)?;
    let last = WalFileName::parse(&m.stop_segment)?.segment_number(seg)?;
    let mut needed: Vec<String> = (first..=last)
        .map(|n| segment_name(m.timeline, n, seg))
        .collect();
    needed.push(m.backup_record.clone());
    let started = Instant::now();
    loop {
        let mut missing = Vec::new();
        for name in &needed {
            if repo.object_header(&WalFileName::parse(name)?)?.is_none() {
                missing.push(name.clone());
            }
        }
        if missing.is_empty() {
            crate::log_line!(
                "walship: basebackup: backup {} is restorable: WAL {}..{} and {} are archived",
                m.id,
                m.start_segment,
                m.stop_segment,
                m.backup_record
            );
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(Error::unavailable(format!(
                "backup {} is complete but not yet restorable: {} not archived after {} s",
                m.id,
                missing.join(", "),
                timeout.as_secs()
            ))
            .with_hint("Check the archiver (walship check, pg_stat_archiver); the backup becomes restorable when they arrive."));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `--to NAME|ssh://...|/path` as a target.
fn resolve_target(config: &Config, to: &str) -> Result<Target> {
    if let Some(rest) = to.strip_prefix("ssh://") {
        let url = SshUrl::parse(rest, to)?;
        return Ok(Target {
            host: Some(url.host),
            port: Some(url.port),
            user: url.user,
            pgdata: PathBuf::from(url.path),
            ..Target::default()
        });
    }
    if let Some(t) = config.targets.get(to) {
        return Ok(t.clone());
    }
    if to.starts_with('/') {
        return Ok(Target {
            pgdata: PathBuf::from(to),
            ..Target::default()
        });
    }
    let known: Vec<&str> = config.targets.keys().map(String::as_str).collect();
    Err(Error::usage(format!(
        "--to {to}: no such target (configured: {})",
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    ))
    .with_hint("Name a [targets.NAME] table of the configuration, an ssh://[user@]host[:port]/pgdata URL, or an absolute path."))
}

/// The `walship restore --from-stdin` command line for a target.
fn restore_args(
    config: &Config,
    t: &Target,
    args: &BasebackupArgs,
    tablespaces: &[Tablespace],
) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(c) = &t.config {
        a.extend(["--config".to_string(), c.clone()]);
    } else if t.host.is_none() {
        // On this host, the restore uses this command's repository and settings (as flags, with
        // no configuration file): what it was given with --config or --repo.
        a.extend(
            config
                .flag_args()
                .iter()
                .map(|f| f.to_string_lossy().into_owned()),
        );
    }
    a.extend(["restore", "--from-stdin", "--standby", "--pgdata"].map(String::from));
    a.push(t.pgdata.display().to_string());
    if let Some(c) = &t.primary_conninfo {
        a.extend(["--primary-conninfo".to_string(), c.clone()]);
    }
    for (old, new) in &t.tablespace_map {
        a.extend(["--tablespace-map".to_string(), format!("{old}={new}")]);
    }
    for ts in tablespaces {
        a.extend([
            "--expect-tablespace".to_string(),
            format!("{}={}", ts.oid, ts.location),
        ]);
    }
    for (k, v) in &t.settings {
        a.extend(["--set".to_string(), format!("{k}={v}")]);
    }
    if let Some(b) = &t.pg_bin {
        a.extend(["--pg-bin".to_string(), b.display().to_string()]);
    }
    if args.force {
        a.push("--force".into());
    }
    if args.start {
        a.push("--start".into());
    }
    a
}

/// Start `walship restore --from-stdin` for the target and wait until it says it is ready (its
/// checks of the target passed): a refusal comes back before anything is streamed.
fn start_restore<'r>(
    config: &Config,
    t: &Target,
    args: &BasebackupArgs,
    tablespaces: &[Tablespace],
) -> Result<Sink<'r>> {
    let rest = restore_args(config, t, args, tablespaces);
    match &t.host {
        None => {
            let program = match &t.walship {
                Some(w) => PathBuf::from(w),
                None => std::env::current_exe()
                    .map_err(|e| Error::io("finding this walship binary", e))?,
            };
            let mut child = Command::new(&program)
                .args(&rest)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| Error::io(format!("running {}", program.display()), e))?;
            let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) > 0 {
                if line.trim_end() == unpack::READY {
                    return Ok(Sink::Local(child));
                }
                crate::log_line!("{}", line.trim_end());
                line.clear();
            }
            drop(child.stdin.take());
            let status = child
                .wait()
                .map_err(|e| Error::io("waiting for walship restore", e))?;
            // Its kind is ours: a non-empty or running target is a conflict, not an outage.
            let kind = status.code().map_or(
                crate::error::Kind::Unavailable,
                crate::error::Kind::from_exit_code,
            );
            Err(Error::new(
                kind,
                format!(
                    "walship restore for {} refused to start ({status}); its message is above; \
                     nothing was asked of the primary",
                    t.pgdata.display()
                ),
            ))
        }
        Some(host) => {
            let url = SshUrl {
                user: t.user.clone(),
                host: host.clone(),
                port: t.port.unwrap_or(22),
                path: t.pgdata.display().to_string(),
            };
            let mut line = vec![shell_quote(t.walship.as_deref().unwrap_or("walship"))];
            line.extend(rest.iter().map(|a| shell_quote(a)));
            let mut remote = RemoteCommand::start(&url, &config.ssh_options(), &line.join(" "))?;
            for said in remote
                .wait_for_line(unpack::READY)
                .map_err(|e| e.context(format!("standby {host}")))?
            {
                crate::log_line!("  (standby) {said}");
            }
            Ok(Sink::Ssh(remote))
        }
    }
}

fn finish_local(mut child: Child) -> Result<()> {
    drop(child.stdin.take());
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for walship restore", e))?;
    if !status.success() {
        return Err(Error::unavailable(format!(
            "walship restore on the target failed ({status}); see its message above"
        )));
    }
    Ok(())
}

fn finish_remote(remote: RemoteCommand) -> Result<()> {
    let (status, out) = remote.finish(Duration::from_secs(900))?;
    for line in out.lines() {
        crate::log_line!("  (standby) {line}");
    }
    if status != 0 {
        return Err(Error::unavailable(format!(
            "walship restore on the standby exited {status}"
        )));
    }
    Ok(())
}
