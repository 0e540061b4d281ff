//! A real server on a UNIX socket and real clients, in one process.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use vt_core::archive::{Archive, ArchiveEntry};
use vt_core::{BlockClass, HashKind, Store};

use super::frame::{put_varint, split_frame, Frame, FLAG_ERROR};
use super::protocol::{Hello, Reply, Request, VERSION};
use super::*;
use crate::MemoryStore;

struct Running {
    dir: tempfile::TempDir,
    sock: PathBuf,
    stop: Shutdown,
    thread: Option<std::thread::JoinHandle<vt_core::Result<()>>>,
    server: Arc<Server>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(exports: Vec<Export>, opts: ServeOptions) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = Arc::new(Server::new(exports, opts).unwrap());
    let stop = Shutdown::new();
    let (s2, st2) = (server.clone(), stop.clone());
    let thread = std::thread::spawn(move || s2.run(vec![Listener::Unix(l)], st2));
    Running {
        dir,
        sock,
        stop,
        thread: Some(thread),
        server,
    }
}

fn mem() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(HashKind::Sha3_256))
}

fn client(r: &Running, opts: StreamOptions) -> StreamStore {
    StreamStore::connect(Endpoint::Unix(r.sock.clone()), opts).unwrap()
}

fn data(i: u32, len: usize) -> Vec<u8> {
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn blocks_and_archives_round_trip() {
    let backing = mem();
    let r = serve(
        vec![Export {
            name: "default".into(),
            store: backing.clone(),
        }],
        ServeOptions::default(),
    );
    let c = client(&r, StreamOptions::default());
    assert_eq!(c.welcome().export, "default");
    let mut hashes = Vec::new();
    for i in 0..2000 {
        let d = data(i, 100 + (i as usize * 37) % 5000);
        let (h, new) = c.add_as(&d, BlockClass::Data).unwrap();
        assert!(new);
        hashes.push((h, d));
    }
    // A block added twice is known at once.
    assert!(!c.add(&hashes[0].1).unwrap().1);
    c.sync().unwrap();
    assert_eq!(backing.stats().unwrap().blocks, 2000);
    c.prefetch(&hashes.iter().map(|x| x.0).collect::<Vec<_>>());
    for (h, d) in &hashes {
        assert_eq!(&c.get(h).unwrap().unwrap(), d);
        assert!(c.contains(h).unwrap());
    }
    let absent = HashKind::Sha3_256.digest(b"never stored");
    assert!(c.get(&absent).unwrap().is_none());
    assert!(!c.contains(&absent).unwrap());
    assert_eq!(c.want(&[hashes[3].0, absent]).unwrap(), vec![1]);
    assert_eq!(c.stats().unwrap().blocks, 2000);
    // Archives live on the server.
    let c: Arc<dyn Store> = Arc::new(c);
    let a = Archive::in_store(c.clone(), "home", "remote").unwrap();
    let top = vt_core::Dirent::parse("SymLink{name:\"home\",target:\"x\"}").unwrap();
    let e = a.append(&top).unwrap();
    assert_eq!(a.entries().unwrap(), vec![e.clone()]);
    assert_eq!(c.archive_names().unwrap(), vec!["home".to_string()]);
    assert_eq!(
        backing.archive_read("home").unwrap().unwrap(),
        e.to_line().into_bytes()
    );
    // Garbage is refused, and the archive is unchanged.
    assert!(c.archive_append("home", b"not a line\n").is_err());
    assert!(c.archive_append("../x", e.to_line().as_bytes()).is_err());
    assert_eq!(a.entries().unwrap(), vec![e]);
}

#[test]
fn many_adders_share_one_connection() {
    let backing = mem();
    let r = serve(
        vec![Export {
            name: "d".into(),
            store: backing.clone(),
        }],
        ServeOptions::default(),
    );
    let c = Arc::new(client(
        &r,
        StreamOptions {
            compress: Some(true),
            ..Default::default()
        },
    ));
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..500 {
                    // Half the blocks are shared between threads.
                    let k = if i % 2 == 0 { i } else { t * 1000 + i };
                    c.add(&data(k, 3000)).unwrap();
                }
            });
        }
    });
    c.sync().unwrap();
    let stats = backing.stats().unwrap();
    assert_eq!(stats.blocks, 250 + 8 * 250);
    // Every block is counted new at most once across the threads.
    assert!(c.overcounted().0 <= 8 * 250);
    assert_eq!(c.connections(), 1);
}

