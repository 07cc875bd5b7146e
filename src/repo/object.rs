//! The 128-byte object header (FORMAT.md, "Objects"): what was archived, how it is compressed, the
//! SHA-256 of the original bytes (version 3, an encrypted object: a keyed digest and the key's id
//! instead) and (versions 2 and 3) the digest of the stored payload. Encoding and the checks every
//! reader must make live here.

use sha2::{Digest, Sha256};

use crate::compress::Compression;
use crate::crypto::{CONTENT_MAC_LEN, KEY_ID_LEN};
use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 128;
pub const MAGIC: [u8; 8] = *b"WALSHIP\n";
/// The newest version: 2 adds the payload digest (written by default), 3 is an encrypted object.
/// Version 1 objects (walship 0.1) are still read.
pub const HEADER_VERSION: u16 = 3;
const SCHEME_XCHACHA20POLY1305_STREAM: u8 = 1;
const DIGEST_FIELD: std::ops::Range<usize> = 24..56;
/// Version 3: the keyed digest, then the key id, where versions 1 and 2 hold the SHA-256.
const MAC_FIELD: std::ops::Range<usize> = 24..48;
const KEY_ID_FIELD: std::ops::Range<usize> = 48..56;
const NAME_FIELD: std::ops::Range<usize> = 56..104;
const PAYLOAD_DIGEST_FIELD: std::ops::Range<usize> = 104..120;
/// Bytes of the payload's SHA-256 kept in the header (all the room there is).
pub const PAYLOAD_DIGEST_LEN: usize = 16;
const CHECK_FIELD: std::ops::Range<usize> = 120..128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHeader {
    pub compression: Compression,
    pub original_len: u64,
    /// What names the content: the SHA-256 of the original bytes, or in an encrypted object the
    /// first 24 bytes of their keyed digest (`crypto::Key::content_mac`), zero-padded.
    pub digest: [u8; 32],
    /// The id of the key an encrypted (version 3) object is sealed under; `None` otherwise.
    pub key_id: Option<[u8; KEY_ID_LEN]>,
    /// The first 16 bytes of the SHA-256 of the payload; `None` in a version 1 object.
    pub payload_digest: Option<[u8; PAYLOAD_DIGEST_LEN]>,
    pub name: String,
}

pub use crate::units::hex;

fn header_check(bytes: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(&bytes[..CHECK_FIELD.start]);
    d[..8].try_into().expect("8 bytes")
}

impl ObjectHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        assert!(
            !self.name.is_empty() && self.name.len() <= NAME_FIELD.len(),
            "WAL names are 8..40 bytes"
        );
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        let version: u16 = match (&self.key_id, &self.payload_digest) {
            (Some(_), _) => 3,
            (None, Some(_)) => 2,
            (None, None) => 1,
        };
        assert!(
            version < 3 || self.payload_digest.is_some(),
            "version 3 has a payload digest"
        );
        b[8..10].copy_from_slice(&version.to_le_bytes());
        b[10] = self.compression.code();
        b[11] = self.name.len() as u8;
        b[16..24].copy_from_slice(&self.original_len.to_le_bytes());
        match &self.key_id {
            Some(id) => {
                b[12] = SCHEME_XCHACHA20POLY1305_STREAM;
                b[MAC_FIELD].copy_from_slice(&self.digest[..CONTENT_MAC_LEN]);
                b[KEY_ID_FIELD].copy_from_slice(id);
            }
            None => b[DIGEST_FIELD].copy_from_slice(&self.digest),
        }
        b[NAME_FIELD.start..NAME_FIELD.start + self.name.len()]
            .copy_from_slice(self.name.as_bytes());
        if let Some(d) = &self.payload_digest {
            b[PAYLOAD_DIGEST_FIELD].copy_from_slice(d);
        }
        let check = header_check(&b);
        b[CHECK_FIELD].copy_from_slice(&check);
        b
    }

    /// Decode and check a header read from the object stored as `expected_name`. Any failure is
    /// corruption: the bytes are not what walship wrote there.
    pub fn decode(b: &[u8], expected_name: &str) -> Result<ObjectHeader> {
        let bad = |why: String| {
            Error::corrupt(format!("repository object {expected_name}: {why}")).with_hint(
                "The object is damaged or was not written by walship. Restore it from another copy \
                 of the archive, or remove it and push the file again from the server that has it.",
            )
        };
        if b.len() < HEADER_LEN {
            return Err(bad(format!(
                "only {} bytes, shorter than the {HEADER_LEN}-byte header",
                b.len()
            )));
        }
        if b[0..8] != MAGIC {
            return Err(bad("no walship object header (bad magic)".into()));
        }
        // The header check first: a damaged version field is damage, not a newer walship.
        if b[CHECK_FIELD] != header_check(b) {
            return Err(bad("header checksum mismatch".into()));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version == 0 {
            return Err(bad("header version 0 does not exist".into()));
        }
        if version > HEADER_VERSION {
            return Err(Error::conflict(format!(
                "repository object {expected_name}: header version {version} is newer than this walship understands ({HEADER_VERSION})"
            ))
            .with_hint("Upgrade walship."));
        }
        let reserved_set = match version {
            1 => b[12..16]
                .iter()
                .chain(&b[PAYLOAD_DIGEST_FIELD])
                .any(|&x| x != 0),
            2 => b[12..16].iter().any(|&x| x != 0),
            _ => b[13..16].iter().any(|&x| x != 0),
        };
        if version == 3 && b[12] != SCHEME_XCHACHA20POLY1305_STREAM {
            return Err(Error::conflict(format!(
                "repository object {expected_name}: encryption scheme {} is unknown to this walship",
                b[12]
            ))
            .with_hint("Upgrade walship."));
        }
        if reserved_set {
            return Err(bad("reserved header bytes are set".into()));
        }
        let compression = Compression::from_code(b[10])
            .ok_or_else(|| bad(format!("unknown compression code {}", b[10])))?;
        let name_len = usize::from(b[11]);
        if name_len == 0 || name_len > NAME_FIELD.len() {
            return Err(bad(format!("bad name length {name_len}")));
        }
        let name_bytes = &b[NAME_FIELD.start..NAME_FIELD.start + name_len];
        if name_bytes != expected_name.as_bytes()
            || b[NAME_FIELD.start + name_len..NAME_FIELD.end]
                .iter()
                .any(|&x| x != 0)
        {
            return Err(bad(format!(
                "header names {:?}; objects must not be renamed",
                String::from_utf8_lossy(name_bytes)
            )));
        }
        Ok(ObjectHeader {
            compression,
            original_len: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            digest: if version == 3 {
                let mut d = [0u8; 32];
                d[..CONTENT_MAC_LEN].copy_from_slice(&b[MAC_FIELD]);
                d
            } else {
                b[DIGEST_FIELD].try_into().expect("32 bytes")
            },
            key_id: (version == 3).then(|| b[KEY_ID_FIELD].try_into().expect("8 bytes")),
            payload_digest: (version >= 2)
                .then(|| b[PAYLOAD_DIGEST_FIELD].try_into().expect("16 bytes")),
            name: expected_name.to_string(),
        })
    }
}

