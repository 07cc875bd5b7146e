//! `walship push %p %f` (archive_command): validate the name, make sure the repository belongs to
//! this cluster (initializing an empty one), push the file, log one line. Exit 0 only once the
//! object is durable.

use std::path::Path;
use std::time::{Duration, Instant};

use super::human_bytes;
use crate::archive_identity::ensure_identity;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::pg::{WalFileName, WalKind};
use crate::spool::{Ack, SourceStamp, Spool, SpoolKind, spawn_worker};
use crate::transfer::{PushOptions, PushOutcome, push_file};

/// `replace_damaged`: `push --replace-damaged`, run by hand (see `PushOptions`).
pub fn run(config: &Config, path: &Path, name: &str, replace_damaged: bool) -> Result<()> {
    let name = WalFileName::parse(name)?;
    if path.file_name().and_then(|f| f.to_str()) != Some(name.as_str()) {
        // PostgreSQL passes %p = pg_wal/%f; anything else is a wrongly written archive_command.
        return Err(Error::usage(format!(
            "path {} does not end in the file name {}",
            path.display(),
            name.as_str()
        ))
        .with_hint("Use archive_command = 'walship push %p %f'."));
    }
    crate::pg::server::become_owner_of_workdir(path.parent().unwrap_or(Path::new(".")))?;
    // A missing source is a wrongly set up call, not "not in the archive" (exit 1 belongs to
    // fetch): PostgreSQL only ever names files that exist.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Error::usage(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        Err(e) => {
            return Err(Error::usage(format!("{}: {e}", path.display())).with_hint(
                "PostgreSQL runs archive_command in the data directory and passes %p relative to \
                 it. Check the working directory and archive_command.",
            ));
        }
    }
    if config.push_ahead > 0 && !replace_damaged {
        let started = Instant::now();
        if let Some(summary) = push_via_worker(config, path, &name)? {
            crate::log_line!(
                "walship: pushed {} ({summary}, by the push-ahead worker) to {}; this call took {} ms",
                name.as_str(),
                config.location(),
                started.elapsed().as_millis()
            );
            return Ok(());
        }
    }
    let mut repo = config.open_repository()?;
    let identity = ensure_identity(&mut repo, path, &name)?;
    let opts = PushOptions {
        compression: config.compression,
        level: config.compression_level,
        threads: config.compress_threads,
        replace_damaged,
    };
    let report = push_file(&repo, &identity, path, &name, &opts)?;
    let ms = report.elapsed.as_millis();
    match report.outcome {
        PushOutcome::Stored => crate::log_line!(
            "walship: pushed {} ({} -> {}, ratio {:.2}, {}-{}) to {} in {ms} ms",
            name.as_str(),
            human_bytes(report.original_bytes),
            human_bytes(report.stored_bytes),
            report.original_bytes as f64 / report.stored_bytes.max(1) as f64,
            opts.compression.name(),
            opts.level,
            repo.describe()
        ),
        PushOutcome::Replaced => crate::log_line!(
            "walship: replaced the damaged object {} in {} with {} ({} -> {}) in {ms} ms",
            name.as_str(),
            repo.describe(),
            path.display(),
            human_bytes(report.original_bytes),
            human_bytes(report.stored_bytes),
        ),
        PushOutcome::AlreadyArchived => crate::log_line!(
            "walship: {} was already archived in {} with identical content; nothing written ({ms} ms)",
            name.as_str(),
            repo.describe()
        ),
    }
    Ok(())
}

/// How long a call waits for the worker's acknowledgement before pushing its file itself.
/// After that the call pushes its file itself (finding it already there if the worker did push
/// it but could not acknowledge it, e.g. with pg_wal full).
const WORKER_WAIT: Duration = Duration::from_secs(30);

/// Let the push-ahead worker push this file (starting the worker if none runs) and wait for its
/// acknowledgement. `Ok(None)`: no acknowledgement will come (the file is not `.ready`, the worker
/// died, or it took too long), so the caller pushes the file itself; either way a file is only
/// reported as archived once it is durable in the repository.
fn push_via_worker(config: &Config, path: &Path, name: &WalFileName) -> Result<Option<String>> {
    let pg_wal = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !pg_wal
        .join("archive_status")
        .join(format!("{}.ready", name.as_str()))
        .exists()
    {
        return Ok(None); // not PostgreSQL's archiver calling (or already marked done)
    }
    let spool = match Spool::open(pg_wal, SpoolKind::Push, &config.spool_key()) {
        Ok(s) => s,
        Err(_) => return Ok(None), // a read-only pg_wal: push directly
    };
    // This call's configuration is the one archive_command uses now: a worker started for
    // another one (another repository, other settings) must stop pushing.
    spool.supersede_others();
    let stamp = SourceStamp::of(path)?;
    let started = Instant::now();
    let mut spawned: Option<std::process::Child> = None;
    loop {
        match spool.take_ack(name.as_str(), &stamp) {
            Some(Ack::Done(summary)) => return Ok(Some(summary)),
            Some(Ack::Failed(code, message)) => {
                let mut e = Error::new(Kind::from_exit_code(code), message);
                e.message = format!("(push-ahead worker) {}", e.message);
                return Err(e);
            }
            None => {}
        }
        let ours_running = spawned
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if !ours_running && !spool.worker_alive() {
            // Only a segment starts a worker: an archive_command that passes walship nothing
            // but history files (PostgreSQL's own recovery tests do) must not get a worker that
            // pushes every .ready segment behind its back. A live worker still answers them.
            if spawned.is_some() || name.kind() != WalKind::Segment {
                return Ok(None); // the worker we started is gone without an answer
            }
            spawned = Some(spawn_worker(
                &spool,
                &config.worker_args("push-ahead", &spool.pg_wal),
            )?);
        }
        if started.elapsed() > WORKER_WAIT {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
