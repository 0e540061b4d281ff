//! A scanner that misbehaves on purpose. What it does depends on the
//! extension of the file it scans:
//!
//! - `.loop`: never returns from `feed`;
//! - `.alloc`: allocates memory without bound;
//! - `.trap`: panics (a wasm trap);
//! - `.unsorted`: returns offsets in descending order;
//! - `.range`: returns an offset beyond the data fed;
//! - `.startloop`: never returns from the constructor;
//! - anything else: behaves, proposing a boundary every 20,000 bytes.
//!
//! `sniff` never returns for a file whose head starts with `LOOPSNIFF`.

use vt_sdk::{Info, Scanner};

/// Misbehaviour chosen from the file name.
#[derive(Default)]
pub struct Hostile {
    mode: String,
    hoard: Vec<Vec<u8>>,
}

impl Scanner for Hostile {
    fn info() -> Info {
        Info::new("hostile", "0.1.0").extensions(&[
            "loop", "alloc", "trap", "unsorted", "range", "startloop", "fine",
        ])
    }

    fn sniff(_filename: &str, head: &[u8]) -> u8 {
        if head.starts_with(b"LOOPSNIFF") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        0
    }

    fn start(&mut self, filename: &str) {
        self.mode = filename.rsplit_once('.').map(|(_, e)| e.to_string()).unwrap_or_default();
        if self.mode == "startloop" {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
    }

    fn scan(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>) {
        let end = offset + data.len() as u64;
        match self.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => loop {
                self.hoard.push(vec![1u8; 1 << 20]);
            },
            "trap" => panic!("hostile scanner panics on purpose"),
            "unsorted" => out.extend([end, offset + 1]),
            "range" => out.push(end + 1_000_000),
            _ => {
                let mut next = (offset / 20_000 + 1) * 20_000;
                while next <= end {
                    out.push(next);
                    next += 20_000;
                }
            }
        }
    }
}

vt_sdk::export_scanner!(Hostile);
