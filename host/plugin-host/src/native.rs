//! Native store schemes: shared libraries loaded with `libloading`
//! through a small versioned C ABI. They run with all of vt's rights, so
//! vt loads one only when its vtrc clause says `trust = "native"`.
//!
//! A library exports two functions:
//!
//! ```c
//! uint32_t vt_store_plugin_abi(void);              /* VT_STORE_ABI: 1 */
//! const struct vt_store_plugin_v1 *vt_store_plugin_v1(void);
//! ```
//!
//! and the table ([`VtStorePluginV1`]) holds its name, version and
//! functions. Every function may be called from several threads at once.
//! Results: 1 yes/new/found, 0 no/held/absent, -1 an error whose message
//! the function wrote into `err`. Bytes a function returns ([`VtBuf`])
//! come with the library's own function to free them. `vt-plugin.7`
//! gives the C declarations.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use vt_core::store::StoreStats;
use vt_core::{Error as CoreError, Hash, HashKind, Result as CoreResult};

use crate::{Error, Result};

/// The ABI version this vt loads.
pub const VT_STORE_ABI: u32 = 1;

/// A setting of the clause: NUL-terminated key and value.
#[repr(C)]
pub struct VtKv {
    /// The key.
    pub key: *const c_char,
    /// Its value, as text.
    pub value: *const c_char,
}

/// Bytes handed from the library to vt: the library sets `data`, `len`
/// and `free`, which vt calls once it has copied them.
#[repr(C)]
pub struct VtBuf {
    /// The bytes (null: none).
    pub data: *mut u8,
    /// How many.
    pub len: usize,
    /// Frees `data`.
    pub free: Option<unsafe extern "C" fn(*mut u8, usize)>,
}

impl VtBuf {
    fn empty() -> Self {
        VtBuf {
            data: std::ptr::null_mut(),
            len: 0,
            free: None,
        }
    }

    /// Copies the bytes out and frees them.
    fn take(mut self) -> Vec<u8> {
        let v = if self.data.is_null() {
            Vec::new()
        } else {
            // SAFETY: the library promises `len` bytes at `data`.
            unsafe { std::slice::from_raw_parts(self.data, self.len) }.to_vec()
        };
        self.release();
        v
    }

    fn release(&mut self) {
        if let (Some(f), false) = (self.free, self.data.is_null()) {
            // SAFETY: the library's own free for its own buffer, once.
            unsafe { f(self.data, self.len) };
        }
        self.data = std::ptr::null_mut();
    }
}

impl Drop for VtBuf {
    fn drop(&mut self) {
        self.release();
    }
}

/// The function table of ABI version 1.
#[repr(C)]
pub struct VtStorePluginV1 {
    /// [`VT_STORE_ABI`] again, as a check.
    pub abi: u32,
    /// The scheme's name (vtrc's `type`), NUL-terminated.
    pub name: *const c_char,
    /// The library's version, NUL-terminated.
    pub version: *const c_char,
    /// Opens a store from `n` settings and the directory `preopen` (null
    /// if none); null on error.
    pub open: unsafe extern "C" fn(
        config: *const VtKv,
        n: usize,
        preopen: *const c_char,
        err: *mut VtBuf,
    ) -> *mut c_void,
    /// Block `hash` into `out`: 1 found, 0 absent, -1 error.
    pub get: unsafe extern "C" fn(
        h: *mut c_void,
        hash: *const c_char,
        out: *mut VtBuf,
        err: *mut VtBuf,
    ) -> i32,
    /// Stores `len` bytes as block `hash`: 1 new, 0 held, -1 error.
    pub put: unsafe extern "C" fn(
        h: *mut c_void,
        hash: *const c_char,
        data: *const u8,
        len: usize,
        err: *mut VtBuf,
    ) -> i32,
    /// Whether block `hash` is held: 1, 0, -1 error.
    pub contains: unsafe extern "C" fn(h: *mut c_void, hash: *const c_char, err: *mut VtBuf) -> i32,
    /// Makes what was put durable: 0, -1 error.
    pub flush: unsafe extern "C" fn(h: *mut c_void, err: *mut VtBuf) -> i32,
    /// The archives' names, one a line, into `out`: 0, -1 error.
    pub archive_names:
        unsafe extern "C" fn(h: *mut c_void, out: *mut VtBuf, err: *mut VtBuf) -> i32,
    /// Archive `name` into `out`: 1 found, 0 absent, -1 error.
    pub archive_read: unsafe extern "C" fn(
        h: *mut c_void,
        name: *const c_char,
        out: *mut VtBuf,
        err: *mut VtBuf,
    ) -> i32,
    /// Appends `len` bytes of whole lines to archive `name`: 0, -1 error.
    pub archive_append: unsafe extern "C" fn(
        h: *mut c_void,
        name: *const c_char,
        data: *const u8,
        len: usize,
        err: *mut VtBuf,
    ) -> i32,
    /// Closes the store (after a flush).
    pub close: unsafe extern "C" fn(h: *mut c_void),
}

