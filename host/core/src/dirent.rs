//! Directory entries: a name, what it is, and its metadata.

use std::fmt::Write as _;

use uuid::Uuid;

use crate::block::BlockRef;
use crate::codec::{put_bytes, put_uvarint, Reader};
use crate::error::{Error, Result};
use crate::transcribe::{put_str, Fields, Value};

/// Version byte that starts every binary Dirent.
pub const DIRENT_VERSION: u8 = 1;

/// A point in time: seconds since the epoch plus nanoseconds (0..1e9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds added to `secs`.
    pub nanos: u32,
}

impl Timestamp {
    fn text(&self) -> String {
        format!("{}.{:09}", self.secs, self.nanos)
    }

    fn parse(s: &str) -> Result<Self> {
        let bad = || Error::decode("timestamp", format!("{s:?} is not SECS.NANOS"));
        let (a, b) = s.split_once('.').ok_or_else(bad)?;
        let nanos: u32 = b.parse().map_err(|_| bad())?;
        if b.len() != 9 || nanos >= 1_000_000_000 {
            return Err(bad());
        }
        Ok(Timestamp {
            secs: a.parse().map_err(|_| bad())?,
            nanos,
        })
    }
}

/// Kinds of special file, recorded but never read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialKind {
    /// A named pipe.
    Fifo,
    /// A UNIX-domain socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl SpecialKind {
    fn name(self) -> &'static str {
        match self {
            SpecialKind::Fifo => "fifo",
            SpecialKind::Socket => "socket",
            SpecialKind::CharDevice => "chr",
            SpecialKind::BlockDevice => "blk",
        }
    }
    fn id(self) -> u8 {
        match self {
            SpecialKind::Fifo => 1,
            SpecialKind::Socket => 2,
            SpecialKind::CharDevice => 3,
            SpecialKind::BlockDevice => 4,
        }
    }
    fn from_id(i: u8) -> Result<Self> {
        Ok(match i {
            1 => SpecialKind::Fifo,
            2 => SpecialKind::Socket,
            3 => SpecialKind::CharDevice,
            4 => SpecialKind::BlockDevice,
            _ => return Err(Error::decode("Dirent", format!("unknown special kind {i}"))),
        })
    }
    fn from_name(s: &str) -> Result<Self> {
        [
            SpecialKind::Fifo,
            SpecialKind::Socket,
            SpecialKind::CharDevice,
            SpecialKind::BlockDevice,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| Error::decode("Dirent", format!("unknown special kind {s:?}")))
    }
}

/// What a Dirent is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirentKind {
    /// A regular file with the given content.
    File {
        /// The content.
        block: BlockRef,
    },
    /// A directory: `block` holds its encoded entries (see [`crate::dir`]).
    Dir {
        /// The encoded entries.
        block: BlockRef,
        /// At a snapshot's top only: the files that hard links refer to,
        /// encoded like a directory, each Dirent carrying its UUID.
        hardlinks: Option<BlockRef>,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: Vec<u8>,
    },
    /// One name of a hard-linked file, which is kept once in the
    /// snapshot's hard link table under `uuid`.
    HardLink {
        /// The target's UUID.
        uuid: Uuid,
    },
    /// A fifo, socket or device node.
    Special {
        /// Which.
        kind: SpecialKind,
        /// Device number for devices, else 0.
        rdev: u64,
    },
}

/// Metadata of a Dirent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner's numeric id.
    pub uid: u32,
    /// Group's numeric id.
    pub gid: u32,
    /// Owner's name, where known.
    pub user: Option<String>,
    /// Group's name, where known.
    pub group: Option<String>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time (for incremental import).
    pub ctime: Timestamp,
    /// Inode number at import (for incremental import).
    pub ino: Option<u64>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// MIME type, where known.
    pub mime: Option<String>,
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    /// The entry's name (bytes: file names need not be UTF-8).
    pub name: Vec<u8>,
    /// The identity of a hard link target.
    pub uuid: Option<Uuid>,
    /// What it is.
    pub kind: DirentKind,
    /// Its metadata.
    pub meta: Meta,
}

