//! `walship status`: what the repository holds, per timeline, and each backup with whether it is
//! restorable; with `--pgdata` or `pg` set, PostgreSQL's side too (archiver, lag). Printed as a
//! table, as JSON for scripts (`--json`, schema in the README), or in Prometheus' text format
//! for node_exporter's textfile collector (`--prometheus`). Reads a listing and the backup
//! records only: fast on any repository. The Prometheus rendering is `status/metrics.rs`.

mod metrics;

use serde::Serialize;

use super::human_bytes;
use crate::backup::catalog::Catalog;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::client::{PgClient, PgView};
use crate::pg::{WalFileName, WalKind};
use crate::repo::backups::Backup;
use crate::repo::drill::{DrillRecord, DrillSummary};
use crate::repo::inventory::{TimelineSummary, summarize};
use crate::repo::promotion::{PromotionRecord, WatcherBeat};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Prometheus,
}

/// Everything status reports; the JSON schema is this struct.
#[derive(Serialize)]
pub struct StatusReport {
    pub repository: String,
    pub format_version: u32,
    pub system_identifier: Option<String>,
    pub pg_version: Option<u32>,
    pub wal_segment_size: Option<u32>,
    pub timelines: Vec<TimelineSummary>,
    pub history_files: Vec<String>,
    pub backups: Vec<Backup>,
    pub damaged_backup_records: Vec<String>,
    /// Base backups `walship basebackup` stored (with a manifest), oldest first.
    pub stored_backups: Vec<StoredBackup>,
    pub strays: Vec<String>,
    /// Promotion records: who decided to promote off which timeline.
    pub promotions: Vec<PromotionRecord>,
    /// The newest heartbeat of every `walship watch` sharing this repository.
    pub watchers: Vec<WatcherBeat>,
    /// `walship drill`: how many were recorded, the newest, and the newest that passed.
    pub drills: DrillSummary,
    /// Present when a PostgreSQL connection is configured.
    pub postgres: Option<PostgresStatus>,
}

/// A base backup in `backups/<id>/`, as `walship restore` can use it.
#[derive(Serialize)]
pub struct StoredBackup {
    pub id: String,
    pub label: String,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub start_segment: String,
    pub stop_segment: String,
    pub files: usize,
    pub original_bytes: u64,
    pub stored_bytes: u64,
    pub compression: String,
    /// Its WAL (start to stop segment) and backup history file are archived.
    pub restorable: bool,
}

#[derive(Serialize)]
pub struct PostgresStatus {
    /// The server could not be asked; the other fields are absent.
    pub error: Option<String>,
    #[serde(flatten)]
    pub view: Option<PgView>,
    /// Its system identifier is the repository's.
    pub matches_repository: Option<bool>,
    /// Primary: complete segments not yet in the repository (the one being written excluded).
    pub archive_behind_segments: Option<u64>,
    /// Standby: segments in the repository beyond the one being replayed.
    pub archived_not_replayed_segments: Option<u64>,
}

