//! The messages of the stream protocol (`vt-stream.5`): what a request's
//! body and its reply's body hold for each operation.
//!
//! A request body is `OP [JSON] PAYLOAD`: the operation as a varint, the
//! JSON part when the frame has [`FLAG_JSON`], then the payload (one zstd
//! frame when the frame has [`FLAG_ZSTD`]). A reply body is `[JSON]
//! PAYLOAD`, or with [`FLAG_ERROR`] a UTF-8 message (and a JSON part with
//! the error's `kind`). Every decoder here checks lengths before it reads
//! and bounds what it allocates by what it was given.

use std::io::Read;

use serde::{Deserialize, Serialize};
use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, Result};

use super::frame::{
    put_varint, Frame, Reader, FLAG_ERROR, FLAG_JSON, FLAG_MORE, FLAG_ZSTD, MAX_FRAME,
};

/// The protocol version this vt speaks.
pub const VERSION: u64 = 1;

/// Most hashes in one [`Request::Want`] or blocks in one
/// [`Request::AddBatch`].
pub const MAX_BATCH: usize = 4096;

/// Most bytes a decompressed payload may hold, unless it is at most 64
/// times its compressed size (a long archive compresses well).
pub const MAX_PAYLOAD: usize = 32 << 20;

/// Most bytes a reply reassembled from several frames may hold (a long
/// archive), and a payload decompressed in any case.
pub const MAX_REPLY: usize = 1 << 30;

/// Largest zstd window (log2) a payload may use.
const WINDOW_LOG_MAX: u32 = 22;

/// Replies longer than this are sent in several frames ([`FLAG_MORE`]).
pub const PART: usize = 1 << 20;

/// Payloads shorter than this are never compressed.
const COMPRESS_ABOVE: usize = 512;

/// Operation numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Say who we are; must come first.
    Hello = 0,
    /// Store data; the server hashes it.
    Add = 1,
    /// Store data under a hash the server checks.
    AddHashed = 2,
    /// Fetch a block.
    Get = 3,
    /// Whether a block is stored.
    Contains = 4,
    /// Which of these hashes are not stored.
    Want = 5,
    /// Make every block added so far durable.
    Sync = 6,
    /// Counts of the store's contents.
    Stats = 7,
    /// Names of the archives.
    Archives = 8,
    /// An archive's text.
    ArchiveRead = 9,
    /// Append lines to an archive.
    ArchiveAppend = 10,
    /// Replace an archive's text.
    ArchiveReplace = 11,
    /// Store many blocks under hashes the server checks.
    AddBatch = 12,
    /// Open a channel (a sub-stream with an export of its own).
    ChannelOpen = 13,
    /// Close the channel the request is sent on.
    ChannelClose = 14,
}

impl Op {
    /// The operation numbered `n`.
    pub fn from_u64(n: u64) -> Option<Op> {
        use Op::*;
        Some(match n {
            0 => Hello,
            1 => Add,
            2 => AddHashed,
            3 => Get,
            4 => Contains,
            5 => Want,
            6 => Sync,
            7 => Stats,
            8 => Archives,
            9 => ArchiveRead,
            10 => ArchiveAppend,
            11 => ArchiveReplace,
            12 => AddBatch,
            13 => ChannelOpen,
            14 => ChannelClose,
            _ => return None,
        })
    }

    /// Whether sending the request again after a lost connection is safe
    /// (does the same as sending it once). An archive append is not: the
    /// client checks whether its lines arrived before sending it again.
    pub fn idempotent(self) -> bool {
        !matches!(self, Op::ArchiveAppend | Op::ChannelOpen | Op::ChannelClose)
    }

    /// Whether the request changes the store.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Op::Add | Op::AddHashed | Op::AddBatch | Op::ArchiveAppend | Op::ArchiveReplace
        )
    }
}

/// The JSON of a HELLO request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub version: u64,
    /// The client's name and version, for the server's log.
    #[serde(default)]
    pub client: String,
    /// The export to use on channel 0 (default: the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
    /// The access token, when the server requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Whether the server should compress what it sends (block data in
    /// GET replies).
    #[serde(default)]
    pub compress: bool,
    /// Whether the client takes block data in GET replies as the store
    /// keeps it, when that is a zstd frame ([`Reply::Packed`]): the server
    /// then sends it on without decompressing it.
    #[serde(default)]
    pub packed: bool,
}

