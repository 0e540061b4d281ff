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

/// Block references and hashcodes, binary and text.
///
/// The input is read as binary (`BlockRef::decode` from a `Reader`, one
/// reference after another until one fails; `BlockRef::from_bytes`;
/// `decode_indirect`) and, as lossy UTF-8, as text (`BlockRef::parse`,
/// `Hash::parse`). Every reference read, either way, must survive both
/// encoders: `to_bytes` decodes (`from_bytes`) to an equal reference, and
/// `to_text` parses to an equal one. A hashcode that parses prints
/// (`Display`) to text that parses equal; a list that `decode_indirect`
/// reads encodes (`encode_indirect`) to bytes that decode equal.
pub fn block_ref(data: &[u8]) {
    use vt_core::block::{decode_indirect, encode_indirect};
    use vt_core::codec::Reader;
    use vt_core::hash::Hash;
    use vt_core::BlockRef;

    let mut r = Reader::new(data, "fuzz input");
    while !r.is_empty() {
        let before = r.pos();
        match BlockRef::decode(&mut r) {
            Ok(b) => {
                assert!(r.pos() > before, "decode read nothing");
                block_ref_round_trip(&b);
            }
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    if let Ok(b) = BlockRef::from_bytes(data) {
        block_ref_round_trip(&b);
    }
    if let Ok(refs) = decode_indirect(data) {
        let enc = encode_indirect(&refs);
        let back = decode_indirect(&enc)
            .unwrap_or_else(|e| panic!("{refs:?} encodes to bytes that do not decode: {e}"));
        assert_eq!(
            back, refs,
            "an indirect block does not survive encode and decode"
        );
        for b in &refs {
            block_ref_round_trip(b);
        }
    }
    let s = String::from_utf8_lossy(data);
    if let Ok(b) = BlockRef::parse(&s) {
        block_ref_round_trip(&b);
    }
    if let Ok(h) = Hash::parse(&s) {
        let text = h.to_string();
        assert_eq!(Hash::parse(&text).ok(), Some(h), "{h:?} prints {text:?}");
        assert_eq!(Hash::from_bytes(&h.to_bytes()).ok(), Some(h));
    }
}

fn block_ref_round_trip(b: &vt_core::BlockRef) {
    use vt_core::BlockRef;
    let bin = b.to_bytes();
    match BlockRef::from_bytes(&bin) {
        Ok(back) => assert_eq!(&back, b, "{b:?} does not survive to_bytes and from_bytes"),
        Err(e) => panic!("{b:?} encodes to {bin:?}, which does not decode: {e}"),
    }
    let text = b.to_text();
    match BlockRef::parse(&text) {
        Ok(back) => assert_eq!(&back, b, "{b:?} does not survive to_text and parse"),
        Err(e) => panic!("{b:?} writes {text:?}, which does not parse: {e}"),
    }
}

/// Dirents (binary and text) and directory contents.
///
/// The input goes to `Dirent::decode` (from a `Reader`, one after another
/// until one fails), `Dirent::from_bytes`, `decode_dir_bytes` and, as lossy
/// UTF-8, `Dirent::parse`. Every Dirent read, either way, must survive both
/// encoders: `to_bytes` decodes to an equal Dirent and `to_text` parses to
/// an equal one. Directory contents read re-encode (each Dirent
/// length-prefixed, as `encode_dir` writes its blocks) to bytes that
/// decode equal.
pub fn dirent(data: &[u8]) {
    use vt_core::codec::{put_bytes, Reader};
    use vt_core::dir::decode_dir_bytes;
    use vt_core::dirent::Dirent;

    let mut r = Reader::new(data, "fuzz input");
    while !r.is_empty() {
        let before = r.pos();
        match Dirent::decode(&mut r) {
            Ok(d) => {
                assert!(r.pos() > before, "decode read nothing");
                dirent_round_trip(&d);
            }
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    if let Ok(d) = Dirent::from_bytes(data) {
        dirent_round_trip(&d);
    }
    if let Ok(entries) = decode_dir_bytes(data) {
        let mut enc = Vec::new();
        for d in &entries {
            put_bytes(&mut enc, &d.to_bytes());
            dirent_round_trip(d);
        }
        let back = decode_dir_bytes(&enc)
            .unwrap_or_else(|e| panic!("{entries:?} encodes to bytes that do not decode: {e}"));
        assert_eq!(
            back, entries,
            "directory contents do not survive encode and decode"
        );
    }
    if let Ok(d) = Dirent::parse(&String::from_utf8_lossy(data)) {
        dirent_round_trip(&d);
    }
}

fn dirent_round_trip(d: &vt_core::dirent::Dirent) {
    use vt_core::dirent::Dirent;
    let bin = d.to_bytes();
    match Dirent::from_bytes(&bin) {
        Ok(back) => assert_eq!(&back, d, "{d:?} does not survive to_bytes and from_bytes"),
        Err(e) => panic!("{d:?} encodes to {bin:?}, which does not decode: {e}"),
    }
    let text = d.to_text();
    match Dirent::parse(&text) {
        Ok(back) => assert_eq!(&back, d, "{d:?} does not survive to_text and parse"),
        Err(e) => panic!("{d:?} writes {text:?}, which does not parse: {e}"),
    }
}

/// Transcriptions (the text syntax of block refs, Dirents and archive
/// lines): the input, as lossy UTF-8, into `transcribe::parse`. A value
/// that parses, written back in the syntax's canonical form (`write_value`
/// below: `put_str` for strings, no spaces), parses to an equal value.
pub fn transcribe(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let Ok(v) = vt_core::transcribe::parse(&s) else {
        return;
    };
    let mut text = String::new();
    write_value(&mut text, &v);
    match vt_core::transcribe::parse(&text) {
        Ok(back) => assert_eq!(back, v, "{s:?} parses to {v:?}, written {text:?}"),
        Err(e) => panic!("{s:?} parses to {v:?}, written {text:?}, which does not parse: {e}"),
    }
}

fn write_value(out: &mut String, v: &vt_core::transcribe::Value) {
    use vt_core::transcribe::{put_str, Value};
    let fields = |out: &mut String, fs: &[(String, Value)]| {
        out.push('{');
        for (i, (k, v)) in fs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push(':');
            write_value(out, v);
        }
        out.push('}');
    };
    match v {
        Value::Tagged(t, fs) => {
            out.push_str(t);
            fields(out, fs);
        }
        Value::Map(fs) => fields(out, fs),
        Value::List(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, v);
            }
            out.push(']');
        }
        Value::Str(b) => put_str(out, b),
        Value::Token(t) => out.push_str(t),
    }
}

/// A file of this process's own in the temporary directory, for checks
/// whose decoder reads a file (named by `what`, so two checks never share
/// one); removed by nobody, rewritten by every run.
fn scratch_path(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vt-fuzz-{}-{what}", std::process::id()))
}

/// An empty `dicts/` directory and its `Dictionaries`, made once.
fn no_dicts() -> &'static vt_stores::dict::Dictionaries {
    static D: std::sync::OnceLock<vt_stores::dict::Dictionaries> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let dir = scratch_path("no-dicts");
        let _ = std::fs::remove_dir_all(&dir);
        vt_stores::dict::Dictionaries::open(&dir).expect("open an empty dicts directory")
    })
}