pub fn report(config: &Config) -> Result<StatusReport> {
    let repo = config.open_repository()?;
    let listing = repo.list_objects()?;
    let identity = repo.identity().cloned();
    let segment_size = identity
        .as_ref()
        .map(|i| i.wal_segment_size)
        .unwrap_or(16 << 20);
    let timelines = summarize(&listing, segment_size);
    let Catalog {
        backups,
        stored: manifests,
        damaged_records: mut damaged,
        damaged_manifests,
    } = Catalog::read(&repo, &listing.objects, segment_size)?;
    damaged.extend(damaged_manifests);
    let stored_backups = manifests
        .into_iter()
        .map(|m| StoredBackup {
            restorable: backups
                .iter()
                .any(|b| b.restorable && b.stored.as_deref() == Some(m.id.as_str())),
            files: m.files.len(),
            stored_bytes: m.stored.as_ref().map(|s| s.bytes).unwrap_or(0),
            id: m.id,
            label: m.label,
            start_lsn: m.start_lsn,
            stop_lsn: m.stop_lsn,
            start_segment: m.start_segment,
            stop_segment: m.stop_segment,
            original_bytes: m.original_bytes,
            compression: m.compression,
        })
        .collect();
    let postgres = match PgClient::for_local(config.pg.as_deref(), config.pgdata.as_deref()) {
        Ok(None) => None,
        Ok(Some(client)) => Some(match PgView::read(&client) {
            Ok(view) => postgres_status(view, &identity, &timelines),
            Err(e) => PostgresStatus::failed(e),
        }),
        Err(e) => Some(PostgresStatus::failed(e)),
    };
    Ok(StatusReport {
        repository: repo.describe(),
        format_version: crate::repo::identity::FORMAT_VERSION,
        system_identifier: identity.as_ref().map(|i| i.system_identifier.to_string()),
        pg_version: identity.as_ref().map(|i| i.pg_version),
        wal_segment_size: identity.as_ref().map(|i| i.wal_segment_size),
        history_files: listing
            .objects
            .iter()
            .filter(|o| o.name.kind() == WalKind::TimelineHistory)
            .map(|o| o.name.as_str().to_string())
            .collect(),
        timelines,
        backups,
        damaged_backup_records: damaged.into_iter().map(|e| e.message).collect(),
        stored_backups,
        strays: listing.strays,
        promotions: repo.promotion_records()?,
        watchers: repo.watcher_beats()?,
        drills: repo.drill_summary()?,
        postgres,
    })
}

impl PostgresStatus {
    fn failed(e: Error) -> PostgresStatus {
        PostgresStatus {
            error: Some(e.to_string()),
            view: None,
            matches_repository: None,
            archive_behind_segments: None,
            archived_not_replayed_segments: None,
        }
    }
}

fn postgres_status(
    view: PgView,
    identity: &Option<crate::repo::Identity>,
    timelines: &[TimelineSummary],
) -> PostgresStatus {
    let seg = view.wal_segment_size.max(1);
    let segno = |name: &str| {
        WalFileName::parse(name)
            .and_then(|n| n.segment_number(seg))
            .ok()
    };
    let last_in_repo = |tli: Option<u32>| {
        timelines
            .iter()
            .filter(|t| tli.is_none_or(|x| t.timeline == x) && !t.last.is_empty())
            .max_by_key(|t| t.timeline)
            .and_then(|t| segno(&t.last))
    };
    let archive_behind = view.current_wal.as_deref().and_then(|cur| {
        let tli = u32::from_str_radix(&cur[..8], 16).ok();
        let current = segno(cur)?;
        let last = last_in_repo(tli).unwrap_or(0);
        Some(current.saturating_sub(1).saturating_sub(last))
    });
    let not_replayed = view.replay_lsn.as_deref().and_then(|lsn| {
        let replay = crate::repo::backups::parse_lsn(lsn)? / u64::from(seg);
        Some(last_in_repo(None)?.saturating_sub(replay))
    });
    PostgresStatus {
        error: None,
        matches_repository: identity
            .as_ref()
            .map(|i| i.system_identifier.to_string() == view.system_identifier),
        archive_behind_segments: archive_behind,
        archived_not_replayed_segments: not_replayed,
        view: Some(view),
    }
}

pub fn run(config: &Config, output: Output) -> Result<()> {
    let r = report(config)?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| Error::usage(e.to_string()))?
        ),
        Output::Prometheus => print!("{}", metrics::render(&r, crate::os::now())),
        Output::Table => print_table(&r),
    }
    Ok(())
}

