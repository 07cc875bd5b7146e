//! The SSH backend against a real OpenSSH server on 127.0.0.1: round trips, durability-relevant
//! permissions, and refusal of unknown or changed host keys, bad logins and unreachable hosts.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::*;

const SYSID: u64 = 6_100_200_300_400_500_600;

struct Env {
    ws: Workspace,
    sshd: Sshd,
    repo: PathBuf,
    config: PathBuf,
    pgdata: PathBuf,
}

impl Env {
    fn new() -> Env {
        let ws = Workspace::new();
        let sshd = Sshd::start(&ws, "sshd");
        let repo = ws.mkdir("repo");
        let config = sshd.config(&ws, &repo, "walship.toml");
        let pgdata = ws.path().join("pgdata");
        fs::create_dir_all(pgdata.join("pg_wal")).unwrap();
        Env {
            ws,
            sshd,
            repo,
            config,
            pgdata,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = walship();
        c.arg("--config")
            .arg(&self.config)
            .current_dir(&self.pgdata);
        c
    }

    fn push(&self, name: &str) -> (i32, String) {
        run(self
            .cmd()
            .arg("push")
            .arg(format!("pg_wal/{name}"))
            .arg(name))
    }

    fn fetch(&self, name: &str) -> (i32, String) {
        run(self.cmd().arg("fetch").arg(name).arg("pg_wal/RECOVERYXLOG"))
    }
}

#[test]
fn push_and_fetch_over_ssh_round_trip_with_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let pg_wal = env.pgdata.join("pg_wal");
    for (i, name) in ["000000010000000000000010", "000000010000000000000011"]
        .iter()
        .enumerate()
    {
        write_segment(&pg_wal, name, SYSID, i as u64 + 1);
        let (code, err) = env.push(name);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("to ssh://"), "{err}");
    }
    fs::write(
        pg_wal.join("00000002.history"),
        "1\t0/11000000\tbefore 2026-01-01\n",
    )
    .unwrap();
    assert_eq!(env.push("00000002.history").0, 0);
    for name in [
        "000000010000000000000010",
        "000000010000000000000011",
        "00000002.history",
    ] {
        let (code, err) = env.fetch(name);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            fs::read(pg_wal.join("RECOVERYXLOG")).unwrap(),
            fs::read(pg_wal.join(name)).unwrap()
        );
    }
    let object = env
        .repo
        .join("wal/0000000100000000/000000010000000000000010");
    assert_eq!(
        fs::metadata(&object).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(env.repo.join("wal/0000000100000000"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // no temporary file left on the server
    let names: Vec<_> = fs::read_dir(env.repo.join("wal/0000000100000000"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(env.fetch("000000010000000000000099").0, 1);
}

#[test]
fn over_ssh_an_identical_repush_succeeds_and_different_content_is_refused() {
    let env = Env::new();
    let pg_wal = env.pgdata.join("pg_wal");
    let name = "000000010000000000000010";
    write_segment(&pg_wal, name, SYSID, 1);
    assert_eq!(env.push(name).0, 0);
    let before = tree(&env.repo);
    assert_eq!(env.push(name).0, 0);
    write_segment(&pg_wal, name, SYSID, 2);
    let (code, err) = env.push(name);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("different content"), "{err}");
    assert_eq!(tree(&env.repo), before);
}

#[test]
fn regression_a_damaged_repository_path_is_not_reported_as_not_in_the_archive() {
    // sftp-server answers ENOTDIR and ELOOP with "no such file"; exit 1 ("not in the archive")
    // would end a point-in-time recovery early instead of stopping it.
    let env = Env::new();
    let pg_wal = env.pgdata.join("pg_wal");
    write_segment(&pg_wal, "000000010000000000000010", SYSID, 1);
    assert_eq!(env.push("000000010000000000000010").0, 0);
    let wal = env.repo.join("wal");
    fs::write(wal.join("0000000100000001"), "not a directory").unwrap();
    std::os::unix::fs::symlink(
        "000000010000000000000011",
        wal.join("0000000100000000/000000010000000000000011"),
    )
    .unwrap();
    let local = |name: &str| {
        run(walship()
            .arg("--repo")
            .arg(&env.repo)
            .current_dir(&env.pgdata)
            .args(["fetch", name, "pg_wal/RECOVERYXLOG"]))
    };
    for (name, why) in [
        ("000000010000000100000005", "not a directory"),
        ("000000010000000000000011", "symlink"),
    ] {
        for (how, (code, err)) in [("ssh", env.fetch(name)), ("local", local(name))] {
            assert_eq!(code, 3, "{how} {name}: {err}");
            assert!(how == "local" || err.contains(why), "{how} {name}: {err}");
        }
    }
    // really absent, in an existing directory and in one not made yet: not in the archive
    for name in ["000000010000000000000012", "000000010000000200000001"] {
        assert_eq!(env.fetch(name).0, 1, "ssh {name}");
        assert_eq!(local(name).0, 1, "local {name}");
    }
}

#[test]
fn an_unknown_host_key_is_refused_with_the_fingerprint_and_how_to_trust_it() {
    let env = Env::new();
    write_segment(
        &env.pgdata.join("pg_wal"),
        "000000010000000000000010",
        SYSID,
        1,
    );
    fs::write(&env.sshd.known_hosts, "").unwrap();
    let (code, err) = env.push("000000010000000000000010");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("unknown SSH host") && err.contains("SHA256:"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "ssh-keyscan -p {} -t ed25519 127.0.0.1",
            env.sshd.port
        )),
        "{err}"
    );
    assert!(tree(&env.repo).is_empty());
    // a missing known_hosts file is the same refusal
    fs::remove_file(&env.sshd.known_hosts).unwrap();
    assert_eq!(env.push("000000010000000000000010").0, 4);
}

#[test]
fn a_changed_host_key_is_refused() {
    let env = Env::new();
    write_segment(
        &env.pgdata.join("pg_wal"),
        "000000010000000000000010",
        SYSID,
        1,
    );
    // known_hosts holds another ed25519 key for this host and port (a man in the middle, or a rebuilt server)
    let other = env.ws.path().join("other_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_pub: Vec<_> = other_pub.split_whitespace().take(2).collect();
    fs::write(
        &env.sshd.known_hosts,
        format!("[127.0.0.1]:{} {}\n", env.sshd.port, other_pub.join(" ")),
    )
    .unwrap();
    let (code, err) = env.push("000000010000000000000010");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("HOST KEY CHANGED") && err.contains("ssh-keygen -R"),
        "{err}"
    );
    assert!(tree(&env.repo).is_empty());
    // the right key for the same host on port 22 does not vouch for another port (as in OpenSSH)
    fs::write(
        &env.sshd.known_hosts,
        format!("127.0.0.1 {}\n", env.sshd.host_pub),
    )
    .unwrap();
    let (code, err) = env.push("000000010000000000000010");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("unknown SSH host"), "{err}");
    // the right key filed under another host name does not count
    fs::write(
        &env.sshd.known_hosts,
        format!(
            "[127.0.0.2]:{} {}\nlocalhost {}\n",
            env.sshd.port, env.sshd.host_pub, env.sshd.host_pub
        ),
    )
    .unwrap();
    let (code, err) = env.push("000000010000000000000010");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("unknown SSH host"), "{err}");
}

