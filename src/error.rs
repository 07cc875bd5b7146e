//! The one error type of walship, and the one table that turns its kinds into exit codes.
//!
//! PostgreSQL reads meaning into exit codes (see `FORMAT.md` and the README): for restore_command,
//! 1..125 means "not available, try again later" and anything above 125 aborts recovery. So every
//! failure carries a [`Kind`], and only [`Kind::exit_code`] decides the number.

use std::fmt;
use std::io;

/// What went wrong, as far as the caller (PostgreSQL, a script, a person) needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The requested file is not in the archive. A normal answer for restore_command.
    NotFound,
    /// Bad flags, bad configuration, a file name that is not a WAL file name.
    Usage,
    /// The repository could not be reached or written right now (network, disk full, I/O).
    /// Trying again later may help.
    Unavailable,
    /// The request contradicts what the repository holds: different bytes under the same name,
    /// another cluster's repository, an unknown format version. Retrying will not help.
    Conflict,
    /// Data failed a check: a truncated or foreign WAL file, a damaged repository object.
    Corrupt,
}

impl Kind {
    /// The kind an exit code stands for (how a background worker's failure travels back).
    pub fn from_exit_code(code: i32) -> Kind {
        [
            Kind::NotFound,
            Kind::Usage,
            Kind::Unavailable,
            Kind::Conflict,
            Kind::Corrupt,
        ]
        .into_iter()
        .find(|k| k.exit_code() == code)
        .unwrap_or(Kind::Unavailable)
    }

    /// The exit code for this kind. One table, documented in the README.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::NotFound => 1,
            Kind::Usage => 2,
            Kind::Unavailable => 3,
            Kind::Conflict => 4,
            Kind::Corrupt => 5,
        }
    }
}

/// Exit code with which `fetch` stops PostgreSQL's recovery on purpose: above 125, so the startup
/// process treats it like a crash of the command and aborts instead of ending recovery early.
/// Not 255, which is what ssh and rsync return for a network error, so the two are told apart.
pub const EXIT_ABORT_RECOVERY: i32 = 254;

/// An error: its kind, a lowercase message naming the file and the cause, and an optional hint
/// (a full sentence telling the reader what to do).
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
    /// Exit with [`EXIT_ABORT_RECOVERY`] instead of the kind's code (fetch, archive recovery).
    pub abort_recovery: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            hint: None,
            abort_recovery: false,
        }
    }

    pub fn exit_code(&self) -> i32 {
        if self.abort_recovery {
            EXIT_ABORT_RECOVERY
        } else {
            self.kind.exit_code()
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(Kind::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(Kind::Unavailable, message)
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(Kind::Conflict, message)
    }

    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::new(Kind::Corrupt, message)
    }

    /// An I/O error while doing `what` (e.g. "writing /repo/wal/...").
    /// A file that is not found is `Unavailable` here, not `NotFound`: that kind (exit 1, "not
    /// in the archive", which ends a point-in-time recovery) is only ever said on purpose, where
    /// a storage backend found an object absent.
    pub fn io(what: impl fmt::Display, err: io::Error) -> Error {
        let kind = match err.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => Kind::Corrupt,
            _ => Kind::Unavailable,
        };
        let mut e = Error::new(kind, format!("{what}: {err}"));
        if err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(libc::EFBIG) {
            e.hint = Some(
                "The file system is full or the file size limit was reached; nothing was \
                 published. Free space and the next attempt will succeed."
                    .into(),
            );
        }
        e
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Prefix the message with more context ("pushing X: " + message).
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nHINT: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// `Result` helpers: attach context to any error on its way up.
pub trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(what))
    }
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::io(what, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_below_the_abort_range() {
        let kinds = [
            Kind::NotFound,
            Kind::Usage,
            Kind::Unavailable,
            Kind::Conflict,
            Kind::Corrupt,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        assert!(codes.iter().all(|c| (1..=125).contains(c)));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        const { assert!(EXIT_ABORT_RECOVERY > 125 && EXIT_ABORT_RECOVERY != 255) };
    }

    #[test]
    fn regression_an_io_not_found_is_not_not_in_the_archive() {
        // e.g. %p's directory missing: exit 1 would end a point-in-time recovery early
        let e = Error::io(
            "creating pg_wal/x",
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(e.kind, Kind::Unavailable);
    }

    #[test]
    fn disk_full_gets_a_hint_and_is_retryable() {
        let e = Error::io("writing x", io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.kind, Kind::Unavailable);
        assert!(e.to_string().contains("HINT:"));
    }
}
