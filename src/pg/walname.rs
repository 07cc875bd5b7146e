//! PostgreSQL WAL file names: which names exist, what they encode, and where each lives in the
//! repository. The only place in walship that parses a name handed over as `%f`.

use crate::error::{Error, Result};

/// The four kinds of file PostgreSQL's archiver hands to archive_command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    /// `TTTTTTTTLLLLLLLLSSSSSSSS`: a complete WAL segment.
    Segment,
    /// `<segment>.partial`: the last, incomplete segment of a timeline, archived at promotion.
    Partial,
    /// `<segment>.OOOOOOOO.backup`: a backup history file (start/stop of a base backup).
    BackupHistory,
    /// `TTTTTTTT.history`: a timeline history file.
    TimelineHistory,
}

/// A validated WAL file name. Constructed only by [`WalFileName::parse`], so holding one means the
/// name is safe to use as a path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFileName {
    name: String,
    kind: WalKind,
    timeline: u32,
    /// The "log" (middle) and "seg" (last) fields; zero for timeline history files.
    log: u32,
    seg: u32,
}

fn is_upper_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

fn hex32(s: &str) -> u32 {
    u32::from_str_radix(s, 16).expect("caller checked the digits")
}

impl WalFileName {
    /// Accept exactly the names PostgreSQL archives (upper-case hex, as PostgreSQL writes them) and
    /// nothing else: no directories, no dots beyond the suffixes, no lower case.
    pub fn parse(name: &str) -> Result<WalFileName> {
        let bad = || {
            Error::usage(format!("{name:?} is not a WAL file name")).with_hint(
                "archive_command must pass %f (e.g. 000000010000000000000001, 00000002.history, \
                 000000010000000000000001.00000028.backup or 000000010000000000000001.partial), \
                 and restore_command the same names.",
            )
        };
        let segment = |s: &str| s.len() == 24 && is_upper_hex(s);
        let (kind, seg_part) = if let Some(tli) = name.strip_suffix(".history") {
            if tli.len() != 8 || !is_upper_hex(tli) {
                return Err(bad());
            }
            return Ok(WalFileName {
                name: name.to_string(),
                kind: WalKind::TimelineHistory,
                timeline: hex32(tli),
                log: 0,
                seg: 0,
            });
        } else if let Some(seg) = name.strip_suffix(".partial") {
            (WalKind::Partial, seg)
        } else if let Some(rest) = name.strip_suffix(".backup") {
            match rest.split_once('.') {
                Some((seg, offset)) if offset.len() == 8 && is_upper_hex(offset) => {
                    (WalKind::BackupHistory, seg)
                }
                _ => return Err(bad()),
            }
        } else {
            (WalKind::Segment, name)
        };
        if !segment(seg_part) {
            return Err(bad());
        }
        Ok(WalFileName {
            name: name.to_string(),
            kind,
            timeline: hex32(&seg_part[0..8]),
            log: hex32(&seg_part[8..16]),
            seg: hex32(&seg_part[16..24]),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> WalKind {
        self.kind
    }

    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// Whether the file starts with a WAL long page header (segments and partial segments).
    pub fn has_wal_header(&self) -> bool {
        matches!(self.kind, WalKind::Segment | WalKind::Partial)
    }

    /// The segment number this name encodes for a given segment size, or an error if the last
    /// field is out of range for that size (e.g. `...00000100` with 16 MiB segments).
    pub fn segment_number(&self, segment_size: u32) -> Result<u64> {
        let per_log = segments_per_log(segment_size);
        if u64::from(self.seg) >= per_log {
            return Err(Error::corrupt(format!(
                "{}: segment field {:08X} is out of range for {} MiB segments",
                self.name,
                self.seg,
                segment_size >> 20
            )));
        }
        Ok(u64::from(self.log) * per_log + u64::from(self.seg))
    }
}

/// Segments per "log" id (the middle name field): 0x100000000 / segment size.
pub fn segments_per_log(segment_size: u32) -> u64 {
    0x1_0000_0000 / u64::from(segment_size.max(1))
}

/// The segment name for a timeline and segment number, as PostgreSQL's XLogFileName writes it.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u32) -> String {
    let per_log = segments_per_log(segment_size);
    format!(
        "{:08X}{:08X}{:08X}",
        timeline,
        segno / per_log,
        segno % per_log
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_kind_postgres_archives() {
        let s = WalFileName::parse("00000001000000000000000D").unwrap();
        assert_eq!(s.kind(), WalKind::Segment);
        assert_eq!(s.segment_number(16 << 20).unwrap(), 13);
        let h = WalFileName::parse("0000000A.history").unwrap();
        assert_eq!((h.kind(), h.timeline()), (WalKind::TimelineHistory, 10));
        let b = WalFileName::parse("00000001000000000000000D.00000028.backup").unwrap();
        assert_eq!(b.kind(), WalKind::BackupHistory);
        assert!(!b.has_wal_header());
        let p = WalFileName::parse("000000020000000100000003.partial").unwrap();
        assert_eq!(p.kind(), WalKind::Partial);
        assert_eq!(p.timeline(), 2);
        assert_eq!(p.segment_number(16 << 20).unwrap(), 256 + 3);
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "00000001000000000000000d",
            "0000000100000000000000",
            "00000001000000000000000D0",
            "../00000001000000000000000D",
            "00000001000000000000000D/..",
            "/etc/passwd",
            "0000000G000000000000000D",
            "1.history",
            "0000000A.HISTORY",
            "00000001000000000000000D.backup",
            "00000001000000000000000D.0000028.backup",
            "00000001000000000000000D.partial.partial",
            "00000001000000000000000D.tmp",
            " 00000001000000000000000D",
            "00000001000000000000000D\n",
            "RECOVERYXLOG",
        ] {
            let e = WalFileName::parse(bad).unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Usage, "{bad:?}");
        }
    }

    #[test]
    fn segment_numbers_follow_the_segment_size() {
        // 1 MiB segments: 4096 per log id, last field runs 000..FFF
        let s = WalFileName::parse("000000010000000100000FFF").unwrap();
        assert_eq!(s.segment_number(1 << 20).unwrap(), 4096 + 4095);
        assert!(s.segment_number(16 << 20).is_err());
        assert_eq!(
            segment_name(1, 4096 + 4095, 1 << 20),
            "000000010000000100000FFF"
        );
        // 1 GiB: 0..3
        assert_eq!(segment_name(3, 9, 1 << 30), "000000030000000200000001");
    }
}
