//! SHA3-256 of several messages at once, four to a vector register.
//!
//! SHA3 is a fifth of a first import's CPU, and the scalar Keccak
//! permutation runs at about 0.28 GB/s per core on the machines vt is
//! measured on. AVX2 holds the same lane of four Keccak states in one
//! 256-bit register, so one pass of the permutation advances four messages.
//! Messages of different lengths share the four slots: a slot whose message
//! ends takes the next one, so the slots stay busy until the queue runs out.
//! Without AVX2 (or for a single message) the `sha3` crate does the work.
// Off x86-64 only the one-by-one path is compiled in.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use sha3::Digest;

/// Bytes absorbed per permutation (the rate of SHA3-256).
const RATE: usize = 136;
/// Messages per vector.
const WAYS: usize = 4;

/// SHA3-256 of each message, in order.
pub fn sha3_256_many(msgs: &[&[u8]]) -> Vec<[u8; 32]> {
    #[cfg(target_arch = "x86_64")]
    {
        if msgs.len() >= 2 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { many_x4(msgs) };
        }
    }
    msgs.iter().map(|m| sha3_256(m)).collect()
}

/// SHA3-256 of one message (the `sha3` crate).
pub fn sha3_256(msg: &[u8]) -> [u8; 32] {
    sha3::Sha3_256::digest(msg).into()
}

/// A message being absorbed in one slot.
#[derive(Clone, Copy)]
struct Slot {
    /// Its index in the caller's list.
    msg: usize,
    /// Bytes of it absorbed so far.
    pos: usize,
}

/// The sponge over four slots. `state[i][s]` is lane `i` of slot `s`.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn many_x4(msgs: &[&[u8]]) -> Vec<[u8; 32]> {
    let mut out = vec![[0u8; 32]; msgs.len()];
    let mut state = [[0u64; WAYS]; 25];
    let mut slots: [Option<Slot>; WAYS] = [None; WAYS];
    let mut next = 0;
    for s in slots.iter_mut() {
        if next < msgs.len() {
            *s = Some(Slot { msg: next, pos: 0 });
            next += 1;
        }
    }
    let mut block = [0u8; RATE];
    loop {
        let busy = slots.iter().filter(|s| s.is_some()).count();
        if busy == 0 {
            break;
        }
        if busy == 1 && next == msgs.len() {
            // One message left: a four-way pass would do a quarter of its
            // work, so the scalar permutation finishes it.
            for (s, slot) in slots.iter().enumerate() {
                if let Some(sl) = slot {
                    let mut one = [0u64; 25];
                    for (i, lane) in state.iter().enumerate() {
                        one[i] = lane[s];
                    }
                    out[sl.msg] = finish(one, &msgs[sl.msg][sl.pos..]);
                }
            }
            break;
        }
        // Absorb one block into every busy slot; note which ones ended.
        let mut ending = [false; WAYS];
        for (s, slot) in slots.iter_mut().enumerate() {
            let Some(sl) = slot.as_mut() else { continue };
            let m = msgs[sl.msg];
            let rest = &m[sl.pos..];
            let bytes: &[u8] = if rest.len() >= RATE {
                sl.pos += RATE;
                &rest[..RATE]
            } else {
                // The last block: the rest, then SHA3's padding (01 then
                // 10*1, as the byte 0x06 ... 0x80).
                block.fill(0);
                block[..rest.len()].copy_from_slice(rest);
                block[rest.len()] ^= 0x06;
                block[RATE - 1] ^= 0x80;
                ending[s] = true;
                &block
            };
            for (i, w) in bytes.chunks_exact(8).enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(w);
                state[i][s] ^= u64::from_le_bytes(b);
            }
        }
        f1600_x4(&mut state);
        for (s, slot) in slots.iter_mut().enumerate() {
            if !ending[s] {
                continue;
            }
            if let Some(sl) = slot {
                let d = &mut out[sl.msg];
                for i in 0..4 {
                    d[i * 8..i * 8 + 8].copy_from_slice(&state[i][s].to_le_bytes());
                }
            }
            for lane in state.iter_mut() {
                lane[s] = 0;
            }
            *slot = (next < msgs.len()).then(|| {
                next += 1;
                Slot {
                    msg: next - 1,
                    pos: 0,
                }
            });
        }
    }
    out
}

/// Absorbs `rest` into the scalar state `a`, pads, and squeezes the digest.
fn finish(mut a: [u64; 25], rest: &[u8]) -> [u8; 32] {
    let mut chunks = rest.chunks_exact(RATE);
    for blk in chunks.by_ref() {
        absorb(&mut a, blk);
        keccak::f1600(&mut a);
    }
    let tail = chunks.remainder();
    let mut block = [0u8; RATE];
    block[..tail.len()].copy_from_slice(tail);
    block[tail.len()] ^= 0x06;
    block[RATE - 1] ^= 0x80;
    absorb(&mut a, &block);
    keccak::f1600(&mut a);
    let mut d = [0u8; 32];
    for i in 0..4 {
        d[i * 8..i * 8 + 8].copy_from_slice(&a[i].to_le_bytes());
    }
    d
}

/// XORs one block of [`RATE`] bytes into the first lanes of `a`.
fn absorb(a: &mut [u64; 25], blk: &[u8]) {
    for (lane, w) in a.iter_mut().zip(blk.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        *lane ^= u64::from_le_bytes(b);
    }
}

