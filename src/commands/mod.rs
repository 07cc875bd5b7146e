//! One module per command: the orchestration (configuration, repository, logging, exit policy).
//! The per-file work they call lives in `transfer`, base backups in `backup`.
//!
//! A command imports another only to run it (switchover runs promote and rejoin, watch runs
//! promote). What two commands share is not a command: a small helper goes here, state or a
//! format goes down a layer (`pg::promotion_marker`, `backup::stored`), and a command's own
//! parts are its submodules (`drill/`, `status/metrics.rs`, `watch/trigger.rs`).

pub mod basebackup;
pub mod check;
pub mod config_show;
pub mod demo;
pub mod drill;
pub mod fetch;
pub mod key;
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
pub mod verify;
pub mod watch;

pub use crate::units::human_bytes;

/// The data directory: `pgdata`, else the working directory.
pub fn pgdata_of(config: &crate::config::Config) -> std::path::PathBuf {
    config
        .pgdata
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}
