//! Response bodies: whole buffers, and content streamed from the store a
//! piece at a time (a file of gigabytes is never held in memory), with
//! the byte ranges a client asked for.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// The body type of every response.
pub type RespBody = BoxBody<Bytes, std::io::Error>;

/// A body of `b`.
pub fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// No body (HEAD, 304).
pub fn empty() -> RespBody {
    Empty::new().map_err(|e: Infallible| match e {}).boxed()
}

/// A body whose pieces a blocking thread sends; an error ends the
/// response early (the client sees a short body and a closed connection).
struct ChannelBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    len: u64,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::io::Result<Frame<Bytes>>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Reads `len` bytes of some content from `offset`.
pub type ReadAt = Arc<dyn Fn(u64, u64) -> vt_core::Result<Vec<u8>> + Send + Sync>;

/// How much of the content one read fetches: a few blocks, so that the
/// first bytes leave soon and memory stays small.
const PIECE: u64 = 1 << 20;

/// One piece of a response: literal bytes (multipart headers) or a range
/// of the content.
pub enum Part {
    /// Bytes sent as they are.
    Literal(Bytes),
    /// Content bytes `start..end`.
    Content(u64, u64),
}

impl Part {
    /// Its length in the body.
    pub fn body_len(&self) -> u64 {
        match self {
            Part::Literal(b) => b.len() as u64,
            Part::Content(a, b) => b - a,
        }
    }
}

/// A body made of `parts`, content read with `read` on a blocking thread
/// a piece at a time; reading stops when the client goes away.
pub fn streamed(parts: Vec<Part>, read: ReadAt) -> RespBody {
    let len = parts.iter().map(Part::body_len).sum();
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        for p in parts {
            match p {
                Part::Literal(b) => {
                    if tx.blocking_send(Ok(b)).is_err() {
                        return;
                    }
                }
                Part::Content(mut at, end) => {
                    while at < end {
                        let n = PIECE.min(end - at);
                        let piece = match read(at, n) {
                            Ok(d) if d.len() as u64 == n => Bytes::from(d),
                            Ok(d) => {
                                let e = std::io::Error::other(format!(
                                    "content ended at {} of {end}",
                                    at + d.len() as u64
                                ));
                                let _ = tx.blocking_send(Err(e));
                                return;
                            }
                            Err(e) => {
                                tracing::warn!("httpd: reading content at {at}: {e}");
                                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                                return;
                            }
                        };
                        if tx.blocking_send(Ok(piece)).is_err() {
                            return;
                        }
                        at += n;
                    }
                }
            }
        }
    });
    ChannelBody { rx, len }.boxed()
}
