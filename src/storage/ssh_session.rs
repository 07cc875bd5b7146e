//! Opening an SSH connection: TCP, the handshake with a fast cipher preferred, the server's host
//! key checked against known_hosts, public-key login. Shared by the SFTP repository (`ssh.rs`) and
//! remote commands (`remote.rs`).
//!
//! Security: an unknown or changed host key is refused with its fingerprint and the command that
//! trusts it, never accepted on first use. `WALSHIP_DEBUG` prints where a connection's time went.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use ssh2::{CheckResult, HashType, HostKeyType, KnownHostFileKind, MethodType, Session};

use crate::error::{Error, Kind, Result};

/// SFTP status codes (draft-ietf-secsh-filexfer-02) walship tells apart.
pub(super) const FX_NO_SUCH_FILE: i32 = 2;

/// `ssh://[user@]host[:port]/path`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUrl {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl SshUrl {
    /// Parse the part after `ssh://`; `whole` is the original text for messages.
    pub fn parse(rest: &str, whole: &str) -> Result<SshUrl> {
        let bad = |why: &str| {
            Error::usage(format!("repository {whole:?}: {why}"))
                .with_hint("Write it as ssh://[user@]host[:port]/absolute/path.")
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(bad("no path after the host")),
        };
        if path == "/" || path.split('/').any(|p| p == "..") {
            return Err(bad(
                "the path must name a directory below / and must not contain '..'",
            ));
        }
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(bad("empty user name")),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in the host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host name"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("bad port number"))?,
            None => 22,
        };
        Ok(SshUrl {
            user,
            host: host.to_string(),
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }
}

/// How to log in and whom to trust.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Private key file; `None`: ssh-agent if running, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
    pub key: Option<PathBuf>,
    pub known_hosts: PathBuf,
    /// Connect, handshake and every read or write must finish within this time.
    pub timeout: Duration,
}

/// An SSH or SFTP failure while doing `what`: `Unavailable`, whatever the status ("no such file"
/// included: the backend says an object is absent on purpose, see `Error::io`).
pub(crate) fn ssh_err(what: impl std::fmt::Display, e: ssh2::Error) -> Error {
    Error::new(Kind::Unavailable, format!("{what}: {}", e.message()))
}

fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// Host key algorithms in OpenSSH's default order.
const HOST_KEY_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// The pattern OpenSSH writes and reads for a host: `host` for port 22, `[host]:port` otherwise.
fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether a known_hosts host field names `pattern`: one of its comma-separated names, or, for
/// a hashed entry (`|1|base64 salt|base64 HMAC-SHA1`, what `HashKnownHosts yes` and
/// `ssh-keyscan -H` write), the HMAC of the pattern keyed with the salt.
fn hosts_field_names(field: &str, pattern: &str) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        return match (b64.decode(salt), b64.decode(hash)) {
            (Ok(salt), Ok(hash)) => {
                crate::hashing::hmac_sha1(&salt, pattern.as_bytes()).as_slice() == hash.as_slice()
            }
            _ => false,
        };
    }
    field.split(',').any(|h| h == pattern)
}

/// OpenSSH's host pattern match: `*` any run, `?` any one character.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p.eq_ignore_ascii_case(n) => glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Whether known_hosts marks this key `@revoked` for this host (a hashed name, or a pattern list
/// with wildcards and `!` negations, as OpenSSH reads it). libssh2 ignores the marker.
fn revoked(known_hosts: &str, host: &str, port: u16, key_type: &str, key_b64: &str) -> bool {
    let pattern = host_pattern(host, port);
    known_hosts.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [marker, hosts, kind, blob, ..] = f[..] else {
            return false;
        };
        let host_matches = if hosts.starts_with("|1|") {
            hosts_field_names(hosts, &pattern)
        } else {
            let mut matched = false;
            for p in hosts.split(',') {
                match p.strip_prefix('!') {
                    Some(neg) if glob(neg.as_bytes(), pattern.as_bytes()) => return false,
                    Some(_) => {}
                    None => matched |= glob(p.as_bytes(), pattern.as_bytes()),
                }
            }
            matched
        };
        marker == "@revoked" && host_matches && kind == key_type && blob == key_b64
    })
}