/// Round constants of Keccak-f[1600].
const RC: [u64; 24] = [
    0x0000_0000_0000_0001,
    0x0000_0000_0000_8082,
    0x8000_0000_0000_808A,
    0x8000_0000_8000_8000,
    0x0000_0000_0000_808B,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8009,
    0x0000_0000_0000_008A,
    0x0000_0000_0000_0088,
    0x0000_0000_8000_8009,
    0x0000_0000_8000_000A,
    0x0000_0000_8000_808B,
    0x8000_0000_0000_008B,
    0x8000_0000_0000_8089,
    0x8000_0000_0000_8003,
    0x8000_0000_0000_8002,
    0x8000_0000_0000_0080,
    0x0000_0000_0000_800A,
    0x8000_0000_8000_000A,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8080,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8008,
];

/// Rotation of lane `x + 5y` (rho).
const RHO: [u32; 25] = [
    0, 1, 62, 28, 27, //
    36, 44, 6, 55, 20, //
    3, 10, 43, 25, 39, //
    41, 45, 15, 21, 8, //
    18, 2, 61, 56, 14,
];

/// Keccak-f[1600] on four states at once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn f1600_x4(state: &mut [[u64; WAYS]; 25]) {
    use std::arch::x86_64::*;
    let rol = |v: __m256i, n: u32| -> __m256i {
        if n == 0 {
            v
        } else {
            _mm256_or_si256(
                _mm256_sll_epi64(v, _mm_cvtsi32_si128(n as i32)),
                _mm256_srl_epi64(v, _mm_cvtsi32_si128(64 - n as i32)),
            )
        }
    };
    let mut a = [_mm256_setzero_si256(); 25];
    for (v, lane) in a.iter_mut().zip(state.iter()) {
        // SAFETY: `lane` is 32 readable bytes; unaligned load.
        *v = unsafe { _mm256_loadu_si256(lane.as_ptr().cast()) };
    }
    for rc in RC {
        // theta
        let mut c = [_mm256_setzero_si256(); 5];
        for (x, cx) in c.iter_mut().enumerate() {
            *cx = _mm256_xor_si256(
                _mm256_xor_si256(_mm256_xor_si256(a[x], a[x + 5]), a[x + 10]),
                _mm256_xor_si256(a[x + 15], a[x + 20]),
            );
        }
        for x in 0..5 {
            let d = _mm256_xor_si256(c[(x + 4) % 5], rol(c[(x + 1) % 5], 1));
            for y in 0..5 {
                a[x + 5 * y] = _mm256_xor_si256(a[x + 5 * y], d);
            }
        }
        // rho and pi
        let mut b = [_mm256_setzero_si256(); 25];
        for x in 0..5 {
            for y in 0..5 {
                b[y + 5 * ((2 * x + 3 * y) % 5)] = rol(a[x + 5 * y], RHO[x + 5 * y]);
            }
        }
        // chi
        for y in 0..5 {
            for x in 0..5 {
                a[x + 5 * y] = _mm256_xor_si256(
                    b[x + 5 * y],
                    _mm256_andnot_si256(b[(x + 1) % 5 + 5 * y], b[(x + 2) % 5 + 5 * y]),
                );
            }
        }
        // iota
        a[0] = _mm256_xor_si256(a[0], _mm256_set1_epi64x(rc as i64));
    }
    for (v, lane) in a.iter().zip(state.iter_mut()) {
        // SAFETY: `lane` is 32 writable bytes; unaligned store.
        unsafe { _mm256_storeu_si256(lane.as_mut_ptr().cast(), *v) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        crate::testdata::pseudo_random(n, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    #[test]
    fn many_equals_one_by_one_for_every_length_around_the_rate() {
        // Lengths 0..600 cover empty, partial, exact and multiple blocks,
        // and the padding byte landing on the last byte of the rate.
        let msgs: Vec<Vec<u8>> = (0..600).map(|n| bytes(n, n as u64)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let got = sha3_256_many(&refs);
        for (m, d) in msgs.iter().zip(&got) {
            assert_eq!(*d, sha3_256(m), "length {}", m.len());
        }
    }

    #[test]
    fn mixed_sizes_share_the_slots() {
        let sizes = [70_000, 3, 256 << 10, 0, 136, 17_000, 65_536, 1, 135, 272];
        let msgs: Vec<Vec<u8>> = sizes.iter().map(|&n| bytes(n, n as u64 + 7)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        for k in 0..=refs.len() {
            let got = sha3_256_many(&refs[..k]);
            assert_eq!(got.len(), k);
            for (m, d) in msgs.iter().zip(&got) {
                assert_eq!(*d, sha3_256(m), "length {}", m.len());
            }
        }
        // The empty message, against FIPS 202's test vector.
        let empty = sha3_256_many(&[b"", b"abc"]);
        assert_eq!(
            crate::hash::hex(&empty[0]),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
        assert_eq!(
            crate::hash::hex(&empty[1]),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
    }
}

#[cfg(test)]
mod speed {
    /// Throughput of four-way hashing against one by one (run with
    /// `cargo test --release -p vt-core sha3x4_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn sha3x4_speed() {
        let msgs: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 16384 + i * 3000]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let total: usize = msgs.iter().map(Vec::len).sum();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let a = super::sha3_256_many(&refs);
            let many = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let b: Vec<[u8; 32]> = refs.iter().map(|m| super::sha3_256(m)).collect();
            let one = t.elapsed().as_secs_f64();
            assert_eq!(a, b);
            println!(
                "four at a time {:.0} MB/s, one by one {:.0} MB/s",
                total as f64 / many / 1e6,
                total as f64 / one / 1e6
            );
        }
    }
}
