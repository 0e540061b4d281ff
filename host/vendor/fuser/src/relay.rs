//! Which of a session's request threads reads the FUSE device (a vt
//! addition, used when request polling is on).
//!
//! Every thread blocked in `read(2)` on the device is a waiter the kernel
//! wakes when a request comes, even while another thread is polling for
//! it: on a virtual machine that wake is an interrupt to the other, halted
//! CPU, and the request is often answered from there, the slow way. So at
//! most one thread, the leader, reads the device; the others wait here.
//! The leader keeps the role while it answers a request, and reads the
//! next one itself: a chain of quick requests is answered by one thread on
//! the CPU of the process that sends them. When a request keeps the leader
//! busy for longer than [`TAKEOVER`], one waiting thread, the watcher,
//! takes the role over, so slow requests (a store read) still run side by
//! side.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long the leader may be busy with one request before the watcher
/// takes the reader role over (between one and two of these). The watcher
/// looks this often while the leader is awake: at 100 µs those wakes cost
/// a tar of a kernel tree through `vt mount` a tenth more CPU; requests
/// that wait on storage hand the role off at once ([`Relay::hand_off`]).
pub(crate) const TAKEOVER: Duration = Duration::from_millis(1);

/// State bit: the leader is answering a request.
const BUSY: u64 = 1;
/// State bit: the leader sleeps in `read(2)`.
const ASLEEP: u64 = 2;
/// The leader's thread number sits above the two flags...
const LEADER_SHIFT: u32 = 2;
const LEADER_BITS: u64 = (1 << 24) - 1;
/// ... and the request count above it.
const SEQ_SHIFT: u32 = 26;

/// A thread's number for [`Relay`]: unique among live threads (1 to 2^24-1,
/// wrapping).
fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static ME: Cell<u64> = const { Cell::new(0) });
    ME.with(|me| {
        if me.get() == 0 {
            let n = loop {
                let n = NEXT.fetch_add(1, Ordering::Relaxed) & LEADER_BITS;
                if n != 0 {
                    break n;
                }
            };
            me.set(n);
        }
        me.get()
    })
}

fn leader(s: u64) -> u64 {
    (s >> LEADER_SHIFT) & LEADER_BITS
}

/// State `s`'s request count with leader `who` (0: none), neither busy
/// nor asleep.
fn led_by(s: u64, who: u64) -> u64 {
    (s >> SEQ_SHIFT) << SEQ_SHIFT | who << LEADER_SHIFT
}

/// Who waits, and whether the session has ended.
#[derive(Debug, Default)]
struct Gate {
    watcher: bool,
    closed: bool,
}

/// The reader role shared by the request threads of one session.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    /// Request count, leader, flags (see the constants).
    state: AtomicU64,
    gate: Mutex<Gate>,
    /// The watcher waits here.
    watch: Condvar,
    /// The other waiting threads wait here.
    follow: Condvar,
    /// The last request read was file data (READ or WRITE): the next
    /// reader sleeps at once instead of polling ([`Relay::after_data`]).
    data: AtomicBool,
}

/// Why a thread could not become the leader.
#[derive(Debug)]
pub(crate) struct Closed;

impl Relay {
    fn lock(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once the calling thread is the leader: at once if it is
    /// (finishing the request it was answering), else after waiting for
    /// the role.
    pub(crate) fn lead(&self) -> Result<(), Closed> {
        let me = thread_number();
        loop {
            let s = self.state.load(Ordering::Acquire);
            let who = leader(s);
            if who == me {
                if s & BUSY == 0 {
                    return Ok(());
                }
                if self
                    .state
                    .compare_exchange(s, s & !BUSY, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(());
                }
                // Taken over meanwhile: wait below.
                continue;
            }
            if who == 0 {
                let mine = led_by(s, me);
                if self
                    .state
                    .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(());
                }
                continue;
            }
            if self.wait(me)? {
                return Ok(());
            }
        }
    }

