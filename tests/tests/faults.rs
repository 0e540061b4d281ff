//! Acceptance 5: kill -9 during an import, a corrupted datafile byte, a full
//! disk, and unreadable and special files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn kill_9_during_import_damages_nothing() {
    let env = Env::new();
    // A first snapshot that must survive.
    let first = env.path("first");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("keep.txt"), Rng(1).text(300_000)).unwrap();
    env.ok(&["import", first.to_str().unwrap()]);

    let big = env.path("big");
    std::fs::create_dir(&big).unwrap();
    let mut rng = Rng(2);
    for i in 0..64 {
        std::fs::write(big.join(format!("f{i:02}")), rng.bytes(4 << 20)).unwrap();
    }
    let mut child = env
        .cmd()
        .args(["-q", "import", big.to_str().unwrap()])
        .spawn()
        .unwrap();
    // Wait until it has written a good part of the data, then kill it.
    let data = env.store().join("data");
    let t0 = Instant::now();
    while du(&data) < 40 << 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "import made no progress"
        );
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        killed,
        "the import finished before it could be killed; make the tree bigger"
    );
    assert!(
        !env.path("xdg-data/vt/store/archives/big.vt").exists()
            || std::fs::read_to_string(env.path("xdg-data/vt/store/archives/big.vt"))
                .unwrap()
                .is_empty()
    );

    // The store opens cleanly and the earlier snapshot is intact.
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
    let out = env.path("first-out");
    env.ok(&["export", "first", out.to_str().unwrap()]);
    assert_same_tree(&first, &out);

    // Re-running the import completes, and reuses what was written.
    let o = env.ok(&["import", big.to_str().unwrap()]);
    assert!(new_blocks(&o) > 0);
    let bout = env.path("big-out");
    env.ok(&["export", "big", bout.to_str().unwrap()]);
    assert_same_tree(&big, &bout);
    assert!(env.ok(&["fsck"]).contains(" 0 problems"));
}

