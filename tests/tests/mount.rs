//! `vt mount` (issue 4): a real FUSE mount driven through the real binary.
//!
//! Every test mounts with `vt mount`, works through the mountpoint with
//! ordinary system calls and tools, unmounts with `vt umount` and checks
//! what the archive's new snapshot holds. A guard unmounts lazily if a
//! test fails half-way.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A running `vt mount`; unmounted lazily and killed if dropped early.
struct Mount {
    child: Option<Child>,
    dir: PathBuf,
}

fn is_mounted(dir: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(dir) else {
        return false;
    };
    let target = canon.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

impl Mount {
    /// `vt mount ARGS... MOUNTPOINT [more]`; waits for the mount.
    fn start(env: &Env, args: &[&str]) -> Mount {
        Self::start_at(env, args, None)
    }

    fn start_at(env: &Env, args: &[&str], dir: Option<&Path>) -> Mount {
        Self::start_in(env, args, dir, None)
    }

    /// As [`Mount::start_at`], with the mount's backing files under
    /// `tmpdir` (its `TMPDIR`) if given.
    fn start_in(env: &Env, args: &[&str], dir: Option<&Path>, tmpdir: Option<&Path>) -> Mount {
        let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| {
            // The mountpoint is the argument after SPECIAL (the last
            // positional before an optional SUBPATH).
            let mut pos = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if *a == "-o" {
                    it.next();
                } else if !a.starts_with('-') {
                    pos.push(*a);
                }
            }
            PathBuf::from(pos.get(1).expect("mountpoint argument"))
        });
        let mut cmd = env.cmd();
        if let Some(t) = tmpdir {
            cmd.env("TMPDIR", t);
        }
        let child = cmd
            .arg("mount")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vt mount");
        let mut m = Mount {
            child: Some(child),
            dir,
        };
        let start = Instant::now();
        while !is_mounted(&m.dir) {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = c.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    m.child = None;
                    panic!("vt mount exited ({st}) before mounting: {err}");
                }
            }
            assert!(start.elapsed() < Duration::from_secs(20), "mount timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Waits for the vt process to exit; returns its stdout.
    fn wait(mut self) -> String {
        let c = self.child.take().expect("running");
        let out = c.wait_with_output().expect("wait vt mount");
        assert!(
            out.status.success(),
            "vt mount failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `vt umount`, then the mount process must exit successfully.
    fn umount(self, env: &Env) -> String {
        let d = self.dir.to_string_lossy().into_owned();
        // A just-closed file may still be busy for a moment.
        let mut tries = 0;
        loop {
            let o = env.run(&["umount", &d]);
            if o.status.success() {
                break;
            }
            tries += 1;
            assert!(
                tries < 50,
                "vt umount: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!is_mounted(&self.dir), "still mounted after vt umount");
        self.wait()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.dir)
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The read-ahead window (KiB) of the filesystem mounted at `dir`, from
/// its device's entry in /sys/class/bdi.
fn readahead_kb(dir: &Path) -> u32 {
    let target = std::fs::canonicalize(dir).unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dev = info
        .lines()
        .rev()
        .filter(|l| l.split(' ').nth(4) == target.to_str())
        .find_map(|l| l.split(' ').nth(2))
        .expect("mounted");
    std::fs::read_to_string(format!("/sys/class/bdi/{dev}/read_ahead_kb"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether the page at `offset` (a multiple of 4096) of file `p` is in
/// the kernel's page cache (mapped, not read: `mincore` does not fault
/// pages in).
fn resident(p: &Path, offset: i64) -> bool {
    let f = std::fs::File::open(p).unwrap();
    // SAFETY: a private read-only mapping of one page of an open file,
    // inspected with mincore and unmapped before returning.
    unsafe {
        let a = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            offset,
        );
        assert_ne!(a, libc::MAP_FAILED, "mmap {}", p.display());
        let mut v = 0u8;
        let r = libc::mincore(a, 4096, &mut v);
        libc::munmap(a, 4096);
        assert_eq!(r, 0, "mincore {}", p.display());
        v & 1 == 1
    }
}

/// Waits (up to 30 s: CI runs the mount tests side by side on two cores)
/// until the page at `offset` of file `p` is in the page cache, put there
/// by the mount without being read.
fn await_resident(p: &Path, offset: i64) {
    let t0 = std::time::Instant::now();
    while !resident(p, offset) {
        assert!(
            t0.elapsed().as_secs() < 30,
            "{} never reached the page cache",
            p.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// An environment whose default store (`local`) is the bundled
/// `store-dir` WebAssembly plugin over a directory of the environment.
fn store_dir_env() -> Env {
    let env = Env::new();
    let cfg = env.path("xdg-config/vt");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("vtrc"),
        format!(
            "[stores.local]\ntype = \"store-dir\"\npreopen = \"{}\"\n",
            env.path("usb").display()
        ),
    )
    .unwrap();
    env
}

/// Checks that `env`'s blocks went to its `store-dir` plugin's directory
/// (one file per block), and that no DataDir was made.
fn assert_in_the_plugin_store(env: &Env) {
    let files = std::fs::read_dir(env.path("usb/blocks"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum::<usize>();
    assert!(files > 10, "{files} block files in the plugin's directory");
    assert!(!env.path("xdg-data/vt").exists(), "a DataDir was made");
}

/// Imports `src` into archive `name`.vt in the environment; returns its path.
fn import(env: &Env, src: &Path, name: &str) -> String {
    let a = env
        .path(&format!("{name}.vt"))
        .to_string_lossy()
        .into_owned();
    env.ok(&["-q", "import", &src.to_string_lossy(), &a]);
    a
}

fn export(env: &Env, special: &str, dest: &Path) {
    env.ok(&["-q", "export", special, &dest.to_string_lossy()]);
}

fn snapshots(env: &Env, archive: &str) -> usize {
    env.ok(&["log", archive]).lines().count()
}

fn need(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{tool} is needed (tests/run.sh installs it)");
}

/// Applies the same edits to a plain directory and to the mount, so the
/// exported snapshot can be compared with the plain directory.
fn edits(root: &Path) {
    std::fs::write(root.join("new.txt"), b"created in the mount\n").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("a.txt"))
        .unwrap();
    f.write_all(b"appended\n").unwrap();
    drop(f);
    // Overwrite in the middle of the big stored file.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("dir/big.bin"))
        .unwrap();
    f.write_all_at(b"PATCHED", 1_500_000).unwrap();
    drop(f);
    // Truncate.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("dir/text.txt"))
        .unwrap();
    f.set_len(100).unwrap();
    drop(f);
    // Rename over an existing file, and a directory move.
    std::fs::write(root.join("replacement"), b"replacement\n").unwrap();
    std::fs::rename(root.join("replacement"), root.join("b.txt")).unwrap();
    std::fs::create_dir(root.join("newdir")).unwrap();
    std::fs::create_dir(root.join("newdir/inner")).unwrap();
    std::fs::rename(root.join("newdir"), root.join("dir/moved")).unwrap();
    std::fs::create_dir(root.join("gone")).unwrap();
    std::fs::remove_dir(root.join("gone")).unwrap();
    // Links.
    std::os::unix::fs::symlink("../a.txt", root.join("dir/link")).unwrap();
    std::fs::hard_link(root.join("new.txt"), root.join("dir/new-hard")).unwrap();
    std::fs::remove_file(root.join("c.txt")).unwrap();
    // Metadata.
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&root.join("new.txt"), 1_500_000_000, 123_456_789);
    xattr::set(root.join("new.txt"), "user.note", b"hello").unwrap();
    // A sparse file.
    let f = std::fs::File::create(root.join("sparse")).unwrap();
    f.write_all_at(b"tail", 3 << 20).unwrap();
    drop(f);
    // Edits set times to "now", which differs between the two trees: give
    // every path a fixed mtime so the trees can be compared.
    for (i, rel) in describe(root).keys().filter(|k| !k.is_empty()).enumerate() {
        set_mtime(&root.join(rel), 1_400_000_000 + i as i64, 7);
    }
}

fn small_tree(root: &Path) {
    std::fs::create_dir_all(root.join("dir")).unwrap();
    let mut rng = Rng(7);
    std::fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("b.txt"), b"beta\n").unwrap();
    std::fs::write(root.join("c.txt"), b"gamma\n").unwrap();
    std::fs::write(root.join("dir/big.bin"), rng.bytes(3 << 20)).unwrap();
    std::fs::write(root.join("dir/text.txt"), rng.text(200_000)).unwrap();
    std::fs::write(root.join("dir/h1"), b"hard\n").unwrap();
    std::fs::hard_link(root.join("dir/h1"), root.join("h2")).unwrap();
}

#[test]
fn edits_through_the_mount_land_in_the_archive() {
    edits_through_the_mount_land_in_the_archive_on(&Env::new());
}

/// As [`edits_through_the_mount_land_in_the_archive`], with the default store the bundled
/// `store-dir` plugin: the mount reads and writes through any store.
#[test]
fn edits_through_the_mount_land_in_the_archive_through_a_store_plugin() {
    let env = store_dir_env();
    edits_through_the_mount_land_in_the_archive_on(&env);
    assert_in_the_plugin_store(&env);
}

fn edits_through_the_mount_land_in_the_archive_on(env: &Env) {
    let src = env.path("src");
    small_tree(&src);
    let archive = import(env, &src, "t");
    let mnt = env.path("mnt");
    let m = Mount::start(env, &[&archive, &mnt.to_string_lossy()]);
    // The mount shows the snapshot as imported.
    assert_same_tree(&src, &mnt);
    // Hard links share an inode; inodes are stable.
    let (i1, i2) = (
        std::fs::metadata(m.path("dir/h1")).unwrap().ino(),
        std::fs::metadata(m.path("h2")).unwrap().ino(),
    );
    assert_eq!(i1, i2);
    assert_eq!(std::fs::metadata(m.path("h2")).unwrap().nlink(), 2);
    edits(&src);
    edits(&mnt);
    assert_same_tree(&src, &mnt);
    // Error numbers.
    assert_eq!(
        errno_of(std::fs::remove_dir(m.path("dir"))),
        libc::ENOTEMPTY
    );
    assert_eq!(errno_of(std::fs::remove_file(m.path("nope"))), libc::ENOENT);
    assert_eq!(errno_of(std::fs::remove_file(m.path("dir"))), libc::EISDIR);
    assert_eq!(errno_of(std::fs::create_dir(m.path("a.txt"))), libc::EEXIST);
    assert_eq!(
        errno_of(std::fs::rename(m.path("dir/moved"), m.path("a.txt"))),
        libc::ENOTDIR
    );
    // SEEK_DATA / SEEK_HOLE on the sparse file, and on a stored sparse file.
    let f = std::fs::File::open(m.path("sparse")).unwrap();

    // SAFETY: lseek on an open descriptor.
    let data = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_DATA) };
    assert_eq!(data, 3 << 20, "first data after the hole");
    drop(f);
    // The live block reference xattr syncs the file first.
    let br = xattr::get(m.path("new.txt"), "user.vt.blockref")
        .unwrap()
        .unwrap();
    let br = String::from_utf8(br).unwrap();
    assert_eq!(
        br, "LB{hex:6372656174656420696e20746865206d6f756e740a}",
        "a literal block"
    );
    let br = xattr::get(m.path("dir/big.bin"), "user.vt.blockref")
        .unwrap()
        .unwrap();
    assert!(br.starts_with(b"I{"), "{}", String::from_utf8_lossy(&br));
    xattr::set(m.path("a.txt"), "user.mime_type", b"text/plain").unwrap();
    m.umount(env);
    assert_eq!(snapshots(env, &archive), 2, "one new snapshot at unmount");
    let out = env.path("out");
    export(env, &archive, &out);
    assert_same_tree(&src, &out);
    // Stored sparse file: zeros are RLE blocks, so SEEK_DATA skips them.
    let m = Mount::start(env, &[&archive, &mnt.to_string_lossy()]);
    assert_eq!(
        xattr::get(m.path("a.txt"), "user.mime_type")
            .unwrap()
            .unwrap(),
        b"text/plain",
        "the MIME type is kept in the Dirent"
    );
    let f = std::fs::File::open(m.path("sparse")).unwrap();
    // SAFETY: lseek on an open descriptor.
    let data = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_DATA) };
    assert!(data > 0 && data <= 3 << 20, "stored hole skipped: {data}");
    drop(f);
    m.umount(env);
    assert_eq!(snapshots(env, &archive), 2, "no changes, no new snapshot");
}

#[test]
fn modes_readonly_append_only_all_and_subpath() {
    let env = Env::new();
    let src = env.path("src");
    small_tree(&src);
    // A directory listed in several replies.
    std::fs::create_dir(src.join("many")).unwrap();
    for i in 0..3000 {
        std::fs::write(src.join(format!("many/f{i:04}")), format!("{i}\n")).unwrap();
    }
    // A file of 600 KiB and a bit beside a small one.
    std::fs::create_dir(src.join("mid")).unwrap();
    std::fs::write(src.join("mid/a"), b"a\n").unwrap();
    let mid_b: Vec<u8> = (0..(600 << 10) + 100).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("mid/b"), &mid_b).unwrap();
    let archive = import(&env, &src, "t");
    let mnt = env.path("mnt");
    let mp = mnt.to_string_lossy().into_owned();
    // Read-only: files opened and directories listed without OPEN or
    // OPENDIR (the kernel is told none are needed); the tree reads back
    // whole, twice.
    let m = Mount::start(&env, &["-r", &archive, &mp]);
    assert_eq!(errno_of(std::fs::write(m.path("x"), b"x")), libc::EROFS);
    assert_eq!(std::fs::read(m.path("a.txt")).unwrap(), b"alpha\n");
    // The kernel's read-ahead window is the 1 MiB vt asks for, not the
    // 128 KiB every FUSE mount starts with (root may raise it). vt sets
    // it between mounting and answering its first request, so it is
    // checked after one (the mount table shows the mount before that).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(readahead_kb(&mnt), 1024);
    }
    for _ in 0..2 {
        assert_eq!(describe(&mnt), describe(&src));
    }
    m.umount(&env);
    // A reader of one file gets the next ones of its directory put into
    // the kernel's page cache before it asks (no READ for them), with the
    // right contents.
    let m = Mount::start(&env, &["-r", &archive, &mp]);
    assert_eq!(std::fs::read_dir(m.path("many")).unwrap().count(), 3000);
    assert!(!resident(&m.path("many/f0005"), 0), "nothing read yet");
    assert_eq!(std::fs::read(m.path("many/f0000")).unwrap(), b"0\n");
    await_resident(&m.path("many/f0005"), 0);
    for i in 1..40 {
        let p = m.path(&format!("many/f{i:04}"));
        assert_eq!(std::fs::read(p).unwrap(), format!("{i}\n").as_bytes());
    }
    // Also far into the listing, whose later parts came in later replies:
    // the kernel must have made their entries' inodes for the push to
    // land. (Not looked at before the push: a lookup would make it.)
    assert_eq!(std::fs::read(m.path("many/f2500")).unwrap(), b"2500\n");
    std::thread::sleep(std::time::Duration::from_millis(500));
    await_resident(&m.path("many/f2505"), 0);
    assert_eq!(std::fs::read(m.path("many/f2505")).unwrap(), b"2505\n");
    // Files of up to 1 MiB go into the page cache whole: a directory
    // listed while files are being read gets its files pushed.
    assert_eq!(std::fs::read(m.path("mid/a")).unwrap(), b"a\n");
    assert_eq!(std::fs::read_dir(m.path("mid")).unwrap().count(), 2);
    await_resident(&m.path("mid/b"), 600 << 10);
    assert_eq!(std::fs::read(m.path("mid/b")).unwrap(), mid_b);
    m.umount(&env);
    // Append-only: appends and new files, no overwrite, truncate or removal.
    let m = Mount::start(&env, &["-o", "append_only", &archive, &mp]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.path("a.txt"))
        .unwrap();
    f.write_all(b"log line\n").unwrap();
    drop(f);
    std::fs::write(m.path("audit.log"), b"first\n").unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("b.txt"))
        .unwrap();
    assert_eq!(errno_of(f.write_all_at(b"X", 0)), libc::EPERM);
    assert_eq!(errno_of(f.set_len(1)), libc::EPERM);
    drop(f);
    assert_eq!(errno_of(std::fs::remove_file(m.path("c.txt"))), libc::EPERM);
    assert_eq!(
        errno_of(std::fs::rename(m.path("c.txt"), m.path("d.txt"))),
        libc::EPERM
    );
    m.umount(&env);
    let out = env.path("out");
    export(&env, &archive, &out);
    assert_eq!(
        std::fs::read(out.join("a.txt")).unwrap(),
        b"alpha\nlog line\n"
    );
    assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b"beta\n");
    assert_eq!(std::fs::read(out.join("audit.log")).unwrap(), b"first\n");
    // -a: every snapshot, read-only, by timestamp.
    let m = Mount::start(&env, &["-a", &archive, &mp]);
    let names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let mut names = names;
    names.sort();
    assert_eq!(
        std::fs::read(mnt.join(&names[0]).join("a.txt")).unwrap(),
        b"alpha\n"
    );
    assert_eq!(
        std::fs::read(mnt.join(&names[1]).join("a.txt")).unwrap(),
        b"alpha\nlog line\n"
    );
    assert_eq!(
        errno_of(std::fs::write(mnt.join(&names[1]).join("x"), b"")),
        libc::EROFS
    );
    m.umount(&env);
    // SUBPATH: only that directory; edits land in the whole snapshot.
    let m = Mount::start(&env, &[&archive, &mp, "dir"]);
    assert!(m.path("big.bin").exists() && !m.path("a.txt").exists());
    std::fs::write(m.path("from-sub"), b"sub\n").unwrap();
    m.umount(&env);
    let out2 = env.path("out2");
    export(&env, &archive, &out2);
    assert_eq!(std::fs::read(out2.join("dir/from-sub")).unwrap(), b"sub\n");
    assert_eq!(
        std::fs::read(out2.join("a.txt")).unwrap(),
        b"alpha\nlog line\n"
    );
    assert_eq!(std::fs::read(out2.join("h2")).unwrap(), b"hard\n");
    // The inferred mountpoint is created, and removed after unmount.
    let m = Mount::start_at(
        &env,
        &[&archive],
        Some(&std::env::current_dir().unwrap().join("t")),
    );
    assert!(m.path("a.txt").exists());
    let dir = m.dir.clone();
    m.umount(&env);
    assert!(!dir.exists(), "inferred mountpoint removed");
}

