//! Hash functions and hashcodes.
//!
//! A hashcode always carries the name of its hash function, both in text
//! (`sha3_256:1f0c…`) and in binary (a one-byte kind then the digest), so
//! blocks hashed with different functions can coexist in one store.

use std::fmt;
use std::str::FromStr;

use sha3::Digest;

use crate::error::{Error, Result};

/// A supported hash function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashKind {
    /// SHA3-256, the default.
    Sha3_256,
    /// BLAKE3 with a 256-bit output: several times faster than SHA3.
    Blake3,
}

impl HashKind {
    /// Every supported kind.
    pub const ALL: [HashKind; 2] = [HashKind::Sha3_256, HashKind::Blake3];

    /// The name used in text forms and configuration.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Sha3_256 => "sha3_256",
            HashKind::Blake3 => "blake3",
        }
    }

    /// The byte that identifies this kind in binary encodings.
    pub fn id(self) -> u8 {
        match self {
            HashKind::Sha3_256 => 1,
            HashKind::Blake3 => 2,
        }
    }

    /// The kind with binary identifier `id`.
    pub fn from_id(id: u8) -> Result<Self> {
        match id {
            1 => Ok(HashKind::Sha3_256),
            2 => Ok(HashKind::Blake3),
            _ => Err(Error::decode("hashcode", format!("unknown hash id {id}"))),
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Hash {
        let bytes: [u8; 32] = match self {
            HashKind::Sha3_256 => sha3::Sha3_256::digest(data).into(),
            HashKind::Blake3 => *blake3::hash(data).as_bytes(),
        };
        Hash { kind: self, bytes }
    }

    /// Hashes each of `items`: SHA3-256 four messages at a time where the
    /// CPU allows (see [`crate::sha3x4`]), so callers with several blocks
    /// in hand should hash them together.
    pub fn digest_many(self, items: &[&[u8]]) -> Vec<Hash> {
        match self {
            HashKind::Sha3_256 => crate::sha3x4::sha3_256_many(items)
                .into_iter()
                .map(|bytes| Hash { kind: self, bytes })
                .collect(),
            HashKind::Blake3 => items.iter().map(|d| self.digest(d)).collect(),
        }
    }
}

impl fmt::Display for HashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        HashKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::decode(
                    "hash name",
                    format!("unknown hash {s:?} (known: sha3_256, blake3)"),
                )
            })
    }
}

/// A hashcode: the hash function and its 32-byte digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    /// The function that produced the digest.
    pub kind: HashKind,
    /// The digest.
    pub bytes: [u8; 32],
}

impl Hash {
    /// Length of the binary form: kind byte plus digest.
    pub const ENCODED_LEN: usize = 33;

    /// The binary form: kind id then digest.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0] = self.kind.id();
        out[1..].copy_from_slice(&self.bytes);
        out
    }

    /// Parses the binary form.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() != Self::ENCODED_LEN {
            return Err(Error::decode(
                "hashcode",
                format!("{} bytes, expected {}", b.len(), Self::ENCODED_LEN),
            ));
        }
        let kind = HashKind::from_id(b[0])?;
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&b[1..]);
        Ok(Hash { kind, bytes })
    }

    /// The digest in lower-case hex.
    pub fn hex(&self) -> String {
        hex(&self.bytes)
    }

    /// Parses the text form `kind:hex`.
    pub fn parse(s: &str) -> Result<Self> {
        let (kind, hexdigits) = s
            .split_once(':')
            .ok_or_else(|| Error::decode("hashcode", format!("{s:?} is not kind:hex")))?;
        Self::from_kind_hex(kind.parse()?, hexdigits)
    }

    /// Builds a hashcode from a kind and a hex digest.
    pub fn from_kind_hex(kind: HashKind, hexdigits: &str) -> Result<Self> {
        let v = unhex(hexdigits)?;
        let bytes: [u8; 32] = v
            .try_into()
            .map_err(|_| Error::decode("hashcode", format!("{hexdigits:?} is not 32 bytes")))?;
        Ok(Hash { kind, bytes })
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// Parses hex digits (either case).
pub fn unhex(s: &str) -> Result<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(Error::decode("hex", "odd number of digits"));
    }
    b.chunks(2)
        .map(|p| match (nibble(p[0]), nibble(p[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(Error::decode("hex", format!("bad digits in {s:?}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha3_known_answer() {
        let h = HashKind::Sha3_256.digest(b"");
        assert_eq!(
            h.to_string(),
            "sha3_256:a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
        assert_eq!(Hash::parse(&h.to_string()).unwrap(), h);
        assert_eq!(Hash::from_bytes(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn blake3_differs_and_roundtrips() {
        let a = HashKind::Blake3.digest(b"abc");
        let b = HashKind::Sha3_256.digest(b"abc");
        assert_ne!(a, b);
        assert_eq!(Hash::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn bad_text_is_an_error() {
        assert!(Hash::parse("md5:00").is_err());
        assert!(Hash::parse("sha3_256:zz").is_err());
        assert!(Hash::parse("nocolon").is_err());
        assert!(Hash::from_bytes(&[9; 33]).is_err());
    }
}
