//! Retention: which backups to keep and which objects `prune` removes (FORMAT.md, "What may
//! delete"). A pure function of the listing, the backup catalog, the settings and the clock, so
//! that it can be tested on thousands of random archives, and so that a prune killed half-way
//! computes the same plan again and finishes it.
//!
//! The rule: retention picks the backups to keep; the oldest of them gives the cutoff, the
//! segment where its recovery starts. Everything at or after the cutoff stays, on every
//! timeline, whatever it is. Before the cutoff, segments, partial segments and the backup
//! history files of expired backups go. Timeline history files always stay: they are tiny, and
//! recovery needs them to choose a timeline.
//!
//! Only a restorable backup (its data stored in the repository and all its WAL archived, see
//! `backup::catalog`) is kept by retention. A record without stored data is no reason to keep
//! WAL: it goes when it is older than the cutoff. `--before` alone removes WAL only: every stored
//! backup stays, and so does the WAL from the oldest one's start on.

use serde::Serialize;

use super::ListedObject;
use super::backups::Backup;
use crate::error::{Error, Result};
use crate::pg::{WalFileName, WalKind};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep this many of the newest restorable backups.
    pub keep_backups: Option<u32>,
    /// Keep every restorable backup that stopped within this many days, and the newest one that
    /// stopped before that (so that any point in the window can be recovered to).
    pub keep_days: Option<u32>,
    /// archive_cleanup_command's %r: remove WAL before this segment (timeline ignored, as
    /// pg_archivecleanup does), never a stored backup or the WAL from its start on. With a
    /// retention setting too, the earlier cutoff wins.
    pub before: Option<WalFileName>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        !self.retains() && self.before.is_none()
    }

    /// A setting that chooses backups to keep (and so lets the others expire).
    pub fn retains(&self) -> bool {
        self.keep_backups.is_some() || self.keep_days.is_some()
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.keep_backups {
            parts.push(format!("keep {n} backup(s)"));
        }
        if let Some(d) = self.keep_days {
            parts.push(format!("keep {d} day(s)"));
        }
        if let Some(b) = &self.before {
            parts.push(format!("before {}", b.as_str()));
        }
        parts.join(", ")
    }
}

/// Why a backup stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// One of the `keep_backups` newest restorable backups.
    Newest,
    /// Stopped inside the `keep_days` window, or anchors its start.
    Window,
    /// Starts after the cutoff (for example a backup whose WAL is still being archived).
    AfterCutoff,
    /// A stored backup under `--before` alone, which removes WAL only.
    Stored,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedBackup {
    pub name: String,
    pub restorable: bool,
    /// `None`: removed.
    pub kept: Option<KeepReason>,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every backup, oldest first, with its fate.
    pub backups: Vec<PlannedBackup>,
    /// The first segment that stays (its number and name on the oldest kept backup's timeline),
    /// or `None`: nothing is removed.
    pub cutoff: Option<(u64, String)>,
    /// Objects to remove, in removal order: expired backup history files first (so that a prune
    /// killed half-way never leaves a listed backup without its WAL), then WAL oldest first (so
    /// that no timeline gets a hole).
    pub remove: Vec<ListedObject>,
    pub keep_objects: u64,
    pub freed_bytes: u64,
    /// Why nothing or less than asked was removed, for the plan's reader.
    pub notes: Vec<String>,
}

