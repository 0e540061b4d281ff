//! The check of the fuzz target `plugin_returns`: what a scanner plugin
//! returns through WIT. Its includers (`fuzz_targets/plugin_returns.rs`,
//! `host/plugin-host/tests/fuzz_corpus.rs`) provide the module
//! `crate::returns`: `host/plugin-host/src/returns.rs` itself (included
//! with `#[path]`, so the fuzz crate builds no wasmtime) or
//! `vt_plugin_host::returns`.

#![allow(dead_code)]

use crate::returns::{confidence, valid_name, Offsets};
use vt_core::blockify::{AddStats, Blockifier};
use vt_core::read::read_all;
use vt_core::{BlockRef, ChunkParams, HashKind};

/// Returned values as a plugin gives them, checked as `WasmScan` checks
/// them (`Offsets::accept` on each call's list; a refused list drops the
/// plugin for the rest of the file), and what is accepted proposed to the
/// blockifier, as an import does.
struct Plugin<'a> {
    /// Varint-coded offsets; each call takes a count byte, then that many.
    answers: &'a [u8],
    offsets: Offsets,
    alive: bool,
    /// Every call's (end of the data fed, accepted offsets).
    accepted: Vec<(u64, Vec<u64>)>,
}

impl Plugin<'_> {
    fn answer(&mut self) -> Vec<u64> {
        let Some((&n, mut rest)) = self.answers.split_first() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for _ in 0..n % 16 {
            let mut v = 0u64;
            let mut shift = 0;
            while let Some((&b, r)) = rest.split_first() {
                rest = r;
                if shift < 64 {
                    v |= u64::from(b & 0x7f) << shift;
                }
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            out.push(v);
        }
        self.answers = rest;
        out
    }

    fn call(&mut self, end: u64) -> Vec<u64> {
        if !self.alive {
            return Vec::new();
        }
        let got = self.answer();
        let before = self.offsets;
        match self.offsets.accept(&got, end) {
            Ok(()) => {
                let mut last = before.last();
                for &o in &got {
                    assert!(o > last && o <= end, "accepted {o} after {last}, end {end}");
                    last = o;
                }
                assert_eq!(self.offsets.last(), last);
                self.accepted.push((end, got.clone()));
                got
            }
            Err(e) => {
                assert!(!e.is_empty());
                assert_eq!(self.offsets, before, "a refused call changed the state");
                self.alive = false;
                Vec::new()
            }
        }
    }
}

impl vt_core::Scanner for Plugin<'_> {
    fn name(&self) -> &str {
        "fuzz"
    }

    fn scan(&mut self, offset: u64, buf: &[u8]) -> Vec<u64> {
        self.call(offset + buf.len() as u64)
    }

    fn finish(&mut self) -> Vec<u64> {
        self.call(u64::MAX)
    }
}

/// What a plugin returns: `describe`'s name (`valid_name`), `sniff`'s
/// confidence (`confidence`) and the offsets of `feed` and `finish`.
///
/// The input: a length (two bytes, up to 64 KiB) of file data made up
/// here, then the plugin's answers, one a call: a count byte (modulo 16)
/// and that many LEB128 offsets (arbitrary u64s). The data is
/// blockified with small chunking parameters and the plugin as its
/// scanner. Invariants: a name `valid_name` accepts is `[a-z0-9-]{1,64}`;
/// a confidence is at most 100; accepted offsets rise strictly, follow
/// the last accepted and lie in `(0, end]`, and a refused list changes
/// nothing; whatever is proposed, the blocks read back as the data.
pub fn plugin_returns(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    if valid_name(&name) {
        assert!(name.len() <= 64 && !name.is_empty());
        assert!(name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-')));
    }
    if let Some(&c) = data.first() {
        assert!(confidence(c) <= 100);
        assert_eq!(confidence(c), c.min(100));
    }
    let [l1, l2, answers @ ..] = data else {
        return;
    };
    let len = usize::from(u16::from_le_bytes([*l1, *l2]));
    let file: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let store = vt_stores::memory::MemoryStore::new(HashKind::Blake3);
    let stats = AddStats::default();
    let params = ChunkParams {
        min: 256,
        scan_min: 16,
        avg: 1024,
        max: 4096,
    };
    let bf = Blockifier::new(&store, params, &stats);
    let mut p = Plugin {
        answers,
        offsets: Offsets::new(),
        alive: true,
        accepted: Vec::new(),
    };
    let r: BlockRef = bf
        .blockify_read(&file[..], Some(&mut p))
        .expect("blockify into memory");
    assert_eq!(r.span(), len as u64);
    assert_eq!(read_all(&store, &r).expect("read back"), file);
}
