//! Runs a [`Scanner`] natively, the way the host runs it as a plugin, so a
//! scanner can be unit-tested with `cargo test` and no wasm.

use crate::store::{BlockStore, StoreError};
use crate::Scanner;

/// The buffer size the host feeds scanners with (8 MiB).
pub const HOST_BUFFER: usize = 8 << 20;

/// Scans `data` fed in buffers of `buffer` bytes (the last may be shorter)
/// and returns every proposed offset, as the host would receive them.
pub fn scan_buffers<S: Scanner>(filename: &str, data: &[u8], buffer: usize) -> Vec<u64> {
    let mut s = S::default();
    s.start(filename);
    let mut out = Vec::new();
    for (i, chunk) in data.chunks(buffer.max(1)).enumerate() {
        s.scan((i * buffer.max(1)) as u64, chunk, &mut out);
    }
    s.finish(&mut out);
    out
}

/// Scans `data` fed in host-sized buffers.
pub fn scan<S: Scanner>(filename: &str, data: &[u8]) -> Vec<u64> {
    scan_buffers::<S>(filename, data, HOST_BUFFER)
}

/// Checks what the host checks of a scanner's output: strictly ascending,
/// and within `(0, len]`. Returns a description of the first problem.
pub fn check_offsets(offsets: &[u64], len: u64) -> Result<(), String> {
    let mut last = 0u64;
    for (i, &o) in offsets.iter().enumerate() {
        if o == 0 || o > len {
            return Err(format!("offset #{i} = {o} is outside (0, {len}]"));
        }
        if i > 0 && o <= last {
            return Err(format!("offset #{i} = {o} does not follow {last}"));
        }
        last = o;
    }
    Ok(())
}

/// Asserts that scanning gives the same offsets whatever the buffer size
/// (state carried between buffers correctly), and that they pass
/// [`check_offsets`]. Returns the offsets.
pub fn assert_consistent<S: Scanner>(filename: &str, data: &[u8]) -> Vec<u64> {
    let whole = scan_buffers::<S>(filename, data, data.len().max(1));
    if let Err(e) = check_offsets(&whole, data.len() as u64) {
        panic!("{}: {e}", S::info().name);
    }
    for size in [1usize, 2, 3, 7, 64, 4096] {
        let split = scan_buffers::<S>(filename, data, size);
        assert_eq!(
            split,
            whole,
            "{}: offsets differ when fed in {size}-byte buffers",
            S::info().name
        );
    }
    whole
}

/// Exercises store `T` natively over directory `root` (which the test
/// makes, as the host's `preopen` would be), as vt uses a store: puts,
/// gets (exact bytes), a second put of a block (not new), contains,
/// an absent block, and an archive appended to twice. Panics, saying
/// what went wrong.
pub fn store_round_trip<T: BlockStore>(root: &std::path::Path, config: &[(String, String)]) {
    std::fs::create_dir_all(root).expect("make the store's directory");
    let s = T::open(Some(root), config).unwrap_or_else(|e| panic!("open: {e:?}"));
    let blocks: Vec<(String, Vec<u8>)> = (0..20u8)
        .map(|i| {
            let data: Vec<u8> = (0..(i as usize * 997 + 1)).map(|j| (j as u8) ^ i).collect();
            (format!("sha3_256:{:02x}{}", i, "ab".repeat(31)), data)
        })
        .collect();
    for (h, d) in &blocks {
        assert!(s.put(h, d).expect("put"), "{h}: a first put is new");
    }
    assert!(
        !s.put(&blocks[0].0, &blocks[0].1).expect("put"),
        "a second put is not new"
    );
    s.flush().expect("flush");
    for (h, d) in &blocks {
        assert!(s.contains(h).expect("contains"), "{h} held");
        assert_eq!(
            s.get(h).expect("get").as_deref(),
            Some(&d[..]),
            "{h}: exact bytes"
        );
    }
    let absent = format!("sha3_256:{}", "cd".repeat(32));
    assert!(!s.contains(&absent).expect("contains"));
    assert_eq!(s.get(&absent).expect("get"), None);
    match s.archive_append("snap", b"line one\n") {
        Err(StoreError::Unsupported(_)) => return,
        r => r.expect("archive_append"),
    }
    s.archive_append("snap", b"line two\n")
        .expect("archive_append");
    assert!(s
        .archive_names()
        .expect("archive_names")
        .contains(&"snap".to_string()));
    assert_eq!(
        s.archive_read("snap").expect("archive_read").as_deref(),
        Some(&b"line one\nline two\n"[..])
    );
}
