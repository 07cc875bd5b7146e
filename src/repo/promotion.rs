//! Promotion records and watcher heartbeats (FORMAT.md, "Promotions" and "Watchers").
//!
//! A promotion is keyed on the timeline the standby promotes *off*, the one it replays:
//! `promotions/off-TTTTTTTT.toml`, written with the no-clobber publish before PostgreSQL is asked
//! to promote. Every standby of one repository that decides to leave timeline T names the same
//! file, whatever else it believes about the archive, and exactly one publish succeeds: one
//! branch point, one new primary. A slower standby that decides later still names T, loses, and
//! does not promote. (An earlier format keyed the record on the new timeline, which a standby
//! computes from what it sees in the archive: two standbys that saw different archives computed
//! different names and both promoted.)
//!
//! Watchers publish heartbeats under `watchers/`, so that a watcher can see whether another
//! live standby has replayed further and should be the one promoted.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::Repository;
use crate::error::{Error, Result};
use crate::pg::WalFileName;
use crate::pg::timeline::TimelineHistory;
use crate::storage::Publish;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRecord {
    /// The timeline PostgreSQL was expected to choose.
    pub new_timeline: u32,
    /// The timeline the standby promoted off (absent in records of the earlier format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_timeline: Option<u32>,
    /// The standby's replay position when it decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<String>,
    /// The deciding node's persistent id (absent in records of the earlier format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    pub host: String,
    pub pgdata: String,
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub decided_at: i64,
}

impl PromotionRecord {
    /// Whether `node_id` wrote this record. Records of the earlier format name no node and are
    /// nobody's: hostnames repeat on cloned machines.
    pub fn is_from(&self, node_id: &str) -> bool {
        self.node_id.as_deref() == Some(node_id)
    }
}

