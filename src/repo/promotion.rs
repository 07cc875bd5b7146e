//! Promotion records (FORMAT.md, "Promotions"): `promotions/TTTTTTTT.toml`, written with the
//! no-clobber publish before a standby is promoted to timeline TTTTTTTT. PostgreSQL names the new
//! timeline after the newest one it finds in the archive, so every standby of one repository
//! that decides to promote computes the same name, and exactly one of them can publish it: one
//! decision, one new primary.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::Repository;
use crate::error::{Error, Result};
use crate::storage::Publish;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRecord {
    pub new_timeline: u32,
    pub host: String,
    pub pgdata: String,
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub decided_at: i64,
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

    /// Publish the record of a promotion to `record.new_timeline`. `Ok(None)`: published, the
    /// decision is ours. `Ok(Some(existing))`: someone else's record was there first.
    pub fn record_promotion(&self, record: &PromotionRecord) -> Result<Option<PromotionRecord>> {
        let path = format!("promotions/{:08X}.toml", record.new_timeline);
        let text = toml::to_string(record).expect("plain struct serializes");
        let mut f = self.storage.create(&path)?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}/{path}", self.describe()), e))?;
        if f.commit()? == Publish::Created {
            return Ok(None);
        }
        self.read_toml(&path, "a promotion record")?
            .map(Some)
            .ok_or_else(|| Error::unavailable(format!("{}/{path} vanished", self.describe())))
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
