//! Base backups as the repository knows them: PostgreSQL's backup history files
//! (`SEG.OFFSET.backup`), which the archiver pushes when a base backup ends (pg_basebackup, or
//! pg_backup_stop on a primary with archiving on). Each names the backup's start and stop WAL
//! locations, so the catalog can say which segments a backup needs and whether all are archived
//! ("restorable"). `prune` anchors its retention on this catalog.

use serde::Serialize;

use super::read::read_small_object;
use super::{ListedObject, Repository};
use crate::error::{Error, Result};
use crate::pg::{WalFileName, WalKind};

/// PostgreSQL writes a few hundred bytes; anything much larger is not a backup history file.
const MAX_RECORD: u64 = 64 * 1024;

/// One backup history file, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupRecord {
    /// The object's name: `<start segment>.<offset>.backup`.
    pub name: String,
    pub label: String,
    pub start_lsn: String,
    pub stop_lsn: String,
    /// The segment holding the start location (recovery of this backup begins there).
    pub start_segment: String,
    /// The segment holding the stop location (recovery is consistent once it is replayed).
    pub stop_segment: String,
    pub start_timeline: u32,
    pub stop_timeline: u32,
    /// As PostgreSQL wrote them (in its log_timezone).
    pub start_time: String,
    pub stop_time: String,
    /// The stop time as seconds since the Unix epoch, where the zone could be read; otherwise
    /// the object's modification time (it is archived when the backup stops); otherwise unknown.
    pub stopped_at: Option<i64>,
}

/// A backup and what the archive holds of the WAL it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    #[serde(flatten)]
    pub record: BackupRecord,
    /// Segments from the start segment to the stop segment (inclusive).
    pub wal_segments: u64,
    /// How many of those are not in the repository.
    pub missing_segments: u64,
    /// The timeline history file the backup's timeline needs (timeline 2 and later), if missing.
    pub missing_history: Option<String>,
    /// The stored backup (`backups/<id>/`) this record describes; `None` when the data is kept
    /// elsewhere (pg_basebackup, a re-seed with `basebackup --to`). Set by
    /// `backup::catalog::attach_stored`.
    pub stored: Option<String>,
    /// `restore` can use it: every segment from start to stop and the timeline's history file are
    /// archived, and (once `attach_stored` ran) the repository holds its data.
    pub restorable: bool,
    /// Start segment number, for ordering and retention (not serialized).
    #[serde(skip)]
    pub start_segno: u64,
    #[serde(skip)]
    pub stop_segno: u64,
    /// The start location as a number: backups are ordered by it.
    #[serde(skip)]
    pub start_pos: u64,
}