/// A loaded native library.
pub struct NativeLibrary {
    table: *const VtStorePluginV1,
    path: PathBuf,
    name: String,
    version: String,
    /// Declared last: unloaded after everything that points into it.
    _lib: libloading::Library,
}

// SAFETY: the table is immutable and the ABI requires its functions to be
// callable from any thread.
unsafe impl Send for NativeLibrary {}
unsafe impl Sync for NativeLibrary {}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the library promises NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl NativeLibrary {
    /// Loads the library at `path`, checking its ABI version.
    pub fn load(path: &Path) -> Result<NativeLibrary> {
        let label = path.display().to_string();
        let bad = |detail: String| Error::Invalid {
            plugin: label.clone(),
            detail,
        };
        // SAFETY: loading runs the library's initialisers: what
        // `trust = "native"` accepts.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| bad(format!("cannot load it: {e}")))?;
        // SAFETY: the symbols' types are the ABI's.
        let table = unsafe {
            let abi: libloading::Symbol<unsafe extern "C" fn() -> u32> = lib
                .get(b"vt_store_plugin_abi\0")
                .map_err(|_| bad("it is not a vt store library (no vt_store_plugin_abi)".into()))?;
            let v = abi();
            if v != VT_STORE_ABI {
                return Err(bad(format!(
                    "it implements vt store ABI version {v}, but this vt loads version {VT_STORE_ABI}"
                )));
            }
            let f: libloading::Symbol<unsafe extern "C" fn() -> *const VtStorePluginV1> = lib
                .get(b"vt_store_plugin_v1\0")
                .map_err(|_| bad("it lacks vt_store_plugin_v1".into()))?;
            f()
        };
        if table.is_null() {
            return Err(bad("vt_store_plugin_v1 returned no table".into()));
        }
        // SAFETY: checked non-null; the library keeps it for its lifetime.
        let t = unsafe { &*table };
        if t.abi != VT_STORE_ABI {
            return Err(bad(format!(
                "its table is of vt store ABI version {}, but this vt loads version {VT_STORE_ABI}",
                t.abi
            )));
        }
        Ok(NativeLibrary {
            table,
            path: path.to_path_buf(),
            name: text(t.name),
            version: text(t.version),
            _lib: lib,
        })
    }

    /// The scheme it provides.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its version.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn t(&self) -> &VtStorePluginV1 {
        // SAFETY: checked at load; lives as long as the library.
        unsafe { &*self.table }
    }

    /// Opens a store with `config` and directory `preopen`.
    pub fn open(
        self: &std::sync::Arc<Self>,
        config: &[(String, String)],
        preopen: Option<&Path>,
        kind: HashKind,
    ) -> CoreResult<NativeStore> {
        let name = format!("{} store (native {})", self.name, self.path.display());
        let cs = |s: &str| {
            CString::new(s)
                .map_err(|_| CoreError::Store(format!("{name}: a setting holds a NUL byte")))
        };
        let keys: Vec<CString> = config
            .iter()
            .map(|(k, _)| cs(k))
            .collect::<CoreResult<_>>()?;
        let values: Vec<CString> = config
            .iter()
            .map(|(_, v)| cs(v))
            .collect::<CoreResult<_>>()?;
        let kv: Vec<VtKv> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| VtKv {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        let pre = preopen.map(|p| cs(&p.display().to_string())).transpose()?;
        let mut err = VtBuf::empty();
        // SAFETY: the ABI's open, with valid pointers for the call.
        let h = unsafe {
            (self.t().open)(
                kv.as_ptr(),
                kv.len(),
                pre.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
                &mut err,
            )
        };
        if h.is_null() {
            return Err(CoreError::Store(format!(
                "{name}: {}",
                String::from_utf8_lossy(&err.take())
            )));
        }
        Ok(NativeStore {
            lib: self.clone(),
            handle: h,
            name,
            kind,
        })
    }
}