#[test]
fn a_read_write_mount_pushes_files_ahead_but_never_over_a_write() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    let old = |i: usize| format!("old content of file {i}\n").into_bytes();
    // New contents shorter and longer than the old ones: a push landing
    // after a write would show the old bytes, or the old length.
    let new = |i: usize| format!("new {i}{}\n", "+".repeat(i % 50)).into_bytes();
    let n = 1200;
    for i in 0..n {
        std::fs::write(src.join(format!("d/f{i:04}")), old(i)).unwrap();
    }
    let archive = import(&env, &src, "t");
    let mnt = env.path("mnt");
    let mp = mnt.to_string_lossy().into_owned();
    let m = Mount::start(&env, &[archive.as_str(), mp.as_str()]);
    // A reader of one file gets the next ones of its directory put into
    // the page cache, as on a read-only mount (listed first: the kernel
    // makes their inodes then).
    assert_eq!(std::fs::read_dir(m.path("d")).unwrap().count(), n);
    // (Opening a file to look fetches the files after it: look far off.)
    assert!(!resident(&m.path("d/f0900"), 0), "nothing read yet");
    assert_eq!(std::fs::read(m.path("d/f0000")).unwrap(), old(0));
    await_resident(&m.path("d/f0010"), 0);
    // Every 40th file read, the 39 after it (being pushed meanwhile, in
    // order) rewritten at once, last first to meet pushes under way, a
    // third of them truncated first; each must read back as written.
    let mut written = Vec::new();
    for k in (40..n).step_by(40) {
        assert_eq!(
            std::fs::read(m.path(&format!("d/f{k:04}"))).unwrap(),
            old(k)
        );
        let batch: Vec<usize> = (k + 1..(k + 40).min(n)).collect();
        for &i in batch.iter().rev() {
            let p = m.path(&format!("d/f{i:04}"));
            if i % 3 == 0 {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            std::fs::write(&p, new(i)).unwrap();
        }
        for &i in &batch {
            let got = std::fs::read(m.path(&format!("d/f{i:04}"))).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&new(i)),
                "d/f{i:04} right after its write"
            );
        }
        written.extend(batch);
    }
    // Still so a while later (a push that lost the race would land late).
    std::thread::sleep(Duration::from_millis(300));
    for &i in &written {
        assert_eq!(
            std::fs::read(m.path(&format!("d/f{i:04}"))).unwrap(),
            new(i),
            "d/f{i:04} later"
        );
    }
    m.umount(&env);
    let out = env.path("out");
    export(&env, &archive, &out);
    for i in 0..n {
        let want = if written.contains(&i) { new(i) } else { old(i) };
        assert_eq!(std::fs::read(out.join(format!("d/f{i:04}"))).unwrap(), want);
    }
}

