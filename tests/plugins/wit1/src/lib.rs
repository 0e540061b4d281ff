//! A scanner built against the first WIT version, 1.0.0, whose `wit/` is a
//! copy of vt's as it was then: it has no `seams` interface. It proposes
//! an offset every 1000 bytes of `.one` files.

wit_bindgen::generate!({ path: "wit", world: "scanner-plugin" });

use std::cell::Cell;

use exports::vt::plugin::scanner::{Guest, GuestScan, Info};

struct Wit1;

impl Guest for Wit1 {
    type Scan = Every1000;
    fn describe() -> Info {
        Info {
            name: "wit1".into(),
            version: "1.0.0".into(),
            extensions: vec!["one".into()],
            mime_types: vec![],
            magic: vec![],
        }
    }
    fn sniff(_: String, _: Vec<u8>) -> u8 {
        0
    }
}

struct Every1000(Cell<u64>);

impl GuestScan for Every1000 {
    fn new(_: String) -> Self {
        Every1000(Cell::new(1000))
    }
    fn feed(&self, offset: u64, data: Vec<u8>) -> Vec<u64> {
        let end = offset + data.len() as u64;
        let mut out = Vec::new();
        while self.0.get() <= end {
            out.push(self.0.get());
            self.0.set(self.0.get() + 1000);
        }
        out
    }
    fn finish(&self) -> Vec<u64> {
        Vec::new()
    }
}

export!(Wit1);
