//! `store-native`: an example of a native vt store scheme, a shared
//! library implementing vt's C ABI version 1 (`vt-plugin.7`, NATIVE
//! SCHEMES). It keeps one file per block, named by its hash, under the
//! directory of its clause's `preopen`, and archives beside them, as the
//! `store-dir` component does inside its sandbox; a native library has no
//! sandbox, which is why vt loads one only with `trust = "native"`.
//!
//! The types below mirror the C declarations of the man page, as a C
//! implementation would include them from a header.

use std::ffi::{c_char, c_void, CStr};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

#[repr(C)]
pub struct VtKv {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
pub struct VtBuf {
    data: *mut u8,
    len: usize,
    free: Option<unsafe extern "C" fn(*mut u8, usize)>,
}

#[repr(C)]
pub struct VtStorePluginV1 {
    abi: u32,
    name: *const c_char,
    version: *const c_char,
    open: unsafe extern "C" fn(*const VtKv, usize, *const c_char, *mut VtBuf) -> *mut c_void,
    get: unsafe extern "C" fn(*mut c_void, *const c_char, *mut VtBuf, *mut VtBuf) -> i32,
    put: unsafe extern "C" fn(*mut c_void, *const c_char, *const u8, usize, *mut VtBuf) -> i32,
    contains: unsafe extern "C" fn(*mut c_void, *const c_char, *mut VtBuf) -> i32,
    flush: unsafe extern "C" fn(*mut c_void, *mut VtBuf) -> i32,
    archive_names: unsafe extern "C" fn(*mut c_void, *mut VtBuf, *mut VtBuf) -> i32,
    archive_read: unsafe extern "C" fn(*mut c_void, *const c_char, *mut VtBuf, *mut VtBuf) -> i32,
    archive_append:
        unsafe extern "C" fn(*mut c_void, *const c_char, *const u8, usize, *mut VtBuf) -> i32,
    close: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: the table holds only pointers to static strings and functions.
unsafe impl Sync for VtStorePluginV1 {}

#[cfg(not(feature = "wrong-abi"))]
const ABI: u32 = 1;
#[cfg(feature = "wrong-abi")]
const ABI: u32 = 2;

/// The ABI version this library implements.
#[no_mangle]
pub extern "C" fn vt_store_plugin_abi() -> u32 {
    ABI
}

static TABLE: VtStorePluginV1 = VtStorePluginV1 {
    abi: ABI,
    name: c"store-native".as_ptr(),
    version: c"1.0.0".as_ptr(),
    open,
    get,
    put,
    contains,
    flush,
    archive_names,
    archive_read,
    archive_append,
    close,
};

/// The function table.
#[no_mangle]
pub extern "C" fn vt_store_plugin_v1() -> *const VtStorePluginV1 {
    &TABLE
}

/// An open store.
struct Dir {
    blocks: PathBuf,
    archives: PathBuf,
}

unsafe extern "C" fn free_vec(data: *mut u8, len: usize) {
    // SAFETY: `data`/`len` came from `give` (a boxed slice of `len`).
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
}

/// Hands `v` to vt through `out`.
unsafe fn give(out: *mut VtBuf, v: Vec<u8>) {
    let b = v.into_boxed_slice();
    let len = b.len();
    let data = Box::into_raw(b) as *mut u8;
    // SAFETY: vt passes a valid VtBuf.
    unsafe {
        *out = VtBuf {
            data,
            len,
            free: Some(free_vec),
        }
    };
}

/// Reports `msg` through `err`; returns -1.
unsafe fn fail(err: *mut VtBuf, msg: String) -> i32 {
    // SAFETY: as give.
    unsafe { give(err, msg.into_bytes()) };
    -1
}

unsafe fn text<'a>(p: *const c_char) -> &'a str {
    // SAFETY: vt passes NUL-terminated UTF-8.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("")
}

/// A block's file, if `hash` is a hash's text.
fn block(d: &Dir, hash: &str) -> Result<PathBuf, String> {
    let ok = hash.split_once(':').is_some_and(|(k, h)| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && h.len() >= 2
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(d.blocks.join(hash))
    } else {
        Err(format!("{hash:?} is not a block hash"))
    }
}

fn archive(d: &Dir, name: &str) -> Result<PathBuf, String> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(format!("archive name {name:?} is not a plain file name"));
    }
    Ok(d.archives.join(name))
}