#[test]
fn rsync_of_50000_files_round_trips() {
    need("rsync");
    let env = Env::new();
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(&env, &empty, "r");
    // 50,400 entries: 250 directories of 200 small files, with links.
    let src = env.path("src");
    let mut rng = Rng(42);
    for d in 0..250 {
        let dir = src.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..200 {
            let p = dir.join(format!("f{f:03}"));
            let n = rng.below(2000) as usize;
            std::fs::write(&p, rng.text(n)).unwrap();
            std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode([0o644, 0o600, 0o755][f % 3]),
            )
            .unwrap();
            set_mtime(
                &p,
                1_600_000_000 + rng.below(1 << 20) as i64,
                rng.below(1_000_000_000) as u32,
            );
        }
        std::os::unix::fs::symlink(format!("f{:03}", d % 200), dir.join("link")).unwrap();
    }
    std::fs::hard_link(src.join("d000/f000"), src.join("d001/hard")).unwrap();
    std::fs::write(src.join("big"), rng.bytes(5 << 20)).unwrap();
    // Directories get old mtimes, as in a real tree. rsync compares mtimes in
    // whole seconds (its default --modify-window=0): a directory made just
    // now would share its second with the copy rsync creates, and when a
    // hard link then changes the copy's mtime within that second, rsync sees
    // no difference and leaves it (it does the same on ext4).
    for d in 0..250 {
        let secs = 1_500_000_000 + rng.below(1 << 20) as i64;
        set_mtime(
            &src.join(format!("d{d:03}")),
            secs,
            rng.below(1_000_000_000) as u32,
        );
    }
    set_mtime(&src, 1_500_000_000, 0);
    let mnt = env.path("mnt");
    let m = Mount::start(&env, &[&archive, &mnt.to_string_lossy()]);
    let t = Instant::now();
    let st = Command::new("rsync")
        .arg("-aH")
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", mnt.display()))
        .status()
        .unwrap();
    assert!(st.success(), "rsync failed");
    eprintln!(
        "rsync of 50,000+ files into the mount: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    m.umount(&env);
    let out = env.path("out");
    export(&env, &archive, &out);
    // The snapshot's top is the originally imported (empty) directory: its
    // mtime is not compared (describe skips the root).
    assert_same_tree(&src, &out);
}