fn print_table(r: &StatusReport) {
    match (&r.system_identifier, r.pg_version, r.wal_segment_size) {
        (Some(id), Some(v), Some(seg)) => println!(
            "repository {} (format {}, PostgreSQL {v}, system identifier {id}, {} segments)",
            r.repository,
            r.format_version,
            human_bytes(u64::from(seg))
        ),
        _ => println!("repository {}: empty (nothing pushed yet)", r.repository),
    }
    if !r.timelines.is_empty() {
        println!();
        println!(
            "{:>8}  {:<24}  {:<24}  {:>8}  {:>7}  {:>10}  {:>10}  {:>5}",
            "timeline",
            "first segment",
            "last segment",
            "segments",
            "missing",
            "stored",
            "original",
            "ratio"
        );
    }
    for t in &r.timelines {
        println!(
            "{:>8}  {:<24}  {:<24}  {:>8}  {:>7}  {:>10}  {:>10}  {:>5.2}",
            t.timeline,
            if t.first.is_empty() { "-" } else { &t.first },
            if t.last.is_empty() { "-" } else { &t.last },
            t.segments,
            t.missing,
            human_bytes(t.stored_bytes),
            human_bytes(t.original_bytes),
            t.original_bytes as f64 / t.stored_bytes.max(1) as f64
        );
        for g in &t.gaps {
            println!(
                "          GAP: {} .. {} ({} segments missing)",
                g.from, g.to, g.segments
            );
        }
        if t.partial_files + t.backup_history_files > 0 {
            println!(
                "          {} partial, {} backup history files",
                t.partial_files, t.backup_history_files
            );
        }
    }
    if !r.history_files.is_empty() {
        println!("\ntimeline history files: {}", r.history_files.join(", "));
    }
    if r.system_identifier.is_some() {
        print_backups(&r.backups, &r.damaged_backup_records);
        print_stored_backups(&r.stored_backups);
    }
    for s in &r.strays {
        println!("not a walship object: {s}");
    }
    print_failover(r);
    print_drills(&r.drills, crate::os::now());
    if let Some(pg) = &r.postgres {
        print_postgres(pg);
    }
}

fn print_failover(r: &StatusReport) {
    let mut promotions: Vec<&PromotionRecord> = r
        .promotions
        .iter()
        .filter(|p| p.from_timeline.is_some())
        .collect();
    // a record of the earlier format stands alone only where no new one names its timeline
    promotions.extend(r.promotions.iter().filter(|p| {
        p.from_timeline.is_none()
            && !r
                .promotions
                .iter()
                .any(|q| q.from_timeline.is_some() && q.new_timeline == p.new_timeline)
    }));
    for p in promotions {
        println!(
            "promotion to timeline {}: {} on {} ({}, at {}), decided at {}",
            p.new_timeline,
            p.pgdata,
            p.host,
            p.reason,
            p.replay_lsn.as_deref().unwrap_or("?"),
            p.decided_at
        );
    }
    let now = crate::os::now();
    for w in &r.watchers {
        println!(
            "watcher {} on {} ({}): {}{}, timeline {} at {}, heartbeat {} s ago{}",
            w.pgdata,
            w.host,
            &w.node_id[..w.node_id.len().min(8)],
            w.state,
            if w.willing {
                ", fails over automatically"
            } else {
                ""
            },
            w.timeline,
            crate::pg::timeline::format_lsn(w.replay_lsn),
            now - w.updated_at,
            if w.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", w.detail)
            }
        );
    }
}

/// The newest drill, and the newest that passed when that is another one.
fn print_drills(d: &DrillSummary, now: i64) {
    let describe = |r: &DrillRecord| {
        let age = (now as f64 - r.finished_at).max(0.0);
        let age = if age < 7200.0 {
            format!("{:.0} min ago", age / 60.0)
        } else if age < 172_800.0 {
            format!("{:.0} h ago", age / 3600.0)
        } else {
            format!("{:.0} days ago", age / 86_400.0)
        };
        let figures = match (r.rto_seconds, r.rpo_seconds) {
            (Some(rto), Some(rpo)) => format!(", RTO {rto:.1} s, RPO {rpo:.1} s"),
            (Some(rto), None) => format!(", RTO {rto:.1} s"),
            _ => String::new(),
        };
        if r.passed {
            format!("backup {} passed {age}{figures} (on {})", r.backup, r.host)
        } else {
            format!("FAILED {age} (on {}): {}", r.host, r.failure)
        }
    };
    match (&d.last, &d.last_passed) {
        (None, _) => println!(
            "
no drill recorded (`walship drill` restores a backup to prove it works)"
        ),
        (Some(last), passed) => {
            println!(
                "
last drill: {}",
                describe(last)
            );
            match passed {
                Some(p) if p.id != last.id => println!("last passed drill: {}", describe(p)),
                Some(_) => {}
                None => println!("no drill has passed"),
            }
        }
    }
    for e in &d.damaged {
        println!("DAMAGED: {e}");
    }
}

