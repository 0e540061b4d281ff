//! The DataDir's index costs what it holds: at most 64 bytes on disk per
//! block, after one large import and after many small incremental ones
//! (an index is derived data; a B-tree under random keys cost twice that).

mod common;

use std::path::Path;

use common::*;

/// Writes `n` small files of distinct contents under `dir`.
fn small_files(dir: &Path, tag: &str, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("f{i:05}")),
            // Longer than a literal block (32 bytes), so a block each.
            format!(
                "{tag} file {i}: {} {}\n",
                i.wrapping_mul(0x9e37_79b9),
                "-".repeat(40)
            ),
        )
        .unwrap();
    }
}

/// Index bytes (every file under `index/`) and blocks of the store.
fn index_cost(env: &Env) -> (u64, u64) {
    let stats = env.ok(&["stats"]);
    let blocks = stats
        .lines()
        .find_map(|l| l.strip_prefix("blocks:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no blocks in {stats:?}"));
    let reported = stats_bytes(&stats, "index:");
    let on_disk = du(&env.store().join("index"));
    assert_eq!(reported, on_disk, "vt stats counts the whole index");
    (on_disk, blocks)
}

#[test]
fn the_index_costs_at_most_64_bytes_a_block() {
    let env = Env::new();
    let src = env.path("src");
    for d in 0..100 {
        small_files(&src.join(format!("d{d:03}")), &format!("d{d}"), 1010);
    }
    env.ok(&["import", src.to_str().unwrap()]);
    let (bytes, blocks) = index_cost(&env);
    assert!(blocks > 100_000, "{blocks} blocks");
    assert!(
        bytes <= 64 * blocks,
        "one import: {bytes} index bytes for {blocks} blocks"
    );
    // Ten imports each adding 1% new blocks.
    for round in 0..10 {
        small_files(
            &src.join(format!("new{round}")),
            &format!("round {round}"),
            1010,
        );
        let out = env.ok(&["import", src.to_str().unwrap()]);
        assert!(new_blocks(&out) >= 1010, "{out}");
        let (bytes, blocks) = index_cost(&env);
        assert!(
            bytes <= 64 * blocks,
            "after incremental import {round}: {bytes} index bytes for {blocks} blocks"
        );
    }
    // And it is still right: fsck checks every entry against its block.
    let out = env.ok(&["fsck"]);
    assert!(out.contains(" 0 problems"), "{out}");
}
