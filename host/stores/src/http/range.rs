//! HTTP `Range` requests (RFC 9110 §14): which bytes of a representation
//! a client asked for.

/// Most ranges one request may ask for before the server answers with the
/// whole content instead (many tiny ranges cost more than they save).
pub const MAX_RANGES: usize = 32;

/// What a `Range` header asks of content `len` bytes long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) range: send everything with 200.
    Full,
    /// These ranges, `start..end` (end exclusive), in the order asked.
    Ranges(Vec<(u64, u64)>),
    /// Ranges that all lie past the end: 416.
    Unsatisfiable,
}

/// Parses a `Range` header value for content of `len` bytes. A header that
/// does not parse, or in units other than bytes, is ignored (the whole
/// content is sent), as RFC 9110 allows.
pub fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some(specs) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    let mut out = Vec::new();
    let mut asked = 0;
    for spec in specs.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        asked += 1;
        if asked > MAX_RANGES {
            return RangeRequest::Full;
        }
        let Some((a, b)) = spec.split_once('-') else {
            return RangeRequest::Full;
        };
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let r = if a.is_empty() {
            // "-N": the last N bytes.
            let Some(n) = num(b) else {
                return RangeRequest::Full;
            };
            if n == 0 || len == 0 {
                None
            } else {
                Some((len.saturating_sub(n), len))
            }
        } else {
            let Some(start) = num(a) else {
                return RangeRequest::Full;
            };
            let end = if b.is_empty() {
                len
            } else {
                match num(b) {
                    Some(e) if e >= start => e.saturating_add(1).min(len),
                    _ => return RangeRequest::Full,
                }
            };
            (start < len).then_some((start, end))
        };
        if let Some(r) = r {
            out.push(r);
        }
    }
    if asked == 0 {
        RangeRequest::Full
    } else if out.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Ranges(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=100-199", 1000), Ranges(vec![(100, 200)]));
        assert_eq!(parse_range("bytes=900-", 1000), Ranges(vec![(900, 1000)]));
        assert_eq!(parse_range("bytes=-10", 1000), Ranges(vec![(990, 1000)]));
        assert_eq!(parse_range("bytes=-5000", 1000), Ranges(vec![(0, 1000)]));
        assert_eq!(
            parse_range("bytes=990-5000", 1000),
            Ranges(vec![(990, 1000)])
        );
        assert_eq!(
            parse_range("bytes=0-0, 10-19 ,-1", 1000),
            Ranges(vec![(0, 1), (10, 20), (999, 1000)])
        );
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=2000-3000, 1000-", 1000), Unsatisfiable);
        // Only the satisfiable ones of a mix.
        assert_eq!(
            parse_range("bytes=2000-3000,5-6", 1000),
            Ranges(vec![(5, 7)])
        );
        for ignored in [
            "items=1-2",
            "bytes=",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(parse_range(ignored, 1000), Full, "{ignored}");
        }
        let many: Vec<String> = (0..40).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            parse_range(&format!("bytes={}", many.join(",")), 1000),
            Full
        );
    }
}
