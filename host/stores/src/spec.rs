//! Store specifications: the one grammar by which `-S`, `$VT_STORE`,
//! `[STORE]NAME` and the store-valued settings of vtrc name a store
//! (`vtrc.5`, STORE SPECIFICATIONS).
//!
//! ```text
//! spec   := item ("," item)*           a list: a proxy that reads the items
//!                                      in order and saves to the first
//! item   := "!" COMMAND                the rest of the spec: a command that
//!                                      speaks the stream protocol on stdio
//!         | "[" NAME "]" | NAME        a [stores.NAME] clause of vtrc
//!         | "unix:" PATH | PATH.sock   a vt serve on a UNIX socket
//!         | "tcp:" HOST ":" PORT       a vt serve on TCP
//!         | "tls:" HOST ":" PORT       ... with TLS (needs ca=, see below)
//!         | "http://" HOST ":" PORT "/"  a vt httpd (the HTTP store)
//!         | PATH                       a DataDir (a PATH has a "/", or starts
//!                                      with "." or "~")
//!         | TYPE "(" [k=v ("," k=v)*] ")" [":" item]
//!                                      a store of TYPE with settings; with
//!                                      ":item", a wrapper around that store
//! ```
//!
//! A value may be double-quoted (`\"` and `\\` escaped) to hold commas,
//! parentheses or spaces. Parsing is purely syntactic: which types exist
//! and which settings they take is the opener's business.

use vt_core::{Error, Result};

/// A parsed store specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// A `[stores.NAME]` clause.
    Clause(String),
    /// A DataDir at a path (`~` not yet expanded).
    DataDir(String),
    /// A server on a UNIX socket.
    Unix(String),
    /// A server on TCP, `host:port`.
    Tcp(String),
    /// A server on TCP with TLS, `host:port`.
    Tls(String),
    /// A command speaking the protocol on its stdin and stdout.
    Command(String),
    /// A `vt httpd`, by its URL.
    Http(String),
    /// `TYPE(k=v,…)`, wrapping `inner` when given as `TYPE(…):item`.
    Typed {
        /// The store type.
        kind: String,
        /// The settings, in order.
        params: Vec<(String, String)>,
        /// The wrapped store.
        inner: Option<Box<StoreSpec>>,
    },
    /// A comma list: a proxy reading in order, saving to the first.
    List(Vec<StoreSpec>),
}

/// Most nesting of wrappers and lists (a spec is typed by people; this
/// only stops runaway input).
const MAX_DEPTH: usize = 16;

fn bad(spec: &str, why: impl std::fmt::Display) -> Error {
    Error::decode("store spec", format!("{spec:?}: {why}"))
}

impl StoreSpec {
    /// Parses a specification.
    pub fn parse(spec: &str) -> Result<StoreSpec> {
        parse_at(spec, 0)
    }

