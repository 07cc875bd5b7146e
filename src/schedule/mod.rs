//! The background workers' decisions, as state machines without input or output of their own.
//!
//! Each worker (`commands::push_ahead`, `commands::prefetch`) is a thin loop: it reads what it
//! needs to see (archive_status, the spool, free space, the clock) into an `Observation`, hands
//! it to its scheduler's `step`, and carries out the `Action`s that come back (push or fetch a
//! file, remove a spool entry, wait, stop). Everything that decides lives here, so that the
//! rules can be tested against many random sequences of observations (`*/tests.rs`) rather than
//! only against the timing of real processes.

pub mod prefetch;
pub mod push_ahead;