/// Rewrites the checksum of each record of `b` from `at` on, record after
/// record, while headers parse and payloads fit, so that the decoders past
/// the checksum see the fuzzer's bytes (it cannot forge CRC-32s).
fn fix_checksums(b: &mut [u8], mut at: usize) {
    use vt_stores::datafile::{parse_header, RECORD_HEADER};
    while let Some(hb) = b.get(at..at + RECORD_HEADER) {
        let Some(h) = parse_header(hb.try_into().expect("52 bytes")) else {
            return;
        };
        let end = at + RECORD_HEADER + h.stored_len as usize;
        if end > b.len() {
            return;
        }
        let mut c = crc32fast::Hasher::new();
        c.update(&b[at..at + 48]);
        c.update(&b[at + RECORD_HEADER..end]);
        b[at + 48..at + 52].copy_from_slice(&c.finalize().to_le_bytes());
        at = end;
    }
}

/// Datafile records, as a DataDir reads them from a datafile it mapped or
/// opened. The input is a datafile (its 8-byte file header optional); its
/// records' checksums are first made right (`fix_checksums`), then:
///
/// - `parse_header` on the first 52 bytes (and on the input as it came);
/// - `read_record` and `read_group` at each record's offset, from a map of
///   the bytes (`Source::Map`), expecting the block its header names, with
///   `Verify::Hash`; of a group read, `Group::members` and `Group::member`
///   for each member; `parse_table` of a group's payload;
/// - `datafile::scan` of the bytes written to a file, from the first
///   record, with `full` (every record decoded and hashed).
///
/// None may panic; a scan's good records lie inside the file, in order,
/// and a group that reads has the spans its table says, inside its data.
pub fn datafile(data: &[u8]) {
    use vt_stores::datafile::{
        parse_header, parse_table, read_group, read_record, scan, Source, Verify, FILE_HEADER,
        RECORD_HEADER,
    };
    let from = if data.starts_with(&FILE_HEADER[..4]) {
        FILE_HEADER.len().min(data.len())
    } else {
        0
    };
    let mut fixed = data.to_vec();
    fix_checksums(&mut fixed, from);
    let map = bytes::Bytes::from(fixed.clone());
    let dicts = no_dicts();
    let path = std::path::Path::new("fuzz.vtd");
    if let Some(hb) = data.get(..RECORD_HEADER) {
        let _ = parse_header(hb.try_into().expect("52 bytes"));
    }
    let mut at = from;
    while let Some(hb) = fixed.get(at..at + RECORD_HEADER) {
        let Some(h) = parse_header(hb.try_into().expect("52 bytes")) else {
            break;
        };
        let payload_at = at + RECORD_HEADER;
        let Some(payload) = fixed.get(payload_at..payload_at + h.stored_len as usize) else {
            break;
        };
        if h.is_group() {
            if let Ok((spans, n)) = parse_table(&h, payload) {
                assert!(n <= payload.len(), "a member table longer than its payload");
                let total: u64 = spans.iter().map(|s| u64::from(s.len)).sum();
                assert_eq!(total, u64::from(h.raw_len), "members do not add up");
            }
            if let Ok(g) = read_group(Source::Map(&map), at as u64, None, dicts) {
                assert_eq!(g.data.len(), h.raw_len as usize);
                for s in &g.spans {
                    assert!(s.offset as usize + s.len as usize <= g.data.len());
                }
                let _ = g.members();
                for i in 0..g.spans.len().min(64) {
                    let _ = g.member(i as u32, &g.digest, Verify::Hash);
                    let _ = g.member(i as u32, &g.digest, Verify::Checksum);
                }
            }
        } else {
            let got = read_record(
                Source::Map(&map),
                path,
                at as u64,
                Some(h.stored_len),
                &h.hash,
                dicts,
                Verify::Hash,
            );
            if let Ok(vt_stores::datafile::Stored::Block(b)) = got {
                assert_eq!(b.len(), h.raw_len as usize);
            }
        }
        at = payload_at + payload.len();
    }
    // And the whole file, as `vt fsck` and a DataDir's recovery read it.
    let p = scratch_path("datafile");
    std::fs::write(&p, &fixed).expect("write the scratch datafile");
    let f = std::fs::File::open(&p).expect("open the scratch datafile");
    let res = scan(&f, from as u64, dicts, true).expect("scan a readable file");
    let mut last = from as u64;
    for r in &res.records {
        assert!(r.offset >= last, "scan went backwards");
        last = r.offset + r.header.record_len();
        assert!(last <= fixed.len() as u64, "a record past the end");
    }
    assert!(res.good_end <= fixed.len() as u64);
}

