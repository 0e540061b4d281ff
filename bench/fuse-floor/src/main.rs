//! `fuse-floor MOUNTPOINT MIB`: mounts a read-only FUSE filesystem holding
//! one file, `large.bin`, of MIB MiB served from memory (no store, no
//! decompression, no checksum), with the settings `vt mount -r` uses: 4
//! request threads on cloned descriptors, 1 MiB reads and read-ahead,
//! no OPEN. Reading it through the kernel measures what FUSE itself costs
//! on this machine: no FUSE filesystem can serve a file faster.
//! Runs until unmounted (`fusermount3 -u MOUNTPOINT`).

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, KernelConfig,
    LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request,
};

const TTL: Duration = Duration::from_secs(60);
const FILE: u64 = 2;

struct Floor {
    data: Vec<u8>,
}

impl Floor {
    fn attr(&self, ino: u64) -> FileAttr {
        let dir = ino == 1;
        FileAttr {
            ino: INodeNo(ino),
            size: if dir { 4096 } else { self.data.len() as u64 },
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: if dir { FileType::Directory } else { FileType::RegularFile },
            perm: if dir { 0o755 } else { 0o644 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_NO_OPEN_SUPPORT);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == 1 && name == "large.bin" {
            reply.entry(&TTL, &self.attr(FILE), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            1 | FILE => reply.attr(&TTL, &self.attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let a = (offset as usize).min(self.data.len());
        let b = (a + size as usize).min(self.data.len());
        reply.data(&self.data[a..b]);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = [
            (1, FileType::Directory, "."),
            (1, FileType::Directory, ".."),
            (FILE, FileType::RegularFile, "large.bin"),
        ];
        if ino.0 != 1 {
            reply.error(Errno::ENOTDIR);
            return;
        }
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: fuse-floor MOUNTPOINT MIB");
        std::process::exit(2);
    }
    let mib: usize = args[2].parse().expect("MIB: a number");
    // Touched once, so that no page fault of ours is measured.
    let data: Vec<u8> = (0..mib << 20).map(|i| (i * 7 + (i >> 12)) as u8).collect();
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![MountOption::FSName("floor".into()), MountOption::RO];
    cfg.n_threads = Some(4);
    cfg.clone_fd = true;
    let point = Path::new(&args[1]);
    let session = fuser::Session::new(Floor { data }, point, &cfg).expect("mount");
    eprintln!("fuse-floor: serving {mib} MiB on {}", point.display());
    session.run().expect("serve");
}