/// The JSON of a HELLO reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Welcome {
    /// The protocol version the server speaks.
    pub version: u64,
    /// The server's name and version.
    pub server: String,
    /// The export channel 0 now uses.
    pub export: String,
    /// Every export of the server.
    pub exports: Vec<String>,
    /// The hash function new blocks of the export are named with.
    pub hash: String,
    /// Every hash function the server knows.
    pub hashes: Vec<String>,
    /// Writes are refused.
    pub read_only: bool,
    /// Archive lines can only be appended.
    pub append_only: bool,
    /// The largest frame the server accepts.
    pub max_frame: u64,
    /// Differs for each run of the server: a client that reconnects to a
    /// new instance knows that blocks added since its last SYNC may be
    /// gone (a server acknowledges an add before it is durable).
    #[serde(default)]
    pub instance: String,
}

/// The JSON of a CHANNEL-OPEN request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChannelOpen {
    /// The export the new channel uses (default: the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
}

/// The JSON of a STATS reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Distinct blocks held.
    pub blocks: u64,
    /// Their uncompressed size.
    pub raw_bytes: u64,
    /// Bytes they occupy on the server's medium.
    pub stored_bytes: u64,
    /// Bytes of the server store's index.
    #[serde(default)]
    pub index_bytes: u64,
    /// Bytes of its similarity hints.
    #[serde(default)]
    pub hint_bytes: u64,
    /// Blocks it stores as deltas.
    #[serde(default)]
    pub delta_blocks: u64,
    /// Their uncompressed size.
    #[serde(default)]
    pub delta_raw_bytes: u64,
    /// Bytes their records occupy.
    #[serde(default)]
    pub delta_stored_bytes: u64,
}

impl From<StoreStats> for Stats {
    fn from(s: StoreStats) -> Self {
        Stats {
            blocks: s.blocks,
            raw_bytes: s.raw_bytes,
            stored_bytes: s.stored_bytes,
            index_bytes: s.index_bytes,
            hint_bytes: s.hint_bytes,
            delta_blocks: s.delta_blocks,
            delta_raw_bytes: s.delta_raw_bytes,
            delta_stored_bytes: s.delta_stored_bytes,
        }
    }
}

impl From<Stats> for StoreStats {
    fn from(s: Stats) -> Self {
        StoreStats {
            blocks: s.blocks,
            raw_bytes: s.raw_bytes,
            stored_bytes: s.stored_bytes,
            index_bytes: s.index_bytes,
            hint_bytes: s.hint_bytes,
            delta_blocks: s.delta_blocks,
            delta_raw_bytes: s.delta_raw_bytes,
            delta_stored_bytes: s.delta_stored_bytes,
        }
    }
}

/// The JSON of an error reply.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ErrorInfo {
    /// What kind of error: `version`, `auth`, `hello`, `unknown-op`,
    /// `malformed`, `read-only`, `append-only`, `unsupported`, `channel`,
    /// `store`.
    pub kind: String,
}

/// One block of an ADD-BATCH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchBlock {
    /// What the block holds.
    pub class: BlockClass,
    /// Its hash (checked by the server).
    pub hash: Hash,
    /// Its data (shared: a client keeps it for reads until the server
    /// has it, and sends it from the same bytes).
    pub data: bytes::Bytes,
}

/// A request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// HELLO.
    Hello(Hello),
    /// ADD: the server hashes `data`.
    Add {
        /// What the block holds.
        class: BlockClass,
        /// The data.
        data: Vec<u8>,
    },
    /// ADD-HASHED.
    AddHashed(BatchBlock),
    /// GET.
    Get(Hash),
    /// CONTAINS.
    Contains(Hash),
    /// WANT: which of these are not stored.
    Want(Vec<Hash>),
    /// SYNC.
    Sync,
    /// STATS.
    Stats,
    /// ARCHIVES.
    Archives,
    /// ARCHIVE-READ.
    ArchiveRead(String),
    /// ARCHIVE-APPEND.
    ArchiveAppend {
        /// The archive.
        name: String,
        /// Whole lines.
        lines: Vec<u8>,
    },
    /// ARCHIVE-REPLACE.
    ArchiveReplace {
        /// The archive.
        name: String,
        /// Its new text.
        text: Vec<u8>,
    },
    /// ADD-BATCH.
    AddBatch(Vec<BatchBlock>),
    /// CHANNEL-OPEN.
    ChannelOpen(ChannelOpen),
    /// CHANNEL-CLOSE.
    ChannelClose,
}