/// The key types known_hosts holds for this host, in file order (plain and hashed lines).
fn known_key_types<'k>(known_hosts: &'k str, host: &str, port: u16) -> Vec<&'k str> {
    let pattern = host_pattern(host, port);
    let mut known: Vec<&str> = Vec::new();
    for line in known_hosts.lines().map(str::trim) {
        let mut fields = line.split_whitespace();
        let Some(hosts) = fields.next() else { continue };
        // comments, and @cert-authority / @revoked markers (not a plain host key)
        if hosts.starts_with('#') || hosts.starts_with('@') || !hosts_field_names(hosts, &pattern) {
            continue;
        }
        if let Some(kind) = fields.next()
            && !known.contains(&kind)
        {
            known.push(kind);
        }
    }
    known
}

/// The host key algorithms to offer: those known_hosts already holds for this host first (as the
/// OpenSSH client does), so the server presents the key we can verify rather than another type
/// that would look changed or unknown.
pub fn host_key_preference(known_hosts: &str, host: &str, port: u16) -> String {
    let mut known: Vec<&str> = Vec::new();
    for kind in known_key_types(known_hosts, host, port) {
        // An RSA key is offered with the SHA-2 signature algorithms first, as OpenSSH does.
        let kinds: &[&str] = if kind == "ssh-rsa" {
            &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        } else {
            &[kind]
        };
        for k in kinds {
            if HOST_KEY_ALGORITHMS.contains(k) && !known.contains(k) {
                known.push(k);
            }
        }
    }
    let rest = HOST_KEY_ALGORITHMS
        .iter()
        .filter(|a| !known.contains(a))
        .copied();
    known
        .iter()
        .copied()
        .chain(rest)
        .collect::<Vec<_>>()
        .join(",")
}

/// Where connection time goes, printed when WALSHIP_DEBUG is set: the numbers behind the choice of
/// keeping sessions open (push-ahead, prefetch) and of the cipher.
pub(crate) struct Timing {
    enabled: bool,
    last: std::time::Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Timing {
    pub(crate) fn start() -> Timing {
        Timing {
            enabled: crate::log::verbose(),
            last: std::time::Instant::now(),
            steps: Vec::new(),
        }
    }

    pub(crate) fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }

    pub(crate) fn report(&self, target: &str, session: &Session) {
        if !self.enabled {
            return;
        }
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(s, d)| format!("{s} {:.1} ms", d.as_secs_f64() * 1000.0))
            .collect();
        crate::log_line!(
            "walship: debug: {target}: {}; kex {}, host key {}, cipher {}, mac {}",
            steps.join(", "),
            session.methods(MethodType::Kex).unwrap_or("?"),
            session.methods(MethodType::HostKey).unwrap_or("?"),
            session.methods(MethodType::CryptCs).unwrap_or("?"),
            session.methods(MethodType::MacCs).unwrap_or("?"),
        );
    }
}