#[test]
fn git_clone_fsck_and_clean_status_after_remount() {
    need("git");
    git_clone_fsck_and_clean_status_after_remount_on(&Env::new());
}

/// As [`git_clone_fsck_and_clean_status_after_remount`], with the default store the bundled
/// `store-dir` plugin: a real workload's writes and reads.
#[test]
fn git_clone_fsck_and_clean_status_after_remount_through_a_store_plugin() {
    need("git");
    let env = store_dir_env();
    git_clone_fsck_and_clean_status_after_remount_on(&env);
    assert_in_the_plugin_store(&env);
}

fn git_clone_fsck_and_clean_status_after_remount_on(env: &Env) {
    let repo = env.path("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    git(&repo, &["init", "-q"]);
    let mut rng = Rng(3);
    for c in 0..20 {
        for f in 0..15 {
            let p = repo.join(format!("src/m{}/file{f}.txt", f % 4));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let n = 500 + rng.below(5000) as usize;
            std::fs::write(&p, rng.text(n)).unwrap();
        }
        std::fs::write(repo.join("bin.dat"), rng.bytes(100_000)).unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("commit {c}")]);
    }
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(env, &empty, "g");
    let mnt = env.path("mnt");
    let mp = mnt.to_string_lossy().into_owned();
    let m = Mount::start(env, &[&archive, &mp]);
    git(
        &mnt,
        &[
            "clone",
            "-q",
            "--no-local",
            &repo.to_string_lossy(),
            "clone",
        ],
    );
    git(&mnt.join("clone"), &["fsck", "--full"]);
    m.umount(env);
    let m = Mount::start(env, &[&archive, &mp]);
    let status = git(&mnt.join("clone"), &["status", "--porcelain"]);
    assert_eq!(status, "", "clean after remount");
    git(&mnt.join("clone"), &["fsck", "--full"]);
    m.umount(env);
}

