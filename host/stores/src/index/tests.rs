//! Tests of the run index, on real files in temporary directories.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;

use super::*;

/// A small deterministic generator (splitmix64): test data without a
/// dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random hashcode, of either kind.
    fn hash(&mut self) -> Hash {
        let mut bytes = [0u8; 32];
        for c in bytes.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let kind = if self.next().is_multiple_of(8) {
            HashKind::Blake3
        } else {
            HashKind::Sha3_256
        };
        Hash { kind, bytes }
    }

    /// A random place: a group member or a whole record.
    fn loc(&mut self) -> Loc {
        let x = self.next();
        Loc {
            file: (x % 7) as u32,
            offset: self.next() & MAX_OFFSET,
            stored_len: self.next() as u32,
            raw_len: self.next() as u32,
            member: (!x.is_multiple_of(3)).then(|| InGroup {
                index: (self.next() % 5000) as u32,
                offset: self.next() as u32,
            }),
            delta: x % 6 == 3,
        }
    }

    fn entries(&mut self, n: usize) -> Vec<(Hash, Loc)> {
        (0..n).map(|_| (self.hash(), self.loc())).collect()
    }
}

/// Run files in `dir`'s `runs/`, oldest first.
fn run_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(RUNS))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| parse_run_name(&p.file_name().unwrap().to_string_lossy()).is_some())
        .collect();
    v.sort();
    v
}

fn all_found(ix: &Index, entries: &[(Hash, Loc)]) {
    for (h, l) in entries {
        assert_eq!(ix.get(h).unwrap(), Some(*l), "{h}");
    }
}

#[test]
fn locs_round_trip_through_their_26_bytes() {
    let mut rng = Rng(1);
    for _ in 0..1000 {
        let l = rng.loc();
        assert_eq!(Loc::decode(&l.encode().unwrap()), l);
    }
    let whole = Loc {
        file: u32::MAX,
        offset: MAX_OFFSET,
        stored_len: u32::MAX,
        raw_len: 0,
        member: None,
        delta: false,
    };
    assert_eq!(Loc::decode(&whole.encode().unwrap()), whole);
    let delta = Loc {
        delta: true,
        ..whole
    };
    assert_eq!(Loc::decode(&delta.encode().unwrap()), delta);
    let bad = Loc {
        member: Some(InGroup {
            index: 0,
            offset: 0,
        }),
        ..delta
    };
    assert!(bad.encode().is_err());
    let far = Loc {
        offset: MAX_OFFSET + 1,
        ..whole
    };
    assert!(far.encode().is_err());
    assert_eq!(ENTRY_LEN, 59);
}

#[test]
fn round_trip_of_200k_entries_in_20_runs() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    let mut rng = Rng(2);
    let all = rng.entries(200_000);
    for (i, chunk) in all.chunks(10_000).enumerate() {
        ix.add_run(chunk.to_vec(), &[(3, (i as u64 + 1) * 1000)])
            .unwrap();
    }
    assert!(ix.runs() <= 6, "{} runs", ix.runs());
    assert_eq!(ix.len(), 200_000);
    all_found(&ix, &all);
    let members = all.iter().filter(|(_, l)| l.member.is_some()).count();
    assert!(
        members > 100_000 && members < 200_000,
        "both kinds of place"
    );
    // A prefix finds a block with it (of the few that share it, any).
    for (h, _) in all.iter().step_by(97) {
        let p = crate::similar::prefix_of(h);
        let (found, loc) = ix.find_prefix(p).unwrap().unwrap();
        assert_eq!(crate::similar::prefix_of(&found), p);
        assert_eq!(ix.get(&found).unwrap(), Some(loc));
    }
    for _ in 0..10_000 {
        let h = rng.hash();
        assert_eq!(ix.get(&h).unwrap(), None);
        assert!(!ix.contains(&h).unwrap());
    }
    // The same key of the other kind is another key.
    let (h, _) = all[0];
    let other = Hash {
        kind: if h.kind == HashKind::Blake3 {
            HashKind::Sha3_256
        } else {
            HashKind::Blake3
        },
        ..h
    };
    assert_eq!(ix.get(&other).unwrap(), None);
    assert_eq!(ix.ends(), HashMap::from([(3, 20_000)]));
    // Every entry, once.
    let listed: HashMap<Hash, Loc> = ix.entries().map(Result::unwrap).collect();
    assert_eq!(listed.len(), 200_000);
    let want: HashMap<Hash, Loc> = all.iter().copied().collect();
    assert_eq!(listed, want);
    // And from another process's point of view.
    drop(ix);
    let ix = Index::open(t.path()).unwrap();
    all_found(&ix, &all);
    assert!(ix.check().is_empty());
}

