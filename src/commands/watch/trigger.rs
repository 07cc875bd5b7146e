//! The trigger file of `walship watch`: whoever can write it can promote the standby at once,
//! with no health check and no fence. So the file must live where only the trusted users can
//! write, every directory above it too (or be sticky, like /tmp itself); it must be a regular
//! file owned by one of them, not a symlink, FIFO or device; and it is read with a small bound
//! and without blocking. The trusted users are the watcher's own, root, and the standby's owner
//! (who can promote the server with pg_ctl anyway, so trusting it gives nobody anything new).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pg::promotion_marker::Mode;

/// The most a trigger file may hold ("smart\n" or "fast\n"; more is refused, not read).
const MAX_LEN: u64 = 64;

/// What a look at the trigger file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Absent,
    Promote(Mode),
    /// Something is there that must not be obeyed (a symlink, a FIFO, a foreign owner...).
    Refused(String),
}

/// Check at start-up that `path` is a safe place for a trigger file: absolute, in a directory
/// chain that nobody but this user or root can change. A path that fails is a usage error.
pub fn check_path(path: &Path, owner: u32) -> Result<()> {
    let unsafe_path = |why: String| {
        Error::usage(format!("trigger file {}: {why}", path.display())).with_hint(
            "Anyone who can create the trigger file can promote this standby with no health \
             check and no fence. Put it in a directory that only the watcher's user can write \
             (e.g. /var/lib/postgresql/walship/trigger, mode 0700), not in /tmp.",
        )
    };
    if !path.is_absolute() {
        return Err(unsafe_path("is not an absolute path".into()));
    }
    let parent = path
        .parent()
        .ok_or_else(|| unsafe_path("has no directory".into()))?;
    let me = euid();
    let mut dir: Option<PathBuf> = Some(parent.to_path_buf());
    let mut first = true;
    while let Some(d) = dir {
        let m = std::fs::symlink_metadata(&d)
            .map_err(|e| unsafe_path(format!("its directory {}: {e}", d.display())))?;
        if m.file_type().is_symlink() {
            return Err(unsafe_path(format!(
                "{} is a symlink: whoever can change it decides where the trigger file is",
                d.display()
            )));
        }
        if !m.is_dir() {
            return Err(unsafe_path(format!("{} is not a directory", d.display())));
        }
        if m.uid() != me && m.uid() != 0 && m.uid() != owner {
            return Err(unsafe_path(format!(
                "{} belongs to uid {}, not to this user (uid {me}), the standby's owner or root",
                d.display(),
                m.uid()
            )));
        }
        let mode = m.permissions().mode();
        let writable_by_others = mode & 0o022 != 0;
        let sticky = mode & 0o1000 != 0;
        // The trigger's own directory must be private; above it, a sticky directory (like
        // /tmp) is safe, since nobody else can rename or remove what is ours in it.
        if writable_by_others && (first || !sticky) {
            return Err(unsafe_path(format!(
                "{} can be written by other users (mode {:o})",
                d.display(),
                mode & 0o7777
            )));
        }
        first = false;
        dir = d.parent().map(Path::to_path_buf);
    }
    Ok(())
}