#[test]
fn a_refused_login_and_an_unreachable_host_are_clear_errors() {
    let env = Env::new();
    write_segment(
        &env.pgdata.join("pg_wal"),
        "000000010000000000000010",
        SYSID,
        1,
    );
    let stranger = env.ws.path().join("stranger_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, err) = run(env
        .cmd()
        .arg("--ssh-key")
        .arg(&stranger)
        .arg("push")
        .arg("pg_wal/000000010000000000000010")
        .arg("000000010000000000000010"));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("refused") && err.contains("authorized_keys"),
        "{err}"
    );

    let closed = walship::pg::cluster::free_port().unwrap();
    let url = format!(
        "ssh://{}@127.0.0.1:{closed}{}",
        env.sshd.user,
        env.repo.display()
    );
    let (code, err) = run(env
        .cmd()
        .arg("--repo")
        .arg(&url)
        .arg("push")
        .arg("pg_wal/000000010000000000000010")
        .arg("000000010000000000000010"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    // during plain archive recovery, an unreachable repository stops recovery instead of ending it
    fs::write(env.pgdata.join("recovery.signal"), "").unwrap();
    let (code, err) = run(env.cmd().arg("--repo").arg(&url).args([
        "fetch",
        "000000010000000000000010",
        "pg_wal/RECOVERYXLOG",
    ]));
    assert_eq!(code, 254, "{err}");
    // on a standby, it is "not available now": PostgreSQL keeps trying
    fs::write(env.pgdata.join("standby.signal"), "").unwrap();
    let (code, err) = run(env.cmd().arg("--repo").arg(&url).args([
        "fetch",
        "000000010000000000000010",
        "pg_wal/RECOVERYXLOG",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("will ask again"), "{err}");
}

#[test]
fn a_missing_remote_repository_directory_is_an_error() {
    let env = Env::new();
    write_segment(
        &env.pgdata.join("pg_wal"),
        "000000010000000000000010",
        SYSID,
        1,
    );
    let url = env.sshd.url(&env.ws.path().join("no-such-repo"));
    let (code, err) = run(env
        .cmd()
        .arg("--repo")
        .arg(&url)
        .arg("push")
        .arg("pg_wal/000000010000000000000010")
        .arg("000000010000000000000010"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

/// walship builds libssh2 with one change (vendor/libssh2-sys/WALSHIP.md): the middle of every
/// SSH packet is encrypted and decrypted in one OpenSSL call rather than per 16-byte block. Files
/// of every size around the cipher block, the SFTP write chunk (30000 bytes) and the SSH packet
/// limits must cross both ways byte for byte: written through the SFTP backend and compared on
/// the server's disk (the sending side), then read back through it (the receiving side). Once per
/// kind of cipher the change touches: AES-GCM (what walship prefers), AES-CTR with a MAC over the
/// plain text, AES-CTR with encrypt-then-MAC (encryption starts 4 bytes into the packet), and
/// ChaCha20-Poly1305 (whole packets, unchanged).
#[test]
fn files_of_every_size_around_block_and_packet_boundaries_cross_intact() {
    for (cipher, mac) in [
        ("aes128-gcm@openssh.com", "hmac-sha2-256"),
        ("aes128-ctr", "hmac-sha2-256"),
        ("aes256-ctr", "hmac-sha2-256-etm@openssh.com"),
        ("chacha20-poly1305@openssh.com", "hmac-sha2-256"),
    ] {
        round_trip_every_size(cipher, mac);
    }
}

fn round_trip_every_size(cipher: &str, mac: &str) {
    use std::io::{Read, Write};
    use walship::storage::Storage;
    use walship::storage::ssh::{SshOptions, SshStorage, SshUrl};

    let ws = Workspace::new();
    let sshd = Sshd::start_with(&ws, "sshd", &format!("Ciphers {cipher}\nMACs {mac}\n"));
    let repo = ws.mkdir("repo");
    let url = sshd.url(&repo);
    let url = SshUrl::parse(url.strip_prefix("ssh://").unwrap(), &url).unwrap();
    let storage = SshStorage::connect(
        &url,
        &SshOptions {
            key: Some(sshd.client_key.clone()),
            known_hosts: sshd.known_hosts.clone(),
            timeout: std::time::Duration::from_secs(10),
        },
    )
    .unwrap();

    let mut sizes: Vec<usize> = (0..=100).collect();
    for edge in [
        4096, 16_384, 30_000, 32_768, 34_000, 35_000, 60_000, 65_536, 131_072,
    ] {
        sizes.extend(edge - 50..edge + 50);
    }
    sizes.extend([1 << 20, (1 << 20) + 7, 3 * (1 << 20) + 12_345]);
    for (i, &len) in sizes.iter().enumerate() {
        // incompressible and different for every size: each is its own packet pattern
        let data = noise(i as u64 + 1, len);
        let path = format!("sizes/{i:04}-{len}");
        let mut object = storage.create(&path).unwrap();
        object.write_all(&data).unwrap();
        object.commit().unwrap();
        assert!(
            fs::read(repo.join(&path)).unwrap() == data,
            "{cipher}/{mac}: {len} bytes arrived changed on the server"
        );
        let mut back = Vec::new();
        storage
            .open_read(&path)
            .unwrap()
            .expect("just written")
            .read_to_end(&mut back)
            .unwrap();
        assert!(
            back == data,
            "{cipher}/{mac}: {len} bytes came back changed"
        );
    }
}
