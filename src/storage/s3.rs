//! Object storage (`s3://bucket/prefix`): AWS S3 and S3-compatible stores, through the
//! `object_store` crate on a private current-thread tokio runtime behind the synchronous
//! [`Storage`] interface. One runtime per storage, so each repository connection (one per
//! worker thread) drives its own requests.
//!
//! How FORMAT.md's rules map onto a store that has no directories, no rename and no fsync:
//! - **No-clobber publish** is a conditional create (`If-None-Match: *`): an object is uploaded
//!   whole under its final name, and the store refuses it if the name exists. A store that
//!   ignores the condition would overwrite; [`S3Storage::check_conditional_create`] detects one
//!   (the first push and `walship check` run it) and it is refused.
//! - **Durable** is "the store answered the PUT": there is nothing to fsync, and no directory.
//! - **No partial object is ever visible**: a small object is one PUT; a large one is a multipart
//!   upload, which the store shows only once completed (and which is aborted on failure).
//!   Objects with a header known only at the end (WAL objects) are kept whole in memory, or
//!   above [`SPILL`] in an anonymous temporary file, until commit; above [`SINGLE_PUT_MAX`] they
//!   go up as a multipart upload to a temporary name (`.<name>.<random>.tmp`, as FORMAT.md names
//!   writers' temporaries) and are then copied to the final name with a conditional create.
//!   Streams (a base backup's data) go up as they are written, in parts of [`PART`] bytes
//!   (bounded memory); object_store cannot complete a multipart upload conditionally, so their
//!   publish checks the name is free first (the backup's claim, published conditionally before
//!   any of its data, is what makes the name the writer's own).
//! - Errors: throttling and 5xx are retried with backoff by object_store ([`retry()`]), then are
//!   "unavailable" (exit 3). An access denied (S3 answers 403 for a missing key to a caller
//!   without `s3:ListBucket`) is never "absent"; a wrong key, a wrong secret and a clock skew are
//!   told apart in the message.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload,
    RetryConfig, WriteMultipart,
};
use tokio::runtime::Runtime;

mod auth;
mod object;

use super::{DirEntry, NewObject, Publish, Storage, is_temporary, split_path, temp_name};
use crate::error::{Error, Result};
pub use auth::s3_error;
use auth::shared_credentials;
use object::{Body, S3Object, S3Reader};

/// Bytes of a multipart upload's parts, and the most a stream holds in memory.
pub const PART: usize = 8 << 20;
/// Ranged reads under way at once while a large object is read (memory: this many parts).
pub const PARALLEL_READS: usize = 3;
/// A headered object (a WAL object) above this goes to an anonymous temporary file until commit.
pub const SPILL: usize = 32 << 20;
/// A headered object above this is uploaded in parts to a temporary name, then copied.
pub const SINGLE_PUT_MAX: u64 = 64 << 20;

/// `s3://bucket/prefix`, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

