//! Hooks: the DBA's commands run after a promotion (move a virtual IP, repoint a pooler, page
//! someone) and the fence and witness commands of automatic failover. Each runs under `sh -c` in
//! a process group of its own, with a timeout after which the whole group is killed, and its
//! output is logged line by line; a hook never blocks walship for longer than its timeout.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEnd {
    Exited(i32),
    Signalled,
    TimedOut,
    NotStarted(String),
}

impl HookEnd {
    pub fn ok(&self) -> bool {
        *self == HookEnd::Exited(0)
    }
}

impl std::fmt::Display for HookEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookEnd::Exited(c) => write!(f, "exit {c}"),
            HookEnd::Signalled => write!(f, "killed by a signal"),
            HookEnd::TimedOut => write!(f, "timed out and was killed"),
            HookEnd::NotStarted(e) => write!(f, "could not start: {e}"),
        }
    }
}

/// What is kept of each of a hook's output streams: enough for any message meant for a person;
/// a hook that prints without end must not take walship's memory with it.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Read `r` to its end, keeping the first `limit` bytes and counting the rest (still read, so
/// that the writer never blocks on a full pipe).
fn drain(mut r: impl Read, limit: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                dropped += (n - room) as u64;
            }
        }
    }
    (kept, dropped)
}

/// Run `command` with `env`, logging its output prefixed with `label`; kill its process group
/// after `timeout`.
pub fn run_hook(label: &str, command: &str, env: &[(&str, String)], timeout: Duration) -> HookEnd {
    crate::log_line!("walship: {label}: running `{command}`");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return HookEnd::NotStarted(e.to_string()),
    };
    // Drain both pipes on threads so a chatty hook cannot block on a full pipe.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| std::thread::spawn(move || drain(r, MAX_OUTPUT)))
    .collect();
    let started = Instant::now();
    let end = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break match status.code() {
                    Some(c) => HookEnd::Exited(c),
                    None => HookEnd::Signalled,
                };
            }
            Ok(None) if started.elapsed() >= timeout => {
                // the hook leads its own process group (process_group(0) above)
                crate::os::signal(-(child.id() as i32), libc::SIGKILL);
                let _ = child.wait();
                break HookEnd::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break HookEnd::NotStarted(e.to_string()),
        }
    };
    // A hook that left a background child holding the pipes must not hang us: its output is
    // abandoned after a short grace.
    for r in readers {
        let deadline = Instant::now() + Duration::from_millis(500);
        while !r.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if r.is_finished()
            && let Ok((kept, dropped)) = r.join()
        {
            for line in String::from_utf8_lossy(&kept).lines() {
                crate::log_line!("walship: {label}: | {line}");
            }
            if dropped > 0 {
                crate::log_line!("walship: {label}: | ({dropped} more bytes of output not logged)");
            }
        }
    }
    crate::log_line!(
        "walship: {label}: `{command}` {end} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_reports_its_exit_and_a_hanging_one_is_killed_with_its_children() {
        let t = Duration::from_secs(5);
        assert_eq!(run_hook("t", "exit 0", &[], t), HookEnd::Exited(0));
        assert_eq!(
            run_hook("t", "echo out; echo err >&2; exit 3", &[], t),
            HookEnd::Exited(3)
        );
        assert_eq!(
            run_hook("t", "test \"$X\" = y", &[("X", "y".into())], t),
            HookEnd::Exited(0)
        );
        let started = Instant::now();
        let end = run_hook("t", "sleep 30 & sleep 30", &[], Duration::from_millis(300));
        assert_eq!(end, HookEnd::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn regression_a_hook_that_prints_without_end_is_held_to_a_bounded_buffer() {
        // 64 MiB of output: kept to MAX_OUTPUT, the rest counted, and the hook not blocked
        let (kept, dropped) = drain(std::io::repeat(b'x').take(64 << 20), MAX_OUTPUT);
        assert_eq!(kept.len(), MAX_OUTPUT);
        assert_eq!(dropped, (64 << 20) - MAX_OUTPUT as u64);
        let end = run_hook(
            "t",
            "head -c 50000000 /dev/zero | tr '\\0' x; exit 4",
            &[],
            Duration::from_secs(20),
        );
        assert_eq!(end, HookEnd::Exited(4));
    }
}
