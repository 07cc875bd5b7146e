//! `walship status` and `walship verify` on healthy and damaged repositories. The damaged ones are
//! copies of fixtures/repo-v1 (a repository written by walship 0.1.0) with one defect each, and a
//! repository with a missing segment in the middle of a timeline.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const SYSID: u64 = 7_300_000_000_000_000_003;

fn copy_fixture(to: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repo-v1");
    copy_tree(&from, to);
    to.to_path_buf()
}

fn status_json(repo: &Path) -> serde_json::Value {
    let out = walship()
        .arg("--repo")
        .arg(repo)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A repository with segments `nos` of timeline 1, pushed by walship.
fn pushed_repo(dir: &Path, nos: &[u64]) -> PathBuf {
    let repo = dir.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let pg_wal = dir.join("pgdata/pg_wal");
    for n in nos {
        let name = format!("0000000100000000{n:08X}");
        write_segment(&pg_wal, &name, SYSID, *n);
        let (code, err) = run(walship()
            .arg("--repo")
            .arg(&repo)
            .current_dir(dir.join("pgdata"))
            .arg("push")
            .arg(format!("pg_wal/{name}"))
            .arg(&name));
        assert_eq!(code, 0, "{err}");
    }
    repo
}

#[test]
fn a_healthy_repository_verifies_and_its_status_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let repo = pushed_repo(dir.path(), &[1, 2, 3, 4, 5]);
    let (code, out) = verify(&repo);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("verified 5 objects") && out.contains("no problems"),
        "{out}"
    );
    let s = status_json(&repo);
    assert_eq!(s["system_identifier"], SYSID.to_string());
    assert_eq!(s["wal_segment_size"], 1 << 20);
    let t = &s["timelines"][0];
    assert_eq!(
        (
            t["timeline"].as_u64(),
            t["segments"].as_u64(),
            t["missing"].as_u64()
        ),
        (Some(1), Some(5), Some(0))
    );
    assert_eq!(t["first"], "000000010000000000000001");
    assert_eq!(t["last"], "000000010000000000000005");
    assert_eq!(t["original_bytes"], 5 << 20);
    // the human table names the same range
    let out = walship()
        .arg("--repo")
        .arg(&repo)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("000000010000000000000005") && text.contains("PostgreSQL 15"),
        "{text}"
    );
    // the fixture written by 0.1.0 is healthy too
    let (code, out) = verify(&copy_fixture(&dir.path().join("fixture")));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_missing_segment_is_a_gap_that_verify_names() {
    let dir = tempfile::tempdir().unwrap();
    let repo = pushed_repo(dir.path(), &[1, 2, 3, 4, 5, 6]);
    fs::remove_file(repo.join("wal/0000000100000000/000000010000000000000003")).unwrap();
    fs::remove_file(repo.join("wal/0000000100000000/000000010000000000000004")).unwrap();
    let (code, out) = verify(&repo);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("PROBLEM: timeline 1: segments 000000010000000000000003 .. 000000010000000000000004 are missing"), "{out}");
    let s = status_json(&repo);
    assert_eq!(s["timelines"][0]["missing"], 2);
    assert_eq!(
        s["timelines"][0]["gaps"][0]["from"],
        "000000010000000000000003"
    );
}

/// Every damaged repository under fixtures/damaged/ (each a copy of repo-v1 with one defect,
/// described in fixtures/README.md) makes verify exit 5 with a PROBLEM line naming it.
#[test]
fn damaged_repositories_each_make_verify_fail_naming_the_problem() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/damaged");
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for case in fs::read_dir(&root).unwrap() {
        let case = case.unwrap().path();
        let name = case.file_name().unwrap().to_str().unwrap().to_string();
        let expect = fs::read_to_string(case.join("EXPECTED")).unwrap();
        let repo = dir.path().join(&name);
        copy_tree(&case.join("repo"), &repo);
        let (code, out) = verify(&repo);
        assert_eq!(code, 5, "{name}: {out}");
        assert!(
            out.contains(&format!("PROBLEM: {}", expect.trim_end())),
            "{name}: expected {expect:?} in\n{out}"
        );
        assert!(out.contains("HINT:"), "{out}");
        seen.push(name);
    }
    seen.sort();
    for required in [
        "damaged-backup-record",
        "flipped-byte",
        "missing-segment",
        "truncated-object",
    ] {
        assert!(
            seen.iter().any(|s| s == required),
            "fixtures/damaged/{required} is missing"
        );
    }
}

#[test]
fn verify_and_status_work_over_ssh() {
    let ws = Workspace::new();
    let sshd = Sshd::start(&ws, "sshd");
    let repo = ws.mkdir("repo");
    copy_fixture(&repo);
    // the SSH login user must own what it reads
    chown_to_pg_user(&ws, &repo);
    let config = sshd.config(&ws, &repo, "walship.toml");
    let out = walship()
        .arg("--config")
        .arg(&config)
        .arg("verify")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verified 5 objects"), "{text}");
    let out = walship()
        .arg("--config")
        .arg(&config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["timelines"][0]["segments"], 2);
    assert_eq!(s["history_files"][0], "00000002.history");
}

#[test]
fn verify_and_prune_on_an_unmounted_mount_point_are_unavailable_not_empty() {
    // a mount point whose file system is not mounted: an empty directory, or one with files
    // of the file system underneath but no walship.repo
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("mnt/archive");
    fs::create_dir_all(&empty).unwrap();
    let underneath = dir.path().join("mnt/other");
    fs::create_dir_all(underneath.join("wal/0000000100000000")).unwrap();
    for root in [&empty, &underneath] {
        let before = names_below(root);
        let (code, out) = verify(root);
        assert_eq!(code, 3, "verify: {out}");
        assert!(
            out.contains("walship.repo") && out.contains("mounted"),
            "verify: {out}"
        );
        let (code, out) =
            output(
                walship()
                    .arg("--repo")
                    .arg(root)
                    .args(["prune", "--keep-backups", "1"]),
            );
        assert_eq!(code, 3, "prune: {out}");
        assert!(out.contains("walship.repo"), "prune: {out}");
        assert_eq!(names_below(root), before, "nothing written");
        assert!(!root.join("walship.repo").exists());
    }
}
