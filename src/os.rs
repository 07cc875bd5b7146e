//! The operating-system boundary that has no better home: facts about processes on this host.

/// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat), which
/// tells a process from a later one that was given the same PID.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold spaces or parentheses itself
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The process holding a flock(2) lock on `path`, from /proc/locks: the kernel's own word, unlike
/// a PID written into the lock file, which names a dead holder until its successor rewrites it.
pub fn flock_holder(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let (major, minor) = (libc::major(m.dev()), libc::minor(m.dev()));
    let want = format!("{major:02x}:{minor:02x}:{}", m.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (a "->" marks a waiter)
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(2) != Some(&"->") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// The version of the libssh2 this binary is linked with (walship builds a patched copy, see
/// vendor/libssh2-sys/WALSHIP.md).
pub fn libssh2_version() -> String {
    unsafe extern "C" {
        fn libssh2_version(required: std::ffi::c_int) -> *const std::ffi::c_char;
    }
    // SAFETY: libssh2_version(0) returns a pointer to a static NUL-terminated string.
    let p = unsafe { libssh2_version(0) };
    if p.is_null() {
        return "unknown".into();
    }
    // SAFETY: as above, static and NUL-terminated.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_start_time_and_a_dead_pid_has_none() {
        let me = super::process_start_ticks(std::process::id());
        assert!(me.is_some());
        assert_eq!(me, super::process_start_ticks(std::process::id()));
        assert_eq!(super::process_start_ticks(u32::MAX - 1), None);
    }
}
