//! The server's address: `http[s]://host[:port][/prefix]`.

use std::fmt;

/// Where the vt httpd is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    /// Whether to use TLS.
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// The path under which the server's routes lie: empty, or `/x/y`.
    pub prefix: String,
}

impl BaseUrl {
    /// Parses `url`; the message of an error says what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!(
                "url {url:?}: expected http://host[:port] or https://host[:port]"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
            return Err(format!(
                "url {url:?}: no host, or a host with user, query or fragment"
            ));
        }
        if path.contains(['?', '#']) {
            return Err(format!(
                "url {url:?}: a query or fragment has no place here"
            ));
        }
        Ok(BaseUrl {
            https,
            authority: authority.to_owned(),
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The path of route `rest` (`h/HASH`, `a/`, `stats`).
    pub fn path(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.prefix)
    }
}

/// `name` as one path segment: unreserved bytes as they are, every other
/// byte `%XX` (as vt httpd's listings write archive names).
pub fn encode_segment(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for &c in name.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~:".contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let u = BaseUrl::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (u.https, u.authority.as_str(), u.prefix.as_str()),
            (false, "127.0.0.1:8080", "")
        );
        assert_eq!(u.path("h/sha3_256:00"), "/h/sha3_256:00");
        let u = BaseUrl::parse("https://example.org/vt/store").unwrap();
        assert_eq!(u.path("stats"), "/vt/store/stats");
        assert_eq!(u.to_string(), "https://example.org/vt/store");
        for bad in [
            "ftp://x",
            "example.org",
            "http://",
            "http://u@h/",
            "http://h/?q",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_encoded_as_one_segment() {
        assert_eq!(encode_segment("home"), "home");
        assert_eq!(encode_segment("a b/c%"), "a%20b%2Fc%25");
    }
}
