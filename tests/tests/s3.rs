//! The S3 store (issue 20) through the real `vt` binary against a real
//! S3-compatible server (s3s-fs) started here: round trips in both
//! layouts, a mount through the file cache, a server killed mid-import,
//! and throttling answers retried.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use common::*;

fn spec(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "s3(bucket={bucket},endpoint={endpoint},access_key_id={ACCESS_KEY},secret_access_key={SECRET_KEY}{extra})"
    )
}

/// Files of every kind of content in 5 directories, a symlink, and a
/// large file.
fn tree(root: &Path, seed: u64, files: usize, size: usize) {
    mixed_tree(root, seed, files, size, 5);
    std::fs::write(root.join("large.bin"), Rng(seed + 1000).bytes(3 << 20)).unwrap();
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_fsck_clean(env: &Env, spec: &str) {
    let out = env.ok(&["-S", spec, "fsck"]);
    assert!(out.contains(" 0 problems"), "{out}");
    assert!(out.contains(", 0 lost data"), "{out}");
}

#[test]
fn trees_round_trip_in_both_layouts_and_fsck_is_clean() {
    let env = Env::new();
    let s3 = S3Server::start(env.path("s3root"), None);
    let src = env.path("src");
    tree(&src, 7, 120, 200_000);
    for layout in ["packed", "blocks"] {
        let bucket = format!("vt-{layout}");
        s3.bucket(&bucket);
        let spec = spec(&s3.endpoint(), &bucket, &format!(",layout={layout}"));
        env.ok(&["-S", &spec, "import", &src.to_string_lossy(), "t"]);
        let out = env.path(&format!("out-{layout}"));
        env.ok(&["-S", &spec, "export", "t", &out.to_string_lossy()]);
        assert_same_tree(&src, &out);
        assert_fsck_clean(&env, &spec);
        // The snapshot is an archive line in the bucket.
        let log = env.ok(&["-S", &spec, "log", "t"]);
        assert_eq!(log.lines().count(), 1, "{log}");
        let b = s3.root.join(&bucket);
        if layout == "packed" {
            // Packs and their indexes, a handful of objects, not one per block.
            let packs = std::fs::read_dir(b.join("data")).unwrap().count();
            let stats = env.ok(&["-S", &spec, "stats"]);
            let blocks: u64 = stats
                .lines()
                .find_map(|l| l.strip_prefix("blocks:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{stats}"));
            assert!(
                packs >= 1 && (packs as u64) * 10 < blocks,
                "{packs} packs for {blocks} blocks"
            );
            // Unchanged, a second import stores nothing.
            let o = env.ok(&["-S", &spec, "import", &src.to_string_lossy(), "t"]);
            assert_eq!(new_blocks(&o), 0, "{o}");
        } else {
            // One object per block holding its bytes exactly: a small
            // file is one block, served as is by anything reading the bucket.
            let small = std::fs::read(src.join("d1/f1")).unwrap();
            let found = std::fs::read_dir(b.join("h"))
                .unwrap()
                .any(|e| std::fs::read(e.unwrap().path()).unwrap() == small);
            assert!(found, "no object holds d1/f1's bytes");
            // Opened with the default (packed) layout by mistake: an
            // error that says which layout it holds, not an empty store.
            let o = env.run(&["-S", &spec_default(&s3.endpoint(), &bucket), "stats"]);
            assert!(!o.status.success());
            assert!(
                stderr(&o).contains("open it with layout=blocks"),
                "{}",
                stderr(&o)
            );
        }
    }
}

fn spec_default(endpoint: &str, bucket: &str) -> String {
    spec(endpoint, bucket, "")
}

/// Every file under `dir` read whole, twice over a walk.
fn read_all(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            n += read_all(&e.path());
        } else if t.is_file() {
            n += std::fs::read(e.path()).unwrap().len() as u64;
        }
    }
    n
}