/// Delta payloads and frames. `delta::parse_payload` on the input; then
/// the first byte and the next two pick `raw_len` (up to `MAX_RECORD`, as
/// a record header may say: a high bit of the first byte picks one near
/// the maximum) and the next two the base's length; the base is that many
/// of the remaining bytes and the frame the rest. `delta::decompress` must
/// return exactly `raw_len` bytes or an error, never panic nor allocate
/// more than `raw_len` and the frame justify; what it returns compresses
/// (`delta::compress`) against the same base to a frame that decompresses
/// to the same bytes.
pub fn delta(data: &[u8]) {
    use vt_stores::datafile::MAX_RECORD;
    use vt_stores::delta::{compress, decompress, parse_payload};
    if let Ok((_, frame)) = parse_payload(data) {
        assert!(frame.len() < data.len());
    }
    let [b0, r1, r2, l1, l2, rest @ ..] = data else {
        return;
    };
    let small = usize::from(u16::from_le_bytes([*r1, *r2]));
    let raw_len = if b0 & 0x80 != 0 {
        MAX_RECORD as usize - small.min(MAX_RECORD as usize)
    } else {
        small
    };
    let base_len = usize::from(u16::from_le_bytes([*l1, *l2])) % (rest.len() + 1);
    let (base, frame) = rest.split_at(base_len);
    let Ok(out) = decompress(base, frame, raw_len) else {
        return;
    };
    assert_eq!(out.len(), raw_len);
    let again = compress(base, &out, 1).expect("compress what decompressed");
    assert_eq!(
        decompress(base, &again, raw_len).as_deref(),
        Ok(&out[..]),
        "a delta of what decompressed does not decompress to it"
    );
}

