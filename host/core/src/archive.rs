//! Archives: text files of snapshots, one per line, newest last.
//!
//! A line is `TIMESTAMP DIRENT`, where TIMESTAMP is ISO 8601 UTC and DIRENT
//! is a Dirent's text form. Lines are only ever appended, each with a single
//! `write` of the whole line followed by `fsync`, and only after the store
//! has made every block the Dirent refers to durable.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::dirent::Dirent;
use crate::error::{Error, Result};
use crate::timefmt::{iso8601, parse_iso8601};

/// One snapshot recorded in an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// When it was recorded: seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds part.
    pub nanos: u32,
    /// The snapshot's top Dirent.
    pub dirent: Dirent,
}

impl ArchiveEntry {
    /// The timestamp as ISO 8601.
    pub fn when(&self) -> String {
        iso8601(self.secs, self.nanos)
    }
}

/// An archive file.
#[derive(Clone, Debug)]
pub struct Archive {
    path: PathBuf,
}

impl Archive {
    /// The archive at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Archive { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every snapshot, oldest first. A missing file has none. A line that
    /// does not parse is an error naming the file and line number, except a
    /// final line with no newline: that is an interrupted append, skipped.
    pub fn entries(&self) -> Result<Vec<ArchiveEntry>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("open {}", self.path.display()), e)),
        };
        let mut out = Vec::new();
        let mut r = BufReader::new(f);
        let mut line = String::new();
        let mut n = 0;
        loop {
            line.clear();
            let got = r
                .read_line(&mut line)
                .map_err(|e| Error::io(format!("read {}", self.path.display()), e))?;
            if got == 0 {
                break;
            }
            n += 1;
            let complete = line.ends_with('\n');
            let text = line.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            match parse_line(text) {
                Ok(e) => out.push(e),
                Err(_) if !complete => {
                    tracing::warn!("{}: ignoring incomplete last line {n}", self.path.display());
                }
                Err(e) => {
                    return Err(Error::decode(
                        "archive",
                        format!("{} line {n}: {e}", self.path.display()),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The newest snapshot, if any.
    pub fn last(&self) -> Result<Option<ArchiveEntry>> {
        Ok(self.entries()?.pop())
    }

    /// Appends a snapshot taken now. The caller must have synced the store.
    pub fn append(&self, dirent: &Dirent) -> Result<ArchiveEntry> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let entry = ArchiveEntry {
            secs: now.as_secs() as i64,
            nanos: now.subsec_micros() * 1000,
            dirent: dirent.clone(),
        };
        let line = format!("{} {}\n", entry.when(), dirent.to_text());
        let ctx = |what: &str| format!("{what} {}", self.path.display());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(ctx("create directory for"), e))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(ctx("open"), e))?;
        // A previous interrupted append may have left a partial line: start
        // ours on a fresh line so it stays parseable.
        let len = f.metadata().map_err(|e| Error::io(ctx("stat"), e))?.len();
        let mut buf = Vec::with_capacity(line.len() + 1);
        if len > 0 && !ends_with_newline(&self.path, len)? {
            buf.push(b'\n');
        }
        buf.extend_from_slice(line.as_bytes());
        f.write_all(&buf)
            .map_err(|e| Error::io(ctx("append to"), e))?;
        f.sync_all().map_err(|e| Error::io(ctx("sync"), e))?;
        Ok(entry)
    }
}

fn ends_with_newline(path: &Path, len: u64) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, len - 1)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(b[0] == b'\n')
}

/// Parses one archive line.
pub fn parse_line(text: &str) -> Result<ArchiveEntry> {
    let (when, rest) = text
        .split_once(' ')
        .ok_or_else(|| Error::decode("archive line", "expected TIMESTAMP DIRENT"))?;
    let (secs, nanos) = parse_iso8601(when)
        .ok_or_else(|| Error::decode("archive line", format!("bad timestamp {when:?}")))?;
    Ok(ArchiveEntry {
        secs,
        nanos,
        dirent: Dirent::parse(rest.trim())?,
    })
}
