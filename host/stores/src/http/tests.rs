//! `vt httpd` and the HTTP store against each other on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use vt_core::{HashKind, Store};

use super::{HttpOptions, HttpServer, HttpStore};
use crate::stream::Shutdown;
use crate::MemoryStore;

struct Running {
    url: String,
    addr: std::net::SocketAddr,
    stop: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
    store: Arc<MemoryStore>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(token: Option<&str>) -> Running {
    let store = Arc::new(MemoryStore::new(HashKind::Sha3_256));
    serve_store(store.clone(), store, token)
}

/// Serves `served` (which may wrap `store`).
fn serve_store(served: Arc<dyn Store>, store: Arc<MemoryStore>, token: Option<&str>) -> Running {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let srv = Arc::new(HttpServer::new(
        served,
        HttpOptions {
            token: token.map(str::to_owned),
        },
    ));
    let stop = Shutdown::new();
    let s2 = stop.clone();
    let thread = std::thread::spawn(move || srv.run(l, s2).unwrap());
    Running {
        url: format!("http://{addr}/"),
        addr,
        stop,
        thread: Some(thread),
        store,
    }
}

/// One raw HTTP/1.1 request; the status line, headers and body.
fn raw(addr: std::net::SocketAddr, req: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

fn get(addr: std::net::SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"),
    )
}

#[test]
fn blocks_round_trip_through_the_http_store() {
    let r = serve(Some("sesame"));
    let client = HttpStore::connect(&r.url, Some("sesame".into())).unwrap();
    let mut hashes = Vec::new();
    for i in 0..300u32 {
        let data = vec![i as u8; 1000 + i as usize * 37];
        let (h, new) = client.add(&data).unwrap();
        assert!(new);
        hashes.push((h, data));
    }
    client.sync().unwrap();
    assert_eq!(r.store.stats().unwrap().blocks, 300);
    // Adding again sends nothing: the client knows.
    assert!(!client.add(&hashes[0].1).unwrap().1);
    let fresh = HttpStore::connect(&r.url, None).unwrap();
    fresh.prefetch(&hashes.iter().map(|(h, _)| *h).collect::<Vec<_>>());
    for (h, d) in &hashes {
        assert!(fresh.contains(h).unwrap());
        assert_eq!(fresh.get(h).unwrap().as_deref(), Some(&d[..]));
    }
    let absent = HashKind::Sha3_256.digest(b"absent");
    assert!(!fresh.contains(&absent).unwrap());
    assert_eq!(fresh.get(&absent).unwrap(), None);
    // Without the token nothing can be written.
    let e = fresh.add(b"new").unwrap_err().to_string();
    assert!(e.contains("token"), "{e}");
    // Archives.
    let line = vt_core::archive::ArchiveEntry::now(&vt_core::Dirent::new(
        "docs",
        vt_core::DirentKind::File {
            block: vt_core::BlockRef::empty(),
        },
    ))
    .to_line();
    client.archive_append("docs", line.as_bytes()).unwrap();
    assert_eq!(fresh.archive_names().unwrap(), vec!["docs".to_owned()]);
    assert!(fresh.archive_read("docs").unwrap().is_some());
    assert_eq!(fresh.archive_read("none").unwrap(), None);
}

#[test]
fn a_wrong_token_is_refused_and_reported() {
    let r = serve(Some("sesame"));
    let client = HttpStore::connect(&r.url, Some("wrong".into())).unwrap();
    client.add(b"some block").unwrap();
    let e = client.sync().unwrap_err().to_string();
    assert!(e.contains("401"), "{e}");
    assert_eq!(r.store.stats().unwrap().blocks, 0);
    let ro = serve(None);
    let (status, _, body) = raw(
        ro.addr,
        "PUT /h/sha3_256:00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn blocks_by_hash_with_etags_and_ranges() {
    let r = serve(None);
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let (h, _) = r.store.add(&data).unwrap();
    let path = format!("/h/{}:{}", h.kind, h.hex());
    let (s, head, body) = get(r.addr, &path, "");
    assert_eq!(s, 200);
    assert_eq!(body, data);
    assert!(head.contains("immutable"), "{head}");
    let tag = format!("\"sha3_256:{}\"", h.hex());
    assert!(head.contains(&format!("etag: {tag}")), "{head}");
    let (s, _, body) = get(r.addr, &path, &format!("If-None-Match: {tag}\r\n"));
    assert_eq!((s, body.len()), (304, 0));
    let (s, head, body) = get(r.addr, &path, "Range: bytes=100-199\r\n");
    assert_eq!(s, 206);
    assert!(head.contains("content-range: bytes 100-199/1000"), "{head}");
    assert_eq!(body, &data[100..200]);
    let (s, head, _) = get(r.addr, &path, "Range: bytes=5000-\r\n");
    assert_eq!(s, 416);
    assert!(head.contains("bytes */1000"), "{head}");
    // The text form of a hashcode works too.
    let (s, _, body) = get(r.addr, &format!("/h/H%7Bsha3_256:{}%7D", h.hex()), "");
    assert_eq!((s, body), (200, data.clone()));
    for (bad, code) in [
        ("/h/nothex", 400),
        ("/h/sha3_256:abcd", 400),
        ("/h/md5:00", 400),
        ("/h/%zz", 400),
        ("/d/h:sha3_256:zz/x", 400),
        ("/nowhere", 404),
        (&format!("/h/sha3_256:{}", "0".repeat(64)), 404),
        (&format!("/i/sha3_256:{}", h.hex()), 400),
    ] {
        let (s, _, body) = get(r.addr, bad, "");
        assert_eq!(s, code, "{bad}: {}", String::from_utf8_lossy(&body));
        assert!(!body.is_empty(), "{bad}: a message");
    }
}

#[test]
fn a_range_reads_only_the_blocks_it_covers() {
    let store = Arc::new(MemoryStore::new(HashKind::Sha3_256));
    let counted = Arc::new(crate::ProgressStore::new(store.clone()));
    let r = serve_store(counted.clone(), store.clone(), None);
    // 100 blocks of 10,000 bytes under one indirect block.
    let mut all = Vec::new();
    let mut refs = Vec::new();
    for i in 0..100u32 {
        let data: Vec<u8> = (0..10_000u32).map(|j| (i * 7 + j % 13) as u8).collect();
        let (h, _) = store.add(&data).unwrap();
        refs.push(vt_core::BlockRef::Direct {
            hash: h,
            span: 10_000,
        });
        all.extend_from_slice(&data);
    }
    let (top, _) = store.add(&vt_core::block::encode_indirect(&refs)).unwrap();
    let path = format!("/i/{}:{}", top.kind, top.hex());
    let before = counted.counts().get_blocks;
    let (s, _, body) = get(r.addr, &path, "Range: bytes=505000-505099\r\n");
    assert_eq!(s, 206);
    assert_eq!(body, &all[505_000..505_100]);
    // The indirect block (once to size it, once to read) and one leaf.
    let read = counted.counts().get_blocks - before;
    assert!(read <= 3, "{read} blocks read for a 100-byte range");
    let (s, _, body) = get(r.addr, &path, "");
    assert_eq!(s, 200);
    assert!(body == all);
}