/// A store kept by a native library.
pub struct NativeStore {
    lib: std::sync::Arc<NativeLibrary>,
    handle: *mut c_void,
    name: String,
    kind: HashKind,
}

// SAFETY: the ABI requires a store's functions to be callable from any
// thread at once.
unsafe impl Send for NativeStore {}
unsafe impl Sync for NativeStore {}

impl NativeStore {
    /// How messages name the store.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Interprets result `r` of call `what` (-1: the message in `err`).
    fn check(&self, what: &str, r: i32, err: VtBuf) -> CoreResult<i32> {
        if r < 0 {
            return Err(CoreError::Store(format!(
                "{}: {what}: {}",
                self.name,
                String::from_utf8_lossy(&err.take())
            )));
        }
        Ok(r)
    }

    fn cstr(&self, s: &str) -> CoreResult<CString> {
        CString::new(s)
            .map_err(|_| CoreError::Store(format!("{}: a name holds a NUL byte", self.name)))
    }
}

impl vt_core::Store for NativeStore {
    fn hash_kind(&self) -> HashKind {
        self.kind
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> CoreResult<bool> {
        let h = self.cstr(&hash.to_string())?;
        let mut err = VtBuf::empty();
        // SAFETY: the ABI's put, with valid pointers for the call.
        let r = unsafe {
            (self.lib.t().put)(self.handle, h.as_ptr(), data.as_ptr(), data.len(), &mut err)
        };
        Ok(self.check("put", r, err)? == 1)
    }

    fn get(&self, hash: &Hash) -> CoreResult<Option<Vec<u8>>> {
        let h = self.cstr(&hash.to_string())?;
        let (mut out, mut err) = (VtBuf::empty(), VtBuf::empty());
        // SAFETY: the ABI's get, with valid pointers for the call.
        let r = unsafe { (self.lib.t().get)(self.handle, h.as_ptr(), &mut out, &mut err) };
        if self.check("get", r, err)? == 0 {
            return Ok(None);
        }
        crate::store::checked(hash, &self.name, "library", Some(out.take()))
    }

    fn contains(&self, hash: &Hash) -> CoreResult<bool> {
        let h = self.cstr(&hash.to_string())?;
        let mut err = VtBuf::empty();
        // SAFETY: the ABI's contains.
        let r = unsafe { (self.lib.t().contains)(self.handle, h.as_ptr(), &mut err) };
        Ok(self.check("contains", r, err)? == 1)
    }

    fn sync(&self) -> CoreResult<()> {
        let mut err = VtBuf::empty();
        // SAFETY: the ABI's flush.
        let r = unsafe { (self.lib.t().flush)(self.handle, &mut err) };
        self.check("flush", r, err).map(|_| ())
    }

    fn stats(&self) -> CoreResult<StoreStats> {
        Ok(StoreStats::default())
    }

    fn archive_names(&self) -> CoreResult<Vec<String>> {
        let (mut out, mut err) = (VtBuf::empty(), VtBuf::empty());
        // SAFETY: the ABI's archive_names.
        let r = unsafe { (self.lib.t().archive_names)(self.handle, &mut out, &mut err) };
        self.check("archive-names", r, err)?;
        let text = String::from_utf8_lossy(&out.take()).into_owned();
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn archive_read(&self, name: &str) -> CoreResult<Option<Vec<u8>>> {
        let n = self.cstr(name)?;
        let (mut out, mut err) = (VtBuf::empty(), VtBuf::empty());
        // SAFETY: the ABI's archive_read.
        let r = unsafe { (self.lib.t().archive_read)(self.handle, n.as_ptr(), &mut out, &mut err) };
        Ok((self.check("archive-read", r, err)? == 1).then(|| out.take()))
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> CoreResult<()> {
        let n = self.cstr(name)?;
        let mut err = VtBuf::empty();
        // SAFETY: the ABI's archive_append.
        let r = unsafe {
            (self.lib.t().archive_append)(
                self.handle,
                n.as_ptr(),
                lines.as_ptr(),
                lines.len(),
                &mut err,
            )
        };
        self.check("archive-append", r, err).map(|_| ())
    }
}

impl Drop for NativeStore {
    fn drop(&mut self) {
        use vt_core::Store as _;
        let _ = self.sync();
        // SAFETY: the handle came from this library's open, closed once.
        unsafe { (self.lib.t().close)(self.handle) };
    }
}
