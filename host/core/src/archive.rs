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
    /// that does not parse is skipped with a warning naming the archive
    /// and line number (see [`parse_text`]).
    pub fn entries(&self) -> Result<Vec<ArchiveEntry>> {
        match self.text()? {
            Some(t) => parse_text(&t, &self.describe()),
            None => Ok(Vec::new()),
        }
    }

    /// Every snapshot line and damaged line, in order (see
    /// [`parse_lines`]); a missing archive has none.
    pub fn lines(&self) -> Result<Vec<Line>> {
        Ok(self.text()?.map(|t| parse_lines(&t)).unwrap_or_default())
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

/// A line of an archive that does not parse: damaged (a bit flip, an
/// editor), or torn (the last line of an interrupted append).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// Its number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

/// One line of an archive, as [`parse_lines`] found it.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    /// A snapshot.
    Entry(Box<ArchiveEntry>),
    /// A line that does not parse.
    Bad(BadLine),
}

/// Every snapshot line and every damaged line of an archive's text, in
/// order; blank lines and lines starting with `#` are left out. A damaged
/// line costs only itself: the lines after it are read as usual.
pub fn parse_lines(text: &[u8]) -> Vec<Line> {
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
            Ok(Some(e)) => out.push(Line::Entry(Box::new(e))),
            Ok(None) => {}
            Err(e) => out.push(Line::Bad(BadLine {
                line: n,
                why: if complete || lines.peek().is_some() {
                    e.to_string()
                } else {
                    format!("incomplete last line (an interrupted append?): {e}")
                },
            })),
        }
    }
    out
}

/// The snapshots in an archive's text, oldest first; `source` names it in
/// messages. Damaged lines are skipped, each with a warning naming the
/// archive and the line (see [`parse_lines`]); `vt fsck --repair`
/// rewrites an archive without them.
pub fn parse_text(text: &[u8], source: &str) -> Result<Vec<ArchiveEntry>> {
    let mut out = Vec::new();
    for l in parse_lines(text) {
        match l {
            Line::Entry(e) => out.push(*e),
            Line::Bad(b) => tracing::warn!("{}", bad_line_message(source, &b)),
        }
    }
    Ok(out)
}

/// The warning for damaged line `b` of archive `source`.
pub fn bad_line_message(source: &str, b: &BadLine) -> String {
    format!(
        "{source}: line {} is damaged and skipped: {} (`vt fsck --repair` rewrites the archive without it)",
        b.line, b.why
    )
}

/// Rewrites the archive file at `path` without its damaged lines (see
/// [`parse_lines`]), after copying it whole, synced, to a file beside it
/// named `NAME.vt.damaged-SECONDS` (not an archive name, so never listed
/// as one). Returns the damaged lines and the copy's path; nothing is done
/// (and no copy made) when no line is damaged. Other processes must not
/// append to the archive meanwhile (a line appended between the read and
/// the rewrite would be lost, as with `vt forget`).
pub fn repair_file(path: &Path) -> Result<(Vec<BadLine>, Option<PathBuf>)> {
    let Some(text) = read_file(path)? else {
        return Ok((Vec::new(), None));
    };
    let bad: Vec<BadLine> = parse_lines(&text)
        .into_iter()
        .filter_map(|l| match l {
            Line::Bad(b) => Some(b),
            Line::Entry(_) => None,
        })
        .collect();
    if bad.is_empty() {
        return Ok((bad, None));
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut copy = path.as_os_str().to_owned();
    copy.push(format!(".damaged-{secs}"));
    let copy = PathBuf::from(copy);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&copy)
            .map_err(|e| Error::io(format!("create {}", copy.display()), e))?;
        f.write_all(&text)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("write {}", copy.display()), e))?;
    }
    let drop: std::collections::HashSet<usize> = bad.iter().map(|b| b.line).collect();
    let mut kept = Vec::with_capacity(text.len());
    for (i, raw) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        if !drop.contains(&(i + 1)) {
            kept.extend_from_slice(raw);
        }
    }
    if !kept.is_empty() && !kept.ends_with(b"\n") {
        kept.push(b'\n');
    }
    replace_file(path, &kept)?;
    Ok((bad, Some(copy)))
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
    fn a_damaged_line_costs_only_itself_and_repair_drops_it() {
        let d = tempfile_dir();
        let p = d.join("a.vt");
        let a = Archive::new(&p);
        let e1 = a.append(&dirent("one")).unwrap();
        let e3 = ArchiveEntry::now(&dirent("three"));
        let mut text = e1.to_line();
        text.push_str("2024-01-01T00:00:00Z D{cut\n");
        text.push_str(&e3.to_line());
        text.push_str("2024-01-01T00:00:00Z D{"); // torn
        std::fs::write(&p, &text).unwrap();
        assert_eq!(a.entries().unwrap(), vec![e1.clone(), e3.clone()]);
        let lines = a.lines().unwrap();
        let bad: Vec<usize> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Bad(b) => Some(b.line),
                Line::Entry(_) => None,
            })
            .collect();
        assert_eq!(bad, vec![2, 4]);
        assert_eq!(lines.len(), 4);
        let (fixed, copy) = repair_file(&p).unwrap();
        assert_eq!(fixed.len(), 2);
        let copy = copy.unwrap();
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), text);
        assert!(a
            .lines()
            .unwrap()
            .iter()
            .all(|l| matches!(l, Line::Entry(_))));
        assert_eq!(a.entries().unwrap(), vec![e1, e3]);
        assert_eq!(repair_file(&p).unwrap(), (Vec::new(), None));
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
