//! What WIT 1.1 brought: the `seams` interface (a scanner's `min-block`).
//! A 1.0 plugin does not export it, so it is looked up by name on the
//! instance rather than bound through a world.

use wasmtime::component::Component;
use wasmtime::Store;

use crate::sandbox::Sandbox;

/// The export that holds `min-block` (any 1.x from 1.1 matches).
pub const SEAMS: &str = "vt:plugin/seams@1.1.0";

/// The plugin's `min-block` if it exports the `seams` interface (WIT 1.1
/// and later), else 0.
pub fn min_block(
    component: &Component,
    raw: &wasmtime::component::Instance,
    store: &mut Store<Sandbox>,
) -> wasmtime::Result<u32> {
    let Some(seams) = component.get_export_index(None, SEAMS) else {
        return Ok(0);
    };
    let Some(func) = component.get_export_index(Some(&seams), "min-block") else {
        return Ok(0);
    };
    let f = raw.get_typed_func::<(), (u32,)>(&mut *store, func)?;
    let (v,) = f.call(&mut *store, ())?;
    Ok(v)
}