const K_FILE: u8 = 1;
const K_DIR: u8 = 2;
const K_SYMLINK: u8 = 3;
const K_HARDLINK: u8 = 4;
const K_SPECIAL: u8 = 5;

// Metadata field tags; each value is length-prefixed so readers skip tags
// they do not know.
const M_MODE: u64 = 1;
const M_UID: u64 = 2;
const M_GID: u64 = 3;
const M_USER: u64 = 4;
const M_GROUP: u64 = 5;
const M_MTIME: u64 = 6;
const M_CTIME: u64 = 7;
const M_INO: u64 = 8;
const M_XATTR: u64 = 9;
const M_MIME: u64 = 10;
const M_UUID: u64 = 11;
const M_HARDLINKS: u64 = 12;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_field(out: &mut Vec<u8>, tag: u64, f: impl FnOnce(&mut Vec<u8>)) {
    let mut v = Vec::new();
    f(&mut v);
    put_uvarint(out, tag);
    put_bytes(out, &v);
}

fn put_time(out: &mut Vec<u8>, t: Timestamp) {
    put_uvarint(out, zigzag(t.secs));
    put_uvarint(out, u64::from(t.nanos));
}

fn get_time(r: &mut Reader<'_>) -> Result<Timestamp> {
    let secs = unzigzag(r.uvarint()?);
    let nanos = r.uvarint()?;
    if nanos >= 1_000_000_000 {
        return Err(Error::decode("Dirent", "nanoseconds out of range"));
    }
    Ok(Timestamp {
        secs,
        nanos: nanos as u32,
    })
}

fn u32_of(v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::decode("Dirent", format!("{v} does not fit 32 bits")))
}

impl Dirent {
    /// A new Dirent with default metadata.
    pub fn new(name: impl Into<Vec<u8>>, kind: DirentKind) -> Self {
        Dirent {
            name: name.into(),
            uuid: None,
            kind,
            meta: Meta::default(),
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, DirentKind::Dir { .. })
    }

    /// The content of a file or directory.
    pub fn block(&self) -> Option<&BlockRef> {
        match &self.kind {
            DirentKind::File { block } | DirentKind::Dir { block, .. } => Some(block),
            _ => None,
        }
    }

