//! `walship status`: what the repository holds, per timeline, at a glance (a table), or as JSON
//! for scripts (`--json`, schema in the README). Reads a listing only: fast on any repository.

use serde::Serialize;

use super::human_bytes;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::WalKind;
use crate::repo::backups::{Backup, catalog};
use crate::repo::inventory::{TimelineSummary, summarize};

#[derive(Serialize)]
struct StatusJson<'a> {
    repository: &'a str,
    format_version: u32,
    system_identifier: Option<String>,
    pg_version: Option<u32>,
    wal_segment_size: Option<u32>,
    timelines: Vec<TimelineSummary>,
    history_files: Vec<String>,
    backups: Vec<Backup>,
    damaged_backup_records: Vec<String>,
    strays: Vec<String>,
}

pub fn run(config: &Config, json: bool) -> Result<()> {
    let repo = config.open_repository()?;
    let listing = repo.list_objects()?;
    let identity = repo.identity().cloned();
    let segment_size = identity
        .as_ref()
        .map(|i| i.wal_segment_size)
        .unwrap_or(16 << 20);
    let timelines = summarize(&listing, segment_size);
    let (backups, damaged) = catalog(&repo, &listing.objects, segment_size)?;
    let damaged: Vec<String> = damaged.into_iter().map(|e| e.message).collect();
    let history: Vec<String> = listing
        .objects
        .iter()
        .filter(|o| o.name.kind() == WalKind::TimelineHistory)
        .map(|o| o.name.as_str().to_string())
        .collect();
    if json {
        let out = StatusJson {
            repository: &repo.describe(),
            format_version: crate::repo::identity::FORMAT_VERSION,
            system_identifier: identity.as_ref().map(|i| i.system_identifier.to_string()),
            pg_version: identity.as_ref().map(|i| i.pg_version),
            wal_segment_size: identity.as_ref().map(|i| i.wal_segment_size),
            timelines,
            history_files: history,
            backups,
            damaged_backup_records: damaged,
            strays: listing.strays,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::usage(e.to_string()))?
        );
        return Ok(());
    }
    match &identity {
        Some(id) => println!(
            "repository {} (format {}, PostgreSQL {}, system identifier {}, {} segments)",
            repo.describe(),
            crate::repo::identity::FORMAT_VERSION,
            id.pg_version,
            id.system_identifier,
            human_bytes(u64::from(id.wal_segment_size))
        ),
        None => {
            println!("repository {}: empty (nothing pushed yet)", repo.describe());
            return Ok(());
        }
    }
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
    for t in &timelines {
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
    if !history.is_empty() {
        println!("\ntimeline history files: {}", history.join(", "));
    }
    print_backups(&backups, &damaged);
    for s in &listing.strays {
        println!("not a walship object: {s}");
    }
    Ok(())
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
        } else {
            format!("NO: {} missing", b.missing_segments)
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
