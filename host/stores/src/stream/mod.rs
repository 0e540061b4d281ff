//! The stream protocol (`vt-stream.5`): a store served over a byte stream
//! (`vt serve`) and the client store that speaks to it.
//!
//! - [`frame`]: length-prefixed, tagged frames;
//! - [`protocol`]: the operations and their bodies;
//! - [`server`]: `vt serve` on UNIX sockets, TCP (optionally TLS) and stdio;
//! - [`link`]: a client's connection, pipelined and kept up;
//! - [`client`]: [`StreamStore`], the `Store` over a link;
//! - [`transport`]: how a client reaches a server.

pub mod client;
pub mod frame;
pub mod link;
pub mod protocol;
pub mod server;
pub mod transport;

pub use client::{StreamOptions, StreamStore};
pub use link::LinkOptions;
pub use server::{Export, Listener, ServeOptions, Server, Shutdown};
pub use transport::Endpoint;

#[cfg(test)]
mod tests;