/// Sends raw bytes and reads the reply frames that come back before the
/// server closes or goes quiet.
fn raw(sock: &PathBuf, bytes: &[u8], want: usize) -> Vec<Frame> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < want {
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Some((f, n)) = split_frame(&buf).unwrap() {
            buf.drain(..n);
            out.push(f);
        }
    }
    out
}

fn hello_frame(version: u64, token: Option<&str>) -> Vec<u8> {
    Request::Hello(Hello {
        version,
        token: token.map(str::to_owned),
        ..Default::default()
    })
    .to_frame(1, 0, false)
    .unwrap()
    .encode()
}

#[test]
fn bad_requests_get_error_replies_and_the_server_lives() {
    let r = serve(
        vec![Export {
            name: "d".into(),
            store: mem(),
        }],
        ServeOptions::default(),
    );
    // Before HELLO.
    let f = raw(
        &r.sock,
        &Request::Stats.to_frame(5, 0, false).unwrap().encode(),
        1,
    );
    assert!(f[0].flags & FLAG_ERROR != 0 && f[0].tag == 5);
    assert!(String::from_utf8_lossy(&f[0].body).contains("HELLO first"));
    // A version mismatch is an error reply; the connection stays up and a
    // second HELLO works.
    let mut b = hello_frame(VERSION + 1, None);
    b.extend(hello_frame(VERSION, None));
    // An unknown operation, then a good one.
    let mut unknown = Vec::new();
    put_varint(&mut unknown, 77);
    b.extend(
        Frame {
            tag: 9,
            flags: 0,
            channel: 0,
            body: unknown,
        }
        .encode(),
    );
    b.extend(Request::Stats.to_frame(10, 0, false).unwrap().encode());
    let f = raw(&r.sock, &b, 4);
    assert_eq!(f.len(), 4);
    assert!(f[0].flags & FLAG_ERROR != 0);
    assert!(String::from_utf8_lossy(&f[0].body).contains("version"));
    assert!(f[1].flags & FLAG_ERROR == 0);
    let by_tag = |t| f.iter().find(|x| x.tag == t).unwrap();
    assert!(String::from_utf8_lossy(&by_tag(9).body).contains("unknown operation 77"));
    assert!(by_tag(10).flags & FLAG_ERROR == 0);
    // A length near 2^64: an error reply, then the connection closes.
    let mut huge = Vec::new();
    put_varint(&mut huge, u64::MAX - 1);
    let f = raw(&r.sock, &huge, 2);
    assert_eq!(f.len(), 1);
    assert!(String::from_utf8_lossy(&f[0].body).contains("above the limit"));
    // A frame cut short by a client that goes away.
    let mut cut = hello_frame(VERSION, None);
    cut.truncate(cut.len() - 3);
    raw(&r.sock, &cut, 0);
    // A block whose data is not what its hash says is refused.
    let mut b = hello_frame(VERSION, None);
    b.extend(
        Request::AddHashed(super::protocol::BatchBlock {
            class: BlockClass::Data,
            hash: HashKind::Sha3_256.digest(b"one thing"),
            data: b"another".to_vec().into(),
        })
        .to_frame(2, 0, false)
        .unwrap()
        .encode(),
    );
    let f = raw(&r.sock, &b, 2);
    assert!(f[1].flags & FLAG_ERROR != 0);
    assert!(String::from_utf8_lossy(&f[1].body).contains("does not hash"));
    // And the server still serves.
    let c = client(&r, StreamOptions::default());
    c.add(b"still here").unwrap();
    c.sync().unwrap();
    assert!(
        r.server
            .counters
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 6
    );
}

