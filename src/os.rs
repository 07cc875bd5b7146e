//! The operating-system boundary: facts about this host, its processes and its users (the
//! password database), each behind a safe function.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether process `pid` exists on this host (whoever owns it).
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The login name of the effective user (for SSH logins without `user@`).
pub fn current_user() -> String {
    passwd_field(|pw| pw.pw_name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".into())
}

/// The effective user's home directory: $HOME, else the password database.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| passwd_field(|pw| pw.pw_dir).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The login name of user `uid`, from the password database.
pub fn user_name(uid: u32) -> Option<String> {
    passwd_field_of(uid, |pw| pw.pw_name)
}

/// The home directory of user `uid`, from the password database.
pub fn user_home(uid: u32) -> Option<String> {
    passwd_field_of(uid, |pw| pw.pw_dir)
}

fn passwd_field(field: impl Fn(&libc::passwd) -> *mut libc::c_char) -> Option<String> {
    // SAFETY: geteuid cannot fail.
    passwd_field_of(unsafe { libc::geteuid() }, field)
}

fn passwd_field_of(uid: u32, field: impl Fn(&libc::passwd) -> *mut libc::c_char) -> Option<String> {
    // getpwuid_r with a buffer of our own: pool threads look users up while opening SSH
    // sessions, and getpwuid's static result would be shared between them.
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: every pointer is to storage we own and that outlives the call; the result
        // points into `pw` and `buf`, which we copy out of before they go away.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 || result.is_null() {
                return None;
            }
            let p = field(&pw);
            if p.is_null() {
                return None;
            }
            return Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned());
        }
    }
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The uid and gid of user `name`, from the password database (getpwnam_r: other threads may
/// look users up at the same time).
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: every pointer is to storage we own that outlives the call.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 || result.is_null() {
                return None;
            }
            return Some((pw.pw_uid, pw.pw_gid));
        }
    }
}

/// Take an exclusive flock(2) on `file` without waiting; false if another process holds one.
/// The kernel releases it when the holder dies, however it dies.
pub fn try_flock_exclusive(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor the caller owns.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Make the child of `cmd` receive `signal` when this thread ends (PR_SET_PDEATHSIG), and not
/// start at all if this process is already gone by the time it could take effect.
pub fn die_with_parent(cmd: &mut std::process::Command, signal: i32) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent is gone"));
            }
            Ok(())
        });
    }
}

/// Send `signal` to process `pid` (a negative pid: its process group); false if it failed.
pub fn signal(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory preconditions; the caller chose the process.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Bytes available to an unprivileged writer on the file system of `dir` (statvfs), if known.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
}

/// syncfs(2): everything written to the file system holding `file` reaches the disk.
pub fn syncfs(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on a file descriptor the caller owns.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Lower this thread's scheduling priority by `n` (nice): background work yields to PostgreSQL.
pub fn lower_priority(n: i32) {
    // SAFETY: nice(2) only changes the scheduling priority.
    unsafe { libc::nice(n) };
}

/// Start the child of `cmd` in a session of its own (setsid), away from our process group, so
/// that signals meant for PostgreSQL's archiver or startup process do not reach it.
pub fn in_new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// Become user `name` (`uid`, `gid`) for good: supplementary groups, then group, then user, and
/// check that root cannot be taken back. Returns the step that failed.
pub fn become_user(name: &str, uid: u32, gid: u32) -> Result<(), (&'static str, std::io::Error)> {
    let cname = std::ffi::CString::new(name).map_err(|_| {
        (
            "a user name without NUL",
            std::io::ErrorKind::InvalidInput.into(),
        )
    })?;
    // SAFETY: plain system calls on values we own; each result is checked.
    unsafe {
        if libc::initgroups(cname.as_ptr(), gid) != 0 {
            return Err(("initgroups", std::io::Error::last_os_error()));
        }
        if libc::setgid(gid) != 0 {
            return Err(("setgid", std::io::Error::last_os_error()));
        }
        if libc::setuid(uid) != 0 {
            return Err(("setuid", std::io::Error::last_os_error()));
        }
        if libc::setuid(0) == 0 || libc::geteuid() != uid {
            return Err((
                "giving up root",
                std::io::ErrorKind::PermissionDenied.into(),
            ));
        }
    }
    Ok(())
}

/// Set environment variables for the rest of the process. Only before any thread starts (at the
/// start of a command), which is why it is one function with that rule.
pub fn set_env_at_start(vars: &[(&str, &std::ffi::OsStr)]) {
    for (k, v) in vars {
        // SAFETY: called at the start of a command, before it starts any thread.
        unsafe { std::env::set_var(k, v) };
    }
}

/// mkfifo(3), for tests that put a FIFO where a file is expected.
pub fn mkfifo(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Fill `buf` as far as the reader allows; returns the bytes read, less than `buf.len()` only at
/// end of file (a read of a pipe, a socket or a sealed stream may return fewer bytes than asked).
pub fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// fsync the directory `dir`, so that the entries made or removed in it survive a crash.
pub fn sync_dir(dir: &std::path::Path) -> crate::error::Result<()> {
    use crate::error::Context;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .context(format!("fsync of directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::user_name;

    #[test]
    fn regression_user_lookups_from_many_threads_at_once_agree() {
        let me = unsafe { libc::geteuid() };
        let name = user_name(me);
        assert!(name.is_some());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || (0..200).map(|_| user_name(me)).collect::<Vec<_>>())
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap().iter().all(|n| *n == name));
        }
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn this_process_has_a_start_time_and_a_dead_pid_has_none() {
        let me = super::process_start_ticks(std::process::id());
        assert!(me.is_some());
        assert_eq!(me, super::process_start_ticks(std::process::id()));
        assert_eq!(super::process_start_ticks(u32::MAX - 1), None);
    }
}
