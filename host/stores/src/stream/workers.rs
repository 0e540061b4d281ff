//! The threads that run a server's store work: a fixed pool, shared by
//! all connections, fed from one queue. A request costs a queue push and a
//! wake-up, not a task of its own (with 100,000 small reads in a restore,
//! the per-task cost of an async runtime's blocking pool was half the
//! server's CPU beside decompression).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

/// A piece of work.
pub type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// A pool of threads running [`Job`]s in the order they come.
pub struct Workers {
    q: Arc<(Mutex<Queue>, Condvar)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// `n` threads (at least one).
    pub fn new(n: usize, name: &str) -> std::io::Result<Self> {
        let q: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let q = q.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        super::block_sigpipe();
                        run(&q)
                    })?,
            );
        }
        Ok(Workers { q, threads })
    }

    /// Queues `job`.
    pub fn run(&self, job: Job) {
        let (m, cv) = &*self.q;
        m.lock()
            .unwrap_or_else(|e| e.into_inner())
            .jobs
            .push_back(job);
        cv.notify_one();
    }
}

fn run(q: &(Mutex<Queue>, Condvar)) {
    let (m, cv) = q;
    loop {
        let job = {
            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = g.jobs.pop_front() {
                    break j;
                }
                if g.closed {
                    return;
                }
                g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        };
        job();
    }
}

impl Drop for Workers {
    /// Runs the jobs queued, then ends the threads.
    fn drop(&mut self) {
        let (m, cv) = &*self.q;
        m.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    #[test]
    fn every_job_runs_once() {
        let n = Arc::new(AtomicUsize::new(0));
        {
            let w = Workers::new(3, "t").unwrap();
            for _ in 0..1000 {
                let n = n.clone();
                w.run(Box::new(move || {
                    n.fetch_add(1, Relaxed);
                }));
            }
        }
        assert_eq!(n.load(Relaxed), 1000);
    }
}
