//! `walship prune`: plan, then execute. The plan (retention.rs) says which backups stay and why,
//! and which objects go; `--dry-run` prints it and stops. Execution holds the repository's prune
//! lock, removes in the plan's order (expired backup records first, then WAL oldest first), and
//! fsyncs each directory after its removals, so that a prune killed at any point leaves a
//! repository that `verify` accepts and that the next prune finishes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clap::Args;

use super::human_bytes;
use crate::backup::catalog::{Catalog, check_restorable};
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::os::now;
use crate::pg::{WalFileName, WalKind};
use crate::repo::retention::{KeepReason, Plan, Retention, plan};
use crate::repo::{ListedObject, Repository};
use crate::settings::{env, help, long, value_name};

/// A prune lock older than this, held from another host, is taken over (a prune of a large
/// repository over SSH takes seconds to minutes, never an hour).
const STALE_LOCK: Duration = Duration::from_secs(3600);
/// FORMAT.md: a temporary file older than a day belongs to a writer that died.
const STALE_TEMPORARY: Duration = Duration::from_secs(86_400);

#[derive(Debug, Args)]
pub struct PruneArgs {
    // the settings keep_backups and keep_days (crate::settings), which the configuration resolves
    #[arg(long = long("keep_backups"), env = env("keep_backups"), help = help("keep_backups"),
          value_name = value_name("keep_backups"))]
    pub keep_backups: Option<u32>,
    #[arg(long = long("keep_days"), env = env("keep_days"), help = help("keep_days"),
          value_name = value_name("keep_days"))]
    pub keep_days: Option<u32>,
    /// Remove WAL before this segment (archive_cleanup_command = 'walship prune --before %r')
    #[arg(long, value_name = "SEGMENT")]
    pub before: Option<String>,
    /// Print the plan and remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(config: &Config, args: &PruneArgs) -> Result<()> {
    let started = Instant::now();
    let retention = Retention {
        keep_backups: config.keep_backups,
        keep_days: config.keep_days,
        before: match &args.before {
            Some(b) => Some(segment_arg(b)?),
            None => None,
        },
    };
    if retention.keep_backups == Some(0) {
        return Err(Error::usage(
            "--keep-backups 0 would keep no backup; give 1 or more",
        ));
    }
    let repo = config.open_repository()?;
    // As verify: "nothing to prune" on an unmounted mount point would read as success.
    let identity = repo.require_identity()?.clone();
    let _lock = if args.dry_run {
        None
    } else {
        Some(repo.lock("prune", "prune", STALE_LOCK)?)
    };
    let listing = repo.list_objects()?;
    let segment_size = identity.wal_segment_size;
    let mut catalog = Catalog::read(&repo, &listing.objects, segment_size)?;
    if let Some(e) = catalog.damaged_records.drain(..).next() {
        // Retention computed without a backup could remove the WAL that backup needs.
        return Err(e.context("prune stops: every backup record must be readable"));
    }
    if let Some(e) = catalog.damaged_manifests.drain(..).next() {
        return Err(e.context("prune stops: every backup manifest must be readable"));
    }
    if !args.dry_run {
        for path in repo.remove_stale_temporaries(now() - STALE_TEMPORARY.as_secs() as i64)? {
            println!("  removed {path}: a temporary file of a writer that died");
        }
    }
    let holds = reader_holds(&repo, segment_size, !args.dry_run)?;
    let (plan, damaged) = checked_plan(&repo, &listing.objects, &mut catalog, &retention, &holds)?;
    // A stored backup goes with its backup history file, and before it: never a listed backup
    // whose WAL is gone.
    let expired: Vec<String> = catalog
        .backups
        .iter()
        .filter(|b| {
            plan.backups
                .iter()
                .any(|p| p.name == b.record.name && p.kept.is_none())
        })
        .filter_map(|b| b.stored.clone())
        .collect();
    print_plan(&repo.describe(), &retention, &plan, args.dry_run);
    for e in &damaged {
        println!("  DAMAGED: {}: not counted as restorable", e.message);
    }
    if !expired.is_empty() {
        println!(
            "  stored backups removed with their records: {}",
            expired.join(", ")
        );
    }
    let outcome = damaged_outcome(&damaged);
    if args.dry_run || plan.remove.is_empty() {
        return outcome;
    }
    for id in &expired {
        remove_stored_backup(repo.storage(), id)?;
    }
    // A restore that began while this prune planned: its hold was not in the plan. Asked after
    // the expired backups are gone and before any WAL goes: a restore that opened one of them
    // before it went published its hold before that (restore holds, then checks, then reads).
    let cutoff = plan.cutoff.as_ref().map_or(0, |c| c.0);
    if let Some((_, who)) = reader_holds(&repo, segment_size, false)?
        .into_iter()
        .find(|(n, _)| *n < cutoff)
    {
        return Err(Error::unavailable(format!(
            "prune stops before removing WAL: {who}, which began while prune planned"
        ))
        .with_hint("Run prune again: the new plan keeps what that reader needs."));
    }

    // One batch per directory, in the plan's order, each synced before the next (object
    // storage: one DeleteObjects request per 1,000 keys).
    let mut emptied: Vec<&WalFileName> = Vec::new();
    let dir_of = |n: &WalFileName| {
        crate::storage::split_path(&crate::repo::object_path(n))
            .0
            .to_string()
    };
    let names: Vec<&WalFileName> = plan.remove.iter().map(|o| &o.name).collect();
    for batch in names.chunk_by(|a, b| dir_of(a) == dir_of(b)) {
        repo.remove_objects(batch)?;
        let last = batch[batch.len() - 1];
        repo.sync_object_dir(last)?;
        emptied.push(last);
    }
    let mut dirs_removed = 0;
    for name in emptied {
        if name.kind() != WalKind::TimelineHistory && repo.remove_object_dir_if_empty(name)? {
            dirs_removed += 1;
        }
    }
    println!(
        "removed {} objects ({}) and {dirs_removed} empty directories in {:.2} s",
        plan.remove.len(),
        human_bytes(plan.freed_bytes),
        started.elapsed().as_secs_f64()
    );
    outcome
}

