//! Progress display: a bar with bytes/s and ETA on a terminal, nothing
//! otherwise. Warnings go to standard error either way, above the bar.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress of a long operation.
pub struct Progress {
    bar: Option<ProgressBar>,
    bytes: AtomicU64,
    /// Warnings printed.
    pub warnings: AtomicU64,
}

impl Progress {
    /// A display for `what`, shown only when standard error is a terminal
    /// and `quiet` is false.
    pub fn new(what: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(what.to_owned());
            b
        });
        Progress {
            bar,
            bytes: AtomicU64::new(0),
            warnings: AtomicU64::new(0),
        }
    }

    /// Counts `n` more bytes done.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Bytes done so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// Sets the expected total.
    pub fn set_total(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_length(n);
        }
    }

    /// Prints a warning (above the bar, if any).
    pub fn warn(&self, msg: &str) {
        self.warnings.fetch_add(1, Relaxed);
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("vt: warning: {msg}")),
            None => eprintln!("vt: warning: {msg}"),
        }
    }

    /// For a bar: shows what `store` (a remote store's counter) has done
    /// beside the operation's name, a few times a second, as the
    /// reference's status line does: `import 1.5MiB:12 300KiB 2` (bytes
    /// and blocks added, bytes fetched, requests outstanding).
    pub fn watch_store(self: &Arc<Self>, what: &str, store: Arc<vt_stores::ProgressStore>) {
        let Some(bar) = self.bar.clone() else {
            return;
        };
        let what = what.to_owned();
        std::thread::spawn(move || {
            while !bar.is_finished() {
                bar.set_message(format!("{what} {}", store.counts().status_line()));
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        });
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// For a bar: sums the sizes of regular files under `root` in a
    /// background thread, then sets the total (so the ETA means something).
    pub fn total_from_tree(self: &Arc<Self>, root: &Path) {
        if self.bar.is_none() {
            return;
        }
        let me = Arc::clone(self);
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            let mut total = 0u64;
            let mut stack = vec![root];
            while let Some(p) = stack.pop() {
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if md.is_dir() {
                    if let Ok(rd) = std::fs::read_dir(&p) {
                        stack.extend(rd.flatten().map(|e| e.path()));
                    }
                } else if md.is_file() {
                    total += md.len();
                }
            }
            me.set_total(total);
        });
    }
}

/// `n` bytes for people: 1.2 GiB.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
