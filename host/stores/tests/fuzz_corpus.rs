//! Replays the fuzz corpora kept in `tests/fuzz/corpus/` through the same
//! checks the fuzz targets run (`tests/fuzz/checks.rs`), so what fuzzing
//! found keeps being tested without libFuzzer or a nightly compiler. See
//! `tests/fuzz/README.md`.

#[path = "../../../tests/fuzz/checks.rs"]
mod checks;

#[path = "../../../tests/fuzz/replay.rs"]
mod replay;

/// Runs `check` on every file of corpus `target`.
fn replay(target: &str, check: fn(&[u8])) {
    replay::replay(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."), target, check);
}

#[test]
fn stream_frame_corpus() {
    replay("stream_frame", checks::stream_frame);
}

#[test]
fn store_spec_corpus() {
    replay("store_spec", checks::store_spec);
}

#[test]
fn archive_text_corpus() {
    replay("archive_text", checks::archive_text);
}

#[test]
fn block_ref_corpus() {
    replay("block_ref", checks::block_ref);
}

#[test]
fn dirent_corpus() {
    replay("dirent", checks::dirent);
}

#[test]
fn transcribe_corpus() {
    replay("transcribe", checks::transcribe);
}

#[test]
fn datafile_corpus() {
    replay("datafile", checks::datafile);
}

#[test]
fn delta_corpus() {
    replay("delta", checks::delta);
}

#[test]
fn dict_corpus() {
    replay("dict", checks::dict);
}

/// Writes the hand-made seeds (`seed-*`) of the corpora of the block_ref,
/// dirent, transcribe, datafile, delta and dict targets, with vt's own
/// encoders. Run once, before a first fuzzing run, with
/// `cargo test -p vt-stores --test fuzz_corpus -- --ignored write_seeds`;
/// the seeds are kept in git with the rest of each corpus.
#[test]
#[ignore]
fn write_seeds() {
    use vt_core::block::encode_indirect;
    use vt_core::dirent::{Dirent, DirentKind, Meta, SpecialKind, Timestamp};
    use vt_core::{BlockRef, Hash, HashKind};
    use vt_stores::datafile::{encode_group, encode_record, FILE_HEADER, FLAG_DELTA, FLAG_ZSTD};

    let corpus =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus");
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    let h1 = HashKind::Sha3_256.digest(b"one");
    let h2 = HashKind::Blake3.digest(b"two");
    let direct = BlockRef::Direct {
        hash: h1,
        span: 8192,
    };
    let refs = vec![
        direct.clone(),
        BlockRef::Indirect {
            hash: h2,
            span: 1 << 20,
        },
        BlockRef::Literal(b"hello".to_vec()),
        BlockRef::empty(),
        BlockRef::Rle {
            span: 4096,
            octet: 0,
        },
        BlockRef::sub(direct.clone(), 100, 200).unwrap(),
    ];
    for (i, r) in refs.iter().enumerate() {
        put("block_ref", &format!("bin-{i}"), &r.to_bytes());
        put("block_ref", &format!("text-{i}"), r.to_text().as_bytes());
        put(
            "transcribe",
            &format!("blockref-{i}"),
            r.to_text().as_bytes(),
        );
    }
    put("block_ref", "indirect", &encode_indirect(&refs));
    put("block_ref", "hash-text", h1.to_string().as_bytes());

    let meta = Meta {
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        user: Some("user".into()),
        group: Some("staff".into()),
        mtime: Timestamp {
            secs: 1_700_000_000,
            nanos: 5,
        },
        ctime: Timestamp {
            secs: -1,
            nanos: 999_999_999,
        },
        ino: Some(42),
        xattrs: vec![(b"user.x".to_vec(), b"\0\xff".to_vec())],
        mime: Some("text/plain".into()),
    };
    let kinds = vec![
        DirentKind::File {
            block: refs[5].clone(),
        },
        DirentKind::Dir {
            block: refs[1].clone(),
            hardlinks: Some(refs[2].clone()),
        },
        DirentKind::Symlink {
            target: b"../x\xff".to_vec(),
        },
        DirentKind::HardLink {
            uuid: uuid::Uuid::from_u128(7),
        },
        DirentKind::Special {
            kind: SpecialKind::CharDevice,
            rdev: 0x0501,
        },
    ];
    let mut dir = Vec::new();
    for (i, k) in kinds.into_iter().enumerate() {
        let mut d = Dirent::new(format!("name-{i}\n"), k);
        d.meta = meta.clone();
        if i == 0 {
            d.uuid = Some(uuid::Uuid::from_u128(7));
        }
        put("dirent", &format!("bin-{i}"), &d.to_bytes());
        put("dirent", &format!("text-{i}"), d.to_text().as_bytes());
        put("transcribe", &format!("dirent-{i}"), d.to_text().as_bytes());
        vt_core::codec::put_bytes(&mut dir, &d.to_bytes());
    }
    put("dirent", "dir", &dir);
    put(
        "transcribe",
        "misc",
        b" { a : [ 1 , \"x\\x00\\n\" , T{ } ] , b:-1.5e+3 } ",
    );

    // Datafiles: a plain record, a compressed one, a group with prefixes,
    // a delta, one after another behind the file header.
    let text: Vec<u8> = (0..3000u32)
        .flat_map(|i| format!("line {i} ").into_bytes())
        .collect();
    let mut file = FILE_HEADER.to_vec();
    file.extend(encode_record(
        &HashKind::Sha3_256.digest(b"plain"),
        0,
        b"plain",
        5,
    ));
    let z = zstd::bulk::compress(&text, 3).unwrap();
    let zh = HashKind::Blake3.digest(&text);
    file.extend(encode_record(&zh, FLAG_ZSTD, &z, text.len() as u32));
    let (a, b) = (&b"member a"[..], &b"member bb"[..]);
    let members = [
        (HashKind::Sha3_256.digest(a), 8),
        (HashKind::Sha3_256.digest(b), 9),
    ];
    file.extend(encode_group(
        HashKind::Sha3_256,
        &members,
        0,
        b"member amember bb",
        17,
    ));
    let zg = zstd::bulk::compress(b"member amember bb", 1).unwrap();
    file.extend(encode_group(
        HashKind::Sha3_256,
        &members,
        FLAG_ZSTD,
        &zg,
        17,
    ));
    let mut changed = text.clone();
    changed[100..110].copy_from_slice(b"0123456789");
    let frame = vt_stores::delta::compress(&text, &changed, 3).unwrap();
    let payload = vt_stores::delta::encode_payload(&zh, &frame);
    let dh = HashKind::Blake3.digest(&changed);
    file.extend(encode_record(
        &dh,
        FLAG_DELTA | FLAG_ZSTD,
        &payload,
        changed.len() as u32,
    ));
    put("datafile", "records", &file);
    put("datafile", "bare-record", &file[8..8 + 52 + 5]);

    // Deltas: [flags, raw_len (2), base_len (2), base, frame].
    let small_base = &text[..600];
    let mut small = small_base.to_vec();
    small[10] = b'X';
    let f = vt_stores::delta::compress(small_base, &small, 3).unwrap();
    let mut d = vec![0];
    d.extend((small.len() as u16).to_le_bytes());
    d.extend((small_base.len() as u16).to_le_bytes());
    d.extend(small_base);
    d.extend(&f);
    put("delta", "small", &d);
    put(
        "delta",
        "payload",
        &vt_stores::delta::encode_payload(&h1, &f),
    );

    // Dictionaries: [cut (2), dictionary, frame made with it].
    let samples: Vec<Vec<u8>> = (0..400u32)
        .map(|i| format!("{{\"id\":{i},\"name\":\"user{}\",\"ok\":true}}", i * 7).into_bytes())
        .collect();
    let dict = zstd::dict::from_samples(&samples, 2048).unwrap();
    let mut c = zstd::bulk::Compressor::with_dictionary(3, &dict).unwrap();
    let frame = c.compress(&samples[3]).unwrap();
    let mut d = (dict.len() as u16).to_le_bytes().to_vec();
    d.extend(&dict);
    d.extend(&frame);
    put("dict", "with-dict", &d);
    let plain = zstd::bulk::compress(&samples[5], 3).unwrap();
    let mut d = vec![0, 0];
    d.extend(&plain);
    put("dict", "no-dict", &d);
    let _ = Hash::parse;
}
