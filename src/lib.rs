//! walship: PostgreSQL WAL archiving, log shipping and standby tooling.
//!
//! Layers, from the bottom:
//! - [`storage`]: where bytes live (a local directory, an SSH host), with atomic, durable,
//!   no-clobber writes behind one trait;
//! - [`repo`]: the repository format of FORMAT.md on top of any storage (identity file, objects
//!   with checksummed headers);
//! - [`pg`]: everything about PostgreSQL (WAL names and headers, local clusters);
//! - [`compress`]: zstd / bzip2 / none as stream filters;
//! - [`transfer`]: the per-file workers (push one file, fetch one file), hashing on a helper
//!   thread ([`hashing`]);
//! - [`backup`]: base backups as a checked stream (basebackup writes it, restore reads it);
//! - [`spool`]: where background workers (push-ahead, prefetch) and foreground calls meet;
//! - [`commands`]: orchestration of each command; [`cli`] and [`config`]: flags and settings.

pub mod backup;
pub mod cli;
pub mod commands;
pub mod compress;
pub mod config;
pub mod error;
pub mod hashing;
pub mod hooks;
pub mod os;
pub mod pg;
pub mod pool;
pub mod progress;
pub mod repo;
pub mod spool;
pub mod storage;
pub mod transfer;

pub use error::{Error, Kind, Result};

/// `eprintln!` that never panics. walship's stderr is often a file on a disk that may be full (a
/// worker's log in pg_wal, PostgreSQL's log): `eprintln!` panics when the write fails, and with
/// `panic = "abort"` a clean "no space left" failure would become an abort that leaves its
/// temporaries behind (found by the full-pg_wal drill). A message that cannot be written is
/// dropped.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
