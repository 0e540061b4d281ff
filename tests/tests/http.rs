//! HTTP (issue 20): a real `vt httpd` on loopback read with curl, the HTTP
//! store, `x-vt:` URIs and `vt publish`, through the real `vt` binary.

mod common;

use std::path::Path;
use std::process::Command;

use common::server::Server;
use common::*;

/// curl's output for `url` with `args`: (status, headers, body).
fn curl(url: &str, args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("h");
    let o = Command::new("curl")
        .args(["-s", "-g", "-D"])
        .arg(&head)
        .args(args)
        .arg(url)
        .output()
        .expect("run curl (install it: apt-get install curl)");
    assert!(o.status.success(), "curl {url}: {}", o.status);
    let h = std::fs::read_to_string(&head).unwrap();
    let status = h[9..12].parse().unwrap();
    (status, h.to_ascii_lowercase(), o.stdout)
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// A tree with typed files, a large file, a symlink, a hard link and a
/// name that needs escaping.
fn web_tree(root: &Path) {
    let mut rng = Rng(20);
    std::fs::create_dir_all(root.join("src/sub")).unwrap();
    std::fs::write(
        root.join("src/main.c"),
        b"#include <stdio.h>\nint main(void) { return 0; }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("index.html"),
        b"<!DOCTYPE html><html><body>hi</body></html>\n",
    )
    .unwrap();
    std::fs::write(root.join("src/sub/big.bin"), rng.bytes(3_000_000)).unwrap();
    std::fs::write(root.join("a name & more.txt"), rng.text(5000)).unwrap();
    std::os::unix::fs::symlink("../main.c", root.join("src/sub/link.c")).unwrap();
    std::fs::hard_link(root.join("index.html"), root.join("src/again.html")).unwrap();
}

/// The x-vt: URI `vt publish` printed, and the http URL if any.
fn published(out: &str) -> (String, Option<String>) {
    let uri = out
        .lines()
        .find(|l| l.starts_with("x-vt:"))
        .unwrap_or_else(|| panic!("no URI in {out}"))
        .to_owned();
    let url = out
        .lines()
        .find(|l| l.starts_with("http://"))
        .map(str::to_owned);
    (uri, url)
}

#[test]
fn httpd_serves_files_ranges_listings_and_errors_to_curl() {
    let env = Env::new();
    let src = env.path("site");
    web_tree(&src);
    env.ok(&["import", &src.to_string_lossy()]);
    let (uri, _) = published(&env.ok(&["publish", &src.to_string_lossy()]));
    // x-vt:/h:KIND:HEX/site -> /d/h:KIND:HEX/site
    let d = format!("/d/{}", uri.trim_start_matches("x-vt:/"));
    let server = Server::httpd(&env, &env.store(), &[]);
    let base = server.spec.trim_end_matches('/').to_owned();

    // Whole files, exact, with their types and lengths.
    let (s, h, body) = curl(&format!("{base}{d}/src/main.c"), &[]);
    assert_eq!(s, 200);
    assert_eq!(body, std::fs::read(src.join("src/main.c")).unwrap());
    assert_eq!(header(&h, "content-type"), Some("text/x-c; charset=utf-8"));
    let (s, h, body) = curl(&format!("{base}{d}/index.html"), &[]);
    assert_eq!(s, 200);
    assert_eq!(body, std::fs::read(src.join("index.html")).unwrap());
    assert_eq!(header(&h, "content-type"), Some("text/html; charset=utf-8"));
    let big = std::fs::read(src.join("src/sub/big.bin")).unwrap();
    let big_url = format!("{base}{d}/src/sub/big.bin");
    let (s, h, body) = curl(&big_url, &[]);
    assert_eq!(s, 200);
    assert!(body == big, "big.bin differs");
    assert_eq!(header(&h, "content-length"), Some("3000000"));
    // Names that need escaping, a symlink and a hard link.
    let (s, _, body) = curl(&format!("{base}{d}/a%20name%20%26%20more.txt"), &[]);
    assert_eq!(
        (s, body),
        (200, std::fs::read(src.join("a name & more.txt")).unwrap())
    );
    let (s, _, body) = curl(&format!("{base}{d}/src/sub/link.c"), &[]);
    assert_eq!(
        (s, body),
        (200, std::fs::read(src.join("src/main.c")).unwrap())
    );
    let (s, _, body) = curl(&format!("{base}{d}/src/again.html"), &[]);
    assert_eq!(
        (s, body),
        (200, std::fs::read(src.join("index.html")).unwrap())
    );

    // One range, several ranges, an unsatisfiable one.
    let (s, h, body) = curl(&big_url, &["-H", "Range: bytes=100-199"]);
    assert_eq!(s, 206);
    assert_eq!(body, &big[100..200]);
    assert_eq!(header(&h, "content-range"), Some("bytes 100-199/3000000"));
    let (s, h, body) = curl(&big_url, &["-H", "Range: bytes=0-9,2999990-"]);
    assert_eq!(s, 206);
    let ct = header(&h, "content-type").unwrap().to_owned();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{ct}"));
    let parts = multipart(&body, boundary);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0, "bytes 0-9/3000000");
    assert_eq!(parts[0].1, &big[..10]);
    assert_eq!(parts[1].0, "bytes 2999990-2999999/3000000");
    assert_eq!(parts[1].1, &big[2_999_990..]);
    let (s, h, _) = curl(&big_url, &["-H", "Range: bytes=5000000-"]);
    assert_eq!(s, 416);
    assert_eq!(header(&h, "content-range"), Some("bytes */3000000"));

    // Validators: the ETag given back makes a 304.
    let (_, h, _) = curl(&big_url, &["-I"]);
    let tag = header(&h, "etag").unwrap().to_owned();
    assert!(header(&h, "cache-control").unwrap().contains("immutable"));
    let (s, _, body) = curl(&big_url, &["-H", &format!("If-None-Match: {tag}")]);
    assert_eq!((s, body.len()), (304, 0));

    // Directories: HTML with links, JSON on request.
    let (s, h, body) = curl(&format!("{base}{d}/src/"), &[]);
    assert_eq!(s, 200);
    assert!(header(&h, "content-type").unwrap().starts_with("text/html"));
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("href=\"main.c\"") && html.contains("href=\"sub/\""),
        "{html}"
    );
    let (s, h, body) = curl(
        &format!("{base}{d}/src/sub"),
        &["-H", "Accept: application/json"],
    );
    assert_eq!(s, 200);
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big.bin", "link.c"]);
    assert_eq!(j[0]["size"], 3_000_000);
    assert_eq!(j[1]["target"], "../main.c");
    let (s, h, _) = curl(&format!("{base}{d}/src"), &[]);
    assert_eq!(s, 301);
    assert!(header(&h, "location").unwrap().ends_with("/src/"));

    // Errors: unknown hash 404, malformed paths and hashes 400, with a message.
    let zero = "0".repeat(64);
    for (path, code) in [
        (format!("/h/sha3_256:{zero}"), 404),
        (format!("/d/h:sha3_256:{zero}/x"), 404),
        (format!("{d}/no-such-file"), 404),
        (format!("{d}/src/main.c/deeper"), 404),
        ("/h/not-a-hash".to_owned(), 400),
        ("/h/sha3_256:12".to_owned(), 400),
        ("/d/zzz/file".to_owned(), 400),
        ("/d/h:sha3_256:%zz/file".to_owned(), 400),
        ("/q/anything".to_owned(), 404),
    ] {
        let (s, _, body) = curl(&format!("{base}{path}"), &[]);
        assert_eq!(s, code, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(!body.is_empty(), "{path}: no message");
    }
    // The archives, by name.
    let (s, _, body) = curl(&format!("{base}/a/site"), &[]);
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("D{name:\"site\""));

    // 50 clients at once, each reading the large file whole.
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let url = big_url.clone();
            std::thread::spawn(move || {
                let (s, _, body) = if i % 2 == 0 {
                    curl(&url, &[])
                } else {
                    curl(&url, &["-H", "Range: bytes=1000000-1999999"])
                };
                (i, s, body)
            })
        })
        .collect();
    for t in threads {
        let (i, s, body) = t.join().unwrap();
        if i % 2 == 0 {
            assert_eq!(s, 200);
            assert!(body == big, "client {i}: body differs");
        } else {
            assert_eq!(s, 206);
            assert!(
                body == big[1_000_000..2_000_000],
                "client {i}: range differs"
            );
        }
    }
    server.stop();
}

