//! The repository format, pinned: repositories written by walship 0.1.0 (fixtures/repo-v1, object
//! header version 1) and 0.2.0 (fixtures/repo-v2, header version 2) hold the same five files, and
//! every later walship must fetch them byte for byte and recognise the originals as the same files.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use sha2::{Digest, Sha256};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn sums() -> Vec<(String, String)> {
    fs::read_to_string(fixture().join("originals.SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| {
            let (sum, name) = l.split_once("  ").unwrap();
            (name.to_string(), sum.to_string())
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const FIXTURES: [(&str, u8); 2] = [("repo-v1", 1), ("repo-v2", 2)];

#[test]
fn every_object_of_every_fixture_fetches_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let sums = sums();
    assert_eq!(sums.len(), 5);
    for (fixture_name, header_version) in FIXTURES {
        for (name, sum) in &sums {
            let object = fs::read_dir(fixture().join(fixture_name).join("wal"))
                .unwrap()
                .map(|d| d.unwrap().path().join(name))
                .find(|p| p.exists())
                .unwrap();
            assert_eq!(fs::read(&object).unwrap()[8], header_version, "{object:?}");
            let dest = dir.path().join("RECOVERYXLOG");
            let _ = fs::remove_file(&dest);
            let (code, err) = run(walship()
                .arg("--repo")
                .arg(fixture().join(fixture_name))
                .args(["fetch", name])
                .arg(&dest));
            assert_eq!(code, 0, "{fixture_name} {name}: {err}");
            assert_eq!(
                &sha256_hex(&fs::read(&dest).unwrap()),
                sum,
                "{fixture_name} {name}"
            );
        }
        let (code, out) = verify(&fixture().join(fixture_name));
        assert_eq!(code, 0, "{fixture_name}: {out}");
    }
}

#[test]
fn the_original_files_are_recognised_as_already_archived() {
    for (fixture_name, _) in FIXTURES {
        recognised_as_already_archived(fixture_name);
    }
}

fn recognised_as_already_archived(fixture_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let pg_wal = dir.path().join("pgdata/pg_wal");
    fs::create_dir_all(&pg_wal).unwrap();
    // a writable copy of the fixture
    copy_tree(&fixture().join(fixture_name), &repo);
    let before = tree(&repo);
    for (name, _) in sums() {
        let (code, err) = run(walship()
            .arg("--repo")
            .arg(&repo)
            .args(["fetch", &name])
            .arg(pg_wal.join(&name)));
        assert_eq!(code, 0, "{err}");
        let (code, err) = run(walship()
            .arg("--repo")
            .arg(&repo)
            .current_dir(dir.path().join("pgdata"))
            .arg("push")
            .arg(format!("pg_wal/{name}"))
            .arg(&name));
        assert_eq!(code, 0, "{fixture_name} {name}: {err}");
        assert!(
            err.contains("already archived"),
            "{fixture_name} {name}: {err}"
        );
    }
    assert_eq!(tree(&repo), before);
}

#[test]
fn a_changed_byte_in_a_version_2_object_stops_fetch_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    copy_tree(&fixture().join("repo-v2"), &repo);
    // The uncompressed history object: its decoder cannot notice a changed byte, only the
    // payload digest can.
    let object = repo.join("wal/history/00000002.history");
    let mut bytes = fs::read(&object).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    fs::write(&object, &bytes).unwrap();

    let dest = dir.path().join("RECOVERYXLOG");
    let (code, err) = run(walship()
        .arg("--repo")
        .arg(&repo)
        .args(["fetch", "00000002.history"])
        .arg(&dest));
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("the stored bytes hash to"), "{err}");
    assert!(!dest.exists(), "damaged bytes reached %p");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "a temporary file was left beside %p"
    );

    let (code, out) = verify(&repo);
    assert_eq!(code, 5, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("PROBLEM: ") && l.contains("00000002.history")),
        "{out}"
    );
}
