//! One module per command: the orchestration (configuration, repository, logging, exit policy).
//! The per-file work they call lives in `transfer`.

pub mod basebackup;
pub mod check;
pub mod demo;
pub mod drill;
pub mod drill_checks;
pub mod drill_scratch;
pub mod fetch;
pub mod metrics;
pub mod prefetch;
pub mod promote;
pub mod prune;
pub mod push;
pub mod push_ahead;
pub mod reader;
pub mod rejoin;
pub mod restore;
pub mod status;
pub mod switchover;
pub mod trigger;
pub mod verify;
pub mod watch;

/// Format a byte count for humans: 16.0 MiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
