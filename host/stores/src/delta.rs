//! Delta records: a block stored as the difference from a similar block
//! already stored (its *base*), as `vtd.5` specifies.
//!
//! The difference is a zstd frame compressed with the base as its
//! reference prefix (zstd's "patch-from"): where the block repeats the
//! base, the frame holds a match into it, and the rest is compressed as
//! usual. The frame carries zstd's content checksum, so decompressing it
//! against a wrong or damaged base fails instead of giving other data.
//!
//! One level only: a base is never itself a delta (the DataDir picks
//! bases from blocks it stored whole, and a read refuses a delta base), so
//! a read decompresses at most two records.

use std::cell::RefCell;

use vt_core::{Hash, HashKind};
use zstd::zstd_safe::{CCtx, CParameter, DCtx, ResetDirective};

/// Bytes of the base's hashcode at the start of a delta payload: its hash
/// kind id, then its 32-byte digest.
pub const BASE_LEN: usize = 33;

/// The payload of a delta record: `base`'s hashcode and `frame`.
pub fn encode_payload(base: &Hash, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BASE_LEN + frame.len());
    out.push(base.kind.id());
    out.extend_from_slice(&base.bytes);
    out.extend_from_slice(frame);
    out
}

/// Splits a delta payload into its base's hashcode and the frame.
pub fn parse_payload(payload: &[u8]) -> Result<(Hash, &[u8]), String> {
    if payload.len() <= BASE_LEN {
        return Err("delta record too short for its base's hashcode".into());
    }
    let kind = HashKind::from_id(payload[0]).map_err(|_| {
        format!(
            "delta record names a base of unknown hash kind {}",
            payload[0]
        )
    })?;
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&payload[1..BASE_LEN]);
    Ok((Hash { kind, bytes }, &payload[BASE_LEN..]))
}

thread_local! {
    /// This thread's compression context for deltas (a context per delta
    /// made and freed again left the allocator holding tens of megabytes).
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    /// This thread's decompression context for deltas.
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

fn zstd_error(what: &str, code: usize) -> String {
    format!("{what}: {}", zstd::zstd_safe::get_error_name(code))
}

/// Extends `prefix`'s lifetime for a thread-local context.
///
/// SAFETY: the caller must make sure the context uses it only until the
/// next frame ends or the context is reset: zstd uses a referenced prefix
/// for one frame only, and [`compress`] and [`decompress`] reset their
/// context (session and parameters, which drops the prefix) after each
/// frame, finished or not.
unsafe fn for_one_frame(prefix: &[u8]) -> &'static [u8] {
    // SAFETY: see above.
    unsafe { std::slice::from_raw_parts(prefix.as_ptr(), prefix.len()) }
}

/// Compresses `data` at `level` with `base` as the reference prefix.
pub fn compress(base: &[u8], data: &[u8], level: i32) -> Result<Vec<u8>, String> {
    CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(CCtx::try_create().ok_or("cannot create a zstd context")?);
        }
        let cx = slot.as_mut().ok_or("no zstd context")?;
        let res = (|| {
            cx.set_parameter(CParameter::CompressionLevel(level))
                .map_err(|c| zstd_error("zstd level", c))?;
            cx.set_parameter(CParameter::ChecksumFlag(true))
                .map_err(|c| zstd_error("zstd checksum flag", c))?;
            cx.set_pledged_src_size(Some(data.len() as u64))
                .map_err(|c| zstd_error("zstd source size", c))?;
            // SAFETY: the context is reset below, before `base` goes.
            cx.ref_prefix(unsafe { for_one_frame(base) })
                .map_err(|c| zstd_error("zstd prefix", c))?;
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
            cx.compress2(&mut out, data)
                .map_err(|c| zstd_error("zstd compress", c))?;
            Ok(out)
        })();
        if cx.reset(ResetDirective::SessionAndParameters).is_err() {
            *slot = None;
        }
        res
    })
}

/// Decompresses `frame`, made by [`compress`] against `base`, to exactly
/// `raw_len` bytes; fails if the frame's checksum or length disagrees
/// (as it does when `base` is not the block it was made against).
pub fn decompress(base: &[u8], frame: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(DCtx::try_create().ok_or("cannot create a zstd context")?);
        }
        let dx = slot.as_mut().ok_or("no zstd context")?;
        let res = (|| {
            // SAFETY: the context is reset below, before `base` goes.
            dx.ref_prefix(unsafe { for_one_frame(base) })
                .map_err(|c| zstd_error("zstd prefix", c))?;
            // One byte more than expected, to tell a frame that is too long.
            let mut out = Vec::with_capacity(raw_len + 1);
            dx.decompress(&mut out, frame)
                .map_err(|c| zstd_error("delta does not decompress against its base", c))?;
            if out.len() != raw_len {
                return Err(format!(
                    "delta decompressed to {} bytes, header says {raw_len}",
                    out.len()
                ));
            }
            Ok(out)
        })();
        if dx.reset(ResetDirective::SessionAndParameters).is_err() {
            *slot = None;
        }
        res
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"abcdefghij klmnop\n"[(x >> 60) as usize]
            })
            .collect()
    }

    #[test]
    fn a_small_change_makes_a_small_delta_that_restores_exactly() {
        let base = text(1, 64 << 10);
        let mut data = base.clone();
        data[1000..1010].copy_from_slice(b"0123456789");
        data.extend_from_slice(b"and a new tail");
        let frame = compress(&base, &data, 3).unwrap();
        assert!(frame.len() < 200, "{} bytes", frame.len());
        assert_eq!(decompress(&base, &frame, data.len()).unwrap(), data);
    }

    #[test]
    fn a_wrong_base_or_length_is_an_error_never_data() {
        let base = text(1, 16 << 10);
        let mut data = base.clone();
        data[5] ^= 1;
        let frame = compress(&base, &data, 3).unwrap();
        let mut other = base.clone();
        other[100] ^= 1;
        assert!(decompress(&other, &frame, data.len()).is_err());
        assert!(decompress(&base, &frame, data.len() - 1).is_err());
        assert!(decompress(&base, &frame[..frame.len() - 1], data.len()).is_err());
    }

    #[test]
    fn payload_names_its_base() {
        let h = HashKind::Sha3_256.digest(b"base");
        let p = encode_payload(&h, b"frame");
        let (b, f) = parse_payload(&p).unwrap();
        assert_eq!((b, f), (h, &b"frame"[..]));
        assert!(parse_payload(&p[..BASE_LEN]).is_err());
        let mut bad = p.clone();
        bad[0] = 0xee;
        assert!(parse_payload(&bad).is_err());
    }
}