/// Compression dictionaries. The first two bytes of the input pick where
/// it is cut: the first part is written as `dicts/ID.zdict` (ID from the
/// dictionary's own header if it has one, else 1) of a fresh directory,
/// which `Dictionaries::open` loads; the rest is a frame that
/// `Dictionaries::decompress` decompresses to at most 64 KiB
/// (`available_for` first). Run on a thread of its own, so the thread's
/// cached decompressors (by dictionary ID) start empty and each input's
/// dictionary is really loaded. Neither may panic; what decompresses
/// compresses back (`compress_at` with the dictionary) to a frame that
/// decompresses to the same bytes.
pub fn dict(data: &[u8]) {
    let [c1, c2, rest @ ..] = data else {
        return;
    };
    let cut = usize::from(u16::from_le_bytes([*c1, *c2])) % (rest.len() + 1);
    let (dict, frame) = rest.split_at(cut);
    let dir = scratch_path("dicts");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch dicts directory");
    let id = zstd::zstd_safe::get_dict_id_from_dict(dict)
        .map(|n| n.get())
        .unwrap_or(1);
    std::fs::write(dir.join(format!("{id:08x}.zdict")), dict).expect("write the dictionary");
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let Ok(d) = vt_stores::dict::Dictionaries::open(&dir) else {
                return;
            };
            if d.available_for(frame).is_err() {
                return;
            }
            let Ok(out) = d.decompress(frame, 64 << 10) else {
                return;
            };
            assert!(out.len() <= 64 << 10);
            let Ok((again, _)) = d.compress_at(&out, 3, true) else {
                return;
            };
            assert_eq!(
                d.decompress(&again, out.len()).as_deref(),
                Ok(&out[..]),
                "what decompressed does not survive compress and decompress"
            );
        });
        if let Err(p) = t.join() {
            std::panic::resume_unwind(p);
        }
    });
}
