//! SHA-256 on a helper thread. The per-file workers hand each chunk over after compressing or
//! writing it, so hashing (about 11 ms per 16 MiB segment here) overlaps the rest of the work
//! instead of adding to it. Buffers travel back for reuse, so no chunk is allocated twice.
//! And SHA-1 with HMAC, which only OpenSSH's hashed known_hosts lines need.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// What a [`HashPipe`] computes: the SHA-256 of the original bytes, or (an encrypted
/// repository, `crate::crypto`) a keyed digest that says nothing about them without the key.
pub enum Digester {
    Sha256(Sha256),
    Keyed(Hmac<Sha256>),
}

impl Digester {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Digester::Sha256(h) => h.update(data),
            Digester::Keyed(m) => m.update(data),
        }
    }

    pub fn finish(self) -> [u8; 32] {
        match self {
            Digester::Sha256(h) => h.finalize().into(),
            Digester::Keyed(m) => m.finalize().into_bytes().into(),
        }
    }
}

pub struct HashPipe {
    chunks: Option<SyncSender<Vec<u8>>>,
    returned: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<(u64, [u8; 32])>>,
    chunk_size: usize,
}

impl HashPipe {
    /// A thread that cannot be started (a task limit such as systemd's TasksMax) is an
    /// "unavailable" error, never a panic: with panic = abort, a restore_command dying of a
    /// signal stops recovery.
    pub fn new(chunk_size: usize) -> crate::error::Result<HashPipe> {
        HashPipe::with(chunk_size, Digester::Sha256(Sha256::new()))
    }

    /// A pipe computing `digester` instead of plain SHA-256.
    pub fn with(chunk_size: usize, digester: Digester) -> crate::error::Result<HashPipe> {
        // Two chunks in flight: enough to overlap, little memory (2 x chunk_size).
        let (chunks, rx) = sync_channel::<Vec<u8>>(2);
        let (back, returned) = sync_channel::<Vec<u8>>(4);
        let worker = std::thread::Builder::new()
            .name("walship-sha256".into())
            .spawn(move || {
                let mut hasher = digester;
                let mut len = 0u64;
                for buf in rx {
                    hasher.update(&buf);
                    len += buf.len() as u64;
                    let _ = back.try_send(buf);
                }
                (len, hasher.finish())
            })
            .map_err(|e| crate::error::Error::io("starting the hashing thread", e))?;
        Ok(HashPipe {
            chunks: Some(chunks),
            returned,
            worker: Some(worker),
            chunk_size,
        })
    }

    /// An empty buffer of `chunk_size` capacity, reused when the hasher has returned one.
    pub fn buffer(&self) -> Vec<u8> {
        let mut b = self
            .returned
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.chunk_size));
        b.clear();
        b
    }

    /// Hand a chunk to the hasher (in order).
    pub fn send(&self, chunk: Vec<u8>) {
        if let Some(tx) = &self.chunks {
            // The worker only stops when the sender is dropped, so this cannot fail.
            let _ = tx.send(chunk);
        }
    }

    /// Length and digest of everything sent.
    pub fn finish(mut self) -> (u64, [u8; 32]) {
        drop(self.chunks.take());
        self.worker
            .take()
            .expect("finish once")
            .join()
            .expect("the hashing thread does not panic")
    }
}

impl Drop for HashPipe {
    fn drop(&mut self) {
        drop(self.chunks.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// SHA-1, for one use only: matching OpenSSH's hashed known_hosts entries (`|1|salt|hash`, see
/// [`hmac_sha1`]). Never for the integrity of anything walship stores (that is SHA-256).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64).wrapping_mul(8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104): how OpenSSH hashes a host name in known_hosts, keyed with the line's salt.
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(data);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_sha256_of_the_concatenation() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pipe = HashPipe::new(1 << 20).unwrap();
        for chunk in data.chunks(1 << 20) {
            let mut b = pipe.buffer();
            b.extend_from_slice(chunk);
            pipe.send(b);
        }
        let (len, sha) = pipe.finish();
        assert_eq!(len, data.len() as u64);
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&data)));
    }

    #[test]
    fn sha1_and_hmac_sha1_match_their_published_test_vectors() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(&sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        // RFC 2202, cases 1, 2 and 6 (a key longer than a block)
        assert_eq!(
            hex(&hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(&hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }
}