/// A reply's content, as the request's operation gives it meaning.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// To HELLO.
    Welcome(Welcome),
    /// To ADD: the hash and whether the block was new.
    Added(Hash, bool),
    /// To ADD-HASHED and CONTAINS: a yes or no.
    Flag(bool),
    /// To GET.
    Data(Option<Vec<u8>>),
    /// To GET, from a client that said [`Hello::packed`]: the body of a
    /// reply flagged [`FLAG_ZSTD`], zstd frames that decompress to the
    /// payload of [`Reply::Data`] ([`PRESENT_FRAME`], then the block as
    /// the store keeps it). Decompressed by [`unpack`] on the reader's
    /// thread, not the connection's.
    Packed(Vec<u8>),
    /// To WANT: indices (into the request's hashes) of those not stored.
    Wanted(Vec<u32>),
    /// To SYNC, ARCHIVE-APPEND, ARCHIVE-REPLACE, CHANNEL-CLOSE.
    Done,
    /// To STATS.
    Stats(Stats),
    /// To ARCHIVES.
    Names(Vec<String>),
    /// To ARCHIVE-READ.
    Text(Option<Vec<u8>>),
    /// To ADD-BATCH: for each block, whether it was new.
    NewFlags(Vec<bool>),
    /// To CHANNEL-OPEN: the new channel's number.
    Channel(u64),
}

impl Request {
    /// The request's operation.
    pub fn op(&self) -> Op {
        match self {
            Request::Hello(_) => Op::Hello,
            Request::Add { .. } => Op::Add,
            Request::AddHashed(_) => Op::AddHashed,
            Request::Get(_) => Op::Get,
            Request::Contains(_) => Op::Contains,
            Request::Want(_) => Op::Want,
            Request::Sync => Op::Sync,
            Request::Stats => Op::Stats,
            Request::Archives => Op::Archives,
            Request::ArchiveRead(_) => Op::ArchiveRead,
            Request::ArchiveAppend { .. } => Op::ArchiveAppend,
            Request::ArchiveReplace { .. } => Op::ArchiveReplace,
            Request::AddBatch(_) => Op::AddBatch,
            Request::ChannelOpen(_) => Op::ChannelOpen,
            Request::ChannelClose => Op::ChannelClose,
        }
    }

    /// The request as a frame; `compress` lets a large payload go as zstd.
    pub fn to_frame(&self, tag: u64, channel: u64, compress: bool) -> Result<Frame> {
        let mut json: Option<Vec<u8>> = None;
        let mut p = Vec::new();
        match self {
            Request::Hello(h) => json = Some(to_json(h)?),
            Request::ChannelOpen(c) => json = Some(to_json(c)?),
            Request::Add { class, data } => {
                p.push(class_byte(*class));
                p.extend_from_slice(data);
            }
            Request::AddHashed(b) => {
                p.push(class_byte(b.class));
                p.extend_from_slice(&b.hash.to_bytes());
                p.extend_from_slice(&b.data);
            }
            Request::Get(h) | Request::Contains(h) => p.extend_from_slice(&h.to_bytes()),
            Request::Want(hs) => {
                put_varint(&mut p, hs.len() as u64);
                for h in hs {
                    p.extend_from_slice(&h.to_bytes());
                }
            }
            Request::Sync | Request::Stats | Request::Archives | Request::ChannelClose => {}
            Request::ArchiveRead(name) => p.extend_from_slice(name.as_bytes()),
            Request::ArchiveAppend { name, lines: text }
            | Request::ArchiveReplace { name, text } => {
                put_varint(&mut p, name.len() as u64);
                p.extend_from_slice(name.as_bytes());
                p.extend_from_slice(text);
            }
            Request::AddBatch(blocks) => {
                put_varint(&mut p, blocks.len() as u64);
                for b in blocks {
                    p.push(class_byte(b.class));
                    p.extend_from_slice(&b.hash.to_bytes());
                    put_varint(&mut p, b.data.len() as u64);
                    p.extend_from_slice(&b.data);
                }
            }
        }
        let mut body = Vec::with_capacity(p.len() + 16);
        put_varint(&mut body, self.op() as u64);
        let flags = finish_body(&mut body, json.as_deref(), p, compress)?;
        Ok(Frame {
            tag,
            flags,
            channel: 0,
            body,
        }
        .on_channel(channel))
    }

