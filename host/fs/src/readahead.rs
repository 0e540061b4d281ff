//! The mount's kernel read-ahead window.
//!
//! A FUSE filesystem asks for a read-ahead window at `init`, but the kernel
//! caps it at the backing device's `read_ahead_kb`, which starts at 128 KiB
//! for every new FUSE mount. With that window `cat` of a 1 GiB file sends
//! 4,096 READs of 256 KiB, and no READ is outstanding for a third of the
//! time; with 1 MiB (what `init` asks for) it sends 1,026 of 1 MiB, and a
//! cold read took 0.81 s instead of 0.86 s (means of eight interleaved
//! runs each; bench/mount.sh's large file). Only root may raise the
//! window, so for other users the mount keeps the kernel's default.

use std::fs;
use std::path::Path;

/// The window asked for at `init` and set on the mount, in KiB.
pub const WINDOW_KB: u32 = 1024;

/// `MAJOR:MINOR` of the filesystem mounted at `mountpoint`, from this
/// process's mount table (not by a `stat`, which the mount would have to
/// answer itself). The last mount on that path wins: it is the visible one.
pub fn mount_device(mountinfo: &str, mountpoint: &Path) -> Option<String> {
    let want = mountpoint.to_str()?;
    mountinfo.lines().rev().find_map(|line| {
        let mut f = line.split(' ');
        let dev = f.nth(2)?;
        let _root = f.next()?;
        let point = f.next()?;
        (unescape(point) == want).then(|| dev.to_string())
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sets the read-ahead window of the FUSE mount at `mountpoint` to `kb`
/// KiB. Fails (and changes nothing) when the mount is not found or the
/// window may not be changed (not root).
pub fn set_window(mountpoint: &Path, kb: u32) -> std::io::Result<()> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let dev = mount_device(&info, mountpoint).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not in the mount table", mountpoint.display()),
        )
    })?;
    fs::write(
        format!("/sys/class/bdi/{dev}/read_ahead_kb"),
        kb.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
97 22 0:39 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:50 - fuse.vt vt rw,user_id=0
98 22 0:40 / /tmp/m rw,nosuid shared:51 - fuse.vt vt rw
99 22 0:41 / /tmp/m rw,nosuid shared:52 - fuse.vt vt rw
";

    #[test]
    fn the_device_of_a_mountpoint_is_the_last_mount_on_it() {
        assert_eq!(
            mount_device(INFO, Path::new("/tmp/m")).as_deref(),
            Some("0:41")
        );
        assert_eq!(mount_device(INFO, Path::new("/")).as_deref(), Some("254:0"));
        assert_eq!(mount_device(INFO, Path::new("/tmp/x")), None);
    }

    #[test]
    fn escaped_mountpoints_are_matched() {
        assert_eq!(
            mount_device(INFO, Path::new("/tmp/a b")).as_deref(),
            Some("0:39")
        );
        assert_eq!(unescape("a\\134b\\"), "a\\b\\");
    }
}
