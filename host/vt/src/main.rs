//! `vt`: the command-line interface (see vt.1).

mod config;
mod copy;
mod export;
mod fsck;
mod httpd;
mod import;
mod meta;
mod mount;
mod open;
mod plugins;
mod progress;
mod scaffold;
mod serve;
mod signals;
mod snapshot;
mod vtrc;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgAction, Parser, Subcommand};
use vt_core::archive::{self, Archive};
use vt_core::blockify::{AddStats, Blockifier};
use vt_core::dir::read_dir;
use vt_core::{ChunkParams, Dirent, DirentKind, Store};

use crate::config::{default_config_path, Config, DEFAULT_VTRC};
use crate::open::OpenStore;
use crate::progress::{human, Progress};
use crate::snapshot::{lookup, resolve, Special};

/// vt: a content-addressed, deduplicating store for file trees.
#[derive(Parser)]
#[command(name = "vt", version, about, long_about = None)]
struct Cli {
    /// Store to use: a [stores.NAME] of the configuration or a store spec
    /// (a DataDir path, unix:PATH, tcp:HOST:PORT, '!COMMAND', TYPE(k=v,...),
    /// a comma list); see vtrc(5).
    #[arg(short = 'S', long = "store", env = "VT_STORE", global = true)]
    store: Option<String>,
    /// Configuration file [default: $XDG_CONFIG_HOME/vt/vtrc].
    #[arg(short = 'f', long = "config", env = "VT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print only errors and warnings.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (repeat for more).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a commented default configuration and create the default store.
    Init,
    /// Store a file tree and record a snapshot of it in an archive.
    Import {
        /// The directory (or file) to store.
        path: PathBuf,
        /// Archive to record the snapshot in: a path, or [STORE]NAME
        /// [default: the store's archive named after PATH's last component].
        archive: Option<String>,
    },
    /// Write a snapshot out as files.
    Export {
        /// An archive (its newest snapshot), [STORE]NAME, or a Dirent text.
        special: String,
        /// Where to write it; must not exist, or be an empty directory.
        dest: PathBuf,
    },
    /// Store PATH as the one entry of a directory and print its x-vt: URI
    /// (and its http URL when [httpd] url is set).
    Publish {
        /// The file or directory to publish.
        path: PathBuf,
    },
    /// Import PATH and record the snapshot in PATH.vt beside it.
    Pack {
        /// The directory to pack.
        path: PathBuf,
    },
    /// Export the newest snapshot in PATH.vt to PATH.
    Unpack {
        /// The archive file, ending in .vt.
        archive: PathBuf,
    },
    /// List a directory of a snapshot.
    Ls {
        /// An archive, [STORE]NAME, or a Dirent text.
        special: String,
        /// Path inside the snapshot.
        #[arg(default_value = "")]
        path: String,
    },
    /// Write a file of a snapshot to standard output.
    Cat {
        /// An archive, [STORE]NAME, or a Dirent text.
        special: String,
        /// Path of the file inside the snapshot.
        #[arg(default_value = "")]
        path: String,
    },
    /// List the snapshots in an archive, oldest first.
    Log {
        /// An archive path or [STORE]NAME.
        archive: String,
    },
    /// Show what the store holds (and, given a snapshot, its dedup ratio).
    Stats {
        /// An archive or Dirent whose newest snapshot to measure.
        special: Option<String>,
    },
    /// Mount a snapshot as a read-write filesystem (FUSE); see vt.1.
    Mount(mount::MountArgs),
    /// Unmount a `vt mount`, waiting until its snapshot is recorded.
    Umount {
        /// The mountpoint.
        mountpoint: PathBuf,
    },
    /// Check every block and index entry of the store, and its archives.
    Fsck {
        /// Rebuild the index from the datafiles first.
        #[arg(long)]
        reindex: bool,
        /// Rewrite archives with damaged lines without them (keeping each
        /// original beside it as NAME.vt.damaged-SECONDS).
        #[arg(long)]
        repair: bool,
        /// Archive files to check as well (such as `vt pack` writes).
        archives: Vec<PathBuf>,
    },
    /// Remove snapshots from an archive (rewrites it).
    Forget {
        /// An archive path or [STORE]NAME.
        archive: String,
        /// The snapshots to remove, numbered as `vt log` numbers them.
        #[arg(required = true)]
        numbers: Vec<usize>,
    },
    /// Serve stores to other vt processes (see vt-stream(5)).
    Serve(serve::ServeArgs),
    /// Serve the store's blocks, trees and archives over HTTP (see
    /// vt-http(5)).
    Httpd(httpd::HttpdArgs),
    /// Copy snapshots (their blocks, then their archive lines) from the
    /// current store to STORE, sending only what STORE lacks.
    Push {
        /// The store to copy to.
        #[arg(value_name = "STORE")]
        to: String,
        /// Archive names (or Dirent texts) [default: every archive].
        snapshots: Vec<String>,
        /// Copy the directory trees only, no file contents (no archive
        /// line is written: the snapshot is not all there).
        #[arg(long)]
        dirs_only: bool,
    },
    /// Copy snapshots from STORE into the current store.
    Pull {
        /// The store to copy from.
        #[arg(value_name = "STORE")]
        from: String,
        /// Archive names (or Dirent texts) [default: every archive].
        snapshots: Vec<String>,
        /// Copy the directory trees only, no file contents.
        #[arg(long)]
        dirs_only: bool,
    },
    /// Print the effective configuration (built-in defaults plus vtrc), or
    /// what one store spec resolves to.
    Config {
        /// A store name or spec to explain.
        spec: Option<String>,
    },
    /// Manage scanner plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Show how a file would be chunked: the scanner's proposed offsets,
    /// the resulting blocks and a histogram of block sizes.
    Scan {
        /// The file to scan.
        file: PathBuf,
        /// Use this scanner ("none" for plain CDC) instead of choosing one.
        #[arg(long)]
        scanner: Option<String>,
        /// Also list every offset and block.
        #[arg(long)]
        list: bool,
    },
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Validate, precompile and install a scanner component (.wasm).
    Install {
        /// The component file.
        path: PathBuf,
    },
    /// List every scanner: built in, bundled and installed.
    List,
    /// Show what a scanner declares and where it comes from.
    Info {
        /// The scanner's name.
        name: String,
    },
    /// Remove an installed plugin.
    Remove {
        /// The plugin's name.
        name: String,
    },
    /// Create a scanner plugin crate NAME/ that builds and passes its test.
    /// (`vt plugin new --store NAME`: a store scheme instead; `--store`
    /// is then the scheme's name, not a store to open.)
    New {
        /// The plugin's name: lower-case letters, digits and dashes.
        name: Option<String>,
        /// The vt SDK to depend on [default: $VT_SDK, else this vt's checkout].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`vt scan FILE | head`), as Unix tools do.
    // The threads that write to servers and clients block SIGPIPE (see
    // vt_stores::stream), so a lost connection is an error there, handled.
    // SAFETY: restoring the default disposition of a signal at startup,
    // before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) | (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VT_LOG").unwrap_or_else(|_| {
                // fuser warns about unmounting an already unmounted
                // filesystem at every `vt umount`: keep only its errors.
                tracing_subscriber::EnvFilter::new(format!("{level},fuser=error"))
            }),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    let verbose = cli.verbose > 0 && !cli.quiet;
    let r = run(cli);
    if verbose {
        for line in open::request_summaries() {
            tracing::info!("{line}");
        }
    }
    match r {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => quiet_exit(),
        Err(e) => {
            eprintln!("vt: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` comes from writing to a closed pipe. Connections to servers
/// never get here (their losses are handled where they happen, and say
/// "connection lost"), so it is standard output's reader that went away.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(
                c.downcast_ref::<vt_core::Error>(),
                Some(vt_core::Error::Io { cause, .. })
                    if cause.kind() == std::io::ErrorKind::BrokenPipe
            )
    })
}

