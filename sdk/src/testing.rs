//! Runs a [`Scanner`] natively, the way the host runs it as a plugin, so a
//! scanner can be unit-tested with `cargo test` and no wasm.

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
