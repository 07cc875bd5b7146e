//! Commands run on another host (not storage: the layer above it). A command run on an SSH host over one session (the same connection set-up, host key check and
//! login as the SFTP repository), its standard input a [`Write`]: how `basebackup --to` streams a
//! backup into `walship restore --from-stdin` on the standby.

use std::io::{self, Read, Write};
use std::time::Duration;

use ssh2::Session;

use crate::error::{Error, Result};
use crate::storage::ssh_session::{SshOptions, SshUrl, Timing, open_session, ssh_err};

/// A remote command and the session it runs in.
pub struct RemoteCommand {
    _session: Session,
    channel: ssh2::Channel,
    command: String,
    /// Why the command stopped taking input: every later write fails at once with it (a
    /// blocked write would wait for a window the ended command never opens, and the stream's
    /// writers flush again as they are dropped).
    stopped: Option<String>,
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
            stopped: None,
        })
    }

    /// Read its output until a line equal to `marker`: `Ok(lines before it)`. If the command
    /// ends first, the error carries everything it printed and its exit status.
    pub fn wait_for_line(&mut self, marker: &str) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.channel.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if text == marker {
                        return Ok(lines);
                    }
                    lines.push(text);
                    line.clear();
                }
                Ok(_) => line.push(byte[0]),
                Err(e) => {
                    return Err(Error::unavailable(format!(
                        "reading the output of `{}`: {e}",
                        self.command
                    )));
                }
            }
        }
        lines.push(String::from_utf8_lossy(&line).into_owned());
        let _ = self.channel.wait_close();
        let status = self.channel.exit_status().unwrap_or(-1);
        let said: Vec<&str> = lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        Err(Error::unavailable(format!(
            "the remote command exited {status} before it was ready: {}",
            said.join(" / ")
        )))
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

impl RemoteCommand {
    /// A write failed: the command most likely ended (refused its input). Its output says why;
    /// put it in the error, or the person at the primary sees only "broken pipe".
    fn explain(&mut self, e: io::Error) -> io::Error {
        if let Some(why) = &self.stopped {
            return io::Error::other(why.clone());
        }
        let mut out = String::new();
        let _ = self.channel.read_to_string(&mut out);
        let _ = self.channel.wait_close();
        let status = self
            .channel
            .exit_status()
            .map(|s| format!(" (exit {s})"))
            .unwrap_or_default();
        let out = out.trim();
        let why = if out.is_empty() {
            format!("the remote command stopped{status}: {e}")
        } else {
            format!("the remote command stopped{status}: {out}")
        };
        self.stopped = Some(why.clone());
        io::Error::other(why)
    }
}

impl Write for RemoteCommand {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The command ended (it refused the stream, or failed): say why instead of waiting.
        if self.stopped.is_some() || self.channel.eof() {
            return Err(self.explain(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        self.channel.write(buf).map_err(|e| self.explain(e))
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