impl ObjectHeader {
    /// What every chunk of an encrypted object's payload authenticates: the header with the
    /// fields known only after the payload (the keyed digest, the payload digest, the header
    /// check) zeroed. So the compression, the length, the name and the key id cannot be
    /// changed, nor the payload moved under another name, without the key.
    pub fn sealing_aad(&self) -> [u8; HEADER_LEN] {
        let mut b = ObjectHeader {
            digest: [0; 32],
            payload_digest: Some([0; PAYLOAD_DIGEST_LEN]),
            ..self.clone()
        }
        .encode();
        b[CHECK_FIELD].fill(0);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectHeader {
        ObjectHeader {
            compression: Compression::Zstd,
            original_len: 16 << 20,
            digest: [7; 32],
            key_id: None,
            payload_digest: Some([9; PAYLOAD_DIGEST_LEN]),
            name: "00000001000000000000000D.00000028.backup".into(),
        }
    }

    fn sample_v3() -> ObjectHeader {
        ObjectHeader {
            digest: crate::crypto::recorded_mac([7; 32]),
            key_id: Some([5; KEY_ID_LEN]),
            ..sample()
        }
    }

    fn sample_v1() -> ObjectHeader {
        ObjectHeader {
            payload_digest: None,
            ..sample()
        }
    }

    #[test]
    fn round_trips() {
        for h in [sample(), sample_v1(), sample_v3()] {
            assert_eq!(ObjectHeader::decode(&h.encode(), &h.name).unwrap(), h);
        }
        assert_eq!(sample_v3().encode()[8], 3);
        assert_eq!(sample().encode()[8], 2);
        assert_eq!(sample_v1().encode()[8], 1);
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        for h in [sample(), sample_v1(), sample_v3()] {
            let good = h.encode();
            for i in 0..HEADER_LEN {
                let mut b = good;
                b[i] ^= 0x01;
                assert!(
                    ObjectHeader::decode(&b, &h.name).is_err(),
                    "flip at byte {i} of a version {} header went unnoticed",
                    good[8]
                );
            }
        }
    }

    /// Rewrite the header check after editing a field, as a writer of another version would.
    fn resealed(mut b: [u8; HEADER_LEN]) -> [u8; HEADER_LEN] {
        let check = header_check(&b);
        b[CHECK_FIELD].copy_from_slice(&check);
        b
    }

    #[test]
    fn a_version_1_header_with_a_digest_in_its_reserved_bytes_is_refused() {
        let mut b = sample().encode();
        b[8] = 1;
        let e = ObjectHeader::decode(&resealed(b), &sample().name).unwrap_err();
        assert!(e.message.contains("reserved"), "{}", e.message);
    }

    #[test]
    fn a_newer_header_version_asks_for_an_upgrade() {
        let mut b = sample().encode();
        b[8] = 4;
        let e = ObjectHeader::decode(&resealed(b), &sample().name).unwrap_err();
        assert!(
            e.message.contains("header version 4 is newer"),
            "{}",
            e.message
        );
        assert_eq!(e.kind, crate::error::Kind::Conflict);
    }

    #[test]
    fn refuses_a_renamed_or_short_object() {
        let h = sample();
        let e = ObjectHeader::decode(&h.encode(), "00000001000000000000000E").unwrap_err();
        assert!(e.message.contains("renamed"));
        assert!(
            ObjectHeader::decode(&h.encode()[..100], &h.name)
                .unwrap_err()
                .message
                .contains("shorter")
        );
    }
}
