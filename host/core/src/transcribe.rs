//! The one-line text forms ("transcriptions") of blocks and Dirents.
//!
//! Grammar (see `vt.5`):
//!
//! ```text
//! value  := tagged | map | list | string | token
//! tagged := NAME map                      e.g. B{hash:H{sha3_256:…},span:3}
//! map    := "{" [ KEY ":" value { "," KEY ":" value } ] "}"
//! list   := "[" [ value { "," value } ] "]"
//! string := '"' chars with \" \\ \n \r \t \xNN escapes '"'
//! token  := one or more of A-Z a-z 0-9 _ . - +
//! ```

use crate::error::{Error, Result};

/// A parsed transcription value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `NAME{…}`.
    Tagged(String, Vec<(String, Value)>),
    /// `{…}`.
    Map(Vec<(String, Value)>),
    /// `[…]`.
    List(Vec<Value>),
    /// A quoted string; bytes because file names need not be UTF-8.
    Str(Vec<u8>),
    /// A bare token: a number, a hex digest, a name.
    Token(String),
}

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+')
}

/// Appends `b` as a quoted string.
pub fn put_str(out: &mut String, b: &[u8]) {
    out.push('"');
    let mut rest = b;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (v, b) = rest.split_at(e.valid_up_to());
                // SAFETY of the unwrap-free path: valid_up_to marks valid UTF-8.
                (std::str::from_utf8(v).unwrap_or(""), b)
            }
        };
        for ch in valid.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => out.push(c),
            }
        }
        if let Some((&b0, tail)) = bad.split_first() {
            out.push_str(&format!("\\x{b0:02x}"));
            rest = tail;
        } else {
            rest = &[];
        }
    }
    out.push('"');
}

/// Parses a whole transcription; trailing non-space text is an error.
pub fn parse(s: &str) -> Result<Value> {
    let mut p = Parser {
        b: s.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.b.len() {
        return Err(p.err("trailing text"));
    }
    Ok(v)
}

/// Deepest nesting of maps and lists a transcription may have: real ones
/// nest a few levels (a Dirent, its block reference, a sub-block's block);
/// this stops input that would recurse until the stack overflows.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> Error {
        let ctx: String = String::from_utf8_lossy(&self.b[self.pos.min(self.b.len())..])
            .chars()
            .take(20)
            .collect();
        Error::decode(
            "transcription",
            format!("{what} at offset {} (near {ctx:?})", self.pos),
        )
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected {:?}", c as char)))
        }
    }

    fn token(&mut self) -> Result<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_token_byte) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a value"));
        }
        Ok(String::from_utf8_lossy(&self.b[start..self.pos]).into_owned())
    }

    fn value(&mut self) -> Result<Value> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(&format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let v = self.value_inner();
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self) -> Result<Value> {
        match self.peek() {
            Some(b'{') => Ok(Value::Map(self.map()?)),
            Some(b'[') => self.list(),
            Some(b'"') => self.string(),
            _ => {
                let t = self.token()?;
                if self.peek() == Some(b'{') {
                    Ok(Value::Tagged(t, self.map()?))
                } else {
                    Ok(Value::Token(t))
                }
            }
        }
    }

    fn map(&mut self) -> Result<Vec<(String, Value)>> {
        self.expect(b'{')?;
        let mut fields = Vec::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(fields);
        }
        loop {
            let key = self.token()?;
            self.expect(b':')?;
            let v = self.value()?;
            fields.push((key, v));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(fields);
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn list(&mut self) -> Result<Value> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::List(items));
        }
        loop {
            items.push(self.value()?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn string(&mut self) -> Result<Value> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.pos += 1;
            match c {
                b'"' => return Ok(Value::Str(out)),
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'x' => {
                            let h = self
                                .b
                                .get(self.pos..self.pos + 2)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                                .ok_or_else(|| self.err("bad \\x escape"))?;
                            self.pos += 2;
                            out.push(h);
                        }
                        _ => return Err(self.err("unknown escape")),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

/// Typed access to the fields of a `NAME{…}` or `{…}` value.
pub struct Fields<'a> {
    what: &'static str,
    fields: &'a [(String, Value)],
}

impl<'a> Fields<'a> {
    /// Wraps the fields of a map, naming `what` in errors.
    pub fn new(what: &'static str, fields: &'a [(String, Value)]) -> Self {
        Fields { what, fields }
    }

    /// The field `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The field `key`, which must be present.
    pub fn req(&self, key: &str) -> Result<&'a Value> {
        self.get(key)
            .ok_or_else(|| Error::decode(self.what, format!("missing field {key:?}")))
    }

    /// An unsigned integer field.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.req(key)?.as_u64(self.what)
    }

    /// An optional unsigned integer field.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key).map(|v| v.as_u64(self.what)).transpose()
    }

    /// A string field as bytes.
    pub fn bytes(&self, key: &str) -> Result<&'a [u8]> {
        self.req(key)?.as_bytes(self.what)
    }
}

impl Value {
    /// This value as an unsigned integer.
    pub fn as_u64(&self, what: &'static str) -> Result<u64> {
        match self {
            Value::Token(t) => t
                .parse()
                .map_err(|_| Error::decode(what, format!("{t:?} is not a number"))),
            _ => Err(Error::decode(what, "expected a number")),
        }
    }

    /// This value as a signed integer.
    pub fn as_i64(&self, what: &'static str) -> Result<i64> {
        match self {
            Value::Token(t) => t
                .parse()
                .map_err(|_| Error::decode(what, format!("{t:?} is not a number"))),
            _ => Err(Error::decode(what, "expected a number")),
        }
    }

    /// This value as string bytes.
    pub fn as_bytes(&self, what: &'static str) -> Result<&[u8]> {
        match self {
            Value::Str(s) => Ok(s),
            _ => Err(Error::decode(what, "expected a quoted string")),
        }
    }

    /// This value as a UTF-8 string.
    pub fn as_string(&self, what: &'static str) -> Result<String> {
        String::from_utf8(self.as_bytes(what)?.to_vec())
            .map_err(|_| Error::decode(what, "string is not UTF-8"))
    }

    /// This value as a token.
    pub fn as_token(&self, what: &'static str) -> Result<&str> {
        match self {
            Value::Token(t) => Ok(t),
            _ => Err(Error::decode(what, "expected a bare word")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_nested() {
        let v = parse(r#"D{name:"a\"b",n:12,l:[1,X{}],m:{k:"\xff"}}"#).unwrap();
        let Value::Tagged(tag, f) = v else { panic!() };
        assert_eq!(tag, "D");
        let f = Fields::new("t", &f);
        assert_eq!(f.bytes("name").unwrap(), b"a\"b");
        assert_eq!(f.u64("n").unwrap(), 12);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("D{{name:{}", "[".repeat(1_000_000));
        assert!(parse(&deep).is_err());
        let ok = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "{", "D{a:}", "D{a:1", "\"x", "D{a:1} x", "[1,"] {
            assert!(parse(s).is_err(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn string_roundtrip(b: Vec<u8>) {
            let mut s = String::new();
            put_str(&mut s, &b);
            prop_assert_eq!(parse(&s).unwrap(), Value::Str(b));
        }

        #[test]
        fn parser_never_panics(s: String) {
            let _ = parse(&s);
        }
    }
}
