//! How `vt httpd` shows a directory (an HTML page of links, or JSON) and
//! what type it gives a file.

use vt_core::dirent::{Dirent, DirentKind};
use vt_core::uri::encode_segment;

/// The `Content-Type` of file `d`: the type recorded with it at import
/// (`user.mime_type`), else one guessed from its name, else from its
/// first bytes (`head`).
pub fn content_type(d: &Dirent, head: &[u8]) -> String {
    if let Some(m) = &d.meta.mime {
        return m.clone();
    }
    let name = String::from_utf8_lossy(&d.name);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let source = ext
        .as_deref()
        .and_then(|e| SOURCE_TYPES.iter().find(|(x, _)| x.contains(&e)))
        .map(|(_, m)| *m);
    if let Some(m) = source.or_else(|| mime_guess::from_path(name.as_ref()).first_raw()) {
        return if m.starts_with("text/") {
            format!("{m}; charset=utf-8")
        } else {
            m.to_owned()
        };
    }
    sniff(head).to_owned()
}

/// Source code types as Apache's `mime.types` gives them, where
/// `mime_guess` says only `text/plain`: a browser or tool that knows the
/// language can tell.
const SOURCE_TYPES: &[(&[&str], &str)] = &[
    (
        &["c", "cc", "cxx", "cpp", "h", "hh", "hpp", "dic"],
        "text/x-c",
    ),
    (&["java"], "text/x-java-source"),
    (&["f", "for", "f77", "f90"], "text/x-fortran"),
    (&["p", "pas"], "text/x-pascal"),
    (&["s", "asm"], "text/x-asm"),
    (&["py"], "text/x-python"),
];

/// A type for content that has no name to go by: text if its first bytes
/// are UTF-8 without control characters, else bytes.
pub fn sniff(head: &[u8]) -> &'static str {
    // A cut UTF-8 sequence at the end of the sample is not a reason to
    // call it binary.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    let control = head
        .iter()
        .any(|&c| c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t' | 0x0c));
    if valid && !control {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

fn kind_name(d: &Dirent) -> &'static str {
    match d.kind {
        DirentKind::File { .. } => "file",
        DirentKind::Dir { .. } => "dir",
        DirentKind::Symlink { .. } => "symlink",
        DirentKind::HardLink { .. } => "hardlink",
        DirentKind::Special { .. } => "special",
    }
}

fn size_of(d: &Dirent) -> Option<u64> {
    match &d.kind {
        DirentKind::File { block } => Some(block.span()),
        _ => None,
    }
}

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The href of entry `d` relative to its directory's URL (which ends in
/// `/`).
fn href(d: &Dirent) -> String {
    let mut h = encode_segment(&d.name);
    if d.is_dir() {
        h.push('/');
    }
    h
}

/// An HTML page listing `entries` of the directory at `title`.
pub fn html(title: &str, entries: &[Dirent]) -> String {
    let t = html_escape(title);
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body><h1>{t}</h1>\n<table>\n<tr><th>name</th><th>size</th><th>modified</th></tr>\n<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n"
    );
    for d in entries {
        let mut name = html_escape(&d.name_lossy());
        if d.is_dir() {
            name.push('/');
        }
        if let DirentKind::Symlink { target } = &d.kind {
            name.push_str(&format!(
                " → {}",
                html_escape(&String::from_utf8_lossy(target))
            ));
        }
        s.push_str(&format!(
            "<tr><td><a href=\"{}\">{name}</a></td><td>{}</td><td>{}</td></tr>\n",
            html_escape(&href(d)),
            size_of(d).map(|n| n.to_string()).unwrap_or_default(),
            vt_core::timefmt::iso8601(d.meta.mtime.secs, 0),
        ));
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

/// `entries` as a JSON array of objects: name, type, size (files),
/// mode, mtime (seconds), target (symlinks), href.
pub fn json(entries: &[Dirent]) -> String {
    let v: Vec<serde_json::Value> = entries
        .iter()
        .map(|d| {
            let mut o = serde_json::json!({
                "name": d.name_lossy(),
                "type": kind_name(d),
                "mode": d.meta.mode,
                "mtime": d.meta.mtime.secs,
                "href": href(d),
            });
            if let Some(n) = size_of(d) {
                o["size"] = n.into();
            }
            if let DirentKind::Symlink { target } = &d.kind {
                o["target"] = String::from_utf8_lossy(target).into();
            }
            o
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vt_core::BlockRef;

    fn file(name: &str) -> Dirent {
        Dirent::new(
            name.as_bytes(),
            DirentKind::File {
                block: BlockRef::Literal(b"x".to_vec()),
            },
        )
    }

    #[test]
    fn types() {
        assert_eq!(content_type(&file("a.c"), b""), "text/x-c; charset=utf-8");
        assert_eq!(
            content_type(&file("index.html"), b""),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(&file("p.png"), b""), "image/png");
        assert_eq!(
            content_type(&file("README"), b"hello\n"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type(&file("blob"), b"\x7fELF\x02\x01"),
            "application/octet-stream"
        );
        let mut m = file("x.c");
        m.meta.mime = Some("application/x-thing".into());
        assert_eq!(content_type(&m, b""), "application/x-thing");
    }

    #[test]
    fn listings_escape_names() {
        let e = vec![file("<b>&\"x\".txt"), file("sp ace")];
        let h = html("/d/x/", &e);
        assert!(h.contains("&lt;b&gt;&amp;&quot;x&quot;.txt"), "{h}");
        assert!(h.contains("href=\"sp%20ace\""), "{h}");
        let j: serde_json::Value = serde_json::from_str(&json(&e)).unwrap();
        assert_eq!(j[1]["name"], "sp ace");
        assert_eq!(j[1]["size"], 1);
        assert_eq!(j[1]["type"], "file");
    }
}
