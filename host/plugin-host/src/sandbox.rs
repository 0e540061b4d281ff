//! The sandbox a plugin instance runs in: no capabilities, a memory limit
//! and a CPU deadline.
//!
//! A scanner component built for `wasm32-wasip2` imports WASI interfaces
//! (the Rust standard library links them), so the host provides WASI with an
//! empty context: no preopened directories, no environment or arguments, no
//! network, stdio closed, and clocks frozen at zero. (WASI's random
//! numbers are left working: the standard library's hash maps use them.)
//!
//! A store plugin's sandbox may be granted more by its vtrc clause: a
//! preopened directory, and outgoing HTTP to the hosts its `allow_hosts`
//! names ([`NetGrant`]); a request to any other host is refused before a
//! connection is made.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxView, WasiView,
};

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::PluginEngine;

/// Most linear memory one plugin instance may have (the largest buffer the
/// host feeds is 8 MiB plus the chunker's maximum block).
pub const MEMORY_LIMIT: usize = 256 << 20;

/// Epoch ticks (of [`crate::engine::TICK`]) a call may run: a base, plus
/// one per 64 KiB fed.
pub const BASE_TICKS: u64 = 100;

/// The data of a plugin's wasmtime `Store`.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    http: WasiHttpCtx,
    net: NetGrant,
}

impl WasiHttpView for Sandbox {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.net,
        }
    }
}

/// Which hosts a plugin may send HTTP requests to (none by default), and
/// the requests it was refused.
#[derive(Clone, Debug, Default)]
pub struct NetGrant {
    /// `host` (any port) or `host:port`, compared without case.
    allow: Vec<String>,
    /// Longest a connection, first byte or pause between bytes may take.
    timeout: Option<Duration>,
    /// The authorities of requests refused since [`Sandbox::take_denied`].
    denied: Arc<Mutex<Vec<String>>>,
}

impl NetGrant {
    /// Requests allowed to the hosts in `allow` (`host` or `host:port`),
    /// each wait bounded by `timeout`.
    pub fn new(allow: &[String], timeout: Duration) -> Self {
        NetGrant {
            allow: allow.iter().map(|h| h.to_ascii_lowercase()).collect(),
            timeout: Some(timeout),
            denied: Arc::default(),
        }
    }

    /// Whether a request to `host` on `port` is allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let with_port = format!("{host}:{port}");
        self.allow.iter().any(|e| *e == host || *e == with_port)
    }
}

type HttpResult<T> = wasmtime_wasi_http::Result<T>;
type HttpResponse = http::Response<wasmtime_wasi_http::WasiBody>;

impl WasiHttpHooks for NetGrant {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = HttpResult<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = HttpResult<(
                    HttpResponse,
                    Box<dyn Future<Output = HttpResult<()>> + Send>,
                )>,
            > + Send,
    > {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let allowed = uri.authority().is_some_and(|a| {
            let port = a.port_u16().unwrap_or(if https { 443 } else { 80 });
            self.allows(a.host(), port)
        });
        if !allowed {
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            if let Ok(mut d) = self.denied.lock() {
                d.push(authority);
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // The guest's own timeouts, but none longer than the clause's.
        let mut o = options.unwrap_or_default();
        if let Some(t) = self.timeout {
            for w in [
                &mut o.connect_timeout,
                &mut o.first_byte_timeout,
                &mut o.between_bytes_timeout,
            ] {
                *w = Some(w.map_or(t, |g| g.min(t)));
            }
        }
        struct Default;
        impl WasiHttpHooks for Default {}
        Default.send_request(request, Some(o), fut)
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock that always says zero.
struct Frozen;

impl HostWallClock for Frozen {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for Frozen {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl Sandbox {
    /// A fresh store for one plugin instance.
    pub fn store(engine: &PluginEngine) -> Store<Sandbox> {
        Self::store_with_memory(engine, MEMORY_LIMIT)
    }

    /// As [`Sandbox::store`], with at most `memory` bytes of linear memory.
    fn store_with_memory(engine: &PluginEngine, memory: usize) -> Store<Sandbox> {
        let wasi = WasiCtx::builder()
            .wall_clock(Frozen)
            .monotonic_clock(Frozen)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory)
            .instances(16)
            .tables(64)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            engine.engine(),
            Sandbox {
                wasi,
                table: ResourceTable::new(),
                limits,
                http: WasiHttpCtx::new(),
                net: NetGrant::default(),
            },
        );
        store.limiter(|s| &mut s.limits as &mut dyn ResourceLimiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(BASE_TICKS);
        store
    }

    /// A fresh store for a store plugin's instance: as [`Sandbox::store`]
    /// with at most `memory` bytes of memory, plus directory `preopen` (if
    /// given), read-write, which the plugin sees as `/store`, and HTTP
    /// requests as `net` allows.
    pub fn store_with_grants(
        engine: &PluginEngine,
        preopen: Option<&std::path::Path>,
        net: NetGrant,
        memory: usize,
    ) -> std::result::Result<Store<Sandbox>, String> {
        let mut b = WasiCtx::builder();
        // Calls are synchronous: file operations run on the calling thread
        // rather than bouncing through a blocking pool (a store's put is
        // a few of them, many thousand times an import).
        b.wall_clock(Frozen)
            .monotonic_clock(Frozen)
            .allow_blocking_current_thread(true);
        if let Some(dir) = preopen {
            b.preopened_dir(dir, "/store", wasmtime_wasi::FsPerms::ReadWrite)
                .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
        }
        let mut store = Self::store_with_memory(engine, memory);
        store.data_mut().wasi = b.build();
        store.data_mut().net = net;
        Ok(store)
    }

    /// The authorities of the HTTP requests refused since the last call.
    pub fn take_denied(&mut self) -> Vec<String> {
        self.net
            .denied
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    /// Sets the deadline of the next call, given how many bytes it is fed.
    pub fn deadline(store: &mut Store<Sandbox>, bytes: usize) {
        store.set_epoch_deadline(BASE_TICKS + (bytes as u64 >> 16));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_allows_the_hosts_it_names_and_no_other() {
        let g = NetGrant::new(
            &["Store.Example.org".into(), "127.0.0.1:8080".into()],
            Duration::from_secs(1),
        );
        assert!(g.allows("store.example.org", 443));
        assert!(g.allows("STORE.example.org", 80));
        assert!(g.allows("127.0.0.1", 8080));
        assert!(!g.allows("127.0.0.1", 8081));
        assert!(!g.allows("example.org", 443));
        assert!(!g.allows("evil.store.example.org", 443));
        assert!(!NetGrant::default().allows("127.0.0.1", 8080));
    }
}