fn print_backups(backups: &[Backup], damaged: &[String]) {
    if backups.is_empty() && damaged.is_empty() {
        println!(
            "\nno base backups recorded (backup history files appear when a base backup ends)"
        );
        return;
    }
    println!(
        "\n{:<24}  {:<23}  {:<24}  {:>4}  {:<10}  label",
        "backup (start segment)", "stopped", "needs WAL up to", "segs", "restorable"
    );
    for b in backups {
        let restorable = if b.restorable {
            "yes".to_string()
        } else if let Some(h) = &b.missing_history {
            format!("NO: {h} missing")
        } else if b.missing_segments > 0 {
            format!("NO: {} missing", b.missing_segments)
        } else {
            // pg_basebackup, or a re-seed with `basebackup --to`: restore cannot use it
            "no: data not stored here".to_string()
        };
        println!(
            "{:<24}  {:<23}  {:<24}  {:>4}  {:<10}  {}",
            b.record.start_segment,
            b.record.stop_time,
            b.record.stop_segment,
            b.wal_segments,
            restorable,
            b.record.label
        );
    }
    for d in damaged {
        println!("DAMAGED: {d}");
    }
}

fn print_stored_backups(stored: &[StoredBackup]) {
    if stored.is_empty() {
        return;
    }
    println!(
        "\n{:<16}  {:<12}  {:<12}  {:<24}  {:<24}  {:>9}  {:>9}  {:>5}  restorable",
        "stored backup", "start LSN", "stop LSN", "WAL from", "WAL to", "size", "stored", "ratio"
    );
    for b in stored {
        println!(
            "{:<16}  {:<12}  {:<12}  {:<24}  {:<24}  {:>9}  {:>9}  {:>5.1}  {}",
            b.id,
            b.start_lsn,
            b.stop_lsn,
            b.start_segment,
            b.stop_segment,
            human_bytes(b.original_bytes),
            human_bytes(b.stored_bytes),
            b.original_bytes as f64 / b.stored_bytes.max(1) as f64,
            if b.restorable {
                "yes"
            } else {
                "NO: WAL missing"
            }
        );
    }
}

fn print_postgres(pg: &PostgresStatus) {
    let Some(v) = &pg.view else {
        println!(
            "\nPostgreSQL: {}",
            pg.error.as_deref().unwrap_or("unknown error")
        );
        return;
    };
    let age = |s: Option<f64>| s.map(|s| format!("{s:.0} s ago")).unwrap_or_default();
    println!(
        "\nPostgreSQL ({}): {}, system identifier {}{}",
        v.connection,
        if v.in_recovery { "standby" } else { "primary" },
        v.system_identifier,
        match pg.matches_repository {
            Some(false) => "  MISMATCH: not the repository's cluster",
            _ => "",
        }
    );
    println!(
        "  archive_mode {}, archive_command '{}'",
        v.archive_mode, v.archive_command
    );
    if !v.restore_command.is_empty() {
        println!("  restore_command '{}'", v.restore_command);
    }
    println!(
        "  archiver: {} archived (last {} {}), {} failed{}",
        v.archived_count,
        v.last_archived_wal.as_deref().unwrap_or("-"),
        age(v.last_archived_age_seconds),
        v.failed_count,
        v.last_failed_wal
            .as_ref()
            .map(|w| format!(" (last {w} {})", age(v.last_failed_age_seconds)))
            .unwrap_or_default()
    );
    if v.archiver_failing {
        println!(
            "  ARCHIVER FAILING: the last attempt failed; see the PostgreSQL log for walship's error"
        );
    }
    if let (Some(cur), Some(behind)) = (&v.current_wal, pg.archive_behind_segments) {
        println!("  writing {cur}; complete segments not yet in the repository: {behind}");
    }
    if let Some(lsn) = &v.replay_lsn {
        println!(
            "  replayed up to {lsn}{}; archived segments not yet replayed: {}",
            v.replay_lag_seconds
                .map(|s| format!(" (last replayed transaction {s:.0} s old)"))
                .unwrap_or_default(),
            pg.archived_not_replayed_segments
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
}
