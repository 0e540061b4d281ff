//! The check of the fuzz target `vtrc`: the vtrc parser. Its includers
//! (`fuzz_targets/vtrc.rs`, `host/vt/tests/fuzz_corpus.rs`) also include
//! `host/vt/src/vtrc.rs` as the module `crate::vtrc` (`vt` is a binary
//! crate, so it cannot be a dependency).

#![allow(dead_code)]

use crate::vtrc::{parse, VtrcError};

/// The vtrc parser: the input, as lossy UTF-8, into `vtrc::parse`. It
/// must not panic (nor its error's `Display`); what it accepts is TOML
/// (`toml::Table` reads it too) and has a `type` in every
/// `[stores.NAME]`; `NoType` names a store that is there without one.
pub fn vtrc(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    match parse(&s) {
        Ok(c) => {
            assert!(
                s.parse::<toml::Table>().is_ok(),
                "vtrc::parse accepts text that is not TOML"
            );
            for (name, t) in &c.stores {
                assert!(
                    t.contains_key("type"),
                    "[stores.{name}] accepted without a type"
                );
            }
            assert!(c.source.is_none());
        }
        Err(e) => {
            let _ = e.to_string();
            if let VtrcError::NoType(name) = &e {
                let t: toml::Table = s.parse().expect("a NoType error for text that is TOML");
                let store = t
                    .get("stores")
                    .and_then(|v| v.get(name.as_str()))
                    .and_then(|v| v.as_table())
                    .unwrap_or_else(|| panic!("NoType({name:?}) names no store"));
                assert!(!store.contains_key("type"));
            }
        }
    }
}