/// Look at the trigger file: never following a symlink, never blocking on a FIFO, reading at
/// most [`MAX_LEN`] bytes.
pub fn read(path: &Path, owner: u32) -> Trigger {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Trigger::Absent,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Trigger::Refused("it is a symlink".into());
        }
        Err(e) => return Trigger::Refused(format!("cannot open it: {e}")),
    };
    let m = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Trigger::Refused(format!("cannot stat it: {e}")),
    };
    if !m.file_type().is_file() {
        return Trigger::Refused(
            "it is not a regular file (a FIFO, a device or a directory)".into(),
        );
    }
    // root's file too: whoever is root can promote the server anyway (and `watch` started as
    // root runs as the standby's owner, so its own euid is not root's)
    if m.uid() != euid() && m.uid() != owner && m.uid() != 0 {
        return Trigger::Refused(format!(
            "it belongs to uid {}, not to this user (uid {}), the standby's owner or root",
            m.uid(),
            euid()
        ));
    }
    if m.len() > MAX_LEN {
        return Trigger::Refused(format!(
            "it holds {} bytes; a trigger file says smart or fast",
            m.len()
        ));
    }
    let mut text = String::new();
    if let Err(e) = (&mut file).take(MAX_LEN).read_to_string(&mut text) {
        return Trigger::Refused(format!("cannot read it: {e}"));
    }
    Trigger::Promote(match text.trim().to_ascii_lowercase().as_str() {
        "fast" => Mode::Fast,
        "smart" | "" => Mode::Smart,
        other => {
            crate::log_line!(
                "walship: WARNING: trigger file says {other:?}; expected smart or fast; promoting smart"
            );
            Mode::Smart
        }
    })
}

/// Remove the trigger file (itself, never what a symlink names).
pub fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        crate::log_line!(
            "walship: WARNING: could not remove the trigger file {}: {e}; remove it by hand",
            path.display()
        );
    }
}

fn euid() -> u32 {
    crate::os::euid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn private_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn a_trigger_file_in_a_private_directory_promotes_as_it_says() {
        let d = private_dir();
        let t = d.path().join("trigger");
        assert_eq!(read(&t, euid()), Trigger::Absent);
        std::fs::write(&t, "fast\n").unwrap();
        assert_eq!(read(&t, euid()), Trigger::Promote(Mode::Fast));
        std::fs::write(&t, "").unwrap();
        assert_eq!(read(&t, euid()), Trigger::Promote(Mode::Smart));
        // the temp dir's parents (/tmp: sticky) are fine
        check_path(&t, euid()).unwrap();
    }

    #[test]
    fn regression_a_hostile_trigger_file_is_refused_without_hanging_or_reading_much() {
        let d = private_dir();
        let t = d.path().join("trigger");
        // a symlink to /dev/zero: it would exhaust memory if read
        symlink("/dev/zero", &t).unwrap();
        assert!(matches!(read(&t, euid()), Trigger::Refused(w) if w.contains("symlink")));
        std::fs::remove_file(&t).unwrap();
        // a FIFO: it would hang a blocking open
        crate::os::mkfifo(&t).unwrap();
        let started = std::time::Instant::now();
        assert!(
            matches!(read(&t, euid()), Trigger::Refused(w) if w.contains("not a regular file"))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        std::fs::remove_file(&t).unwrap();
        // too large to be a trigger
        std::fs::write(&t, vec![b'x'; 1000]).unwrap();
        assert!(matches!(read(&t, euid()), Trigger::Refused(w) if w.contains("1000 bytes")));
        // another user's file (only root can make one here; as anyone else the chown fails,
        // which is the same protection one level down)
        std::fs::write(&t, "fast").unwrap();
        match std::os::unix::fs::chown(&t, Some(65534), None) {
            Ok(()) => assert!(
                matches!(read(&t, euid()), Trigger::Refused(w) if w.contains("belongs to uid 65534"))
            ),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
        }
    }

    #[test]
    fn regression_a_trigger_path_others_can_write_is_refused_at_start() {
        let d = private_dir();
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_path(&open.join("trigger"), euid()).unwrap_err();
        assert!(
            e.to_string().contains("can be written by other users"),
            "{e}"
        );
        // world-writable and sticky, like /tmp itself: still not the trigger's own directory
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_path(&open.join("trigger"), euid()).is_err());
        // /tmp/x/trigger with x private is fine; /tmp/trigger is not
        assert!(check_path(Path::new("/tmp/trigger"), euid()).is_err());
        // a symlinked directory
        let link = d.path().join("link");
        symlink(d.path(), &link).unwrap();
        let e = check_path(&link.join("trigger"), euid()).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert!(check_path(Path::new("relative/trigger"), euid()).is_err());
    }
}
