//! Walks a file fed in buffers of any size as a sequence of steps, each of
//! which looks at the bytes from one position: a header to parse, or a
//! stretch to skip. A step that needs more bytes than have arrived waits
//! for them; only those bytes are kept between buffers (a few dozen for a
//! header, at most [`MAX_NEED`] for a table a format wants whole).

use std::collections::BTreeSet;

/// The most bytes a step may ask to see at once.
pub const MAX_NEED: usize = 8 << 20;

/// Offsets proposed ahead of the data are kept up to this many.
pub const MAX_AHEAD: usize = 1 << 20;

/// What a step decided.
pub enum Step {
    /// Call again with at least this many bytes from the same position
    /// (or with all there are, at the end of the file).
    Need(usize),
    /// Go on from this many bytes further (past the end of the data is
    /// allowed: the bytes are skipped as they arrive).
    Advance(u64),
    /// Nothing more is proposed for this file.
    Stop,
}

/// A format's parser: one step at absolute offset `at`, where `bytes` are
/// the bytes from `at` that have arrived (all of them up to the end of the
/// file if `eof`). Offsets to propose go into `props` (any order, any
/// position: the walker hands them out once the data has reached them).
pub trait Format {
    fn step(&mut self, at: u64, bytes: &[u8], eof: bool, props: &mut Props) -> Step;
}

/// Proposals not yet handed to the host.
#[derive(Default)]
pub struct Props {
    ahead: BTreeSet<u64>,
}

impl Props {
    /// Proposes `at` (kept only while fewer than [`MAX_AHEAD`] wait).
    pub fn add(&mut self, at: u64) {
        if at > 0 && self.ahead.len() < MAX_AHEAD {
            self.ahead.insert(at);
        }
    }

    /// Moves every proposal after `last` and before `end` to `out`.
    fn drain_to(&mut self, last: &mut u64, end: u64, out: &mut Vec<u64>) {
        while let Some(&o) = self.ahead.first() {
            if o >= end {
                break;
            }
            self.ahead.pop_first();
            if o > *last {
                out.push(o);
                *last = o;
            }
        }
    }
}

/// The state of a walk.
#[derive(Default)]
pub struct Walker {
    /// Absolute offset of the next step.
    pos: u64,
    /// Bytes from `pos` kept from earlier buffers (only while a step
    /// waits for more).
    pending: Vec<u8>,
    /// How many bytes the waiting step needs.
    need: usize,
    /// Absolute offset of the next byte to come.
    end: u64,
    stopped: bool,
    props: Props,
    /// The last offset handed out.
    last: u64,
}

impl Walker {
    /// Feeds the buffer at `offset` through `format`'s steps; hands out
    /// the proposals the data has passed.
    pub fn feed(&mut self, format: &mut dyn Format, offset: u64, data: &[u8], out: &mut Vec<u64>) {
        self.end = offset + data.len() as u64;
        self.run(format, offset, data, false);
        // Offsets up to the end of this buffer may be proposed now; the
        // end of the file is no seam, so the buffer's last byte waits.
        self.props.drain_to(&mut self.last, self.end, out);
    }

    /// The file has ended: the last steps, and every proposal left that
    /// lies inside the file.
    pub fn finish(&mut self, format: &mut dyn Format, out: &mut Vec<u64>) {
        let end = self.end;
        self.run(format, end, &[], true);
        self.props.drain_to(&mut self.last, end, out);
    }

    /// Adds a proposal from outside the steps (a trailer found at the end).
    pub fn propose(&mut self, at: u64) {
        self.props.add(at);
    }

    fn run(&mut self, format: &mut dyn Format, offset: u64, data: &[u8], eof: bool) {
        // `pending` always holds bytes [pos, pos + len) and, while a step
        // waits, ends where this buffer starts; once `pos` is inside this
        // buffer the steps read the buffer directly.
        while !self.stopped && self.pos < self.end {
            let direct = self.pending.is_empty();
            let step = if direct {
                let Some(bytes) = usize::try_from(self.pos - offset)
                    .ok()
                    .and_then(|from| data.get(from..))
                else {
                    break; // cannot happen: pos is in this buffer
                };
                match format.step(self.pos, bytes, eof, &mut self.props) {
                    Step::Need(n) if n > bytes.len() && !eof => {
                        if n > MAX_NEED {
                            self.stopped = true;
                        } else {
                            self.pending.extend_from_slice(bytes);
                            self.need = n;
                        }
                        break;
                    }
                    step => step,
                }
            } else {
                let have_to = self.pos + self.pending.len() as u64;
                if self.pending.len() < self.need && have_to >= offset {
                    let from = (have_to - offset) as usize;
                    let take =
                        (self.need - self.pending.len()).min(data.len() - from.min(data.len()));
                    self.pending.extend_from_slice(&data[from..from + take]);
                }
                if self.pending.len() < self.need && !eof {
                    break;
                }
                match format.step(self.pos, &self.pending, eof, &mut self.props) {
                    Step::Need(n) if n > self.pending.len() && !eof => {
                        if n > MAX_NEED || self.need >= n {
                            self.stopped = true; // asks for no more than it had
                            break;
                        }
                        self.need = n;
                        continue;
                    }
                    step => step,
                }
            };
            match step {
                // At the end of the file and still short: done.
                Step::Need(_) | Step::Stop => self.stopped = true,
                Step::Advance(k) => {
                    let k = k.max(1);
                    self.pos = self.pos.saturating_add(k);
                    if !direct {
                        if self.pos >= offset || k >= self.pending.len() as u64 {
                            self.pending.clear();
                        } else {
                            self.pending.drain(..k as usize);
                        }
                        self.need = 0;
                    }
                }
            }
        }
    }
}
