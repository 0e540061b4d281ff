//! Issue 18, acceptance 1: a damaged or torn archive line costs that line
//! only. `vt log` lists every good snapshot and marks the bad line, the
//! newest good snapshot exports, `vt fsck` reports the line and `vt fsck
//! --repair` rewrites the archive without it, keeping the original.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Three snapshots of a changing tree in the store's archive `t`; returns
/// the tree of the newest and the archive file.
fn three_snapshots(env: &Env) -> (PathBuf, PathBuf) {
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..3 {
        std::fs::write(src.join("f.txt"), format!("version {i}\n").repeat(100)).unwrap();
        std::fs::write(src.join(format!("new{i}.txt")), format!("file {i}\n")).unwrap();
        env.ok(&["import", src.to_str().unwrap(), "t"]);
    }
    let arch = env.store().join("archives/t.vt");
    assert_eq!(std::fs::read_to_string(&arch).unwrap().lines().count(), 3);
    (src, arch)
}

/// `vt log`'s snapshot lines (numbered) and its marks of damaged lines.
fn log(env: &Env, archive: &str) -> (Vec<String>, Vec<String>, String) {
    let o = env.run(&["log", archive]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let (marks, snaps): (Vec<String>, Vec<String>) = out
        .lines()
        .map(str::to_owned)
        .partition(|l| l.starts_with('#'));
    (
        snaps,
        marks,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".vt.damaged-"))
        .collect()
}

#[test]
fn a_damaged_middle_line_is_skipped_reported_and_repaired() {
    let env = Env::new();
    let (src, arch) = three_snapshots(&env);
    let text = std::fs::read_to_string(&arch).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Line 2 cut short in the middle (a torn write, then more appends).
    let damaged = format!(
        "{}\n{}\n{}\n",
        lines[0],
        &lines[1][..lines[1].len() / 2],
        lines[2]
    );
    std::fs::write(&arch, &damaged).unwrap();

    let (snaps, marks, err) = log(&env, "t");
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snaps[0].starts_with("1\t") && snaps[1].starts_with("2\t"));
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert!(marks[0].contains("line 2"), "{marks:?}");
    assert!(err.contains("[local]t") && err.contains("line 2"), "{err}");
    // Written to a pipe, the warning is plain text (no colour codes).
    assert!(err.contains(" WARN ") && !err.contains('\x1b'), "{err:?}");

    // The newest snapshot, intact, exports exactly.
    let out = env.path("out");
    env.ok(&["export", "t", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);

    // fsck reports it and fails; --repair rewrites the archive.
    let f = env.run(&["fsck"]);
    assert!(!f.status.success());
    let report = String::from_utf8_lossy(&f.stdout);
    assert!(report.contains("t.vt: line 2 is damaged"), "{report}");
    let r = env.ok(&["fsck", "--repair"]);
    assert!(r.contains("rewritten without 1 damaged line"), "{r}");
    let (snaps2, marks2, err2) = log(&env, "t");
    assert_eq!(snaps2, snaps);
    assert!(
        marks2.is_empty() && !err2.contains("damaged"),
        "{marks2:?} {err2}"
    );
    let kept = backups(&env.store().join("archives"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), damaged);
    // The backup is not taken for an archive of the store.
    let again = env.ok(&["fsck"]);
    assert!(
        again.contains("1 archives checked, 0 damaged lines"),
        "{again}"
    );
}

#[test]
fn a_torn_last_line_of_a_pack_file_is_skipped_and_repaired() {
    let env = Env::new();
    let src = env.path("tree");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), "hello\n").unwrap();
    env.ok(&["pack", src.to_str().unwrap()]);
    let vtfile = env.path("tree.vt");
    let good = std::fs::read_to_string(&vtfile).unwrap();
    // An interrupted append: half a line without its newline.
    let torn = format!("{good}{}", &good[..good.len() / 2]);
    std::fs::write(&vtfile, &torn).unwrap();

    let (snaps, marks, err) = log(&env, vtfile.to_str().unwrap());
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert!(err.contains("line 2"), "{err}");

    let f = env.run(&["fsck", vtfile.to_str().unwrap()]);
    assert!(!f.status.success());
    let r = env.ok(&["fsck", "--repair", vtfile.to_str().unwrap()]);
    assert!(r.contains("rewritten without 1 damaged line"), "{r}");
    assert_eq!(std::fs::read_to_string(&vtfile).unwrap(), good);
    let kept = backups(&env.path(""));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), torn);
    std::fs::remove_dir_all(&src).unwrap();
    env.ok(&["unpack", vtfile.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(src.join("a.txt")).unwrap(),
        "hello\n"
    );
}
