//! Encrypted repositories through the walship binary, on a local directory and on a real
//! OpenSSH server: round trips, what is stored, a wrong or missing key (exit 4, never "not in the
//! archive"), tampered ciphertext (exit 5; 254 in archive recovery), plain and encrypted never
//! mixing, and key rotation with objects under two keys.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const SYSID: u64 = 7_400_100_200_300_400_500;
const SEG: [&str; 3] = [
    "000000010000000000000001",
    "000000010000000000000002",
    "000000010000000000000003",
];

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let (code, out) = output(walship().arg("keygen").arg("--output").arg(&path));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    path
}

fn key_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap().trim().to_string()
}

struct Env {
    ws: Workspace,
    pgdata: PathBuf,
    repo: String,
    /// The local repository's directory (also where an SSH repository lives).
    repo_dir: PathBuf,
    extra: Vec<String>,
}

impl Env {
    fn local() -> Env {
        let ws = Workspace::new();
        let repo_dir = ws.mkdir("repo");
        let pgdata = ws.mkdir("pgdata");
        Env {
            repo: repo_dir.display().to_string(),
            ws,
            pgdata,
            repo_dir,
            extra: Vec::new(),
        }
    }

    fn cmd(&self, key: Option<&Path>) -> Command {
        let mut c = walship();
        c.current_dir(&self.pgdata).args(&self.extra);
        c.arg("--repo")
            .arg(&self.repo)
            .arg("--fetch-retries")
            .arg("0");
        if let Some(k) = key {
            c.arg("--encryption")
                .arg("aead")
                .arg("--encryption-key-file")
                .arg(k);
        }
        c
    }

    fn push(&self, key: Option<&Path>, name: &str) -> (i32, String) {
        output(
            self.cmd(key)
                .arg("--push-ahead")
                .arg("0")
                .arg("push")
                .arg(format!("pg_wal/{name}"))
                .arg(name),
        )
    }

    fn fetch(&self, key: Option<&Path>, name: &str) -> (i32, String) {
        let _ = fs::remove_file(self.pgdata.join("pg_wal/RECOVERYXLOG"));
        output(
            self.cmd(key)
                .arg("--prefetch")
                .arg("0")
                .arg("fetch")
                .arg(name)
                .arg("pg_wal/RECOVERYXLOG"),
        )
    }

    fn fetched(&self) -> Vec<u8> {
        fs::read(self.pgdata.join("pg_wal/RECOVERYXLOG")).unwrap()
    }

    fn object(&self, name: &str) -> PathBuf {
        self.repo_dir.join("wal").join(&name[..16]).join(name)
    }
}

/// What every encrypted repository must do, whatever its backend.
fn round_trip_and_refusals(env: &Env) {
    let keys = env.ws.mkdir("keys");
    let k1 = keygen(&keys, "k1");
    let pg_wal = env.pgdata.join("pg_wal");
    let originals: Vec<Vec<u8>> = SEG
        .iter()
        .enumerate()
        .map(|(i, n)| fs::read(write_segment(&pg_wal, n, SYSID, i as u64)).unwrap())
        .collect();
    for n in &SEG[..2] {
        let (code, out) = env.push(Some(&k1), n);
        assert_eq!(code, 0, "{out}");
    }
    for (n, original) in SEG[..2].iter().zip(&originals) {
        let (code, out) = env.fetch(Some(&k1), n);
        assert_eq!(code, 0, "{out}");
        assert_eq!(&env.fetched(), original, "{n}");
    }
    // the same file again: already archived, recognised without decrypting the source's twin
    let (code, out) = env.push(Some(&k1), SEG[0]);
    assert_eq!(code, 0, "{out}");
    // a wrong key, no key, a key file others can read, a key command that fails: exit 4
    let k2 = keygen(&keys, "k2");
    let open = keys.join("open");
    fs::write(&open, key_text(&k1) + "\n").unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    for (key, says) in [
        (Some(k2.as_path()), "sealed under key id"),
        (None, "has no key"),
        (Some(open.as_path()), "readable by group or others"),
    ] {
        let (code, out) = env.fetch(key, SEG[0]);
        assert_eq!(code, 4, "{out}");
        assert!(out.contains(says), "{out}");
        assert!(
            !out.contains(&key_text(&k1)) && !out.contains(&key_text(&k2)),
            "{out}"
        );
        let (code, out) = env.push(key, SEG[2]);
        assert_eq!(code, 4, "{out}");
    }
    let (code, out) = output(
        env.cmd(None)
            .args([
                "--encryption",
                "aead",
                "--encryption-key-command",
                "exit 255",
            ])
            .args(["fetch", SEG[0], "pg_wal/RECOVERYXLOG"]),
    );
    assert_eq!(code, 4, "{out}");
    // the key from a command (a vault) works like the file
    let (code, out) = output(
        env.cmd(None)
            .args(["--encryption", "aead", "--encryption-key-command"])
            .arg(format!("cat {}", k1.display()))
            .args(["--prefetch", "0", "fetch", SEG[1], "pg_wal/RECOVERYXLOG"]),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(env.fetched(), originals[1]);
    let (code, out) = output(env.cmd(Some(&k1)).arg("verify"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("encrypted: 2 under key"), "{out}");
}

#[test]
fn a_local_encrypted_repository_round_trips_and_refuses_wrong_keys_with_exit_4() {
    let env = Env::local();
    round_trip_and_refusals(&env);
    // nothing stored shows the WAL, nor its plain SHA-256
    let original = fs::read(env.pgdata.join("pg_wal").join(SEG[0])).unwrap();
    let object = fs::read(env.object(SEG[0])).unwrap();
    let sample = &original[100..164];
    assert!(!object.windows(64).any(|w| w == sample));
    let identity = fs::read_to_string(env.repo_dir.join("walship.repo")).unwrap();
    assert!(
        identity.contains("encryption = \"xchacha20poly1305-stream\""),
        "{identity}"
    );
}

#[test]
fn tampered_ciphertext_is_exit_5_and_stops_archive_recovery() {
    let env = Env::local();
    let k1 = keygen(&env.ws.mkdir("keys"), "k1");
    write_segment(&env.pgdata.join("pg_wal"), SEG[0], SYSID, 1);
    assert_eq!(env.push(Some(&k1), SEG[0]).0, 0);
    let path = env.object(SEG[0]);
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, &bytes).unwrap();
    let (code, out) = env.fetch(Some(&k1), SEG[0]);
    assert_eq!(code, 5, "{out}");
    assert!(!env.pgdata.join("pg_wal/RECOVERYXLOG").exists());
    // in archive recovery, any failure but "absent" stops recovery (above 125)
    fs::write(env.pgdata.join("recovery.signal"), "").unwrap();
    let (code, out) = env.fetch(Some(&k1), SEG[0]);
    assert_eq!(code, 254, "{out}");
    // and a wrong key too: never 1, which would end recovery early on a new timeline
    let k2 = keygen(&env.ws.path().join("keys"), "k2");
    let (code, out) = env.fetch(Some(&k2), SEG[0]);
    assert_eq!(code, 254, "{out}");
    let (code, out) = output(env.cmd(Some(&k1)).arg("verify"));
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("failed authentication"), "{out}");
}

