//! The checks of vt's fuzz targets, one function a target. The fuzz
//! targets (`fuzz_targets/*.rs`) and the replay test of the normal suite
//! (`host/stores/tests/fuzz_corpus.rs`) both include this file with
//! `#[path]`, so a corpus file is checked the same way in both places.
//!
//! Each function must return for any input; a panic (a failed `assert!`
//! included) is a bug in the code under test, and so, under libFuzzer's
//! `-malloc_limit_mb`, is an allocation far larger than the input.

#![allow(dead_code)]

use vt_core::archive::{check_lines, parse_text, ArchiveEntry};
use vt_stores::spec::{parse_size, StoreSpec};
use vt_stores::stream::frame::{split_frame, Frame, FLAG_CHANNEL, MAX_FRAME};
use vt_stores::stream::protocol::{DecodeError, Op, Reply, Request};

/// How many operations there are (`Op` numbers 0 to 14).
const OPS: u64 = 15;

/// The stream protocol's decoders.
///
/// The first byte of `data` picks the operation whose reply each frame's
/// body is decoded as (modulo the number of operations); the rest is a
/// byte stream split into frames with `split_frame` until it errs or
/// runs out. Each frame is decoded as a request and as that reply, and:
///
/// - every proper prefix of the frame's bytes is "read more", never an
///   error or a frame;
/// - the frame re-encodes (`Frame::encode`) to bytes that split back to
///   the same frame, whole (the encoder writes `FLAG_CHANNEL` exactly when
///   the channel is not 0, so a frame that came with the flag and an
///   explicit channel 0 comes back without the flag: the same frame);
/// - a request that decodes encodes again (`to_frame(tag, channel, _)`,
///   compressed or not) to a frame that decodes to an equal request, and
///   an unknown operation is reported as such only for numbers that name
///   no `Op`;
/// - a reply that decodes encodes again (`to_frames`) to frames whose
///   bodies, put together, decode to an equal reply.
pub fn stream_frame(data: &[u8]) {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let _ = Op::from_u64(u64::from(pick));
    let op = Op::from_u64(u64::from(pick) % OPS).expect("every number below 15 is an Op");
    while let Ok(Some((f, n))) = split_frame(rest) {
        assert!(n > 0 && n <= rest.len(), "split_frame took {n} bytes");
        for cut in 0..n {
            assert!(
                matches!(split_frame(&rest[..cut]), Ok(None)),
                "a prefix of {cut} of a {n}-byte frame is not \"read more\""
            );
        }
        frame_round_trip(&f);
        request_round_trip(&f);
        reply_round_trip(op, &f);
        rest = &rest[n..];
    }
}

fn frame_round_trip(f: &Frame) {
    let wire = f.encode();
    let (g, m) = match split_frame(&wire) {
        Ok(Some(x)) => x,
        other => panic!("{f:?} encodes to {wire:?}, which splits to {other:?}"),
    };
    assert_eq!(
        m,
        wire.len(),
        "{f:?}: split took {m} of {} bytes",
        wire.len()
    );
    let mut want = f.clone();
    if want.channel == 0 {
        want.flags &= !FLAG_CHANNEL;
    } else {
        want.flags |= FLAG_CHANNEL;
    }
    assert_eq!(g, want, "frame does not survive encode and split");
}

fn request_round_trip(f: &Frame) {
    let req = match Request::from_frame(f) {
        Ok(req) => req,
        Err(DecodeError::UnknownOp(n)) => {
            assert!(Op::from_u64(n).is_none(), "op {n} is known but refused");
            return;
        }
        Err(DecodeError::Malformed(_)) => return,
    };
    for compress in [false, true] {
        let g = req
            .to_frame(f.tag, f.channel, compress)
            .unwrap_or_else(|e| panic!("{req:?} decoded but does not encode: {e}"));
        assert_eq!((g.tag, g.channel), (f.tag, f.channel));
        let back = Request::from_frame(&g)
            .unwrap_or_else(|e| panic!("{req:?} encodes to {g:?}, which does not decode: {e:?}"));
        assert_eq!(back, req, "request does not survive encode and decode");
        // Through the wire too, when it fits in a frame (a payload that
        // came compressed may not fit uncompressed).
        let wire = g.encode();
        if wire.len() <= MAX_FRAME {
            let (h, _) = match split_frame(&wire) {
                Ok(Some(x)) => x,
                other => panic!("{g:?} splits to {other:?}"),
            };
            let back = Request::from_frame(&h).unwrap_or_else(|e| panic!("{h:?}: {e:?}"));
            assert_eq!(back, req, "request does not survive the wire");
        }
    }
}

