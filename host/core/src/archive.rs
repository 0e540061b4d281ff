//! Archives: text files of snapshots, one per line, newest last.
//!
//! A line is `TIMESTAMP DIRENT`, where TIMESTAMP is ISO 8601 UTC and DIRENT
//! is a Dirent's text form. Lines are only ever appended, each batch with a
//! single `write` followed by `fsync`, and only after the store has made
//! every block the Dirents refer to durable.
//!
//! An archive lives either in a file of its own (`tree.vt`, as `vt pack`
//! writes) or in a store, by name ([`Store::archive_read`] and friends): a
//! DataDir keeps its named archives as files under `archives/`, a remote
//! store keeps them on the server, so `vt -S remote import` records its
//! snapshot where its blocks went.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dirent::Dirent;
use crate::error::{Error, Result};
use crate::store::Store;
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
    /// An entry for `dirent` recorded now.
    pub fn now(dirent: &Dirent) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        ArchiveEntry {
            secs: now.as_secs() as i64,
            nanos: now.subsec_micros() * 1000,
            dirent: dirent.clone(),
        }
    }

    /// The timestamp as ISO 8601.
    pub fn when(&self) -> String {
        iso8601(self.secs, self.nanos)
    }

    /// The archive line, with its newline.
    pub fn to_line(&self) -> String {
        format!("{} {}\n", self.when(), self.dirent.to_text())
    }
}

/// Longest archive name, in bytes (a file name under a DataDir's
/// `archives/`, with `.vt` appended).
pub const NAME_MAX: usize = 200;

/// Checks that `name` can name an archive in a store: not empty, not `.`
/// or `..`, at most [`NAME_MAX`] bytes, no `/`, NUL or control characters.
pub fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > NAME_MAX
        || name.chars().any(|c| c == '/' || c.is_control());
    if bad {
        return Err(Error::decode(
            "archive name",
            format!("{name:?} is not a valid archive name"),
        ));
    }
    Ok(())
}

/// Where an archive's lines are kept.
#[derive(Clone)]
enum Place {
    /// A file of its own.
    File(PathBuf),
    /// A named archive of a store; `label` names the store in messages.
    Store {
        store: Arc<dyn Store>,
        name: String,
        label: String,
    },
}

/// An archive: a file, or a named archive of a store.
#[derive(Clone)]
pub struct Archive {
    place: Place,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Archive({})", self.describe())
    }
}

