//! A command run on an SSH host over one session (the same connection set-up, host key check and
//! login as the SFTP repository), its standard input a [`Write`]: how `basebackup --to` streams a
//! backup into `walship restore --from-stdin` on the standby.

use std::io::{self, Read, Write};
use std::time::Duration;

use ssh2::Session;

use super::ssh::{SshOptions, SshUrl, Timing, open_session, ssh_err};
use crate::error::{Error, Result};

/// A remote command and the session it runs in.
pub struct RemoteCommand {
    _session: Session,
    channel: ssh2::Channel,
    command: String,
}

impl RemoteCommand {
    /// Run `command` (a shell command line, already quoted) on the host of `url`.
    pub fn start(url: &SshUrl, opts: &SshOptions, command: &str) -> Result<RemoteCommand> {
        let mut timing = Timing::start();
        let where_ = format!("ssh://{}:{}", url.host, url.port);
        let session = open_session(url, opts, &mut timing)?;
        let mut channel = session
            .channel_session()
            .map_err(|e| ssh_err(format!("{where_}: opening a channel"), e))?;
        // Its messages are few; merged into stdout they are read once it ends.
        channel
            .handle_extended_data(ssh2::ExtendedData::Merge)
            .map_err(|e| ssh_err(format!("{where_}: channel set-up"), e))?;
        channel
            .exec(command)
            .map_err(|e| ssh_err(format!("{where_}: running {command}"), e))?;
        timing.mark("exec");
        timing.report(&where_, &session);
        Ok(RemoteCommand {
            _session: session,
            channel,
            command: command.to_string(),
        })
    }

    /// End its input, wait (up to `timeout`) for it to finish: (exit status, what it printed).
    pub fn finish(mut self, timeout: Duration) -> Result<(i32, String)> {
        self._session
            .set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        let what = |e: ssh2::Error| ssh_err(format!("waiting for `{}`", self.command), e);
        self.channel.send_eof().map_err(what)?;
        let mut out = String::new();
        self.channel.read_to_string(&mut out).map_err(|e| {
            Error::unavailable(format!("reading the output of `{}`: {e}", self.command))
        })?;
        self.channel.wait_close().map_err(what)?;
        let status = self.channel.exit_status().map_err(what)?;
        Ok((status, out))
    }
}

impl Write for RemoteCommand {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.channel.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.channel.flush()
    }
}

/// Quote `arg` for a POSIX shell (the remote side of an SSH command line).
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_a_remote_shell() {
        for arg in ["plain", "/a b/c", "it's", "$(rm -rf /)", "", "a;b", "x=y"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(arg)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), arg);
        }
    }
}
