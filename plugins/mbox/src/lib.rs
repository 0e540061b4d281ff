//! The mbox scanner: proposes a block boundary at the start of every message
//! (a `From ` line at the start of the file or after a blank line) and at the
//! start of every message body (after the blank line that ends the headers,
//! `\n\n` or `\r\n\r\n`). A change to one message's headers (a `Status:`
//! flag, say) then leaves that message's body blocks, and every other
//! message's blocks, as they were.

use vt_sdk::{Info, Scanner};

/// Scanner state carried from one buffer to the next.
#[derive(Default)]
pub struct Mbox {
    /// Absolute offset of the line being read.
    line_start: u64,
    /// Bytes of that line seen so far.
    line_len: u64,
    /// Its first bytes (enough to recognise `From ` and `\r\n`).
    head: [u8; 5],
    /// The previous line was blank.
    prev_blank: bool,
    /// Inside a message's headers.
    in_headers: bool,
}

impl Mbox {
    fn take(&mut self, seg: &[u8]) {
        let have = (self.line_len as usize).min(5);
        let n = (5 - have).min(seg.len());
        self.head[have..have + n].copy_from_slice(&seg[..n]);
        self.line_len += seg.len() as u64;
    }

    fn end_line(&mut self, out: &mut Vec<u64>) {
        let blank = self.line_len == 1 || (self.line_len == 2 && self.head[0] == b'\r');
        let from = self.line_len >= 5 && &self.head == b"From ";
        if from && (self.line_start == 0 || self.prev_blank) {
            if self.line_start > 0 {
                out.push(self.line_start);
            }
            self.in_headers = true;
        } else if blank && self.in_headers {
            out.push(self.line_start + self.line_len);
            self.in_headers = false;
        }
        self.prev_blank = blank;
        self.line_start += self.line_len;
        self.line_len = 0;
    }
}

impl Scanner for Mbox {
    fn info() -> Info {
        Info::new("mbox", env!("CARGO_PKG_VERSION"))
            .extensions(&["mbox", "mbx"])
            .mime_types(&["application/mbox"])
            .magic(b"From ")
    }

    fn sniff(filename: &str, head: &[u8]) -> u8 {
        let ext = filename.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        let magic = head.starts_with(b"From ");
        // A real mbox's first line is "From SENDER DATE" followed by headers.
        let headers = memchr::memmem::find(head, b"\nFrom:").is_some()
            || memchr::memmem::find(head, b"\nSubject:").is_some()
            || memchr::memmem::find(head, b"\nDate:").is_some();
        match (magic, headers, ext.eq_ignore_ascii_case("mbox")) {
            (true, true, _) => 95,
            (true, false, true) => 80,
            (true, false, false) => 40,
            (false, _, true) => 30,
            _ => 0,
        }
    }

    fn scan(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>) {
        debug_assert_eq!(offset, self.line_start + self.line_len);
        let mut pos = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            self.take(&data[pos..=nl]);
            self.end_line(out);
            pos = nl + 1;
        }
        self.take(&data[pos..]);
    }
}

vt_sdk::export_scanner!(Mbox);

#[cfg(test)]
mod tests {
    use super::*;
    use vt_sdk::testing::{assert_consistent, scan};

    const SAMPLE: &[u8] = b"From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\nStatus: RO\n\nbody one\nFrom here is not a message\n\n>From quoted\n\nFrom c@d Tue Jan  2 00:00:00 2024\r\nSubject: x\r\n\r\nbody two\r\n";

    #[test]
    fn proposes_message_and_body_starts() {
        let offs = scan::<Mbox>("x.mbox", SAMPLE);
        let at = |s: &[u8]| memchr::memmem::find(SAMPLE, s).expect("sample text") as u64;
        assert_eq!(
            offs,
            vec![at(b"body one"), at(b"From c@d"), at(b"body two"),]
        );
    }

    #[test]
    fn same_offsets_for_any_buffer_size() {
        let mut big = Vec::new();
        for i in 0..200 {
            big.extend_from_slice(
                format!("From u{i}@x Mon Jan  1 00:00:00 2024\nStatus: R\n\n").as_bytes(),
            );
            big.extend_from_slice(&vec![b'y'; i * 7]);
            big.extend_from_slice(b"\n\n");
        }
        let offs = assert_consistent::<Mbox>("a.mbox", &big);
        assert_eq!(offs.len(), 200 * 2 - 1);
    }

    #[test]
    fn sniffs_an_mbox() {
        assert!(Mbox::sniff("inbox", SAMPLE) >= 90);
        assert_eq!(Mbox::sniff("notes.txt", b"hello"), 0);
    }
}
