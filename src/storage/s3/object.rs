//! Reading and writing one object: a GET's body read as it arrives, and a new object kept
//! whole (or streamed in parts) until its commit publishes it with a conditional create.

use std::io::{self, Read, Seek, SeekFrom, Write};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart};

use super::auth::s3_error;
use super::{PART, S3Storage, SINGLE_PUT_MAX, SPILL};
use crate::error::{Error, Result};
use crate::storage::{NewObject, Publish};

/// A GET's body, read as it arrives.
pub(super) struct S3Reader<'a> {
    pub(super) storage: &'a S3Storage,
    pub(super) stream: BoxStream<'static, object_store::Result<Bytes>>,
    pub(super) chunk: Bytes,
}

impl Read for S3Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.storage.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

pub(super) enum Body {
    Memory(Vec<u8>),
    /// A headered object that outgrew [`SPILL`].
    Spilled(std::fs::File),
    /// A stream that outgrew one part: a multipart upload to the final name, under way.
    Parts(Box<WriteMultipart>),
}

/// An object being written: nothing is visible in the store until commit.
pub(super) struct S3Object<'a> {
    pub(super) storage: &'a S3Storage,
    pub(super) path: String,
    pub(super) header_len: usize,
    pub(super) body: Body,
}

impl Write for S3Object<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.body {
            Body::Memory(v) => {
                v.extend_from_slice(data);
                if self.header_len > 0 && v.len() > SPILL {
                    let mut f = tempfile::tempfile()?;
                    f.write_all(v)?;
                    self.body = Body::Spilled(f);
                } else if self.header_len == 0 && v.len() > PART {
                    let upload = self
                        .storage
                        .rt
                        .block_on(
                            self.storage
                                .store
                                .put_multipart(&self.storage.key(&self.path)),
                        )
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    let mut w = Box::new(WriteMultipart::new_with_chunk_size(upload, PART));
                    let _guard = self.storage.rt.enter();
                    w.write(v);
                    self.body = Body::Parts(w);
                }
                Ok(data.len())
            }
            Body::Spilled(f) => f.write(data),
            Body::Parts(w) => {
                let rt = &self.storage.rt;
                rt.block_on(w.wait_for_capacity(2))
                    .map_err(|e| io::Error::other(e.to_string()))?;
                let _guard = rt.enter();
                w.write(data);
                Ok(data.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for S3Object<'_> {
    fn write_header(&mut self, header: &[u8]) -> io::Result<()> {
        assert_eq!(header.len(), self.header_len, "the reserved header length");
        match &mut self.body {
            Body::Memory(v) => v[..header.len()].copy_from_slice(header),
            Body::Spilled(f) => {
                use std::os::unix::fs::FileExt;
                f.write_all_at(header, 0)?
            }
            Body::Parts(_) => unreachable!("a headered object is never uploaded in parts"),
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<Publish> {
        let s = self.storage;
        let what = s.what(&self.path);
        let key = s.key(&self.path);
        match std::mem::replace(&mut self.body, Body::Memory(Vec::new())) {
            Body::Memory(v) => {
                match s.rt.block_on(s.store.put_opts(
                    &key,
                    PutPayload::from(v),
                    PutMode::Create.into(),
                )) {
                    Ok(_) => Ok(Publish::Created),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(Publish::AlreadyExists),
                    Err(e) => Err(s3_error(&what, "writing", e)),
                }
            }
            Body::Spilled(mut f) => {
                let len = f
                    .seek(SeekFrom::End(0))
                    .map_err(|e| Error::io(format!("writing {what}"), e))?;
                if len > SINGLE_PUT_MAX {
                    return s.publish_large(&self.path, &mut f);
                }
                let mut v = Vec::with_capacity(len as usize);
                f.seek(SeekFrom::Start(0))
                    .and_then(|_| f.read_to_end(&mut v))
                    .map_err(|e| Error::io(format!("writing {what}"), e))?;
                self.body = Body::Memory(v);
                self.commit()
            }
            Body::Parts(w) => {
                // object_store cannot complete a multipart upload conditionally: the name must
                // be free now (a backup's claim made it this writer's).
                if s.head(&self.path)?.is_some() {
                    s.rt.block_on(w.abort()).ok();
                    return Ok(Publish::AlreadyExists);
                }
                s.rt.block_on(w.finish())
                    .map(|_| Publish::Created)
                    .map_err(|e| s3_error(&what, "writing", e))
            }
        }
    }
}

impl Drop for S3Object<'_> {
    fn drop(&mut self) {
        // An upload that was never committed is aborted, so that no part lingers (a store's
        // lifecycle rule AbortIncompleteMultipartUpload catches one a killed writer left).
        if let Body::Parts(w) = std::mem::replace(&mut self.body, Body::Memory(Vec::new())) {
            let _ = self.storage.rt.block_on(w.abort());
        }
    }
}