/// The parts of a multipart/byteranges body: (Content-Range, data).
fn multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("\r\n--{boundary}");
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let at = find(rest, delim.as_bytes()).expect("boundary");
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            return out;
        }
        let end = find(rest, b"\r\n\r\n").expect("part headers");
        let heads = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let range = header(&heads, "content-range")
            .expect("content-range")
            .to_owned();
        rest = &rest[end + 4..];
        let next = find(rest, delim.as_bytes()).expect("next boundary");
        out.push((range, rest[..next].to_vec()));
        rest = &rest[next..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn http_store_round_trips_with_a_token_and_refuses_without() {
    let env = Env::new();
    let src = env.path("src");
    web_tree(&src);
    let token = env.path("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let server_store = env.path("server");
    env.ok(&["-S", &server_store.to_string_lossy(), "init"]);
    let server = Server::httpd(
        &env,
        &server_store,
        &["--token-file", &token.to_string_lossy()],
    );
    let spec = format!(
        "http(url={},token_file={})",
        server.spec,
        token.to_string_lossy()
    );
    env.ok(&["-S", &spec, "import", &src.to_string_lossy(), "web"]);
    // The snapshot was recorded on the server.
    assert!(server_store.join("archives/web.vt").exists());
    let out = env.path("out");
    env.ok(&["-S", &server.spec, "export", "web", &out.to_string_lossy()]);
    assert_same_tree(&src, &out);
    // An incremental import sends nothing new.
    let o = env.ok(&["-S", &spec, "import", &src.to_string_lossy(), "web"]);
    assert_eq!(new_blocks(&o), 0, "{o}");
    // Without the token: refused with a message that says why.
    let o = env.run(&["-S", &server.spec, "import", &src.to_string_lossy(), "web2"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("token"), "{e}");
    server.stop();
    let f = env.ok(&["-S", &server_store.to_string_lossy(), "fsck"]);
    assert!(f.contains(" 0 problems"), "{f}");
    // A read-only server refuses writes even with a token.
    let ro = Server::httpd(&env, &server_store, &[]);
    let spec = format!(
        "http(url={},token_file={})",
        ro.spec,
        token.to_string_lossy()
    );
    let o = env.run(&[
        "-S",
        &spec,
        "import",
        &env.path("out").to_string_lossy(),
        "other",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("read-only"), "{e}");
}

#[test]
fn publish_prints_a_uri_that_export_mount_and_curl_accept() {
    let env = Env::new();
    let src = env.path("pub");
    web_tree(&src);
    env.ok(&["init"]);
    let server = Server::httpd(&env, &env.store(), &[]);
    // With [httpd] url set, publish prints the URI with the server in it
    // and the URL.
    let cfg = env.path("xdg-config/vt/vtrc");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replace(
        "#url = \"http://files.example.org:8470/\"",
        &format!("url = \"{}\"", server.spec),
    );
    std::fs::write(&cfg, text).unwrap();
    let (uri, url) = published(&env.ok(&["publish", &src.to_string_lossy()]));
    let url = url.expect("an http URL");
    let authority = server
        .spec
        .trim_start_matches("http://")
        .trim_end_matches('/');
    assert!(
        uri.starts_with(&format!("x-vt://{authority}/h:sha3_256:")),
        "{uri}"
    );
    assert!(uri.ends_with("/pub"), "{uri}");
    // curl fetches the URL (a directory listing) and a file below it.
    let (s, _, body) = curl(&url, &[]);
    assert_eq!(s, 200, "{url}");
    assert!(String::from_utf8_lossy(&body).contains("index.html"));
    let (s, _, body) = curl(&format!("{url}src/main.c"), &[]);
    assert_eq!(
        (s, body),
        (200, std::fs::read(src.join("src/main.c")).unwrap())
    );
    // export takes the URI (blocks fetched from the server) ...
    let out = env.path("out");
    env.ok(&["export", &uri, &out.to_string_lossy()]);
    assert_same_tree(&src, &out);
    // ... and a path below it, and the URI without the server (local store).
    let local = format!("x-vt:/{}", uri.splitn(4, '/').nth(3).unwrap());
    let f = env.path("one.c");
    env.ok(&[
        "export",
        &format!("{local}/src/main.c"),
        &f.to_string_lossy(),
    ]);
    assert_eq!(
        std::fs::read(&f).unwrap(),
        std::fs::read(src.join("src/main.c")).unwrap()
    );
    let cat = env
        .cmd()
        .args(["cat", &uri, "src/sub/big.bin"])
        .output()
        .unwrap();
    assert!(cat.stdout == std::fs::read(src.join("src/sub/big.bin")).unwrap());
    // mount takes it too.
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut child = env
        .cmd()
        .args(["mount", "-r", &uri, &mnt.to_string_lossy()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !mnt.join("index.html").exists() {
        assert!(t.elapsed().as_secs() < 30, "mount did not come up");
        if let Ok(Some(st)) = child.try_wait() {
            panic!("vt mount exited: {st}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_same_tree(&src, &mnt);
    env.ok(&["umount", &mnt.to_string_lossy()]);
    assert!(child.wait().unwrap().success());
    // A bad URI is an error naming it.
    let o = env.run(&[
        "export",
        "x-vt:/h:sha3_256:1234/x",
        &env.path("o2").to_string_lossy(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("x-vt"));
    server.stop();
}