#[test]
fn under_64_bytes_per_entry_after_one_import_and_after_ten_small_ones() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    let mut rng = Rng(3);
    let first = rng.entries(150_000);
    ix.add_run(first.clone(), &[(0, 1 << 30)]).unwrap();
    let per = |ix: &Index| ix.disk_bytes() as f64 / ix.len() as f64;
    let one = per(&ix);
    let mut total = first.len();
    for i in 0..10u64 {
        // An incremental import offers old blocks too: they are skipped.
        let mut batch = rng.entries(total / 100);
        total += batch.len();
        batch.extend_from_slice(&first[i as usize * 1000..][..1000]);
        ix.add_run(batch, &[(1, (i + 1) << 20)]).unwrap();
    }
    assert_eq!(ix.len(), total as u64);
    let ten = per(&ix);
    eprintln!(
        "index bytes per entry: {one:.2} after 150000 in one run, {ten:.2} after ten 1% imports ({} runs, {} bytes)",
        ix.runs(),
        ix.disk_bytes()
    );
    assert!(one <= 64.0, "{one}");
    assert!(ten <= 64.0, "{ten}");
}

#[test]
fn merges_keep_runs_logarithmic_and_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    let mut rng = Rng(4);
    let mut all = Vec::new();
    let mut most = 0;
    for i in 0..200u64 {
        let n = 50 + (rng.next() % 100) as usize;
        let batch = rng.entries(n);
        all.extend_from_slice(&batch);
        ix.add_run(batch, &[(i as u32 % 3, i + 1)]).unwrap();
        most = most.max(ix.runs());
        assert_eq!(
            ix.runs(),
            run_files(t.path()).len(),
            "deleted after merging"
        );
    }
    eprintln!(
        "200 small runs: at most {most} runs at once, {} at the end",
        ix.runs()
    );
    assert!(most <= 12, "{most} runs");
    assert_eq!(ix.len(), all.len() as u64);
    all_found(&ix, &all);
    ix.compact().unwrap();
    assert_eq!(ix.runs(), 1);
    assert_eq!(run_files(t.path()).len(), 1);
    assert_eq!(ix.len(), all.len() as u64);
    all_found(&ix, &all);
    assert_eq!(ix.ends(), HashMap::from([(0, 199), (1, 200), (2, 198)]));
}

#[test]
fn add_run_skips_known_and_repeated_keys_and_empty_batches() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    let mut rng = Rng(5);
    let old = rng.entries(100);
    ix.add_run(old.clone(), &[]).unwrap();
    let (h, first) = (rng.hash(), rng.loc());
    let batch = vec![
        (h, first),
        (old[7].0, rng.loc()),
        (h, rng.loc()),
        (rng.hash(), rng.loc()),
    ];
    ix.add_run(batch, &[]).unwrap();
    assert_eq!(ix.len(), 102);
    assert_eq!(ix.get(&h).unwrap(), Some(first), "the first of repeats");
    assert_eq!(
        ix.get(&old[7].0).unwrap(),
        Some(old[7].1),
        "the indexed one"
    );
    // Nothing new, no end advanced: no run written.
    let before = ix.disk_bytes();
    ix.add_run(old[..10].to_vec(), &[]).unwrap();
    ix.add_run(Vec::new(), &[]).unwrap();
    assert_eq!(ix.disk_bytes(), before);
}