    /// The name as text (lossy for non-UTF-8 names).
    pub fn name_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// Appends the binary form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(DIRENT_VERSION);
        let mut hardlinks = None;
        match &self.kind {
            DirentKind::File { block } => {
                out.push(K_FILE);
                put_bytes(out, &self.name);
                block.encode(out);
            }
            DirentKind::Dir {
                block,
                hardlinks: h,
            } => {
                out.push(K_DIR);
                put_bytes(out, &self.name);
                block.encode(out);
                hardlinks = h.as_ref();
            }
            DirentKind::Symlink { target } => {
                out.push(K_SYMLINK);
                put_bytes(out, &self.name);
                put_bytes(out, target);
            }
            DirentKind::HardLink { uuid } => {
                out.push(K_HARDLINK);
                put_bytes(out, &self.name);
                out.extend_from_slice(uuid.as_bytes());
            }
            DirentKind::Special { kind, rdev } => {
                out.push(K_SPECIAL);
                put_bytes(out, &self.name);
                out.push(kind.id());
                put_uvarint(out, *rdev);
            }
        }
        let m = &self.meta;
        put_field(out, M_MODE, |v| put_uvarint(v, m.mode.into()));
        put_field(out, M_UID, |v| put_uvarint(v, m.uid.into()));
        put_field(out, M_GID, |v| put_uvarint(v, m.gid.into()));
        if let Some(u) = &m.user {
            put_field(out, M_USER, |v| v.extend_from_slice(u.as_bytes()));
        }
        if let Some(g) = &m.group {
            put_field(out, M_GROUP, |v| v.extend_from_slice(g.as_bytes()));
        }
        put_field(out, M_MTIME, |v| put_time(v, m.mtime));
        put_field(out, M_CTIME, |v| put_time(v, m.ctime));
        if let Some(i) = m.ino {
            put_field(out, M_INO, |v| put_uvarint(v, i));
        }
        for (k, x) in &m.xattrs {
            put_field(out, M_XATTR, |v| {
                put_bytes(v, k);
                put_bytes(v, x);
            });
        }
        if let Some(t) = &m.mime {
            put_field(out, M_MIME, |v| v.extend_from_slice(t.as_bytes()));
        }
        if let Some(u) = &self.uuid {
            put_field(out, M_UUID, |v| v.extend_from_slice(u.as_bytes()));
        }
        if let Some(h) = hardlinks {
            put_field(out, M_HARDLINKS, |v| h.encode(v));
        }
        put_uvarint(out, 0);
    }

    /// The binary form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Reads one Dirent from `r`.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let v = r.u8()?;
        if v != DIRENT_VERSION {
            return Err(Error::decode(
                "Dirent",
                format!("format version {v}, this vt reads {DIRENT_VERSION}"),
            ));
        }
        let k = r.u8()?;
        let name = r.bytes()?.to_vec();
        let mut kind = match k {
            K_FILE => DirentKind::File {
                block: BlockRef::decode(r)?,
            },
            K_DIR => DirentKind::Dir {
                block: BlockRef::decode(r)?,
                hardlinks: None,
            },
            K_SYMLINK => DirentKind::Symlink {
                target: r.bytes()?.to_vec(),
            },
            K_HARDLINK => DirentKind::HardLink {
                uuid: Uuid::from_slice(r.take(16)?)
                    .map_err(|e| Error::decode("Dirent", e.to_string()))?,
            },
            K_SPECIAL => DirentKind::Special {
                kind: SpecialKind::from_id(r.u8()?)?,
                rdev: r.uvarint()?,
            },
            _ => return Err(Error::decode("Dirent", format!("unknown kind {k}"))),
        };
        let mut meta = Meta::default();
        let mut uuid = None;
        loop {
            let tag = r.uvarint()?;
            if tag == 0 {
                break;
            }
            let body = r.bytes()?;
            let mut f = Reader::new(body, "Dirent metadata");
            match tag {
                M_MODE => meta.mode = u32_of(f.uvarint()?)?,
                M_UID => meta.uid = u32_of(f.uvarint()?)?,
                M_GID => meta.gid = u32_of(f.uvarint()?)?,
                M_USER => meta.user = Some(utf8(body)?),
                M_GROUP => meta.group = Some(utf8(body)?),
                M_MTIME => meta.mtime = get_time(&mut f)?,
                M_CTIME => meta.ctime = get_time(&mut f)?,
                M_INO => meta.ino = Some(f.uvarint()?),
                M_XATTR => {
                    let k = f.bytes()?.to_vec();
                    meta.xattrs.push((k, f.bytes()?.to_vec()));
                }
                M_MIME => meta.mime = Some(utf8(body)?),
                M_UUID => {
                    uuid = Some(
                        Uuid::from_slice(body)
                            .map_err(|e| Error::decode("Dirent", e.to_string()))?,
                    )
                }
                M_HARDLINKS => {
                    if let DirentKind::Dir { hardlinks, .. } = &mut kind {
                        *hardlinks = Some(BlockRef::decode(&mut f)?);
                    }
                }
                _ => {} // a newer writer's field: skip it
            }
        }
        Ok(Dirent {
            name,
            uuid,
            kind,
            meta,
        })
    }

    /// Parses the binary form, which must be the whole of `b`.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "Dirent");
        let d = Self::decode(&mut r)?;
        if !r.is_empty() {
            return Err(Error::decode("Dirent", "trailing bytes"));
        }
        Ok(d)
    }

    /// The one-line text form, e.g. `D{name:"src",block:I{…},meta:{…}}`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let tag = match &self.kind {
            DirentKind::File { .. } => "F",
            DirentKind::Dir { .. } => "D",
            DirentKind::Symlink { .. } => "SymLink",
            DirentKind::HardLink { .. } => "HardLink",
            DirentKind::Special { .. } => "Special",
        };
        s.push_str(tag);
        s.push_str("{name:");
        put_str(&mut s, &self.name);
        match &self.kind {
            DirentKind::File { block } => {
                s.push_str(",block:");
                block.transcribe(&mut s);
            }
            DirentKind::Dir { block, hardlinks } => {
                s.push_str(",block:");
                block.transcribe(&mut s);
                if let Some(h) = hardlinks {
                    s.push_str(",hardlinks:");
                    h.transcribe(&mut s);
                }
            }
            DirentKind::Symlink { target } => {
                s.push_str(",target:");
                put_str(&mut s, target);
            }
            DirentKind::HardLink { uuid } => {
                let _ = write!(s, ",target:{uuid}");
            }
            DirentKind::Special { kind, rdev } => {
                let _ = write!(s, ",type:{},rdev:{rdev}", kind.name());
            }
        }
        if let Some(u) = &self.uuid {
            let _ = write!(s, ",uuid:{u}");
        }
        let m = &self.meta;
        let _ = write!(s, ",meta:{{mode:{:o},uid:{},gid:{}", m.mode, m.uid, m.gid);
        if let Some(u) = &m.user {
            s.push_str(",user:");
            put_str(&mut s, u.as_bytes());
        }
        if let Some(g) = &m.group {
            s.push_str(",group:");
            put_str(&mut s, g.as_bytes());
        }
        let _ = write!(s, ",mtime:{},ctime:{}", m.mtime.text(), m.ctime.text());
        if let Some(i) = m.ino {
            let _ = write!(s, ",ino:{i}");
        }
        if !m.xattrs.is_empty() {
            s.push_str(",xattrs:[");
            for (i, (k, v)) in m.xattrs.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push('[');
                put_str(&mut s, k);
                s.push(',');
                put_str(&mut s, v);
                s.push(']');
            }
            s.push(']');
        }
        if let Some(t) = &m.mime {
            s.push_str(",mime:");
            put_str(&mut s, t.as_bytes());
        }
        s.push_str("}}");
        s
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<Self> {
        Self::from_value(&crate::transcribe::parse(s)?)
    }

    /// Converts a parsed transcription.
    pub fn from_value(v: &Value) -> Result<Self> {
        let Value::Tagged(tag, fields) = v else {
            return Err(Error::decode(
                "Dirent",
                "expected F{…}, D{…}, SymLink{…}, …",
            ));
        };
        let f = Fields::new("Dirent", fields);
        let name = f.bytes("name")?.to_vec();
        let uuid_of = |v: &Value| -> Result<Uuid> {
            Uuid::parse_str(v.as_token("Dirent")?)
                .map_err(|e| Error::decode("Dirent", format!("bad UUID: {e}")))
        };
        let kind = match tag.as_str() {
            "F" => DirentKind::File {
                block: BlockRef::from_value(f.req("block")?)?,
            },
            "D" => DirentKind::Dir {
                block: BlockRef::from_value(f.req("block")?)?,
                hardlinks: f.get("hardlinks").map(BlockRef::from_value).transpose()?,
            },
            "SymLink" => DirentKind::Symlink {
                target: f.bytes("target")?.to_vec(),
            },
            "HardLink" => DirentKind::HardLink {
                uuid: uuid_of(f.req("target")?)?,
            },
            "Special" => DirentKind::Special {
                kind: SpecialKind::from_name(f.req("type")?.as_token("Dirent")?)?,
                rdev: f.u64("rdev")?,
            },
            t => return Err(Error::decode("Dirent", format!("unknown tag {t:?}"))),
        };
        let uuid = f.get("uuid").map(uuid_of).transpose()?;
        let mut meta = Meta::default();
        if let Some(Value::Map(mf)) = f.get("meta") {
            let m = Fields::new("Dirent metadata", mf);
            let mode = m.req("mode")?.as_token("Dirent metadata")?;
            meta.mode = u32::from_str_radix(mode, 8)
                .map_err(|_| Error::decode("Dirent metadata", format!("bad mode {mode:?}")))?;
            meta.uid = u32_of(m.u64("uid")?)?;
            meta.gid = u32_of(m.u64("gid")?)?;
            meta.user = m.get("user").map(|v| v.as_string("user")).transpose()?;
            meta.group = m.get("group").map(|v| v.as_string("group")).transpose()?;
            meta.mtime = Timestamp::parse(m.req("mtime")?.as_token("mtime")?)?;
            meta.ctime = Timestamp::parse(m.req("ctime")?.as_token("ctime")?)?;
            meta.ino = m.opt_u64("ino")?;
            if let Some(Value::List(xs)) = m.get("xattrs") {
                for x in xs {
                    match x {
                        Value::List(kv) if kv.len() == 2 => meta.xattrs.push((
                            kv[0].as_bytes("xattr")?.to_vec(),
                            kv[1].as_bytes("xattr")?.to_vec(),
                        )),
                        _ => return Err(Error::decode("xattr", "expected [name,value]")),
                    }
                }
            }
            meta.mime = m.get("mime").map(|v| v.as_string("mime")).transpose()?;
        }
        Ok(Dirent {
            name,
            uuid,
            kind,
            meta,
        })
    }
}