/// Compute the plan. `now` is seconds since the Unix epoch. `holds` are readers' holds (a
/// restore in progress): a segment number from which nothing is removed, and who holds it.
pub fn plan(
    objects: &[ListedObject],
    backups: &[Backup],
    retention: &Retention,
    segment_size: u32,
    now: i64,
    holds: &[(u64, String)],
) -> Result<Plan> {
    if retention.is_empty() {
        return Err(Error::usage("prune needs a retention setting").with_hint(
            "Give --keep-backups N and/or --keep-days D (or keep_backups / keep_days in the \
             configuration file), or --before SEGMENT as archive_cleanup_command.",
        ));
    }
    let mut plan = Plan::default();
    // Newest first, restorable only: an unrestorable backup is no reason to keep WAL.
    let restorable: Vec<&Backup> = backups.iter().rev().filter(|b| b.restorable).collect();
    let mut kept: Vec<(&str, KeepReason)> = Vec::new();
    if let Some(n) = retention.keep_backups {
        for b in restorable.iter().take(n as usize) {
            kept.push((&b.record.name, KeepReason::Newest));
        }
    }
    if let Some(days) = retention.keep_days {
        let since = now - i64::from(days) * 86_400;
        for b in &restorable {
            // Unknown time: treat as recent (keeping is the safe mistake).
            let inside = b.record.stopped_at.is_none_or(|t| t >= since);
            if !kept.iter().any(|(n, _)| *n == b.record.name) {
                kept.push((&b.record.name, KeepReason::Window));
            }
            if !inside {
                break; // the newest backup before the window anchors its start
            }
        }
    }
    if !retention.retains() {
        for b in backups.iter().filter(|b| b.stored.is_some()) {
            kept.push((&b.record.name, KeepReason::Stored));
        }
    }
    let mut cutoff: Option<u64> = None;
    if retention.retains() {
        if restorable.is_empty() {
            plan.notes.push(if backups.is_empty() {
                "no base backup in the repository: retention keeps all WAL".into()
            } else {
                "no backup in the repository is restorable: retention keeps all WAL".into()
            });
        }
        cutoff = if restorable.is_empty() {
            Some(0)
        } else {
            backups
                .iter()
                .filter(|b| kept.iter().any(|(n, _)| *n == b.record.name))
                .map(|b| b.start_segno)
                .min()
        };
    }
    if let Some(before) = &retention.before {
        let mut n = before.segment_number(segment_size)?;
        if !retention.retains() {
            let oldest_stored = backups
                .iter()
                .filter(|b| kept.iter().any(|(k, _)| *k == b.record.name))
                .min_by_key(|b| b.start_segno);
            if let Some(b) = oldest_stored.filter(|b| b.start_segno < n) {
                plan.notes.push(format!(
                    "--before removes WAL only: stored backups and their WAL stay (from {})",
                    b.record.start_segment
                ));
                n = b.start_segno;
            }
        }
        cutoff = Some(cutoff.map_or(n, |c| c.min(n)));
    }
    let mut cutoff = cutoff.unwrap_or(0);
    for (n, who) in holds {
        if *n < cutoff {
            plan.notes
                .push(format!("{who}: nothing from there on goes"));
            cutoff = *n;
        }
    }
    plan.cutoff = (cutoff > 0).then(|| {
        let tli = backups
            .iter()
            .find(|b| b.start_segno >= cutoff)
            .map_or(1, |b| b.record.start_timeline);
        (
            cutoff,
            crate::pg::walname::segment_name(tli, cutoff, segment_size),
        )
    });

    let mut expired: Vec<&str> = Vec::new();
    for b in backups {
        let reason = kept
            .iter()
            .find(|(n, _)| *n == b.record.name)
            .map(|(_, r)| *r)
            .or((b.start_segno >= cutoff).then_some(KeepReason::AfterCutoff));
        if reason.is_none() {
            expired.push(&b.record.name);
        }
        plan.backups.push(PlannedBackup {
            name: b.record.name.clone(),
            restorable: b.restorable,
            kept: reason,
        });
    }

    let mut wal: Vec<(u64, &ListedObject)> = Vec::new();
    for o in objects {
        let remove = match o.name.kind() {
            WalKind::TimelineHistory => false,
            WalKind::BackupHistory => expired.contains(&o.name.as_str()),
            WalKind::Segment | WalKind::Partial => match o.name.segment_number(segment_size) {
                Ok(n) if n < cutoff => {
                    wal.push((n, o));
                    false
                }
                _ => false,
            },
        };
        if remove {
            plan.remove.push(o.clone());
        }
    }
    wal.sort_by(|a, b| (a.0, a.1.name.as_str()).cmp(&(b.0, b.1.name.as_str())));
    plan.remove.extend(wal.into_iter().map(|(_, o)| o.clone()));
    plan.freed_bytes = plan.remove.iter().map(|o| o.stored_bytes).sum();
    plan.keep_objects = (objects.len() - plan.remove.len()) as u64;
    Ok(plan)
}

#[cfg(test)]
mod tests;