/// Open an SSH session: TCP, handshake with a fast cipher preferred, the host key checked against
/// known_hosts, public-key login. Shared by the SFTP repository and remote commands.
pub(crate) fn open_session(
    url: &SshUrl,
    opts: &SshOptions,
    timing: &mut Timing,
) -> Result<Session> {
    let target = format!("{}:{}", url.host, url.port);
    let where_ = format!("ssh://{target}");
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| Error::unavailable(format!("{where_}: cannot resolve {}: {e}", url.host)))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, opts.timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        let e = last
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no address".into());
        Error::unavailable(format!("{where_}: cannot connect: {e}"))
    })?;
    tcp.set_nodelay(true).ok();
    timing.mark("tcp");

    let known_text = std::fs::read_to_string(&opts.known_hosts).unwrap_or_default();
    let mut session = Session::new().map_err(|e| ssh_err("creating an SSH session", e))?;
    session.set_timeout(u32::try_from(opts.timeout.as_millis()).unwrap_or(u32::MAX));
    let prefs = host_key_preference(&known_text, &url.host, url.port);
    session
        .method_pref(MethodType::HostKey, &prefs)
        .map_err(|e| ssh_err("host key algorithms", e))?;
    // AES-GCM is the fastest cipher with AES-NI; libssh2 drops the names it does not support.
    let ciphers = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr,chacha20-poly1305@openssh.com";
    session.method_pref(MethodType::CryptCs, ciphers).ok();
    session.method_pref(MethodType::CryptSc, ciphers).ok();
    session.set_tcp_stream(tcp);
    session
        .handshake()
        .map_err(|e| ssh_err(format!("{where_}: SSH handshake"), e))?;
    timing.mark("handshake");

    verify_host_key(&session, url, &opts.known_hosts)?;
    timing.mark("host key check");

    let user = url.user.clone().unwrap_or_else(crate::os::current_user);
    authenticate(&session, &user, opts.key.as_deref())
        .map_err(|e| e.context(format!("{where_}: login as {user}")))?;
    timing.mark("auth");
    Ok(session)
}

fn verify_host_key(session: &Session, url: &SshUrl, known_hosts: &Path) -> Result<()> {
    let (key, key_type) = session
        .host_key()
        .ok_or_else(|| Error::unavailable("the server sent no host key"))?;
    let fingerprint = session
        .host_key_hash(HashType::Sha256)
        .map(|h| {
            format!(
                "SHA256:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
            )
        })
        .unwrap_or_default();
    let type_name = key_type_name(key_type);
    let host_pattern = host_pattern(&url.host, url.port);
    let mut kh = session
        .known_hosts()
        .map_err(|e| ssh_err("known_hosts", e))?;
    if known_hosts.exists() {
        kh.read_file(known_hosts, KnownHostFileKind::OpenSSH)
            .map_err(|e| {
                ssh_err(format!("reading {}", known_hosts.display()), e)
                    .with_hint("Fix or remove the malformed line.")
            })?;
    }
    let short_type = type_name
        .trim_start_matches("ssh-")
        .split('-')
        .next()
        .unwrap_or(type_name);
    // The exact pattern OpenSSH writes and reads: `host` for port 22, `[host]:port` otherwise.
    // (libssh2's check_port would also accept a plain `host` entry for any port.)
    let known_text = std::fs::read_to_string(known_hosts).unwrap_or_default();
    let known_types = known_key_types(&known_text, &url.host, url.port);
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);
    if revoked(&known_text, &url.host, url.port, type_name, &key_b64) {
        return Err(Error::conflict(format!(
            "SSH host {host_pattern} presented the {type_name} key {fingerprint}, which {} marks \
             @revoked; refusing to connect",
            known_hosts.display()
        ))
        .with_hint("A revoked key must not be trusted again: ask the server's administrator for its new key."));
    }
    match kh.check(&host_pattern, key) {
        CheckResult::Match => Ok(()),
        // libssh2 compares with keys of every type: a key of a type known_hosts has none of for
        // this host is not a changed key, but one that cannot be checked.
        CheckResult::Mismatch if !known_types.contains(&type_name) => Err(Error::conflict(format!(
            "SSH host {host_pattern} presented a {type_name} key {fingerprint}, and {} holds only \
             {} keys for it: walship cannot check this one and never trusts a key on first use",
            known_hosts.display(),
            known_types.join(", ")
        ))
        .with_hint(format!(
            "Compare the fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_{short_type}_key.pub` on \
             the server, then run: ssh-keyscan -p {port} -t {short_type} {host} >> {kh}",
            kh = known_hosts.display(),
            port = url.port,
            host = url.host
        ))),
        CheckResult::Mismatch => Err(Error::conflict(format!(
            "HOST KEY CHANGED for {host_pattern}: the server presented {type_name} {fingerprint}, which \
             differs from the key in {}; refusing to connect (this could be a man-in-the-middle)",
            known_hosts.display()
        ))
        .with_hint(format!(
            "If the server's key was replaced on purpose, check the new fingerprint with its \
             administrator, then run: ssh-keygen -R '{host_pattern}' -f {kh} && ssh-keyscan -p {port} -t {short_type} {host} >> {kh}",
            kh = known_hosts.display(),
            port = url.port,
            host = url.host
        ))),
        CheckResult::NotFound | CheckResult::Failure => Err(Error::conflict(format!(
            "unknown SSH host {host_pattern}: its {type_name} key {fingerprint} is not in {}; \
             walship never trusts a host key on first use",
            known_hosts.display()
        ))
        .with_hint(format!(
            "Compare the fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_{short_type}_key.pub` on \
             the server, then run: ssh-keyscan -p {port} -t {short_type} {host} >> {kh}",
            kh = known_hosts.display(),
            port = url.port,
            host = url.host
        ))),
    }
}

