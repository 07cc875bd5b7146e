//! Drill records (FORMAT.md, "Drills"): `drills/<id>.toml`, one per `walship drill`, published
//! once with the no-clobber publish when the drill ends, passed or failed. They are the proof an
//! auditor asks for ("a backup was restored and opened, this long ago, in this many seconds"),
//! and what `status` and `check` read. `<id>` starts with the drill's start time
//! (`YYYYMMDDTHHMMSSZ`), so names sort by age and the newest are found without reading the rest.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::Repository;
use crate::error::{Error, Result};

pub const DRILLS_DIR: &str = "drills";
pub const FORMAT_NAME: &str = "walship-drill";
pub const FORMAT_VERSION: u32 = 1;

/// How a single check of a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    /// Not applicable here (no data checksums, no amcheck): neither proof nor failure.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillCheck {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// One drill, as recorded. Durations are seconds from the moment the restore began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub host: String,
    pub walship_version: String,
    /// The stored backup restored ("" when none could be chosen).
    pub backup: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
    /// Seconds since the Unix epoch (with fractions).
    pub started_at: f64,
    pub finished_at: f64,
    pub passed: bool,
    /// Why it failed, in one sentence ("" when it passed).
    pub failure: String,
    /// The last segment archived when the drill started: the end of the archive it replays to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_segment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_to_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_seconds: Option<f64>,
    /// Until the copy had replayed everything and accepted connections: the RTO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    /// Commit time of the newest transaction replayed (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_at: Option<f64>,
    /// `started_at - last_commit_at`: what losing the primary at the drill's start would cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<f64>,
    #[serde(default)]
    pub bytes_restored: u64,
    #[serde(default)]
    pub bytes_replayed: u64,
    #[serde(default)]
    pub checks: Vec<DrillCheck>,
}

impl DrillRecord {
    pub fn new(id: &str, started_at: f64) -> DrillRecord {
        DrillRecord {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: id.into(),
            host: crate::os::hostname(),
            walship_version: env!("CARGO_PKG_VERSION").into(),
            backup: String::new(),
            target_time: None,
            started_at,
            finished_at: started_at,
            passed: false,
            failure: String::new(),
            end_segment: None,
            replayed_to_lsn: None,
            restore_seconds: None,
            consistent_seconds: None,
            rto_seconds: None,
            last_commit_at: None,
            rpo_seconds: None,
            bytes_restored: 0,
            bytes_replayed: 0,
            checks: Vec::new(),
        }
    }

    fn path(&self) -> String {
        format!("{DRILLS_DIR}/{}.toml", self.id)
    }
}

/// A drill id: its start time (`YYYYMMDDTHHMMSSZ`), host and process, so that two drills never
/// take the same name.
pub fn new_id(started: &str) -> String {
    let host: String = crate::os::hostname()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect();
    format!("{started}-{host}-{}", std::process::id())
}

/// What status reports about drills: the newest one, and the newest that passed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrillSummary {
    pub count: usize,
    pub last: Option<DrillRecord>,
    pub last_passed: Option<DrillRecord>,
    /// Records that cannot be read, with why.
    pub damaged: Vec<String>,
}

impl Repository {
    /// Publish a drill's record (never overwriting one).
    pub fn write_drill(&self, record: &DrillRecord) -> Result<()> {
        let path = record.path();
        let mut f = self.storage.create(&path)?;
        f.write_all(
            toml::to_string(record)
                .expect("a drill record serializes")
                .as_bytes(),
        )
        .map_err(|e| Error::io(format!("writing {}/{path}", self.describe()), e))?;
        match f.commit()? {
            crate::storage::Publish::Created => Ok(()),
            crate::storage::Publish::AlreadyExists => Err(Error::conflict(format!(
                "{}/{path} already exists: another drill took this id",
                self.describe()
            ))),
        }
    }

    /// The newest drill and the newest passed one, reading records newest first and stopping
    /// at the first that passed (a repository with years of weekly drills reads a few files).
    pub fn drill_summary(&self) -> Result<DrillSummary> {
        let mut names: Vec<String> = self
            .storage
            .list(DRILLS_DIR)?
            .into_iter()
            .filter(|e| !e.is_dir && e.name.ends_with(".toml"))
            .map(|e| e.name)
            .collect();
        names.sort();
        let mut s = DrillSummary {
            count: names.len(),
            ..DrillSummary::default()
        };
        for name in names.iter().rev() {
            let path = format!("{DRILLS_DIR}/{name}");
            match self.read_toml::<DrillRecord>(&path, "a drill record") {
                Ok(Some(r)) if r.format == FORMAT_NAME => {
                    if s.last.is_none() {
                        s.last = Some(r.clone());
                    }
                    if r.passed {
                        s.last_passed = Some(r);
                        break;
                    }
                }
                Ok(Some(r)) => s.damaged.push(format!(
                    "{}/{path}: format {:?}, not {FORMAT_NAME}",
                    self.describe(),
                    r.format
                )),
                Ok(None) => {}
                Err(e) => s.damaged.push(e.message),
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    #[test]
    fn the_newest_drill_and_the_newest_passed_one_are_found_and_records_never_overwrite() {
        let storage = MemoryStorage::default();
        let repo = Repository::open(Box::new(storage.clone())).unwrap();
        assert!(repo.drill_summary().unwrap().last.is_none());
        let mut a = DrillRecord::new("20261101T000000Z-h-1", 1.0);
        a.passed = true;
        a.rto_seconds = Some(12.5);
        repo.write_drill(&a).unwrap();
        let mut b = DrillRecord::new("20261108T000000Z-h-2", 2.0);
        b.failure = "check `select false` returned f".into();
        repo.write_drill(&b).unwrap();
        let s = repo.drill_summary().unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.last.as_ref().unwrap().id, b.id);
        assert_eq!(s.last_passed.as_ref().unwrap(), &a);
        assert_eq!(
            repo.write_drill(&b).unwrap_err().kind,
            crate::error::Kind::Conflict
        );
        storage.files.borrow_mut().insert(
            "drills/20261109T000000Z-x.toml".into(),
            b"nonsense = [".to_vec(),
        );
        let s = repo.drill_summary().unwrap();
        assert_eq!(s.damaged.len(), 1, "{:?}", s.damaged);
        assert_eq!(s.last.unwrap().id, b.id);
    }
}