    /// The spec's text form (parsing it gives the same spec back).
    pub fn to_text(&self) -> String {
        match self {
            StoreSpec::Clause(n) => format!("[{n}]"),
            StoreSpec::DataDir(p) => p.clone(),
            StoreSpec::Unix(p) => format!("unix:{p}"),
            StoreSpec::Tcp(a) => format!("tcp:{a}"),
            StoreSpec::Tls(a) => format!("tls:{a}"),
            StoreSpec::Command(c) => format!("!{c}"),
            StoreSpec::Http(u) => u.clone(),
            StoreSpec::Typed {
                kind,
                params,
                inner,
            } => {
                let ps: Vec<String> = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", quote(v)))
                    .collect();
                let mut s = format!("{kind}({})", ps.join(","));
                if let Some(i) = inner {
                    s.push(':');
                    s.push_str(&i.to_text());
                }
                s
            }
            StoreSpec::List(items) => items
                .iter()
                .map(StoreSpec::to_text)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| !matches!(c, ',' | '(' | ')' | '"' | '\\' | '=') && !c.is_whitespace());
    if plain {
        return v.to_owned();
    }
    let mut s = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

fn parse_at(spec: &str, depth: usize) -> Result<StoreSpec> {
    if depth > MAX_DEPTH {
        return Err(bad(spec, "nested too deeply"));
    }
    let items = split_top(spec)?;
    if items.len() == 1 {
        return parse_item(items[0], depth);
    }
    items
        .into_iter()
        .map(|i| parse_item(i, depth))
        .collect::<Result<Vec<_>>>()
        .map(StoreSpec::List)
}

/// Splits a comma list (of specs, or of `NAME:SPEC` exports) at commas
/// outside parentheses and quotes; an item starting with `!` takes the
/// rest.
pub fn split_list(s: &str) -> Result<Vec<&str>> {
    split_top(s)
}

/// Splits a spec at commas outside parentheses and quotes; a `!` item
/// takes the rest of the spec.
fn split_top(spec: &str) -> Result<Vec<&str>> {
    let mut items = Vec::new();
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    let mut start = 0;
    for (i, c) in spec.char_indices() {
        // An item that starts with "!" (after blanks) takes the rest.
        if i == start && spec[start..].trim_start().starts_with('!') {
            items.push(&spec[start..]);
            return Ok(items);
        }
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| bad(spec, "unbalanced \")\""))?
            }
            ',' if depth == 0 => {
                items.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(bad(spec, "unterminated quote"));
    }
    if depth != 0 {
        return Err(bad(spec, "unbalanced \"(\""));
    }
    items.push(&spec[start..]);
    Ok(items)
}

fn parse_item(item: &str, depth: usize) -> Result<StoreSpec> {
    let t = item.trim();
    if t.is_empty() {
        return Err(bad(item, "empty store spec"));
    }
    if let Some(cmd) = t.strip_prefix('!') {
        let cmd = cmd.trim();
        if cmd.is_empty() {
            return Err(bad(item, "no command after \"!\""));
        }
        return Ok(StoreSpec::Command(cmd.to_owned()));
    }
    if let Some(name) = t.strip_prefix('[') {
        let name = name
            .strip_suffix(']')
            .ok_or_else(|| bad(item, "expected [NAME]"))?;
        check_clause_name(item, name)?;
        return Ok(StoreSpec::Clause(name.to_owned()));
    }
    if let Some(p) = t.strip_prefix("unix:") {
        return nonempty(item, p).map(StoreSpec::Unix);
    }
    if let Some(a) = t.strip_prefix("tcp:") {
        return host_port(item, a).map(StoreSpec::Tcp);
    }
    if let Some(a) = t.strip_prefix("tls:") {
        return host_port(item, a).map(StoreSpec::Tls);
    }
    if t.starts_with("http://") || t.starts_with("https://") {
        return Ok(StoreSpec::Http(t.to_owned()));
    }
    let typed = t.find('(').filter(|&open| {
        open > 0
            && t[..open]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if let Some(open) = typed {
        return parse_typed(item, t, open, depth);
    }
    if t.starts_with('/') || t.starts_with('.') || t.starts_with('~') || t.contains('/') {
        if t.ends_with(".sock") {
            return Ok(StoreSpec::Unix(t.to_owned()));
        }
        return Ok(StoreSpec::DataDir(t.to_owned()));
    }
    check_clause_name(item, t)?;
    Ok(StoreSpec::Clause(t.to_owned()))
}

fn parse_typed(item: &str, t: &str, open: usize, depth: usize) -> Result<StoreSpec> {
    let kind = &t[..open];
    if kind.is_empty()
        || !kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad(item, format!("{kind:?} is not a store type")));
    }
    // Find the ")" that closes the "(", outside quotes.
    let (mut d, mut quoted, mut escaped) = (0usize, false, false);
    let mut close = None;
    for (i, c) in t[open..].char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '(' => d += 1,
            ')' => {
                d -= 1;
                if d == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| bad(item, "unbalanced \"(\""))?;
    let params = parse_params(item, &t[open + 1..close])?;
    let rest = t[close + 1..].trim();
    let inner = if rest.is_empty() {
        None
    } else {
        let r = rest
            .strip_prefix(':')
            .ok_or_else(|| bad(item, format!("unexpected {rest:?} after \")\"")))?;
        Some(Box::new(parse_at(r, depth + 1)?))
    };
    Ok(StoreSpec::Typed {
        kind: kind.to_owned(),
        params,
        inner,
    })
}

fn parse_params(item: &str, s: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for part in split_top(s)? {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(item, format!("expected key=value, not {:?}", part.trim())))?;
        let k = k.trim();
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(item, format!("{k:?} is not a setting name")));
        }
        if out.iter().any(|(x, _)| x == k) {
            return Err(bad(item, format!("{k} is given twice")));
        }
        out.push((k.to_owned(), unquote(item, v.trim())?));
    }
    Ok(out)
}

fn unquote(item: &str, v: &str) -> Result<String> {
    let Some(body) = v.strip_prefix('"') else {
        return Ok(v.to_owned());
    };
    let mut out = String::new();
    let mut chars = body.chars();
    loop {
        match chars.next() {
            None => return Err(bad(item, "unterminated quote")),
            Some('\\') => match chars.next() {
                Some(c) => out.push(c),
                None => return Err(bad(item, "unterminated quote")),
            },
            Some('"') => break,
            Some(c) => out.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(bad(item, "text after a closing quote"));
    }
    Ok(out)
}

fn nonempty(item: &str, s: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(bad(item, "nothing after the scheme"));
    }
    Ok(s.to_owned())
}

fn host_port(item: &str, a: &str) -> Result<String> {
    let a = a.trim();
    let port = a
        .rsplit_once(':')
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| bad(item, "expected HOST:PORT"))?
        .1;
    port.parse::<u16>()
        .map_err(|_| bad(item, format!("{port:?} is not a port number")))?;
    Ok(a.to_owned())
}

