//! SIGINT and SIGTERM for the commands that run until stopped (`vt mount`,
//! `vt serve`): blocked in every thread, and waited for by one thread of
//! their own, which winds the command down.

/// SIGINT and SIGTERM, blocked.
pub struct TermSignals(libc::sigset_t);

/// Blocks SIGINT and SIGTERM in this thread and in the threads it starts
/// from now on (call it before starting any).
pub fn block() -> TermSignals {
    // SAFETY: plain signal-mask calls on a zeroed, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        TermSignals(set)
    }
}

impl TermSignals {
    /// Runs `f` with the signal's number, in a thread of its own, when
    /// the first of them arrives.
    pub fn on_signal(self, f: impl FnOnce(i32) + Send + 'static) {
        let set = self.0;
        let r = std::thread::Builder::new()
            .name("vt-signals".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                // SAFETY: the set is initialised; sig is a valid out-pointer.
                unsafe { libc::sigwait(&set, &mut sig) };
                f(sig);
            });
        if let Err(e) = r {
            tracing::warn!("cannot watch for signals: {e}");
        }
    }
}
