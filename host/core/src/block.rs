//! Block references: how vt names a span of bytes.
//!
//! A file's content is one [`BlockRef`]. Small content is inlined
//! ([`BlockRef::Literal`]), runs of one byte are [`BlockRef::Rle`], a stored
//! block is [`BlockRef::Direct`], and larger content is a tree of
//! [`BlockRef::Indirect`] blocks whose data is a sequence of encoded refs.

use std::fmt::Write as _;

use crate::codec::{put_bytes, put_uvarint, Reader};
use crate::error::{Error, Result};
use crate::hash::{hex, unhex, Hash, HashKind};
use crate::transcribe::{Fields, Value};

/// Version byte that starts every indirect block's data.
pub const INDIRECT_VERSION: u8 = 1;

/// A reference to a span of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockRef {
    /// The stored block `hash`, `span` bytes long.
    Direct {
        /// The block's hashcode.
        hash: Hash,
        /// Its length.
        span: u64,
    },
    /// The stored block `hash` holds a sequence of block refs whose spans
    /// add up to `span`.
    Indirect {
        /// The hashcode of the encoded ref sequence.
        hash: Hash,
        /// Total length of the content.
        span: u64,
    },
    /// Data inlined in the reference itself.
    Literal(Vec<u8>),
    /// `span` copies of `octet` (runs of zeros, sparse files).
    Rle {
        /// Length of the run.
        span: u64,
        /// The repeated byte.
        octet: u8,
    },
    /// `span` bytes of `block` starting at `offset`.
    Sub {
        /// The referenced content.
        block: Box<BlockRef>,
        /// Start within it.
        offset: u64,
        /// Length taken.
        span: u64,
    },
}

/// How deeply sub-blocks may nest (`SubB` in `SubB`…), in both forms.
const MAX_SUB_DEPTH: u32 = 8;

const T_DIRECT: u8 = 1;
const T_INDIRECT: u8 = 2;
const T_LITERAL: u8 = 3;
const T_RLE: u8 = 4;
const T_SUB: u8 = 5;

impl BlockRef {
    /// The empty content.
    pub fn empty() -> Self {
        BlockRef::Literal(Vec::new())
    }

    /// `span` bytes of `block` from `offset`, which must lie within it.
    pub fn sub(block: BlockRef, offset: u64, span: u64) -> Result<Self> {
        if offset.checked_add(span).is_none_or(|e| e > block.span()) {
            return Err(Error::decode("block ref", "sub-block exceeds its block"));
        }
        Ok(BlockRef::Sub {
            block: Box::new(block),
            offset,
            span,
        })
    }

    /// The number of bytes this reference covers.
    pub fn span(&self) -> u64 {
        match self {
            BlockRef::Direct { span, .. }
            | BlockRef::Indirect { span, .. }
            | BlockRef::Rle { span, .. }
            | BlockRef::Sub { span, .. } => *span,
            BlockRef::Literal(d) => d.len() as u64,
        }
    }

    /// The stored block this reference names directly, if any.
    pub fn hash(&self) -> Option<&Hash> {
        match self {
            BlockRef::Direct { hash, .. } | BlockRef::Indirect { hash, .. } => Some(hash),
            _ => None,
        }
    }

