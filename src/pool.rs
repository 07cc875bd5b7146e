//! A fixed set of threads working through a queue, each with state of its own (a repository
//! connection kept open between jobs): what the push-ahead and prefetch workers share.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Pool<J, R> {
    jobs: Option<Sender<J>>,
    done: Receiver<R>,
    threads: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static, R: Send + 'static> Pool<J, R> {
    /// Up to `threads` threads, each starting from `S::default()` and calling `work` for each
    /// job. Fewer start when the system refuses more (a task limit); none at all is an error,
    /// never a panic (which, with panic = abort, would kill the process by a signal).
    pub fn new<S: Default>(
        threads: u32,
        work: impl Fn(&mut S, J) -> R + Send + Clone + 'static,
    ) -> crate::error::Result<Pool<J, R>> {
        let (jobs, job_rx) = mpsc::channel::<J>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = mpsc::channel::<R>();
        let mut started = Vec::new();
        for _ in 0..threads.max(1) {
            let (job_rx, done_tx, work) = (job_rx.clone(), done_tx.clone(), work.clone());
            let spawned = std::thread::Builder::new().spawn(move || {
                let mut state = S::default();
                loop {
                    // The lock is held only while waiting for the next job.
                    let Ok(job) = job_rx.lock().expect("job queue").recv() else {
                        break;
                    };
                    if done_tx.send(work(&mut state, job)).is_err() {
                        break;
                    }
                }
            });
            match spawned {
                Ok(t) => started.push(t),
                Err(e) if started.is_empty() => {
                    return Err(crate::error::Error::io("starting a worker thread", e));
                }
                Err(e) => {
                    crate::log_line!(
                        "walship: WARNING: started {} of {threads} threads ({e}); going on with fewer",
                        started.len()
                    );
                    break;
                }
            }
        }
        let threads = started;
        Ok(Pool {
            jobs: Some(jobs),
            done,
            threads,
        })
    }

    pub fn submit(&self, job: J) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// The next finished job's result, if one finishes within `timeout`.
    pub fn wait_done(&self, timeout: Duration) -> Option<R> {
        self.done.recv_timeout(timeout).ok()
    }

    /// Results of jobs that already finished.
    pub fn finished(&self) -> Vec<R> {
        self.done.try_iter().collect()
    }

    /// Let the queued jobs finish and stop the threads.
    pub fn close(mut self) {
        drop(self.jobs.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_with_per_thread_state() {
        let pool: Pool<u32, (u32, u32)> = Pool::new(3, |calls: &mut u32, job: u32| {
            *calls += 1;
            (job, *calls)
        })
        .unwrap();
        for j in 0..50 {
            pool.submit(j);
        }
        let mut got = Vec::new();
        while got.len() < 50 {
            got.extend(pool.wait_done(Duration::from_secs(5)).map(|(j, _)| j));
        }
        got.sort();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        pool.close();
    }
}
