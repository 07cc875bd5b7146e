//! Encryption at rest (FORMAT.md, "Encryption"): the repository's keys, and the sealed stream
//! every encrypted object's payload is.
//!
//! A key is 32 random bytes, written as 64 hexadecimal digits. walship never uses it directly:
//! three subkeys are derived from it with HMAC-SHA256 (one per purpose, so that no output of one
//! use can be replayed in another): the key id (public, names the key in headers and in the
//! identity file), the sealing key (XChaCha20-Poly1305) and the content key (the keyed digest
//! that answers "already archived with the same content?" without a plain digest of the data).
//!
//! A sealed stream is a 19-byte random nonce prefix followed by chunks: each chunk is at most
//! [`CHUNK`] bytes of plaintext encrypted with XChaCha20-Poly1305 under the nonce prefix, the
//! chunk's 32-bit big-endian position and a last-chunk flag (the STREAM construction of Hoang,
//! Reyhanitabar, Rogaway and Vizár, as RustCrypto's `aead-stream` implements it), plus its
//! 16-byte tag. Every chunk but the last holds exactly [`CHUNK`] bytes; the last holds fewer
//! (possibly none), so a reader knows the end from the length alone and a truncation, a
//! reordering or a dropped chunk fails authentication. Each chunk authenticates the caller's
//! associated data too (the object header's fixed fields, or a backup object's path), so a
//! stream cannot be moved under another name. Memory is one chunk.
//!
//! The cryptography is RustCrypto's (`chacha20poly1305`, `aead-stream`, `hmac`): reviewed crates,
//! not hand-made primitives. XChaCha20's 192-bit nonce makes random nonce prefixes safe for any
//! number of objects under one key.
//!
//! A key that cannot be had (a missing or unreadable key file, a key command that fails or
//! prints garbage) is `Kind::Conflict`, exit 4, like a wrong key: never "not in the archive".

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::os::read_full;
use crate::units::hex;

/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// The Poly1305 tag after every chunk.
pub const TAG_LEN: usize = 16;
/// The random nonce prefix at the start of every sealed stream.
pub const NONCE_PREFIX_LEN: usize = 19;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Bytes of the keyed content digest kept in an object header.
pub const CONTENT_MAC_LEN: usize = 24;
/// The scheme's name in the identity file.
pub const SCHEME: &str = "xchacha20poly1305-stream";

/// One repository key, as the subkeys walship uses.
#[derive(Clone)]
pub struct Key {
    id: [u8; KEY_ID_LEN],
    seal: [u8; 32],
    content: [u8; 32],
}

// Never print key material, even in a debug dump.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id_hex())
    }
}

fn derive(master: &[u8; 32], label: &str) -> [u8; 32] {
    let mut m =
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(master).expect("HMAC takes any key length");
    m.update(label.as_bytes());
    m.finalize().into_bytes().into()
}

impl Key {
    pub fn from_bytes(master: &[u8; 32]) -> Key {
        let id = derive(master, "walship key id v1");
        Key {
            id: id[..KEY_ID_LEN].try_into().expect("8 bytes"),
            seal: derive(master, "walship sealing key v1"),
            content: derive(master, "walship content digest key v1"),
        }
    }

    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }

    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// A keyed digest of content: HMAC-SHA256 under the content key.
    pub fn content_mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.content)
            .expect("HMAC takes any key length")
    }

    fn stream(&self, nonce: &[u8; NONCE_PREFIX_LEN]) -> StreamBE32<XChaCha20Poly1305> {
        let cipher = XChaCha20Poly1305::new(&self.seal.into());
        StreamBE32::from_aead(cipher, &(*nonce).into())
    }
}

/// The keys a configuration supplies: the first is current (new objects are sealed under it),
/// the others only open what was sealed under them (rotation).
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// Parse what a key file holds or a key command prints: one key per line, 64 hexadecimal
    /// digits each (as `openssl rand -hex 32` prints them), the current key first. Blank lines
    /// and lines starting with `#` are ignored. `what` names the source in messages, which
    /// never quote a line (it may be a key).
    pub fn parse(text: &str, what: &str) -> Result<Keyring> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = parse_hex_key(line).ok_or_else(|| {
                Error::conflict(format!(
                    "{what}, line {}: not a key (a key is 64 hexadecimal digits, as `openssl rand -hex 32` or `walship keygen` prints one)",
                    i + 1
                ))
            })?;
            let key = Key::from_bytes(&bytes);
            if !keys.iter().any(|k| k.id == key.id) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(Error::conflict(format!("{what} holds no key")).with_hint(
                "Generate one with `walship keygen --output FILE` (or `openssl rand -hex 32`) and keep a copy \
                 somewhere safe: without it the repository cannot be read.",
            ));
        }
        Ok(Keyring { keys })
    }

    pub fn current(&self) -> &Key {
        &self.keys[0]
    }

    pub fn get(&self, id: &[u8; KEY_ID_LEN]) -> Option<&Key> {
        self.keys.iter().find(|k| &k.id == id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(Key::id_hex).collect()
    }
}

