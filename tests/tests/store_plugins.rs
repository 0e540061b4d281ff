//! Store schemes as WebAssembly plugins (issue 21), through the real `vt`
//! binary: the bundled `store-dir` component selected in vtrc by its
//! scheme name, a tree round-tripped through it, its files where the
//! clause's preopen says, and what a user gets wrong or a plugin does
//! wrong reported clearly.

mod common;

use std::path::Path;

use common::server::Server;
use common::*;

fn write_vtrc(env: &Env, body: &str) {
    let d = env.path("xdg-config/vt");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vtrc"), body).unwrap();
}

fn usb_clause(dir: &Path) -> String {
    format!(
        "[stores.usb]\ntype = \"store-dir\"\npreopen = \"{}\"\n",
        dir.display()
    )
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_tree_round_trips_through_the_store_dir_plugin() {
    let env = Env::new();
    let usb = env.path("usb");
    write_vtrc(&env, &usb_clause(&usb));
    let src = env.path("src");
    mixed_tree(&src, 21, 60, 40_000, 4);
    std::fs::write(src.join("large.bin"), Rng(7).bytes(2 << 20)).unwrap();
    env.ok(&["-S", "usb", "import", src.to_str().unwrap(), "snap"]);
    let out = env.path("out");
    env.ok(&["-S", "usb", "export", "snap", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);

    // One file per block, named by its hash, under the preopened
    // directory; the archive beside them.
    let mut blocks = 0;
    for d in std::fs::read_dir(usb.join("blocks")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().into_string().unwrap();
            let (kind, hex) = name.split_once(':').expect("KIND:HEX");
            assert_eq!(kind, "sha3_256");
            let data = std::fs::read(f.path()).unwrap();
            assert_eq!(vt_core::HashKind::Sha3_256.digest(&data).hex(), hex);
            blocks += 1;
        }
    }
    assert!(blocks > 60, "{blocks} block files");
    assert!(usb.join("archives/snap").is_file());
    let stats = env.ok(&["-S", "usb", "stats", "snap"]);
    assert!(
        stats.contains(&format!("blocks:         {blocks}")),
        "{stats}"
    );
}

#[test]
fn a_block_the_plugin_returns_wrong_is_an_error_never_data() {
    let env = Env::new();
    let usb = env.path("usb");
    write_vtrc(&env, &usb_clause(&usb));
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f.bin"), Rng(3).bytes(100_000)).unwrap();
    env.ok(&["-S", "usb", "import", src.to_str().unwrap(), "snap"]);
    // Every block file's bytes replaced: the plugin hands back other bytes
    // under each name.
    for d in std::fs::read_dir(usb.join("blocks")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let n = std::fs::metadata(&p).unwrap().len() as usize;
            std::fs::write(&p, Rng(99).bytes(n)).unwrap();
        }
    }
    let out = env.path("out");
    let o = env.run(&["-S", "usb", "export", "snap", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("store-dir store (plugin"), "{e}");
    assert!(e.contains("do not match the block's hash"), "{e}");
    if let Ok(b) = std::fs::read(out.join("f.bin")) {
        assert!(b != Rng(99).bytes(b.len()), "wrong bytes written");
    }
}

#[test]
fn unknown_schemes_and_settings_are_errors_that_say_what_is_known() {
    let env = Env::new();
    write_vtrc(&env, "[stores.x]\ntype = \"nosuch\"\n");
    let o = env.run(&["-S", "x", "stats"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("unknown store type \"nosuch\""), "{e}");
    assert!(e.contains("datadir") && e.contains("store-dir"), "{e}");
    // Built-in schemes, registered beside their code, and plugin ones.
    let list = env.ok(&["plugin", "list"]);
    for (name, kind) in [
        ("datadir", "native"),
        ("s3", "native"),
        ("store-dir", "wasm"),
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(name) && l.contains(&format!(" {kind}: "))),
            "{name}: {list}"
        );
    }

    let usb = env.path("usb");
    write_vtrc(&env, &format!("{}colour = \"red\"\n", usb_clause(&usb)));
    let o = env.run(&["-S", "usb", "stats"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("store-dir takes only preopen"), "{e}");
    assert!(e.contains("\"colour\""), "{e}");

    write_vtrc(&env, "[stores.usb]\ntype = \"store-dir\"\n");
    let o = env.run(&["-S", "usb", "stats"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("set preopen"), "{e}");
}

/// Builds the hostile store of tests/plugins for wasm32-wasip2, once;
/// returns its component.
fn hostile_store() -> &'static std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        plugin_build::build_test_plugins(&["hostile-store"]).join("hostile_store.wasm")
    })
}