/// Parse a backup history file. `name` is the object's name, which must agree with the start
/// location recorded inside.
pub fn parse_record(name: &str, text: &str, modified: Option<i64>) -> Result<BackupRecord> {
    let bad = |why: &str| {
        Error::corrupt(format!("backup history file {name}: {why}")).with_hint(
            "The object is not a backup history file PostgreSQL wrote. Restore it from another \
             copy of the archive, or remove it if the backup it describes is gone.",
        )
    };
    let field = |key: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
            .map(str::trim)
    };
    let location = |key: &str| -> Result<(String, String)> {
        // "0/2000028 (file 000000010000000000000002)"
        let v = field(key).ok_or_else(|| bad(&format!("no {key} line")))?;
        let (lsn, rest) = v
            .split_once(" (file ")
            .ok_or_else(|| bad(&format!("{key} is not \"LSN (file SEGMENT)\"")))?;
        let file = rest
            .strip_suffix(')')
            .ok_or_else(|| bad(&format!("{key} is not \"LSN (file SEGMENT)\"")))?;
        parse_lsn(lsn).ok_or_else(|| bad(&format!("{key} has a bad LSN {lsn:?}")))?;
        match WalFileName::parse(file) {
            Ok(n) if n.kind() == WalKind::Segment => Ok((lsn.to_string(), file.to_string())),
            _ => Err(bad(&format!("{key} names {file:?}, not a WAL segment"))),
        }
    };
    let (start_lsn, start_segment) = location("START WAL LOCATION")?;
    let (stop_lsn, stop_segment) = location("STOP WAL LOCATION")?;
    if !name.starts_with(&start_segment) {
        return Err(bad(&format!(
            "records a start in {start_segment}, but its name says otherwise"
        )));
    }
    let timeline = |key: &str, segment: &str| -> Result<u32> {
        match field(key) {
            Some(v) => v
                .parse()
                .map_err(|_| bad(&format!("{key} {v:?} is not a number"))),
            // Older servers did not write the timeline lines: the segment name has it.
            None => Ok(u32::from_str_radix(&segment[..8], 16).expect("checked segment name")),
        }
    };
    let start_time = field("START TIME").unwrap_or_default().to_string();
    let stop_time = field("STOP TIME").unwrap_or_default().to_string();
    Ok(BackupRecord {
        name: name.to_string(),
        label: field("LABEL").unwrap_or_default().to_string(),
        start_timeline: timeline("START TIMELINE", &start_segment)?,
        stop_timeline: timeline("STOP TIMELINE", &stop_segment)?,
        stopped_at: parse_pg_time(&stop_time)
            .or_else(|| parse_pg_time(&start_time))
            .or(modified),
        start_lsn,
        stop_lsn,
        start_segment,
        stop_segment,
        start_time,
        stop_time,
    })
}

/// `X/Y` as PostgreSQL prints an LSN.
pub use crate::pg::timeline::parse_lsn;