    /// Decodes a request frame. An unknown operation is
    /// [`DecodeError::UnknownOp`], so the server can say so and go on.
    pub fn from_frame(f: &Frame) -> std::result::Result<Request, DecodeError> {
        let mut r = Reader::new(&f.body);
        let n = r.varint().map_err(DecodeError::Malformed)?;
        let op = Op::from_u64(n).ok_or(DecodeError::UnknownOp(n))?;
        let (json, payload) = split_body(&mut r, f.flags).map_err(DecodeError::Malformed)?;
        decode_request(op, json, &payload).map_err(DecodeError::Malformed)
    }
}

/// Why a request frame could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// An operation this version does not know.
    UnknownOp(u64),
    /// Anything else.
    Malformed(Error),
}

fn decode_request(op: Op, json: Option<&[u8]>, p: &[u8]) -> Result<Request> {
    let mut r = Reader::new(p);
    let req = match op {
        Op::Hello => Request::Hello(from_json(json)?),
        Op::ChannelOpen => Request::ChannelOpen(from_json(json)?),
        Op::Add => {
            let class = read_class(&mut r)?;
            Request::Add {
                class,
                data: r.rest().to_vec(),
            }
        }
        Op::AddHashed => {
            let class = read_class(&mut r)?;
            let hash = read_hash(&mut r)?;
            Request::AddHashed(BatchBlock {
                class,
                hash,
                data: bytes::Bytes::copy_from_slice(r.rest()),
            })
        }
        Op::Get => Request::Get(read_hash(&mut r)?),
        Op::Contains => Request::Contains(read_hash(&mut r)?),
        Op::Want => {
            let n = r.len(MAX_BATCH)?;
            let mut hs = Vec::with_capacity(n.min(p.len() / Hash::ENCODED_LEN));
            for _ in 0..n {
                hs.push(read_hash(&mut r)?);
            }
            Request::Want(hs)
        }
        Op::Sync => Request::Sync,
        Op::Stats => Request::Stats,
        Op::Archives => Request::Archives,
        Op::ChannelClose => Request::ChannelClose,
        Op::ArchiveRead => Request::ArchiveRead(utf8(r.rest())?),
        Op::ArchiveAppend | Op::ArchiveReplace => {
            let n = r.len(vt_core::archive::NAME_MAX)?;
            let name = utf8(r.bytes(n)?)?;
            let text = r.rest().to_vec();
            if op == Op::ArchiveAppend {
                Request::ArchiveAppend { name, lines: text }
            } else {
                Request::ArchiveReplace { name, text }
            }
        }
        Op::AddBatch => {
            let n = r.len(MAX_BATCH)?;
            let mut blocks = Vec::with_capacity(n.min(p.len() / 35));
            for _ in 0..n {
                let class = read_class(&mut r)?;
                let hash = read_hash(&mut r)?;
                let len = r.len(MAX_FRAME)?;
                blocks.push(BatchBlock {
                    class,
                    hash,
                    data: bytes::Bytes::copy_from_slice(r.bytes(len)?),
                });
            }
            Request::AddBatch(blocks)
        }
    };
    if !r.is_empty() {
        return Err(Error::decode("stream request", "trailing bytes"));
    }
    Ok(req)
}

impl Reply {
    /// The reply as frames for request `tag`: one, or several with
    /// [`FLAG_MORE`] when long.
    pub fn into_frames(self, tag: u64, channel: u64, compress: bool) -> Result<Vec<Frame>> {
        match self {
            Reply::Packed(body) => Ok(split_parts(tag, channel, FLAG_ZSTD, body)),
            r => r.to_frames(tag, channel, compress),
        }
    }

