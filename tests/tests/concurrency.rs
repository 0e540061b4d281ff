//! Acceptance 4: two `vt import` processes writing to one DataDir at the
//! same time both succeed and `vt fsck` is clean.

mod common;

use common::*;

#[test]
fn two_importers_share_one_datadir() {
    let env = Env::new();
    let mut rng = Rng(7);
    let shared = rng.bytes(4 << 20);
    for name in ["a", "b"] {
        let d = env.path(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("shared.bin"), &shared).unwrap();
        for i in 0..40 {
            std::fs::write(d.join(format!("own{i}.bin")), rng.bytes(256 << 10)).unwrap();
        }
    }
    let kids: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| {
            env.cmd()
                .args(["-q", "import", env.path(n).to_str().unwrap()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
    for n in ["a", "b"] {
        let dest = env.path(&format!("out-{n}"));
        env.ok(&["export", n, dest.to_str().unwrap()]);
        assert_same_tree(&env.path(n), &dest);
    }
    // Each process wrote its own datafile.
    let datafiles = std::fs::read_dir(env.store().join("data")).unwrap().count();
    assert!(datafiles >= 2, "{datafiles} datafiles");
}
