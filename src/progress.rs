//! Progress of a long transfer (base backup, restore): an indicatif bar (bytes, rate, ETA, files)
//! when stderr is a terminal, and a plain log line every few seconds when it is not (cron, a
//! systemd journal, a test), so that a log shows that a long command is alive and how fast it is.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::units::human_bytes;

const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    what: String,
    total: u64,
    done: AtomicU64,
    files: AtomicU64,
    bar: Option<ProgressBar>,
    /// Without a bar: write a log line every LOG_EVERY (off for a silent progress).
    log: bool,
    started: Instant,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// `total` bytes expected (0: unknown).
    pub fn new(what: &str, total: u64) -> Progress {
        Progress::with_output(what, total, true)
    }

    /// A progress that shows nothing (unit tests, the receiving side of a stream).
    pub fn silent() -> Progress {
        Progress::with_output("", 0, false)
    }

    fn with_output(what: &str, total: u64, show: bool) -> Progress {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = if total > 0 {
                ProgressBar::new(total)
            } else {
                ProgressBar::new_spinner()
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            // Redrawn twice a second whatever the stream does: a bar that stands still while
            // a large file is compressed looks like a hang.
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Progress {
            what: what.to_string(),
            total,
            done: AtomicU64::new(0),
            files: AtomicU64::new(0),
            bar,
            log: show,
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
        }
    }

    pub fn add(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.log => self.maybe_log(done),
            None => {}
        }
    }

    pub fn file_done(&self) {
        let n = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{n} files"));
        }
    }

    fn maybe_log(&self, done: u64) {
        let Ok(mut last) = self.last_log.try_lock() else {
            return;
        };
        if last.elapsed() < LOG_EVERY {
            return;
        }
        *last = Instant::now();
        crate::log_line!("walship: {}: {}", self.what, self.summary(done));
    }

    fn summary(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = human_bytes((done as f64 / secs) as u64);
        let files = self.files.load(Ordering::Relaxed);
        if self.total > 0 {
            format!(
                "{} of {} ({:.0}%), {files} files, {rate}/s",
                human_bytes(done),
                human_bytes(self.total),
                done as f64 * 100.0 / self.total as f64
            )
        } else {
            format!("{}, {files} files, {rate}/s", human_bytes(done))
        }
    }

    /// Remove the bar; the caller prints its own summary line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    pub fn bytes(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
