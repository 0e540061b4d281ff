//! Stores over the wire (issue 16): real `vt serve` processes on loopback
//! TCP, UNIX sockets and stdio, driven by the real `vt` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::server::Server;
use common::*;

/// The test tree: files in 7 directories and a symlink.
fn tree(root: &Path, seed: u64, files: usize, size: usize) {
    mixed_tree(root, seed, files, size, 7);
}

fn err_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The "on the wire N sent" figure of a push, in bytes: parsed from the
/// `vt -v` request summary.
fn wire_sent(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let i = l.find(" bytes sent")?;
            l[..i].rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no wire figure in {stderr}"))
}

#[test]
fn stdio_command_store_round_trips() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src, 1, 60, 300_000);
    let spec = format!(
        "!{} serve --stdio -S {}",
        vt_bin().display(),
        env.path("server").display()
    );
    env.ok(&["-S", &spec, "import", &src.to_string_lossy(), "t"]);
    // The snapshot was recorded on the server side, in its own archive.
    assert!(env.path("server/archives/t.vt").exists());
    let out = env.path("out");
    env.ok(&["-S", &spec, "export", "t", &out.to_string_lossy()]);
    assert_same_tree(&src, &out);
    assert_eq!(env.ok(&["-S", &spec, "log", "t"]).lines().count(), 1);
    let ls = env.ok(&["-S", &spec, "ls", "t", "d1"]);
    assert!(ls.contains(" f1"), "{ls}");
}

