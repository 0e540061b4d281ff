//! Acceptance 3: deleting 1% of the lines in the middle of a large text
//! file and re-importing adds less than 5% of the file's size.

mod common;

use common::*;

#[test]
fn deleting_one_percent_of_lines_adds_under_five_percent() {
    let env = Env::new();
    let src = env.path("doc");
    std::fs::create_dir(&src).unwrap();
    let text = Rng(99).text(32 << 20);
    let file = src.join("big.txt");
    std::fs::write(&file, &text).unwrap();
    env.ok(&["import", src.to_str().unwrap()]);
    let before = stats_bytes(&env.ok(&["stats"]), "data:");

    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let n = lines.len();
    let (from, count) = (n / 2, n / 100);
    let mut edited = Vec::with_capacity(text.len());
    for (i, l) in lines.iter().enumerate() {
        if i < from || i >= from + count {
            edited.extend_from_slice(l);
        }
    }
    std::fs::write(&file, &edited).unwrap();
    env.ok(&["import", src.to_str().unwrap()]);
    let added = stats_bytes(&env.ok(&["stats"]), "data:") - before;
    assert!(
        added * 20 < text.len() as u64,
        "added {added} bytes for a {} byte file",
        text.len()
    );
    let got = env.run(&["cat", "doc", "big.txt"]).stdout;
    assert!(got == edited, "content differs after re-import");
}