#[test]
fn ends_are_the_greatest_over_runs_and_kept_across_merges() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    let mut rng = Rng(6);
    ix.add_run(Vec::new(), &[(1, 100), (2, 50)]).unwrap();
    assert_eq!(ix.ends(), HashMap::from([(1, 100), (2, 50)]));
    // Going back advances nothing: no run.
    let files = run_files(t.path()).len();
    ix.add_run(Vec::new(), &[(1, 80), (2, 50)]).unwrap();
    assert_eq!(run_files(t.path()).len(), files);
    ix.add_run(rng.entries(1000), &[(1, 300), (1, 200)])
        .unwrap();
    ix.add_run(rng.entries(10), &[(4, 10)]).unwrap();
    let want = HashMap::from([(1, 300), (2, 50), (4, 10)]);
    assert_eq!(ix.ends(), want);
    ix.compact().unwrap();
    assert_eq!(ix.runs(), 1);
    assert_eq!(ix.ends(), want);
    drop(ix);
    assert_eq!(Index::open(t.path()).unwrap().ends(), want);
}

#[test]
fn two_instances_see_each_others_runs_and_survive_each_others_merges() {
    let t = tempfile::tempdir().unwrap();
    let a = Index::open(t.path()).unwrap();
    let b = Index::open(t.path()).unwrap();
    let mut rng = Rng(7);
    let first = rng.entries(2000);
    a.add_run(first.clone(), &[(0, 10)]).unwrap();
    assert_eq!(b.get(&first[0].0).unwrap(), None, "not refreshed yet");
    b.refresh().unwrap();
    all_found(&b, &first);
    assert_eq!(b.ends(), HashMap::from([(0, 10)]));
    // b writes one: a sees it after refreshing.
    let second = rng.entries(300);
    b.add_run(second.clone(), &[(1, 20)]).unwrap();
    a.refresh().unwrap();
    all_found(&a, &second);
    // a merges everything away while b has the runs mapped: b reads on
    // from its maps of the deleted files...
    let mut more = Vec::new();
    for i in 0..5 {
        let e = rng.entries(100);
        more.extend_from_slice(&e);
        a.add_run(e, &[(0, 11 + i)]).unwrap();
    }
    let mapped_by_b = b.runs();
    a.compact().unwrap();
    assert_eq!(run_files(t.path()).len(), 1);
    assert_eq!(b.runs(), mapped_by_b);
    all_found(&b, &first);
    all_found(&b, &second);
    // ...and after refreshing, from the merged run.
    b.refresh().unwrap();
    assert_eq!(b.runs(), 1);
    all_found(&b, &first);
    all_found(&b, &second);
    all_found(&b, &more);
    assert_eq!(b.ends(), HashMap::from([(0, 15), (1, 20)]));
    // Nothing changed since: a refresh lists nothing.
    let seen = b.seen.load(Relaxed);
    b.refresh().unwrap();
    assert_eq!(b.seen.load(Relaxed), seen);
}

#[test]
fn threads_look_up_while_runs_are_added_and_merged() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    let mut rng = Rng(8);
    let batches: Vec<Vec<(Hash, Loc)>> = (0..40).map(|_| rng.entries(200)).collect();
    ix.add_run(batches[0].clone(), &[]).unwrap();
    std::thread::scope(|s| {
        let ix = &ix;
        let first = &batches[0];
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(move || {
                    for _ in 0..20 {
                        all_found(ix, first);
                    }
                })
            })
            .collect();
        for b in &batches[1..] {
            ix.add_run(b.clone(), &[]).unwrap();
        }
        readers.into_iter().for_each(|r| r.join().unwrap());
    });
    for b in &batches {
        all_found(&ix, b);
    }
}

