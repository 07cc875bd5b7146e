//! Repository format version 1, pinned: a repository written by walship 0.1.0 (fixtures/repo-v1)
//! must stay readable byte for byte, and its objects must still be recognised as the same files.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use sha2::{Digest, Sha256};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn sums() -> Vec<(String, String)> {
    fs::read_to_string(fixture().join("repo-v1.SHA256SUMS"))
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

#[test]
fn every_object_of_a_version_1_repository_fetches_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let sums = sums();
    assert_eq!(sums.len(), 5);
    for (name, sum) in &sums {
        let dest = dir.path().join("RECOVERYXLOG");
        let (code, err) = run(walship()
            .arg("--repo")
            .arg(fixture().join("repo-v1"))
            .args(["fetch", name])
            .arg(&dest));
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(&sha256_hex(&fs::read(&dest).unwrap()), sum, "{name}");
    }
}

#[test]
fn the_original_files_are_recognised_as_already_archived() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let pg_wal = dir.path().join("pgdata/pg_wal");
    fs::create_dir_all(&pg_wal).unwrap();
    // a writable copy of the fixture
    copy_tree(&fixture().join("repo-v1"), &repo);
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
        assert_eq!(code, 0, "{name}: {err}");
        assert!(err.contains("already archived"), "{name}: {err}");
    }
    assert_eq!(tree(&repo), before);
}