/// Issue 17, acceptance 5: `kill -9` during an import that stores deltas
/// (every file of a first snapshot edited in place, so each changed block
/// is a near copy of a stored one) leaves a store that fsck finds clean,
/// and the import run again completes with deltas, exactly.
#[test]
fn kill_9_during_an_import_that_writes_deltas() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let mut rng = Rng(17);
    for i in 0..48 {
        std::fs::write(src.join(format!("f{i:02}")), rng.bytes(2 << 20)).unwrap();
    }
    env.ok(&["import", src.to_str().unwrap(), "t"]);
    let first = env.path("first-out");
    env.ok(&["export", "t", first.to_str().unwrap()]);
    // Eight bytes changed in every 64 KiB: every block changes a little.
    for i in 0..48 {
        let p = src.join(format!("f{i:02}"));
        let mut b = std::fs::read(&p).unwrap();
        for at in (1000..b.len()).step_by(64 << 10) {
            b[at..at + 8].copy_from_slice(&rng.next().to_le_bytes());
        }
        std::fs::write(&p, b).unwrap();
    }
    let data = env.store().join("data");
    let before = du(&data);
    let mut child = env
        .cmd()
        .args(["-q", "import", src.to_str().unwrap(), "t"])
        .spawn()
        .unwrap();
    // Kill it once it has written some deltas (about 200 bytes each).
    let t0 = Instant::now();
    while du(&data) < before + (40 << 10) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "import made no progress"
        );
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        killed,
        "the import finished before it could be killed; make the tree bigger"
    );
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
    let again = env.path("first-again");
    env.ok(&["export", "t", again.to_str().unwrap()]);
    assert_same_tree(&first, &again);

    env.ok(&["import", src.to_str().unwrap(), "t"]);
    let stats = env.ok(&["stats"]);
    let deltas: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("deltas:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no deltas in {stats}"));
    assert!(deltas >= 1000, "{stats}");
    // The second snapshot took a few percent of the first.
    assert!(du(&data) < before + (before / 10), "{stats}");
    let out = env.path("out");
    env.ok(&["export", "t", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
}

/// Issue 18, acceptance 2: with a datafile deleted, `vt fsck` names the
/// snapshots that lost data (and the files in them), and the others still
/// export exactly.
#[test]
fn fsck_names_the_snapshots_a_deleted_datafile_cost() {
    use std::os::fd::AsRawFd;
    let env = Env::new();
    let keep = env.path("keep");
    std::fs::create_dir_all(keep.join("sub")).unwrap();
    std::fs::write(keep.join("sub/k.bin"), Rng(1).bytes(300_000)).unwrap();
    std::fs::write(keep.join("small.txt"), "kept\n").unwrap();
    env.ok(&["import", keep.to_str().unwrap(), "keep"]);
    // Lock the datafiles written so far, as a running writer would: the
    // next import writes datafiles of its own.
    let data = env.store().join("data");
    let held: Vec<std::fs::File> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| std::fs::File::open(e.unwrap().path()).unwrap())
        .collect();
    for f in &held {
        // SAFETY: flock on a valid descriptor.
        assert_eq!(
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
    }
    let before: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let lose = env.path("lose");
    std::fs::create_dir_all(lose.join("deep/er")).unwrap();
    std::fs::write(lose.join("deep/er/gone.bin"), Rng(2).bytes(300_000)).unwrap();
    std::fs::write(lose.join("also.bin"), Rng(3).bytes(100_000)).unwrap();
    env.ok(&["import", lose.to_str().unwrap(), "lose"]);
    drop(held);
    let new: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !before.contains(p) && !p.to_string_lossy().contains("meta-"))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    std::fs::remove_file(&new[0]).unwrap();

    let f = env.run(&["fsck"]);
    assert!(!f.status.success());
    let report = String::from_utf8_lossy(&f.stdout);
    let lost: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("snapshot "))
        .collect();
    assert_eq!(lost.len(), 1, "{report}");
    assert!(
        lost[0].contains("lose.vt #1")
            && lost[0].contains("/deep/er/gone.bin")
            && lost[0].contains("/also.bin"),
        "{report}"
    );
    assert!(
        report.contains("2 snapshots checked, 1 lost data"),
        "{report}"
    );
    // The same after the index is rebuilt without the datafile: the
    // blocks are then missing rather than damaged.
    let f = env.run(&["fsck", "--reindex"]);
    let report = String::from_utf8_lossy(&f.stdout);
    assert!(
        report.contains("2 snapshots checked, 1 lost data"),
        "{report}"
    );
    let out = env.path("keep-out");
    env.ok(&["export", "keep", out.to_str().unwrap()]);
    assert_same_tree(&keep, &out);
}

#[test]
fn a_corrupted_byte_is_reported_never_returned() {
    let env = Env::new();
    let src = env.path("c");
    std::fs::create_dir(&src).unwrap();
    // Incompressible data: records are stored raw, so any byte we flip in
    // the middle of the datafile is inside some block's payload.
    std::fs::write(src.join("random.bin"), Rng(5).bytes(2 << 20)).unwrap();
    env.ok(&["import", src.to_str().unwrap()]);
    let datafile = std::fs::read_dir(env.store().join("data"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&datafile).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&datafile, &bytes).unwrap();

    let o = env.run(&["cat", "c", "random.bin"]);
    assert!(!o.status.success(), "corrupt data must not be returned");
    let err = String::from_utf8_lossy(&o.stderr);
    let name = datafile.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains("corrupt") && err.contains(&*name) && err.contains("sha3_256:"),
        "{err}"
    );
    let dest = env.path("out");
    assert!(!env
        .run(&["export", "c", dest.to_str().unwrap()])
        .status
        .success());

    let f = env.run(&["fsck"]);
    assert!(!f.status.success(), "fsck must fail");
    let report = String::from_utf8_lossy(&f.stdout);
    assert!(
        report.contains(&*name) && report.contains("checksum mismatch"),
        "{report}"
    );
}