impl Archive {
    /// The archive file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Archive {
            place: Place::File(path.into()),
        }
    }

    /// The archive `name` of `store`; `label` names the store in messages.
    pub fn in_store(store: Arc<dyn Store>, name: &str, label: &str) -> Result<Self> {
        check_name(name)?;
        Ok(Archive {
            place: Place::Store {
                store,
                name: name.to_owned(),
                label: label.to_owned(),
            },
        })
    }

    /// The file holding the archive, when it is a file of its own.
    pub fn path(&self) -> Option<&Path> {
        match &self.place {
            Place::File(p) => Some(p),
            Place::Store { .. } => None,
        }
    }

    /// The archive's name: the store's name for it, or the file's name
    /// without `.vt`.
    pub fn name(&self) -> String {
        match &self.place {
            Place::File(p) => {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                n.strip_suffix(".vt").map(str::to_owned).unwrap_or(n)
            }
            Place::Store { name, .. } => name.clone(),
        }
    }

    /// The archive as messages name it: its path, or `[STORE]NAME`.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::File(p) => p.display().to_string(),
            Place::Store { name, label, .. } => format!("[{label}]{name}"),
        }
    }

    /// The archive's text, `None` if it does not exist.
    pub fn text(&self) -> Result<Option<Vec<u8>>> {
        match &self.place {
            Place::File(p) => read_file(p),
            Place::Store { store, name, .. } => store.archive_read(name),
        }
    }

    /// Whether the archive exists (an empty one does).
    pub fn exists(&self) -> Result<bool> {
        match &self.place {
            Place::File(p) => Ok(p.exists()),
            Place::Store { store, name, .. } => Ok(store.archive_read(name)?.is_some()),
        }
    }

    /// Every snapshot, oldest first. A missing archive has none. A line
    /// that does not parse is an error naming the archive and line number,
    /// except a final line with no newline: that is an interrupted append,
    /// skipped.
    pub fn entries(&self) -> Result<Vec<ArchiveEntry>> {
        match self.text()? {
            Some(t) => parse_text(&t, &self.describe()),
            None => Ok(Vec::new()),
        }
    }

    /// The newest snapshot, if any.
    pub fn last(&self) -> Result<Option<ArchiveEntry>> {
        Ok(self.entries()?.pop())
    }

    /// Appends a snapshot taken now. The caller must have synced the store.
    pub fn append(&self, dirent: &Dirent) -> Result<ArchiveEntry> {
        let entry = ArchiveEntry::now(dirent);
        self.append_entries(std::slice::from_ref(&entry))?;
        Ok(entry)
    }

    /// Appends `entries` as they are (their timestamps kept: a push copies
    /// lines from one archive to another). The caller must have synced the
    /// store.
    pub fn append_entries(&self, entries: &[ArchiveEntry]) -> Result<()> {
        let text: String = entries.iter().map(ArchiveEntry::to_line).collect();
        match &self.place {
            Place::File(p) => append_file(p, text.as_bytes()),
            Place::Store { store, name, .. } => store.archive_append(name, text.as_bytes()),
        }
    }

    /// Replaces the whole archive with `entries`, atomically (readers see
    /// the old lines or the new, never a mixture).
    pub fn replace(&self, entries: &[ArchiveEntry]) -> Result<()> {
        let text: String = entries.iter().map(ArchiveEntry::to_line).collect();
        match &self.place {
            Place::File(p) => replace_file(p, text.as_bytes()),
            Place::Store { store, name, .. } => store.archive_replace(name, text.as_bytes()),
        }
    }
}

/// Parses an archive's text; `source` names it in messages. Blank lines and
/// lines starting with `#` are skipped, and so is an unparsable last line
/// without a newline (an interrupted append).
pub fn parse_text(text: &[u8], source: &str) -> Result<Vec<ArchiveEntry>> {
    let mut out = Vec::new();
    let mut lines = text.split_inclusive(|&b| b == b'\n').peekable();
    let mut n = 0;
    while let Some(raw) = lines.next() {
        n += 1;
        let complete = raw.ends_with(b"\n");
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| Error::decode("archive line", "not UTF-8"))
            .and_then(|line| {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    Ok(None)
                } else {
                    parse_line(t).map(Some)
                }
            });
        match parsed {
            Ok(Some(e)) => out.push(e),
            Ok(None) => {}
            Err(_) if !complete && lines.peek().is_none() => {
                tracing::warn!("{source}: ignoring incomplete last line {n}");
            }
            Err(e) => {
                return Err(Error::decode("archive", format!("{source} line {n}: {e}")));
            }
        }
    }
    Ok(out)
}

/// Checks that `lines` is whole archive lines, each ending in a newline:
/// what a store accepts for [`Store::archive_append`] and
/// [`Store::archive_replace`], so a bad client cannot make an archive
/// unreadable.
pub fn check_lines(lines: &[u8]) -> Result<()> {
    if !lines.is_empty() && !lines.ends_with(b"\n") {
        return Err(Error::decode(
            "archive lines",
            "the last line has no newline",
        ));
    }
    for (i, raw) in lines.split_inclusive(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw)
            .map_err(|_| Error::decode("archive lines", format!("line {}: not UTF-8", i + 1)))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        parse_line(t)
            .map_err(|e| Error::decode("archive lines", format!("line {}: {e}", i + 1)))?;
    }
    Ok(())
}

/// Named archives kept as `NAME.vt` files in one directory: how a DataDir
/// keeps its archives (under `archives/`).
#[derive(Clone, Debug)]
pub struct ArchiveDir {
    dir: PathBuf,
}