unsafe extern "C" fn open(
    config: *const VtKv,
    n: usize,
    preopen: *const c_char,
    err: *mut VtBuf,
) -> *mut c_void {
    // SAFETY: vt passes `n` settings.
    let kv = unsafe { std::slice::from_raw_parts(config, n) };
    for s in kv {
        // SAFETY: NUL-terminated.
        let k = unsafe { text(s.key) };
        if k != "preopen" {
            unsafe { fail(err, format!("store-native takes only preopen, not {k:?}")) };
            return std::ptr::null_mut();
        }
    }
    if preopen.is_null() {
        unsafe {
            fail(
                err,
                "store-native needs a directory: set preopen = \"DIR\"".into(),
            )
        };
        return std::ptr::null_mut();
    }
    let root = PathBuf::from(unsafe { text(preopen) });
    let d = Dir {
        blocks: root.join("blocks"),
        archives: root.join("archives"),
    };
    for p in [&d.blocks, &d.archives] {
        if let Err(e) = fs::create_dir_all(p) {
            unsafe { fail(err, format!("create {}: {e}", p.display())) };
            return std::ptr::null_mut();
        }
    }
    Box::into_raw(Box::new(d)) as *mut c_void
}

/// File `p`'s bytes into `out` (1), 0 if there is no such file.
unsafe fn read_file(p: &std::path::Path, out: *mut VtBuf, err: *mut VtBuf) -> i32 {
    match fs::read(p) {
        Ok(b) => {
            unsafe { give(out, b) };
            1
        }
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => unsafe { fail(err, format!("read {}: {e}", p.display())) },
    }
}

unsafe fn dir<'a>(h: *mut c_void) -> &'a Dir {
    // SAFETY: `h` came from open and is not closed yet.
    unsafe { &*(h as *const Dir) }
}

unsafe extern "C" fn get(
    h: *mut c_void,
    hash: *const c_char,
    out: *mut VtBuf,
    err: *mut VtBuf,
) -> i32 {
    let p = match block(unsafe { dir(h) }, unsafe { text(hash) }) {
        Ok(p) => p,
        Err(e) => return unsafe { fail(err, e) },
    };
    unsafe { read_file(&p, out, err) }
}

unsafe extern "C" fn put(
    h: *mut c_void,
    hash: *const c_char,
    data: *const u8,
    len: usize,
    err: *mut VtBuf,
) -> i32 {
    let hash = unsafe { text(hash) };
    let p = match block(unsafe { dir(h) }, hash) {
        Ok(p) => p,
        Err(e) => return unsafe { fail(err, e) },
    };
    if p.exists() {
        return 0;
    }
    // SAFETY: vt passes `len` bytes.
    let data = unsafe { std::slice::from_raw_parts(data, len) };
    // Written aside (a name of its own: threads put at once) and renamed.
    let tmp = p.with_file_name(format!(".{hash}.{:?}.tmp", std::thread::current().id()));
    match fs::write(&tmp, data).and_then(|()| fs::rename(&tmp, &p)) {
        Ok(()) => 1,
        Err(e) => unsafe { fail(err, format!("write {}: {e}", p.display())) },
    }
}

unsafe extern "C" fn contains(h: *mut c_void, hash: *const c_char, err: *mut VtBuf) -> i32 {
    match block(unsafe { dir(h) }, unsafe { text(hash) }) {
        Ok(p) => i32::from(p.exists()),
        Err(e) => unsafe { fail(err, e) },
    }
}

unsafe extern "C" fn flush(_h: *mut c_void, _err: *mut VtBuf) -> i32 {
    0
}

unsafe extern "C" fn archive_names(h: *mut c_void, out: *mut VtBuf, err: *mut VtBuf) -> i32 {
    let d = unsafe { dir(h) };
    match fs::read_dir(&d.archives) {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect();
            names.sort();
            unsafe { give(out, names.join("\n").into_bytes()) };
            0
        }
        Err(e) => unsafe { fail(err, format!("list {}: {e}", d.archives.display())) },
    }
}

unsafe extern "C" fn archive_read(
    h: *mut c_void,
    name: *const c_char,
    out: *mut VtBuf,
    err: *mut VtBuf,
) -> i32 {
    let p = match archive(unsafe { dir(h) }, unsafe { text(name) }) {
        Ok(p) => p,
        Err(e) => return unsafe { fail(err, e) },
    };
    unsafe { read_file(&p, out, err) }
}

unsafe extern "C" fn archive_append(
    h: *mut c_void,
    name: *const c_char,
    data: *const u8,
    len: usize,
    err: *mut VtBuf,
) -> i32 {
    let p = match archive(unsafe { dir(h) }, unsafe { text(name) }) {
        Ok(p) => p,
        Err(e) => return unsafe { fail(err, e) },
    };
    let data = unsafe { std::slice::from_raw_parts(data, len) };
    let r = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .and_then(|mut f| f.write_all(data));
    match r {
        Ok(()) => 0,
        Err(e) => unsafe { fail(err, format!("append to {}: {e}", p.display())) },
    }
}

unsafe extern "C" fn close(h: *mut c_void) {
    // SAFETY: `h` came from open; vt closes it once.
    drop(unsafe { Box::from_raw(h as *mut Dir) });
}
