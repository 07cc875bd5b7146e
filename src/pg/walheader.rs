//! The long page header at the start of every WAL segment: which cluster wrote it, with which
//! PostgreSQL major version, at which address, with which segment size. walship reads it before
//! archiving so that a truncated, misnamed or foreign file never enters a repository.

use super::walname::WalFileName;
use crate::error::{Error, Result};

/// Bytes of the long page header walship reads (XLogLongPageHeaderData up to xlp_xlog_blcksz).
pub const LONG_HEADER_LEN: usize = 40;

/// XLP_LONG_HEADER: set in xlp_info of the first page of every segment.
const XLP_LONG_HEADER: u16 = 0x0002;

/// XLOG_PAGE_MAGIC per major version (src/include/access/xlog_internal.h). 12..17 are from the
/// release sources (15 checked on this machine); the magic changes whenever the WAL format does.
const PAGE_MAGIC: &[(u16, u32)] = &[
    (0xD101, 12),
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
    (0xD118, 18),
];

/// The fields of the long page header walship uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub magic: u16,
    pub pg_version: u32,
    pub timeline: u32,
    pub page_address: u64,
    pub system_identifier: u64,
    pub segment_size: u32,
    pub block_size: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl WalHeader {
    /// Parse the first bytes of a segment. `what` names the file in error messages.
    pub fn parse(bytes: &[u8], what: &str) -> Result<WalHeader> {
        if bytes.len() < LONG_HEADER_LEN {
            return Err(Error::corrupt(format!(
                "{what}: only {} bytes, too short for a WAL page header",
                bytes.len()
            )));
        }
        let magic = u16_at(bytes, 0);
        let pg_version = PAGE_MAGIC
            .iter()
            .find(|(m, _)| *m == magic)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{what}: WAL page magic 0x{magic:04X} is not one of PostgreSQL 12 to 18; \
                     this is not a WAL segment, or it is from a version walship does not know"
                ))
            })?;
        let info = u16_at(bytes, 2);
        if info & XLP_LONG_HEADER == 0 {
            return Err(Error::corrupt(format!(
                "{what}: the first page has no long header (xlp_info 0x{info:04X}); \
                 not the start of a WAL segment"
            )));
        }
        let header = WalHeader {
            magic,
            pg_version,
            timeline: u32_at(bytes, 4),
            page_address: u64_at(bytes, 8),
            system_identifier: u64_at(bytes, 24),
            segment_size: u32_at(bytes, 32),
            block_size: u32_at(bytes, 36),
        };
        let s = header.segment_size;
        if !s.is_power_of_two() || !(1 << 20..=1 << 30).contains(&s) {
            return Err(Error::corrupt(format!(
                "{what}: segment size {s} in the page header is not a power of two between \
                 1 MiB and 1 GiB"
            )));
        }
        let b = header.block_size;
        if !b.is_power_of_two() || !(1024..=32768).contains(&b) {
            return Err(Error::corrupt(format!(
                "{what}: block size {b} in the page header is not a power of two between \
                 1 kB and 32 kB"
            )));
        }
        Ok(header)
    }

    /// Check that this header belongs to a file of this name and length: the page address is the
    /// one the name encodes, the timeline is not newer than the name's (the first segment of a
    /// new timeline is a copy of the old one and keeps its page headers), and the file is exactly
    /// one segment long.
    pub fn check_matches(&self, name: &WalFileName, file_len: u64) -> Result<()> {
        let what = name.as_str();
        if file_len != u64::from(self.segment_size) {
            return Err(Error::corrupt(format!(
                "{what}: file is {file_len} bytes but its header says segments are {} bytes; \
                 the segment is truncated or padded",
                self.segment_size
            ))
            .with_hint(
                "PostgreSQL only archives complete segments; a short file is damaged. Do not \
                 archive it by hand.",
            ));
        }
        let segno = name.segment_number(self.segment_size)?;
        let expected = segno * u64::from(self.segment_size);
        if self.page_address != expected {
            return Err(Error::corrupt(format!(
                "{what}: page address {:X}/{:08X} in the header is not where this name starts \
                 ({:X}/{:08X}); the file is misnamed or is another segment's copy",
                self.page_address >> 32,
                self.page_address as u32,
                expected >> 32,
                expected as u32
            )));
        }
        if self.timeline > name.timeline() {
            return Err(Error::corrupt(format!(
                "{what}: header timeline {} is newer than the name's timeline {}",
                self.timeline,
                name.timeline()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic first page for tests: PG15 magic, long header, the given identity.
    pub(crate) fn header_bytes(sysid: u64, seg_size: u32, page_address: u64, tli: u32) -> Vec<u8> {
        let mut b = vec![0u8; LONG_HEADER_LEN];
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&XLP_LONG_HEADER.to_le_bytes());
        b[4..8].copy_from_slice(&tli.to_le_bytes());
        b[8..16].copy_from_slice(&page_address.to_le_bytes());
        b[24..32].copy_from_slice(&sysid.to_le_bytes());
        b[32..36].copy_from_slice(&seg_size.to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b
    }

    #[test]
    fn reads_a_pg15_header() {
        let h = WalHeader::parse(&header_bytes(42, 16 << 20, 13 << 24, 1), "x").unwrap();
        assert_eq!(h.pg_version, 15);
        assert_eq!(h.system_identifier, 42);
        let name = WalFileName::parse("00000001000000000000000D").unwrap();
        h.check_matches(&name, 16 << 20).unwrap();
    }

    #[test]
    fn refuses_wrong_address_length_magic_and_sizes() {
        let name = WalFileName::parse("00000001000000000000000D").unwrap();
        let h = WalHeader::parse(&header_bytes(42, 16 << 20, 12 << 24, 1), "x").unwrap();
        assert!(
            h.check_matches(&name, 16 << 20)
                .unwrap_err()
                .message
                .contains("page address")
        );
        let h = WalHeader::parse(&header_bytes(42, 16 << 20, 13 << 24, 1), "x").unwrap();
        assert!(
            h.check_matches(&name, 1 << 20)
                .unwrap_err()
                .message
                .contains("truncated")
        );
        let h = WalHeader::parse(&header_bytes(42, 16 << 20, 13 << 24, 2), "x").unwrap();
        assert!(
            h.check_matches(&name, 16 << 20)
                .unwrap_err()
                .message
                .contains("timeline")
        );
        let mut b = header_bytes(42, 16 << 20, 0, 1);
        b[0] = 0;
        assert!(
            WalHeader::parse(&b, "x")
                .unwrap_err()
                .message
                .contains("magic")
        );
        let b = header_bytes(42, 3 << 20, 0, 1);
        assert!(
            WalHeader::parse(&b, "x")
                .unwrap_err()
                .message
                .contains("power of two")
        );
        assert!(
            WalHeader::parse(&[0u8; 10], "x")
                .unwrap_err()
                .message
                .contains("too short")
        );
        let mut b = header_bytes(42, 16 << 20, 0, 1);
        b[2] = 0;
        assert!(
            WalHeader::parse(&b, "x")
                .unwrap_err()
                .message
                .contains("long header")
        );
    }
}