fn reply_round_trip(op: Op, f: &Frame) {
    let Ok(rep) = Reply::decode(op, f.flags, &f.body) else {
        return;
    };
    // A name with a "\r" before the end of the text is read back without
    // it (the reply is split with `str::lines`); archive names cannot hold
    // control characters, so only the names' count is compared then.
    if let Reply::Names(ns) = &rep {
        if ns.iter().any(|n| n.contains('\r')) {
            let frames = rep.to_frames(f.tag, f.channel, false).expect("encode");
            let body: Vec<u8> = frames.iter().flat_map(|g| g.body.clone()).collect();
            match Reply::decode(op, frames[0].flags, &body) {
                Ok(Reply::Names(back)) => assert_eq!(back.len(), ns.len()),
                other => panic!("{rep:?} comes back as {other:?}"),
            }
            return;
        }
    }
    let frames = rep
        .to_frames(f.tag, f.channel, false)
        .unwrap_or_else(|e| panic!("{rep:?} decoded but does not encode: {e}"));
    assert!(!frames.is_empty());
    let body: Vec<u8> = frames.iter().flat_map(|g| g.body.iter().copied()).collect();
    let back = Reply::decode(op, frames[0].flags, &body)
        .unwrap_or_else(|e| panic!("{rep:?} encodes to a body that does not decode: {e:?}"));
    assert_eq!(back, rep, "reply does not survive encode and decode");
}

/// The store-spec grammar: the input, as UTF-8 (invalid sequences
/// replaced), is parsed with `StoreSpec::parse`; what parses must print
/// (`to_text`) to text that parses to an equal spec, and that text must
/// print the same again. The input also goes through `parse_size`.
pub fn store_spec(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(spec) = StoreSpec::parse(&s) {
        let text = spec.to_text();
        let back = StoreSpec::parse(&text).unwrap_or_else(|e| {
            panic!("{s:?} parses to {spec:?}, printed {text:?}, which does not parse: {e}")
        });
        assert_eq!(
            back, spec,
            "{s:?} parses to a spec printed {text:?}, which parses differently"
        );
        assert_eq!(back.to_text(), text);
    }
    let _ = parse_size(&s);
}

/// Archive text, as a store reads it (`parse_text`) and as it checks
/// lines a client sends (`check_lines`). Neither may panic, and:
///
/// - text that `check_lines` accepts, `parse_text` reads (a store must not
///   take lines that make an archive unreadable);
/// - each entry read writes back (`ArchiveEntry::to_line`, as a push
///   copies it) to a line that `check_lines` accepts and that reads back
///   to the same entry, but for the timestamp's nanoseconds, which the
///   line keeps to the microsecond.
pub fn archive_text(data: &[u8]) {
    let parsed = parse_text(data, "fuzz input");
    if let Err(e) = check_lines(data) {
        let _ = e.to_string();
    } else if let Err(e) = &parsed {
        panic!("check_lines accepts text that parse_text refuses: {e}");
    }
    for e in parsed.iter().flatten() {
        let line = e.to_line();
        if let Err(err) = check_lines(line.as_bytes()) {
            panic!("{e:?} writes the line {line:?}, which check_lines refuses: {err}");
        }
        let back = parse_text(line.as_bytes(), "written line")
            .unwrap_or_else(|err| panic!("{e:?} writes {line:?}, which does not parse: {err}"));
        let want = ArchiveEntry {
            nanos: e.nanos / 1000 * 1000,
            ..e.clone()
        };
        assert_eq!(back, vec![want], "{line:?} does not read back as written");
    }
}
