//! Fills a DataDir with N distinct tiny blocks, to measure vt against a
//! store that already holds millions of blocks (see bench/rss.sh).
//!
//! Usage: cargo run --release -p vt-stores --example fill_datadir -- DIR N

use std::path::PathBuf;

use vt_core::{HashKind, Store};
use vt_stores::DataDir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next()) else {
        return Err("usage: fill_datadir DIR N".into());
    };
    let n: u64 = n.parse()?;
    let dd = DataDir::open(&PathBuf::from(dir), Some(HashKind::Sha3_256))?;
    let start = dd.stats()?.blocks;
    for i in start..start + n {
        dd.add(format!("fill block {i:016}").as_bytes())?;
        if i % 1_000_000 == 0 {
            eprintln!("{i} blocks");
        }
    }
    dd.sync()?;
    println!("{} blocks in the store", dd.stats()?.blocks);
    Ok(())
}
