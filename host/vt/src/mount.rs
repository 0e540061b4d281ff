//! `vt mount` and `vt umount`: wiring the FUSE filesystem (crate vt-fs)
//! to the command line, the store, the archive and signals.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use vt_core::dir::read_dir;
use vt_core::{Dirent, DirentKind};
use vt_fs::{FsHandle, Mode, MountConfig, Roots, VtFs};

use crate::config::Config;
use crate::snapshot::{resolve, Special};

/// Arguments of `vt mount`.
#[derive(clap::Args)]
pub struct MountArgs {
    /// Read-only (same as -o readonly).
    #[arg(short = 'r')]
    readonly: bool,
    /// Options, comma-separated: readonly (ro), append_only, rw,
    /// poll=MICROSECONDS (how long a request thread waits busy for the
    /// next request before it sleeps; 0: never) [default poll: 200].
    #[arg(short = 'o')]
    options: Option<String>,
    /// Show every snapshot of the archive as a read-only directory named
    /// by its timestamp.
    #[arg(short = 'a')]
    all: bool,
    /// An archive, [STORE]NAME, or a Dirent text (D{…}).
    special: String,
    /// Where to mount [default: inferred from SPECIAL]; created if missing
    /// (and then removed after unmount).
    mountpoint: Option<PathBuf>,
    /// Present only this directory of the snapshot.
    subpath: Option<String>,
}

/// FUSE request threads.
const THREADS: usize = 4;

fn pid_file(mountpoint: &Path) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in mountpoint.as_os_str().as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir()
        .join(format!("vt-mounts-{uid}"))
        .join(format!("{h:016x}.pid"))
}

/// How long a request thread polls for the next request before it sleeps,
/// unless `-o poll=` says otherwise: about the gaps between the requests
/// of a directory walk (20-60 µs here), with room for a slower reader.
const DEFAULT_POLL: Duration = Duration::from_micros(200);

/// The mount's mode and request poll time, from `-r` and `-o`.
fn options_of(a: &MountArgs) -> Result<(Mode, Duration)> {
    let mut mode = if a.readonly {
        Mode::ReadOnly
    } else {
        Mode::ReadWrite
    };
    let mut poll = DEFAULT_POLL;
    for o in a.options.iter().flat_map(|o| o.split(',')) {
        match o.trim() {
            "" | "rw" => {}
            "ro" | "readonly" => mode = Mode::ReadOnly,
            "append_only" if mode != Mode::ReadOnly => mode = Mode::AppendOnly,
            "append_only" => {}
            o if o.starts_with("poll=") => {
                let us = &o["poll=".len()..];
                let us: u64 = us.parse().ok().filter(|&n| n <= 1_000_000).ok_or_else(|| {
                    anyhow!("mount option poll={us}: give microseconds, from 0 to 1000000")
                })?;
                poll = Duration::from_micros(us);
            }
            other => bail!(
                "unknown mount option {other:?} (known: readonly, append_only, rw, poll=MICROSECONDS)"
            ),
        }
    }
    Ok((mode, poll))
}

/// The mountpoint implied by SPECIAL: the archive's name without `.vt`, or
/// the Dirent's name, in the current directory.
fn infer_mountpoint(spec: &str, special: &Special) -> Result<PathBuf> {
    let name = match special {
        Special::Archive(a) => a.name(),
        Special::Dirent(d) => d.name_lossy().into_owned(),
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        bail!("cannot infer a mountpoint from {spec:?}; give one");
    }
    Ok(PathBuf::from(name))
}

/// The Dirents from `top` down to `subpath`.
fn chain_to(store: &dyn vt_core::Store, top: Dirent, subpath: &str) -> Result<Vec<Dirent>> {
    let mut chain = vec![top];
    for part in subpath.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let cur = chain.last().ok_or_else(|| anyhow!("empty chain"))?;
        let DirentKind::Dir { block, .. } = &cur.kind else {
            bail!("{subpath}: {} is not a directory", cur.name_lossy());
        };
        let next = read_dir(store, block)?
            .into_iter()
            .find(|d| d.name == part.as_bytes())
            .ok_or_else(|| anyhow!("{subpath}: no entry {part:?} in the snapshot"))?;
        if !next.is_dir() {
            bail!("{subpath}: {part} is not a directory");
        }
        chain.push(next);
    }
    Ok(chain)
}