#[test]
fn plain_and_encrypted_never_mix() {
    let env = Env::local();
    let k1 = keygen(&env.ws.mkdir("keys"), "k1");
    let pg_wal = env.pgdata.join("pg_wal");
    for (i, n) in SEG.iter().enumerate() {
        write_segment(&pg_wal, n, SYSID, i as u64);
    }
    assert_eq!(env.push(None, SEG[0]).0, 0);
    let (code, out) = env.push(Some(&k1), SEG[1]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("is not encrypted"), "{out}");
    assert!(!env.object(SEG[1]).exists());
    // a key setting without encryption = aead is a configuration mistake, said up front
    let (code, out) = output(
        env.cmd(None)
            .arg("--encryption-key-file")
            .arg(&k1)
            .arg("status"),
    );
    assert_eq!(code, 2, "{out}");
}

#[test]
fn after_rotation_new_segments_use_the_new_key_and_old_ones_stay_readable() {
    let env = Env::local();
    let keys = env.ws.mkdir("keys");
    let k1 = keygen(&keys, "k1");
    let k2 = keygen(&keys, "k2");
    let pg_wal = env.pgdata.join("pg_wal");
    for (i, n) in SEG.iter().enumerate() {
        write_segment(&pg_wal, n, SYSID, i as u64);
    }
    assert_eq!(env.push(Some(&k1), SEG[0]).0, 0);
    // the new key first, the old one after it
    let both = keys.join("both");
    fs::write(&both, format!("{}\n{}\n", key_text(&k2), key_text(&k1))).unwrap();
    fs::set_permissions(&both, fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = env.push(Some(&both), SEG[1]);
    assert_eq!(code, 4, "a key never added is refused: {out}");
    let (code, out) = output(env.cmd(Some(&both)).args(["key", "add"]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(env.push(Some(&both), SEG[1]).0, 0);
    let (code, out) = output(env.cmd(Some(&both)).args(["key", "list"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("current") && out.contains("configured"),
        "{out}"
    );
    let (code, out) = output(env.cmd(Some(&both)).arg("verify"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 under key") && out.contains("(current)"),
        "{out}"
    );
    for n in &SEG[..2] {
        let (code, out) = env.fetch(Some(&both), n);
        assert_eq!(code, 0, "{out}");
    }
    // without the old key the old segment is exit 4, the new one still fetches
    let (code, out) = env.fetch(Some(&k2), SEG[0]);
    assert_eq!(code, 4, "{out}");
    assert_eq!(env.fetch(Some(&k2), SEG[1]).0, 0);
}

#[test]
fn an_encrypted_repository_over_ssh_round_trips() {
    let ws = Workspace::new();
    let sshd = Sshd::start(&ws, "sshd");
    let repo_dir = ws.mkdir("repo");
    let config = sshd.config(&ws, &repo_dir, "walship.toml");
    let pgdata = ws.mkdir("pgdata");
    let env = Env {
        repo: sshd.url(&repo_dir),
        extra: vec!["--config".into(), config.display().to_string()],
        ws,
        pgdata,
        repo_dir,
    };
    round_trip_and_refusals(&env);
    let object = fs::read(env.object(SEG[0])).unwrap();
    assert_eq!(object[8], 3, "a version 3 (encrypted) object header");
}
