use std::io;
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::dev_fuse::DevFuse;
use crate::passthrough::BackingId;
use crate::relay::Relay;

/// How long the reading thread polls the device before it sleeps, in
/// nanoseconds (0: it sleeps at once).
static POLL_NS: AtomicU64 = AtomicU64::new(0);

/// Sets how long, after each request, the request thread that reads the
/// device next polls it before it sleeps (zero, the default: never). (A
/// vt addition.) Where waking an idle CPU is slow, as on many virtual
/// machines, requests that follow each other closely, like the listings
/// of a directory walk, are then answered sooner, for the CPU time of the
/// polling. With polling on, one thread at a time reads the device (see
/// `relay.rs`).
pub fn set_request_poll(time: Duration) {
    POLL_NS.store(
        u64::try_from(time.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

thread_local! {
    /// The reader role of the session this request thread serves.
    static CURRENT: std::cell::RefCell<Option<Arc<Relay>>> = const { std::cell::RefCell::new(None) };
}

/// Called by a filesystem method that is about to wait (on storage, on
/// another thread): with request polling on, another request thread reads
/// the next request meanwhile. (A vt addition.) Does nothing outside a
/// request thread, or when this thread is not the reading one.
pub fn hand_off_reading() {
    if POLL_NS.load(Ordering::Relaxed) != 0 {
        CURRENT.with(|c| {
            if let Some(r) = c.borrow().as_ref() {
                r.hand_off();
            }
        });
    }
}

/// A raw communication channel to the FUSE kernel driver
#[derive(Debug, Clone)]
pub(crate) struct Channel(Arc<DevFuse>, Arc<Relay>);

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Channel {
    /// Create a new communication channel to the kernel driver by mounting the
    /// given path. The kernel driver will delegate filesystem operations of
    /// the given path to the channel.
    pub(crate) fn new(device: Arc<DevFuse>) -> Self {
        Self(device, Arc::default())
    }

    /// Receives data up to the capacity of the given buffer (can block).
    ///
    /// With request polling on, only the thread that holds the reader role
    /// reads (the others wait for it in [`Relay::lead`]), and it polls the
    /// device for up to [`set_request_poll`]'s time before it sleeps: a
    /// request that comes in meanwhile is taken without waking a CPU.
    fn receive(&self, buffer: &mut [u8], relay: bool) -> nix::Result<usize> {
        let poll = Duration::from_nanos(POLL_NS.load(Ordering::Relaxed));
        if poll.is_zero() || !relay {
            return nix::unistd::read(&self.0, buffer);
        }
        self.1.lead().map_err(|_| Errno::ENODEV)?;
        let deadline = Instant::now() + poll;
        // No poll after file data (see `Relay::after_data`).
        let ready = !self.1.after_data()
            && loop {
                let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
                match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
                    // Yielding lets other threads of this CPU run meanwhile.
                    Ok(0) if Instant::now() < deadline => std::thread::yield_now(),
                    Ok(0) => break false,
                    _ => break true,
                }
            };
        if !ready {
            self.1.sleep();
        }
        match nix::unistd::read(&self.0, buffer) {
            Ok(n) => {
                self.1.begin();
                Ok(n)
            }
            Err(e) => {
                self.1.wake();
                if e == Errno::ENODEV {
                    self.1.close();
                }
                Err(e)
            }
        }
    }

    /// Notes whether the request just read is file data (READ, WRITE):
    /// with request polling on, the next reader does not poll after one.
    pub(crate) fn note_request(&self, data: bool) {
        self.1.note_request(data);
    }

    /// Makes this thread's [`hand_off_reading`] hand this channel's reader
    /// role off.
    pub(crate) fn enter(&self) {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.1.clone()));
    }

    /// The session is over for this thread: with request polling on, the
    /// threads waiting for the reader role return ENODEV.
    pub(crate) fn close(&self) {
        self.1.close();
    }

    /// Receives data up to the capacity of the given buffer (can block),
    /// retrying on errors that are safe to retry (ENOENT, EINTR, EAGAIN).
    ///
    /// - ENOENT: Operation interrupted. According to FUSE, this is safe to retry.
    /// - EINTR: Interrupted system call, retry.
    /// - EAGAIN: Explicitly instructed to try again.
    /// `relay`: this is a request thread of a running session (and not
    /// the handshake before the threads start).
    pub(crate) fn receive_retrying(&self, buffer: &mut [u8], relay: bool) -> nix::Result<usize> {
        loop {
            match self.receive(buffer, relay) {
                Ok(size) => return Ok(size),
                Err(Errno::ENOENT | Errno::EINTR | Errno::EAGAIN) => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Returns a sender object for this channel. The sender object can be
    /// used to send to the channel. Multiple sender objects can be used
    /// and they can safely be sent to other threads.
    pub(crate) fn sender(&self) -> ChannelSender {
        // Since write/writev syscalls are threadsafe, we can simply create
        // a sender by using the same file and use it in other threads.
        ChannelSender(self.0.clone())
    }

    /// Clone the FUSE device fd using FUSE_DEV_IOC_CLONE ioctl.
    ///
    /// This creates a new fd that can read FUSE requests independently,
    /// enabling true parallel request processing. The kernel distributes
    /// requests across all cloned fds.
    ///
    /// Requires Linux 4.5+. Returns an error on older kernels or non-Linux.
    #[cfg(target_os = "linux")]
    pub(crate) fn clone_fd(&self) -> io::Result<Channel> {
        use std::os::fd::AsRawFd;

        let new_dev = DevFuse::open()?;

        let mut source_fd = self.0.as_raw_fd() as u32;
        // SAFETY: fuse_dev_ioc_clone is a valid ioctl for /dev/fuse
        unsafe {
            crate::ll::ioctl::fuse_dev_ioc_clone(new_dev.as_raw_fd(), &mut source_fd)?;
        }

        Ok(Channel(Arc::new(new_dev), self.1.clone()))
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ChannelSender(Arc<DevFuse>);

impl ChannelSender {
    pub(crate) fn send(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
        let rc = nix::sys::uio::writev(&self.0, bufs)?;
        // writev is atomic, so do not need to check how many bytes are written.
        // libfuse does not do it either
        // https://github.com/libfuse/libfuse/blob/6278995cca991978abd25ebb2c20ebd3fc9e8a13/lib/fuse_lowlevel.c#L267
        debug_assert_eq!(bufs.iter().map(|b| b.len()).sum::<usize>(), rc);
        Ok(())
    }

    pub(crate) fn open_backing(&self, fd: BorrowedFd<'_>) -> std::io::Result<BackingId> {
        BackingId::create(&self.0, fd)
    }

    pub(crate) unsafe fn wrap_backing(&self, id: u32) -> BackingId {
        unsafe { BackingId::wrap_raw(&self.0, id) }
    }
}