fn content(t: usize, i: usize, len: usize) -> Vec<u8> {
    Rng((t * 1000 + i + 1) as u64).bytes(len)
}

#[test]
fn concurrent_writers_2_and_16_threads() {
    concurrent_writers_2_and_16_threads_on(&Env::new());
}

/// As [`concurrent_writers_2_and_16_threads`], with the default store the bundled
/// `store-dir` plugin: concurrent writers through the plugin's instances.
#[test]
fn concurrent_writers_2_and_16_threads_through_a_store_plugin() {
    let env = store_dir_env();
    concurrent_writers_2_and_16_threads_on(&env);
    assert_in_the_plugin_store(&env);
}

fn concurrent_writers_2_and_16_threads_on(env: &Env) {
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(env, &empty, "c");
    let mnt = env.path("mnt");
    let m = Mount::start(env, &[&archive, &mnt.to_string_lossy()]);
    for threads in [2usize, 16] {
        let dir = mnt.join(format!("t{threads}"));
        std::fs::create_dir(&dir).unwrap();
        // Each thread writes its own files (some large, in shuffled chunks)
        // and appends to one shared log with O_APPEND.
        std::thread::scope(|s| {
            for t in 0..threads {
                let dir = dir.clone();
                s.spawn(move || {
                    for i in 0..6 {
                        let len = if i == 0 { 3 << 20 } else { 1000 * (i + t) };
                        let data = content(t, i, len);
                        let p = dir.join(format!("w{t}-{i}"));
                        let f = std::fs::File::create(&p).unwrap();
                        let chunks: Vec<usize> = (0..len.div_ceil(65536)).rev().collect();
                        for c in chunks {
                            let a = c * 65536;
                            let b = (a + 65536).min(len);
                            f.write_all_at(&data[a..b], a as u64).unwrap();
                        }
                        drop(f);
                        let mut log = std::fs::OpenOptions::new()
                            .append(true)
                            .create(true)
                            .open(dir.join("shared.log"))
                            .unwrap();
                        log.write_all(format!("thread {t:02} file {i}\n").as_bytes())
                            .unwrap();
                    }
                });
            }
        });
        for t in 0..threads {
            for i in 0..6 {
                let len = if i == 0 { 3 << 20 } else { 1000 * (i + t) };
                let got = std::fs::read(dir.join(format!("w{t}-{i}"))).unwrap();
                assert!(
                    got == content(t, i, len),
                    "t{threads}: w{t}-{i} differs in the mount"
                );
            }
        }
        let log = std::fs::read_to_string(dir.join("shared.log")).unwrap();
        assert_eq!(log.lines().count(), threads * 6, "every append kept");
    }
    m.umount(env);
    let out = env.path("out");
    export(env, &archive, &out);
    for threads in [2usize, 16] {
        for t in 0..threads {
            for i in 0..6 {
                let len = if i == 0 { 3 << 20 } else { 1000 * (i + t) };
                let got = std::fs::read(out.join(format!("t{threads}/w{t}-{i}"))).unwrap();
                assert!(
                    got == content(t, i, len),
                    "snapshot: t{threads}/w{t}-{i} differs"
                );
            }
        }
    }
}