impl ArchiveDir {
    /// The archives in `dir` (created when the first one is written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ArchiveDir { dir: dir.into() }
    }

    /// The file of archive `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join(format!("{name}.vt")))
    }

    /// The names of the archives, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("list {}", self.dir.display()), e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(format!("list {}", self.dir.display()), e))?;
            let name = ent.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".vt")) {
                if check_name(n).is_ok() && ent.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(n.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The text of archive `name`, `None` if there is none.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        read_file(&self.path(name)?)
    }

    /// Appends checked `lines` to archive `name`.
    pub fn append(&self, name: &str, lines: &[u8]) -> Result<()> {
        let p = self.path(name)?;
        check_lines(lines)?;
        append_file(&p, lines)
    }

    /// Replaces archive `name` with checked `text`.
    pub fn replace(&self, name: &str, text: &[u8]) -> Result<()> {
        let p = self.path(name)?;
        check_lines(text)?;
        replace_file(&p, text)
    }
}

/// The text of the archive file at `path`, `None` if there is none.
pub fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

/// Appends whole `lines` to the archive file at `path` (created, with its
/// directory, if missing) in one write, then syncs it. A partial line left
/// by an interrupted append is ended first, so it stays a line of its own.
pub fn append_file(path: &Path, lines: &[u8]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let ctx = |what: &str| format!("{what} {}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(ctx("create directory for"), e))?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(ctx("open"), e))?;
    let len = f.metadata().map_err(|e| Error::io(ctx("stat"), e))?.len();
    let mut buf = Vec::with_capacity(lines.len() + 1);
    if len > 0 && !ends_with_newline(path, len)? {
        buf.push(b'\n');
    }
    buf.extend_from_slice(lines);
    f.write_all(&buf)
        .map_err(|e| Error::io(ctx("append to"), e))?;
    f.sync_all().map_err(|e| Error::io(ctx("sync"), e))
}

/// Replaces the archive file at `path` with `text` atomically: a new file
/// beside it, synced, renamed over it, and the directory synced.
pub fn replace_file(path: &Path, text: &[u8]) -> Result<()> {
    let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(ctx("create", dir), e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(ctx("rewrite", path), e));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirent::{DirentKind, Meta};

    fn dirent(name: &str) -> Dirent {
        Dirent {
            name: name.as_bytes().to_vec(),
            kind: DirentKind::Symlink {
                target: b"x".to_vec(),
            },
            meta: Meta::default(),
            uuid: None,
        }
    }

    #[test]
    fn file_archive_round_trip_and_torn_tail() {
        let d = tempfile_dir();
        let p = d.join("a.vt");
        let a = Archive::new(&p);
        assert!(!a.exists().unwrap());
        assert_eq!(a.name(), "a");
        let e1 = a.append(&dirent("one")).unwrap();
        // An interrupted append: half a line, no newline.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"2024-01-01T00:00:00Z D{").unwrap();
        assert_eq!(a.entries().unwrap(), vec![e1.clone()]);
        let e2 = ArchiveEntry::now(&dirent("two"));
        a.replace(&[e1.clone(), e2.clone()]).unwrap();
        assert_eq!(a.entries().unwrap(), vec![e1, e2.clone()]);
        a.replace(std::slice::from_ref(&e2)).unwrap();
        assert_eq!(a.entries().unwrap(), vec![e2]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names_and_lines_are_checked() {
        for bad in ["", ".", "..", "a/b", "a\nb", &"x".repeat(NAME_MAX + 1)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("project-2024.home").unwrap();
        let line = ArchiveEntry::now(&dirent("x")).to_line();
        check_lines(line.as_bytes()).unwrap();
        check_lines(b"").unwrap();
        assert!(check_lines(line.trim_end().as_bytes()).is_err());
        assert!(check_lines(b"garbage\n").is_err());
        assert!(check_lines(b"\xff\n").is_err());
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vt-archive-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