/// One watcher's heartbeat: `watchers/<node id>.<seq as 16 hex digits>.toml`. The newest
/// sequence number of a node is its current state; a watcher is alive while its sequence number
/// keeps moving (judged by the reader's own monotonic clock, so a clock that jumps on either
/// side changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherBeat {
    pub node_id: String,
    pub seq: u64,
    pub host: String,
    pub pgdata: String,
    /// Whether this watcher fails over automatically (it has `failover_primary`).
    pub willing: bool,
    /// What the watcher is doing: `watching`, `blind` (cannot observe its standby), `refused`
    /// (cannot replay the archive to its end), `promoting`, `primary`.
    pub state: String,
    /// The timeline and position its standby has replayed (0 when unknown).
    pub timeline: u32,
    pub replay_lsn: u64,
    /// Seconds since the Unix epoch, for people reading `status`; liveness never uses it.
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Repository {
    /// The newest timeline the repository knows: from the history files and the segment
    /// directories' names (a repository with no history file is on timeline 1).
    pub fn newest_timeline(&self) -> Result<u32> {
        let mut newest = 1;
        for e in self.storage.list("wal/history")? {
            if let Some(t) = e.name.strip_suffix(".history") {
                newest = newest.max(u32::from_str_radix(t, 16).unwrap_or(0));
            }
        }
        for e in self.storage.list("wal")? {
            if e.is_dir && e.name.len() == 16 {
                newest = newest.max(u32::from_str_radix(&e.name[..8], 16).unwrap_or(0));
            }
        }
        Ok(newest)
    }

    /// The highest segment number archived on any timeline. Reads the segment directories of
    /// the highest "log" number first (the listing of `wal/` names them) and goes lower only
    /// while those hold no segment, instead of listing the whole repository: a smart
    /// promotion asks twice a second.
    pub fn newest_segment(&self, segment_size: u32) -> Result<Option<u64>> {
        let mut dirs: Vec<String> = self
            .storage
            .list("wal")?
            .into_iter()
            .filter(|e| e.is_dir && e.name.len() == 16)
            .map(|e| e.name)
            .collect();
        // by "log" number, highest first; a higher log holds only higher segment numbers
        dirs.sort_by(|a, b| b[8..].cmp(&a[8..]));
        let mut newest = None;
        for (i, dir) in dirs.iter().enumerate() {
            if newest.is_some() && dirs[i - 1][8..] != dir[8..] {
                break;
            }
            for e in self.storage.list(&format!("wal/{dir}"))? {
                if let Ok(n) = crate::pg::WalFileName::parse(&e.name)
                    && n.kind() == crate::pg::WalKind::Segment
                    && let Ok(segno) = n.segment_number(segment_size)
                {
                    newest = newest.max(Some(segno));
                }
            }
        }
        Ok(newest)
    }

    /// Publish the record of a promotion off `record.from_timeline`. `Ok(None)`: published,
    /// the decision is ours. `Ok(Some(existing))`: a record was there first (ours, after a
    /// restart, or another node's). A record in the earlier format (named after the new
    /// timeline) is written too, so that an older walship on another standby sees the decision.
    pub fn record_promotion(&self, record: &PromotionRecord) -> Result<Option<PromotionRecord>> {
        let from = record
            .from_timeline
            .expect("new records name the timeline they leave");
        if let Some(existing) =
            self.publish_record(&format!("promotions/off-{from:08X}.toml"), record)?
        {
            return Ok(Some(existing));
        }
        match self.publish_record(
            &format!("promotions/{:08X}.toml", record.new_timeline),
            record,
        )? {
            Some(existing) if existing != *record => Ok(Some(existing)),
            _ => Ok(None),
        }
    }

    fn publish_record(
        &self,
        path: &str,
        record: &PromotionRecord,
    ) -> Result<Option<PromotionRecord>> {
        let text = toml::to_string(record).expect("plain struct serializes");
        let mut f = self.storage.create(path)?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}/{path}", self.describe()), e))?;
        if f.commit()? == Publish::Created {
            return Ok(None);
        }
        self.read_toml(path, "a promotion record")?
            .map(Some)
            .ok_or_else(|| Error::unavailable(format!("{}/{path} vanished", self.describe())))
    }

    /// Every promotion record, both formats.
    pub fn promotion_records(&self) -> Result<Vec<PromotionRecord>> {
        let mut out = Vec::new();
        for e in self.storage.list("promotions")? {
            if !e.is_dir && e.name.ends_with(".toml") {
                let path = format!("promotions/{}", e.name);
                if let Some(r) = self.read_toml::<PromotionRecord>(&path, "a promotion record")? {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// What the repository knows that forbids promoting a standby off `timeline` (and that
    /// `node_id` did not write itself): a newer timeline (a history file, segments, or a record
    /// of a promotion to one), or a record of a promotion off `timeline` or a later one.
    pub fn promotion_blocker(&self, timeline: u32, node_id: &str) -> Result<Option<String>> {
        let newest = self.newest_timeline()?;
        if newest > timeline {
            return Ok(Some(format!(
                "the repository already holds timeline {newest}, newer than timeline {timeline} \
                 that this standby replays: another server was promoted"
            )));
        }
        for r in self.promotion_records()? {
            if r.is_from(node_id) {
                continue;
            }
            let leaves = r.from_timeline.unwrap_or(r.new_timeline.saturating_sub(1));
            if leaves >= timeline {
                return Ok(Some(format!(
                    "{} on {} ({}) already decided a promotion off timeline {leaves} {} s ago",
                    r.pgdata,
                    r.host,
                    r.reason,
                    crate::os::now() - r.decided_at
                )));
            }
        }
        Ok(None)
    }

    /// The fence at the archive: a segment of timeline `timeline` that begins at or past the
    /// point where a newer timeline forked off it comes from a primary that was demoted (or
    /// from a second primary) and must not enter the repository the new timeline's standbys
    /// follow. `segment_start` is the segment's first byte position; `read` reads a history
    /// object (the reader that checks headers and digests lives above this layer).
    pub fn fork_past(
        &self,
        timeline: u32,
        segment_start: u64,
        read: &dyn Fn(&WalFileName) -> Result<Vec<u8>>,
    ) -> Result<Option<(u32, u64)>> {
        for e in self.storage.list("wal/history")? {
            let Ok(name) = WalFileName::parse(&e.name) else {
                continue;
            };
            if name.timeline() <= timeline {
                continue;
            }
            let text = read(&name)?;
            let history = TimelineHistory::parse(name.timeline(), &String::from_utf8_lossy(&text))?;
            if let Some(switch) = history.switch_point_of(timeline)
                && segment_start >= switch
            {
                return Ok(Some((name.timeline(), switch)));
            }
        }
        Ok(None)
    }

    /// Publish `beat` as the watcher's newest heartbeat and remove its older ones.
    pub fn publish_beat(&self, beat: &WatcherBeat) -> Result<()> {
        let path = format!("watchers/{}.{:016x}.toml", beat.node_id, beat.seq);
        let text = toml::to_string(beat).expect("plain struct serializes");
        let mut f = self.storage.create(&path)?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}/{path}", self.describe()), e))?;
        f.commit()?;
        let prefix = format!("{}.", beat.node_id);
        for e in self.storage.list("watchers")? {
            if let Some(seq) = e
                .name
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".toml"))
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                && seq < beat.seq
            {
                self.storage.remove(&format!("watchers/{}", e.name))?;
            }
        }
        Ok(())
    }

    /// The newest heartbeat of every watcher.
    pub fn watcher_beats(&self) -> Result<Vec<WatcherBeat>> {
        let mut newest: std::collections::BTreeMap<String, (u64, String)> = Default::default();
        for e in self.storage.list("watchers")? {
            let Some((node, seq)) = e
                .name
                .strip_suffix(".toml")
                .and_then(|r| r.rsplit_once('.'))
                .and_then(|(n, s)| Some((n.to_string(), u64::from_str_radix(s, 16).ok()?)))
            else {
                continue;
            };
            let slot = newest.entry(node).or_insert((seq, e.name.clone()));
            if seq >= slot.0 {
                *slot = (seq, e.name.clone());
            }
        }
        let mut out = Vec::new();
        for (_, (_, name)) in newest {
            // a heartbeat removed between listing and reading is simply skipped
            if let Some(b) =
                self.read_toml::<WatcherBeat>(&format!("watchers/{name}"), "a watcher heartbeat")?
            {
                out.push(b);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::pg::walname::segment_name;
    use crate::repo::Repository;
    use crate::storage::Storage;
    use crate::storage::memory::MemoryStorage;

    fn put(storage: &MemoryStorage, path: &str) {
        storage
            .files
            .borrow_mut()
            .insert(path.to_string(), Vec::new());
        assert!(storage.open_read(path).unwrap().is_some());
    }

    fn record(node: &str, from: u32) -> super::PromotionRecord {
        super::PromotionRecord {
            new_timeline: from + 1,
            from_timeline: Some(from),
            replay_lsn: Some("0/3000000".into()),
            node_id: Some(node.into()),
            host: "h".into(),
            pgdata: format!("/srv/{node}"),
            reason: "automatic failover".into(),
            decided_at: 1,
        }
    }

    #[test]
    fn regression_two_standbys_that_see_different_archives_cannot_both_promote_off_one_timeline() {
        let storage = MemoryStorage::default();
        let repo = Repository::open(Box::new(storage.clone())).unwrap();
        // A decides first and publishes its record off timeline 1
        assert_eq!(repo.promotion_blocker(1, "a").unwrap(), None);
        assert_eq!(repo.record_promotion(&record("a", 1)).unwrap(), None);
        // B decides later, before A's history file is archived: the same key, it loses
        let lost = repo.record_promotion(&record("b", 1)).unwrap().unwrap();
        assert!(lost.is_from("a"));
        assert!(
            repo.promotion_blocker(1, "b")
                .unwrap()
                .unwrap()
                .contains("/srv/a")
        );
        // A's own record does not block A (a watcher restarted mid-promotion)
        assert_eq!(repo.promotion_blocker(1, "a").unwrap(), None);
        // once A's history file is archived, B is refused by the newer timeline as well, which
        // is what the earlier format missed: B computed timeline 3 and promoted
        put(&storage, "wal/history/00000002.history");
        assert!(
            repo.promotion_blocker(1, "b")
                .unwrap()
                .unwrap()
                .contains("already holds timeline 2")
        );
        // a standby of the new primary may later promote off timeline 2
        assert_eq!(repo.promotion_blocker(2, "b").unwrap(), None);
        assert_eq!(repo.record_promotion(&record("b", 2)).unwrap(), None);
    }

    #[test]
    fn a_record_of_the_earlier_format_blocks_and_is_nobodys_own() {
        let storage = MemoryStorage::default();
        let repo = Repository::open(Box::new(storage.clone())).unwrap();
        storage.files.borrow_mut().insert(
            "promotions/00000002.toml".into(),
            b"new_timeline = 2\nhost = \"h\"\npgdata = \"/srv/pg\"\nreason = \"x\"\ndecided_at = 1\n".to_vec(),
        );
        let why = repo.promotion_blocker(1, "a").unwrap().unwrap();
        assert!(why.contains("promotion off timeline 1"), "{why}");
        // and a new record names the new timeline too, for an older walship to see
        assert_eq!(repo.promotion_blocker(2, "a").unwrap(), None);
        repo.record_promotion(&record("a", 2)).unwrap();
        assert!(
            storage
                .files
                .borrow()
                .contains_key("promotions/00000003.toml")
        );
        assert!(
            storage
                .files
                .borrow()
                .contains_key("promotions/off-00000002.toml")
        );
    }

    #[test]
    fn the_fork_fence_finds_segments_past_a_newer_timelines_switch_point() {
        let storage = MemoryStorage::default();
        let repo = Repository::open(Box::new(storage.clone())).unwrap();
        storage.files.borrow_mut().insert(
            "wal/history/00000003.history".into(),
            b"1\t0/3000000\tx\n2\t0/5000000\ty\n".to_vec(),
        );
        let read = |n: &crate::pg::WalFileName| {
            Ok(storage.files.borrow()[&format!("wal/history/{}", n.as_str())].clone())
        };
        assert_eq!(repo.fork_past(1, 0x200_0000, &read).unwrap(), None);
        assert_eq!(
            repo.fork_past(1, 0x300_0000, &read).unwrap(),
            Some((3, 0x300_0000))
        );
        assert_eq!(repo.fork_past(2, 0x400_0000, &read).unwrap(), None);
        assert_eq!(
            repo.fork_past(2, 0x500_0000, &read).unwrap(),
            Some((3, 0x500_0000))
        );
        assert_eq!(repo.fork_past(3, 0x900_0000, &read).unwrap(), None);
        // garbage in a history file is an error, never "no fork"
        storage
            .files
            .borrow_mut()
            .insert("wal/history/00000003.history".into(), b"garbage".to_vec());
        assert!(repo.fork_past(1, 0x900_0000, &read).is_err());
    }

    #[test]
    fn a_watcher_heartbeat_replaces_its_older_ones_and_the_newest_is_read() {
        let storage = MemoryStorage::default();
        let repo = Repository::open(Box::new(storage.clone())).unwrap();
        let beat = |node: &str, seq: u64| super::WatcherBeat {
            node_id: node.into(),
            seq,
            host: "h".into(),
            pgdata: "/srv/pg".into(),
            willing: true,
            state: "watching".into(),
            timeline: 1,
            replay_lsn: seq * 100,
            updated_at: 1,
            detail: String::new(),
        };
        for seq in 1..=3 {
            repo.publish_beat(&beat("a", seq)).unwrap();
        }
        repo.publish_beat(&beat("b", 7)).unwrap();
        let beats = repo.watcher_beats().unwrap();
        assert_eq!(beats, vec![beat("a", 3), beat("b", 7)]);
        let names: Vec<String> = storage.files.borrow().keys().cloned().collect();
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("watchers/a."))
                .count(),
            1,
            "{names:?}"
        );
    }

    #[test]
    fn the_newest_segment_is_found_across_timelines_and_past_directories_without_segments() {
        const SEG: u32 = 16 << 20;
        let storage = MemoryStorage::default();
        let repo = Repository::open(Box::new(storage.clone())).unwrap();
        assert_eq!(repo.newest_segment(SEG).unwrap(), None);
        for (tli, n) in [(1, 5u64), (1, 300), (2, 301), (1, 257)] {
            let name = segment_name(tli, n, SEG);
            put(&storage, &format!("wal/{}/{name}", &name[..16]));
        }
        assert_eq!(repo.newest_segment(SEG).unwrap(), Some(301));
        // a higher log directory holding only a partial segment does not hide the segments below
        let partial = format!("{}.partial", segment_name(1, 600, SEG));
        put(&storage, &format!("wal/{}/{partial}", &partial[..16]));
        put(&storage, "wal/history/00000002.history");
        assert_eq!(repo.newest_segment(SEG).unwrap(), Some(301));
    }
}
