//! `x-vt:` URIs, and block refs written as one URL path segment.
//!
//! A URI names a path inside a directory tree by the directory's block
//! ref, optionally on a server (`vt httpd`) that holds its blocks:
//!
//! ```text
//! x-vt:[//HOST[:PORT]]/BLOCKREF[/PATH]
//! ```
//!
//! BLOCKREF is the directory's entries block in its URL form
//! ([`UrlRef`]): `h:KIND:HEX` for entries in one stored block,
//! `i:KIND:HEX` for entries spread under an indirect block (the
//! reference's `/h/` and `/i/`), or any block ref's text form,
//! percent-encoded. PATH names an entry below it, its components
//! percent-encoded (names are bytes, not always UTF-8). `vt httpd` serves
//! the same tree at `http://HOST:PORT/d/BLOCKREF/PATH`.

use crate::block::BlockRef;
use crate::error::{Error, Result};
use crate::hash::{Hash, HashKind};
use crate::store::Store;

/// The URI scheme.
pub const SCHEME: &str = "x-vt";

/// A block ref as written in a URL path segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlRef {
    /// A stored block, direct (`h:`) or indirect (`i:`); its span is found
    /// by reading it ([`UrlRef::resolve`]).
    Hashed {
        /// The block's hashcode.
        hash: Hash,
        /// Whether the block is an indirect block.
        indirect: bool,
    },
    /// A whole block ref (its text form in the URL).
    Full(BlockRef),
}

fn bad(what: &'static str, why: impl std::fmt::Display) -> Error {
    Error::decode(what, why.to_string())
}

impl UrlRef {
    /// Parses a segment (already percent-decoded).
    pub fn parse(seg: &str) -> Result<Self> {
        let short = |indirect: bool, rest: &str| -> Result<UrlRef> {
            let (kind, hex) = rest
                .split_once(':')
                .ok_or_else(|| bad("URL block ref", format!("{seg:?}: expected KIND:HEX")))?;
            let kind: HashKind = kind.parse()?;
            Ok(UrlRef::Hashed {
                hash: Hash::from_kind_hex(kind, hex)?,
                indirect,
            })
        };
        if let Some(rest) = seg.strip_prefix("h:") {
            short(false, rest)
        } else if let Some(rest) = seg.strip_prefix("i:") {
            short(true, rest)
        } else if seg.contains('{') {
            Ok(UrlRef::Full(BlockRef::parse(seg)?))
        } else {
            Err(bad(
                "URL block ref",
                format!("{seg:?}: expected h:KIND:HEX, i:KIND:HEX or a block ref's text"),
            ))
        }
    }

    /// The URL form of `r`: the short form for a stored block, else the
    /// text form.
    pub fn of(r: &BlockRef) -> Self {
        match r {
            BlockRef::Direct { hash, .. } => UrlRef::Hashed {
                hash: *hash,
                indirect: false,
            },
            BlockRef::Indirect { hash, .. } => UrlRef::Hashed {
                hash: *hash,
                indirect: true,
            },
            r => UrlRef::Full(r.clone()),
        }
    }

    /// The segment, percent-encoded.
    pub fn to_segment(&self) -> String {
        match self {
            UrlRef::Hashed { hash, indirect } => format!(
                "{}:{}:{}",
                if *indirect { "i" } else { "h" },
                hash.kind,
                hash.hex()
            ),
            UrlRef::Full(r) => encode_segment(r.to_text().as_bytes()),
        }
    }

    /// The block ref, its span found by reading the block when the URL did
    /// not give it.
    pub fn resolve(&self, store: &dyn Store) -> Result<BlockRef> {
        match self {
            UrlRef::Full(r) => Ok(r.clone()),
            UrlRef::Hashed {
                hash,
                indirect: false,
            } => Ok(BlockRef::Direct {
                hash: *hash,
                span: store.fetch(hash)?.len() as u64,
            }),
            UrlRef::Hashed {
                hash,
                indirect: true,
            } => {
                // The span is what the children add up to.
                let refs = crate::block::decode_indirect(&store.fetch(hash)?)?;
                Ok(BlockRef::Indirect {
                    hash: *hash,
                    span: refs.iter().map(BlockRef::span).sum(),
                })
            }
        }
    }
}

/// A parsed `x-vt:` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VtUri {
    /// `HOST[:PORT]` of a `vt httpd` holding the blocks, if given.
    pub authority: Option<String>,
    /// The directory the path starts in.
    pub dir: UrlRef,
    /// The path's components, decoded (empty: the directory itself).
    pub path: Vec<Vec<u8>>,
}

impl VtUri {
    /// True if `s` looks like an `x-vt:` URI (so that a caller can tell it
    /// from an archive name).
    pub fn is_uri(s: &str) -> bool {
        s.len() > SCHEME.len() && s[..SCHEME.len() + 1].eq_ignore_ascii_case("x-vt:")
    }