#[test]
fn a_mount_through_the_cache_fetches_each_block_once() {
    let env = Env::new();
    let s3 = S3Server::start(env.path("s3root"), None);
    s3.bucket("vt-mount");
    let proxy = Proxy::start(&format!("127.0.0.1:{}", s3.port));
    let src = env.path("src");
    // Files of 64-200 KB, 40 MB in all.
    let mut rng = Rng(3);
    for i in 0..300 {
        let d = src.join(format!("d{}", i % 6));
        std::fs::create_dir_all(&d).unwrap();
        let n = 64_000 + rng.below(136_000) as usize;
        std::fs::write(d.join(format!("f{i}")), rng.bytes(n)).unwrap();
    }
    let s3spec = spec(&proxy.url(), "vt-mount", "");
    env.ok(&["-S", &s3spec, "import", &src.to_string_lossy(), "m"]);
    let log = env.ok(&["-S", &s3spec, "log", "m"]);
    let dirent = log.trim().rsplit('\t').next().unwrap().to_owned();
    let cached = format!(
        "cache(dir={},limit=1GiB):{s3spec}",
        env.path("cache").display()
    );
    let mut passes = Vec::new();
    for pass in 0..2 {
        let mnt = env.path(&format!("mnt{pass}"));
        std::fs::create_dir_all(&mnt).unwrap();
        let before = (
            proxy.counts.count("GET"),
            proxy.counts.data_bytes.load(Ordering::Relaxed),
        );
        let mut child = env
            .cmd()
            .args([
                "-S",
                &cached,
                "mount",
                "-r",
                &dirent,
                &mnt.to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !mnt.join("d0").exists() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "mount did not come up"
            );
            if let Ok(Some(st)) = child.try_wait() {
                panic!("vt mount exited: {st}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(read_all(&mnt), read_all(&src));
        assert_same_tree(&src, &mnt);
        env.ok(&["umount", &mnt.to_string_lossy()]);
        assert!(child.wait().unwrap().success());
        passes.push((
            proxy.counts.count("GET") - before.0,
            proxy.counts.data_bytes.load(Ordering::Relaxed) - before.1,
        ));
    }
    // Every block came from the packs once (the data is random: every
    // byte of it, and not twice over); the second pass read none of them
    // from the server (at most 1% of the first pass's bytes of packs).
    // How many ranges carried them depends on how reads and prefetches
    // met, so bytes are counted, not GETs. Opening the store still lists
    // its index, and the archive-less mount reads no archive.
    let total = read_all(&src);
    let (first, second) = (passes[0], passes[1]);
    assert!(
        first.1 >= total && first.1 <= total + total / 2,
        "first pass read {} bytes of packs for {total} bytes of files",
        first.1
    );
    assert!(
        second.1 * 100 <= first.1,
        "second pass read {} bytes of packs, first {}: more than 1%",
        second.1,
        first.1
    );
    assert!(
        second.0 * 100 <= first.0.max(100),
        "second pass made {} GETs in all, first {}",
        second.0,
        first.0
    );
}

#[test]
fn a_server_killed_mid_import_fails_it_cleanly_and_a_rerun_completes() {
    let env = Env::new();
    let mut s3 = S3Server::start(env.path("s3root"), None);
    s3.bucket("vt-kill");
    let src = env.path("src");
    let mut rng = Rng(11);
    for i in 0..60 {
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join(format!("d/f{i}")), rng.bytes(1_500_000)).unwrap();
    }
    let spec = spec(&s3.endpoint(), "vt-kill", ",retry_timeout=3s");
    let child = env
        .cmd()
        .args(["-S", &spec, "import", &src.to_string_lossy(), "k"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the first pack is in the bucket.
    let data = s3.root.join("vt-kill/data");
    let t = Instant::now();
    while std::fs::read_dir(&data).map_or(0, |d| d.count()) == 0 {
        assert!(t.elapsed() < Duration::from_secs(60), "no pack uploaded");
        std::thread::sleep(Duration::from_millis(5));
    }
    s3.kill();
    let o = child.wait_with_output().unwrap();
    assert!(
        !o.status.success(),
        "the import succeeded without its server"
    );
    let e = stderr(&o);
    assert!(
        e.contains("s3 bucket vt-kill"),
        "the error does not name the store: {e}"
    );
    assert!(e.contains("no snapshot was recorded"), "{e}");
    // No archive line was written.
    let archives = s3.root.join("vt-kill/archives");
    assert!(
        std::fs::read_dir(&archives).map_or(0, |d| d.count()) == 0,
        "an archive object exists"
    );
    // Restarted, the same import completes and everything checks.
    let s3 = S3Server::start(s3.root.clone(), Some(s3.port));
    env.ok(&["-S", &spec, "import", &src.to_string_lossy(), "k"]);
    assert_fsck_clean(&env, &spec);
    let out = env.path("out");
    env.ok(&["-S", &spec, "export", "k", &out.to_string_lossy()]);
    assert_same_tree(&src, &out);
    drop(s3);
}

#[test]
fn throttling_answers_are_retried_and_the_import_succeeds() {
    let env = Env::new();
    let s3 = S3Server::start(env.path("s3root"), None);
    s3.bucket("vt-throttle");
    let proxy = Proxy::start(&format!("127.0.0.1:{}", s3.port));
    proxy.counts.fail_every.store(4, Ordering::Relaxed);
    let src = env.path("src");
    tree(&src, 5, 80, 300_000);
    let spec = spec(&proxy.url(), "vt-throttle", "");
    env.ok(&["-S", &spec, "import", &src.to_string_lossy(), "t"]);
    let out = env.path("out");
    env.ok(&["-S", &spec, "export", "t", &out.to_string_lossy()]);
    assert_same_tree(&src, &out);
    assert_fsck_clean(&env, &spec);
    let injected = proxy.counts.injected.load(Ordering::Relaxed);
    assert!(injected >= 5, "only {injected} 503 answers were injected");
}

#[test]
fn bad_s3_settings_are_errors_that_say_what_to_fix() {
    let env = Env::new();
    let s3 = S3Server::start(env.path("s3root"), None);
    for (extra, want) in [
        (",layout=flat", "expected \"packed\" or \"blocks\""),
        (",pack_size=1KiB", "pack_size"),
        (",colour=blue", "unknown setting \"colour\""),
        (",retry_timeout=soon", "retry_timeout"),
    ] {
        let o = env.run(&["-S", &spec(&s3.endpoint(), "nobucket", extra), "stats"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{extra}: {}", stderr(&o));
    }
    // A bucket that does not exist: the error names the store.
    let o = env.run(&["-S", &spec(&s3.endpoint(), "nobucket", ""), "stats"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nobucket"), "{}", stderr(&o));
}