#[test]
fn damaged_runs_are_set_aside_and_the_rest_still_serve() {
    let t = tempfile::tempdir().unwrap();
    let mut rng = Rng(9);
    // Sizes that do not merge: each run under half the one before.
    let sizes = [4000, 1000, 250, 60];
    let ends = [
        vec![(0u32, 100u64)],
        vec![(1, 200)],
        vec![(0, 300)],
        vec![(2, 50)],
    ];
    let batches: Vec<_> = sizes.iter().map(|&n| rng.entries(n)).collect();
    {
        let ix = Index::open(t.path()).unwrap();
        for (b, e) in batches.iter().zip(&ends) {
            ix.add_run(b.clone(), e).unwrap();
        }
        assert_eq!(ix.runs(), 4);
        assert_eq!(ix.ends(), HashMap::from([(0, 300), (1, 200), (2, 50)]));
    }
    let files = run_files(t.path());
    // A flipped bit in an entry of the second run (the checksum sees it)...
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .open(&files[1])
        .unwrap();
    let at = (ENTRIES_AT + 500 * ENTRY_LEN + 40) as u64;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    // ...and the third cut short (its length gives it away).
    let len = std::fs::metadata(&files[2]).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&files[2])
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    let ix = Index::open(t.path()).unwrap();
    assert_eq!(ix.runs(), 2);
    all_found(&ix, &batches[0]);
    all_found(&ix, &batches[3]);
    for b in &batches[1..3] {
        assert!(b.iter().all(|(h, _)| ix.get(h).unwrap().is_none()));
    }
    // File 0 is covered up to where the lost third run took over, file 1
    // not at all.
    assert_eq!(ix.ends(), HashMap::from([(0, 100), (2, 50)]));
    assert_eq!(run_files(t.path()).len(), 2);
    let aside = std::fs::read_dir(t.path().join(RUNS))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".damaged")
        })
        .count();
    assert_eq!(aside, 2);
    // The caller indexes the uncovered tails again: all is back.
    ix.add_run(batches[2].clone(), &[(0, 300)]).unwrap();
    ix.add_run(batches[1].clone(), &[(1, 200)]).unwrap();
    assert_eq!(ix.ends(), HashMap::from([(0, 300), (1, 200), (2, 50)]));
    for b in &batches {
        all_found(&ix, b);
    }
    assert!(ix.check().is_empty());
}

#[test]
fn damage_in_a_large_run_is_found_when_merging_and_by_check() {
    let t = tempfile::tempdir().unwrap();
    let mut rng = Rng(10);
    // Large enough not to be checked on open.
    let n = (VERIFY_ON_OPEN_BELOW as usize / ENTRY_LEN) + 1000;
    let big = rng.entries(n);
    Index::open(t.path())
        .unwrap()
        .add_run(big.clone(), &[(0, 1000)])
        .unwrap();
    let file = run_files(t.path()).remove(0);
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .open(&file)
        .unwrap();
    // A flipped bit in a place (keys stay sorted): look-ups do not notice.
    let at = (ENTRIES_AT + 12_345 * ENTRY_LEN + KEY_LEN + 2) as u64;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 1], at).unwrap();
    let ix = Index::open(t.path()).unwrap();
    assert_eq!(ix.runs(), 1);
    assert_eq!(ix.check().len(), 1, "fsck reports it");
    let ix = Index::open(t.path()).unwrap();
    let small = rng.entries(10);
    ix.add_run(small.clone(), &[(1, 10)]).unwrap();
    ix.compact().unwrap();
    // The merge found the damage: the big run is set aside.
    assert_eq!(ix.runs(), 1);
    assert_eq!(ix.len(), 10);
    all_found(&ix, &small);
    assert_eq!(ix.ends(), HashMap::from([(1, 10)]));
}

