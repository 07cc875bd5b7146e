//! What a repository holds, per timeline: first and last segment, count, gaps, bytes. Computed
//! from a listing alone (no object is read), for `status` and for `verify`'s continuity check.

use serde::Serialize;

use super::Listing;
use crate::pg::WalKind;
use crate::pg::walname::segment_name;

/// A run of missing segments, `from` to `to` inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub from: String,
    pub to: String,
    pub segments: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineSummary {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: u64,
    pub missing: u64,
    pub gaps: Vec<Gap>,
    pub partial_files: u64,
    pub backup_history_files: u64,
    /// Bytes of the objects in the repository (headers included).
    pub stored_bytes: u64,
    /// Bytes of the segments and partial segments they hold, uncompressed.
    pub original_bytes: u64,
}

/// Summaries per timeline, in timeline order. Segments of a timeline start where the timeline
/// branched off, so only holes between its first and last segment count as gaps.
pub fn summarize(listing: &Listing, segment_size: u32) -> Vec<TimelineSummary> {
    let mut out: Vec<TimelineSummary> = Vec::new();
    let mut segnos: Vec<(u32, u64)> = Vec::new();
    for o in &listing.objects {
        let tli = o.name.timeline();
        if o.name.kind() == WalKind::TimelineHistory {
            continue;
        }
        let idx = match out.iter().position(|t| t.timeline == tli) {
            Some(i) => i,
            None => {
                out.push(TimelineSummary {
                    timeline: tli,
                    first: String::new(),
                    last: String::new(),
                    segments: 0,
                    missing: 0,
                    gaps: Vec::new(),
                    partial_files: 0,
                    backup_history_files: 0,
                    stored_bytes: 0,
                    original_bytes: 0,
                });
                out.len() - 1
            }
        };
        let t = &mut out[idx];
        t.stored_bytes += o.stored_bytes;
        match o.name.kind() {
            WalKind::Segment => {
                if let Ok(n) = o.name.segment_number(segment_size) {
                    segnos.push((tli, n));
                }
                t.segments += 1;
                t.original_bytes += u64::from(segment_size);
            }
            WalKind::Partial => {
                t.partial_files += 1;
                t.original_bytes += u64::from(segment_size);
            }
            WalKind::BackupHistory => t.backup_history_files += 1,
            WalKind::TimelineHistory => {}
        }
    }
    segnos.sort();
    for t in &mut out {
        let nos: Vec<u64> = segnos
            .iter()
            .filter(|(tli, _)| *tli == t.timeline)
            .map(|(_, n)| *n)
            .collect();
        if let (Some(first), Some(last)) = (nos.first(), nos.last()) {
            t.first = segment_name(t.timeline, *first, segment_size);
            t.last = segment_name(t.timeline, *last, segment_size);
        }
        for w in nos.windows(2) {
            if w[1] > w[0] + 1 {
                let (from, to) = (w[0] + 1, w[1] - 1);
                t.missing += to - from + 1;
                t.gaps.push(Gap {
                    from: segment_name(t.timeline, from, segment_size),
                    to: segment_name(t.timeline, to, segment_size),
                    segments: to - from + 1,
                });
            }
        }
    }
    out.sort_by_key(|t| t.timeline);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::WalFileName;
    use crate::repo::ListedObject;

    fn listing(names: &[&str]) -> Listing {
        Listing {
            objects: names
                .iter()
                .map(|n| ListedObject {
                    name: WalFileName::parse(n).unwrap(),
                    stored_bytes: 100,
                    modified: None,
                })
                .collect(),
            strays: Vec::new(),
        }
    }

    #[test]
    fn finds_gaps_within_a_timeline_only() {
        let l = listing(&[
            "0000000100000000000000FE",
            "000000010000000100000001",
            "000000010000000100000002",
            "000000010000000100000002.partial",
            "00000002.history",
            "000000020000000100000002",
            "000000020000000100000003",
        ]);
        let s = summarize(&l, 16 << 20);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].segments, s[0].missing, s[0].partial_files), (3, 2, 1));
        assert_eq!(
            s[0].gaps,
            vec![Gap {
                from: "0000000100000000000000FF".into(),
                to: "000000010000000100000000".into(),
                segments: 2
            }]
        );
        assert_eq!(
            (s[1].first.as_str(), s[1].last.as_str(), s[1].missing),
            ("000000020000000100000002", "000000020000000100000003", 0)
        );
    }
}
