//! PostgreSQL's timeline history files (`TTTTTTTT.history`) and LSNs: where each ancestor of a
//! timeline ended. The archive's fence against a demoted primary (`push` refuses WAL past a fork)
//! and the promotion decision both read them.
//!
//! A history file has one line per ancestor, `parentTLI <tab> switchpoint <tab> reason`, oldest
//! first; blank lines and lines starting with `#` are comments (timeline.c, readTimeLineHistory).

use crate::error::{Error, Result};

/// An LSN written as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some(
        (u64::from(u32::from_str_radix(hi, 16).ok()?) << 32)
            | u64::from(u32::from_str_radix(lo, 16).ok()?),
    )
}

/// An LSN as PostgreSQL prints it.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// One ancestor of a timeline: WAL of `timeline` is part of the descendant's past up to
/// `switch_point`, where the descendant forked off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ancestor {
    pub timeline: u32,
    pub switch_point: u64,
}

/// The parsed history of one timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistory {
    pub timeline: u32,
    pub ancestors: Vec<Ancestor>,
}

impl TimelineHistory {
    /// Parse the history file of `timeline`. Damage is an error, never an empty history: a
    /// fence that read garbage as "no ancestors" would let a demoted primary through.
    pub fn parse(timeline: u32, text: &str) -> Result<TimelineHistory> {
        let bad = |why: &str| {
            Error::corrupt(format!(
                "the history file of timeline {timeline} is damaged: {why}"
            ))
        };
        let mut ancestors: Vec<Ancestor> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let tli = fields
                .next()
                .and_then(|t| t.parse::<u32>().ok())
                .ok_or_else(|| bad(&format!("{line:?} does not start with a timeline")))?;
            let switch_point = fields
                .next()
                .and_then(parse_lsn)
                .ok_or_else(|| bad(&format!("{line:?} has no switch point")))?;
            if let Some(last) = ancestors.last()
                && (tli <= last.timeline || switch_point < last.switch_point)
            {
                return Err(bad("its lines are not in ascending order"));
            }
            if tli >= timeline {
                return Err(bad(&format!("it names timeline {tli} as an ancestor")));
            }
            ancestors.push(Ancestor {
                timeline: tli,
                switch_point,
            });
        }
        if ancestors.is_empty() && timeline > 1 {
            return Err(bad("it names no parent timeline"));
        }
        Ok(TimelineHistory {
            timeline,
            ancestors,
        })
    }

    /// Where this timeline's past left `timeline`, if `timeline` is one of its ancestors.
    pub fn switch_point_of(&self, timeline: u32) -> Option<u64> {
        self.ancestors
            .iter()
            .find(|a| a.timeline == timeline)
            .map(|a| a.switch_point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_file_gives_each_ancestors_switch_point() {
        let h = TimelineHistory::parse(
            3,
            "1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000000\tat restore point \"x\"\n",
        )
        .unwrap();
        assert_eq!(h.switch_point_of(1), Some(0x300_0158));
        assert_eq!(h.switch_point_of(2), Some(0x500_0000));
        assert_eq!(h.switch_point_of(3), None);
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
    }

    #[test]
    fn a_damaged_history_file_is_an_error_not_an_empty_history() {
        for bad in [
            "",
            "garbage\n",
            "1\tnot-an-lsn\n",
            "2\t0/1000000\n1\t0/2000000\n",
            "3\t0/1000000\n",
        ] {
            assert!(TimelineHistory::parse(3, bad).is_err(), "{bad:?}");
        }
        assert!(TimelineHistory::parse(1, "").unwrap().ancestors.is_empty());
    }
}
