//! `walship fetch %f %p` (restore_command): fetch, verify, hand over, and choose the exit code
//! PostgreSQL needs.
//!
//! "Not in the archive" is exit 1, quietly. Any other failure is retried a bounded number of times
//! if it may be transient, and then:
//! - on a standby (standby.signal), it exits 1..125: PostgreSQL tries streaming and asks again in
//!   a few seconds, and the error is logged loudly each time;
//! - in plain archive recovery (recovery.signal only), it exits 254: PostgreSQL aborts recovery.
//!   Exit 1 there would end recovery early and open a new timeline without the rest of the WAL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::human_bytes;
use crate::cli::GlobalFlags;
use crate::config::Config;
use crate::error::{Kind, Result};
use crate::pg::WalFileName;
use crate::transfer::{FetchReport, fetch_file};

/// What kind of recovery the server calling us is in, from its signal files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    Standby,
    ArchiveRecovery,
    /// No signal file: not called by a recovering PostgreSQL (a script, a person, a benchmark).
    Unknown,
}

impl RecoveryMode {
    pub fn detect(pgdata: &Path) -> RecoveryMode {
        if pgdata.join("standby.signal").exists() {
            RecoveryMode::Standby
        } else if pgdata.join("recovery.signal").exists() {
            RecoveryMode::ArchiveRecovery
        } else {
            RecoveryMode::Unknown
        }
    }
}

pub fn run(flags: &GlobalFlags, name: &str, dest: &Path) -> Result<()> {
    let pgdata = flags.pgdata.clone().unwrap_or_else(|| PathBuf::from("."));
    let mode = RecoveryMode::detect(&pgdata);
    let mut retries = 0;
    let result = (|| {
        let config = Config::resolve(flags)?;
        retries = config.fetch_retries;
        let name = WalFileName::parse(name)?;
        fetch_with_retries(&config, &name, dest)
    })();
    match result {
        Ok(report) => {
            eprintln!(
                "walship: fetched {name} ({}, {}) in {} ms",
                human_bytes(report.original_bytes),
                report.compression.name(),
                report.elapsed.as_millis()
            );
            Ok(())
        }
        Err(e) if e.kind == Kind::NotFound => Err(e),
        Err(mut e) => {
            let tries = if e.kind == Kind::Unavailable {
                format!(" after {} attempts", retries + 1)
            } else {
                String::new()
            };
            match mode {
                RecoveryMode::Standby => {
                    e.message = format!("{}{tries}; the standby will ask again", e.message);
                }
                RecoveryMode::ArchiveRecovery => {
                    e.message = format!(
                        "{}{tries}; stopping recovery on purpose (exit 254): ending it here would open a new \
                         timeline without the rest of the archive",
                        e.message
                    );
                    e.abort_recovery = true;
                }
                RecoveryMode::Unknown => e.message = format!("{}{tries}", e.message),
            }
            Err(e)
        }
    }
}

fn fetch_with_retries(config: &Config, name: &WalFileName, dest: &Path) -> Result<FetchReport> {
    let mut attempt = 0;
    loop {
        let result = config
            .open_repository()
            .and_then(|repo| fetch_file(&repo, name, dest));
        match result {
            Err(e) if e.kind == Kind::Unavailable && attempt < config.fetch_retries => {
                attempt += 1;
                eprintln!(
                    "walship: fetch {}: {}; retrying ({attempt}/{})",
                    name.as_str(),
                    e.message,
                    config.fetch_retries
                );
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}
