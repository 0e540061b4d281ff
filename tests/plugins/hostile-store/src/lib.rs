//! A store plugin that misbehaves on purpose, as its clause's `mode`
//! setting says:
//!
//! - `escape`: at open, tries to reach files outside its preopened
//!   directory (read `/etc/passwd`, write `/escaped` and
//!   `/store/../escaped`); open fails with `ESCAPED` if any works;
//! - `loop`: `get` never returns;
//! - `alloc`: `put` allocates memory without bound;
//! - `liar`: `get` returns other bytes than were put;
//! - anything else: a working store of one file per block.
//!
//! Blocks are files `/store/HASH`, the archive files `/store/a.NAME`.

use std::fs;
use std::io::Write;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "store-plugin",
});

use exports::vt::plugin::store::{Backend, Guest, GuestBackend, Info, Stats, StoreError};

struct Plugin;

impl Guest for Plugin {
    type Backend = Hostile;

    fn describe() -> Info {
        Info {
            name: "hostile-store".into(),
            version: "0.1.0".into(),
        }
    }
}

pub struct Hostile {
    mode: String,
    hoard: std::cell::RefCell<Vec<Vec<u8>>>,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl GuestBackend for Hostile {
    fn open(config: Vec<(String, String)>) -> Result<Backend, StoreError> {
        let mode = config
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if mode == "escape" {
            let mut escaped = Vec::new();
            if fs::read("/etc/passwd").is_ok() {
                escaped.push("read /etc/passwd");
            }
            if fs::write("/escaped", b"x").is_ok() {
                escaped.push("wrote /escaped");
            }
            if fs::write("/store/../escaped", b"x").is_ok() {
                escaped.push("wrote /store/../escaped");
            }
            if !escaped.is_empty() {
                return Err(StoreError::Config(format!("ESCAPED: {}", escaped.join(", "))));
            }
        }
        Ok(Backend::new(Hostile {
            mode,
            hoard: Default::default(),
        }))
    }

    fn get(&self, hash: String) -> Result<Option<Vec<u8>>, StoreError> {
        if self.mode == "loop" {
            spin();
        }
        match fs::read(format!("/store/{hash}")) {
            Ok(mut b) => {
                if self.mode == "liar" {
                    for x in &mut b {
                        *x ^= 0x5a;
                    }
                }
                Ok(Some(b))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    fn put(&self, hash: String, data: Vec<u8>) -> Result<bool, StoreError> {
        if self.mode == "alloc" {
            loop {
                self.hoard.borrow_mut().push(vec![1u8; 1 << 20]);
            }
        }
        let p = format!("/store/{hash}");
        if fs::metadata(&p).is_ok() {
            return Ok(false);
        }
        fs::write(&p, &data).map_err(io)?;
        Ok(true)
    }

    fn contains(&self, hash: String) -> Result<bool, StoreError> {
        Ok(fs::metadata(format!("/store/{hash}")).is_ok())
    }

    fn contains_many(&self, hashes: Vec<String>) -> Result<Vec<bool>, StoreError> {
        hashes.into_iter().map(|h| self.contains(h)).collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        Ok(Stats {
            blocks: 0,
            raw_bytes: 0,
            stored_bytes: 0,
        })
    }

    fn archive_names(&self) -> Result<Vec<String>, StoreError> {
        let mut v: Vec<String> = fs::read_dir("/store")
            .map_err(io)?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_prefix("a.").map(str::to_owned))
            .collect();
        v.sort();
        Ok(v)
    }

    fn archive_read(&self, name: String) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(format!("/store/a.{name}")) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    fn archive_append(&self, name: String, lines: Vec<u8>) -> Result<(), StoreError> {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("/store/a.{name}"))
            .and_then(|mut f| f.write_all(&lines))
            .map_err(io)
    }
}

export!(Plugin);
