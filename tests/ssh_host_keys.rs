//! Host key checking against the known_hosts files OpenSSH writes, on a real sshd: hashed
//! entries (`ssh-keyscan -H`, `HashKnownHosts yes`), entries of one key type only, mixed files.
//! walship must accept what OpenSSH's `ssh` accepts, and refuse what it refuses.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Sshd, Workspace, output, walship};

fn keygen(path: &Path, kind: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "walship-test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

fn keyscan(port: u16, kind: &str) -> String {
    keyscan_as(port, kind, "127.0.0.1")
}

fn keyscan_as(port: u16, kind: &str, host: &str) -> String {
    let out = Command::new("ssh-keyscan")
        .args(["-H", "-t", kind, "-p", &port.to_string(), host])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("|1|"), "ssh-keyscan -H wrote {text:?}");
    text
}

/// `walship status` of the repository over SSH with this known_hosts text.
fn status_with(ws: &Workspace, sshd: &Sshd, name: &str, known_hosts: &str) -> (i32, String) {
    let kh = ws.path().join(name);
    fs::write(&kh, known_hosts).unwrap();
    output(
        walship()
            .arg("--repo")
            .arg(sshd.url(&ws.path().join("repo")))
            .arg("--ssh-key")
            .arg(&sshd.client_key)
            .arg("--known-hosts")
            .arg(&kh)
            .args(["--ssh-timeout", "10", "status"]),
    )
}

#[test]
fn a_hashed_known_hosts_with_only_the_ecdsa_key_connects_as_openssh_does() {
    let ws = Workspace::new();
    let dir = ws.mkdir("sshd");
    keygen(&dir.join("host_ecdsa"), "ecdsa");
    let sshd = Sshd::start_with(
        &ws,
        "sshd",
        &format!("HostKey {}/host_ecdsa\n", dir.display()),
    );
    ws.mkdir("repo");
    let hashed_ecdsa = keyscan(sshd.port, "ecdsa");
    // OpenSSH's own client accepts this file (the baseline walship must meet)
    let kh = ws.path().join("kh_openssh");
    fs::write(&kh, &hashed_ecdsa).unwrap();
    let st = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .arg("-i")
        .arg(&sshd.client_key)
        .args(["-p", &sshd.port.to_string()])
        .arg(format!("{}@127.0.0.1", sshd.user))
        .arg("true")
        .status()
        .unwrap();
    assert!(st.success(), "OpenSSH's ssh refused the hashed known_hosts");

    let (code, out) = status_with(&ws, &sshd, "kh_hashed", &hashed_ecdsa);
    assert_eq!(code, 0, "hashed ecdsa only: {out}");
    assert!(!out.contains("HOST KEY"), "{out}");

    // mixed: other hosts' plain and hashed lines first, a marker, then ours
    // (hashed for the name localhost: another host as far as the file goes)
    let other_host = keyscan_as(sshd.port, "ed25519", "localhost");
    let mixed = format!(
        "# comment\nbackup.example ssh-ed25519 {ed}\n{other_host}@cert-authority *.example ssh-ed25519 {ed}\n{hashed_ecdsa}",
        ed = sshd.host_pub.split_whitespace().nth(1).unwrap()
    );
    let (code, out) = status_with(&ws, &sshd, "kh_mixed", &mixed);
    assert_eq!(code, 0, "mixed: {out}");

    // a hashed line with another ecdsa key for this host: that is a changed key, refused
    let other = ws.path().join("other_ecdsa");
    keygen(&other, "ecdsa");
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_blob = other_pub.split_whitespace().nth(1).unwrap();
    let ours_blob = hashed_ecdsa.split_whitespace().nth(2).unwrap();
    let changed = hashed_ecdsa.replace(ours_blob, other_blob);
    let (code, out) = status_with(&ws, &sshd, "kh_changed", &changed);
    assert_eq!(code, 4, "changed: {out}");
    assert!(out.contains("HOST KEY CHANGED"), "{out}");

    // the same key, also marked @revoked (for every host): refused, as OpenSSH refuses it
    let revoked = format!("{hashed_ecdsa}@revoked * ecdsa-sha2-nistp256 {ours_blob}\n");
    let (code, out) = status_with(&ws, &sshd, "kh_revoked", &revoked);
    assert_eq!(code, 4, "revoked: {out}");
    assert!(out.contains("@revoked"), "{out}");

    // a server without the ecdsa key known_hosts holds: unknown, not "changed"
    let plain = Sshd::start(&ws, "sshd_ed25519_only");
    let (code, out) = status_with(
        &ws,
        &plain,
        "kh_other_type",
        &format!(
            "[127.0.0.1]:{} ecdsa-sha2-nistp256 {ours_blob}\n",
            plain.port
        ),
    );
    assert_eq!(code, 4, "{out}");
    assert!(!out.contains("HOST KEY CHANGED"), "{out}");
    assert!(out.contains("holds only ecdsa-sha2-nistp256"), "{out}");
}
