//! SHA-256 on a helper thread. The per-file workers hand each chunk over after compressing or
//! writing it, so hashing (about 11 ms per 16 MiB segment here) overlaps the rest of the work
//! instead of adding to it. Buffers travel back for reuse, so no chunk is allocated twice.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

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
        // Two chunks in flight: enough to overlap, little memory (2 x chunk_size).
        let (chunks, rx) = sync_channel::<Vec<u8>>(2);
        let (back, returned) = sync_channel::<Vec<u8>>(4);
        let worker = std::thread::Builder::new()
            .name("walship-sha256".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                let mut len = 0u64;
                for buf in rx {
                    hasher.update(&buf);
                    len += buf.len() as u64;
                    let _ = back.try_send(buf);
                }
                (len, hasher.finalize().into())
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

    /// Length and SHA-256 of everything sent.
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
}
