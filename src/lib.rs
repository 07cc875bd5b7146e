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
//!   [`schedule`]: what those workers decide, as state machines without input or output;
//!   [`archive_identity`]: the identity a push creates in an empty repository and checks;
//! - [`commands`]: orchestration of each command; [`cli`] and [`config`]: flags and settings.

pub mod archive_identity;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod compress;
pub mod config;
pub mod crypto;
pub mod error;
pub mod hashing;
pub mod hooks;
pub mod os;
pub mod pg;
pub mod pool;
pub mod progress;
pub mod remote;
pub mod repo;
pub mod schedule;
pub mod settings;
pub mod spool;
pub mod storage;
pub mod transfer;
pub mod units;

pub use error::{Error, Kind, Result};

/// `eprintln!` that never panics, and writes each line with one write. walship's stderr is often
/// a file on a disk that may be full (a worker's log in pg_wal, PostgreSQL's log): `eprintln!`
/// panics when the write fails, and with `panic = "abort"` a clean "no space left" failure would
/// become an abort that leaves its temporaries behind (found by the full-pg_wal drill). A message
/// that cannot be written is dropped. One write per line keeps a line whole when PostgreSQL's own
/// messages land in the same log (`writeln!` writes the pieces of a format one by one).
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {{
        $crate::log::write_line(&format!($($arg)*));
    }};
}

pub mod log {
    //! Where `log_line!` writes: stderr, one write per line; in a background worker (whose
    //! stderr is its own log file, read long after) each line starts with an RFC 3339 time.

    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, Ordering};

    static TIMESTAMPS: AtomicBool = AtomicBool::new(false);
    static QUIET: AtomicBool = AtomicBool::new(false);
    static VERBOSE: AtomicBool = AtomicBool::new(false);

    /// Prefix every later line with the time (background workers).
    pub fn with_timestamps() {
        TIMESTAMPS.store(true, Ordering::Relaxed);
    }

    /// `--quiet`: only errors, warnings and their hints are written.
    pub fn set_quiet() {
        QUIET.store(true, Ordering::Relaxed);
    }

    /// `--verbose` (or WALSHIP_DEBUG): the `debug:` lines too (where an SSH connection's time
    /// went, which ciphers it uses).
    pub fn set_verbose() {
        VERBOSE.store(true, Ordering::Relaxed);
    }

    pub fn verbose() -> bool {
        VERBOSE.load(Ordering::Relaxed) || std::env::var_os("WALSHIP_DEBUG").is_some()
    }

    /// Whether `--quiet` keeps `message`.
    fn important(message: &str) -> bool {
        ["ERROR", "WARNING", "HINT:", "FATAL"]
            .iter()
            .any(|w| message.contains(w))
    }

    pub fn write_line(message: &str) {
        if QUIET.load(Ordering::Relaxed) && !important(message) {
            return;
        }
        let mut line = String::with_capacity(message.len() + 32);
        if TIMESTAMPS.load(Ordering::Relaxed) {
            // every line of it (an error's HINT is its second line)
            let now = rfc3339_now();
            for l in message.lines() {
                line.push_str(&now);
                line.push(' ');
                line.push_str(l);
                line.push('\n');
            }
        } else {
            line.push_str(message);
            line.push('\n');
        }
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// Now, as `2026-12-01T07:20:37.123Z`.
    pub fn rfc3339_now() -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        rfc3339(now.as_secs() as i64, now.subsec_millis())
    }

    /// Seconds since the epoch (UTC) and milliseconds, as RFC 3339.
    pub fn rfc3339(secs: i64, millis: u32) -> String {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // civil_from_days (Howard Hinnant's algorithm)
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn quiet_keeps_errors_warnings_and_hints_only() {
            assert!(super::important("walship: push X: ERROR: disk full"));
            assert!(super::important("walship: WARNING: could not record"));
            assert!(super::important("HINT: Create it"));
            assert!(!super::important(
                "walship: pushed X (16.0 MiB -> 2.0 MiB) in 12 ms"
            ));
        }

        #[test]
        fn times_are_written_as_rfc_3339() {
            assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
            assert_eq!(super::rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
            assert_eq!(
                super::rfc3339(1_796_109_637, 123),
                "2026-12-01T07:20:37.123Z"
            );
        }
    }
}