fn authenticate(session: &Session, user: &str, key: Option<&Path>) -> Result<()> {
    if let Some(key) = key {
        if !key.exists() {
            return Err(Error::usage(format!(
                "SSH key {} does not exist",
                key.display()
            )));
        }
        return session
            .userauth_pubkey_file(user, None, key, None)
            .map_err(|e| ssh_err(format!("public key {} was refused", key.display()), e)
                .with_hint("Add the matching .pub line to the user's authorized_keys on the server; encrypted keys need ssh-agent."));
    }
    let mut tried = Vec::new();
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if session.userauth_agent(user).is_ok() {
            return Ok(());
        }
        tried.push("ssh-agent".to_string());
    }
    let home = crate::os::home_dir();
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        let path = home.join(".ssh").join(name);
        if path.exists() {
            if session
                .userauth_pubkey_file(user, None, &path, None)
                .is_ok()
            {
                return Ok(());
            }
            tried.push(path.display().to_string());
        }
    }
    Err(Error::unavailable(format!(
        "no key was accepted (tried: {})",
        if tried.is_empty() { "none found".to_string() } else { tried.join(", ") }
    ))
    .with_hint("Set ssh_key (or WALSHIP_SSH_KEY) to a private key whose public half is in the server's authorized_keys."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<SshUrl> {
        SshUrl::parse(s.strip_prefix("ssh://").unwrap(), s)
    }

    #[test]
    fn parses_urls() {
        let u = url("ssh://postgres@backup.example:2222/var/lib/walship/").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str(), u.port, u.path.as_str()),
            (Some("postgres"), "backup.example", 2222, "/var/lib/walship")
        );
        let u = url("ssh://[::1]:2200/r").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 2200));
        assert_eq!(url("ssh://h/r").unwrap().port, 22);
        for bad in [
            "ssh://h",
            "ssh://h/",
            "ssh://@h/r",
            "ssh://h:0/r",
            "ssh://h:99999/r",
            "ssh://h:x/r",
            "ssh:///r",
            "ssh://h/a/../b",
            "ssh://[::1/r",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }

    /// A hashed known_hosts line for `pattern`, as `ssh-keyscan -H` writes it.
    fn hashed(pattern: &str, salt: &[u8], rest: &str) -> String {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let hash = crate::hashing::hmac_sha1(salt, pattern.as_bytes());
        format!("|1|{}|{} {rest}\n", b64.encode(salt), b64.encode(hash))
    }

    #[test]
    fn hashed_known_hosts_lines_are_matched_and_their_key_types_preferred() {
        let kh = hashed(
            "[127.0.0.1]:2222",
            b"01234567890123456789",
            "ecdsa-sha2-nistp256 AAAA",
        );
        assert_eq!(
            known_key_types(&kh, "127.0.0.1", 2222),
            ["ecdsa-sha2-nistp256"]
        );
        assert!(
            host_key_preference(&kh, "127.0.0.1", 2222)
                .starts_with("ecdsa-sha2-nistp256,ssh-ed25519,")
        );
        // the same host on another port, another host, and a damaged hash match nothing
        assert!(known_key_types(&kh, "127.0.0.1", 22).is_empty());
        assert!(known_key_types(&kh, "127.0.0.2", 2222).is_empty());
        assert!(known_key_types("|1|!!|?? ssh-ed25519 AAAA\n|1|x\n", "h", 22).is_empty());
        // mixed: plain lines, hashed lines of other hosts, markers, in file order
        let mixed = format!(
            "# c\n{}other ssh-ed25519 AAAA\n@revoked [127.0.0.1]:2222 ssh-ed25519 AAAA\n{}[127.0.0.1]:2222,h2 ssh-rsa AAAA\n{}",
            hashed("other", b"salt-of-other-host!!", "ssh-ed25519 AAAA"),
            hashed(
                "[127.0.0.1]:2222",
                b"another-salt-here-20",
                "ecdsa-sha2-nistp384 AAAA"
            ),
            kh
        );
        assert_eq!(
            known_key_types(&mixed, "127.0.0.1", 2222),
            ["ecdsa-sha2-nistp384", "ssh-rsa", "ecdsa-sha2-nistp256"]
        );
        assert!(host_key_preference(&mixed, "127.0.0.1", 2222).starts_with(
            "ecdsa-sha2-nistp384,rsa-sha2-512,rsa-sha2-256,ssh-rsa,ecdsa-sha2-nistp256,ssh-ed25519"
        ));
    }

    #[test]
    fn revoked_keys_are_found_by_name_hash_wildcard_and_negation() {
        let kh = format!(
            "@revoked *.example,!safe.example ssh-ed25519 KEY1\n{}@revoked [127.0.0.1]:2?22 ssh-rsa KEY3\n",
            hashed(
                "[127.0.0.1]:2222",
                b"01234567890123456789",
                "ssh-ed25519 KEY2"
            )
            .replace("|1|", "@revoked |1|")
        );
        assert!(revoked(&kh, "db.example", 22, "ssh-ed25519", "KEY1"));
        assert!(!revoked(&kh, "safe.example", 22, "ssh-ed25519", "KEY1"));
        assert!(!revoked(&kh, "db.example", 22, "ssh-ed25519", "KEY2"));
        assert!(!revoked(
            &kh,
            "db.example",
            22,
            "ecdsa-sha2-nistp256",
            "KEY1"
        ));
        assert!(revoked(&kh, "127.0.0.1", 2222, "ssh-ed25519", "KEY2"));
        assert!(revoked(&kh, "127.0.0.1", 2322, "ssh-rsa", "KEY3"));
        assert!(!revoked(&kh, "127.0.0.1", 2222, "ssh-ed25519", "KEY1"));
        // a revoked line never counts as a known key either
        assert!(known_key_types(&kh, "127.0.0.1", 2222).is_empty());
    }

    #[test]
    fn prefers_the_key_types_known_hosts_has() {
        let kh = "# comment\n[127.0.0.1]:2222 ecdsa-sha2-nistp256 AAAA\nother ssh-ed25519 AAAA\n";
        assert!(
            host_key_preference(kh, "127.0.0.1", 2222)
                .starts_with("ecdsa-sha2-nistp256,ssh-ed25519,")
        );
        assert!(host_key_preference(kh, "other", 22).starts_with("ssh-ed25519,"));
        let rsa = "h ssh-rsa AAAA\n";
        assert!(
            host_key_preference(rsa, "h", 22)
                .starts_with("rsa-sha2-512,rsa-sha2-256,ssh-rsa,ssh-ed25519")
        );
    }
}