/// Ends vt as a closed pipe would have, without a message (exit status
/// 141, 128 + SIGPIPE, as shells report it).
fn quiet_exit() -> ExitCode {
    ExitCode::from(141)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let cfg_path = cli.config.clone().unwrap_or_else(default_config_path);
    let cfg = Config::load(&cfg_path)?;
    let store_spec = cli.store.as_deref();
    let quiet = cli.quiet;
    match cli.cmd {
        Cmd::Init => {
            if cfg_path.exists() {
                println!("configuration {} already exists", cfg_path.display());
            } else {
                if let Some(d) = cfg_path.parent() {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("create {}", d.display()))?;
                }
                std::fs::write(&cfg_path, DEFAULT_VTRC)
                    .with_context(|| format!("write {}", cfg_path.display()))?;
                println!("wrote configuration {}", cfg_path.display());
            }
            let cfg = Config::load(&cfg_path)?;
            let st = cfg.open_store(store_spec, true)?;
            match &st.datadir {
                Some(dd) => println!("store {} is ready at {}", st.name, dd.root().display()),
                None => println!("store {} is ready", st.name),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Import { path, archive } => {
            let archive = match archive {
                Some(a) => a,
                None => {
                    let abs = std::fs::canonicalize(&path)
                        .with_context(|| format!("cannot import {}", path.display()))?;
                    abs.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "root".into())
                }
            };
            let (special, st) = resolve(&archive, &cfg, store_spec, true)?;
            let Special::Archive(archive) = special else {
                bail!("{archive:?} is a Dirent, not an archive");
            };
            import(&cfg, &st, &path, &archive, quiet)
        }
        Cmd::Publish { path } => {
            let st = cfg.open_store(store_spec, true)?;
            publish(&cfg, &st, &path, quiet)
        }
        Cmd::Pack { path } => {
            let st = cfg.open_store(store_spec, true)?;
            let archive = Archive::new(with_suffix(&path, ".vt")?);
            import(&cfg, &st, &path, &archive, quiet)
        }
        Cmd::Export { special, dest } => {
            let (special, st) = resolve(&special, &cfg, store_spec, false)?;
            let top = special.top()?;
            export(&st, &top, &dest, quiet)
        }
        Cmd::Unpack { archive } => {
            let s = archive.to_string_lossy();
            let dest = PathBuf::from(
                s.strip_suffix(".vt")
                    .ok_or_else(|| anyhow!("{s}: an archive to unpack must end in .vt"))?,
            );
            let st = cfg.open_store(store_spec, false)?;
            let top = Special::Archive(Archive::new(&archive)).top()?;
            export(&st, &top, &dest, quiet)
        }
        Cmd::Ls { special, path } => {
            let (special, st) = resolve(&special, &cfg, store_spec, false)?;
            let top = special.top()?;
            let d = lookup(&*st.store, &top, &path)?;
            let mut out = std::io::stdout().lock();
            match &d.kind {
                DirentKind::Dir { block, .. } => {
                    let mut entries = read_dir(&*st.store, block)?;
                    entries.sort_by(|a, b| a.name.cmp(&b.name));
                    for e in entries {
                        let e = if matches!(e.kind, DirentKind::HardLink { .. }) {
                            let p = format!("{path}/{}", e.name_lossy());
                            lookup(&*st.store, &top, &p)?
                        } else {
                            e
                        };
                        writeln!(out, "{}", ls_line(&e))?;
                    }
                }
                _ => writeln!(out, "{}", ls_line(&d))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cat { special, path } => {
            let (special, st) = resolve(&special, &cfg, store_spec, false)?;
            let top = special.top()?;
            let d = lookup(&*st.store, &top, &path)?;
            let DirentKind::File { block } = &d.kind else {
                bail!("{path:?} is not a file in the snapshot");
            };
            let mut out = std::io::stdout().lock();
            vt_core::read::write_all(&*st.store, block, &mut out)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Log { archive } => {
            let (special, _st) = resolve(&archive, &cfg, store_spec, false)?;
            let Special::Archive(a) = special else {
                bail!("{archive:?} is a Dirent, not an archive");
            };
            let lines = a.lines()?;
            if lines.is_empty() && !a.exists()? {
                bail!("no archive {}", a.describe());
            }
            // Snapshots are numbered as `vt forget` takes them; a damaged
            // line is marked where it is, and warned about.
            let mut n = 0;
            for l in &lines {
                match l {
                    archive::Line::Entry(e) => {
                        n += 1;
                        println!("{n}\t{}\t{}", e.when(), e.dirent.to_text());
                    }
                    archive::Line::Bad(b) => {
                        println!("#\tline {} damaged, skipped: {}", b.line, b.why);
                        tracing::warn!("{}", archive::bad_line_message(&a.describe(), b));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stats { special } => {
            let (special, st) = match special {
                Some(sp) => {
                    let (s, st) = resolve(&sp, &cfg, store_spec, false)?;
                    (Some(s), st)
                }
                None => (None, cfg.open_store(store_spec, false)?),
            };
            let s = st.store.stats()?;
            println!("store:          {}", st.name);
            println!("blocks:         {}", s.blocks);
            println!(
                "data:           {} ({} bytes)",
                human(s.raw_bytes),
                s.raw_bytes
            );
            println!(
                "stored:         {} ({} bytes)",
                human(s.stored_bytes),
                s.stored_bytes
            );
            if s.stored_bytes > 0 {
                println!(
                    "compression:    {:.2}x",
                    s.raw_bytes as f64 / s.stored_bytes as f64
                );
            }
            if s.index_bytes > 0 {
                println!(
                    "index:          {} ({} bytes, {:.1} a block)",
                    human(s.index_bytes),
                    s.index_bytes,
                    s.index_bytes as f64 / s.blocks.max(1) as f64
                );
            }
            if s.hint_bytes > 0 {
                println!(
                    "hints:          {} ({} bytes of similarity hints)",
                    human(s.hint_bytes),
                    s.hint_bytes
                );
            }
            if s.delta_blocks > 0 {
                println!(
                    "deltas:         {} blocks, {} ({} bytes) stored in {} ({} bytes)",
                    s.delta_blocks,
                    human(s.delta_raw_bytes),
                    s.delta_raw_bytes,
                    human(s.delta_stored_bytes),
                    s.delta_stored_bytes
                );
            }
            if let Some(sp) = special {
                let top = sp.top()?;
                let (files, bytes) = tree_size(&*st.store, &top)?;
                println!(
                    "snapshot:       {files} files, {} ({bytes} bytes)",
                    human(bytes)
                );
                if s.stored_bytes > 0 {
                    println!(
                        "snapshot/store: {:.2}x (snapshot bytes per stored byte)",
                        bytes as f64 / s.stored_bytes as f64
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Mount(a) => mount::mount(a, &cfg, store_spec, quiet),
        Cmd::Serve(a) => serve::serve(a, &cfg, store_spec, quiet),
        Cmd::Httpd(a) => httpd::httpd(a, &cfg, store_spec, quiet),
        Cmd::Push {
            to,
            snapshots,
            dirs_only,
        } => copy_between(&cfg, store_spec, Some(&to), &snapshots, dirs_only, quiet),
        Cmd::Pull {
            from,
            snapshots,
            dirs_only,
        } => copy_between(&cfg, Some(&from), store_spec, &snapshots, dirs_only, quiet),
        Cmd::Config { spec } => {
            match spec {
                None => print!("{}", cfg.effective(&cfg_path)),
                Some(s) => print!("{}", cfg.describe(&s)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Forget { archive, numbers } => {
            let (special, _st) = resolve(&archive, &cfg, store_spec, false)?;
            let Special::Archive(a) = special else {
                bail!("{archive:?} is a Dirent, not an archive");
            };
            let entries = a.entries()?;
            for &n in &numbers {
                if n == 0 || n > entries.len() {
                    bail!(
                        "{} has snapshots 1 to {}; there is no {n}; nothing was removed",
                        a.describe(),
                        entries.len()
                    );
                }
            }
            let keep: Vec<_> = entries
                .iter()
                .enumerate()
                .filter(|(i, _)| !numbers.contains(&(i + 1)))
                .map(|(_, e)| e.clone())
                .collect();
            a.replace(&keep)?;
            if !quiet {
                println!(
                    "{}: removed {} snapshots, {} left",
                    a.describe(),
                    entries.len() - keep.len(),
                    keep.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Umount { mountpoint } => mount::umount(&mountpoint),
        Cmd::Fsck {
            reindex,
            repair,
            archives,
        } => {
            let st = cfg.open_store(store_spec, false)?;
            let mut files: Vec<PathBuf> = Vec::new();
            let mut problems = 0usize;
            let mut bad_blocks = Vec::new();
            // Archives kept in the store itself (not as files).
            let mut in_store: Vec<Archive> = Vec::new();
            match (&st.datadir, &st.s3) {
                (Some(dd), _) => {
                    if reindex {
                        dd.reindex().context("reindex")?;
                        if !quiet {
                            println!("index rebuilt from the datafiles");
                        }
                    }
                    let rep = dd.fsck()?;
                    for p in &rep.problems {
                        println!("{p}");
                    }
                    println!(
                        "{} datafiles, {} records, {} problems",
                        rep.datafiles,
                        rep.records,
                        rep.problems.len()
                    );
                    problems += rep.problems.len();
                    bad_blocks = rep.bad_blocks;
                    let dir = dd.archives();
                    for name in dir.names()? {
                        files.push(dir.path(&name)?);
                    }
                }
                (None, Some(s3)) => {
                    if reindex {
                        bail!("--reindex is for a DataDir; an S3 store's index is rebuilt by removing its index cache directory");
                    }
                    let rep = s3.fsck()?;
                    for n in &rep.notes {
                        println!("note: {n}");
                    }
                    for p in &rep.problems {
                        println!("{p}");
                    }
                    println!(
                        "{}: {} objects, {} blocks checked, {} problems",
                        s3.name(),
                        rep.objects_checked,
                        rep.blocks_checked,
                        rep.problems.len()
                    );
                    problems += rep.problems.len();
                    bad_blocks = rep.bad_blocks;
                    for name in st.store.archive_names()? {
                        in_store.push(Archive::in_store(st.store.clone(), &name, &st.name)?);
                    }
                }
                (None, None) => println!(
                    "store {} is neither a DataDir nor an S3 store: nothing to check here (a store served by `vt serve` or `vt httpd` is checked where its store is: `vt -S DIR fsck` on the server)",
                    st.name
                ),
            }
            files.extend(archives);
            problems += fsck_archives(&files, repair)?;
            if !in_store.is_empty() {
                let mut damaged = 0;
                for a in &in_store {
                    for l in a.lines()? {
                        if let archive::Line::Bad(b) = l {
                            println!("{}", archive::bad_line_message(&a.describe(), &b));
                            damaged += 1;
                        }
                    }
                }
                println!(
                    "{} archives in the store checked, {damaged} damaged lines",
                    in_store.len()
                );
                problems += damaged;
            }
            in_store.extend(files.iter().map(Archive::new));
            problems += lost_snapshots(&*st.store, &in_store, bad_blocks)?;
            Ok(if problems == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Plugin(pc) => {
            match pc {
                PluginCmd::Install { path } => plugins::install(&cfg, &path)?,
                PluginCmd::List => plugins::list(&cfg)?,
                PluginCmd::Info { name } => plugins::info(&cfg, &name)?,
                PluginCmd::Remove { name } => plugins::remove(&cfg, &name)?,
                PluginCmd::New { name, sdk } => {
                    let (dir, name) = match (name, store_spec) {
                        (Some(n), _) => (
                            scaffold::new_plugin(Path::new("."), &n, sdk.as_deref())?,
                            n,
                        ),
                        (None, Some(n)) => (
                            scaffold::new_store_plugin(Path::new("."), n, sdk.as_deref())?,
                            n.to_owned(),
                        ),
                        (None, None) => anyhow::bail!(
                            "give the plugin's name: vt plugin new NAME (a scanner), or vt plugin new --store NAME (a store scheme)"
                        ),
                    };
                    println!("created {}; next:", dir.display());
                    println!("  cd {} && cargo test", dir.display());
                    println!("  cargo build --release --target wasm32-wasip2");
                    println!(
                        "  vt plugin install target/wasm32-wasip2/release/{}.wasm",
                        name.replace('-', "_")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Scan {
            file,
            scanner,
            list,
        } => {
            plugins::scan(&cfg, &file, scanner.as_deref(), list)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `vt push` and `vt pull`: copies snapshots from store `from` to store
/// `to` (`None`: the default store), creating `to` if need be.
fn copy_between(
    cfg: &Config,
    from: Option<&str>,
    to: Option<&str>,
    snapshots: &[String],
    dirs_only: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let src = cfg.open_store(from, false)?;
    let dst = cfg.open_store(to, true)?;
    copy::copy(
        &src,
        &dst,
        snapshots,
        &copy::CopyOptions { dirs_only, quiet },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn with_suffix(path: &Path, suffix: &str) -> Result<PathBuf> {
    let abs = std::path::absolute(path).with_context(|| format!("resolve {}", path.display()))?;
    let name = abs
        .file_name()
        .ok_or_else(|| anyhow!("{} has no name to put an archive beside", path.display()))?;
    let mut n = name.to_os_string();
    n.push(suffix);
    Ok(abs.with_file_name(n))
}

/// A tree imported into a store: its Dirent and what the import did.
struct Imported {
    top: Dirent,
    progress: Arc<Progress>,
    stats: AddStats,
    over_before: (u64, u64),
    files: u64,
    reused: u64,
    unreadable: u64,
}

/// Imports `path` into `st` (reusing what `prev` has) and makes its blocks
/// durable; nothing records it yet.
fn import_tree(
    cfg: &Config,
    st: &OpenStore,
    path: &Path,
    prev: Option<&Dirent>,
    quiet: bool,
) -> Result<Imported> {
    let progress = Arc::new(Progress::new("import", quiet));
    progress.total_from_tree(path);
    if let Some(p) = &st.progress {
        progress.watch_store("import", p.clone());
    }
    let stats = AddStats::default();
    let over_before = st.store.overcounted();
    let bf = Blockifier::new(&*st.store, ChunkParams::default(), &stats);
    let warn_progress = progress.clone();
    let scanners =
        plugins::LazyRegistry::new(cfg, Arc::new(move |m: String| warn_progress.warn(&m)));
    let mut importer = import::Importer::new(bf, prev, &progress, &scanners);
    if let Some(dd) = &st.datadir {
        importer.exclude(dd.root());
    }
    let top = importer.import_top(path, prev).with_context(|| {
        format!(
            "import of {} failed; no snapshot was recorded",
            path.display()
        )
    })?;
    st.store
        .sync()
        .context("cannot make the new blocks durable; no snapshot was recorded")?;
    let (files, reused, unreadable) = (
        importer.files.load(Relaxed),
        importer.reused.load(Relaxed),
        importer.unreadable.load(Relaxed),
    );
    drop(importer);
    Ok(Imported {
        top,
        progress,
        stats,
        over_before,
        files,
        reused,
        unreadable,
    })
}

impl Imported {
    /// Prints what was read and stored.
    fn report(&self, st: &OpenStore, path: &Path, secs: f64) {
        let bytes = self.progress.bytes();
        let blocks = self.stats.blocks.load(Relaxed);
        // A remote store calls blocks new before it knows; it says after
        // the sync how many were not.
        let over = st.store.overcounted();
        let new_blocks = self
            .stats
            .new_blocks
            .load(Relaxed)
            .saturating_sub(over.0 - self.over_before.0);
        let new_bytes = self
            .stats
            .new_bytes
            .load(Relaxed)
            .saturating_sub(over.1 - self.over_before.1);
        let read = self.stats.bytes.load(Relaxed);
        println!(
            "imported {}: {} files read, {} unchanged; {} in all, {} read in {secs:.1}s ({}/s)",
            path.display(),
            self.files,
            self.reused,
            human(bytes),
            human(read),
            human((read as f64 / secs.max(1e-6)) as u64),
        );
        println!(
            "blocks: {new_blocks} new ({}), {} already stored",
            human(new_bytes),
            blocks - new_blocks
        );
    }

    /// Exit status 3 when files could not be read.
    fn status(&self) -> ExitCode {
        if self.unreadable > 0 {
            eprintln!(
                "vt: {} files could not be read; the snapshot lacks them",
                self.unreadable
            );
            return ExitCode::from(3);
        }
        ExitCode::SUCCESS
    }
}

fn import(
    cfg: &Config,
    st: &OpenStore,
    path: &Path,
    archive: &Archive,
    quiet: bool,
) -> Result<ExitCode> {
    let start = Instant::now();
    let prev = match archive.last() {
        Ok(p) => p.map(|e| e.dirent),
        Err(e) => bail!("cannot read archive {}: {e}", archive.describe()),
    };
    let imp = import_tree(cfg, st, path, prev.as_ref(), quiet)?;
    archive.append(&imp.top)?;
    imp.progress.finish();
    if !quiet {
        imp.report(st, path, start.elapsed().as_secs_f64());
        println!("snapshot recorded in {}", archive.describe());
    }
    Ok(imp.status())
}

/// `vt publish`: stores `path` as the one entry of a directory and prints
/// the `x-vt:` URI of that entry (and its URL on the configured httpd).
fn publish(cfg: &Config, st: &OpenStore, path: &Path, quiet: bool) -> Result<ExitCode> {
    let start = Instant::now();
    let abs = std::fs::canonicalize(path)
        .with_context(|| format!("cannot publish {}", path.display()))?;
    let mut imp = import_tree(cfg, st, &abs, None, quiet)?;
    imp.progress.finish();
    if imp.top.name.is_empty() || imp.top.name == b"." {
        imp.top.name = b"root".to_vec();
    }
    let name = imp.top.name.clone();
    let stats = AddStats::default();
    let bf = Blockifier::new(&*st.store, ChunkParams::default(), &stats);
    let mut dir = vt_core::dir::encode_dir(&bf, vec![imp.top.clone()])?;
    // A URI names its directory by hash: a directory small enough to be
    // inlined is stored as a block of its own.
    if let vt_core::BlockRef::Literal(data) = &dir {
        let (hash, _) = st.store.add_as(data, vt_core::BlockClass::Meta)?;
        dir = vt_core::BlockRef::Direct {
            hash,
            span: data.len() as u64,
        };
    }
    st.store
        .sync()
        .context("cannot make the new blocks durable; nothing was published")?;
    if !quiet {
        imp.report(st, path, start.elapsed().as_secs_f64());
    }
    let url = cfg
        .httpd
        .url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned());
    let authority = url
        .as_deref()
        .map(|u| u.split_once("://").map_or(u, |(_, rest)| rest).to_owned());
    let uri = vt_core::uri::VtUri {
        authority,
        dir: vt_core::uri::UrlRef::of(&dir),
        path: vec![name],
    };
    println!("{uri}");
    if let Some(u) = url {
        let slash = if imp.top.is_dir() { "/" } else { "" };
        println!("{u}/d/{}/{}{slash}", uri.dir.to_segment(), uri.path_text());
    }
    Ok(imp.status())
}

fn export(st: &OpenStore, top: &Dirent, dest: &Path, quiet: bool) -> Result<ExitCode> {
    let start = Instant::now();
    let progress = Arc::new(Progress::new("export", quiet));
    if let Some(p) = &st.progress {
        progress.watch_store("export", p.clone());
    }
    let ex = export::Exporter::new(&*st.store, &progress)?;
    ex.export(top, dest)?;
    progress.finish();
    if !quiet {
        let secs = start.elapsed().as_secs_f64();
        println!(
            "exported {} to {} in {secs:.1}s",
            human(progress.bytes()),
            dest.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ls_line(d: &Dirent) -> String {
    let (t, size, extra) = match &d.kind {
        DirentKind::File { block } => ('-', block.span(), String::new()),
        DirentKind::Dir { .. } => ('d', 0, String::new()),
        DirentKind::Symlink { target } => (
            'l',
            target.len() as u64,
            format!(" -> {}", String::from_utf8_lossy(target)),
        ),
        DirentKind::HardLink { uuid } => ('h', 0, format!(" => {uuid}")),
        DirentKind::Special { kind, .. } => (
            match kind {
                vt_core::dirent::SpecialKind::Fifo => 'p',
                vt_core::dirent::SpecialKind::Socket => 's',
                vt_core::dirent::SpecialKind::CharDevice => 'c',
                vt_core::dirent::SpecialKind::BlockDevice => 'b',
            },
            0,
            String::new(),
        ),
    };
    let m = &d.meta;
    let mut perms = String::new();
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        perms.push(if m.mode & (0o400 >> i) != 0 { c } else { '-' });
    }
    let user = m.user.clone().unwrap_or_else(|| m.uid.to_string());
    let group = m.group.clone().unwrap_or_else(|| m.gid.to_string());
    format!(
        "{t}{perms} {user:>8} {group:>8} {size:>12} {} {}{extra}",
        &vt_core::timefmt::iso8601(m.mtime.secs, 0)[..19],
        d.name_lossy()
    )
}

/// Files and bytes of a snapshot (hard-linked files counted once).
fn tree_size(store: &dyn Store, top: &Dirent) -> Result<(u64, u64)> {
    fn walk(store: &dyn Store, d: &Dirent, acc: &mut (u64, u64)) -> Result<()> {
        match &d.kind {
            DirentKind::File { block } => {
                acc.0 += 1;
                acc.1 += block.span();
            }
            DirentKind::Dir { block, hardlinks } => {
                for e in read_dir(store, block)? {
                    walk(store, &e, acc)?;
                }
                if let Some(h) = hardlinks {
                    for e in read_dir(store, h)? {
                        walk(store, &e, acc)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut acc = (0, 0);
    walk(store, top, &mut acc)?;
    Ok(acc)
}

/// Checks the archive files `files` for damaged lines, printing each;
/// with `repair`, rewrites each damaged archive without them (see
/// [`archive::repair_file`]). Returns the damaged lines left unrepaired.
fn fsck_archives(files: &[PathBuf], repair: bool) -> Result<usize> {
    let mut left = 0;
    for path in files {
        let bad: Vec<archive::BadLine> = archive::Archive::new(path)
            .lines()
            .with_context(|| format!("read archive {}", path.display()))?
            .into_iter()
            .filter_map(|l| match l {
                archive::Line::Bad(b) => Some(b),
                archive::Line::Entry(_) => None,
            })
            .collect();
        for b in &bad {
            println!(
                "archive {}: line {} is damaged: {}",
                path.display(),
                b.line,
                b.why
            );
        }
        if bad.is_empty() {
            continue;
        }
        if !repair {
            left += bad.len();
            continue;
        }
        let (fixed, copy) = archive::repair_file(path)
            .with_context(|| format!("repair archive {}", path.display()))?;
        if let Some(copy) = copy {
            println!(
                "archive {}: rewritten without {} damaged line(s); the original is kept as {}",
                path.display(),
                fixed.len(),
                copy.display()
            );
        }
    }
    println!(
        "{} archives checked, {left} damaged lines{}",
        files.len(),
        if repair { " left" } else { "" }
    );
    Ok(left)
}

/// Walks every snapshot of the archive files `files` and prints those
/// that refer to blocks in `bad` or missing from `store`, with what they
/// lost (see `fsck.rs`). Returns how many did.
fn lost_snapshots(
    store: &dyn Store,
    archives: &[Archive],
    bad: Vec<vt_core::Hash>,
) -> Result<usize> {
    let mut walker = fsck::LostData::new(store, bad);
    let (mut snapshots, mut lost) = (0, 0);
    for a in archives {
        let entries = a
            .entries()
            .with_context(|| format!("read archive {}", a.describe()))?;
        snapshots += entries.len();
        for l in walker.check(&a.describe(), &entries) {
            lost += 1;
            let more = if l.more > 0 {
                format!(" and {} more", l.more)
            } else {
                String::new()
            };
            println!(
                "snapshot {} #{} ({}) lost data: {}{more}",
                l.archive,
                l.number,
                l.when,
                l.paths.join(", ")
            );
        }
    }
    println!("{snapshots} snapshots checked, {lost} lost data");
    Ok(lost)
}