#[test]
fn sigint_with_writes_in_flight_keeps_every_completed_write() {
    let env = Env::new();
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(&env, &empty, "s");
    let mnt = env.path("mnt");
    let m = Mount::start(&env, &[&archive, &mnt.to_string_lossy()]);
    let done = std::sync::Mutex::new(Vec::new());
    let pid = m.pid();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (mnt, done) = (&mnt, &done);
            s.spawn(move || {
                for i in 0.. {
                    let p = mnt.join(format!("f{t}-{i}"));
                    let data = content(t, i, 1000 + 300 * (i % 50));
                    let r = std::fs::File::create(&p).and_then(|mut f| f.write_all(&data));
                    if r.is_err() {
                        break;
                    }
                    done.lock().unwrap().push((p, data));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGINT) };
    });
    m.wait();
    assert!(!is_mounted(&mnt), "unmounted after SIGINT");
    let done = done.into_inner().unwrap();
    assert!(done.len() > 20, "writes happened: {}", done.len());
    let out = env.path("out");
    export(&env, &archive, &out);
    for (p, data) in &done {
        let name = p.file_name().unwrap();
        let got = std::fs::read(out.join(name)).unwrap_or_default();
        assert!(
            &got == data,
            "{name:?} missing or differs in the last snapshot"
        );
    }
}

#[test]
fn large_files_beyond_4_gib() {
    let env = Env::new();
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(&env, &empty, "l");
    let mnt = env.path("mnt");
    let mp = mnt.to_string_lossy().into_owned();
    let m = Mount::start(&env, &[&archive, &mp]);
    let at: u64 = (4 << 30) + 12345;
    let f = std::fs::File::create(m.path("huge")).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"beyond four GiB", at).unwrap();
    drop(f);
    let mut f = std::fs::File::open(m.path("huge")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), at + 15);
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut buf = [0u8; 15];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"beyond four GiB");
    drop(f);
    m.umount(&env);
    // Remounted: read from the store through the blockmap.
    let m = Mount::start(&env, &[&archive, &mp]);
    let f = std::fs::File::open(m.path("huge")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), at + 15);
    let mut buf = [0u8; 15];
    f.read_exact_at(&mut buf, at).unwrap();
    assert_eq!(&buf, b"beyond four GiB");
    let mut z = [1u8; 8];
    f.read_exact_at(&mut z, 2 << 30).unwrap();
    assert_eq!(z, [0u8; 8]);

    // SAFETY: lseek on an open descriptor.
    let data = unsafe { libc::lseek(f.as_raw_fd(), 1 << 20, libc::SEEK_DATA) };
    assert!(data > 1 << 30, "the hole is skipped: {data}");
    drop(f);
    m.umount(&env);
}

fn pjdfstest_bin() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut cands: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pjdfstest"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(h) = home {
        cands.push(h.join(".cargo/bin/pjdfstest"));
    }
    cands.into_iter().find(|p| p.is_file())
}

/// Acceptance 1 (and issue 22, item 3): the POSIX conformance suite
/// pjdfstest against a mount, at least 320 passes and no failure.
/// Writes the per-group table to target/pjdfstest-vt.txt.
#[test]
fn pjdfstest_passes_at_least_320_and_fails_none() {
    let bin = pjdfstest_bin().expect("pjdfstest is needed: cargo install --locked pjdfstest");
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "pjdfstest needs root");
    let env = Env::new();
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(&env, &empty, "p");
    // pjdfstest switches to other users: the mountpoint's parents must be
    // searchable by them.
    let mnt = PathBuf::from(format!("/var/tmp/vt-pjdfstest-{}", std::process::id()));
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = Mount::start(&env, &[&archive, &mnt.to_string_lossy()]);
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o777)).unwrap();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("pjdfstest.toml");
    let out = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&mnt)
        .current_dir(&mnt)
        .output()
        .unwrap();
    m.umount(&env);
    let _ = std::fs::remove_dir(&mnt);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut groups: std::collections::BTreeMap<String, [u32; 3]> = Default::default();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        if !name.contains("::") {
            continue;
        }
        let g = name.split("::").next().unwrap_or("").to_string();
        let r = rest.trim();
        let slot = if r == "ok" {
            0
        } else if r.starts_with("FAILED") {
            1
        } else if r.starts_with("skipped") || r.starts_with("ignored") {
            2
        } else {
            continue;
        };
        groups.entry(g).or_default()[slot] += 1;
    }
    let mut table = String::from("| group | passed | failed | skipped |\n|---|---:|---:|---:|\n");
    for (g, [p, f, s]) in &groups {
        table.push_str(&format!("| {g} | {p} | {f} | {s} |\n"));
    }
    let summary = text
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or("no summary")
        .to_string();
    table.push_str(&format!("\n{summary}\n"));
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let _ = std::fs::write(target.join("pjdfstest-vt.txt"), &table);
    let _ = std::fs::write(target.join("pjdfstest-vt.log"), &text);
    eprintln!("{table}");
    let count = |what: &str| {
        summary
            .trim_start_matches("Summary:")
            .split(',')
            .find_map(|p| p.trim().strip_suffix(what))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "cannot parse pjdfstest summary: {summary}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    assert!(count(" passed") >= 320, "pjdfstest: {summary}");
    // Every failure is a regression: the mount has none (README).
    assert_eq!(count(" failed"), 0, "pjdfstest: {summary}\n{table}");
}

/// Issue 16, item 8: a mount of a snapshot held only on a server, its
/// reads and writes going over TCP.
#[test]
fn mount_of_a_remote_store_reads_and_writes() {
    let env = Env::new();
    let server_dir = env.path("server");
    let srv = common::server::Server::tcp(&env, &server_dir, &[]);
    let src = env.path("src");
    small_tree(&src);
    env.ok(&["-q", "-S", &srv.spec, "import", &src.to_string_lossy(), "t"]);
    let mnt = env.path("mnt");
    let m = Mount::start_at(
        &env,
        &["-S", &srv.spec, "t", &mnt.to_string_lossy()],
        Some(&mnt),
    );
    assert_same_tree(&src, &mnt);
    edits(&src);
    edits(&mnt);
    assert_same_tree(&src, &mnt);
    m.umount(&env);
    // The new snapshot is in the server's archive, its blocks on the server.
    assert_eq!(
        env.ok(&["-S", &srv.spec, "log", "t"]).lines().count(),
        2,
        "one new snapshot at unmount"
    );
    srv.stop();
    let out = env.path("out");
    env.ok(&[
        "-q",
        "-S",
        &server_dir.to_string_lossy(),
        "export",
        "t",
        &out.to_string_lossy(),
    ]);
    assert_same_tree(&src, &out);
    let f = env.ok(&["-S", &server_dir.to_string_lossy(), "fsck"]);
    assert!(f.contains(" 0 problems"), "{f}");
}