/// `YYYY-MM-DD HH:MM:SS ZONE` as PostgreSQL writes backup times, for the zones whose offset the
/// text itself gives (UTC, GMT, Z, +HH, -HH, +HHMM, +HH:MM). Other abbreviations (CET, EST...)
/// are ambiguous without a time zone database: `None`.
pub fn parse_pg_time(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?);
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 || !(1..=12).contains(&d[1]) || !(1..=31).contains(&d[2]) {
        return None;
    }
    let offset = match zone {
        "UTC" | "GMT" | "Z" => 0,
        z if z.starts_with('+') || z.starts_with('-') => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
            let (h, m) = match digits.len() {
                2 => (digits.parse::<i64>().ok()?, 0),
                4 => (
                    digits[..2].parse::<i64>().ok()?,
                    digits[2..].parse::<i64>().ok()?,
                ),
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(d[0], d[1], d[2]) * 86400 + t[0] * 3600 + t[1] * 60 + t[2] - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The backup catalog: every backup history object in `objects`, read and parsed, with what the
/// repository holds of its WAL, in start order; and the records that could not be read or parsed
/// (damaged objects), each with its error. A storage failure is an error of the whole call.
pub fn catalog(
    repo: &Repository,
    objects: &[ListedObject],
    segment_size: u32,
) -> Result<(Vec<Backup>, Vec<Error>)> {
    let mut records = Vec::new();
    let mut damaged = Vec::new();
    for o in objects
        .iter()
        .filter(|o| o.name.kind() == WalKind::BackupHistory)
    {
        let parsed = read_small_object(repo, &o.name, MAX_RECORD).and_then(|bytes| {
            parse_record(
                o.name.as_str(),
                &String::from_utf8_lossy(&bytes),
                o.modified,
            )
        });
        match parsed {
            Ok(r) => records.push(r),
            Err(e) if e.kind == crate::error::Kind::Unavailable => return Err(e),
            Err(e) => damaged.push(e),
        }
    }
    Ok((assess(records, objects, segment_size), damaged))
}

/// What the archive holds of each record's WAL; sorted by start location.
pub fn assess(
    records: Vec<BackupRecord>,
    objects: &[ListedObject],
    segment_size: u32,
) -> Vec<Backup> {
    use std::collections::HashSet;
    let present: HashSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let segno = |seg: &str| {
        WalFileName::parse(seg)
            .and_then(|n| n.segment_number(segment_size))
            .unwrap_or(0)
    };
    let mut out: Vec<Backup> = records
        .into_iter()
        .map(|r| {
            let (start, stop) = (segno(&r.start_segment), segno(&r.stop_segment));
            let mut missing = 0;
            for n in start..=stop.max(start) {
                let on = |tli: u32| {
                    present
                        .contains(crate::pg::walname::segment_name(tli, n, segment_size).as_str())
                };
                if !on(r.start_timeline) && !on(r.stop_timeline) {
                    missing += 1;
                }
            }
            let missing_history = [r.start_timeline, r.stop_timeline]
                .into_iter()
                .filter(|t| *t > 1)
                .map(|t| format!("{t:08X}.history"))
                .find(|h| !present.contains(h.as_str()));
            let start_pos = parse_lsn(&r.start_lsn).unwrap_or(0);
            Backup {
                wal_segments: stop.max(start) - start + 1,
                missing_segments: missing,
                restorable: missing == 0 && missing_history.is_none(),
                stored: None,
                missing_history,
                start_segno: start,
                stop_segno: stop,
                start_pos,
                record: r,
            }
        })
        .collect();
    out.sort_by(|a, b| (a.start_pos, &a.record.name).cmp(&(b.start_pos, &b.record.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup history file as PostgreSQL 15's do_pg_backup_stop writes it.
    pub fn record_text(start: u32, stop: u32, time: &str) -> String {
        format!(
            "START WAL LOCATION: 0/{start:X}000028 (file 0000000100000000{start:08X})\n\
             STOP WAL LOCATION: 0/{stop:X}000100 (file 0000000100000000{stop:08X})\n\
             CHECKPOINT LOCATION: 0/{start:X}000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
             START TIME: {time}\nLABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n\
             STOP TIME: {time}\nSTOP TIMELINE: 1\n"
        )
    }

    #[test]
    fn parses_what_postgresql_writes() {
        let text = record_text(3, 4, "2026-11-22 04:00:00 UTC");
        let r = parse_record("000000010000000000000003.00000028.backup", &text, None).unwrap();
        assert_eq!(r.start_segment, "000000010000000000000003");
        assert_eq!(r.stop_segment, "000000010000000000000004");
        assert_eq!(r.label, "pg_basebackup base backup");
        assert_eq!((r.start_timeline, r.stop_timeline), (1, 1));
        assert_eq!(r.stopped_at, Some(1_795_320_000));
        assert_eq!(parse_lsn(&r.start_lsn), Some(0x3000028));
    }

    #[test]
    fn refuses_records_that_do_not_match_their_name_or_are_not_records() {
        let text = record_text(3, 4, "2026-11-22 04:00:00 UTC");
        for (name, text) in [
            ("000000010000000000000005.00000028.backup", text.as_str()),
            ("000000010000000000000003.00000028.backup", "hello"),
            (
                "000000010000000000000003.00000028.backup",
                "START WAL LOCATION: 0/3000028 (file ../../etc/passwd)\n",
            ),
        ] {
            let e = parse_record(name, text, None).unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Corrupt, "{text}");
            assert!(e.message.contains(name), "{e}");
        }
    }

    #[test]
    fn reads_times_only_where_the_zone_is_explicit() {
        assert_eq!(parse_pg_time("1970-01-02 00:00:00 UTC"), Some(86400));
        assert_eq!(parse_pg_time("1970-01-02 01:00:00 +01"), Some(86400));
        assert_eq!(parse_pg_time("1970-01-01 19:30:00 -04:30"), Some(86400));
        assert_eq!(parse_pg_time("2000-03-01 00:00:00 GMT"), Some(951_868_800));
        assert_eq!(parse_pg_time("2026-11-22 04:00:00 CET"), None);
        assert_eq!(parse_pg_time("garbage"), None);
        // the object's modification time stands in
        let text = record_text(3, 4, "2026-11-22 04:00:00 CET");
        let r = parse_record("000000010000000000000003.00000028.backup", &text, Some(7)).unwrap();
        assert_eq!(r.stopped_at, Some(7));
    }
}