#[test]
fn tcp_import_export_log_and_incremental() {
    let env = Env::new();
    let srv = Server::tcp(&env, &env.path("server"), &[]);
    assert!(srv.spec.starts_with("tcp:127.0.0.1:"), "{}", srv.spec);
    let src = env.path("src");
    tree(&src, 2, 200, 200_000);
    let first = env.ok(&["-S", &srv.spec, "import", &src.to_string_lossy(), "t"]);
    let new1 = new_blocks(&first);
    // Unchanged: nothing new, and the summary says so after the sync
    // (a remote store cannot tell at once).
    std::fs::write(src.join("d0/added"), b"one more file\n").unwrap();
    let second = env.ok(&["-S", &srv.spec, "import", &src.to_string_lossy(), "t"]);
    assert!(new1 > 100, "{first}");
    assert!(new_blocks(&second) < new1 / 10, "{first}\n{second}");
    // Move the tree: every file is read again, and blocks the server has
    // are counted as already stored.
    let moved = env.path("moved");
    std::fs::rename(&src, &moved).unwrap();
    let third = env.ok(&["-S", &srv.spec, "import", &moved.to_string_lossy(), "t"]);
    assert!(new_blocks(&third) < new1 / 10, "{first}\n{third}");
    let out = env.path("out");
    env.ok(&["-S", &srv.spec, "export", "t", &out.to_string_lossy()]);
    assert_same_tree(&moved, &out);
    assert_eq!(env.ok(&["-S", &srv.spec, "log", "t"]).lines().count(), 3);
    // Archives through the server: [SPEC]NAME names it too.
    let named = format!("[{}]t", srv.spec);
    assert_eq!(env.ok(&["log", &named]).lines().count(), 3);
    srv.stop();
    // Stopped cleanly: the store is consistent.
    let fsck = env.ok(&["-S", &env.path("server").to_string_lossy(), "fsck"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
}

#[test]
fn unix_socket_mode_and_default_path() {
    let env = Env::new();
    std::fs::write(
        env.path("vtrc"),
        format!(
            "[stores.home]\ntype = \"datadir\"\npath = \"{}\"\n",
            env.path("server").display()
        ),
    )
    .unwrap();
    let vtrc = env.path("vtrc").to_string_lossy().into_owned();
    let mut child = env
        .cmd()
        .env("XDG_RUNTIME_DIR", env.path("run"))
        .args(["-f", &vtrc, "-S", "home", "serve"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let sock = env.path("run/vt/home.sock");
    assert!(
        line.contains(&sock.to_string_lossy().into_owned()),
        "{line}"
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let src = env.path("src");
    tree(&src, 3, 20, 50_000);
    let spec = format!("unix:{}", sock.display());
    env.ok(&["-S", &spec, "import", &src.to_string_lossy(), "t"]);
    // A path ending in .sock is a socket store too.
    let out = env.path("out");
    env.ok(&[
        "-S",
        &sock.to_string_lossy(),
        "export",
        "t",
        &out.to_string_lossy(),
    ]);
    assert_same_tree(&src, &out);
    // A second server on the same socket is refused, the first unharmed.
    let o = env
        .cmd()
        .env("XDG_RUNTIME_DIR", env.path("run"))
        .args(["-f", &vtrc, "-S", "home", "serve"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        err_of(&o).contains("already being served"),
        "{}",
        err_of(&o)
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
    assert!(!sock.exists(), "the socket is removed at exit");
}

fn openssl(args: &[&str]) {
    let st = std::process::Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (tests/run.sh installs it)");
    assert!(st.success(), "openssl {args:?}");
}

/// A certificate authority and a server certificate for 127.0.0.1 signed
/// by it, as vt.1 says to make them: (CA certificate, server certificate,
/// server key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=vt test CA"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    openssl(&ca);
    let mut req = vec!["req", "-subj", "/CN=127.0.0.1"];
    req.extend(ec);
    let (key, csr) = (p("key.pem"), p("req.csr"));
    req.extend(["-keyout", &key, "-out", &csr]);
    openssl(&req);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let (cert, ext) = (p("cert.pem"), p("san.ext"));
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (
        PathBuf::from(ca_pem),
        PathBuf::from(cert),
        PathBuf::from(key),
    )
}

#[test]
fn security_token_tls_read_only_append_only() {
    let env = Env::new();
    let store = env.path("server");
    // A non-loopback address refuses to start without a token and TLS.
    for extra in [&[][..], &["--token-file", "/dev/null"][..]] {
        let o = env
            .cmd()
            .args([
                "-S",
                &store.to_string_lossy(),
                "serve",
                "--listen",
                "0.0.0.0:0",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let e = err_of(&o);
        assert!(
            e.contains("refusing to listen") || e.contains("token file"),
            "{e}"
        );
    }
    // A bare port binds loopback.
    let srv = Server::start(&env, &store, &["--listen", "0"]);
    assert!(srv.spec.starts_with("tcp:127.0.0.1:"), "{}", srv.spec);
    drop(srv);

    // Token and TLS.
    std::fs::write(env.path("token"), "open-sesame\n").unwrap();
    std::fs::write(env.path("wrong"), "guess\n").unwrap();
    let (ca, cert, key) = certificates(env.dir.path());
    let srv = Server::tcp(
        &env,
        &store,
        &[
            "--token-file",
            &env.path("token").to_string_lossy(),
            "--tls-cert",
            &cert.to_string_lossy(),
            "--tls-key",
            &key.to_string_lossy(),
        ],
    );
    assert!(srv.spec.starts_with("tls:"), "{}", srv.spec);
    let addr = srv.spec.strip_prefix("tls:").unwrap().to_owned();
    let tls = |token: &str| {
        format!(
            "tls(address={addr},ca={},token_file={})",
            ca.display(),
            env.path(token).display()
        )
    };
    let src = env.path("src");
    tree(&src, 4, 20, 50_000);
    env.ok(&["-S", &tls("token"), "import", &src.to_string_lossy(), "t"]);
    let o = env.run(&["-S", &tls("wrong"), "log", "t"]);
    assert!(!o.status.success());
    assert!(
        err_of(&o).contains("wrong or missing token"),
        "{}",
        err_of(&o)
    );
    // Without TLS where the server requires it: refused.
    let o = env.run(&["-S", &format!("tcp:{addr}"), "log", "t"]);
    assert!(!o.status.success(), "plain TCP to a TLS server");
    // Without the CA: the certificate is not trusted.
    let o = env.run(&[
        "-S",
        &format!(
            "tls(address={addr},ca=/etc/ssl/certs/ca-certificates.crt,token_file={})",
            env.path("token").display()
        ),
        "log",
        "t",
    ]);
    assert!(!o.status.success(), "untrusted certificate");
    drop(srv);

    // Read-only: imports are refused and say why; reads work.
    let srv = Server::tcp(&env, &store, &["--read-only"]);
    let src2 = env.path("src2");
    tree(&src2, 5, 10, 50_000);
    let o = env.run(&["-S", &srv.spec, "import", &src2.to_string_lossy(), "t"]);
    assert!(!o.status.success());
    assert!(err_of(&o).contains("read-only"), "{}", err_of(&o));
    assert_eq!(env.ok(&["-S", &srv.spec, "log", "t"]).lines().count(), 1);
    drop(srv);

    // Append-only: imports append, forget (a rewrite) is refused.
    let srv = Server::tcp(&env, &store, &["--append-only"]);
    env.ok(&["-S", &srv.spec, "import", &src2.to_string_lossy(), "t"]);
    let o = env.run(&["-S", &srv.spec, "forget", "t", "1"]);
    assert!(!o.status.success());
    assert!(err_of(&o).contains("append-only"), "{}", err_of(&o));
    assert_eq!(env.ok(&["-S", &srv.spec, "log", "t"]).lines().count(), 2);
    drop(srv);
    // Without it, forget works.
    let srv = Server::tcp(&env, &store, &[]);
    env.ok(&["-S", &srv.spec, "forget", "t", "1"]);
    assert_eq!(env.ok(&["-S", &srv.spec, "log", "t"]).lines().count(), 1);
}

#[test]
fn push_sends_what_is_lacking_and_resumes_after_kill() {
    let env = Env::new();
    let local = env.path("local");
    let src = env.path("src");
    // Incompressible data, large enough that a push takes a while.
    tree(&src, 6, 300, 400_000);
    env.ok(&[
        "-S",
        &local.to_string_lossy(),
        "import",
        &src.to_string_lossy(),
        "t",
    ]);
    let remote_dir = env.path("remote");
    let srv = Server::tcp(&env, &remote_dir, &[]);
    // A push killed midway: started, then SIGKILLed once the server's
    // store has grown.
    let mut child = env
        .cmd()
        .args(["-q", "-S", &local.to_string_lossy(), "push", &srv.spec])
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        if du(&remote_dir) > 8 << 20 {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the push finished ({st}) before it could be killed");
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "push made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = env.run(&["-S", &srv.spec, "log", "t"]);
    assert!(
        err_of(&o).contains("no archive"),
        "no archive line for a snapshot not all there: {}",
        err_of(&o)
    );
    let before = du(&remote_dir);
    let o = env.run(&["-v", "-S", &local.to_string_lossy(), "push", &srv.spec]);
    assert!(o.status.success(), "{}", err_of(&o));
    let resumed = wire_sent(&err_of(&o));
    let grown = du(&remote_dir) - before;
    // The rerun sends what is left, not everything again.
    assert!(
        (resumed as f64) < 1.05 * grown as f64 + 200_000.0,
        "resumed push sent {resumed} for {grown} bytes of growth"
    );
    // A second push sends next to nothing.
    let o = env.run(&["-v", "-S", &local.to_string_lossy(), "push", &srv.spec]);
    assert!(o.status.success());
    let again = wire_sent(&err_of(&o));
    assert!(again < 4096, "second push sent {again} bytes");
    srv.stop();
    for d in [&local, &remote_dir] {
        let f = env.ok(&["-S", &d.to_string_lossy(), "fsck"]);
        assert!(f.contains(" 0 problems"), "{f}");
    }
    let out = env.path("out");
    env.ok(&[
        "-S",
        &remote_dir.to_string_lossy(),
        "export",
        "t",
        &out.to_string_lossy(),
    ]);
    assert_same_tree(&src, &out);
}

#[test]
fn push_wire_bytes_match_growth_and_pull_back() {
    let env = Env::new();
    let local = env.path("local");
    // Text that compresses, as source trees do.
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng(8);
    for i in 0..400 {
        std::fs::write(
            src.join(format!("f{i}.txt")),
            rng.text(20_000 + (i * 997) % 60_000),
        )
        .unwrap();
    }
    env.ok(&[
        "-S",
        &local.to_string_lossy(),
        "import",
        &src.to_string_lossy(),
        "t",
    ]);
    let remote_dir = env.path("remote");
    let srv = Server::tcp(&env, &remote_dir, &[]);
    // The server's store exists once it is served; measure from there.
    let before = du(&remote_dir);
    let o = env.run(&["-v", "-S", &local.to_string_lossy(), "push", &srv.spec, "t"]);
    assert!(o.status.success(), "{}", err_of(&o));
    let sent = wire_sent(&err_of(&o));
    let grown = du(&remote_dir) - before;
    assert!(
        (sent as f64) <= 1.05 * grown as f64,
        "push sent {sent} bytes for {grown} bytes of growth"
    );
    // --dirs-only into a third store: the tree, no contents, no line.
    let dirs = env.path("dirs");
    let listing = env.ok(&[
        "-S",
        &srv.spec,
        "push",
        "--dirs-only",
        &dirs.to_string_lossy(),
        "t",
    ]);
    assert!(listing.contains("D{"), "{listing}");
    let o = env.run(&["-S", &dirs.to_string_lossy(), "log", "t"]);
    assert!(err_of(&o).contains("no archive"), "{}", err_of(&o));
    let top = listing.lines().find(|l| l.starts_with("D{")).unwrap();
    let ls = env.ok(&["-S", &dirs.to_string_lossy(), "ls", top]);
    assert_eq!(ls.lines().count(), 400);
    assert!(du(&dirs) < du(&remote_dir) / 4);
    // Pull back into a fresh store.
    let back = env.path("back");
    env.ok(&["-S", &back.to_string_lossy(), "pull", &srv.spec]);
    let out = env.path("out");
    env.ok(&[
        "-S",
        &back.to_string_lossy(),
        "export",
        "t",
        &out.to_string_lossy(),
    ]);
    assert_same_tree(&src, &out);
}

#[test]
fn file_cache_stays_within_its_limit_and_serves_rereads() {
    let env = Env::new();
    let srv = Server::tcp(&env, &env.path("server"), &[]);
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng(9);
    // 47 MiB in all, one file of 5 MiB.
    for i in 0..6 {
        std::fs::write(src.join(format!("f{i}")), rng.bytes(7 << 20)).unwrap();
    }
    std::fs::write(src.join("big"), rng.bytes(5 << 20)).unwrap();
    env.ok(&["-S", &srv.spec, "import", &src.to_string_lossy(), "t"]);
    let cache = env.path("cache");
    let spec = format!("cache(limit=12MiB,dir={}):{}", cache.display(), srv.spec);
    for _ in 0..2 {
        let out = env.path("out");
        let _ = std::fs::remove_dir_all(&out);
        env.ok(&["-S", &spec, "export", "t", &out.to_string_lossy()]);
        assert_same_tree(&src, &out);
        assert!(du(&cache) <= 12 << 20, "cache holds {} bytes", du(&cache));
    }
    // The 5 MiB file read twice through a cache of its own (less than
    // the newer half of its files: 4 of 8 shares of about 1.5 MiB): the
    // second read, another process adopting the first one's files, asks
    // the server nothing. Through the cache the exports churned there is
    // no such promise: a block the first read finds in the newer half is
    // not promoted, and the blocks written after it may delete its file.
    let reread = env.path("reread");
    let spec = format!("cache(limit=12MiB,dir={}):{}", reread.display(), srv.spec);
    let read = |n: usize| {
        let o = env
            .cmd()
            .args(["-v", "-S", &spec, "cat", "t", "big"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err_of(&o));
        let e = err_of(&o);
        let line = e
            .lines()
            .find(|l| l.contains(" requests ("))
            .unwrap()
            .to_owned();
        let fetched: u64 = line
            .split(" requests (")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(
            n == 0 || fetched == 0,
            "second read fetched {fetched} blocks: {e}"
        );
        // `vt -v` also reports the cache's own counts.
        let cache = e
            .lines()
            .find(|l| l.contains(" hits, ") && l.contains(" misses, "))
            .unwrap_or_else(|| panic!("no cache line: {e}"));
        assert!(n == 0 || cache.contains(" 0 misses, "), "{e}");
        fetched
    };
    assert!(read(0) > 0, "the first read fetches");
    read(1);
}

#[test]
fn a_hundred_clients_at_once() {
    let env = Env::new();
    let srv = Server::tcp(&env, &env.path("server"), &[]);
    let n = 100;
    for i in 0..n {
        tree(&env.path(&format!("src{i}")), 100 + i as u64, 12, 40_000);
    }
    let spec = srv.spec.clone();
    let children: Vec<(usize, Child)> = (0..n)
        .map(|i| {
            let src = env.path(&format!("src{i}"));
            let out = env.path(&format!("out{i}"));
            // Import, then read back, in one shell per client.
            let script = format!(
                "'{vt}' -q -S '{spec}' import '{src}' c{i} && '{vt}' -q -S '{spec}' export c{i} '{out}'",
                vt = vt_bin().display(),
                src = src.display(),
                out = out.display()
            );
            let mut sh = std::process::Command::new("sh");
            sh.arg("-c").arg(script);
            for (k, v) in env.cmd().get_envs() {
                match v {
                    Some(v) => sh.env(k, v),
                    None => sh.env_remove(k),
                };
            }
            let c = sh.stderr(Stdio::piped()).spawn().unwrap();
            (i, c)
        })
        .collect();
    for (i, c) in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "client {i}: {}", err_of(&o));
        assert_same_tree(&env.path(&format!("src{i}")), &env.path(&format!("out{i}")));
    }
    let rss = srv.peak_rss_kib();
    eprintln!("server peak RSS with {n} clients: {} MiB", rss / 1024);
    assert!(rss < 512 * 1024, "server peak RSS {rss} KiB");
    let names = env.ok(&["-S", &spec, "log", "c99"]);
    assert_eq!(names.lines().count(), 1);
    srv.stop();
}

#[test]
fn a_client_killed_mid_import_costs_the_server_nothing() {
    let env = Env::new();
    let server_dir = env.path("server");
    let srv = Server::tcp(&env, &server_dir, &[]);
    let src = env.path("src");
    tree(&src, 11, 200, 400_000);
    let mut child = env
        .cmd()
        .args(["-q", "-S", &srv.spec, "import", &src.to_string_lossy(), "t"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while du(&server_dir) < 4 << 20 {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    // The server goes on serving; the import, run again, completes.
    env.ok(&["-S", &srv.spec, "import", &src.to_string_lossy(), "t"]);
    let out = env.path("out");
    env.ok(&["-S", &srv.spec, "export", "t", &out.to_string_lossy()]);
    assert_same_tree(&src, &out);
    srv.stop();
    let f = env.ok(&["-S", &server_dir.to_string_lossy(), "fsck"]);
    assert!(f.contains(" 0 problems"), "{f}");
}

#[test]
fn config_prints_the_effective_configuration() {
    let env = Env::new();
    let out = env.ok(&["config"]);
    assert!(
        out.contains("[stores.local]") && out.contains("type = \"datadir\""),
        "{out}"
    );
    assert!(
        out.contains(&env.store().to_string_lossy().into_owned()),
        "{out}"
    );
    std::fs::create_dir_all(env.path("xdg-config/vt")).unwrap();
    std::fs::write(
        env.path("xdg-config/vt/vtrc"),
        "[stores.backup]\ntype = \"tcp\"\naddress = \"nas:7520\"\n[stores.near]\ntype = \"cache\"\nstore = \"backup\"\nlimit = \"2GiB\"\n",
    )
    .unwrap();
    let out = env.ok(&["config", "near"]);
    assert!(
        out.contains("[stores.near]: cache") && out.contains("nas:7520"),
        "{out}"
    );
    let o = env.run(&["config", "tcp:nohost"]);
    assert!(!o.status.success() && err_of(&o).contains("HOST:PORT"));
    // A bad clause names what is known.
    std::fs::write(
        env.path("xdg-config/vt/vtrc"),
        "[stores.x]\ntype = \"tcp\"\nadress = \"nas:7520\"\n",
    )
    .unwrap();
    let o = env.run(&["-S", "x", "log", "t"]);
    assert!(
        err_of(&o).contains("unknown setting \"adress\""),
        "{}",
        err_of(&o)
    );
    let o = env.run(&["-S", "nosuch(a=1)", "log", "t"]);
    assert!(err_of(&o).contains("unknown store type"), "{}", err_of(&o));
}

/// A TCP proxy on loopback whose connections can be cut, to drop a
/// client's connection while the server lives on.
struct CutProxy {
    addr: String,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CutProxy {
    fn new(target: &str) -> CutProxy {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c2, target) = (conns.clone(), target.to_owned());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let Ok(t) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                c2.lock()
                    .unwrap()
                    .extend([s.try_clone().unwrap(), t.try_clone().unwrap()]);
                for (mut a, mut b) in [(s.try_clone().unwrap(), t.try_clone().unwrap()), (t, s)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CutProxy { addr, conns }
    }

    /// Drops every connection through the proxy (new ones still work).
    fn cut(&self) -> usize {
        let mut c = self.conns.lock().unwrap();
        for s in c.iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let n = c.len() / 2;
        c.clear();
        n
    }
}

#[test]
fn a_dropped_connection_is_made_again_and_the_import_completes() {
    let env = Env::new();
    let server_dir = env.path("server");
    let srv = Server::tcp(&env, &server_dir, &[]);
    let proxy = CutProxy::new(srv.spec.strip_prefix("tcp:").unwrap());
    let src = env.path("src");
    tree(&src, 12, 300, 400_000);
    let spec = format!("tcp:{}", proxy.addr);
    let child = env
        .cmd()
        .args(["-v", "-S", &spec, "import", &src.to_string_lossy(), "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while du(&server_dir) < 8 << 20 {
        assert!(t.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(proxy.cut() >= 1, "a connection to cut");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err_of(&o));
    let e = err_of(&o);
    assert!(e.contains("reconnected"), "{e}");
    let out = env.path("out");
    env.ok(&["-S", &srv.spec, "export", "t", &out.to_string_lossy()]);
    assert_same_tree(&src, &out);
}

#[test]
fn a_server_restarted_mid_import_fails_it_cleanly_and_a_rerun_completes() {
    let env = Env::new();
    let server_dir = env.path("server");
    let srv = Server::tcp(&env, &server_dir, &[]);
    let addr = srv.spec.strip_prefix("tcp:").unwrap().to_owned();
    let src = env.path("src");
    tree(&src, 13, 300, 400_000);
    let child = env
        .cmd()
        .args(["-S", &srv.spec, "import", &src.to_string_lossy(), "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while du(&server_dir) < 8 << 20 {
        assert!(t.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: killing our own child.
    unsafe { libc::kill(srv.pid(), libc::SIGKILL) };
    drop(srv);
    let srv = Server::start(&env, &server_dir, &["--listen", &addr]);
    let o = child.wait_with_output().unwrap();
    // Blocks the first run acknowledged may be gone with it: the import
    // must not record a snapshot that refers to them.
    eprintln!("first import: {}: {}", o.status, err_of(&o));
    if !o.status.success() {
        assert!(err_of(&o).contains("restarted"), "{}", err_of(&o));
    }
    env.ok(&["-S", &srv.spec, "import", &src.to_string_lossy(), "t"]);
    let out = env.path("out");
    env.ok(&["-S", &srv.spec, "export", "t", &out.to_string_lossy()]);
    assert_same_tree(&src, &out);
    srv.stop();
    let f = env.ok(&["-S", &server_dir.to_string_lossy(), "fsck"]);
    assert!(f.contains(" 0 problems"), "{f}");
}