/// The plan, once every backup it keeps in place of older ones passed `check_restorable`. A
/// backup that fails is not restorable: the plan is made again without it (so an older good
/// backup is kept instead), and the failures are returned.
fn checked_plan(
    repo: &Repository,
    objects: &[ListedObject],
    catalog: &mut Catalog,
    retention: &Retention,
    holds: &[(u64, String)],
) -> Result<(Plan, Vec<Error>)> {
    let segment_size = repo.require_identity()?.wal_segment_size;
    let mut checked: HashSet<String> = HashSet::new();
    let mut damaged = Vec::new();
    loop {
        let plan = plan(
            objects,
            &catalog.backups,
            retention,
            segment_size,
            now(),
            holds,
        )?;
        if plan.remove.is_empty() {
            return Ok((plan, damaged));
        }
        let mut all_good = true;
        for pb in &plan.backups {
            if !matches!(pb.kept, Some(KeepReason::Newest | KeepReason::Window))
                || !checked.insert(pb.name.clone())
            {
                continue;
            }
            let Some(i) = catalog
                .backups
                .iter()
                .position(|b| b.record.name == pb.name)
            else {
                continue;
            };
            let b = &catalog.backups[i];
            let result = match catalog.manifest_of(b) {
                Some(m) => check_restorable(repo, b, m, segment_size),
                None => Ok(()), // not stored: never restorable, so never kept for its own sake
            };
            if let Err(e) = result {
                if e.kind == Kind::Unavailable {
                    return Err(e);
                }
                catalog.backups[i].restorable = false;
                damaged.push(e);
                all_good = false;
            }
        }
        if all_good {
            return Ok((plan, damaged));
        }
    }
}

/// The holds of readers (restores in progress, FORMAT.md "Readers"): the segment number each
/// holds WAL from, and who it is. Expired holds are reported, and removed when `remove_expired`
/// (under the prune lock). A record that cannot be read stops prune: it may be the hold that
/// matters.
fn reader_holds(
    repo: &Repository,
    segment_size: u32,
    remove_expired: bool,
) -> Result<Vec<(u64, String)>> {
    let (listed, damaged) = repo.list_readers()?;
    if let Some(e) = damaged.into_iter().next() {
        return Err(e
            .context("prune stops: every reader record must be readable")
            .with_hint(
                "A reader record is a restore's hold on WAL. Remove the file if no restore or \
                 recovering server uses it.",
            ));
    }
    let t = now();
    let mut holds = Vec::new();
    for l in listed {
        let r = &l.record;
        if r.expires < t {
            println!(
                "  note: reader {} (restore of {} into {}:{}) was not renewed since {}: its hold expired",
                r.id,
                r.backup,
                r.host,
                r.pgdata,
                crate::backup::id_for(r.written)
            );
            if remove_expired {
                repo.storage().remove(&l.path)?;
            }
            continue;
        }
        holds.push((
            r.segment_number(segment_size)?,
            format!(
                "reader {} (restore of {} into {}:{}) holds WAL from {}",
                r.id, r.backup, r.host, r.pgdata, r.needs_from
            ),
        ));
    }
    Ok(holds)
}