fn parse_hex_key(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A keyed digest as an object header records it: its first [`CONTENT_MAC_LEN`] bytes, the rest
/// zero. Writers and readers compare digests in this form.
pub fn recorded_mac(mut mac: [u8; 32]) -> [u8; 32] {
    mac[CONTENT_MAC_LEN..].fill(0);
    mac
}

/// A new random key, as 64 hexadecimal digits.
pub fn generate_key() -> Result<String> {
    let mut k = [0u8; 32];
    random(&mut k)?;
    Ok(hex(&k))
}

fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf)
        .map_err(|e| Error::unavailable(format!("the system's random number generator: {e}")))
}

/// Read a key file. Refused when group or others may read it, as ssh refuses a private key.
pub fn load_key_file(path: &Path) -> Result<Keyring> {
    use std::os::unix::fs::PermissionsExt;
    let what = format!("encryption key file {}", path.display());
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::conflict(format!("{what}: {e}")).with_hint(KEY_HINT))?;
    if !meta.is_file() {
        return Err(Error::conflict(format!("{what} is not a regular file")));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::conflict(format!(
            "{what} is readable by group or others (mode {:o})",
            meta.permissions().mode() & 0o777
        ))
        .with_hint(format!("chmod 600 {}", path.display())));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::conflict(format!("{what}: {e}")).with_hint(KEY_HINT))?;
    Keyring::parse(&text, &what)
}

const KEY_HINT: &str = "encryption_key_file names the file that holds the repository's key (64 hexadecimal \
                        digits); without it nothing in an encrypted repository can be read or written.";

/// How long a key command may take: a vault or KMS that does not answer must not hang
/// restore_command for ever.
pub const KEY_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Run `encryption_key_command` with `sh -c` and read the keys it prints on standard output.
/// Its standard error goes to walship's; a failure, a timeout or garbage is an error naming the
/// command's exit, never the output (which may hold a key).
pub fn run_key_command(command: &str, timeout: Duration) -> Result<Keyring> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let what = "encryption_key_command";
    // Its own process group, as hooks run: a timeout kills what the shell started too.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::unavailable(format!("starting {what}: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::Builder::new()
        .name("walship-key-command".into())
        .spawn(move || {
            let mut out = Vec::new();
            // A key line is 65 bytes: a command printing megabytes is broken.
            let _ = (&mut stdout).take(64 * 1024).read_to_end(&mut out);
            out
        })
        .map_err(|e| Error::io(format!("running {what}"), e))?;
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() >= deadline => {
                crate::os::signal(-(child.id() as i32), libc::SIGKILL);
                let _ = child.wait();
                return Err(Error::unavailable(format!(
                    "{what} did not finish within {} s",
                    timeout.as_secs()
                ))
                .with_hint(
                    "It was killed. Check that the vault or key service it asks is reachable.",
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Error::io(format!("waiting for {what}"), e)),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(Error::conflict(format!("{what} failed ({status})"))
            .with_hint("It must print the repository's key (64 hexadecimal digits) and exit 0."));
    }
    let text = String::from_utf8(out)
        .map_err(|_| Error::conflict(format!("{what} printed something that is not text")))?;
    Keyring::parse(&text, what)
}

/// Seals what is written into chunks (see the module docs) and writes them to `inner`.
/// `finish` must be called: it writes the last chunk, without which the stream does not
/// authenticate.
pub struct SealWriter<W: Write> {
    inner: W,
    stream: StreamBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
    buf: Vec<u8>,
    position: u32,
}

