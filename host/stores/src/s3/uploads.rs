//! Background uploads of an S3 store: a few at a time (an adder waits
//! for a free slot, so memory stays bounded), their failures kept with
//! what failed so that the next add reports them (once) and the next sync
//! tries them again (and fails if they fail again).

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use vt_core::{Error, Result};

/// Uploads in flight at once.
pub const IN_FLIGHT: usize = 4;

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::Store("s3 store: upload state lock poisoned".into()))
}

/// The right to start one upload, taken (with [`Uploads::begin`]) where
/// the item becomes visible to other threads as added, so that a
/// [`Uploads::wait`] from then on waits for its upload too.
#[must_use]
pub struct Ticket(());

/// Uploads of items `T` (a sealed pack, a block) running on the store's
/// runtime.
pub struct Uploads<T> {
    rt: Handle,
    /// Tickets taken and not yet spent by [`Uploads::spawn`].
    starting: Mutex<usize>,
    started: Condvar,
    permits: Arc<Semaphore>,
    running: Mutex<Vec<JoinHandle<()>>>,
    failed: Arc<Mutex<Vec<(T, String)>>>,
    /// How many of `failed` were reported by [`Uploads::check`].
    reported: Mutex<usize>,
}

impl<T: Clone + Send + 'static> Uploads<T> {
    /// No uploads yet, on runtime `rt`.
    pub fn new(rt: Handle) -> Self {
        Uploads {
            rt,
            starting: Mutex::new(0),
            started: Condvar::new(),
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            running: Mutex::new(Vec::new()),
            failed: Arc::new(Mutex::new(Vec::new())),
            reported: Mutex::new(0),
        }
    }

    /// A ticket for one upload, which [`Uploads::wait`] waits for until
    /// it is spent.
    pub fn begin(&self) -> Result<Ticket> {
        *lock(&self.starting)? += 1;
        Ok(Ticket(()))
    }

    /// Starts `job(item)` once fewer than [`IN_FLIGHT`] uploads run
    /// (waiting for one to finish); on failure `item` is kept for
    /// [`Uploads::take_failed`].
    pub fn spawn<F, Fut>(&self, ticket: Ticket, item: T, job: F) -> Result<()>
    where
        F: FnOnce(T) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let r = self.start(item, job);
        drop(ticket);
        if let Ok(mut n) = self.starting.lock() {
            *n = n.saturating_sub(1);
        }
        self.started.notify_all();
        r
    }

    fn start<F, Fut>(&self, item: T, job: F) -> Result<()>
    where
        F: FnOnce(T) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let permit = self
            .rt
            .block_on(self.permits.clone().acquire_owned())
            .map_err(|_| Error::Store("s3 store: upload slots closed".into()))?;
        let failed = self.failed.clone();
        let fut = job(item.clone());
        let handle = self.rt.spawn(async move {
            let r = fut.await;
            drop(permit);
            if let Err(e) = r {
                tracing::warn!("{e}");
                if let Ok(mut f) = failed.lock() {
                    f.push((item, e.to_string()));
                }
            }
        });
        let mut running = lock(&self.running)?;
        running.retain(|h| !h.is_finished());
        running.push(handle);
        Ok(())
    }

    /// The first failure of a background upload not yet reported, as an
    /// error; each failure is reported once (the caller knows then), and
    /// the failed uploads wait for the next sync.
    pub fn check(&self) -> Result<()> {
        let failed = lock(&self.failed)?;
        let mut reported = lock(&self.reported)?;
        if *reported >= failed.len() {
            return Ok(());
        }
        let why = &failed[*reported].1;
        let more = failed.len() - *reported - 1;
        *reported = failed.len();
        Err(Error::Store(format!(
            "{why} (in a background upload{}; the next sync tries again)",
            if more > 0 {
                format!(", and {more} more failed")
            } else {
                String::new()
            }
        )))
    }

    /// Waits for every upload whose ticket was taken so far.
    pub fn wait(&self) -> Result<()> {
        let mut n = lock(&self.starting)?;
        while *n > 0 {
            n = self
                .started
                .wait(n)
                .map_err(|_| Error::Store("s3 store: upload state lock poisoned".into()))?;
        }
        drop(n);
        let running = std::mem::take(&mut *lock(&self.running)?);
        for h in running {
            self.rt
                .block_on(h)
                .map_err(|e| Error::Store(format!("s3 store: an upload task failed: {e}")))?;
        }
        Ok(())
    }

    /// The failed uploads, to be tried again.
    pub fn take_failed(&self) -> Result<Vec<(T, String)>> {
        let mut failed = lock(&self.failed)?;
        *lock(&self.reported)? = 0;
        Ok(std::mem::take(&mut *failed))
    }

    /// Puts back uploads that failed again.
    pub fn put_back(&self, items: Vec<(T, String)>) -> Result<()> {
        let mut failed = lock(&self.failed)?;
        failed.extend(items);
        // The sync that puts them back reports them.
        *lock(&self.reported)? = failed.len();
        Ok(())
    }

    /// Whether an upload is running.
    pub fn running(&self) -> bool {
        self.running
            .lock()
            .map(|r| r.iter().any(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    /// Whether an upload failed (and was reported, or will be by the next
    /// add or sync).
    pub fn failed(&self) -> bool {
        self.failed.lock().map(|f| !f.is_empty()).unwrap_or(true)
    }
}