/// Everything to undo when the mount ends, done once.
struct Cleanup {
    backing: PathBuf,
    pid_file: PathBuf,
    mountpoint: Option<PathBuf>,
}

static CLEANUP: Mutex<Option<Cleanup>> = Mutex::new(None);

fn cleanup() {
    let c = CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(c) = c {
        let _ = std::fs::remove_dir_all(&c.backing);
        let _ = std::fs::remove_file(&c.pid_file);
        if let Some(m) = c.mountpoint {
            let _ = std::fs::remove_dir(&m);
        }
    }
}

fn report(top: Option<Dirent>, archive: bool, quiet: bool) {
    if let Some(t) = top {
        if !archive {
            // No archive to record it in: the new snapshot goes to stdout.
            println!("{}", t.to_text());
        } else if !quiet {
            eprintln!("vt: snapshot recorded");
        }
    }
}

/// On SIGINT/SIGTERM: refuse further changes, wait for the writes in
/// flight and the queued syncs, record the snapshot, unmount and exit.
fn on_signal(
    sigs: crate::signals::TermSignals,
    handle: FsHandle,
    mountpoint: PathBuf,
    archive: bool,
    quiet: bool,
) {
    sigs.on_signal(move |sig| {
        if !quiet {
            eprintln!("vt: signal {sig}: recording the snapshot and unmounting");
        }
        let code = match handle.shutdown() {
            Ok(top) => {
                report(top, archive, quiet);
                0
            }
            Err(e) => {
                eprintln!("vt: error: cannot record the snapshot: {e}; the previous one is intact");
                1
            }
        };
        let _ = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&mountpoint)
            .status();
        cleanup();
        std::process::exit(code);
    });
}

