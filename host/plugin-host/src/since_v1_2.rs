//! What WIT 1.2 brought: the `store` interface and the `store-plugin`
//! world (store schemes as components; see [`crate::store`]).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "store-plugin",
});