    /// This reply as frames (see [`Reply::into_frames`]).
    pub fn to_frames(&self, tag: u64, channel: u64, compress: bool) -> Result<Vec<Frame>> {
        let mut json: Option<Vec<u8>> = None;
        let mut p = Vec::new();
        match self {
            Reply::Welcome(w) => json = Some(to_json(w)?),
            Reply::Stats(s) => json = Some(to_json(s)?),
            Reply::Added(h, new) => {
                p.extend_from_slice(&h.to_bytes());
                p.push(u8::from(*new));
            }
            Reply::Flag(b) => p.push(u8::from(*b)),
            Reply::Packed(body) => {
                return Ok(split_parts(tag, channel, FLAG_ZSTD, body.clone()));
            }
            Reply::Data(d) | Reply::Text(d) => {
                if let Some(d) = d {
                    p.reserve(d.len() + 1);
                    p.push(1);
                    p.extend_from_slice(d);
                } else {
                    p.push(0);
                }
            }
            Reply::Wanted(idx) => {
                put_varint(&mut p, idx.len() as u64);
                for &i in idx {
                    put_varint(&mut p, u64::from(i));
                }
            }
            Reply::Done => {}
            Reply::Names(ns) => {
                for n in ns {
                    p.extend_from_slice(n.as_bytes());
                    p.push(b'\n');
                }
            }
            Reply::NewFlags(fl) => {
                put_varint(&mut p, fl.len() as u64);
                let mut bits = vec![0u8; fl.len().div_ceil(8)];
                for (i, &b) in fl.iter().enumerate() {
                    if b {
                        bits[i / 8] |= 1 << (i % 8);
                    }
                }
                p.extend_from_slice(&bits);
            }
            Reply::Channel(c) => put_varint(&mut p, *c),
        }
        let mut body = Vec::new();
        let flags = finish_body(&mut body, json.as_deref(), p, compress)?;
        Ok(split_parts(tag, channel, flags, body))
    }

    /// Like [`Reply::decode`], but a GET reply flagged [`FLAG_ZSTD`] is
    /// kept as it came ([`Reply::Packed`]): the connection's reader, which
    /// calls this, must not spend its time decompressing.
    pub fn decode_owned(
        op: Op,
        flags: u64,
        body: Vec<u8>,
    ) -> std::result::Result<Reply, RemoteError> {
        if op == Op::Get && flags & (FLAG_ERROR | FLAG_JSON | FLAG_ZSTD) == FLAG_ZSTD {
            return Ok(Reply::Packed(body));
        }
        Reply::decode(op, flags, &body)
    }

    /// Decodes the reply to an `op` request from its reassembled body and
    /// the first frame's flags. An error reply is an `Err`.
    pub fn decode(op: Op, flags: u64, body: &[u8]) -> std::result::Result<Reply, RemoteError> {
        if flags & FLAG_ERROR != 0 {
            return Err(RemoteError::from_body(flags, body));
        }
        let mut r = Reader::new(body);
        let (json, payload) = split_body(&mut r, flags).map_err(RemoteError::local)?;
        decode_reply(op, json, &payload).map_err(RemoteError::local)
    }
}

fn decode_reply(op: Op, json: Option<&[u8]>, p: &[u8]) -> Result<Reply> {
    let mut r = Reader::new(p);
    let rep = match op {
        Op::Hello => Reply::Welcome(from_json(json)?),
        Op::Stats => Reply::Stats(from_json(json)?),
        Op::Add => {
            let h = read_hash(&mut r)?;
            Reply::Added(h, r.u8()? != 0)
        }
        Op::AddHashed | Op::Contains => Reply::Flag(r.u8()? != 0),
        Op::Get | Op::ArchiveRead => {
            let present = r.u8()? != 0;
            let d = present.then(|| r.rest().to_vec());
            if op == Op::Get {
                Reply::Data(d)
            } else {
                Reply::Text(d)
            }
        }
        Op::Want => {
            let n = r.len(MAX_BATCH)?;
            let mut idx = Vec::with_capacity(n.min(p.len()));
            for _ in 0..n {
                let i = r.varint()?;
                idx.push(
                    u32::try_from(i)
                        .ok()
                        .filter(|&i| (i as usize) < MAX_BATCH)
                        .ok_or_else(|| Error::decode("WANT reply", "index out of range"))?,
                );
            }
            Reply::Wanted(idx)
        }
        Op::Sync | Op::ArchiveAppend | Op::ArchiveReplace | Op::ChannelClose => Reply::Done,
        Op::Archives => {
            let text = utf8(r.rest())?;
            Reply::Names(text.lines().map(str::to_owned).collect())
        }
        Op::AddBatch => {
            let n = r.len(MAX_BATCH)?;
            let bits = r.bytes(n.div_ceil(8))?;
            Reply::NewFlags((0..n).map(|i| bits[i / 8] & (1 << (i % 8)) != 0).collect())
        }
        Op::ChannelOpen => Reply::Channel(r.varint()?),
    };
    if !r.is_empty() {
        return Err(Error::decode("stream reply", "trailing bytes"));
    }
    Ok(rep)
}

