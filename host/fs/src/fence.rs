//! Keeps pushes from overwriting what a writer put in the page cache.
//!
//! Files fetched ahead are pushed into the kernel's page cache
//! (`notify_store`) with their stored content. On a read-write mount a
//! file may be written meanwhile: a write goes through the page cache,
//! and a push of the old content landing after it would show readers
//! stale bytes. So whatever may change a file's content (opening it for
//! writing, truncating it, creating it) first marks it changed: no push
//! of it starts after the mark, and the mark waits for a push of that file
//! under way. Only pushes of the same file are waited for, and only for a
//! while ([`PushFence::mark_changed`]): a push can itself wait for a READ
//! of that file, which needs a free request thread.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::inode::Ino;

/// Files changed during the mount, and pushes under way.
#[derive(Default)]
pub struct PushFence {
    state: Mutex<FenceState>,
    ended: Condvar,
}

#[derive(Default)]
struct FenceState {
    changed: HashSet<Ino>,
    pushing: HashMap<Ino, usize>,
}

/// What became of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Done, and the file was not marked meanwhile.
    Done,
    /// Not done: the file was marked changed before.
    Skipped,
    /// Done, but the file was marked changed while it ran (its marker
    /// gave up waiting): the caller drops what it pushed.
    Overtaken,
}

impl PushFence {
    fn lock(&self) -> MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `push` for file `ino` unless it was marked changed.
    pub fn push(&self, ino: Ino, push: impl FnOnce()) -> Pushed {
        {
            let mut g = self.lock();
            if g.changed.contains(&ino) {
                return Pushed::Skipped;
            }
            *g.pushing.entry(ino).or_default() += 1;
        }
        push();
        let mut g = self.lock();
        if let Some(n) = g.pushing.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                g.pushing.remove(&ino);
                self.ended.notify_all();
            }
        }
        if g.changed.contains(&ino) {
            Pushed::Overtaken
        } else {
            Pushed::Done
        }
    }

    /// Marks file `ino` changed: no push of it starts after this returns,
    /// and a push of it under way is waited for, up to `wait`. Whether no
    /// push was left running (else [`PushFence::push`] reports it
    /// [`Pushed::Overtaken`]).
    pub fn mark_changed(&self, ino: Ino, wait: Duration) -> bool {
        let mut g = self.lock();
        g.changed.insert(ino);
        let deadline = Instant::now() + wait;
        while g.pushing.contains_key(&ino) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self
                .ended
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;

    #[test]
    fn a_changed_file_is_not_pushed_and_others_are() {
        let f = PushFence::default();
        assert!(f.mark_changed(7, Duration::ZERO));
        let ran = AtomicBool::new(false);
        assert_eq!(f.push(7, || ran.store(true, SeqCst)), Pushed::Skipped);
        assert!(!ran.load(SeqCst));
        assert_eq!(f.push(8, || ran.store(true, SeqCst)), Pushed::Done);
        assert!(ran.load(SeqCst));
    }

    #[test]
    fn marking_waits_for_a_push_of_that_file_under_way() {
        let f = Arc::new(PushFence::default());
        let (started, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let pusher = {
            let (f, started, release) = (f.clone(), started.clone(), release.clone());
            std::thread::spawn(move || {
                f.push(1, || {
                    started.store(true, SeqCst);
                    while !release.load(SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
        };
        while !started.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Another file's mark does not wait; this file's gives up in time.
        let t0 = Instant::now();
        assert!(f.mark_changed(2, Duration::from_secs(10)));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(!f.mark_changed(1, Duration::from_millis(50)));
        // A mark that outlasts the push: returns once it ended.
        let marker = {
            let f = f.clone();
            std::thread::spawn(move || f.mark_changed(1, Duration::from_secs(60)))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!marker.is_finished(), "the mark waits for the push");
        release.store(true, SeqCst);
        assert!(marker.join().unwrap());
        assert_eq!(pusher.join().unwrap(), Pushed::Overtaken);
        assert_eq!(f.push(1, || {}), Pushed::Skipped);
    }
}
