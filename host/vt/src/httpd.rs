//! `vt httpd`: a store's blocks, trees and archives over HTTP
//! (`vt-http.5`), for browsers, curl and the HTTP store.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use vt_stores::http::{HttpOptions, HttpServer};
use vt_stores::stream::Shutdown;

use crate::config::{expand, Config};
use crate::serve::{read_token, tcp_addr};

/// Where `vt httpd` listens when told nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// Arguments of `vt httpd`.
#[derive(clap::Args)]
pub struct HttpdArgs {
    /// Listen on ADDR:PORT (or just PORT, on 127.0.0.1) [default: the
    /// [httpd] listen of vtrc, else 127.0.0.1:8470].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Accept writes (PUT /h/HASH, archive lines: the HTTP store) from
    /// clients presenting the token in this file (its first line);
    /// without it the server is read-only.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// `vt httpd`.
pub fn httpd(
    args: HttpdArgs,
    cfg: &Config,
    store_spec: Option<&str>,
    quiet: bool,
) -> Result<ExitCode> {
    let token_file = args
        .token_file
        .clone()
        .or_else(|| cfg.httpd.token_file.as_deref().map(expand));
    let token = token_file.as_deref().map(read_token).transpose()?;
    let listen = args
        .listen
        .clone()
        .or_else(|| cfg.httpd.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let addr = tcp_addr(&listen)?;
    if !addr.ip().is_loopback() && token.is_some() {
        tracing::warn!(
            "listening on {addr} with a token: HTTP carries it in clear text, so anyone on the path can take it and write; keep writers on loopback or a trusted network"
        );
    }
    let st = cfg.open_store(store_spec, false)?;
    let l = TcpListener::bind(addr).with_context(|| format!("listen on {addr}"))?;
    let bound = l.local_addr().unwrap_or(addr);
    let stop = Shutdown::new();
    let on_stop = stop.clone();
    crate::signals::block().on_signal(move |sig| {
        if !quiet {
            eprintln!("vt: signal {sig}: stopping");
        }
        on_stop.trigger();
    });
    if !quiet {
        eprintln!(
            "vt: serving {} on http://{bound}/{}",
            st.name,
            if token.is_some() { "" } else { " (read-only)" }
        );
    }
    let server = Arc::new(HttpServer::new(st.store.clone(), HttpOptions { token }));
    server.run(l, stop)?;
    Ok(ExitCode::SUCCESS)
}
