//! `walship reader advance ID %r` (archive_cleanup_command) and `walship reader end ID`
//! (recovery_end_command): the restored server's side of the hold `walship restore` publishes
//! (repo::readers). At each restartpoint the hold moves up to the oldest segment the server
//! still needs to restart (%r) and is renewed; when recovery ends it is removed.

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::os::now;
use crate::pg::{WalFileName, WalKind};
use crate::repo::readers::{HOLD, ReaderRecord};

#[derive(Debug, Args)]
pub struct ReaderArgs {
    #[command(subcommand)]
    pub action: ReaderAction,
}

#[derive(Debug, Subcommand)]
pub enum ReaderAction {
    /// Renew reader ID's hold from SEGMENT on (archive_cleanup_command: %r)
    Advance {
        id: String,
        /// The oldest segment the server needs to restart (%r)
        segment: String,
    },
    /// Remove reader ID's hold (recovery_end_command)
    End { id: String },
}

pub fn run(config: &Config, args: &ReaderArgs) -> Result<()> {
    let repo = config.open_repository()?;
    repo.require_identity()?;
    match &args.action {
        ReaderAction::Advance { id, segment } => {
            let seg = WalFileName::parse(segment)?;
            if seg.kind() != WalKind::Segment {
                return Err(Error::usage(format!(
                    "reader advance {id} {segment}: give a WAL segment name (archive_cleanup_command's %r)"
                )));
            }
            let (listed, _) = repo.list_readers()?;
            let mine: Vec<&ReaderRecord> = listed
                .iter()
                .map(|l| &l.record)
                .filter(|r| &r.id == id)
                .collect();
            let mut record = match mine.iter().max_by_key(|r| r.written) {
                Some(r) => (*r).clone(),
                None => {
                    // Expired and removed by a prune (the server stood still for longer than
                    // the hold lasts): hold again from here, and say so.
                    crate::log_line!(
                        "walship: reader {id}: WARNING: its hold had expired; holding WAL from {segment} again"
                    );
                    let pgdata = config
                        .pgdata
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    ReaderRecord::new(id, &pgdata, "", &seg)
                }
            };
            record.needs_from = seg.as_str().to_string();
            record.written = now().max(record.written + 1);
            record.expires = record.written + HOLD.as_secs() as i64;
            repo.write_reader(&record)
        }
        ReaderAction::End { id } => {
            repo.remove_reader_versions(id, None)?;
            crate::log_line!("walship: reader {id}: recovery ended; its hold on WAL is released");
            Ok(())
        }
    }
}