/// One zstd frame of the byte 1: what a [`Reply::Packed`] starts with (a
/// GET reply's payload starts with a present byte; zstd frames put one
/// after the other decompress to their contents one after the other).
pub fn present_frame() -> &'static [u8] {
    static FRAME: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FRAME.get_or_init(|| zstd::bulk::compress(&[1], 1).unwrap_or_default())
}

/// The body of a [`Reply::Packed`] carrying `frame`, a block as its store
/// keeps it.
pub fn packed_body(frame: &[u8]) -> Vec<u8> {
    let head = present_frame();
    let mut body = Vec::with_capacity(head.len() + frame.len());
    body.extend_from_slice(head);
    body.extend_from_slice(frame);
    body
}

/// The block data of a [`Reply::Packed`] body (`None`: not stored),
/// decompressed: at most [`MAX_PAYLOAD`] bytes, as the frames declare.
pub fn unpack(body: &[u8]) -> Result<Option<Vec<u8>>> {
    let bad = |why: String| Error::decode("packed GET reply", why);
    // The usual case: the present byte's frame, then the block's frame,
    // decompressed straight into its buffer.
    if let Some(frame) = body.strip_prefix(present_frame()) {
        let n = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) if n <= MAX_PAYLOAD as u64 => n as usize,
            Ok(Some(n)) => return Err(bad(format!("a block of {n} bytes"))),
            _ => return Err(bad("a frame without its size".into())),
        };
        thread_local! {
            // A context costs its allocation (and page faults) each time:
            // one per reading thread.
            static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        let out = DCTX.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                let mut d = zstd::bulk::Decompressor::new().map_err(|e| bad(e.to_string()))?;
                d.window_log_max(WINDOW_LOG_MAX)
                    .map_err(|e| bad(e.to_string()))?;
                *c = Some(d);
            }
            let d = c.as_mut().expect("made above");
            d.decompress(frame, n)
                .map_err(|e| bad(format!("zstd: {e}")))
        })?;
        if out.len() != n {
            return Err(bad(format!("{} bytes, the frame says {n}", out.len())));
        }
        return Ok(Some(out));
    }
    match decode_reply_packed(body)? {
        Reply::Data(d) => Ok(d),
        _ => Err(bad("not a GET reply".into())),
    }
}

/// A [`Reply::Packed`] body decompressed and decoded the general way.
fn decode_reply_packed(body: &[u8]) -> Result<Reply> {
    let mut r = Reader::new(body);
    let (_, payload) = split_body(&mut r, FLAG_ZSTD)?;
    decode_reply(Op::Get, None, &payload)
}

/// An error reply's frame(s) for request `tag`.
pub fn error_frames(tag: u64, channel: u64, kind: &str, message: &str) -> Vec<Frame> {
    let json = serde_json::to_vec(&ErrorInfo { kind: kind.into() }).unwrap_or_default();
    let mut body = Vec::with_capacity(json.len() + message.len() + 4);
    put_varint(&mut body, json.len() as u64);
    body.extend_from_slice(&json);
    body.extend_from_slice(message.as_bytes());
    split_parts(tag, channel, FLAG_ERROR | FLAG_JSON, body)
}

/// An error the other side replied with (or a reply that could not be
/// decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteError {
    /// The error's kind (see [`ErrorInfo::kind`]); `local` when the reply
    /// itself was malformed.
    pub kind: String,
    /// The message.
    pub message: String,
}

impl RemoteError {
    fn from_body(flags: u64, body: &[u8]) -> Self {
        let mut r = Reader::new(body);
        let mut kind = String::from("store");
        if flags & FLAG_JSON != 0 {
            if let Ok(n) = r.len(body.len()) {
                if let Ok(j) = r.bytes(n) {
                    if let Ok(info) = serde_json::from_slice::<ErrorInfo>(j) {
                        kind = info.kind;
                    }
                }
            }
        }
        RemoteError {
            kind,
            message: String::from_utf8_lossy(r.rest()).into_owned(),
        }
    }

    fn local(e: Error) -> Self {
        RemoteError {
            kind: "local".into(),
            message: format!("malformed reply: {e}"),
        }
    }
}

impl Frame {
    /// This frame on `channel`.
    pub fn on_channel(mut self, channel: u64) -> Frame {
        self.channel = channel;
        self
    }
}

