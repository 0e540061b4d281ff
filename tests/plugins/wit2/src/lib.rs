//! A well-behaved scanner, but of a future major version of the WIT package.

wit_bindgen::generate!({ path: "wit", world: "scanner-plugin" });

use exports::vt::plugin::scanner::{Guest, GuestScan, Info};

struct Wit2;

impl Guest for Wit2 {
    type Scan = Nothing;
    fn describe() -> Info {
        Info {
            name: "wit2".into(),
            version: "2.0.0".into(),
            extensions: vec!["two".into()],
            mime_types: vec![],
            magic: vec![],
        }
    }
    fn sniff(_: String, _: Vec<u8>) -> u8 {
        0
    }
}

struct Nothing;

impl GuestScan for Nothing {
    fn new(_: String) -> Self {
        Nothing
    }
    fn feed(&self, _: u64, _: Vec<u8>) -> Vec<u64> {
        Vec::new()
    }
    fn finish(&self) -> Vec<u64> {
        Vec::new()
    }
}

export!(Wit2);