/// A store component that misbehaves: it reaches for files outside its
/// directory (denied), loops (stopped), allocates without bound
/// (stopped), returns other bytes for a hash (detected). Each is a clear
/// error naming the plugin; vt neither hangs nor crashes, and the data
/// the store holds stays intact.
#[test]
fn hostile_store_plugins_are_contained() {
    let env = Env::new();
    let out = env.ok(&["plugin", "install", hostile_store().to_str().unwrap()]);
    assert!(
        out.contains("installed store scheme hostile-store 0.1.0"),
        "{out}"
    );
    let list = env.ok(&["plugin", "list"]);
    assert!(
        list.lines().any(|l| l.starts_with("hostile-store")
            && l.contains("installed")
            && l.contains(" wasm: ")),
        "{list}"
    );
    let info = env.ok(&["plugin", "info", "hostile-store"]);
    assert!(
        info.contains("kind:        store scheme, wasm") && info.contains("source:      installed"),
        "{info}"
    );
    let info = env.ok(&["plugin", "info", "s3"]);
    assert!(
        info.contains("store scheme, native") && info.contains("bucket"),
        "{info}"
    );
    let o = env.run(&["plugin", "info", "nosuch"]);
    assert!(stderr(&o).contains("no scanner or store scheme named \"nosuch\""));
    let dir = env.path("box/store");
    let clause = |mode: &str| {
        format!(
            "[stores.h]\ntype = \"hostile-store\"\npreopen = \"{}\"\nmode = \"{mode}\"\n",
            dir.display()
        )
    };
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f.bin"), Rng(5).bytes(200_000)).unwrap();
    std::fs::write(src.join("g.txt"), b"some text\n").unwrap();
    let s = src.to_str().unwrap();

    // Reaching outside the preopen: denied (the plugin would fail its
    // open with ESCAPED), nothing written beside the directory.
    write_vtrc(&env, &clause("escape"));
    env.ok(&["-S", "h", "import", s, "snap"]);
    assert!(!env.path("box/escaped").exists());
    assert!(!Path::new("/escaped").exists());

    // Unbounded allocation: stopped at the memory limit (the clause's).
    write_vtrc(&env, &format!("{}memory = \"32MiB\"\n", clause("alloc")));
    let t = std::time::Instant::now();
    let o = env.run(&["-S", "h", "import", s, "snap2"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("hostile-store store (plugin"), "{e}");
    assert!(e.contains("memory limit (32 MiB)"), "{e}");

    // A loop: stopped at the deadline (the clause's).
    write_vtrc(&env, &format!("{}timeout = \"2s\"\n", clause("loop")));
    let out = env.path("out-loop");
    let o = env.run(&["-S", "h", "export", "snap", out.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("time limit"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(120));

    // Other bytes for a hash: detected, never written out as the file.
    write_vtrc(&env, &clause("liar"));
    let out = env.path("out-liar");
    let o = env.run(&["-S", "h", "export", "snap", out.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("do not match the block's hash"), "{e}");

    // The store's data is intact.
    write_vtrc(&env, &clause("fine"));
    let out = env.path("out");
    env.ok(&["-S", "h", "export", "snap", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
}

/// `vt plugin new --store myscheme` makes a crate that passes its own
/// test, builds to a component, installs, and, selected in vtrc, keeps a
/// tree that comes back exactly.
#[test]
fn plugin_new_store_builds_passes_its_test_installs_and_round_trips() {
    let env = Env::new();
    let work = env.path("work");
    std::fs::create_dir(&work).unwrap();
    let o = env
        .cmd()
        .current_dir(&work)
        .args(["plugin", "new", "--store", "myscheme"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let krate = work.join("myscheme");
    let wasm = plugin_build::test_and_build_scaffold(&krate, "myscheme");
    let out = env.ok(&["plugin", "install", wasm.to_str().unwrap()]);
    assert!(
        out.contains("installed store scheme myscheme 0.1.0"),
        "{out}"
    );

    let dir = env.path("mine");
    write_vtrc(
        &env,
        &format!(
            "[stores.mine]\ntype = \"myscheme\"\npreopen = \"{}\"\n",
            dir.display()
        ),
    );
    let src = env.path("src");
    mixed_tree(&src, 8, 30, 20_000, 3);
    env.ok(&["-S", "mine", "import", src.to_str().unwrap(), "snap"]);
    let out = env.path("out");
    env.ok(&["-S", "mine", "export", "snap", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    assert!(dir.join("archives/snap").is_file());
}

/// Builds plugins/store-native (the example native scheme) as a shared
/// library into its own target directory, with `features`; returns it.
fn native_library(features: &str, dir: &str) -> std::path::PathBuf {
    let repo = plugin_build::repo();
    let target = repo.join("target/test-plugins").join(dir);
    let mut c = plugin_build::cargo();
    c.args(["build", "-p", "vt-plugin-store-native", "--manifest-path"])
        .arg(repo.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if !features.is_empty() {
        c.args(["--features", features]);
    }
    let st = c.status().expect("run cargo");
    assert!(st.success(), "building plugins/store-native failed");
    target.join("debug/libvt_plugin_store_native.so")
}

/// The native example, loaded through libloading with its clause's
/// consent, round-trips a tree; without the consent, under another
/// scheme's name, or built for another ABI version, it is refused with a
/// message saying why.
#[test]
fn the_native_example_round_trips_and_a_wrong_abi_is_refused() {
    let env = Env::new();
    let lib = native_library("", "native");
    let dir = env.path("nat");
    let clause = |ty: &str, lib: &Path, trust: bool| {
        format!(
            "[stores.n]\ntype = \"{ty}\"\nlibrary = \"{}\"\npreopen = \"{}\"\n{}",
            lib.display(),
            dir.display(),
            if trust { "trust = \"native\"\n" } else { "" }
        )
    };
    let src = env.path("src");
    mixed_tree(&src, 33, 40, 30_000, 3);
    let s = src.to_str().unwrap();

    write_vtrc(&env, &clause("store-native", &lib, false));
    let o = env.run(&["-S", "n", "import", s, "snap"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("trust = \"native\""), "{e}");
    assert!(!dir.join("blocks").exists(), "nothing loaded");

    write_vtrc(&env, &clause("other-name", &lib, true));
    let e = stderr(&env.run(&["-S", "n", "import", s, "snap"]));
    assert!(
        e.contains("provides the store scheme \"store-native\", not \"other-name\""),
        "{e}"
    );

    write_vtrc(&env, &clause("store-native", &lib, true));
    env.ok(&["-S", "n", "import", s, "snap"]);
    let out = env.path("out");
    env.ok(&["-S", "n", "export", "snap", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    assert!(dir.join("archives/snap").is_file());
    assert!(std::fs::read_dir(dir.join("blocks")).unwrap().count() > 40);

    let wrong = native_library("wrong-abi", "native-wrong-abi");
    write_vtrc(&env, &clause("store-native", &wrong, true));
    let o = env.run(&["-S", "n", "stats", "snap"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("implements vt store ABI version 2, but this vt loads version 1"),
        "{e}"
    );
}

/// The bundled `store-http` component keeps a tree on a real `vt httpd`
/// through wasi:http, and reaches no host its clause does not allow.
#[test]
fn the_store_http_plugin_reaches_only_the_hosts_its_clause_allows() {
    let env = Env::new();
    let token = env.path("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let server_store = env.path("server");
    env.ok(&["-S", server_store.to_str().unwrap(), "init"]);
    let server = Server::httpd(
        &env,
        &server_store,
        &["--token-file", token.to_str().unwrap()],
    );
    let url = server.spec.trim_end_matches('/').to_owned();
    let authority = url.strip_prefix("http://").expect("an http URL").to_owned();
    // A listener the plugin is pointed at but not allowed to reach.
    let bystander = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bystander.set_nonblocking(true).unwrap();
    let bystander_at = bystander.local_addr().unwrap();
    let clause = |name: &str, url: &str, token: &str, allow: &str| {
        format!(
            "[stores.{name}]\ntype = \"store-http\"\nurl = \"{url}\"\ntoken = \"{token}\"\nallow_hosts = [{allow}]\n\n"
        )
    };
    write_vtrc(
        &env,
        &[
            clause("far", &url, "s3cret", &format!("\"{authority}\"")),
            clause("ungranted", &url, "s3cret", ""),
            clause(
                "elsewhere",
                &format!("http://{bystander_at}"),
                "s3cret",
                &format!("\"{authority}\""),
            ),
            clause("badtoken", &url, "guess", &format!("\"{authority}\"")),
        ]
        .concat(),
    );

    let src = env.path("src");
    mixed_tree(&src, 22, 40, 30_000, 3);
    std::fs::write(src.join("large.bin"), Rng(8).bytes(1 << 20)).unwrap();
    env.ok(&["-S", "far", "import", src.to_str().unwrap(), "snap"]);
    let out = env.path("out");
    env.ok(&["-S", "far", "export", "snap", out.to_str().unwrap()]);
    assert_same_tree(&src, &out);
    // The blocks and the snapshot are on the server's store.
    assert!(server_store.join("archives/snap.vt").is_file());
    let direct = env.path("direct");
    env.ok(&[
        "-S",
        server_store.to_str().unwrap(),
        "export",
        "snap",
        direct.to_str().unwrap(),
    ]);
    assert_same_tree(&src, &direct);

    // No grant, or a host not granted: refused before a connection, and
    // the error names the host and the setting.
    for (store, host) in [
        ("ungranted", authority.clone()),
        ("elsewhere", bystander_at.to_string()),
    ] {
        let o = env.run(&["-S", store, "import", src.to_str().unwrap(), "snap2"]);
        assert!(!o.status.success(), "{store}");
        let e = stderr(&o);
        assert!(
            e.contains("allow_hosts") && e.contains(&host),
            "{store}: {e}"
        );
    }
    assert!(
        matches!(bystander.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the plugin connected to a host it was not granted"
    );
    // A wrong token: the server's refusal, said as a configuration error.
    let o = env.run(&["-S", "badtoken", "import", out.to_str().unwrap(), "snap3"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("token"), "{}", stderr(&o));
    server.stop();
    assert!(!server_store.join("archives/snap2.vt").exists());
    assert!(!server_store.join("archives/snap3.vt").exists());
    let f = env.ok(&["-S", server_store.to_str().unwrap(), "fsck"]);
    assert!(f.contains(" 0 problems"), "{f}");
}
