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

/// A small seeded generator for the property tests (xorshift64, as in
/// `repo::retention`'s tests): the same seed gives the same cases, so a failure can be replayed.
#[cfg(test)]
pub(crate) struct Rng(pub u64);

#[cfg(test)]
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