#[test]
fn read_only_append_only_and_tokens() {
    let store = mem();
    let ro = serve(
        vec![Export {
            name: "d".into(),
            store: store.clone(),
        }],
        ServeOptions {
            read_only: true,
            ..Default::default()
        },
    );
    let c = client(&ro, StreamOptions::default());
    c.add(b"x").unwrap();
    let e = c.sync().unwrap_err().to_string();
    assert!(e.contains("read-only"), "{e}");
    let line =
        ArchiveEntry::now(&vt_core::Dirent::parse("SymLink{name:\"a\",target:\"b\"}").unwrap())
            .to_line();
    assert!(c
        .archive_append("a", line.as_bytes())
        .unwrap_err()
        .to_string()
        .contains("read-only"));
    drop(c);

    let ao = serve(
        vec![Export {
            name: "d".into(),
            store: store.clone(),
        }],
        ServeOptions {
            append_only: true,
            token: Some("sesame".into()),
            ..Default::default()
        },
    );
    let bad = StreamStore::connect(
        Endpoint::Unix(ao.sock.clone()),
        StreamOptions {
            link: LinkOptions {
                token: Some("wrong".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    assert!(bad
        .err()
        .unwrap()
        .to_string()
        .contains("wrong or missing token"));
    let none = StreamStore::connect(Endpoint::Unix(ao.sock.clone()), StreamOptions::default());
    assert!(none.is_err());
    let c = StreamStore::connect(
        Endpoint::Unix(ao.sock.clone()),
        StreamOptions {
            link: LinkOptions {
                token: Some("sesame".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    c.archive_append("a", line.as_bytes()).unwrap();
    let e = c.archive_replace("a", b"").unwrap_err().to_string();
    assert!(e.contains("append-only"), "{e}");
    assert_eq!(c.archive_read("a").unwrap().unwrap(), line.as_bytes());
    let _ = &ao.dir;
}

#[test]
fn channels_reach_other_exports() {
    let (a, b) = (mem(), mem());
    let r = serve(
        vec![
            Export {
                name: "a".into(),
                store: a.clone(),
            },
            Export {
                name: "b".into(),
                store: b.clone(),
            },
        ],
        ServeOptions::default(),
    );
    let mut bytes = hello_frame(VERSION, None);
    bytes.extend(
        Request::ChannelOpen(super::protocol::ChannelOpen {
            export: Some("b".into()),
        })
        .to_frame(2, 0, false)
        .unwrap()
        .encode(),
    );
    let f = raw(&r.sock, &bytes, 2);
    let Reply::Channel(ch) =
        Reply::decode(super::protocol::Op::ChannelOpen, f[1].flags, &f[1].body).unwrap()
    else {
        panic!("no channel");
    };
    assert_ne!(ch, 0);
    // Over one connection: add on the new channel, then ask on both.
    let mut bytes = hello_frame(VERSION, None);
    bytes.extend(
        Request::ChannelOpen(super::protocol::ChannelOpen {
            export: Some("b".into()),
        })
        .to_frame(2, 0, false)
        .unwrap()
        .encode(),
    );
    bytes.extend(
        Request::Add {
            class: BlockClass::Data,
            data: b"on b".to_vec(),
        }
        .to_frame(3, ch, false)
        .unwrap()
        .encode(),
    );
    let f = raw(&r.sock, &bytes, 3);
    assert!(f.iter().all(|x| x.flags & FLAG_ERROR == 0));
    // Replies come in any order; wait for the add to land.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let h = HashKind::Sha3_256.digest(b"on b");
    assert!(b.contains(&h).unwrap());
    assert!(!a.contains(&h).unwrap());
    // Unknown exports are named.
    let c = StreamStore::connect(
        Endpoint::Unix(r.sock.clone()),
        StreamOptions {
            link: LinkOptions {
                export: Some("zz".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    assert!(c.err().unwrap().to_string().contains("exports: a, b"));
}

#[test]
fn a_client_that_never_reads_does_not_stop_others() {
    let r = serve(
        vec![Export {
            name: "d".into(),
            store: mem(),
        }],
        ServeOptions {
            in_flight: 4,
            ..Default::default()
        },
    );
    let mut hog = UnixStream::connect(&r.sock).unwrap();
    hog.write_all(&hello_frame(VERSION, None)).unwrap();
    let big = Request::Add {
        class: BlockClass::Data,
        data: data(1, 1 << 20),
    };
    // Ask for the same megabyte many times over and never read a reply.
    let get = Request::Get(HashKind::Sha3_256.digest(&data(1, 1 << 20)));
    hog.write_all(&big.to_frame(2, 0, false).unwrap().encode())
        .unwrap();
    hog.set_write_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let g = get.to_frame(3, 0, false).unwrap().encode();
    for _ in 0..200 {
        if hog.write_all(&g).is_err() {
            break;
        }
    }
    // Others are served all the while.
    let c = client(&r, StreamOptions::default());
    for i in 0..100 {
        c.add(&data(i + 10, 1000)).unwrap();
    }
    c.sync().unwrap();
    drop(hog);
}

#[test]
fn prefetched_blocks_serve_every_reader_announced() {
    let backing = mem();
    let r = serve(
        vec![Export {
            name: "d".into(),
            store: backing.clone(),
        }],
        ServeOptions::default(),
    );
    let (h, _) = backing.add(b"the same block in two files").unwrap();
    let c = client(&r, StreamOptions::default());
    // Two files hold the same block: announced twice, read twice.
    c.prefetch(&[h]);
    c.prefetch(&[h]);
    for _ in 0..2 {
        assert_eq!(c.get(&h).unwrap().unwrap(), b"the same block in two files");
    }
    let [ready, waited, missed, dropped] = c.prefetch_counts();
    assert_eq!((ready + waited, missed, dropped), (2, 0, 0));
    // A third read was not announced: it asks the server itself.
    assert!(c.get(&h).unwrap().is_some());
    assert_eq!(c.prefetch_counts()[2], 1);
}

/// A store that returns other data than it was given.
struct Lying(Arc<dyn Store>);

impl Store for Lying {
    fn hash_kind(&self) -> HashKind {
        self.0.hash_kind()
    }
    fn add_hashed(&self, hash: &vt_core::Hash, data: &[u8]) -> vt_core::Result<bool> {
        self.0.add_hashed(hash, data)
    }
    fn get(&self, hash: &vt_core::Hash) -> vt_core::Result<Option<Vec<u8>>> {
        Ok(self.0.get(hash)?.map(|mut d| {
            d[0] ^= 1;
            d
        }))
    }
    fn contains(&self, hash: &vt_core::Hash) -> vt_core::Result<bool> {
        self.0.contains(hash)
    }
    fn sync(&self) -> vt_core::Result<()> {
        self.0.sync()
    }
    fn stats(&self) -> vt_core::Result<vt_core::store::StoreStats> {
        self.0.stats()
    }
}

#[test]
fn a_client_that_verifies_catches_a_server_returning_other_data() {
    let backing = mem();
    let r = serve(
        vec![Export {
            name: "d".into(),
            store: Arc::new(Lying(backing.clone())),
        }],
        ServeOptions::default(),
    );
    let (h, _) = backing.add(b"what was stored").unwrap();
    let checked = client(
        &r,
        StreamOptions {
            verify: true,
            ..Default::default()
        },
    );
    let e = checked.get(&h).unwrap_err().to_string();
    assert!(e.contains("came back with other data"), "{e}");
    checked.prefetch(&[h]);
    assert!(checked.get(&h).is_err(), "prefetched reads are checked too");
    // Without verify the client relies on the server's own checks.
    let trusting = client(&r, StreamOptions::default());
    assert_ne!(trusting.get(&h).unwrap().unwrap(), b"what was stored");
}

/// A store that keeps its blocks as zstd frames (as a DataDir keeps most
/// of its data), counting how they were read; `corrupt` flips a byte of
/// the block inside each frame.
struct Packing {
    inner: Arc<dyn Store>,
    corrupt: bool,
    packed: std::sync::atomic::AtomicU64,
    plain: std::sync::atomic::AtomicU64,
}

impl Packing {
    fn new(inner: Arc<dyn Store>, corrupt: bool) -> Self {
        Packing {
            inner,
            corrupt,
            packed: Default::default(),
            plain: Default::default(),
        }
    }
}

impl Store for Packing {
    fn hash_kind(&self) -> HashKind {
        self.inner.hash_kind()
    }
    fn add_hashed(&self, hash: &vt_core::Hash, data: &[u8]) -> vt_core::Result<bool> {
        self.inner.add_hashed(hash, data)
    }
    fn get(&self, hash: &vt_core::Hash) -> vt_core::Result<Option<Vec<u8>>> {
        self.plain
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.get(hash)
    }
    fn get_packed(&self, hash: &vt_core::Hash) -> vt_core::Result<Option<bytes::Bytes>> {
        self.packed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.inner.get(hash)?.map(|mut d| {
            if self.corrupt {
                d[0] ^= 1;
            }
            zstd::bulk::compress(&d, 3).unwrap().into()
        }))
    }
    fn contains(&self, hash: &vt_core::Hash) -> vt_core::Result<bool> {
        self.inner.contains(hash)
    }
    fn sync(&self) -> vt_core::Result<()> {
        self.inner.sync()
    }
    fn stats(&self) -> vt_core::Result<vt_core::store::StoreStats> {
        self.inner.stats()
    }
}

#[test]
fn blocks_kept_compressed_travel_compressed() {
    let backing = mem();
    let packing = Arc::new(Packing::new(backing.clone(), false));
    let r = serve(
        vec![Export {
            name: "d".into(),
            store: packing.clone(),
        }],
        ServeOptions::default(),
    );
    let blocks: Vec<(vt_core::Hash, Vec<u8>)> = (0..200)
        .map(|i| {
            let d = if i % 2 == 0 {
                data(i, 1000 + i as usize * 300)
            } else {
                format!("{i} compresses well ")
                    .repeat(i as usize + 1)
                    .into_bytes()
            };
            (backing.add(&d).unwrap().0, d)
        })
        .collect();
    for verify in [false, true] {
        let c = client(
            &r,
            StreamOptions {
                verify,
                ..Default::default()
            },
        );
        let (b0, p0) = (
            packing.plain.load(std::sync::atomic::Ordering::Relaxed),
            packing.packed.load(std::sync::atomic::Ordering::Relaxed),
        );
        // Read one by one, and prefetched.
        for (h, d) in &blocks[..100] {
            assert_eq!(&c.get(h).unwrap().unwrap(), d);
        }
        c.prefetch(&blocks[100..].iter().map(|b| b.0).collect::<Vec<_>>());
        for (h, d) in &blocks[100..] {
            assert_eq!(&c.get(h).unwrap().unwrap(), d);
        }
        let absent = HashKind::Sha3_256.digest(b"never stored");
        assert!(c.get(&absent).unwrap().is_none());
        // Every block went out as the store keeps it; only the absent one
        // was asked for plainly.
        assert_eq!(
            packing.packed.load(std::sync::atomic::Ordering::Relaxed) - p0,
            201
        );
        assert_eq!(
            packing.plain.load(std::sync::atomic::Ordering::Relaxed) - b0,
            1
        );
    }
}

#[test]
fn packed_blocks_are_checked_and_bounded() {
    let backing = mem();
    let r = serve(
        vec![Export {
            name: "d".into(),
            store: Arc::new(Packing::new(backing.clone(), true)),
        }],
        ServeOptions::default(),
    );
    let (h, _) = backing.add(b"what was stored, packed").unwrap();
    let checked = client(
        &r,
        StreamOptions {
            verify: true,
            ..Default::default()
        },
    );
    let e = checked.get(&h).unwrap_err().to_string();
    assert!(e.contains("came back with other data"), "{e}");
    checked.prefetch(&[h]);
    let e = checked.get(&h).unwrap_err().to_string();
    assert!(e.contains("came back with other data"), "{e}");
    // A frame that claims more than any block holds is refused before
    // anything is allocated for it.
    let big = vec![0u8; 40 << 20];
    let body = super::protocol::packed_body(&zstd::bulk::compress(&big, 1).unwrap());
    let e = super::protocol::unpack(&body).unwrap_err().to_string();
    assert!(e.contains("a block of 41943040 bytes"), "{e}");
    // Damaged frames are errors, not data.
    let mut body = super::protocol::packed_body(
        &zstd::bulk::compress(b"x".repeat(5000).as_slice(), 3).unwrap(),
    );
    let n = body.len();
    body[n - 3] ^= 0xff;
    body.truncate(n - 1);
    assert!(super::protocol::unpack(&body).is_err());
}
