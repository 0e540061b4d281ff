//! Read-only memory maps of datafiles.
//!
//! A block read with `pread` is copied twice before it reaches a reader:
//! by the kernel from the page cache into a buffer, and by the reader out
//! of the buffer. Mapped, a stored block is a slice of the page cache
//! itself ([`Bytes`] keeps the map alive while any slice of it is held),
//! and a compressed one is decompressed straight from it.
//!
//! A map is only ever read below the length the file had when it was
//! mapped, and only at records the index holds: datafiles are append-only
//! and vt cuts off only tails that no index entry points into, so a mapped
//! record is never truncated under its reader (which would be SIGBUS).

use std::fs::File;
use std::os::fd::AsRawFd;

use bytes::Bytes;

/// The first `len` bytes of a file, mapped read-only and shared.
struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone (unmapped
// in `drop`, when no slice of it can be left), so any thread may read it.
unsafe impl Send for Mapping {}
// SAFETY: as above; nothing writes through the pointer.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped
        // once, here.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// Maps the first `len` bytes of `file` (which must be at least that long)
/// read-only; `None` if `len` is 0.
pub fn map(file: &File, len: u64) -> std::io::Result<Option<Bytes>> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: a fresh read-only shared mapping of an open file; the kernel
    // checks the arguments.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some(Bytes::from_owner(Mapping {
        ptr: ptr as *const u8,
        len,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_the_files_bytes_and_outlives_the_file() {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(b"hello, mapped world").unwrap();
        let m = map(t.as_file(), 19).unwrap().unwrap();
        let part = m.slice(7..13);
        drop(m);
        drop(t);
        assert_eq!(&part[..], b"mapped");
        assert!(map(tempfile::tempfile().as_ref().unwrap(), 0)
            .unwrap()
            .is_none());
    }
}
