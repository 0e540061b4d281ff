//! Reading and applying file metadata (mode, owner, times, xattrs).

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use vt_core::dirent::{Meta, Timestamp};

/// Caches uid/gid to name look-ups.
#[derive(Default)]
pub struct Names {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: getpwuid_r writes into our buffers; all pointers are valid.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut res);
        if rc != 0 || res.is_null() || pw.pw_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned())
    }
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: getgrgid_r writes into our buffers; all pointers are valid.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut res: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut res);
        if rc != 0 || res.is_null() || gr.gr_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(gr.gr_name).to_string_lossy().into_owned())
    }
}

impl Names {
    fn user(&self, uid: u32) -> Option<String> {
        let mut m = self.users.lock().ok()?;
        m.entry(uid).or_insert_with(|| user_name(uid)).clone()
    }
    fn group(&self, gid: u32) -> Option<String> {
        let mut m = self.groups.lock().ok()?;
        m.entry(gid).or_insert_with(|| group_name(gid)).clone()
    }
}

/// Extended attributes of `path` (not following symlinks), sorted; an
/// unsupported or failing listing gives none.
pub fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names
        .filter_map(|n| {
            let v = xattr::get(path, &n).ok().flatten()?;
            Some((n.as_bytes().to_vec(), v))
        })
        .collect();
    out.sort();
    out
}

/// The Dirent metadata for `md` (of `path`).
pub fn meta_of(path: &Path, md: &Metadata, names: &Names) -> Meta {
    Meta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        user: names.user(md.uid()),
        group: names.group(md.gid()),
        mtime: Timestamp {
            secs: md.mtime(),
            nanos: md.mtime_nsec() as u32,
        },
        ctime: Timestamp {
            secs: md.ctime(),
            nanos: md.ctime_nsec() as u32,
        },
        ino: Some(md.ino()),
        xattrs: read_xattrs(path),
        mime: None,
    }
}

fn cpath(path: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Applies ownership (when permitted), xattrs, mode and mtime to `path`.
/// For symlinks only ownership and times apply.
pub fn apply(path: &Path, m: &Meta, symlink: bool) -> std::io::Result<()> {
    let c = cpath(path)?;
    // Ownership first: chown clears set-id bits. Only root may give files
    // away, so EPERM is not an error for others.
    // SAFETY: valid C string.
    let rc = unsafe { libc::lchown(c.as_ptr(), m.uid, m.gid) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
    }
    if !symlink {
        use std::os::unix::ffi::OsStrExt;
        for (k, v) in &m.xattrs {
            let name = std::ffi::OsStr::from_bytes(k);
            if let Err(e) = xattr::set(path, name, v) {
                tracing::warn!(
                    "{}: cannot set extended attribute {}: {e}",
                    path.display(),
                    name.to_string_lossy()
                );
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.mode))?;
    }
    let t = filetime::FileTime::from_unix_time(m.mtime.secs, m.mtime.nanos);
    filetime::set_symlink_file_times(path, t, t)
}

/// Like [`apply`] for a regular file already open for writing: the calls
/// go through the descriptor, sparing a path lookup each.
pub fn apply_file(file: &std::fs::File, path: &Path, m: &Meta) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: fchown on an owned, open descriptor.
    let rc = unsafe { libc::fchown(file.as_raw_fd(), m.uid, m.gid) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
    }
    {
        use std::os::unix::ffi::OsStrExt;
        use xattr::FileExt;
        for (k, v) in &m.xattrs {
            let name = std::ffi::OsStr::from_bytes(k);
            if let Err(e) = file.set_xattr(name, v) {
                tracing::warn!(
                    "{}: cannot set extended attribute {}: {e}",
                    path.display(),
                    name.to_string_lossy()
                );
            }
        }
    }
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(m.mode))?;
    let t = filetime::FileTime::from_unix_time(m.mtime.secs, m.mtime.nanos);
    filetime::set_file_handle_times(file, Some(t), Some(t))
}