    /// Appends the binary form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            BlockRef::Direct { hash, span } => {
                out.push(T_DIRECT);
                out.extend_from_slice(&hash.to_bytes());
                put_uvarint(out, *span);
            }
            BlockRef::Indirect { hash, span } => {
                out.push(T_INDIRECT);
                out.extend_from_slice(&hash.to_bytes());
                put_uvarint(out, *span);
            }
            BlockRef::Literal(d) => {
                out.push(T_LITERAL);
                put_bytes(out, d);
            }
            BlockRef::Rle { span, octet } => {
                out.push(T_RLE);
                put_uvarint(out, *span);
                out.push(*octet);
            }
            BlockRef::Sub {
                block,
                offset,
                span,
            } => {
                out.push(T_SUB);
                put_uvarint(out, *offset);
                put_uvarint(out, *span);
                block.encode(out);
            }
        }
    }

    /// The binary form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Reads one reference from `r`.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Self::decode_depth(r, 0)
    }

    fn decode_depth(r: &mut Reader<'_>, depth: u32) -> Result<Self> {
        if depth > MAX_SUB_DEPTH {
            return Err(Error::decode("block ref", "sub-blocks nested too deeply"));
        }
        Ok(match r.u8()? {
            T_DIRECT => BlockRef::Direct {
                hash: r.hash()?,
                span: r.uvarint()?,
            },
            T_INDIRECT => BlockRef::Indirect {
                hash: r.hash()?,
                span: r.uvarint()?,
            },
            T_LITERAL => BlockRef::Literal(r.bytes()?.to_vec()),
            T_RLE => BlockRef::Rle {
                span: r.uvarint()?,
                octet: r.u8()?,
            },
            T_SUB => {
                let offset = r.uvarint()?;
                let span = r.uvarint()?;
                Self::sub(Self::decode_depth(r, depth + 1)?, offset, span)?
            }
            t => return Err(Error::decode("block ref", format!("unknown type {t}"))),
        })
    }

    /// Parses the binary form, which must be the whole of `b`.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, "block ref");
        let v = Self::decode(&mut r)?;
        if !r.is_empty() {
            return Err(Error::decode("block ref", "trailing bytes"));
        }
        Ok(v)
    }

    /// Appends the text form, e.g. `B{hash:H{sha3_256:…},span:8192}`.
    pub fn transcribe(&self, out: &mut String) {
        match self {
            BlockRef::Direct { hash, span } => {
                let _ = write!(out, "B{{hash:{},span:{span}}}", hash_text(hash));
            }
            BlockRef::Indirect { hash, span } => {
                let _ = write!(out, "I{{hash:{},span:{span}}}", hash_text(hash));
            }
            BlockRef::Literal(d) => {
                let _ = write!(
                    out,
                    "LB{{hex:{}}}",
                    if d.is_empty() { "-".into() } else { hex(d) }
                );
            }
            BlockRef::Rle { span, octet } => {
                let _ = write!(out, "RLE{{span:{span},octet:{octet}}}");
            }
            BlockRef::Sub {
                block,
                offset,
                span,
            } => {
                out.push_str("SubB{block:");
                block.transcribe(out);
                let _ = write!(out, ",offset:{offset},span:{span}}}");
            }
        }
    }

    /// Parses a text form.
    pub fn parse(s: &str) -> Result<Self> {
        Self::from_value(&crate::transcribe::parse(s)?)
    }

    /// Converts a parsed transcription.
    pub fn from_value(v: &Value) -> Result<Self> {
        Self::from_value_depth(v, 0)
    }

    fn from_value_depth(v: &Value, depth: u32) -> Result<Self> {
        // As deep as the binary form may nest, so that what is read from
        // text can be stored.
        if depth > MAX_SUB_DEPTH {
            return Err(Error::decode("block ref", "sub-blocks nested too deeply"));
        }
        let Value::Tagged(tag, fields) = v else {
            return Err(Error::decode(
                "block ref",
                "expected B{…}, I{…}, LB{…}, RLE{…} or SubB{…}",
            ));
        };
        let f = Fields::new("block ref", fields);
        Ok(match tag.as_str() {
            "B" => BlockRef::Direct {
                hash: hash_from_value(f.req("hash")?)?,
                span: f.u64("span")?,
            },
            "I" => BlockRef::Indirect {
                hash: hash_from_value(f.req("hash")?)?,
                span: f.u64("span")?,
            },
            "LB" => {
                let h = f.req("hex")?.as_token("block ref")?;
                BlockRef::Literal(if h == "-" { Vec::new() } else { unhex(h)? })
            }
            "RLE" => BlockRef::Rle {
                span: f.u64("span")?,
                octet: u8::try_from(f.u64("octet")?)
                    .map_err(|_| Error::decode("block ref", "RLE octet above 255"))?,
            },
            "SubB" => Self::sub(
                Self::from_value_depth(f.req("block")?, depth + 1)?,
                f.u64("offset")?,
                f.u64("span")?,
            )?,
            t => return Err(Error::decode("block ref", format!("unknown tag {t:?}"))),
        })
    }

    /// The text form as a new string.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.transcribe(&mut s);
        s
    }
}

impl std::fmt::Display for BlockRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// `H{kind:hex}`.
pub fn hash_text(h: &Hash) -> String {
    format!("H{{{}:{}}}", h.kind, h.hex())
}

/// Parses `H{kind:hex}`.
pub fn hash_from_value(v: &Value) -> Result<Hash> {
    match v {
        Value::Tagged(t, fields) if t == "H" && fields.len() == 1 => {
            let (kind, digest) = &fields[0];
            let kind: HashKind = kind.parse()?;
            Hash::from_kind_hex(kind, digest.as_token("hashcode")?)
        }
        _ => Err(Error::decode("hashcode", "expected H{kind:hex}")),
    }
}

