//! The sandbox a plugin instance runs in: no capabilities, a memory limit
//! and a CPU deadline.
//!
//! A scanner component built for `wasm32-wasip2` imports WASI interfaces
//! (the Rust standard library links them), so the host provides WASI with an
//! empty context: no preopened directories, no environment or arguments, no
//! network, stdio closed, and clocks frozen at zero. (WASI's random
//! numbers are left working: the standard library's hash maps use them.)

use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxView, WasiView,
};

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
            },
        );
        store.limiter(|s| &mut s.limits as &mut dyn ResourceLimiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(BASE_TICKS);
        store
    }

    /// A fresh store for a store plugin's instance: as [`Sandbox::store`]
    /// with at most `memory` bytes of memory, plus directory `preopen` (if
    /// given), read-write, which the plugin sees as `/store`.
    pub fn store_with_dir(
        engine: &PluginEngine,
        preopen: Option<&std::path::Path>,
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
        Ok(store)
    }

    /// Sets the deadline of the next call, given how many bytes it is fed.
    pub fn deadline(store: &mut Store<Sandbox>, bytes: usize) {
        store.set_epoch_deadline(BASE_TICKS + (bytes as u64 >> 16));
    }
}