impl S3Url {
    /// Parse what follows `s3://`; `repo` is the whole setting, for messages.
    pub fn parse(rest: &str, repo: &str) -> Result<S3Url> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !ok_bucket {
            return Err(Error::usage(format!(
                "repository {repo:?}: {bucket:?} is not an S3 bucket name (3 to 63 lower-case letters, digits, '-' and '.')"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.starts_with('/')
            || prefix
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
                && !prefix.is_empty()
        {
            return Err(Error::usage(format!(
                "repository {repo:?}: the prefix {prefix:?} has an empty, '.' or '..' component"
            )));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// The object-storage settings of the configuration.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `virtual-host` or `path`; default: path when an endpoint is set, else virtual-host.
    pub uri_style: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
    /// Each request's time limit (connect, and a whole request).
    pub timeout: Duration,
}

pub struct S3Storage {
    store: Arc<AmazonS3>,
    rt: Runtime,
    url: S3Url,
}

/// What object_store retries (429, 5xx, transport errors) and for how long, before a call is
/// "unavailable": four times the connection timeout (`ssh_timeout`, which bounds every network
/// wait of walship's), long enough to ride out throttling, short enough that an
/// archive_command returns while PostgreSQL still has room in pg_wal.
pub fn retry(timeout: Duration) -> RetryConfig {
    RetryConfig {
        max_retries: 8,
        retry_timeout: timeout * 4,
        ..Default::default()
    }
}

impl S3Storage {
    pub fn connect(url: &S3Url, opts: &S3Options) -> Result<S3Storage> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the object-storage client", e))?;
        let mut client = ClientOptions::new()
            .with_timeout(opts.timeout.max(Duration::from_secs(30)))
            .with_connect_timeout(opts.timeout);
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| Error::usage(format!("s3_ca_file {}: {e}", ca.display())))?;
            for cert in object_store::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::usage(format!("s3_ca_file {}: {e}", ca.display())))?
            {
                client = client.with_root_certificate(cert);
            }
        }
        // The usual AWS chain: AWS_* variables, web identity, container and instance
        // credentials (object_store), and the shared credentials file (below), which
        // object_store does not read.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .with_client_options(client)
            .with_retry(retry(opts.timeout))
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
        if let Some(r) = &opts.region {
            b = b.with_region(r);
        }
        let path_style = match opts.uri_style.as_deref() {
            Some("path") => true,
            Some("virtual-host") => false,
            Some(other) => {
                return Err(Error::usage(format!(
                    "s3_uri_style {other:?} is not one of virtual-host, path"
                )));
            }
            None => opts.endpoint.is_some(),
        };
        b = b.with_virtual_hosted_style_request(!path_style);
        if let Some(e) = &opts.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::usage(format!(
                    "s3_endpoint {e:?} must start with http:// or https://"
                )));
            }
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && let Some((key, secret, token)) = shared_credentials()?
        {
            b = b.with_access_key_id(key).with_secret_access_key(secret);
            if let Some(t) = token {
                b = b.with_token(t);
            }
        }
        let store = b
            .build()
            .map_err(|e| Error::usage(format!("object storage s3://{}: {e}", url.bucket)))?;
        Ok(S3Storage {
            store: Arc::new(store),
            rt,
            url: url.clone(),
        })
    }

    fn key(&self, path: &str) -> ObjectPath {
        let path = path.trim_matches('/');
        match (self.url.prefix.is_empty(), path.is_empty()) {
            (true, _) => ObjectPath::from(path),
            (false, true) => ObjectPath::from(self.url.prefix.as_str()),
            (false, false) => ObjectPath::from(format!("{}/{path}", self.url.prefix)),
        }
    }

    fn what(&self, path: &str) -> String {
        format!("{}/{path}", self.describe())
    }

    /// Whether the store honours `If-None-Match: *`: a probe object created twice, the second
    /// must be refused. Run by the first push (initializing a repository) and `walship check`.
    pub fn check_conditional_create(&self) -> Result<()> {
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).map_err(|e| Error::unavailable(e.to_string()))?;
        let probe = format!(
            ".walship-conditional-create-{}.tmp",
            crate::units::hex(&name)
        );
        let key = self.key(&probe);
        let put = |body: &'static [u8]| {
            self.rt.block_on(self.store.put_opts(
                &key,
                PutPayload::from_static(body),
                PutMode::Create.into(),
            ))
        };
        put(b"first").map_err(|e| s3_error(&self.what(&probe), "writing", e))?;
        let second = put(b"second");
        let _ = self.rt.block_on(self.store.delete(&key));
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Ok(_) => Err(Error::conflict(format!(
                "{} does not honour conditional creates (If-None-Match: *): it overwrote an object that existed",
                self.describe()
            ))
            .with_hint(
                "walship never overwrites an archived file, and on this store it could not keep that promise. \
                 Use a store that supports conditional writes (AWS S3 since 2024, MinIO, Ceph RGW 18+, R2, Garage 1.0+).",
            )),
            Err(e) => Err(s3_error(&self.what(&probe), "writing", e)),
        }
    }

    fn head(&self, path: &str) -> Result<Option<object_store::ObjectMeta>> {
        match self.rt.block_on(self.store.head(&self.key(path))) {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(&self.what(path), "reading", e)),
        }
    }

    /// Upload `file` (an anonymous temporary file) in parts to a temporary name, then copy it to
    /// `path` with a conditional create and remove the temporary object.
    fn publish_large(&self, path: &str, file: &mut std::fs::File) -> Result<Publish> {
        let (dir, name) = split_path(path);
        let temp = if dir.is_empty() {
            temp_name(name)
        } else {
            format!("{dir}/{}", temp_name(name))
        };
        let temp_key = self.key(&temp);
        let what = self.what(path);
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(format!("uploading {what}"), e))?;
        self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart(&temp_key)
                .await
                .map_err(|e| s3_error(&what, "writing", e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            loop {
                let n = super::read_full(file, &mut buf)
                    .map_err(|e| Error::io(format!("uploading {what}"), e))?;
                if n == 0 {
                    break;
                }
                if let Err(e) = w.wait_for_capacity(2).await {
                    w.abort().await.ok();
                    return Err(s3_error(&what, "writing", e));
                }
                w.write(&buf[..n]);
            }
            w.finish().await.map_err(|e| s3_error(&what, "writing", e))
        })?;
        let copied = self
            .rt
            .block_on(self.store.copy_if_not_exists(&temp_key, &self.key(path)));
        let _ = self.rt.block_on(self.store.delete(&temp_key));
        match copied {
            Ok(()) => Ok(Publish::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Publish::AlreadyExists),
            Err(e) => Err(s3_error(&what, "writing", e)),
        }
    }
}

