//! The stream protocol (`vt-stream.5`): a store served over a byte stream
//! (`vt serve`) and the client store that speaks to it.
//!
//! - [`frame`]: length-prefixed, tagged frames;
//! - [`protocol`]: the operations and their bodies;
//! - [`server`]: `vt serve` on UNIX sockets, TCP (optionally TLS) and stdio;
//! - [`link`]: a client's connection, pipelined and kept up;
//! - [`client`]: [`StreamStore`], the `Store` over a link;
//! - [`prefetch`]: blocks asked for ahead of their readers;
//! - [`transport`]: how a client reaches a server;
//! - [`workers`]: the threads that run a server's store work.

pub mod client;
pub mod frame;
pub mod link;
pub mod prefetch;
pub mod protocol;
pub mod server;
pub mod transport;
pub mod workers;

pub use client::{StreamOptions, StreamStore};

/// Blocks SIGPIPE in the calling thread: the runtime threads that write to
/// sockets and pipes call it at start, so a peer that went away is an
/// `EPIPE` error there (handled: a client reconnects, a server drops the
/// connection) and not a signal that ends the process, whatever the
/// process's disposition for it (vt keeps the default, so that `vt cat …
/// | head` ends quietly).
pub(crate) fn block_sigpipe() {
    // SAFETY: plain signal-mask calls on a zeroed, initialised set, for
    // this thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
pub use link::LinkOptions;
pub use server::{Export, Listener, ServeOptions, Server, Shutdown};
pub use transport::Endpoint;

#[cfg(test)]
mod tests;
