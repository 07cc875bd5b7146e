//! What the fault drills share: the full/short switch, the `DRILL` report line the README's
//! tables quote, segment names, and the archiver's call for one of them.

use std::process::Command;

/// `WALSHIP_DRILLS=full` runs the full version of each drill; otherwise the short one.
pub fn full() -> bool {
    std::env::var("WALSHIP_DRILLS").as_deref() == Ok("full")
}

pub fn report(fault: &str, tried: u64, survived: u64, lost_bytes: u64) {
    println!("DRILL | {fault} | {tried} | {survived} | {lost_bytes}");
}

/// Segment `n` of timeline 1 (1 MiB or 16 MiB segments alike for n < 256).
pub fn seg(n: u64) -> String {
    format!("0000000100000000{n:08X}")
}

/// `push pg_wal/SEG SEG`, as archive_command calls it from the data directory.
pub fn push_segment(cmd: &mut Command, n: u64) -> &mut Command {
    cmd.arg("push")
        .arg(format!("pg_wal/{}", seg(n)))
        .arg(seg(n))
}