#[test]
fn register_gives_each_name_one_number_across_instances() {
    let t = tempfile::tempdir().unwrap();
    let a = Index::open(t.path()).unwrap();
    let b = Index::open(t.path()).unwrap();
    assert_eq!(a.register("x.vtd").unwrap(), 0);
    assert_eq!(b.register("meta-y.vtd").unwrap(), 1);
    assert_eq!(b.register("x.vtd").unwrap(), 0);
    assert_eq!(a.register("meta-y.vtd").unwrap(), 1);
    assert!(a.register("bad\nname").is_err());
    // A line a crash cut short does not count, and is replaced.
    let path = t.path().join(DATAFILES);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"2 half-writ").unwrap();
    assert_eq!(a.datafiles().unwrap().len(), 2);
    assert_eq!(b.register("z.vtd").unwrap(), 2);
    assert_eq!(
        a.datafiles().unwrap(),
        vec![
            (0, "x.vtd".to_string()),
            (1, "meta-y.vtd".to_string()),
            (2, "z.vtd".to_string())
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "0 x.vtd\n1 meta-y.vtd\n2 z.vtd\n"
    );
    // Threads registering at once get distinct numbers.
    let nums: HashSet<u32> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let ix = if i % 2 == 0 { &a } else { &b };
                s.spawn(move || ix.register(&format!("t{i}.vtd")).unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want: HashSet<u32> = (3..11).collect();
    assert_eq!(nums, want);
}

#[test]
fn clear_removes_runs_and_registry() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    let mut rng = Rng(11);
    let e = rng.entries(100);
    ix.register("a.vtd").unwrap();
    ix.add_run(e.clone(), &[(0, 5)]).unwrap();
    let other = Index::open(t.path()).unwrap();
    ix.clear().unwrap();
    assert!(ix.is_empty());
    assert_eq!(ix.runs(), 0);
    assert!(ix.ends().is_empty());
    assert!(ix.datafiles().unwrap().is_empty());
    assert_eq!(ix.get(&e[0].0).unwrap(), None);
    assert!(run_files(t.path()).is_empty());
    other.refresh().unwrap();
    assert_eq!(other.get(&e[0].0).unwrap(), None);
    assert_eq!(ix.register("b.vtd").unwrap(), 0);
    ix.add_run(e.clone(), &[(0, 5)]).unwrap();
    all_found(&ix, &e);
}

#[test]
fn torn_temporary_files_are_not_runs() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    std::fs::write(t.path().join(RUNS).join(".tmp-1-00000000"), b"partial").unwrap();
    let mut rng = Rng(12);
    let e = rng.entries(10);
    ix.add_run(e.clone(), &[]).unwrap();
    let ix = Index::open(t.path()).unwrap();
    assert_eq!(ix.runs(), 1);
    all_found(&ix, &e);
}

/// Pages of `map` in the page cache, as a fraction of its pages.
fn cached_fraction(map: &Bytes) -> f64 {
    let pages = map.len().div_ceil(mapping::PAGE);
    mapping::cached_pages(map, 0, pages) as f64 / pages as f64
}

#[test]
fn lookups_in_bulk_read_a_small_cold_run_ahead() {
    let t = tempfile::tempdir().unwrap();
    let ix = Index::open(t.path()).unwrap();
    let mut rng = Rng(7);
    let all = rng.entries(100_000);
    ix.add_run(all.clone(), &[(1, 1000)]).unwrap();
    drop(ix);
    let ix = Index::open(t.path()).unwrap();
    let run = run_files(t.path()).pop().unwrap();
    let map = ix.view().runs[0].map.clone();
    assert!(map.len() > 2 << 20, "a run of {} bytes", map.len());
    // Out of the page cache (unmapped first: mapped pages stay).
    ix.release_pages();
    let f = std::fs::File::open(&run).unwrap();
    // SAFETY: advisory, on a descriptor we own.
    unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    let before = cached_fraction(&map);
    if before > 0.2 {
        // tmpfs and the like keep their pages: nothing to read ahead.
        eprintln!(
            "skipped: {before} of the run stays cached in {}",
            t.path().display()
        );
        return;
    }
    // Fewer look-ups than the run has pages: alone they would fault in
    // fewer than half of them.
    for (h, l) in all.iter().step_by(97).take(RELEASE_EVERY as usize) {
        assert_eq!(ix.get(h).unwrap(), Some(*l));
    }
    let mut after = cached_fraction(&map);
    for _ in 0..200 {
        if after > 0.9 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        after = cached_fraction(&map);
    }
    assert!(after > 0.9, "{after} of the run cached after the look-ups");
}
