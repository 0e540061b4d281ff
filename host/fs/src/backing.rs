//! Local backing files: where the content of a written file lives between
//! its first write and the background sync that blockifies it.
//!
//! Small new files stay in memory ([`MEM_MAX`]); a file that grows past
//! that, or a stored file larger than that which is modified, is copied
//! into a backing file in the mount's private directory. A backing file is
//! deleted when the last reference to it goes (its content synced, or the
//! file unlinked and closed).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Files up to this size are written in memory.
pub const MEM_MAX: u64 = 1 << 20;

/// One backing file.
#[derive(Debug)]
pub struct Backing {
    /// The open file.
    pub file: File,
    path: PathBuf,
    /// The content's length (the file may be longer while it is extended).
    pub len: AtomicU64,
}

impl Backing {
    /// Writes `data` at `offset`, extending the length.
    pub fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_all_at(data, offset)?;
        self.len.fetch_max(offset + data.len() as u64, SeqCst);
        Ok(())
    }

    /// Sets the length.
    pub fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.len.store(len, SeqCst);
        Ok(())
    }

    /// The current length.
    pub fn len(&self) -> u64 {
        self.len.load(SeqCst)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `size` bytes from `offset`.
    pub fn read_at(&self, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
        let len = self.len();
        if offset >= len {
            return Ok(Vec::new());
        }
        let n = (len - offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; n];
        let mut done = 0;
        while done < n {
            let got = self.file.read_at(&mut buf[done..], offset + done as u64)?;
            if got == 0 {
                break; // a concurrent truncate: the rest reads as zeros
            }
            done += got;
        }
        Ok(buf)
    }

    /// A reader of the content's first `len` bytes.
    pub fn reader(&self, len: u64) -> BackingReader<'_> {
        BackingReader {
            file: &self.file,
            pos: 0,
            end: len,
        }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("cannot remove backing file {}: {e}", self.path.display());
        }
    }
}

/// Reads a backing file sequentially without moving its shared offset.
pub struct BackingReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for BackingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            // Truncated under us: the missing tail reads as zeros.
            buf[..want].fill(0);
            self.pos += want as u64;
            return Ok(want);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The mount's directory of backing files.
#[derive(Debug)]
pub struct BackingDir {
    dir: PathBuf,
    next: AtomicU64,
}

impl BackingDir {
    /// Backing files go in `dir`, which must exist.
    pub fn new(dir: PathBuf) -> Self {
        BackingDir {
            dir,
            next: AtomicU64::new(1),
        }
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.dir
    }

    /// A new, empty backing file.
    pub fn create(&self) -> std::io::Result<Backing> {
        let n = self.next.fetch_add(1, SeqCst);
        let path = self.dir.join(format!("{n}.data"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(Backing {
            file,
            path,
            len: AtomicU64::new(0),
        })
    }
}
