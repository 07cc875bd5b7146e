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
