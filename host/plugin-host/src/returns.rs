//! The checks of what a scanner plugin returns through WIT: its name
//! (`describe`), its confidence (`sniff`) and the offsets it proposes
//! (`feed`, `finish`). Plain functions of the returned values, with no
//! wasmtime in them, so that the fuzz target `plugin_returns`
//! (`tests/fuzz/`) can include this file by itself and try arbitrary
//! returned values without running WebAssembly.

/// Plugin names: `[a-z0-9-]+`, at most 64 bytes.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A `sniff` answer as a confidence: at most 100.
pub fn confidence(c: u8) -> u8 {
    c.min(100)
}

/// The offsets one scan has accepted so far: each call's must rise
/// strictly, follow the last accepted and lie within the bytes fed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    last: u64,
}

impl Offsets {
    /// A scan with nothing accepted yet.
    pub fn new() -> Self {
        Offsets::default()
    }

    /// The last offset accepted (0 before any).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Checks the offsets one call returned, `end` being the end of the
    /// data fed so far: they must rise strictly, follow the last accepted
    /// and lie within `(0, end]`. Accepts them all or none (an `Err` says
    /// why, and changes nothing).
    pub fn accept(&mut self, offs: &[u64], end: u64) -> Result<(), String> {
        let mut last = self.last;
        for &o in offs {
            if o > end {
                return Err(format!(
                    "it proposed offset {o}, beyond the {end} bytes fed so far"
                ));
            }
            if o <= last {
                return Err(format!(
                    "it proposed offset {o} after {last} (offsets must rise)"
                ));
            }
            last = o;
        }
        self.last = last;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("mbox-2"));
        for bad in ["", "Mbox", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name(&"a".repeat(64)));
    }

    #[test]
    fn confidence_is_at_most_100() {
        assert_eq!(confidence(7), 7);
        assert_eq!(confidence(100), 100);
        assert_eq!(confidence(255), 100);
    }

    #[test]
    fn offsets_rise_within_what_was_fed() {
        let mut o = Offsets::new();
        assert!(o.accept(&[], 10).is_ok());
        assert!(o.accept(&[0], 10).is_err(), "0 is not after the start");
        assert!(o.accept(&[3, 10], 10).is_ok());
        assert_eq!(o.last(), 10);
        assert!(o.accept(&[10], 20).is_err(), "not after the last accepted");
        assert!(o.accept(&[15, 14], 20).is_err(), "falling");
        assert!(o.accept(&[12, 21], 20).is_err(), "beyond the end");
        // A refused call changes nothing.
        assert_eq!(o.last(), 10);
        assert!(o.accept(&[11, u64::MAX], u64::MAX).is_ok());
        assert!(o.accept(&[u64::MAX], u64::MAX).is_err());
    }
}