/// Encodes the data of an indirect block holding `refs`.
pub fn encode_indirect(refs: &[BlockRef]) -> Vec<u8> {
    let mut out = vec![INDIRECT_VERSION];
    for r in refs {
        r.encode(&mut out);
    }
    out
}

/// Decodes the data of an indirect block.
pub fn decode_indirect(data: &[u8]) -> Result<Vec<BlockRef>> {
    let mut r = Reader::new(data, "indirect block");
    let v = r.u8()?;
    if v != INDIRECT_VERSION {
        return Err(Error::decode(
            "indirect block",
            format!("format version {v}, this vt reads {INDIRECT_VERSION}"),
        ));
    }
    let mut refs = Vec::new();
    while !r.is_empty() {
        refs.push(BlockRef::decode(&mut r)?);
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_sub(levels: usize) -> String {
        let mut t = "LB{hex:00}".to_string();
        for _ in 0..levels {
            t = format!("SubB{{block:{t},offset:0,span:1}}");
        }
        t
    }

    /// Found by the fuzz target block_ref: text nested deeper than the
    /// binary form may be parsed to a reference whose encoding did not
    /// decode.
    #[test]
    fn text_sub_blocks_nest_no_deeper_than_binary_ones() {
        let ok = BlockRef::parse(&nested_sub(8)).unwrap();
        assert_eq!(BlockRef::from_bytes(&ok.to_bytes()).unwrap(), ok);
        assert!(BlockRef::parse(&nested_sub(9)).is_err());
        let mut bin = Vec::new();
        for _ in 0..9 {
            bin.extend([T_SUB, 0, 1]);
        }
        bin.extend([T_LITERAL, 1, 0]);
        assert!(BlockRef::from_bytes(&bin).is_err());
        assert!(BlockRef::from_bytes(&bin[3..]).is_ok());
    }
    use proptest::prelude::*;

    fn arb_hash() -> impl Strategy<Value = Hash> {
        (any::<[u8; 32]>(), any::<bool>()).prop_map(|(bytes, b)| Hash {
            kind: if b {
                HashKind::Blake3
            } else {
                HashKind::Sha3_256
            },
            bytes,
        })
    }

    fn arb_ref() -> impl Strategy<Value = BlockRef> {
        let leaf = prop_oneof![
            (arb_hash(), any::<u64>()).prop_map(|(hash, span)| BlockRef::Direct { hash, span }),
            (arb_hash(), any::<u64>()).prop_map(|(hash, span)| BlockRef::Indirect { hash, span }),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(BlockRef::Literal),
            (any::<u64>(), any::<u8>()).prop_map(|(span, octet)| BlockRef::Rle { span, octet }),
        ];
        leaf.prop_recursive(2, 4, 1, |inner| {
            (inner, any::<u64>(), any::<u64>()).prop_map(|(b, o, s)| {
                let total = b.span();
                let offset = o % (total.saturating_add(1)).max(1);
                let span = s % (total - offset).saturating_add(1).max(1);
                let span = span.min(total - offset);
                BlockRef::Sub {
                    block: Box::new(b),
                    offset,
                    span,
                }
            })
        })
    }

    proptest! {
        #[test]
        fn binary_roundtrip(r in arb_ref()) {
            prop_assert_eq!(BlockRef::from_bytes(&r.to_bytes()).unwrap(), r);
        }

        #[test]
        fn text_roundtrip(r in arb_ref()) {
            prop_assert_eq!(BlockRef::parse(&r.to_text()).unwrap(), r);
        }

        #[test]
        fn decode_never_panics(b: Vec<u8>) {
            let _ = BlockRef::from_bytes(&b);
            let _ = decode_indirect(&b);
        }
    }

    #[test]
    fn text_form_is_as_documented() {
        let h = HashKind::Sha3_256.digest(b"");
        let r = BlockRef::Direct { hash: h, span: 3 };
        assert_eq!(
            r.to_text(),
            format!("B{{hash:H{{sha3_256:{}}},span:3}}", h.hex())
        );
        assert_eq!(
            BlockRef::Rle { span: 9, octet: 0 }.to_text(),
            "RLE{span:9,octet:0}"
        );
    }
}
