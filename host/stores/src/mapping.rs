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

/// Drops this process's page table entries for the whole of `map` (as
/// returned by [`map`]), so resident memory does not grow with what was
/// read through it: the pages stay in the page cache, and a later read
/// maps them again (a minor fault). The data never changes (read-only,
/// file-backed), so slices of the map in use stay good.
pub fn release(map: &Bytes) {
    advise(map, libc::MADV_DONTNEED);
}

/// Tells the kernel that `map` is read at random places (look-ups): no
/// read-ahead, and no mapping of the neighbouring pages of each page
/// touched ("fault-around", 64 KiB a fault), which would make a process
/// that looks up many keys hold far more of the file than it read.
pub fn advise_random(map: &Bytes) {
    advise(map, libc::MADV_RANDOM);
}

/// Asks the kernel to read `map` into the page cache ahead of a reader
/// that goes through it in order (a map advised random is not read
/// ahead); it does not map the pages.
pub fn will_need(map: &Bytes) {
    advise(map, libc::MADV_WILLNEED);
}

/// The page size the maps are counted in.
pub const PAGE: usize = 4096;

/// How many of the `count` pages of `map` from page `first` on are in the
/// page cache (`mincore`; pages past its end are left out, and a failed
/// call counts them all in). A probe of a few pages costs about a
/// microsecond, where asking to read a cached 6 MB map ahead costs about
/// 0.1 ms.
pub fn cached_pages(map: &Bytes, first: usize, count: usize) -> usize {
    let pages = map.len().div_ceil(PAGE);
    let first = first.min(pages);
    let count = count.min(pages - first);
    if count == 0 {
        return 0;
    }
    let mut vec = vec![0u8; count];
    // SAFETY: the range lies within `map`, a whole mapping from a
    // page-aligned start (what `map` returns), and `vec` has one byte for
    // each of its pages.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr().add(first * PAGE) as *mut libc::c_void,
            (count * PAGE).min(map.len() - first * PAGE),
            vec.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return count;
    }
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

/// Whether the `count` pages of `map` from page `first` on are all in the
/// page cache (see [`cached_pages`]).
pub fn cached(map: &Bytes, first: usize, count: usize) -> bool {
    let pages = map.len().div_ceil(PAGE);
    let first = first.min(pages);
    cached_pages(map, first, count) == count.min(pages - first)
}

/// `madvise(advice)` over the whole of `map`.
fn advise(map: &Bytes, advice: libc::c_int) {
    // SAFETY: `map` starts at a mapping's page-aligned start and covers it
    // (what `map` returns); the callers' advice (DONTNEED on a read-only
    // shared file mapping, RANDOM, WILLNEED) never changes its data.
    unsafe {
        libc::madvise(map.as_ptr() as *mut libc::c_void, map.len(), advice);
    }
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

    #[test]
    fn cached_tells_pages_in_the_page_cache_from_pages_out_of_it() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        f.sync_all().unwrap();
        let m = map(&f, 1 << 20).unwrap().unwrap();
        // SAFETY: advisory, on a descriptor we own.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if cached(&m, 0, 256) {
            eprintln!("skipped: the temporary file's pages cannot be dropped (tmpfs?)");
            return;
        }
        // One page read at a time (no read-around).
        advise_random(&m);
        assert_eq!(m[40 * 4096], 7);
        assert!(cached(&m, 40, 1));
        assert!(!cached(&m, 41, 16));
        // Past the end: nothing missing there.
        assert!(cached(&m, 256, 16));
        assert_eq!(m[255 * 4096], 7);
        assert!(cached(&m, 255, 16));
    }

    /// Resident bytes of the mapping that starts at `at` (/proc/self/smaps).
    fn resident(at: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        while let Some(l) = lines.next() {
            let start = l.split('-').next().unwrap_or("");
            if usize::from_str_radix(start, 16).ok() == Some(at) {
                for l in lines.by_ref() {
                    if let Some(kb) = l.strip_prefix("Rss:") {
                        return kb
                            .trim()
                            .trim_end_matches(" kB")
                            .trim()
                            .parse::<u64>()
                            .unwrap()
                            << 10;
                    }
                }
            }
        }
        panic!("no mapping at {at:#x}");
    }

    #[test]
    fn release_drops_resident_pages_and_keeps_the_data() {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
        t.write_all(&data).unwrap();
        let m = map(t.as_file(), data.len() as u64).unwrap().unwrap();
        let part = m.slice(1 << 20..2 << 20);
        assert_eq!(m[..], data[..], "read through the map");
        assert!(resident(m.as_ptr() as usize) >= 4 << 20);
        release(&m);
        assert!(resident(m.as_ptr() as usize) < 1 << 20);
        assert_eq!(
            part[..],
            data[1 << 20..2 << 20],
            "a slice reads the same after"
        );
    }
}