/// Checks a clause name: letters, digits, `_`, `-` and `.`.
fn check_clause_name(item: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(bad(
            item,
            format!("{name:?} is not a store name, a path (use ./{name} for a directory here) or a spec"),
        ));
    }
    Ok(())
}

/// Parses a size with an optional binary or decimal suffix: `64MiB`,
/// `1G`, `500k`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::decode("size", format!("{s:?} is not a size like 64MiB")))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        u => {
            return Err(Error::decode(
                "size",
                format!("{s:?}: unknown unit {u:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"),
            ))
        }
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(Error::decode("size", format!("{s:?} is out of range")));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> StoreSpec {
        StoreSpec::parse(s).unwrap()
    }

    #[test]
    fn items() {
        assert_eq!(p("local"), StoreSpec::Clause("local".into()));
        assert_eq!(p("[local]"), StoreSpec::Clause("local".into()));
        assert_eq!(p("/mnt/usb/vt"), StoreSpec::DataDir("/mnt/usb/vt".into()));
        assert_eq!(p("./store"), StoreSpec::DataDir("./store".into()));
        assert_eq!(p("~/vt"), StoreSpec::DataDir("~/vt".into()));
        assert_eq!(
            p("/run/vt/x.sock"),
            StoreSpec::Unix("/run/vt/x.sock".into())
        );
        assert_eq!(p("unix:/tmp/s"), StoreSpec::Unix("/tmp/s".into()));
        assert_eq!(p("tcp:127.0.0.1:9"), StoreSpec::Tcp("127.0.0.1:9".into()));
        assert_eq!(p("tcp:[::1]:9"), StoreSpec::Tcp("[::1]:9".into()));
        assert_eq!(p("tls:host:443"), StoreSpec::Tls("host:443".into()));
        assert_eq!(
            p("http://127.0.0.1:8470/"),
            StoreSpec::Http("http://127.0.0.1:8470/".into())
        );
        assert_eq!(
            p("http://a:1/,./dd"),
            StoreSpec::List(vec![
                StoreSpec::Http("http://a:1/".into()),
                StoreSpec::DataDir("./dd".into())
            ])
        );
        assert_eq!(
            p("!ssh host vt serve --stdio"),
            StoreSpec::Command("ssh host vt serve --stdio".into())
        );
    }

    #[test]
    fn lists_wrappers_and_quotes() {
        assert_eq!(
            p("local, tcp:h:1"),
            StoreSpec::List(vec![
                StoreSpec::Clause("local".into()),
                StoreSpec::Tcp("h:1".into())
            ])
        );
        assert_eq!(
            p("cache(limit=64MiB, dir=/tmp/c):tcp:h:1"),
            StoreSpec::Typed {
                kind: "cache".into(),
                params: vec![
                    ("limit".into(), "64MiB".into()),
                    ("dir".into(), "/tmp/c".into())
                ],
                inner: Some(Box::new(StoreSpec::Tcp("h:1".into()))),
            }
        );
        // A command takes the rest, commas and all, blanks before it too
        // (found by the store_spec fuzz target).
        assert_eq!(p(" !n,n"), StoreSpec::Command("n,n".into()));
        assert_eq!(
            p("local,!ssh h vt serve --stdio,x"),
            StoreSpec::List(vec![
                StoreSpec::Clause("local".into()),
                StoreSpec::Command("ssh h vt serve --stdio,x".into())
            ])
        );
        let q = p(r#"proxy(read="a,b", save="c(d=e)", note="say \"hi\"")"#);
        let StoreSpec::Typed { params, .. } = &q else {
            panic!()
        };
        assert_eq!(params[0].1, "a,b");
        assert_eq!(params[1].1, "c(d=e)");
        assert_eq!(params[2].1, "say \"hi\"");
        assert_eq!(p(&q.to_text()), q);
        assert_eq!(
            p("memory()"),
            StoreSpec::Typed {
                kind: "memory".into(),
                params: vec![],
                inner: None
            }
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (s, want) in [
            ("", "empty"),
            ("tcp:host", "HOST:PORT"),
            ("tcp:host:http", "port number"),
            ("cache(limit=1", "unbalanced"),
            ("cache(limit)", "key=value"),
            ("cache(a=1,a=2)", "twice"),
            ("x(a=\"b)", "unterminated"),
            ("my store", "not a store name"),
            ("a,,b", "empty"),
            ("!", "no command"),
            ("cache():", "empty"),
        ] {
            let e = StoreSpec::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("1e400").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "[a-z(),=:\"\\\\!\\[\\]/. ~0-9]{0,40}") {
            if let Ok(spec) = StoreSpec::parse(&s) {
                // Whatever parses prints to text that parses the same.
                prop_assert_eq!(StoreSpec::parse(&spec.to_text()).unwrap(), spec);
            }
        }
    }
}