/// Appends `[JSON] PAYLOAD` to `body` (compressing the payload when asked
/// and worth it) and returns the frame flags that say so; an empty `body`
/// takes the payload itself.
fn finish_body(body: &mut Vec<u8>, json: Option<&[u8]>, p: Vec<u8>, compress: bool) -> Result<u64> {
    let mut flags = 0;
    if let Some(j) = json {
        flags |= FLAG_JSON;
        put_varint(body, j.len() as u64);
        body.extend_from_slice(j);
    }
    if compress && p.len() >= COMPRESS_ABOVE {
        let z = zstd::bulk::compress(&p, 3)
            .map_err(|e| Error::Store(format!("compress a stream payload: {e}")))?;
        if z.len() < p.len() {
            flags |= FLAG_ZSTD;
            body.extend_from_slice(&z);
            return Ok(flags);
        }
    }
    if body.is_empty() {
        // Nothing before the payload: it is the body, not copied.
        *body = p;
    } else {
        body.extend_from_slice(&p);
    }
    Ok(flags)
}

/// A body's JSON part (if any) and its payload (decompressed if it was).
type Body<'a> = (Option<&'a [u8]>, std::borrow::Cow<'a, [u8]>);

/// Splits `[JSON] PAYLOAD` off a reader, decompressing the payload when
/// the flags say it is zstd (at most [`MAX_PAYLOAD`] bytes, grown as
/// decompressed, so a small bomb cannot allocate much).
fn split_body<'a>(r: &mut Reader<'a>, flags: u64) -> Result<Body<'a>> {
    let json = if flags & FLAG_JSON != 0 {
        let n = r.len(MAX_FRAME)?;
        Some(r.bytes(n)?)
    } else {
        None
    };
    let rest = r.rest();
    if flags & FLAG_ZSTD == 0 {
        return Ok((json, std::borrow::Cow::Borrowed(rest)));
    }
    let limit = MAX_PAYLOAD
        .max(rest.len().saturating_mul(64))
        .min(MAX_REPLY);
    let mut out = Vec::new();
    let mut dec = zstd::stream::read::Decoder::new(rest)
        .map_err(|e| Error::decode("stream payload", e.to_string()))?;
    // A frame may ask for a window of up to 2 GiB, which the decoder
    // would allocate however little follows: vt's own frames (level 3)
    // use at most 4 MiB.
    dec.window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| Error::decode("stream payload", e.to_string()))?;
    dec.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::decode("stream payload", format!("zstd: {e}")))?;
    if out.len() > limit {
        return Err(Error::decode(
            "stream payload",
            format!("decompresses to more than {limit} bytes"),
        ));
    }
    Ok((json, std::borrow::Cow::Owned(out)))
}

/// Cuts a reply body into frames of at most [`PART`] bytes, all but the
/// last flagged [`FLAG_MORE`]; the first carries `flags`.
fn split_parts(tag: u64, channel: u64, flags: u64, body: Vec<u8>) -> Vec<Frame> {
    if body.len() <= PART {
        return vec![Frame {
            tag,
            flags,
            channel,
            body,
        }];
    }
    let n = body.len().div_ceil(PART);
    body.chunks(PART)
        .enumerate()
        .map(|(i, c)| Frame {
            tag,
            flags: (if i == 0 { flags } else { 0 }) | (if i + 1 < n { FLAG_MORE } else { 0 }),
            channel,
            body: c.to_vec(),
        })
        .collect()
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Store(format!("encode JSON: {e}")))
}

fn from_json<'a, T: Deserialize<'a>>(json: Option<&'a [u8]>) -> Result<T> {
    let j = json.ok_or_else(|| Error::decode("stream message", "JSON part missing"))?;
    serde_json::from_slice(j).map_err(|e| Error::decode("stream message JSON", e.to_string()))
}

fn class_byte(c: BlockClass) -> u8 {
    match c {
        BlockClass::Data => 0,
        BlockClass::Meta => 1,
    }
}

fn read_class(r: &mut Reader<'_>) -> Result<BlockClass> {
    match r.u8()? {
        0 => Ok(BlockClass::Data),
        1 => Ok(BlockClass::Meta),
        c => Err(Error::decode(
            "stream message",
            format!("unknown block class {c}"),
        )),
    }
}

fn read_hash(r: &mut Reader<'_>) -> Result<Hash> {
    Hash::from_bytes(r.bytes(Hash::ENCODED_LEN)?)
}

