//! Scanner plugins end to end: hostile plugins never break an import, an
//! incompatible plugin is refused, `vt plugin new` gives a crate that
//! builds, installs and scans, and the bundled mbox component proposes what
//! the native code does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{du, plugin_build, Env, Rng};

/// Builds tests/plugins (hostile, wit1, wit2) for wasm32-wasip2, once.
fn test_plugins() -> &'static (PathBuf, PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = plugin_build::build_test_plugins(&["hostile", "wit1", "wit2"]);
        (
            dir.join("hostile.wasm"),
            dir.join("wit1.wasm"),
            dir.join("wit2.wasm"),
        )
    })
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn hostile_plugins_warn_and_the_data_is_identical() {
    let (hostile, _, _) = test_plugins();
    let env = Env::new();
    let out = env.ok(&["plugin", "install", hostile.to_str().unwrap()]);
    assert!(out.contains("installed scanner hostile 0.1.0"), "{out}");

    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let mut rng = Rng(7);
    let cases = [
        "loop",
        "alloc",
        "trap",
        "unsorted",
        "range",
        "startloop",
        "fine",
    ];
    for ext in cases {
        std::fs::write(src.join(format!("f.{ext}")), rng.bytes(300_000)).unwrap();
    }
    // No extension it claims: chosen by sniffing, and sniff never returns.
    let mut sniffy = b"LOOPSNIFF".to_vec();
    sniffy.extend(rng.bytes(100_000));
    std::fs::write(src.join("sniffy.dat"), &sniffy).unwrap();

    let t = std::time::Instant::now();
    let o = env.run(&["import", src.to_str().unwrap(), "h"]);
    let err = stderr(&o);
    assert!(o.status.success(), "import failed: {err}");
    // Every deadline is seconds, not minutes.
    assert!(t.elapsed().as_secs() < 60, "import took {:?}", t.elapsed());
    let expect = [
        ("f.loop", "ran past its time limit"),
        ("f.alloc", "memory"),
        ("f.trap", "trapped"),
        ("f.unsorted", "offsets must rise"),
        ("f.range", "beyond the"),
        ("f.startloop", "ran past its time limit"),
    ];
    for (file, why) in expect {
        let line = err
            .lines()
            .find(|l| {
                l.contains(&format!(
                    "plugin hostile failed on {}",
                    src.join(file).display()
                ))
            })
            .unwrap_or_else(|| panic!("no warning for {file} in:\n{err}"));
        assert!(
            line.contains(why),
            "warning for {file} lacks {why:?}: {line}"
        );
        assert!(line.contains("without it"), "{line}");
    }
    assert!(
        err.contains("plugin hostile failed to sniff") && err.contains("sniffy.dat"),
        "{err}"
    );
    assert!(
        !err.contains("f.fine"),
        "the well-behaved case warned: {err}"
    );

    let dest = env.path("out");
    env.ok(&["export", "h", dest.to_str().unwrap()]);
    for ext in cases {
        let name = format!("f.{ext}");
        assert_eq!(
            std::fs::read(src.join(&name)).unwrap(),
            std::fs::read(dest.join(&name)).unwrap(),
            "{name} differs after export"
        );
    }
    assert_eq!(std::fs::read(dest.join("sniffy.dat")).unwrap(), sniffy);
}