/// A prune that found damaged backups does what is safe without them, then fails, so that a
/// cron job reports the damage.
fn damaged_outcome(damaged: &[Error]) -> Result<()> {
    if damaged.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = damaged.iter().map(|e| e.message.as_str()).collect();
    Err(Error::corrupt(format!(
        "{} backup(s) failed their check and do not count as restorable: {}",
        damaged.len(),
        what.join("; ")
    ))
    .with_hint(
        "Prune kept older backups in their place. Run `walship verify` for the whole picture; take a \
         new base backup with `walship basebackup`, and push missing or damaged WAL again from a server \
         that still has it.",
    ))
}

/// `--before` takes a segment name, as archive_cleanup_command's %r gives it.
/// Remove `backups/<id>/`: the manifest first (the backup stops being offered for restore),
/// then its data, then the directory.
fn remove_stored_backup(storage: &dyn crate::storage::Storage, id: &str) -> Result<()> {
    let dir = crate::backup::backup_dir(id);
    storage.remove(&format!("{dir}/{}", crate::backup::MANIFEST_OBJECT))?;
    storage.sync_directory(&dir)?;
    for e in storage.list(&dir)? {
        if !e.is_dir {
            storage.remove(&format!("{dir}/{}", e.name))?;
        }
    }
    storage.sync_directory(&dir)?;
    storage.remove_dir_if_empty(&dir)?;
    storage.sync_directory("backups")
}

fn segment_arg(s: &str) -> Result<WalFileName> {
    let name = WalFileName::parse(s)?;
    if name.kind() != WalKind::Segment {
        return Err(Error::usage(format!(
            "--before {s}: give a WAL segment name (archive_cleanup_command's %r)"
        )));
    }
    Ok(name)
}

fn print_plan(repo: &str, retention: &Retention, plan: &Plan, dry_run: bool) {
    println!(
        "prune plan for {repo} ({}){}",
        retention.describe(),
        if dry_run {
            ", dry run: nothing is removed"
        } else {
            ""
        }
    );
    for note in &plan.notes {
        println!("  note: {note}");
    }
    if !plan.backups.is_empty() {
        println!("  backups (oldest first):");
        for b in &plan.backups {
            let fate = match b.kept {
                Some(KeepReason::Newest) => "keep    one of the newest",
                Some(KeepReason::Window) => "keep    inside the keep-days window",
                Some(KeepReason::AfterCutoff) => "keep    newer than the oldest kept backup",
                Some(KeepReason::Stored) => "keep    stored (--before removes WAL only)",
                None => "remove  expired",
            };
            println!(
                "    {fate:<44} {}{}",
                b.name,
                if b.restorable {
                    ""
                } else {
                    "  (not restorable)"
                }
            );
        }
    }
    match &plan.cutoff {
        Some((_, name)) => {
            println!("  WAL before {name} goes (on every timeline); from it on, everything stays")
        }
        None => println!("  no WAL goes"),
    }
    // Removed WAL as runs per timeline, not one line per segment.
    let mut runs: Vec<(u32, &str, &str, u64)> = Vec::new();
    for o in plan
        .remove
        .iter()
        .filter(|o| o.name.kind() != WalKind::BackupHistory)
    {
        let tli = o.name.timeline();
        match runs.iter_mut().find(|r| r.0 == tli) {
            Some(r) => {
                r.2 = o.name.as_str();
                r.3 += 1;
            }
            None => runs.push((tli, o.name.as_str(), o.name.as_str(), 1)),
        }
    }
    for (tli, first, last, n) in runs {
        println!("    remove  timeline {tli}: {first} .. {last} ({n} files)");
    }
    println!(
        "  {} objects go ({}), {} stay; timeline history files always stay",
        plan.remove.len(),
        human_bytes(plan.freed_bytes),
        plan.keep_objects
    );
}
