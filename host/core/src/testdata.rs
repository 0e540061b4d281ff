//! Test inputs shared by the unit tests.

/// `n` pseudo-random bytes (xorshift64 from `seed`, which must not be 0):
/// incompressible, and the same for the same seed.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