/// Mounts a 4 MiB tmpfs at `dir`; false if this process may not mount.
fn mount_small_tmpfs(dir: &std::path::Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=4m",
            "tmpfs",
            dir.to_str().unwrap(),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn full_disk_is_a_clear_error_and_records_nothing() {
    let env = Env::new();
    let mnt = env.path("small");
    if !mount_small_tmpfs(&mnt) {
        eprintln!("SKIPPED full_disk test: cannot mount a tmpfs (needs root)");
        return;
    }
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Umount(mnt.clone());
    let store = mnt.join("store");
    let archive = env.path("a.vt");
    let small = env.path("small-tree");
    std::fs::create_dir(&small).unwrap();
    std::fs::write(small.join("x"), b"fits easily").unwrap();
    let s = store.to_str().unwrap();
    env.ok(&[
        "-S",
        s,
        "import",
        small.to_str().unwrap(),
        archive.to_str().unwrap(),
    ]);

    let big = env.path("big-tree");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(big.join("random"), Rng(9).bytes(8 << 20)).unwrap();
    let o = env.run(&[
        "-S",
        s,
        "import",
        big.to_str().unwrap(),
        archive.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("No space left on device") && err.contains("no snapshot was recorded"),
        "{err}"
    );
    let log = env.ok(&["-S", s, "log", archive.to_str().unwrap()]);
    assert_eq!(log.lines().count(), 1, "only the first snapshot: {log}");
    let out = env.path("out");
    env.ok(&[
        "-S",
        s,
        "export",
        archive.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_same_tree(&small, &out);
    assert!(env.ok(&["-S", s, "fsck"]).contains(" 0 problems"));
}

#[test]
fn unreadable_and_special_files_warn_and_import_continues() {
    let env = Env::new();
    let src = env.path("t");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("ok.txt"), b"readable").unwrap();
    std::fs::write(src.join("secret"), b"nobody may read this").unwrap();
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let fifo = std::ffi::CString::new(src.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    // Everything the unprivileged user needs must be reachable by it.
    for p in [env.dir.path().to_path_buf(), src.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut cmd = env.cmd();
    cmd.args([
        "import",
        src.to_str().unwrap(),
        env.path("t.vt").to_str().unwrap(),
    ]);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        cmd.uid(65534).gid(65534); // root reads everything: import as nobody
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(3),
        "exit 3 when files were unreadable: {err}"
    );
    assert!(
        err.contains("secret: cannot open: Permission denied"),
        "{err}"
    );
    assert!(
        err.contains("pipe: special file (Fifo) recorded as such"),
        "{err}"
    );
    let arch = env.path("t.vt");
    let ls = env.ok(&["ls", arch.to_str().unwrap()]);
    assert!(
        ls.contains("ok.txt") && ls.lines().any(|l| l.starts_with('p')),
        "{ls}"
    );
    assert!(!ls.contains("secret"), "{ls}");
}

#[test]
fn a_file_growing_during_import_is_warned_about_and_stored_as_read() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let env = Env::new();
    let src = env.path("live");
    std::fs::create_dir(&src).unwrap();
    let log = src.join("growing.log");
    std::fs::write(&log, Rng(4).text(4 << 20)).unwrap();
    std::fs::write(src.join("still.txt"), b"unchanging\n").unwrap();
    // A writer appends to the log for as long as the import runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let line = b"another line appended while vt reads this file\n";
            while !stop.load(Ordering::Relaxed) {
                f.write_all(line).unwrap();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let o = env.run(&["import", src.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("growing.log: changed while being read; stored as read"),
        "{err}"
    );
    // What was stored is a prefix of what the file became.
    let stored = env.run(&["cat", "live", "growing.log"]).stdout;
    let now = std::fs::read(&log).unwrap();
    assert!(stored.len() >= 4 << 20 && now.starts_with(&stored));
    assert_eq!(
        env.run(&["cat", "live", "still.txt"]).stdout,
        b"unchanging\n"
    );
}