    /// Parses `x-vt:[//HOST[:PORT]]/BLOCKREF[/PATH]`.
    pub fn parse(s: &str) -> Result<Self> {
        if !Self::is_uri(s) {
            return Err(bad("x-vt URI", format!("{s:?}: does not start with x-vt:")));
        }
        let rest = &s[SCHEME.len() + 1..];
        let (authority, rest) = match rest.strip_prefix("//") {
            Some(r) => {
                let (host, path) = r.split_at(r.find('/').unwrap_or(r.len()));
                if host.is_empty() {
                    (None, path)
                } else {
                    (Some(host.to_owned()), path)
                }
            }
            None => (None, rest),
        };
        let mut segs = rest.trim_start_matches('/').split('/');
        let first = segs.next().unwrap_or("");
        if first.is_empty() {
            return Err(bad("x-vt URI", format!("{s:?}: no block ref after x-vt:")));
        }
        let first = String::from_utf8(decode(first)?)
            .map_err(|_| bad("x-vt URI", format!("{s:?}: block ref is not UTF-8")))?;
        let dir = UrlRef::parse(&first)?;
        let mut path = Vec::new();
        for seg in segs {
            let p = decode(seg)?;
            match p.as_slice() {
                b"" | b"." => {}
                b".." => {
                    return Err(bad("x-vt URI", format!("{s:?}: \"..\" in the path")));
                }
                _ if p.contains(&b'/') || p.contains(&0) => {
                    return Err(bad("x-vt URI", format!("{s:?}: bad character in a name")));
                }
                _ => path.push(p),
            }
        }
        Ok(VtUri {
            authority,
            dir,
            path,
        })
    }

    /// The path, its components joined by `/`, percent-encoded.
    pub fn path_text(&self) -> String {
        self.path
            .iter()
            .map(|p| encode_segment(p))
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl std::fmt::Display for VtUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}:")?;
        if let Some(a) = &self.authority {
            write!(f, "//{a}")?;
        }
        write!(f, "/{}", self.dir.to_segment())?;
        if !self.path.is_empty() {
            write!(f, "/{}", self.path_text())?;
        }
        Ok(())
    }
}

/// Percent-encodes `b` for one path segment: everything but unreserved
/// characters and `:` (which block refs use and a segment may hold).
pub fn encode_segment(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~:".contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is an
/// error.
pub fn decode(s: &str) -> Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("URL", format!("{s:?}: bad %-escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Hash {
        HashKind::Sha3_256.digest(b"dir")
    }

    #[test]
    fn uri_round_trips() {
        let u = VtUri {
            authority: Some("127.0.0.1:8470".into()),
            dir: UrlRef::Hashed {
                hash: h(),
                indirect: true,
            },
            path: vec![b"a b".to_vec(), vec![0xff, b'x'], b"c.txt".to_vec()],
        };
        let text = u.to_string();
        assert!(
            text.starts_with("x-vt://127.0.0.1:8470/i:sha3_256:"),
            "{text}"
        );
        assert!(text.ends_with("/a%20b/%FFx/c.txt"), "{text}");
        assert_eq!(VtUri::parse(&text).unwrap(), u);
        let local = VtUri {
            authority: None,
            ..u
        };
        assert_eq!(VtUri::parse(&local.to_string()).unwrap(), local);
    }

    #[test]
    fn full_refs_and_errors() {
        let r = BlockRef::Literal(b"xyz".to_vec());
        let seg = UrlRef::of(&r).to_segment();
        let uri = format!("x-vt:/{seg}/f");
        let u = VtUri::parse(&uri).unwrap();
        assert_eq!(u.dir, UrlRef::Full(r));
        assert_eq!(u.path, vec![b"f".to_vec()]);
        for bad in [
            "x-vt:",
            "x-vt://host",
            "x-vt:/zz",
            "x-vt:/h:sha3_256:00",
            "x-vt:/h:md5:00",
            "x-vt:/h:sha3_256:%zz",
            "vt:/h:x",
        ] {
            assert!(VtUri::parse(bad).is_err(), "{bad}");
        }
        let dotdot = format!("x-vt:/h:sha3_256:{}/../etc", h().hex());
        assert!(VtUri::parse(&dotdot).is_err());
    }

    /// Blocks in a map: enough of a store to resolve refs.
    #[derive(Default)]
    struct MapStore(std::sync::Mutex<std::collections::HashMap<Hash, Vec<u8>>>);

    impl Store for MapStore {
        fn hash_kind(&self) -> HashKind {
            HashKind::Sha3_256
        }
        fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .insert(*hash, data.to_vec())
                .is_none())
        }
        fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
            Ok(self.0.lock().unwrap().get(hash).cloned())
        }
        fn contains(&self, hash: &Hash) -> Result<bool> {
            Ok(self.0.lock().unwrap().contains_key(hash))
        }
        fn sync(&self) -> Result<()> {
            Ok(())
        }
        fn stats(&self) -> Result<crate::store::StoreStats> {
            Ok(Default::default())
        }
    }

    #[test]
    fn resolve_finds_spans() {
        let store = MapStore::default();
        let (a, _) = store.add(b"hello").unwrap();
        let (b, _) = store.add(b" world").unwrap();
        let ind = crate::block::encode_indirect(&[
            BlockRef::Direct { hash: a, span: 5 },
            BlockRef::Direct { hash: b, span: 6 },
        ]);
        let (i, _) = store.add(&ind).unwrap();
        let got = UrlRef::Hashed {
            hash: i,
            indirect: true,
        }
        .resolve(&store)
        .unwrap();
        assert_eq!(got, BlockRef::Indirect { hash: i, span: 11 });
        let got = UrlRef::Hashed {
            hash: a,
            indirect: false,
        }
        .resolve(&store)
        .unwrap();
        assert_eq!(got, BlockRef::Direct { hash: a, span: 5 });
    }
}