fn utf8(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::decode("stream message", "text not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vt_core::HashKind;

    fn h(b: &[u8]) -> Hash {
        HashKind::Sha3_256.digest(b)
    }

    fn requests() -> Vec<Request> {
        let blk = BatchBlock {
            class: BlockClass::Meta,
            hash: h(b"x"),
            data: b"x".repeat(2000).into(),
        };
        vec![
            Request::Hello(Hello {
                version: VERSION,
                client: "t".into(),
                export: Some("e".into()),
                token: None,
                compress: true,
                packed: true,
            }),
            Request::Add {
                class: BlockClass::Data,
                data: b"abc".to_vec(),
            },
            Request::AddHashed(blk.clone()),
            Request::Get(h(b"a")),
            Request::Contains(h(b"b")),
            Request::Want(vec![h(b"a"), h(b"b")]),
            Request::Sync,
            Request::Stats,
            Request::Archives,
            Request::ArchiveRead("home".into()),
            Request::ArchiveAppend {
                name: "home".into(),
                lines: b"line\n".to_vec(),
            },
            Request::ArchiveReplace {
                name: "home".into(),
                text: Vec::new(),
            },
            Request::AddBatch(vec![blk.clone(), blk]),
            Request::ChannelOpen(ChannelOpen { export: None }),
            Request::ChannelClose,
        ]
    }

    #[test]
    fn requests_round_trip_compressed_or_not() {
        for compress in [false, true] {
            for req in requests() {
                let f = req.to_frame(7, 3, compress).unwrap();
                let wire = f.encode();
                let (g, _) = super::super::frame::split_frame(&wire).unwrap().unwrap();
                assert_eq!(Request::from_frame(&g).unwrap(), req);
            }
        }
    }

    #[test]
    fn replies_round_trip_in_parts() {
        let big = vec![7u8; 3 * PART + 5];
        let cases = [
            (Op::Get, Reply::Data(Some(big.clone()))),
            (Op::Get, Reply::Data(None)),
            (Op::ArchiveRead, Reply::Text(Some(b"x\n".to_vec()))),
            (Op::Want, Reply::Wanted(vec![0, 5, 4095])),
            (Op::AddBatch, Reply::NewFlags(vec![true, false, true])),
            (Op::Add, Reply::Added(h(b"q"), true)),
            (Op::Stats, Reply::Stats(Stats::default())),
            (Op::Archives, Reply::Names(vec!["a".into(), "b".into()])),
            (Op::ChannelOpen, Reply::Channel(9)),
            (Op::Sync, Reply::Done),
        ];
        for (op, rep) in cases {
            let frames = rep.to_frames(1, 0, false).unwrap();
            let mut body = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(f.flags & FLAG_MORE != 0, i + 1 < frames.len());
                assert!(f.body.len() <= PART);
                body.extend_from_slice(&f.body);
            }
            assert_eq!(Reply::decode(op, frames[0].flags, &body).unwrap(), rep);
        }
    }

    #[test]
    fn errors_and_unknown_ops() {
        let f = &error_frames(4, 0, "read-only", "no writes here")[0];
        let e = Reply::decode(Op::Add, f.flags, &f.body).unwrap_err();
        assert_eq!(e.kind, "read-only");
        assert_eq!(e.message, "no writes here");
        let mut body = Vec::new();
        put_varint(&mut body, 99);
        let f = Frame {
            tag: 1,
            flags: 0,
            channel: 0,
            body,
        };
        assert!(matches!(
            Request::from_frame(&f),
            Err(DecodeError::UnknownOp(99))
        ));
    }

    #[test]
    fn a_zstd_frame_asking_for_a_huge_window_is_refused() {
        // Found by the stream_frame fuzz target: 10 bytes of zstd that ask
        // for a 2^27-byte window.
        let f = Frame {
            tag: 1,
            flags: FLAG_ZSTD,
            channel: 0,
            body: vec![1, 40, 181, 47, 253, 0, 136, 9, 0, 0, 120],
        };
        assert!(matches!(
            Request::from_frame(&f),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn a_zstd_bomb_is_refused_without_allocating_it() {
        let huge = vec![0u8; MAX_PAYLOAD + 10];
        let z = zstd::bulk::compress(&huge, 19).unwrap();
        let mut body = Vec::new();
        put_varint(&mut body, Op::Add as u64);
        body.extend_from_slice(&z);
        let f = Frame {
            tag: 1,
            flags: FLAG_ZSTD,
            channel: 0,
            body,
        };
        assert!(matches!(
            Request::from_frame(&f),
            Err(DecodeError::Malformed(_))
        ));
    }
}
