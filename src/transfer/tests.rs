//! Unit tests of push and fetch on the in-memory storage: what a reader checks, what push
//! accepts as already archived, and the repair of a damaged object.

use super::*;
use crate::repo::read::verify_object;
use crate::storage::memory::MemoryStorage;

#[test]
fn regression_an_object_found_already_archived_is_made_durable_before_success() {
    // A writer killed between publishing an object and syncing its directory leaves a name
    // a crash can still lose; the next push of the same file must not report it archived
    // without making it durable.
    let storage = MemoryStorage::default();
    let mut repo = Repository::open(Box::new(storage.clone())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = WalFileName::parse("000000010000000000000001").unwrap();
    let mut bytes = crate::pg::walheader::tests::header_bytes(5, 1 << 20, 1 << 20, 1);
    bytes.resize(1 << 20, 7);
    let src = dir.path().join(name.as_str());
    std::fs::write(&src, &bytes).unwrap();
    let header = WalHeader::parse(&bytes, "x").unwrap();
    let identity = repo.initialize(&identity_of(&header)).unwrap().clone();
    let opts = PushOptions {
        compression: Compression::Zstd,
        level: 1,
        threads: 1,
        replace_damaged: false,
    };

    let first = push_file(&repo, &identity, &src, &name, &opts).unwrap();
    assert_eq!(first.outcome, PushOutcome::Stored);
    assert!(storage.durable_calls.borrow().is_empty());
    let again = push_file(&repo, &identity, &src, &name, &opts).unwrap();
    assert_eq!(again.outcome, PushOutcome::AlreadyArchived);
    assert_eq!(
        *storage.durable_calls.borrow(),
        vec![crate::repo::object_path(&name)]
    );
}

/// A repository in memory holding one 1 MiB segment pushed with `compression`, and the
/// directory that segment came from (fetches go there too).
struct Pushed {
    storage: MemoryStorage,
    repo: Repository,
    dir: tempfile::TempDir,
    name: WalFileName,
    original: Vec<u8>,
}

fn pushed(compression: Compression) -> Pushed {
    pushed_with(compression, None)
}

/// As [`pushed`], into a repository encrypted under `keys` when given.
fn pushed_with(compression: Compression, keys: Option<&str>) -> Pushed {
    let storage = MemoryStorage::default();
    let mut repo = Repository::open(Box::new(storage.clone()))
        .unwrap()
        .with_keys(keys.map(|k| crate::crypto::Keyring::parse(k, "test").unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let name = WalFileName::parse("000000010000000000000001").unwrap();
    let mut original = crate::pg::walheader::tests::header_bytes(5, 1 << 20, 1 << 20, 1);
    original.extend((0..(1u32 << 20) - original.len() as u32).map(|i| (i / 7 % 13) as u8));
    std::fs::write(dir.path().join(name.as_str()), &original).unwrap();
    let header = WalHeader::parse(&original, "x").unwrap();
    let identity = repo.initialize(&identity_of(&header)).unwrap().clone();
    let opts = PushOptions {
        compression,
        level: compression.default_level(),
        threads: 1,
        replace_damaged: false,
    };
    push_file(
        &repo,
        &identity,
        &dir.path().join(name.as_str()),
        &name,
        &opts,
    )
    .unwrap();
    Pushed {
        storage,
        repo,
        dir,
        name,
        original,
    }
}

impl Pushed {
    fn object(&self) -> Vec<u8> {
        self.storage.files.borrow()[&crate::repo::object_path(&self.name)].clone()
    }

    /// Replace the stored object (as damage, or a writer with a defect, would).
    fn replace(&self, header: &ObjectHeader, payload: &[u8]) {
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(payload);
        self.storage
            .files
            .borrow_mut()
            .insert(crate::repo::object_path(&self.name), bytes);
    }

    fn header(&self) -> ObjectHeader {
        ObjectHeader::decode(&self.object(), self.name.as_str()).unwrap()
    }

    /// Fetch as restore_command does; on failure, check that nothing reached `%p`.
    fn fetch(&self) -> Result<Vec<u8>> {
        let dest = self.dir.path().join("RECOVERYXLOG");
        let _ = std::fs::remove_file(&dest);
        match fetch_file(&self.repo, &self.name, &dest) {
            Ok(_) => Ok(std::fs::read(&dest).unwrap()),
            Err(e) => {
                assert!(!dest.exists(), "a failed fetch left {}", dest.display());
                assert_eq!(e.kind, crate::error::Kind::Corrupt, "{}", e.message);
                Err(e)
            }
        }
    }
}

impl Pushed {
    /// Fetch, expecting a refusal whose message contains `because`.
    fn refused(&self, because: &str) {
        let e = self.fetch().unwrap_err();
        assert!(e.message.contains(because), "{}", e.message);
    }
}

fn payload_digest(payload: &[u8]) -> [u8; PAYLOAD_DIGEST_LEN] {
    Sha256::digest(payload)[..PAYLOAD_DIGEST_LEN]
        .try_into()
        .unwrap()
}

#[test]
fn a_pushed_object_records_its_payload_digest_and_fetches_byte_for_byte() {
    for c in [Compression::None, Compression::Zstd, Compression::Bzip2] {
        let p = pushed(c);
        let object = p.object();
        let header = p.header();
        assert_eq!(object[8], 2, "{c:?}: header version");
        assert_eq!(
            header.payload_digest,
            Some(payload_digest(&object[HEADER_LEN..])),
            "{c:?}"
        );
        assert!(c.payload_checks_itself(&object[HEADER_LEN..]), "{c:?}");
        assert_eq!(p.fetch().unwrap(), p.original, "{c:?}");
        verify_object(&p.repo, &p.name).unwrap();
    }
}

#[test]
fn fetch_refuses_a_stored_byte_that_changed_even_where_nothing_else_would_notice() {
    // Uncompressed, a flipped byte decodes fine: only the payload digest can see it.
    let p = pushed(Compression::None);
    let mut payload = p.object()[HEADER_LEN..].to_vec();
    payload[300_000] ^= 0x10;
    p.replace(&p.header(), &payload);
    p.refused("the stored bytes hash to");
    assert!(verify_object(&p.repo, &p.name).is_err());
}

#[test]
fn fetch_refuses_bytes_after_the_end_of_the_compressed_stream() {
    // bzip2's decoder stops at the end of its stream and would never read what follows.
    let p = pushed(Compression::Bzip2);
    let mut payload = p.object()[HEADER_LEN..].to_vec();
    payload.extend_from_slice(b"appended");
    p.replace(&p.header(), &payload);
    p.refused("the stored bytes hash to");
}

#[test]
fn fetch_refuses_a_version_2_zstd_payload_without_its_content_checksum() {
    let p = pushed(Compression::Zstd);
    let unchecked = zstd::encode_all(&p.original[..], 1).unwrap();
    let header = ObjectHeader {
        payload_digest: Some(payload_digest(&unchecked)),
        ..p.header()
    };
    p.replace(&header, &unchecked);
    p.refused("no checksum of its own");
}

#[test]
fn regression_only_the_first_zstd_frame_of_a_payload_is_handed_over() {
    // An empty frame with the checksum flag, then every byte in a frame without it: decoding
    // past the first frame would hand over bytes that no checksum covered.
    let p = pushed(Compression::Zstd);
    let mut payload = Compression::Zstd
        .stream_encoder(Vec::new(), 1, 1)
        .unwrap()
        .finish()
        .unwrap();
    assert!(Compression::Zstd.payload_checks_itself(&payload));
    payload.extend(zstd::encode_all(&p.original[..], 1).unwrap());
    let header = ObjectHeader {
        payload_digest: Some(payload_digest(&payload)),
        ..p.header()
    };
    p.replace(&header, &payload);
    p.refused("0 bytes after decompression");
}

#[test]
fn a_version_1_object_is_checked_by_the_sha256_of_its_original() {
    let p = pushed(Compression::Zstd);
    let payload = p.object()[HEADER_LEN..].to_vec();
    let v1 = ObjectHeader {
        payload_digest: None,
        ..p.header()
    };
    p.replace(&v1, &payload);
    assert_eq!(p.fetch().unwrap(), p.original);
    let wrong = ObjectHeader {
        digest: [0; 32],
        ..v1
    };
    p.replace(&wrong, &payload);
    p.refused("does not match the recorded");
}

#[test]
fn verify_checks_the_sha256_of_the_original_of_a_version_2_object_too() {
    let p = pushed(Compression::Zstd);
    let payload = p.object()[HEADER_LEN..].to_vec();
    let wrong = ObjectHeader {
        digest: [0; 32],
        ..p.header()
    };
    p.replace(&wrong, &payload);
    let e = verify_object(&p.repo, &p.name).unwrap_err();
    assert!(
        e.message.contains("does not match the recorded"),
        "{}",
        e.message
    );
}

impl Pushed {
    fn push_again(&self, replace_damaged: bool) -> Result<PushReport> {
        let identity = self.repo.identity().unwrap().clone();
        let opts = PushOptions {
            compression: Compression::Zstd,
            level: 1,
            threads: 1,
            replace_damaged,
        };
        let src = self.dir.path().join(self.name.as_str());
        push_file(&self.repo, &identity, &src, &self.name, &opts)
    }
}

#[test]
fn a_repush_over_a_rotted_or_truncated_payload_under_an_intact_header_is_refused() {
    // (compression, version 1 header, damage)
    let rot = |p: &mut Vec<u8>| p[1000] ^= 1;
    let cut = |p: &mut Vec<u8>| p.truncate(p.len() / 2);
    type Spoil = fn(&mut Vec<u8>);
    let cases: [(Compression, bool, Spoil); 5] = [
        (Compression::None, false, rot),
        (Compression::Zstd, false, rot),
        (Compression::Zstd, false, cut),
        (Compression::Bzip2, false, cut),
        (Compression::None, true, rot),
    ];
    for (c, v1, spoil) in cases {
        let ctx = format!("{c:?}, version 1 {v1}");
        let p = pushed(c);
        let mut payload = p.object()[HEADER_LEN..].to_vec();
        spoil(&mut payload);
        let header = ObjectHeader {
            payload_digest: if v1 { None } else { p.header().payload_digest },
            ..p.header()
        };
        p.replace(&header, &payload);
        let damaged = p.object();
        let e = p.push_again(false).unwrap_err();
        assert_eq!(e.kind, Kind::Corrupt, "{ctx}: {}", e.message);
        assert!(e.message.contains("stored copy is damaged"), "{ctx}: {e}");
        assert!(e.hint.unwrap().contains("--replace-damaged"), "{ctx}");
        assert_eq!(p.object(), damaged, "{ctx}: the object is untouched");
        let src = p.dir.path().join(p.name.as_str());
        assert_eq!(
            std::fs::read(src).unwrap(),
            p.original,
            "{ctx}: the file is kept"
        );

        // the documented repair: the good local copy replaces the damaged object
        let r = p.push_again(true).unwrap();
        assert_eq!(r.outcome, PushOutcome::Replaced, "{ctx}");
        assert_eq!(p.fetch().unwrap(), p.original, "{ctx}");
        verify_object(&p.repo, &p.name).unwrap();
        assert_eq!(
            p.push_again(false).unwrap().outcome,
            PushOutcome::AlreadyArchived,
            "{ctx}"
        );
        // on a healthy object it is a no-op
        let healthy = p.object();
        let r = p.push_again(true).unwrap();
        assert_eq!(r.outcome, PushOutcome::AlreadyArchived, "{ctx}");
        assert_eq!(p.object(), healthy, "{ctx}");
    }
}

#[test]
fn replace_damaged_never_replaces_other_content_or_an_object_with_a_damaged_header() {
    let p = pushed(Compression::Zstd);
    // a damaged payload under a header recording another file (split brain, a snapshot)
    let mut payload = p.object()[HEADER_LEN..].to_vec();
    payload[10] ^= 1;
    let other = ObjectHeader {
        digest: [9; 32],
        key_id: None,
        ..p.header()
    };
    p.replace(&other, &payload);
    let before = p.object();
    let e = p.push_again(true).unwrap_err();
    assert_eq!(e.kind, Kind::Conflict, "{e}");
    assert_eq!(p.object(), before);
    // a damaged header: what the object held cannot be known, so it is not replaced
    let mut bytes = before.clone();
    bytes[30] ^= 1;
    p.storage
        .files
        .borrow_mut()
        .insert(crate::repo::object_path(&p.name), bytes.clone());
    let e = p.push_again(true).unwrap_err();
    assert_eq!(e.kind, Kind::Corrupt, "{e}");
    assert_eq!(p.object(), bytes);
}

#[test]
fn regression_fetch_refuses_an_object_whose_header_claims_more_than_a_segment_before_writing() {
    // A consistent object (digests and zstd checksum all match) of twice the segment size:
    // only its length can say it is not a WAL file of this repository.
    let p = pushed(Compression::Zstd);
    let big = vec![0u8; 2 << 20];
    let mut payload = Vec::new();
    {
        let mut e = Compression::Zstd
            .stream_encoder(&mut payload, 1, 1)
            .unwrap();
        e.write_all(&big).unwrap();
        e.finish().unwrap();
    }
    let header = ObjectHeader {
        original_len: big.len() as u64,
        digest: Sha256::digest(&big).into(),
        key_id: None,
        payload_digest: Some(payload_digest(&payload)),
        ..p.header()
    };
    p.replace(&header, &payload);
    p.refused("records 2097152 bytes");
    let left: Vec<_> = std::fs::read_dir(p.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the pushed segment: {left:?}");
    assert!(verify_object(&p.repo, &p.name).is_err());
}

#[path = "tests_encrypted.rs"]
mod encrypted;