impl<W: Write> SealWriter<W> {
    /// Start a sealed stream under `key`, authenticating `aad` in every chunk. Writes the nonce
    /// prefix at once.
    pub fn new(mut inner: W, key: &Key, aad: &[u8]) -> io::Result<SealWriter<W>> {
        let mut nonce = [0u8; NONCE_PREFIX_LEN];
        random(&mut nonce).map_err(|e| io::Error::other(e.message))?;
        inner.write_all(&nonce)?;
        Ok(SealWriter {
            inner,
            stream: key.stream(&nonce),
            aad: aad.to_vec(),
            buf: Vec::with_capacity(CHUNK + TAG_LEN),
            position: 0,
        })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        self.stream
            .encrypt_in_place(self.position, last, &self.aad, &mut self.buf)
            .map_err(|_| io::Error::other("encryption failed"))?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.position = self
            .position
            .checked_add(1)
            .ok_or_else(|| io::Error::other("a sealed stream holds at most 2^32 chunks"))?;
        Ok(())
    }

    /// Seal the last chunk and hand back the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        // A full chunk is never the last: the last one is always shorter (see the module docs).
        if self.buf.len() == CHUNK {
            self.seal(false)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a sealed stream chunk by chunk, handing out only bytes that authenticated. A chunk
/// that does not (altered bytes, the wrong key, a truncated or reordered stream) is an
/// `InvalidData` error whose message says so; an error of `inner` passes through unchanged.
pub struct OpenReader<R: Read> {
    inner: R,
    stream: Option<StreamBE32<XChaCha20Poly1305>>,
    key: Key,
    aad: Vec<u8>,
    buf: Vec<u8>,
    at: usize,
    position: u32,
    done: bool,
}

/// The message of a chunk that failed authentication (matched by readers to say "tampered").
pub const AUTH_FAILED: &str = "failed authentication";

impl<R: Read> OpenReader<R> {
    pub fn new(inner: R, key: &Key, aad: &[u8]) -> OpenReader<R> {
        OpenReader {
            inner,
            stream: None,
            key: key.clone(),
            aad: aad.to_vec(),
            buf: Vec::with_capacity(CHUNK + TAG_LEN),
            at: 0,
            position: 0,
            done: false,
        }
    }

    /// The reader under the stream (to read what follows it, if anything).
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let mut nonce = [0u8; NONCE_PREFIX_LEN];
            if read_full(&mut self.inner, &mut nonce)? != NONCE_PREFIX_LEN {
                return Err(invalid("the sealed stream is shorter than its nonce"));
            }
            self.stream = Some(self.key.stream(&nonce));
        }
        self.buf.resize(CHUNK + TAG_LEN, 0);
        let n = read_full(&mut self.inner, &mut self.buf)?;
        self.buf.truncate(n);
        if n < TAG_LEN {
            return Err(invalid(&format!(
                "chunk {} is truncated: the sealed stream ends before its last chunk",
                self.position
            )));
        }
        let last = n < CHUNK + TAG_LEN;
        let stream = self.stream.as_ref().expect("set above");
        stream
            .decrypt_in_place(self.position, last, &self.aad, &mut self.buf)
            .map_err(|_| {
                invalid(&format!(
                    "chunk {} {AUTH_FAILED}: the stored bytes were altered, or were sealed for another name",
                    self.position
                ))
            })?;
        self.position += 1;
        self.at = 0;
        self.done = last;
        Ok(())
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    fn key(s: &str) -> Key {
        Keyring::parse(s, "test").unwrap().current().clone()
    }

    fn seal(data: &[u8], k: &Key, aad: &[u8]) -> Vec<u8> {
        let mut w = SealWriter::new(Vec::new(), k, aad).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn open(sealed: &[u8], k: &Key, aad: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        OpenReader::new(sealed, k, aad).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_chunk_boundary() {
        let k = key(K1);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = seal(&data, &k, b"name");
            assert_eq!(
                sealed.len(),
                NONCE_PREFIX_LEN + len + (len / CHUNK + 1) * TAG_LEN
            );
            assert_eq!(open(&sealed, &k, b"name").unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn every_alteration_fails_authentication() {
        let k = key(K1);
        let data = vec![42u8; 2 * CHUNK + 100];
        let sealed = seal(&data, &k, b"name");
        let auth = |r: io::Result<Vec<u8>>| {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            e.to_string()
        };
        // a flipped byte anywhere: nonce, first chunk, a tag, the last chunk
        for i in [
            0,
            NONCE_PREFIX_LEN,
            NONCE_PREFIX_LEN + CHUNK + 3,
            sealed.len() - 1,
        ] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                auth(open(&bad, &k, b"name")).contains(AUTH_FAILED),
                "byte {i}"
            );
        }
        // another name, another key
        assert!(auth(open(&sealed, &k, b"other")).contains(AUTH_FAILED));
        assert!(auth(open(&sealed, &key(K2), b"name")).contains(AUTH_FAILED));
        // truncated at a chunk boundary (the last chunk dropped), or inside a chunk
        let chunk = CHUNK + TAG_LEN;
        assert!(open(&sealed[..NONCE_PREFIX_LEN + 2 * chunk], &k, b"name").is_err());
        assert!(open(&sealed[..NONCE_PREFIX_LEN + chunk + 5], &k, b"name").is_err());
        assert!(open(&sealed[..NONCE_PREFIX_LEN + 3], &k, b"name").is_err());
        // two chunks swapped
        let mut swapped = sealed.clone();
        let (a, b) = (NONCE_PREFIX_LEN, NONCE_PREFIX_LEN + chunk);
        let first = sealed[a..b].to_vec();
        swapped[a..b].copy_from_slice(&sealed[b..b + chunk]);
        swapped[b..b + chunk].copy_from_slice(&first);
        assert!(auth(open(&swapped, &k, b"name")).contains(AUTH_FAILED));
    }

    #[test]
    fn two_seals_of_the_same_bytes_differ() {
        let k = key(K1);
        assert_ne!(seal(b"same", &k, b""), seal(b"same", &k, b""));
    }

    #[test]
    fn keys_parse_as_openssl_prints_them_and_never_echo() {
        let ring = Keyring::parse(&format!("# rotated 2026\n{K2}\n\n{K1}\n"), "f").unwrap();
        assert_eq!(ring.ids().len(), 2);
        assert_eq!(ring.current().id_hex(), key(K2).id_hex());
        assert!(ring.get(&key(K1).id()).is_some());
        for bad in [
            "",
            "# only a comment\n",
            &K1[..63],
            &format!("{K1}0"),
            &K1.replace('0', "g"),
        ] {
            let e = Keyring::parse(bad, "the file").unwrap_err();
            assert!(!e.to_string().contains(&K1[..20]), "{e}");
        }
        assert_ne!(key(K1).id_hex(), key(K2).id_hex());
        assert!(!format!("{:?}", key(K1)).contains("0102"));
        assert_eq!(generate_key().unwrap().len(), 64);
        Keyring::parse(&generate_key().unwrap(), "generated").unwrap();
    }

    #[test]
    fn key_commands_that_fail_hang_or_print_garbage_are_errors() {
        let ok = run_key_command(&format!("echo {K1}"), KEY_COMMAND_TIMEOUT).unwrap();
        assert_eq!(ok.current().id_hex(), key(K1).id_hex());
        let e = run_key_command("exit 255", KEY_COMMAND_TIMEOUT).unwrap_err();
        assert!(e.message.contains("failed"), "{}", e.message);
        let e = run_key_command("echo not-a-key", KEY_COMMAND_TIMEOUT).unwrap_err();
        assert!(e.message.contains("not a key"), "{}", e.message);
        let e = run_key_command("sleep 30", Duration::from_millis(300)).unwrap_err();
        assert!(e.message.contains("did not finish"), "{}", e.message);
        // regression: a command the shell forks (a vault CLI in a script) outlived the timeout,
        // because only the shell was killed
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let cmd = format!(
            "sh -c 'echo $$ > {}; exec sleep 30'; echo x",
            pidfile.display()
        );
        let e = run_key_command(&cmd, Duration::from_millis(500)).unwrap_err();
        assert!(e.message.contains("did not finish"), "{}", e.message);
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let alive = || {
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .is_ok_and(|s| s.split(") ").nth(1).is_some_and(|r| !r.starts_with('Z')))
        };
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !alive()
        });
        assert!(
            gone,
            "the key command's child {} outlived the timeout",
            pid.trim()
        );
        let e = run_key_command("/nonexistent/vault-cli get key", KEY_COMMAND_TIMEOUT).unwrap_err();
        assert!(e.message.contains("failed"), "{}", e.message);
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{K1}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_key_file(&path).unwrap_err();
        assert!(
            e.message.contains("readable by group or others"),
            "{}",
            e.message
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            load_key_file(&path).unwrap().current().id_hex(),
            key(K1).id_hex()
        );
        let e = load_key_file(&dir.path().join("missing")).unwrap_err();
        assert!(e.message.contains("missing"), "{}", e.message);
    }
}