impl Storage for S3Storage {
    fn describe(&self) -> String {
        if self.url.prefix.is_empty() {
            format!("s3://{}", self.url.bucket)
        } else {
            format!("s3://{}/{}", self.url.bucket, self.url.prefix)
        }
    }

    fn check_root(&self) -> Result<()> {
        // Nothing to ask: the identity file's GET, the next request of every command, fails
        // on a missing bucket or bad credentials, and a bucket without it is never read as an
        // empty archive (Repository::require_identity). A listing here would cost every
        // archive_command a round trip.
        Ok(())
    }

    /// The first part is one ranged GET, which also tells the object's size; an object larger
    /// than a part is read on in ranged GETs of one part each, [`PARALLEL_READS`] under way at
    /// once (a base backup's restore), delivered in order. A WAL object is one request.
    fn open_read(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>> {
        let key = self.key(path);
        let first = GetOptions {
            range: Some(GetRange::Bounded(0..PART as u64)),
            ..Default::default()
        };
        let r = match self.rt.block_on(self.store.get_opts(&key, first)) {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            // an empty object has no first byte to range over (416): read it whole
            Err(_) => match self
                .rt
                .block_on(self.store.get_opts(&key, GetOptions::default()))
            {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(s3_error(&self.what(path), "reading", e)),
            },
        };
        let size = r.meta.size;
        let start = r.range.end;
        let store = Arc::clone(&self.store);
        let rest = futures::stream::iter((start..size).step_by(PART).map(move |at| {
            let store = Arc::clone(&store);
            let key = key.clone();
            async move {
                store
                    .get_range(&key, at..(at + PART as u64).min(size))
                    .await
            }
        }))
        .buffered(PARALLEL_READS);
        Ok(Some(Box::new(S3Reader {
            storage: self,
            stream: r.into_stream().chain(rest).boxed(),
            chunk: Bytes::new(),
        })))
    }

    fn read_prefix(&self, path: &str, len: usize) -> Result<Option<Vec<u8>>> {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(0..len as u64)),
            ..Default::default()
        };
        match self.rt.block_on(async {
            let r = self.store.get_opts(&self.key(path), opts).await?;
            r.bytes().await
        }) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            // an object shorter than the range asked for (an empty one: 416)
            Err(_) => super::read_prefix_of(self, path, len),
        }
    }

    fn create(&self, path: &str) -> Result<Box<dyn NewObject + '_>> {
        Ok(Box::new(S3Object {
            storage: self,
            path: path.to_string(),
            header_len: 0,
            body: Body::Memory(Vec::new()),
        }))
    }

    fn create_with_header(&self, path: &str, header_len: usize) -> Result<Box<dyn NewObject + '_>> {
        Ok(Box::new(S3Object {
            storage: self,
            path: path.to_string(),
            header_len,
            body: Body::Memory(vec![0u8; header_len]),
        }))
    }

    fn make_durable(&self, _path: &str) -> Result<()> {
        // Acknowledged by the store is durable: nothing to sync, no directory.
        Ok(())
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>> {
        Ok(self
            .entries(dir)?
            .into_iter()
            .filter(|e| !is_temporary(&e.name, e.is_dir))
            .collect())
    }

    fn list_temporaries(&self, dir: &str) -> Result<Vec<DirEntry>> {
        Ok(self
            .entries(dir)?
            .into_iter()
            .filter(|e| is_temporary(&e.name, e.is_dir))
            .collect())
    }

    fn remove(&self, path: &str) -> Result<bool> {
        // DELETE answers the same whether the object was there: ask first.
        if self.head(path)?.is_none() {
            return Ok(false);
        }
        self.rt
            .block_on(self.store.delete(&self.key(path)))
            .map_err(|e| s3_error(&self.what(path), "removing", e))?;
        Ok(true)
    }

    fn remove_many(&self, paths: &[String]) -> Result<usize> {
        // DeleteObjects, up to 1,000 keys a request.
        let keys: Vec<object_store::Result<ObjectPath>> =
            paths.iter().map(|p| Ok(self.key(p))).collect();
        let removed = self.rt.block_on(async {
            let mut s = self
                .store
                .delete_stream(futures::stream::iter(keys).boxed());
            let mut n = 0usize;
            while let Some(r) = s.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => n += 1,
                    Err(e) => return Err(s3_error(&self.describe(), "removing objects from", e)),
                }
            }
            Ok(n)
        })?;
        Ok(removed)
    }

    fn remove_dir_if_empty(&self, dir: &str) -> Result<bool> {
        // A "directory" is a key prefix: it is gone when its last object is.
        Ok(self.entries(dir)?.is_empty())
    }

    fn sync_directory(&self, _dir: &str) -> Result<()> {
        Ok(())
    }

    fn check_conditional_create(&self) -> Result<()> {
        S3Storage::check_conditional_create(self)
    }
}