/// `vt mount`.
pub fn mount(
    a: MountArgs,
    cfg: &Config,
    store_spec: Option<&str>,
    quiet: bool,
) -> Result<ExitCode> {
    let sigs = crate::signals::block();
    let (mode, poll) = options_of(&a)?;
    let (special, st) = resolve(&a.special, cfg, store_spec, false)?;
    let roots = if a.all {
        let Special::Archive(ar) = &special else {
            bail!(
                "-a shows the snapshots of an archive; {:?} is a Dirent",
                a.special
            );
        };
        let entries = ar.entries()?;
        if entries.is_empty() {
            bail!("archive {} has no snapshots", ar.describe());
        }
        Roots::All(entries)
    } else {
        let top = special.top()?;
        Roots::One {
            chain: chain_to(&*st.store, top, a.subpath.as_deref().unwrap_or(""))?,
        }
    };
    let archive = match &special {
        Special::Archive(ar) if !a.all => Some(ar.clone()),
        _ => None,
    };
    let mountpoint = match &a.mountpoint {
        Some(m) => m.clone(),
        None => infer_mountpoint(&a.special, &special)?,
    };
    let created = !mountpoint.exists();
    if created {
        std::fs::create_dir_all(&mountpoint)
            .with_context(|| format!("create mountpoint {}", mountpoint.display()))?;
    }
    let mountpoint = std::fs::canonicalize(&mountpoint)
        .with_context(|| format!("resolve {}", mountpoint.display()))?;
    report_orphaned_backing();
    let backing = std::env::temp_dir().join(format!(
        "vt-mount-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&backing)
        .with_context(|| format!("create backing directory {}", backing.display()))?;
    let pid_file = pid_file(&mountpoint);
    if let Some(d) = pid_file.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("write {}", pid_file.display()))?;
    *CLEANUP.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cleanup {
        backing: backing.clone(),
        pid_file,
        mountpoint: created.then(|| mountpoint.clone()),
    });
    let has_archive = archive.is_some();
    let fs = VtFs::new(MountConfig {
        store: st.store.clone(),
        roots,
        archive,
        mode,
        backing_dir: backing,
        // Written files are chunked with the scanner the registry picks.
        chooser: {
            let reg = crate::plugins::LazyRegistry::new(cfg, crate::plugins::stderr_warn());
            std::sync::Arc::new(move |path: &std::path::Path, head: &[u8]| {
                vt_core::ScannerSource::scanner_for(&reg, path, head)
            })
        },
    });
    let fs = match fs {
        Ok(f) => f,
        Err(e) => {
            cleanup();
            return Err(e.into());
        }
    };
    let handle = fs.handle();
    on_signal(sigs, handle.clone(), mountpoint.clone(), has_archive, quiet);
    let shown = mountpoint.display().to_string();
    let r = fs.run(&mountpoint, THREADS, poll, || {
        if !quiet {
            eprintln!("vt: mounted {} on {shown}", a.special);
        }
    });
    let committed = handle.commit();
    cleanup();
    r?;
    report(
        committed.context("cannot record the snapshot; the previous one is intact")?,
        has_archive,
        quiet,
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether process `pid` still runs (a zombie, exited but not yet reaped
/// by its parent, has finished its work).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// `vt umount`: unmounts, then waits until the `vt mount` process has
/// recorded its last snapshot and exited.
pub fn umount(mountpoint: &Path) -> Result<ExitCode> {
    let mp = std::fs::canonicalize(mountpoint)
        .with_context(|| format!("resolve {}", mountpoint.display()))?;
    let pid: Option<i32> = std::fs::read_to_string(pid_file(&mp))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&mp)
        .output()
        .context("run fusermount3 (install fuse3)")?;
    if !out.status.success() {
        bail!(
            "cannot unmount {}: {}",
            mp.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if let Some(pid) = pid {
        while alive(pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Warns about backing directories (`$TMPDIR/vt-mount-PID-NANOS`) left by
/// mount processes that died without cleaning up (`kill -9`, a crash):
/// they hold the content of files written since that mount's last
/// snapshot, larger than 1 MiB, which the archive does not have. They are
/// left for the user to look at or remove, never deleted here.
fn report_orphaned_backing() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("vt-mount-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if alive {
            continue;
        }
        let (mut files, mut bytes) = (0u64, 0u64);
        if let Ok(rd) = std::fs::read_dir(ent.path()) {
            for f in rd.flatten() {
                if let Ok(m) = f.metadata() {
                    files += 1;
                    bytes += m.len();
                }
            }
        }
        tracing::warn!(
            "{}: left by a vt mount (pid {pid}) that died before recording its last writes: {files} backing files, {bytes} bytes of content written after its last snapshot (kept; remove the directory when done with it)",
            ent.path().display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        a: MountArgs,
    }

    fn options(args: &[&str]) -> Result<(Mode, Duration)> {
        let cmd = Cmd::try_parse_from(["mount"].iter().chain(args).chain(&["a.vt"])).unwrap();
        options_of(&cmd.a)
    }

    #[test]
    fn mount_options_give_mode_and_poll_time() {
        assert_eq!(options(&[]).unwrap(), (Mode::ReadWrite, DEFAULT_POLL));
        assert_eq!(
            options(&["-r", "-o", "poll=0"]).unwrap(),
            (Mode::ReadOnly, Duration::ZERO)
        );
        assert_eq!(
            options(&["-o", "append_only,poll=50"]).unwrap(),
            (Mode::AppendOnly, Duration::from_micros(50))
        );
        let e = options(&["-o", "poll=fast"]).unwrap_err().to_string();
        assert_eq!(
            e,
            "mount option poll=fast: give microseconds, from 0 to 1000000"
        );
        let e = options(&["-o", "speed"]).unwrap_err().to_string();
        assert!(
            e.contains("\"speed\"") && e.contains("poll=MICROSECONDS"),
            "{e}"
        );
    }
}