    /// Waits while another thread leads. Returns true when this thread
    /// took the role over, false when the caller should look again.
    fn wait(&self, me: u64) -> Result<bool, Closed> {
        let mut g = self.lock();
        while g.watcher {
            if g.closed {
                return Err(Closed);
            }
            g = self.follow.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.watcher = true;
        let took = loop {
            if g.closed {
                g.watcher = false;
                return Err(Closed);
            }
            let s = self.state.load(Ordering::Acquire);
            if leader(s) == 0 || leader(s) == me {
                break false;
            }
            if s & ASLEEP != 0 {
                g = self.watch.wait(g).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            g = self
                .watch
                .wait_timeout(g, TAKEOVER)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            // The same request, still being answered: take over.
            if s & BUSY != 0 {
                let mine = led_by(s, me);
                if self
                    .state
                    .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    break true;
                }
            }
        };
        g.watcher = false;
        self.follow.notify_one();
        Ok(took)
    }

    /// Notes whether the request just read is file data (READ, WRITE).
    pub(crate) fn note_request(&self, data: bool) {
        self.data.store(data, Ordering::Relaxed);
    }

    /// Whether the last request read was file data. A reader does not
    /// poll after one: file data comes as a stream of READs or WRITEs,
    /// each a round trip through the reading process, which the kernel
    /// sends the next of only once that process has the previous one's
    /// pages (a large `cat`: a READ every 0.5 ms), so polling for it
    /// only takes the CPU that process and the store's threads need
    /// (cold reads of a 1 GiB file: 0.47-0.59 s without polling, against
    /// 0.53-0.84 s with it, 8 pairs).
    pub(crate) fn after_data(&self) -> bool {
        self.data.load(Ordering::Relaxed)
    }

    /// The leader is about to sleep in `read(2)`.
    pub(crate) fn sleep(&self) {
        self.state.fetch_or(ASLEEP, Ordering::AcqRel);
    }

    /// The leader read a request: it is now busy with it (and if it had
    /// slept, the watcher, which waited for it to wake, watches again).
    pub(crate) fn begin(&self) {
        let s = self.state.load(Ordering::Acquire);
        let next =
            (((s >> SEQ_SHIFT) + 1) << SEQ_SHIFT) | (s & (LEADER_BITS << LEADER_SHIFT)) | BUSY;
        // Only the leader changes a state that is not busy.
        self.state.store(next, Ordering::Release);
        if s & ASLEEP != 0 {
            self.rouse_watcher();
        }
    }

    /// The leader gives the role up before it answers a request that may
    /// be slow: the watcher, if there is one, takes it at once.
    pub(crate) fn hand_off(&self) {
        let me = thread_number();
        let s = self.state.load(Ordering::Acquire);
        if leader(s) != me {
            return;
        }
        let free = led_by(s, 0);
        if self
            .state
            .compare_exchange(s, free, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.rouse_watcher();
        }
    }

    /// The leader woke without a request (an interrupted read).
    pub(crate) fn wake(&self) {
        self.state.fetch_and(!ASLEEP, Ordering::AcqRel);
        self.rouse_watcher();
    }

    fn rouse_watcher(&self) {
        let _g = self.lock();
        self.watch.notify_one();
    }

    /// The session is over: every waiting thread returns [`Closed`].
    pub(crate) fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        self.watch.notify_all();
        self.follow.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    // (No `use` of `Arc`: this file is formatted as part of both fuser,
    // edition 2024, and vt's tests, edition 2021, which order it apart.)
    type Arc<T> = std::sync::Arc<T>;

    #[test]
    fn one_leader_at_a_time_and_slow_requests_are_taken_over() {
        let relay = Arc::new(Relay::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let slow = Arc::new(AtomicUsize::new(0));
        let beside_slow = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (relay, inside, most, answered) = (
                    relay.clone(),
                    inside.clone(),
                    most.clone(),
                    answered.clone(),
                );
                let (slow, beside_slow) = (slow.clone(), beside_slow.clone());
                std::thread::spawn(move || {
                    while relay.lead().is_ok() {
                        // The "read": only the leader may be here.
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        relay.begin();
                        let k = answered.fetch_add(1, Ordering::SeqCst);
                        if slow.load(Ordering::SeqCst) > 0 {
                            beside_slow.fetch_add(1, Ordering::SeqCst);
                        }
                        if k >= 60 {
                            relay.close();
                            break;
                        }
                        // Every tenth request is slow: taken over.
                        if k % 10 == 0 {
                            slow.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(10 * TAKEOVER);
                            slow.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(answered.load(Ordering::SeqCst) > 60);
        // Quick requests went on while slow ones were answered (taken
        // over): 54 of the 60 are quick, each after a slow one.
        let beside = beside_slow.load(Ordering::SeqCst);
        assert!(beside >= 40, "{beside} requests beside slow ones");
    }
}
