//! vt over HTTP: `vt httpd` ([`HttpServer`]) serves a store's blocks,
//! trees and archives to any HTTP client, and [`HttpStore`] is a store on
//! such a server (`vt-http.5`).

pub mod body;
pub mod client;
pub mod listing;
pub mod range;
pub mod server;
#[cfg(test)]
mod tests;

pub use client::HttpStore;
pub use server::{HttpOptions, HttpServer};