fn utf8(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::decode("Dirent", "text field is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashKind;
    use proptest::prelude::*;

    fn arb_dirent() -> impl Strategy<Value = Dirent> {
        let kind = prop_oneof![
            any::<u64>().prop_map(|s| DirentKind::File {
                block: BlockRef::Direct {
                    hash: HashKind::Sha3_256.digest(&s.to_le_bytes()),
                    span: s
                }
            }),
            any::<bool>().prop_map(|h| DirentKind::Dir {
                block: BlockRef::Literal(vec![1, 2]),
                hardlinks: h.then_some(BlockRef::Rle { span: 5, octet: 1 }),
            }),
            proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|target| DirentKind::Symlink { target }),
            any::<u128>().prop_map(|u| DirentKind::HardLink {
                uuid: Uuid::from_u128(u)
            }),
            (any::<u64>()).prop_map(|rdev| DirentKind::Special {
                kind: SpecialKind::CharDevice,
                rdev
            }),
        ];
        (
            proptest::collection::vec(any::<u8>(), 0..30),
            kind,
            any::<(u32, u32, u32, i64, u32, Option<u64>)>(),
            proptest::option::of("[a-z]{0,8}"),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..8),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ),
                0..3,
            ),
            proptest::option::of(any::<u128>()),
        )
            .prop_map(
                |(name, kind, (mode, uid, gid, secs, nanos, ino), user, xattrs, uuid)| Dirent {
                    name,
                    uuid: uuid.map(Uuid::from_u128),
                    kind,
                    meta: Meta {
                        mode: mode & 0o7777,
                        uid,
                        gid,
                        user: user.clone(),
                        group: user,
                        mtime: Timestamp {
                            secs,
                            nanos: nanos % 1_000_000_000,
                        },
                        ctime: Timestamp::default(),
                        ino,
                        xattrs,
                        mime: Some("text/plain".into()),
                    },
                },
            )
    }

    proptest! {
        #[test]
        fn binary_roundtrip(d in arb_dirent()) {
            prop_assert_eq!(Dirent::from_bytes(&d.to_bytes()).unwrap(), d);
        }

        #[test]
        fn text_roundtrip(d in arb_dirent()) {
            prop_assert_eq!(Dirent::parse(&d.to_text()).unwrap(), d);
        }

        #[test]
        fn decode_never_panics(b: Vec<u8>) {
            let _ = Dirent::from_bytes(&b);
        }
    }
}