/// fsyncs `p` (a file or directory in a mount): the mount records a
/// snapshot.
fn fsync(p: &Path) {
    std::fs::File::open(p).unwrap().sync_all().unwrap();
}

/// Issue 18, acceptance 5: writes whose backing files fill the disk get
/// ENOSPC, not EIO; once space is freed the next sync succeeds, and what
/// was synced before is all there.
#[test]
fn a_full_disk_under_the_backing_files_gives_enospc_and_loses_nothing_synced() {
    let env = Env::new();
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&tmp)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mounting a tmpfs needs root");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(tmp.clone());
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(&env, &empty, "full");
    let mnt = env.path("mnt");
    let m = Mount::start_in(&env, &[&archive, &mnt.to_string_lossy()], None, Some(&tmp));
    // 2 MB synced (its backing file goes once it is stored).
    let kept = Rng(1).bytes(2_000_000);
    std::fs::write(mnt.join("kept.bin"), &kept).unwrap();
    fsync(&mnt.join("kept.bin"));
    let before = snapshots(&env, &archive);
    // 8 MiB into a 4 MiB disk: ENOSPC, twice (the second file spills its
    // first MiB from memory into a backing file that cannot take it).
    for name in ["big1.bin", "big2.bin"] {
        let mut f = std::fs::File::create(mnt.join(name)).unwrap();
        let chunk = vec![7u8; 1 << 20];
        let err = (0..8)
            .find_map(|_| f.write_all(&chunk).err())
            .unwrap_or_else(|| panic!("{name}: 8 MiB fit in 4"));
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{name}: {err}");
    }
    // Space freed: the next sync works. (A closed file's backing file goes
    // when the kernel delivers its release, which close does not wait for.)
    std::fs::remove_file(mnt.join("big1.bin")).unwrap();
    std::fs::remove_file(mnt.join("big2.bin")).unwrap();
    let free = || {
        let c = std::ffi::CString::new(tmp.to_str().unwrap()).unwrap();
        // SAFETY: statvfs fills the struct it is given.
        let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut v) }, 0);
        v.f_bavail as u64 * v.f_frsize as u64
    };
    let t0 = Instant::now();
    while free() < 3 << 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "backing space not freed: {} bytes free",
            free()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = Rng(2).bytes(1_500_000);
    std::fs::write(mnt.join("after.bin"), &after).unwrap();
    fsync(&mnt.join("after.bin"));
    assert!(snapshots(&env, &archive) > before);
    m.umount(&env);
    let out = env.path("out");
    export(&env, &archive, &out);
    assert_eq!(std::fs::read(out.join("kept.bin")).unwrap(), kept);
    assert_eq!(std::fs::read(out.join("after.bin")).unwrap(), after);
    assert!(!out.join("big1.bin").exists() && !out.join("big2.bin").exists());
}