#[test]
fn incompatible_or_broken_plugins_are_refused_clearly() {
    let (_, _, wit2) = test_plugins();
    let env = Env::new();
    let o = env.run(&["plugin", "install", wit2.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("built against vt:plugin@2.0.0, but this vt speaks vt:plugin@1.2.0"),
        "{err}"
    );

    let junk = env.path("junk.wasm");
    std::fs::write(&junk, b"\0asm not really").unwrap();
    let o = env.run(&["plugin", "install", junk.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a usable vt scanner plugin"),
        "{}",
        stderr(&o)
    );

    let o = env.run(&[
        "plugin",
        "install",
        env.path("missing.wasm").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.wasm"), "{}", stderr(&o));

    // Nothing was installed by the failures.
    let list = env.ok(&["plugin", "list"]);
    assert!(!list.contains("wit2"), "{list}");
    assert!(list.contains("mbox") && list.contains("bundled"), "{list}");
    for name in ["mbox", "gz", "vtd"] {
        assert!(
            list.lines()
                .any(|l| l.contains(name) && l.contains("bundled")),
            "{name} not listed as bundled: {list}"
        );
    }
}

#[test]
fn tampered_installed_plugin_is_not_loaded() {
    let (hostile, _, _) = test_plugins();
    let env = Env::new();
    env.ok(&["plugin", "install", hostile.to_str().unwrap()]);
    let installed = env.path("xdg-data/vt/plugins/hostile.wasm");
    let mut bytes = std::fs::read(&installed).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&installed, bytes).unwrap();
    let o = env.run(&["plugin", "list"]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("installed plugin hostile not loaded") && err.contains("not the"),
        "{err}"
    );
    let out = env.ok(&["plugin", "remove", "hostile"]);
    assert!(out.contains("removed scanner hostile"), "{out}");
    assert!(!installed.exists());
    let o = env.run(&["plugin", "remove", "hostile"]);
    assert!(
        stderr(&o).contains("no plugin named \"hostile\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plugin_new_builds_passes_its_test_installs_and_scans() {
    let env = Env::new();
    let work = env.path("work");
    std::fs::create_dir(&work).unwrap();
    let o = env
        .cmd()
        .current_dir(&work)
        .args(["plugin", "new", "myscanner"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let krate = work.join("myscanner");
    let wasm = plugin_build::test_and_build_scaffold(&krate, "myscanner");
    let out = env.ok(&["plugin", "install", wasm.to_str().unwrap()]);
    assert!(out.contains("installed scanner myscanner 0.1.0"), "{out}");
    let info = env.ok(&["plugin", "info", "myscanner"]);
    assert!(
        info.contains("installed") && info.contains("sha256:"),
        "{info}"
    );

    // Paragraphs of 20,000 bytes: the scanner proposes after each blank line.
    let mut text = Vec::new();
    for i in 0..10 {
        text.extend(std::iter::repeat_n(b'a' + i, 19_998));
        text.extend(b"\n\n");
    }
    let f = env.path("doc.myscanner");
    std::fs::write(&f, &text).unwrap();
    let out = env.ok(&["scan", f.to_str().unwrap(), "--list"]);
    assert!(
        out.contains("scanner: myscanner 0.1.0 (extension .myscanner)"),
        "{out}"
    );
    assert!(out.contains("offsets: 10 proposed"), "{out}");
    for k in 1..=10 {
        assert!(
            out.contains(&format!("\n  {}\n", k * 20_000)),
            "offset {} missing: {out}",
            k * 20_000
        );
    }
    // Every proposal ends a block: blocks of 20,000 bytes.
    assert!(out.contains("blocks:  10"), "{out}");
}

/// A synthetic mbox: `n` messages of assorted sizes.
fn mbox(n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..n {
        m.extend(
            format!(
                "From dev{i}@example.org Mon Jan  1 00:00:00 2024\nFrom: dev{i}@example.org\nSubject: patch {i}\nStatus: RO\n\n"
            )
            .as_bytes(),
        );
        let lines = 20 + rng.below(400) as usize;
        for _ in 0..lines {
            let w = 10 + rng.below(60) as usize;
            m.extend((0..w).map(|_| b'a' + rng.below(26) as u8));
            m.push(b'\n');
        }
        m.push(b'\n');
    }
    m
}

#[test]
fn bundled_mbox_component_proposes_what_the_native_scanner_does() {
    let env = Env::new();
    let data = mbox(300, &mut Rng(3));
    let f = env.path("inbox");
    std::fs::write(&f, &data).unwrap();
    let native = vt_sdk::testing::scan::<vt_plugin_mbox::Mbox>("inbox", &data);
    assert!(native.len() > 500);
    let out = env.ok(&["scan", f.to_str().unwrap(), "--list"]);
    assert!(
        out.contains("scanner: mbox 1.0.0 (sniffed with confidence 95)"),
        "{out}"
    );
    assert_eq!(
        listed_offsets(&out),
        native,
        "wasm and native offsets differ"
    );
}

/// The offsets `vt scan FILE --list` prints.
fn listed_offsets(out: &str) -> Vec<u64> {
    out.split("offsets:")
        .nth(1)
        .expect("offsets line")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  ") && !l.contains(".."))
        .map(|l| l.trim().parse().expect("an offset"))
        .collect()
}

#[test]
fn a_plugin_built_against_wit_1_0_loads_with_the_default_seams() {
    let (_, wit1, _) = test_plugins();
    let env = Env::new();
    env.ok(&["plugin", "install", wit1.to_str().unwrap()]);
    let f = env.path("every.one");
    std::fs::write(&f, Rng(5).text(20_000)).unwrap();
    let out = env.ok(&["scan", f.to_str().unwrap()]);
    assert!(
        out.contains("scanner: wit1 1.0.0 (extension .one)"),
        "{out}"
    );
    assert!(
        out.contains("seams:   honoured from 4096 bytes into a block (the default)"),
        "{out}"
    );
    // Proposals every 1000 bytes, honoured from 4096: blocks end at 5000,
    // 10000, 15000 and 20000 (the last proposal is the end of the file).
    assert!(
        out.contains("offsets: 20 proposed, 4 used as block ends"),
        "{out}"
    );
    assert!(out.contains("blocks:  4\n"), "{out}");
    let info = env.ok(&["plugin", "info", "wit1"]);
    assert!(!info.contains("min block"), "{info}");
}

/// `tar`-like text made by gzip --rsyncable -n (gzip is on every Debian).
fn rsyncable_gzip(env: &Env, name: &str, text: &[u8]) -> PathBuf {
    let plain = env.path(name);
    std::fs::write(&plain, text).unwrap();
    let st = Command::new("gzip")
        .args(["--rsyncable", "-n", "-f"])
        .arg(&plain)
        .status()
        .expect("run gzip");
    assert!(st.success());
    env.path(&format!("{name}.gz"))
}

#[test]
fn bundled_gz_component_proposes_what_the_native_scanner_does() {
    let env = Env::new();
    let gz = rsyncable_gzip(&env, "src.tar", &Rng(11).text(3 << 20));
    let data = std::fs::read(&gz).unwrap();
    let native = vt_sdk::testing::scan::<vt_plugin_gz::Gz>("src.tar.gz", &data);
    // gzip --rsyncable flushes about every 1 KiB of output.
    assert!(
        native.len() as u64 > data.len() as u64 / 4096,
        "{}",
        native.len()
    );
    let out = env.ok(&["scan", gz.to_str().unwrap(), "--list"]);
    assert!(out.contains("scanner: gz 1.0.0 (extension .gz)"), "{out}");
    assert!(
        out.contains("seams:   honoured from 2048 bytes into a block (the scanner's)"),
        "{out}"
    );
    assert_eq!(
        listed_offsets(&out),
        native,
        "wasm and native offsets differ"
    );
    // Seen through an rsync temporary name, and by its magic alone.
    let tmp = env.path(".src.tar.gz.Ab12Cd");
    std::fs::copy(&gz, &tmp).unwrap();
    let out = env.ok(&["scan", tmp.to_str().unwrap()]);
    assert!(out.contains("scanner: gz 1.0.0 (extension .gz)"), "{out}");
    let bare = env.path("download");
    std::fs::copy(&gz, &bare).unwrap();
    let out = env.ok(&["scan", bare.to_str().unwrap()]);
    assert!(
        out.contains("scanner: gz 1.0.0 (sniffed with confidence 90)"),
        "{out}"
    );
}

#[test]
fn an_edited_rsyncable_tarball_adds_less_with_the_gz_scanner() {
    // v2: the same text with 20 lines inserted here and there.
    let v1 = Rng(12).text(8 << 20);
    let mut v2 = Vec::new();
    let mut rng = Rng(13);
    let mut at = 0;
    for i in 0..20 {
        let next = (at + 200_000 + rng.below(200_000) as usize).min(v1.len());
        let nl = v1[next..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(v1.len(), |p| next + p + 1);
        v2.extend_from_slice(&v1[at..nl]);
        v2.extend_from_slice(format!("/* edit {i} */\n").as_bytes());
        at = nl;
    }
    v2.extend_from_slice(&v1[at..]);
    let added = |mode: &str| -> u64 {
        let env = Env::new();
        if mode == "cdc" {
            std::fs::create_dir_all(env.path("xdg-config/vt")).unwrap();
            std::fs::write(
                env.path("xdg-config/vt/vtrc"),
                "[scanners]\n\"*.gz\" = \"none\"\n",
            )
            .unwrap();
        }
        let dir = env.path("in");
        std::fs::create_dir(&dir).unwrap();
        let mut sizes = Vec::new();
        for (name, text) in [("v1", &v1), ("v2", &v2)] {
            let gz = rsyncable_gzip(&env, name, text);
            std::fs::rename(&gz, dir.join("src.tar.gz")).unwrap();
            env.ok(&["import", dir.to_str().unwrap(), "gz"]);
            sizes.push(du(&env.store()));
            let back = env.path(&format!("back-{name}"));
            env.ok(&["export", "gz", back.to_str().unwrap()]);
            assert_eq!(
                std::fs::read(back.join("src.tar.gz")).unwrap(),
                std::fs::read(dir.join("src.tar.gz")).unwrap()
            );
        }
        sizes[1] - sizes[0]
    };
    let (scanner, cdc) = (added("scanner"), added("cdc"));
    assert!(
        scanner * 2 <= cdc,
        "the second version added {scanner} bytes with the gz scanner, {cdc} without"
    );
}

/// Imports `files` (as `src/f0`, `src/f1`, …) into the environment's
/// store and returns its largest datafile.
fn datafile_of(env: &Env, files: &[Vec<u8>]) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    for (i, data) in files.iter().enumerate() {
        std::fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    env.ok(&["import", src.to_str().unwrap(), "src"]);
    std::fs::read_dir(env.store().join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "vtd"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a datafile")
}

#[test]
fn bundled_vtd_component_proposes_every_record_start() {
    let env = Env::new();
    let mut rng = Rng(21);
    let files: Vec<Vec<u8>> = (0..40).map(|i| rng.text(20_000 + i * 3000)).collect();
    let datafile = datafile_of(&env, &files);
    let data = std::fs::read(&datafile).unwrap();
    let native = vt_sdk::testing::scan::<vt_plugin_vtd::Vtd>("0.vtd", &data);
    assert!(native.len() >= 3, "{native:?}");
    for &o in &native {
        assert_eq!(&data[o as usize..o as usize + 4], b"vtr1", "at {o}");
    }
    // A copy under another name is recognised by its header.
    let copy = env.path("backup-copy");
    std::fs::copy(&datafile, &copy).unwrap();
    let out = env.ok(&["scan", copy.to_str().unwrap(), "--list"]);
    assert!(
        out.contains("scanner: vtd 1.0.0 (sniffed with confidence 100)"),
        "{out}"
    );
    assert_eq!(
        listed_offsets(&out),
        native,
        "wasm and native offsets differ"
    );
}

/// Runs Debian's ffmpeg (tests/run.sh installs it) quietly; panics naming
/// the command if it fails.
fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg (tests/run.sh installs it: apt-get install ffmpeg)");
    assert!(
        o.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Small real media files made by ffmpeg from its test sources, and the
/// same files re-tagged with `ffmpeg -c copy -metadata`.
fn media_files(env: &Env) -> Vec<(PathBuf, PathBuf)> {
    let (v1, v2) = (env.path("v1"), env.path("v2"));
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    let p = |d: &Path, n: &str| d.join(n).to_str().unwrap().to_string();
    let video = "testsrc=size=320x240:rate=25:duration=8,noise=alls=10:allf=t";
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        video,
        "-f",
        "lavfi",
        "-i",
        "sine=duration=8",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-b:v",
        "800k",
        "-c:a",
        "aac",
        "-movflags",
        "+faststart",
        "-metadata",
        "title=Clip",
        &p(&v1, "clip.mp4"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        video,
        "-f",
        "lavfi",
        "-i",
        "sine=duration=8",
        "-c:v",
        "libvpx",
        "-b:v",
        "800k",
        "-c:a",
        "libopus",
        "-metadata",
        "title=Clip",
        &p(&v1, "clip.mkv"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=d=40:c=pink:a=0.2",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "160k",
        "-id3v2_version",
        "3",
        "-metadata",
        "title=Song",
        &p(&v1, "song.mp3"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=d=10:c=pink:a=0.2",
        "-c:a",
        "flac",
        "-metadata",
        "title=Song",
        &p(&v1, "song.flac"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=d=60:c=pink:a=0.2",
        "-c:a",
        "libopus",
        "-b:a",
        "96k",
        "-metadata",
        "title=Song",
        &p(&v1, "song.opus"),
    ]);
    let mut pairs = Vec::new();
    for n in ["clip.mp4", "clip.mkv", "song.mp3", "song.flac", "song.opus"] {
        let mut args = vec![
            "-i".to_string(),
            p(&v1, n),
            "-map".into(),
            "0".into(),
            "-c".into(),
            "copy".into(),
        ];
        if n.ends_with(".mp4") {
            args.extend(["-movflags".into(), "+faststart".into()]);
        }
        args.extend(["-metadata".into(), "title=A longer title, re-tagged".into()]);
        args.extend(["-metadata".into(), "artist=Another Band".into(), p(&v2, n)]);
        ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
        pairs.push((v1.join(n), v2.join(n)));
    }
    pairs
}

#[test]
fn bundled_media_component_proposes_what_the_native_scanner_does() {
    let env = Env::new();
    for (f, _) in media_files(&env) {
        let data = std::fs::read(&f).unwrap();
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let native = vt_sdk::testing::scan::<vt_plugin_media::Media>(&name, &data);
        assert!(native.len() >= 3, "{name}: {native:?}");
        // By the magic alone, under a name that says nothing.
        let bare = env.path(&format!("bare-{}", name.replace('.', "-")));
        std::fs::copy(&f, &bare).unwrap();
        let out = env.ok(&["scan", bare.to_str().unwrap(), "--list"]);
        assert!(
            out.contains("scanner: media 1.0.0 (sniffed with confidence 95)"),
            "{name}: {out}"
        );
        assert_eq!(
            listed_offsets(&out),
            native,
            "{name}: wasm and native offsets differ"
        );
    }
}

#[test]
fn an_rsync_temporary_name_is_scanned_by_its_inner_extension() {
    let env = Env::new();
    // A raw MPEG audio frame sync says little (sniffed at 50): the name
    // decides, and rsync's temporary name hides it behind a random suffix.
    let f = env.path(".song.mp3.Ab12Cd");
    let mut data = Vec::new();
    for _ in 0..200 {
        data.extend_from_slice(&[0xff, 0xfb, 0x90, 0x00]);
        data.extend(Rng(3).bytes(413));
    }
    std::fs::write(&f, &data).unwrap();
    let out = env.ok(&["scan", f.to_str().unwrap()]);
    assert!(
        out.contains("scanner: media 1.0.0 (extension .mp3)"),
        "{out}"
    );
}

#[test]
fn re_tagged_media_adds_at_most_64_kib_a_file() {
    let env = Env::new();
    let pairs = media_files(&env);
    let dir = env.path("in");
    std::fs::create_dir(&dir).unwrap();
    for (v1, _) in &pairs {
        std::fs::copy(v1, dir.join(v1.file_name().unwrap())).unwrap();
    }
    env.ok(&["import", dir.to_str().unwrap(), "media"]);
    let before = du(&env.store());
    for (_, v2) in &pairs {
        std::fs::copy(v2, dir.join(v2.file_name().unwrap())).unwrap();
    }
    let o = env.run(&["import", dir.to_str().unwrap(), "media"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let added = du(&env.store()) - before;
    eprintln!("{} re-tagged files added {added} bytes", pairs.len());
    assert!(
        added <= 64 * 1024 * pairs.len() as u64,
        "{} re-tagged files added {added} bytes; the import said:\n{}{}",
        pairs.len(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let back = env.path("back");
    env.ok(&["export", "media", back.to_str().unwrap()]);
    for (_, v2) in &pairs {
        let n = v2.file_name().unwrap();
        assert_eq!(
            std::fs::read(back.join(n)).unwrap(),
            std::fs::read(v2).unwrap()
        );
    }
}

#[test]
fn damaged_media_gzip_and_datafiles_import_and_export_exactly() {
    // Real files cut short, with a stretch overwritten by noise, or with
    // their lengths made huge: whatever the scanners make of them, every
    // byte comes back.
    let env = Env::new();
    let pairs = media_files(&env);
    let dir = env.path("damaged");
    std::fs::create_dir(&dir).unwrap();
    let mut rng = Rng(31);
    let gz = rsyncable_gzip(&env, "t.tar", &rng.text(1 << 20));
    let mut originals: Vec<PathBuf> = pairs.iter().map(|(v1, _)| v1.clone()).collect();
    originals.push(gz);
    // A datafile of the environment's own store.
    let files: Vec<Vec<u8>> = (0..20).map(|_| rng.text(30_000)).collect();
    let datafile = datafile_of(&env, &files);
    let copy = env.path("store.vtd");
    std::fs::copy(&datafile, &copy).unwrap();
    originals.push(copy);
    for (i, f) in originals.iter().enumerate() {
        let data = std::fs::read(f).unwrap();
        let name = f.file_name().unwrap().to_str().unwrap();
        std::fs::write(dir.join(format!("cut-{name}")), &data[..data.len() * 2 / 3]).unwrap();
        let mut noisy = data.clone();
        let at = data.len() / 5;
        let n = (data.len() / 10).min(200_000);
        noisy[at..at + n].copy_from_slice(&rng.bytes(n));
        std::fs::write(dir.join(format!("noisy-{name}")), &noisy).unwrap();
        // Every 4-byte big-endian length field near the start set huge.
        let mut huge = data.clone();
        for j in (0..huge.len().min(4096)).step_by(97 + i) {
            huge[j..j + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0xf0]);
        }
        std::fs::write(dir.join(format!("huge-{name}")), &huge).unwrap();
    }
    let out = env.run(&["import", dir.to_str().unwrap(), "damaged"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let back = env.path("back");
    env.ok(&["export", "damaged", back.to_str().unwrap()]);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        assert_eq!(
            std::fs::read(back.join(name)).unwrap(),
            std::fs::read(&p).unwrap(),
            "{name:?} differs after export"
        );
        n += 1;
    }
    assert_eq!(n, 21);
}
