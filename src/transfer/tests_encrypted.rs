//! Push and fetch in an encrypted repository (FORMAT.md, "Encryption"), on the in-memory
//! storage: what is stored says nothing about the WAL without the key, every change to it is
//! caught, a wrong or missing key is exit 4 and never "not in the archive", and rotation keeps
//! old objects readable.

use super::*;
use crate::crypto::Keyring;
use crate::error::Kind;

const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

fn ring(text: &str) -> Option<Keyring> {
    Some(Keyring::parse(text, "test").unwrap())
}

/// The same storage opened again with other keys (another walship's configuration).
fn reopened(p: &Pushed, keys: Option<Keyring>) -> Repository {
    Repository::open(Box::new(p.storage.clone()))
        .unwrap()
        .with_keys(keys)
}

fn fetch_with(repo: &Repository, p: &Pushed) -> Result<Vec<u8>> {
    let dest = p.dir.path().join("RECOVERYXLOG");
    let _ = std::fs::remove_file(&dest);
    let r = fetch_file(repo, &p.name, &dest).map(|_| std::fs::read(&dest).unwrap());
    if r.is_err() {
        assert!(!dest.exists(), "a failed fetch left {}", dest.display());
    }
    r
}

#[test]
fn an_encrypted_object_round_trips_and_holds_no_plain_byte_or_digest_of_the_wal() {
    for c in [Compression::None, Compression::Zstd, Compression::Bzip2] {
        let p = pushed_with(c, Some(K1));
        let h = p.header();
        assert_eq!(p.object()[8], 3, "{c:?}: version 3 header");
        assert_eq!(
            h.key_id,
            Some(Keyring::parse(K1, "t").unwrap().current().id())
        );
        let object = p.object();
        let sha: [u8; 32] = Sha256::digest(&p.original).into();
        assert!(
            !object.windows(8).any(|w| w == &sha[..8]),
            "{c:?}: the plain SHA-256 of the WAL is stored"
        );
        // uncompressed WAL is the worst case: none of its bytes may show through
        let samples: Vec<&[u8]> = (0..16)
            .map(|i| &p.original[4096 + i * 91..][..32])
            .collect();
        assert!(
            !object[HEADER_LEN..]
                .windows(32)
                .any(|w| samples.contains(&w)),
            "{c:?}: plaintext in the object"
        );
        assert_eq!(p.fetch().unwrap(), p.original, "{c:?}");
        verify_object(&p.repo, &p.name).unwrap();
        // the same file again is recognised without a plain digest
        assert_eq!(
            p.push_again(false).unwrap().outcome,
            PushOutcome::AlreadyArchived
        );
    }
}

#[test]
fn a_flipped_ciphertext_byte_or_an_edited_header_field_is_corruption() {
    let p = pushed_with(Compression::Zstd, Some(K1));
    let good = p.object();
    for at in [
        HEADER_LEN,
        HEADER_LEN + 19,
        HEADER_LEN + 200,
        good.len() - 1,
    ] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        let header = ObjectHeader::decode(&bad, p.name.as_str()).unwrap();
        // recompute the unkeyed payload digest, as someone editing the object would
        let payload = bad[HEADER_LEN..].to_vec();
        let forged = ObjectHeader {
            payload_digest: Some(payload_digest(&payload)),
            ..header
        };
        p.replace(&forged, &payload);
        p.refused("failed authentication");
        assert_eq!(
            verify_object(&p.repo, &p.name).unwrap_err().kind,
            Kind::Corrupt
        );
    }
    // fields that are covered by the header check only: edited and resealed, the chunks'
    // authentication still catches them
    let payload = good[HEADER_LEN..].to_vec();
    let h = ObjectHeader::decode(&good, p.name.as_str()).unwrap();
    for forged in [
        ObjectHeader {
            compression: Compression::None,
            ..h.clone()
        },
        ObjectHeader {
            original_len: h.original_len - 1,
            ..h.clone()
        },
    ] {
        p.replace(&forged, &payload);
        let e = p.fetch().unwrap_err();
        assert_eq!(e.kind, Kind::Corrupt, "{}", e.message);
    }
    // an edited keyed digest only ever makes a push refuse; verify notices it
    let mut digest = h.digest;
    digest[0] ^= 1;
    p.replace(
        &ObjectHeader {
            digest,
            ..h.clone()
        },
        &payload,
    );
    assert_eq!(p.fetch().unwrap(), p.original);
    let e = verify_object(&p.repo, &p.name).unwrap_err();
    assert!(e.message.contains("keyed digest"), "{}", e.message);
    assert_eq!(p.push_again(false).unwrap_err().kind, Kind::Conflict);
}