impl S3Storage {
    /// The objects and "directories" (common prefixes) directly under `dir`; every page.
    fn entries(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let prefix = self.key(dir);
        let listing = self
            .rt
            .block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map_err(|e| s3_error(&self.what(dir), "listing", e))?;
        let name_of = |p: &ObjectPath| p.filename().map(str::to_string);
        let mut out = Vec::new();
        for p in listing.common_prefixes {
            if let Some(name) = name_of(&p) {
                out.push(DirEntry {
                    name,
                    is_dir: true,
                    size: 0,
                    modified: None,
                });
            }
        }
        for o in listing.objects {
            if let Some(name) = name_of(&o.location) {
                out.push(DirEntry {
                    name,
                    is_dir: false,
                    size: o.size,
                    modified: Some(o.last_modified.timestamp()),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let u = S3Url::parse("walship-wal/prod/db1/", "s3://walship-wal/prod/db1/").unwrap();
        assert_eq!(u.bucket, "walship-wal");
        assert_eq!(u.prefix, "prod/db1");
        assert_eq!(S3Url::parse("bkt", "s3://bkt").unwrap().prefix, "");
        for bad in [
            "",
            "ab",
            "Upper",
            "a_b/x",
            "-bucket",
            "bucket/a//b",
            "bucket/../x",
        ] {
            assert!(S3Url::parse(bad, bad).is_err(), "{bad}");
        }
    }
}