/// Issue 18, acceptance 4: `kill -9` of `vt mount` at a random moment
/// while threads write and sync, twenty times: each time the archive's
/// last line is a whole snapshot, `vt fsck` is clean, and a new mount
/// shows exactly that snapshot.
#[test]
fn kill_9_of_the_mount_during_writes_twenty_times() {
    let env = Env::new();
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(&env, &empty, "k");
    let tmp = env.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mnt = env.path("mnt");
    let mut rng = Rng(9);
    for round in 0..20u64 {
        let mut m = Mount::start_in(&env, &[&archive, &mnt.to_string_lossy()], None, Some(&tmp));
        // The mount shows the last recorded snapshot exactly.
        let expect = env.path(&format!("expect{round}"));
        export(&env, &archive, &expect);
        assert_same_tree(&expect, &mnt);
        std::fs::remove_dir_all(&expect).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let wait = Duration::from_millis(100 + rng.below(900));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (mnt, stop) = (&mnt, &stop);
                s.spawn(move || {
                    let mut r = Rng(round * 100 + t);
                    for i in 0.. {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let dir = mnt.join(format!("r{round}-t{t}"));
                        let len = if i % 7 == 3 { (1 << 20) + 5000 } else { 3000 };
                        let w = std::fs::create_dir_all(&dir)
                            .and_then(|_| std::fs::write(dir.join(format!("f{i}")), r.bytes(len)));
                        if w.is_err() {
                            break; // the mount is gone
                        }
                        if i % 5 == 4 {
                            let _ = std::fs::File::open(&dir).and_then(|f| f.sync_all());
                        }
                        if i % 11 == 10 {
                            let _ = std::fs::remove_file(dir.join(format!("f{}", i - 3)));
                        }
                    }
                });
            }
            std::thread::sleep(wait);
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(m.pid(), libc::SIGKILL) };
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&mnt)
                .status();
        });
        if let Some(mut c) = m.child.take() {
            let _ = c.wait();
        }
        drop(m);
        // Only whole lines, and a clean store.
        let text = std::fs::read_to_string(&archive).unwrap();
        assert!(text.ends_with('\n'), "round {round}: torn archive line");
        let fsck = env.ok(&["fsck", &archive]);
        assert!(
            fsck.contains(" 0 problems")
                && fsck.contains("0 damaged lines")
                && fsck.contains(", 0 lost data"),
            "round {round}: {fsck}"
        );
    }
    // The backing files of the killed mounts are reported, not removed.
    let left = std::fs::read_dir(&tmp)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("vt-mount-")
        })
        .count();
    assert!(left >= 1, "no backing directories left behind");
    let o = env
        .cmd()
        .env("TMPDIR", &tmp)
        .args(["mount", &archive, &mnt.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let m = Mount {
        child: Some(o),
        dir: mnt.clone(),
    };
    let start = Instant::now();
    while !is_mounted(&mnt) {
        assert!(start.elapsed() < Duration::from_secs(20), "mount timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut m = m;
    let d = mnt.to_string_lossy().into_owned();
    env.ok(&["umount", &d]);
    let out = m.child.take().unwrap().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("died before recording its last writes"),
        "{err}"
    );
}

/// Issue 18, acceptance 6: a soak of the mount. 16 threads, each in a
/// directory of its own, create, overwrite, append to, truncate, rename
/// (over existing names too), link and unlink files and rename
/// directories for `VT_SOAK_SECS` seconds (120 here; `bench/soak.sh` runs
/// 1800), fsyncing now and then, each keeping a model of what its
/// directory holds; after an unmount the last snapshot must equal the
/// models exactly.
#[test]
fn soak_16_writers_against_a_model() {
    use std::collections::BTreeMap;
    let secs: u64 = std::env::var("VT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let env = Env::new();
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let archive = import(&env, &empty, "soak");
    let mnt = env.path("mnt");
    let m = Mount::start(&env, &[&archive, &mnt.to_string_lossy()]);
    let until = Instant::now() + Duration::from_secs(secs);
    let models: Vec<(BTreeMap<String, Vec<u8>>, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16u64)
            .map(|t| {
                let mnt = &mnt;
                s.spawn(move || {
                    let mut r = Rng(1000 + t);
                    // Relative path (under the thread's directory) -> content.
                    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                    let mut sub = String::from("d0");
                    let root = mnt.join(format!("t{t}"));
                    std::fs::create_dir_all(root.join(&sub)).unwrap();
                    let mut ops = 0u64;
                    while Instant::now() < until {
                        ops += 1;
                        let name = format!("{sub}/f{}", r.below(12));
                        let p = root.join(&name);
                        match r.below(10) {
                            0..=2 => {
                                let len = match r.below(20) {
                                    0 => (1 << 20) + r.below(300_000) as usize,
                                    1..=5 => r.below(70_000) as usize,
                                    _ => r.below(3000) as usize,
                                };
                                let data = if r.below(2) == 0 {
                                    r.bytes(len)
                                } else {
                                    r.text(len)
                                };
                                std::fs::write(&p, &data).unwrap();
                                model.insert(name, data);
                            }
                            3 => {
                                if let Some(v) = model.get_mut(&name) {
                                    let n = r.below(5000) as usize;
                                    let more = r.text(n);
                                    let mut f =
                                        std::fs::OpenOptions::new().append(true).open(&p).unwrap();
                                    f.write_all(&more).unwrap();
                                    v.extend_from_slice(&more);
                                }
                            }
                            4 => {
                                if let Some(v) = model.get_mut(&name) {
                                    let len = r.below(v.len() as u64 + 1) as usize;
                                    std::fs::OpenOptions::new()
                                        .write(true)
                                        .open(&p)
                                        .unwrap()
                                        .set_len(len as u64)
                                        .unwrap();
                                    v.truncate(len);
                                }
                            }
                            5 => {
                                if let Some(v) = model.remove(&name) {
                                    let to = format!("{sub}/f{}", r.below(12));
                                    std::fs::rename(&p, root.join(&to)).unwrap();
                                    model.insert(to, v);
                                }
                            }
                            6 => {
                                if model.remove(&name).is_some() {
                                    std::fs::remove_file(&p).unwrap();
                                }
                            }
                            7 => {
                                // Overwrite in the middle.
                                if let Some(v) = model.get_mut(&name) {
                                    if !v.is_empty() {
                                        let at = r.below(v.len() as u64) as usize;
                                        let n = r.below(4000) as usize + 1;
                                        let patch = r.bytes(n);
                                        let f = std::fs::OpenOptions::new()
                                            .write(true)
                                            .open(&p)
                                            .unwrap();
                                        f.write_all_at(&patch, at as u64).unwrap();
                                        if v.len() < at + patch.len() {
                                            v.resize(at + patch.len(), 0);
                                        }
                                        v[at..at + patch.len()].copy_from_slice(&patch);
                                    }
                                }
                            }
                            8 => {
                                // Move the whole working directory.
                                let next = format!("d{ops}");
                                std::fs::rename(root.join(&sub), root.join(&next)).unwrap();
                                model = std::mem::take(&mut model)
                                    .into_iter()
                                    .map(|(k, v)| (format!("{next}/{}", &k[sub.len() + 1..]), v))
                                    .collect();
                                sub = next;
                            }
                            _ => {
                                let _ =
                                    std::fs::File::open(root.join(&sub)).and_then(|f| f.sync_all());
                            }
                        }
                    }
                    (model, ops)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    m.umount(&env);
    let out = env.path("out");
    export(&env, &archive, &out);
    let mut ops = 0;
    for (t, (model, n)) in models.iter().enumerate() {
        ops += n;
        let root = out.join(format!("t{t}"));
        let mut found = BTreeMap::new();
        for d in std::fs::read_dir(&root).unwrap() {
            let d = d.unwrap();
            for f in std::fs::read_dir(d.path()).unwrap() {
                let f = f.unwrap();
                let rel = format!(
                    "{}/{}",
                    d.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                );
                found.insert(rel, std::fs::read(f.path()).unwrap());
            }
        }
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            model.keys().collect::<Vec<_>>(),
            "thread {t}: names differ"
        );
        for (k, v) in model {
            assert!(found[k] == *v, "thread {t}: {k} differs");
        }
    }
    eprintln!("soak: {secs} s, {ops} operations by 16 threads, snapshot equal to the model");
    let fsck = env.ok(&["fsck", &archive]);
    assert!(
        fsck.contains(" 0 problems") && fsck.contains(", 0 lost data"),
        "{fsck}"
    );
}