#[test]
fn a_wrong_or_missing_key_is_exit_4_never_not_in_the_archive() {
    let p = pushed_with(Compression::Zstd, Some(K1));
    for (keys, says) in [
        (ring(K2), "is not a key of"),
        (None, "encryption = \"none\""),
    ] {
        let repo = reopened(&p, keys.clone());
        let e = fetch_with(&repo, &p).unwrap_err();
        assert_eq!(e.kind, Kind::Conflict, "{}", e.message);
        assert_eq!(e.exit_code(), 4);
        let identity = repo.identity().unwrap().clone();
        let src = p.dir.path().join(p.name.as_str());
        let opts = PushOptions {
            compression: Compression::Zstd,
            level: 1,
            threads: 1,
            replace_damaged: false,
        };
        let e = push_file(&repo, &identity, &src, &p.name, &opts).unwrap_err();
        assert_eq!(e.kind, Kind::Conflict, "{}", e.message);
        assert!(e.message.contains(says), "{}", e.message);
        assert!(!e.message.contains(K2) && !e.message.contains(K1));
    }
}

#[test]
fn encrypted_and_plain_never_mix() {
    // an encrypted configuration against a plain repository: refused, nothing written
    let plain = pushed(Compression::Zstd);
    let repo = reopened(&plain, ring(K1));
    let identity = repo.identity().unwrap().clone();
    let before = plain.storage.files.borrow().len();
    let opts = PushOptions {
        compression: Compression::Zstd,
        level: 1,
        threads: 1,
        replace_damaged: false,
    };
    let src = plain.dir.path().join(plain.name.as_str());
    let e = push_file(&repo, &identity, &src, &plain.name, &opts).unwrap_err();
    assert!(e.message.contains("is not encrypted"), "{}", e.message);
    assert_eq!(plain.storage.files.borrow().len(), before);
    // a plain object slipped into an encrypted repository is refused, not served
    let p = pushed_with(Compression::Zstd, Some(K1));
    let plain_object = plain.object();
    p.storage
        .files
        .borrow_mut()
        .insert(crate::repo::object_path(&p.name), plain_object);
    p.refused("is not encrypted, but the repository is");
}

#[test]
fn after_rotation_new_objects_use_the_new_key_and_old_ones_stay_readable() {
    let p = pushed_with(Compression::Zstd, Some(K1));
    let both = format!("{K2}\n{K1}\n");
    // the new key is refused until it is added
    let repo = reopened(&p, ring(&both));
    let e = repo.sealing_key().unwrap_err();
    assert_eq!(e.kind, Kind::Conflict);
    assert!(e.message.contains("is not a key of"), "{}", e.message);
    assert!(repo.add_key(ring(K2).unwrap().current()).unwrap());
    assert!(!repo.add_key(ring(K2).unwrap().current()).unwrap());
    assert_eq!(repo.key_ids().unwrap().len(), 2);
    let repo = reopened(&p, ring(&both));
    let k2 = ring(K2).unwrap().current().id();
    assert_eq!(repo.sealing_key().unwrap().map(|k| k.id()), Some(k2));
    // the old object: readable, and recognised as already archived under its own key
    assert_eq!(fetch_with(&repo, &p).unwrap(), p.original);
    let identity = repo.identity().unwrap().clone();
    let opts = PushOptions {
        compression: Compression::Zstd,
        level: 1,
        threads: 1,
        replace_damaged: false,
    };
    let src = p.dir.path().join(p.name.as_str());
    let again = push_file(&repo, &identity, &src, &p.name, &opts).unwrap();
    assert_eq!(again.outcome, PushOutcome::AlreadyArchived);
    // a new object goes under the new key
    let next = WalFileName::parse("000000010000000000000002").unwrap();
    let mut bytes = p.original.clone();
    let h2 = crate::pg::walheader::tests::header_bytes(5, 1 << 20, 2 << 20, 1);
    bytes[..h2.len()].copy_from_slice(&h2);
    let src2 = p.dir.path().join(next.as_str());
    std::fs::write(&src2, &bytes).unwrap();
    push_file(&repo, &identity, &src2, &next, &opts).unwrap();
    assert_eq!(repo.object_header(&next).unwrap().unwrap().key_id, Some(k2));
    // without the old key, the old object is exit 4; the new one still reads
    let only_new = reopened(&p, ring(K2));
    let e = fetch_with(&only_new, &p).unwrap_err();
    assert!(e.message.contains("do not include"), "{}", e.message);
    verify_object(&only_new, &next).unwrap();
}
