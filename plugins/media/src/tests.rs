//! Tests on files built here byte by byte, one format at a time: the seams
//! proposed, the same whatever the buffer size, and what a re-tag keeps.

use super::*;
use vt_sdk::testing::{assert_consistent, check_offsets, scan_buffers};

/// Bytes from a small xorshift generator (no sync patterns on purpose:
/// they are replaced).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match (x >> 24) as u8 {
                0xff => 0x7f,
                b => b,
            }
        })
        .collect()
}

fn boxed(typ: &[u8; 4], content: &[u8]) -> Vec<u8> {
    let mut b = ((content.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(typ);
    b.extend_from_slice(content);
    b
}

/// A faststart MP4: ftyp, moov (a track whose stco lists `chunks` chunks
/// of mdat, and a udta with `title`), mdat. Returns the file, the box
/// starts and the chunk offsets.
fn mp4(title: &str, chunks: usize) -> (Vec<u8>, Vec<u64>) {
    let ftyp = boxed(b"ftyp", b"isom\0\0\x02\0isomiso2");
    let chunk_len = 9000usize;
    let udta = boxed(b"udta", &boxed(b"\xa9nam", title.as_bytes()));
    // The stco's offsets depend on where mdat starts: lay out twice.
    let build = |mdat_at: u64| {
        let mut stco = vec![0u8; 4];
        stco.extend_from_slice(&(chunks as u32).to_be_bytes());
        for i in 0..chunks {
            stco.extend_from_slice(&((mdat_at + 8 + (i * chunk_len) as u64) as u32).to_be_bytes());
        }
        let stbl = boxed(
            b"stbl",
            &[boxed(b"stsz", &[0u8; 12]), boxed(b"stco", &stco)].concat(),
        );
        let trak = boxed(b"trak", &boxed(b"mdia", &boxed(b"minf", &stbl)));
        boxed(
            b"moov",
            &[boxed(b"mvhd", &[0u8; 100]), trak, udta.clone()].concat(),
        )
    };
    let moov = build(0);
    let mdat_at = (ftyp.len() + moov.len()) as u64;
    let moov = build(mdat_at);
    let data = noise(chunks * chunk_len, 7);
    let file = [ftyp.clone(), moov.clone(), boxed(b"mdat", &data)].concat();
    let mut seams = vec![ftyp.len() as u64, mdat_at];
    for i in 0..chunks {
        seams.push(mdat_at + 8 + (i * chunk_len) as u64);
    }
    (file, seams)
}

#[test]
fn mp4_boxes_and_chunk_offsets() {
    let (f, seams) = mp4("First", 40);
    assert_eq!(detect(&f), Some(Kind::Mp4));
    let offs = assert_consistent::<Media>("clip.mp4", &f);
    for s in &seams {
        assert!(offs.contains(s), "{s} not proposed: {offs:?}");
    }
    // Boxes inside moov: mvhd, trak, …, udta and its child.
    let moov_at = seams[0];
    assert!(
        offs.iter()
            .filter(|&&o| o > moov_at && o < seams[1])
            .count()
            >= 8
    );
}

#[test]
fn an_mp4_retagged_keeps_its_seams_in_mdat() {
    let (a, sa) = mp4("First", 40);
    let (b, sb) = mp4("A much longer second title", 40);
    let shift = (b.len() - a.len()) as u64;
    let oa = assert_consistent::<Media>("a.mp4", &a);
    let ob = assert_consistent::<Media>("b.mp4", &b);
    let after = |o: &[u64], from: u64, by: u64| -> Vec<u64> {
        o.iter().filter(|&&x| x >= from).map(|x| x - by).collect()
    };
    assert_eq!(after(&oa, sa[1], 0), after(&ob, sb[1], shift));
}

/// An MPEG-1 layer III frame at 128 kbit/s, 44.1 kHz: 417 bytes.
fn mp3_frame(seed: u64) -> Vec<u8> {
    let mut f = vec![0xff, 0xfb, 0x90, 0x00];
    f.extend(noise(413, seed));
    f
}

fn id3v23(frames: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, content) in frames {
        body.extend_from_slice(&id[..]);
        body.extend_from_slice(&(content.len() as u32).to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(content);
    }
    let n = body.len() as u32;
    let mut t = b"ID3\x03\x00\x00".to_vec();
    t.extend([
        (n >> 21) as u8 & 0x7f,
        (n >> 14) as u8 & 0x7f,
        (n >> 7) as u8 & 0x7f,
        n as u8 & 0x7f,
    ]);
    t.extend(body);
    t
}

fn mp3(title: &str) -> (Vec<u8>, usize) {
    let cover = noise(30_000, 3);
    let tag = id3v23(&[(b"TIT2", title.as_bytes()), (b"APIC", &cover)]);
    let mut f = tag.clone();
    for i in 0..600 {
        f.extend(mp3_frame(i + 100));
    }
    let mut v1 = b"TAG".to_vec();
    v1.resize(128, b' ');
    f.extend(v1);
    (f, tag.len())
}

#[test]
fn mp3_tag_frames_audio_frames_and_the_id3v1_tag() {
    let (f, tag_end) = mp3("First");
    assert_eq!(detect(&f), Some(Kind::Mp3Id3));
    let offs = assert_consistent::<Media>("song.mp3", &f);
    let apic = 10 + 10 + "First".len() as u64;
    assert!(offs.contains(&apic), "APIC frame {apic}: {offs:?}");
    assert!(offs.contains(&(tag_end as u64)), "tag end {tag_end}");
    assert_eq!(offs.last(), Some(&(f.len() as u64 - 128)), "ID3v1 tag");
    // Some audio frames, about one in FRAME_SELECT, each at a frame start.
    let frames: Vec<u64> = offs
        .iter()
        .copied()
        .filter(|&o| o > tag_end as u64 && o < f.len() as u64 - 128)
        .collect();
    assert!((600 / FRAME_SELECT / 3..=600 / FRAME_SELECT * 3).contains(&(frames.len() as u64)));
    assert!(frames
        .iter()
        .all(|o| (o - tag_end as u64).is_multiple_of(417)));
}

#[test]
fn an_mp3_retagged_keeps_its_cover_and_audio_seams() {
    let (a, ta) = mp3("First");
    let (b, tb) = mp3("A much longer second title");
    let oa = scan_buffers::<Media>("a.mp3", &a, 4096);
    let ob = scan_buffers::<Media>("b.mp3", &b, 4096);
    let shift = (tb - ta) as u64;
    let after = |o: &[u64], from: u64, by: u64| -> Vec<u64> {
        o.iter().filter(|&&x| x >= from).map(|x| x - by).collect()
    };
    // From the APIC frame on, everything is where it was, shifted.
    assert_eq!(after(&oa, 25, 0), after(&ob, 25 + shift, shift));
}

fn flac_frame(n: u8, seed: u64) -> Vec<u8> {
    // Fixed blocksize 4096 (code 12), 44.1 kHz (9), stereo (1), 16 bits (4).
    let mut h = vec![0xff, 0xf8, 0xc9, 0x18, n & 0x7f];
    h.push(crate::formats::tests_crc8(&h));
    h.extend(noise(5000, seed));
    h
}

fn flac(comment: &str) -> (Vec<u8>, Vec<u64>) {
    let block = |last: bool, typ: u8, content: &[u8]| {
        let mut b = vec![if last { 0x80 | typ } else { typ }];
        b.extend_from_slice(&(content.len() as u32).to_be_bytes()[1..]);
        b.extend_from_slice(content);
        b
    };
    let mut f = b"fLaC".to_vec();
    let mut seams = vec![4u64];
    // STREAMINFO: its min frame size (5,000: the frames below are 5,006
    // bytes) lets the scan skip ahead after each frame's header.
    let mut info = [0u8; 34];
    info[4..7].copy_from_slice(&5000u32.to_be_bytes()[1..]);
    f.extend(block(false, 0, &info));
    seams.push(f.len() as u64);
    f.extend(block(false, 4, comment.as_bytes()));
    seams.push(f.len() as u64);
    f.extend(block(true, 1, &[0u8; 2000]));
    for i in 0..30 {
        seams.push(f.len() as u64);
        f.extend(flac_frame(i, u64::from(i) + 50));
    }
    (f, seams)
}

#[test]
fn flac_metadata_blocks_and_frames() {
    let (f, seams) = flac("TITLE=First");
    let offs = assert_consistent::<Media>("a.flac", &f);
    assert_eq!(offs, seams);
}

fn ogg_page(serial: u32, seq: u32, granule: u64, body: &[u8]) -> Vec<u8> {
    let mut p = b"OggS\0\0".to_vec();
    p.extend_from_slice(&granule.to_le_bytes());
    p.extend_from_slice(&serial.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&[0u8; 4]);
    let segs = body.len().div_ceil(255).max(1);
    p.push(segs as u8);
    let mut left = body.len();
    for _ in 0..segs {
        p.push(left.min(255) as u8);
        left = left.saturating_sub(255);
    }
    p.extend_from_slice(body);
    p
}

/// An Ogg stream: two header pages (granule 0), then 300 audio pages.
fn ogg(serial: u32) -> (Vec<u8>, Vec<u64>) {
    let mut f = Vec::new();
    let mut starts = Vec::new();
    for i in 0..302u32 {
        starts.push(f.len() as u64);
        let granule = u64::from(i.saturating_sub(1)) * 960;
        let body = noise(3000 + i as usize * 10, u64::from(i) + 9);
        f.extend(ogg_page(serial, i, granule, &body));
    }
    (f, starts)
}

#[test]
fn ogg_header_pages_and_some_audio_pages() {
    let (f, starts) = ogg(1);
    let offs = assert_consistent::<Media>("a.opus", &f);
    // The second header page and the first audio page, then about one
    // page in PAGE_SELECT, each at a page start.
    assert_eq!(offs[..2], starts[1..3]);
    assert!(offs.iter().all(|o| starts.contains(o)));
    let rest = (offs.len() - 2) as u64;
    assert!(
        (300 / PAGE_SELECT / 3..=300 / PAGE_SELECT * 3).contains(&rest),
        "{rest}"
    );
    // A new stream serial number (every page header changes) chooses the
    // same pages.
    let (g, _) = ogg(0x1f8a_37ff);
    assert_eq!(assert_consistent::<Media>("b.opus", &g), offs);
}

fn ebml(id: &[u8], content: &[u8]) -> Vec<u8> {
    let mut e = id.to_vec();
    e.push(0x01); // an 8-byte size
    e.extend_from_slice(&(content.len() as u64).to_be_bytes()[1..]);
    e.extend_from_slice(content);
    e
}

#[test]
fn matroska_level1_elements_and_clusters() {
    let mut f = ebml(&[0x1a, 0x45, 0xdf, 0xa3], b"\x42\x82\x88matroska");
    let mut seg = Vec::new();
    let mut rel = Vec::new();
    for (id, len) in [
        (&[0x11, 0x4d, 0x9b, 0x74][..], 60),
        (&[0x15, 0x49, 0xa9, 0x66][..], 80),
        (&[0x16, 0x54, 0xae, 0x6b][..], 200),
        (&[0x12, 0x54, 0xc3, 0x67][..], 100),
    ] {
        rel.push(seg.len() as u64);
        seg.extend(ebml(id, &vec![0x42; len]));
    }
    for i in 0..20 {
        rel.push(seg.len() as u64);
        let blocks: Vec<u8> = (0..4)
            .flat_map(|j| ebml(&[0xa3], &noise(3000, i * 10 + j + 1)))
            .collect();
        seg.extend(ebml(
            &[0x1f, 0x43, 0xb6, 0x75],
            &[ebml(&[0xe7], &[1]), blocks].concat(),
        ));
    }
    rel.push(seg.len() as u64);
    seg.extend(ebml(&[0x1c, 0x53, 0xbb, 0x6b], &[0x42; 50]));
    // The Segment of unknown size (as a live recording writes it).
    let seg_at = f.len() as u64;
    f.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    let body_at = seg_at + 12;
    f.extend(seg);
    let offs = assert_consistent::<Media>("a.mkv", &f);
    let want: Vec<u64> = rel.iter().map(|r| body_at + r).collect();
    assert_eq!(offs, want);
}

#[test]
fn hostile_inputs_give_checked_offsets_and_end() {
    // Lengths past the end, 2^64 lengths, nesting bombs, truncation, noise
    // after a valid start: offsets stay rising and inside the file, the
    // same in any buffer size; nothing panics or spins.
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let (mp4f, _) = mp4("x", 10);
    cases.push(mp4f[..mp4f.len() / 2].to_vec());
    let mut huge = boxed(b"ftyp", b"isom");
    huge.extend_from_slice(&[0, 0, 0, 1]);
    huge.extend_from_slice(b"mdat");
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    huge.extend(noise(10_000, 1));
    cases.push(huge);
    let mut bomb = boxed(b"ftyp", b"isom");
    for _ in 0..10_000 {
        bomb.extend_from_slice(&[0, 0, 0, 0]);
        bomb.extend_from_slice(b"moov");
    }
    cases.push(bomb);
    let mut past = boxed(b"ftyp", b"isom");
    past.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
    past.extend_from_slice(b"moov");
    past.extend(boxed(b"free", &[0u8; 100]));
    cases.push(past);
    let mut tiny = boxed(b"ftyp", b"isom");
    tiny.extend_from_slice(&[0, 0, 0, 3, b'f', b'r', b'e', b'e']);
    tiny.extend(noise(5000, 2));
    cases.push(tiny);
    let (m, _) = mp3("t");
    cases.push(m[..m.len() / 3].to_vec());
    let mut id3_huge = b"ID3\x03\x00\x00\x7f\x7f\x7f\x7f".to_vec();
    id3_huge.extend(noise(20_000, 3));
    cases.push(id3_huge);
    let mut mkv_bad = ebml(&[0x1a, 0x45, 0xdf, 0xa3], b"");
    mkv_bad.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    mkv_bad.extend(noise(30_000, 4));
    mkv_bad.extend(ebml(&[0x1f, 0x43, 0xb6, 0x75], &noise(5000, 5)));
    cases.push(mkv_bad);
    // Sizes of the wrong length (0x08: a 5-byte size followed by 7 bytes).
    let mut mkv_sizes = vec![0x1a, 0x45, 0xdf, 0xa3, 0x08, 0, 0, 0, 0, 0, 0, 0];
    mkv_sizes.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    mkv_sizes.extend(noise(30_000, 4));
    mkv_sizes.extend_from_slice(&[0x1f, 0x43, 0xb6, 0x75, 0x08, 0, 0, 0, 0, 0, 0x13, 0x88]);
    mkv_sizes.extend(noise(5000, 5));
    cases.push(mkv_sizes);
    let mut ogg_bad = ogg_page(1, 0, 0, &[1; 100]);
    ogg_bad.extend(noise(20_000, 6));
    ogg_bad.extend(ogg_page(1, 1, 0, &[2; 100]));
    cases.push(ogg_bad);
    let (fl, _) = flac("c");
    cases.push(fl[..100].to_vec());
    let mut fl_past = b"fLaC\x00\xff\xff\xff".to_vec();
    fl_past.extend(noise(1000, 7));
    cases.push(fl_past);
    for (i, c) in cases.iter().enumerate() {
        let offs = assert_consistent::<Media>("x.bin", c);
        check_offsets(&offs, c.len() as u64).unwrap_or_else(|e| panic!("case {i}: {e}"));
    }
}

#[test]
fn sniffs_each_format_by_its_first_bytes() {
    let (mp4f, _) = mp4("x", 2);
    assert_eq!(Media::sniff("video", &mp4f[..64]), 95);
    assert_eq!(Media::sniff("song", b"ID3\x04\0\0\0\0\0\x10"), 95);
    assert_eq!(Media::sniff("a", b"fLaC\0\0\0\x22"), 95);
    assert_eq!(Media::sniff("a", b"OggS\0\x02"), 95);
    assert_eq!(Media::sniff("a", &[0x1a, 0x45, 0xdf, 0xa3, 0x9f]), 95);
    assert_eq!(Media::sniff("raw", &[0xff, 0xfb, 0x90, 0x00]), 50);
    assert_eq!(Media::sniff("notes.txt", b"hello"), 0);
    assert_eq!(Media::sniff("empty.mp3", b""), 30);
    // Every ISO-BMFF magic the info declares is one detect accepts.
    for m in Media::info().magic.iter().filter(|m| m.len() == 8) {
        let mut head = m.clone();
        head.extend_from_slice(b"isom");
        assert_eq!(detect(&head), Some(Kind::Mp4));
    }
}
